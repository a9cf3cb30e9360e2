// Package session is the resident's single sign-on session in one browser:
// the result of the last sign-in, reused by later auth requests until it
// expires or the resident signs out, and the decision whether it may answer
// a given request (prompt, max_age, acr_values, the subject the RP insists
// on).
//
// The cookie holds 256 random bits; the store keys the record by their
// SHA-256 (under a label of its own), so a copy of the store does not
// yield usable cookies. That hash is also the session's ID, so the index
// reaches the record from the ID alone. The cookie has no Max-Age:
// closing the browser ends the session, the safer default on the shared
// computers of libraries and city halls. Starting a
// session always makes a new cookie value, never reusing one the browser
// sent, which rules out session fixation.
//
// Signing out goes through /logout, which the end-session endpoint reaches
// with a sign-out it validated (Logout): SignLogout and VerifyLogout make
// the destination tamper-proof, so /logout is never an open redirect, and
// say whether the RP proved with an id_token_hint that it speaks for the
// resident of this very session. Only then does the session end without
// a question; any other sign-out is confirmed by the resident.
//
// Each session remembers the authenticator that started it (a JPKI
// certificate link or a passkey). An index in the store (index.go)
// lists an account's sessions and the token families minted
// from them, which the provider reports on every code exchange
// (TokensIssued). SignOutEverywhere ends them all and revokes every
// family; EndAuthenticator ends what one removed card, phone or passkey
// started. Ending a session publishes SessionEnded with the clients that
// received tokens in it; a new session publishes SignedIn. Relying
// parties see a session as PairwiseSID of its ID for their sector.
package session
