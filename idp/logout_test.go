package idp

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
)

// signedIn reports whether the browser's SSO session still answers a new
// request (the login route skips to consent).
func (b *browser) signedIn() bool {
	b.t.Helper()
	ar := b.op.authorize("web")
	code, loc, _ := b.get(authreq.LoginURL(ar))
	return code == http.StatusSeeOther && loc == authreq.ConsentURL(ar)
}

// endSession sends the browser to end_session with q and follows the
// hand-over to /logout, returning what /logout answered.
func (b *browser) endSession(q url.Values) (int, string, string) {
	b.t.Helper()
	code, loc, body := b.get(endSessionPath + "?" + q.Encode())
	if code != http.StatusFound || !strings.HasPrefix(loc, session.LogoutPath+"?logout=") {
		b.t.Fatalf("end_session: %d %q\n%.300s", code, loc, body)
	}
	return b.get(loc)
}

// idTokenFor signs the browser's resident in at client and returns the
// ID token the RP holds.
func (b *browser) idTokenFor(client string) string {
	b.t.Helper()
	ar, conf, v := b.request(client, []string{"name"}, "")
	_, loc := b.consent(ar, "allow")
	tok := b.op.tokens(conf, v, b.callback(loc))
	return tok.Extra("id_token").(string)
}

// RP-Initiated Logout 1.0 §2: a logout request naming a client alone (any
// site can make one) is confirmed by the resident on a page of ours
// before the session ends; the page names the RP, its form is CSRF-bound,
// and the validated destination survives the question.
func TestLogoutByClientIDAsks(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	b := o.proofed(o.pki.wallet(t, factsTaro))
	q := url.Values{"client_id": {"web"}, "post_logout_redirect_uri": {"https://rp.example/bye"}, "state": {"s1"}}
	code, loc, page := b.endSession(q)
	if code != http.StatusOK || loc != "" {
		t.Fatalf("logout by client_id ended without a question: %d %q", code, loc)
	}
	for _, want := range []string{`id="logout-confirm"`, `id="rp-name" class="rp-name">Web RP<`, `method="post" action="/logout"`, `href="https://rp.example/bye?state=s1"`} {
		if !strings.Contains(page, want) {
			t.Fatalf("confirmation page lacks %s:\n%s", want, page)
		}
	}
	if !b.signedIn() {
		t.Fatal("asking ended the session")
	}
	action, fields := pageForm(t, page, "logout")
	form := submission(fields)
	// Without the CSRF token, or with another page's, nothing happens.
	for name, tok := range map[string]string{"none": "", "forged": "AAAA"} {
		bad := url.Values{"logout": form["logout"]}
		if tok != "" {
			bad.Set(web.CSRFField, tok)
		}
		if code, loc, _ := b.post(action, bad); code != http.StatusForbidden || loc != "" {
			t.Fatalf("confirmation without a valid CSRF token (%s): %d %q", name, code, loc)
		}
	}
	if !b.signedIn() {
		t.Fatal("a refused confirmation ended the session")
	}
	if code, loc, _ := b.post(action, form); code != http.StatusSeeOther || loc != "https://rp.example/bye?state=s1" {
		t.Fatalf("confirmed: %d %q", code, loc)
	}
	if b.signedIn() {
		t.Fatal("the session survived the confirmed logout")
	}
}

// A valid id_token_hint for the browser's current session proceeds as
// before: the session ends at once and the browser goes to the RP. A
// hint of another resident, or a confirmed hand-over replayed in another
// browser, is asked about.
func TestLogoutWithHint(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	taro := o.proofed(o.pki.wallet(t, factsTaro))
	hana := o.proofed(o.pki.wallet(t, factsHanako))
	taroHint, hanaHint := taro.idTokenFor("web"), hana.idTokenFor("web")
	dest := url.Values{"post_logout_redirect_uri": {"https://rp.example/bye"}, "state": {"s2"}}
	with := func(hint string) url.Values {
		q := url.Values{"id_token_hint": {hint}}
		for k, v := range dest {
			q[k] = v
		}
		return q
	}

	// Another resident's hint: asked.
	if code, loc, page := taro.endSession(with(hanaHint)); code != http.StatusOK || loc != "" || !strings.Contains(page, `id="logout-confirm"`) {
		t.Fatalf("another resident's hint: %d %q", code, loc)
	}
	// A hand-over confirmed for Taro's session, opened in Hanako's
	// browser: asked.
	_, handover, _ := taro.get(endSessionPath + "?" + with(taroHint).Encode())
	if code, loc, _ := hana.get(handover); code != http.StatusOK || loc != "" {
		t.Fatalf("Taro's hand-over in Hanako's browser: %d %q", code, loc)
	}
	if !taro.signedIn() || !hana.signedIn() {
		t.Fatal("a question ended a session")
	}
	// Taro's own hint in Taro's browser: no question.
	if code, loc, _ := taro.get(handover); code != http.StatusSeeOther || loc != "https://rp.example/bye?state=s2" {
		t.Fatalf("own hint: %d %q", code, loc)
	}
	if taro.signedIn() {
		t.Fatal("the session survived a logout with its own hint")
	}
	if !hana.signedIn() {
		t.Fatal("another browser's session ended")
	}
	// Signed out already: the destination at once, nothing to ask.
	if code, loc, _ := taro.endSession(url.Values{"client_id": {"web"}, "post_logout_redirect_uri": {"https://rp.example/bye"}}); code != http.StatusSeeOther || loc != "https://rp.example/bye" {
		t.Fatalf("logout without a session: %d %q", code, loc)
	}
}
