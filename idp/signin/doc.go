// Package signin is the resident's side of a sign-in: the login page, the
// sign-in transaction a wallet answers, and sign-out.
//
// The browser:
//
//	GET  /login?id=AR          SSO decision (prompt, max_age, acr_values
//	                           against the session); otherwise open a
//	                           transaction and redirect to &tx=TX, so that
//	                           a reload resumes instead of opening another
//	GET  /login?id=AR&tx=TX    the page: rotating QR code, comparison code,
//	                           app link; it refreshes itself every QR window
//	GET  /login/tx/TX/status   JSON state (and the rotated QR links)
//	GET  /login/tx/TX/events   server-sent events on state changes
//	GET  /login/tx/TX/qr.png   the QR code of the current window
//	POST /login/tx/TX/finish   CSRF; verified → SSO session → consent
//	GET  /login/tx/TX/return   where a same-device wallet sends the
//	                           resident after answering: the owning
//	                           browser's login page, or a page saying
//	                           where to look
//	GET  /logout?next=SIGNED   end the SSO session
//
// The wallet (docs/wallet-protocol.md): GET and POST
// /wallet/v1/transactions/TX with the token from the QR code. It receives
// the exact bytes to sign, which bind issuer, transaction, RP and expiry,
// and answers once with signatures (JWS with x5c, CMS, or raw), or with
// POST .../TX/decline when the resident declines or the confirmation
// codes differ, which the browser shows at once.
//
// A transaction moves pending → processing → verified | failed exactly
// once (compare-and-swap on the stored bytes), then verified → finished
// when the browser that owns it picks up the result; state changes are
// published through the store so that every node's event streams see
// them. The first sign-in is an identity proofing (a signature and an
// authentication certificate in one submission), which creates the
// account; later ones use the authentication certificate alone.
//
// Every step after /login needs the binding cookie whose hash the auth
// request and the transaction carry: an ID alone never lets another
// browser see or finish anything. Refusals keep what the wallet or
// browser may read apart from the cause, which only the log sees.
package signin
