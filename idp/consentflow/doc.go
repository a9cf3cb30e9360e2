// Package consentflow is the consent step. After the sign-in,
// /consent?id=AR decides with package consent what this authorization
// may release. The request's claims were resolved under the client's
// policy once, at /authorize; the resident's remembered grant is per
// account and client.
//
//	GET  /consent?id=AR[&lang=]   the remembered grant answers everything
//	                              (no prompt=consent): complete at once;
//	                              prompt=none and a screen is due:
//	                              consent_required to the RP; facts stale
//	                              or missing: back to the login page's
//	                              proofing path; else the screen, asking
//	                              only what was not answered before
//	POST /consent?id=AR[&lang=]   CSRF; deny → access_denied to the RP;
//	                              allow → the choices become the grant
//	                              (consent.Store.Consent, atomic), and
//	                              what it releases for this request
//	                              (consent.Effective) is recorded on the
//	                              auth request, then the callback
//
// Both methods read the request and the session in one round trip, and
// with them the remembered grant and the account when the session
// cookie names them (a sign-in made for this very client: the usual
// way here); otherwise those two take one more. A remembered consent
// then completes with one compare-and-swap: two round trips in all.
//
// A request that is over (answered, or gone after its code was used) is
// what a signed-in resident meets by going Back from the relying party:
// both methods then show a "you're done" page instead of an error, and
// nothing changes.
//
// The screen works without JavaScript: each line is a checkbox named
// "claim"; the name's parts asked with it are listed on the name's line,
// not boxes of their own; a locked essential claim is a checked, disabled
// checkbox plus a hidden "claim" input; an age alternative is a radio
// group named "as.<claim>". An unticked line says what ticking it would
// send, not what "they receive" (CSS :has, no script). Element IDs are
// stable for tests and themes: form#consent, li#item-<claim>,
// input#claim-<claim>, #claim-<claim>-parts, input#as-<claim>-<choice>,
// button#consent-allow / #consent-deny (name=action, value=allow|deny),
// a#lang-ja / #lang-en, #rp-name, #rp-organization, #rp-verified,
// #rp-purpose, a#rp-policy, #consent-kept, #consent-error, #done.
package consentflow
