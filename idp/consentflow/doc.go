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
// The screen works without JavaScript: each claim is a checkbox named
// "claim"; a locked essential claim is a checked, disabled checkbox plus
// a hidden "claim" input; an age alternative is a radio group named
// "as.<claim>". Element IDs are stable for tests and themes:
// form#consent, input#claim-<claim>, input#as-<claim>-<choice>,
// button#consent-allow / #consent-deny (name=action, value=allow|deny),
// a#lang-ja / #lang-en, #rp-name, #rp-organization, #rp-verified,
// #rp-purpose, a#rp-policy, #consent-kept, #consent-error.
package consentflow
