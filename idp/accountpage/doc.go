// Package accountpage is the resident's account page: a signed-in
// resident sees every relying party they have connected to, what each
// received and when, and can withdraw it: the grant is deleted and that
// RP's tokens are revoked.
//
//	GET  /account          the list (or a sign-in link without a session)
//	GET  /account/login    self-service sign-in, bound to no RP
//	POST /account/revoke   CSRF; client_id → delete grant, revoke tokens
//
// Self-service sign-in reuses the whole sign-in machinery (transactions,
// wallet, proofing, SSO session) through an auth request that names the
// provider itself (clients.SelfServiceID, which /authorize cannot be
// asked for) and carries this page as where to return: the login page
// sends the signed-in browser straight back, and no code is ever minted.
//
// The page is a column of sections, each a card with a stable ID, so that
// more sections can join without moving these:
//
//	section#account-signed-out   without a session: a#account-signin,
//	                             a#account-proof
//	section#account-who          who is signed in (#account-name, from the
//	                             verified facts; #account-proofed) and
//	                             a#account-logout
//	section#account-services     the RPs: ul#account-rps or
//	                             #account-rps-empty; li[data-client=ID];
//	                             each RP's withdrawal behind a disclosure,
//	                             details#revoke-<n>-box, whose
//	                             form.revoke[data-client=ID] holds
//	                             button#revoke-<n> (name=action,
//	                             value=revoke): two deliberate steps, no
//	                             script
//	section#passkeys             the passkeys, when they are on
//
// and #account-status (the notice after a withdrawal), a#lang-ja /
// #lang-en. Times carry their time zone (Japan time).
package accountpage
