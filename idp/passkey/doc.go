// Package passkey lets a resident who proved their identity with the JPKI
// signature certificate sign in afterwards with a passkey: a WebAuthn
// discoverable credential unlocked by the phone's own biometrics or
// screen lock (go-webauthn does the WebAuthn verification; what to do
// with its answers is ours).
//
//   - Registration is offered right after a JPKI sign-in (/passkey/offer)
//     and on the account page. Only a session whose JPKI sign-in is
//     recent (Options.RecentProofing) may add one. The credential must be
//     discoverable (a resident key) and verify the user; the RP ID is the
//     issuer's host and the origin must be the issuer's, exactly. The
//     user handle is random per account (account.Store.PasskeyHandle).
//     Attestation is "none" unless configured; an AAGUID policy
//     (allow or deny lists) and an offline FIDO metadata blob
//     (LoadMetadata) can refuse authenticator models.
//   - Sign-in is discoverable: the login page asks the browser for any
//     passkey of this site, with a button or through autofill
//     (conditional mediation), and the browser's own hybrid flow reaches
//     a phone nearby. The assertion names the user handle; only the
//     credentials of that account verify it.
//   - Every ceremony's challenge is a store record with a TTL, bound to
//     the browser (the binding cookie) and, for a sign-in, to the
//     authorization request; it is taken atomically, once, after the
//     checks that cost nothing.
//   - A passkey sign-in is acr aal2 with amr user and hwk (device-bound)
//     or swk (syncable, by the backup-eligible flag). A request that
//     needs aal3 (session.NeedsJPKI) is never answered by a passkey.
//   - A signature counter that goes back, or backup flags that contradict
//     the registration, disable the credential for good; the account page
//     says so. go-webauthn only reports the clone warning.
//
// The credentials live in the sealed account record (package account).
package passkey
