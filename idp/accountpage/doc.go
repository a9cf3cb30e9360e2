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
// Stable element IDs for tests and themes: #account-signin (sign-in
// link), #account-rps (the list), li[data-client=ID], and each RP's
// form.revoke[data-client=ID] with button#revoke-<n> (name=action,
// value=revoke), #account-status, a#lang-ja / #lang-en, a#account-logout.
package accountpage
