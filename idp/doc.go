// Package idp is the OpenID provider: it composes pkibridge (JPKI
// signatures), whitelist (which relying parties may ask) and consent (what
// each may learn) behind zitadel/oidc's op.Provider, and adds the sign-in
// flows a resident sees. Nothing below imports idp; data flows one way.
//
// One login, in order (DESIGN.md §3):
//
//  1. /authorize (oidc_provider.go, oidc_storage.go). An interceptor
//     pre-validates client and redirect_uri so that an unknown, pending,
//     suspended or revoked client, or an unregistered redirect, gets an
//     error page and never a redirect. CreateAuthRequest refuses a missing
//     or plain PKCE challenge, parses the `claims` parameter
//     (consent.ParseClaimsRequest) and stores the AuthRequest with a TTL.
//  2. /login (signin_login.go). prompt, max_age and acr_values are checked
//     against the SSO session (session.go); prompt=none without one is
//     login_required. Otherwise a sign-in transaction (signin_tx.go) is
//     created, bound to the auth request and to this browser by a secret
//     cookie, and the page shows a rotating QR code, a comparison code and
//     an app link.
//  3. The wallet (wallet.go, docs/wallet-protocol.md) fetches the
//     transaction and posts signatures over the exact canonical bytes. The
//     first time it signs with both certificates (identity proofing, which
//     creates the Account in accounts.go); later with the authentication
//     certificate alone. pkibridge verifies chain, profile, revocation and
//     bytes; the transaction moves pending → verified once (CAS).
//  4. The browser learns the outcome by SSE or polling, finishes (CSRF and
//     binding checked), and reaches consent (consent_flow.go): remembered
//     grants skip the screen, new claims are asked for, facts whose
//     certificate was revoked send the resident back to prove again
//     (facts.go).
//  5. completeAuthRequest fixes the account, the pairwise sub
//     (pairwise.go), acr, amr and the granted claims; the callback, bound to
//     the same browser, mints one code.
//  6. The token endpoint (oidc_tokens.go) takes the code exactly once — a
//     replay revokes the grant — and issues opaque access tokens and
//     rotating refresh tokens whose reuse revokes the family. ID tokens are
//     signed with keys from keys.go (ES256, RS256 per client); claims in the
//     ID token, userinfo and introspection are exactly consent.Release of
//     the grant (oidc_claims.go).
//
// Around it: web.go (request IDs, access log without personal data,
// security headers, CSRF, cookies, rate limits), telemetry.go (health,
// readiness, metrics on a separate listener), config.go (YAML plus
// WATASHI_* overrides, validated all at once), whitelist.go (registry
// clients, /register) and account.go (the resident's account page).
//
// All state lives in a store.KV: ephemeral records with TTLs, durable
// ones (accounts, links, keys, consents, clients) needing Redis AOF.
package idp
