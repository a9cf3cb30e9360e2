// Package account keeps the residents Watashi knows: an account keyed by a
// random ID, never by name or birth date, holding the basic four facts a
// verified signature certificate vouched for, and the certificates linked
// to it.
//
//   - Proof applies an identity proofing: a signature and an
//     authentication certificate verified together. It creates the account
//     or refreshes the facts of the one the certificates (or the signed-in
//     session) already point at, for the same person only.
//   - SignIn resolves a verified authentication certificate to its
//     account. A certificate linked to no account is ErrNotEnrolled: the
//     resident must prove their identity first.
//   - RecheckFacts asks again whether the signature certificate the facts
//     came from still stands, when the last answer is older than the
//     configured period. A revoked certificate means the resident moved or
//     changed name: the facts are marked stale, and nothing is released
//     until the resident proves again.
//   - Delete removes an account for good, destroying its data key first.
//
// Every account is sealed (package seal) under a data key of its own,
// wrapped by the KEK; Rewrap re-wraps the data keys after a KEK change.
// An account keeps no certificate, only what the provider uses of them,
// and certificates are linked under a keyed hash of their DER, so a copy
// of the store neither shows the facts nor tells whose certificate is
// linked.
//
// It returns domain errors (ErrNotEnrolled, ErrConflict,
// ErrIdentityMismatch); the sign-in maps them to the wallet protocol's
// codes. Accounts, their data keys and certificate links are durable
// records.
package account
