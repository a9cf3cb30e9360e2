package idp

import (
	"mime"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/store"
)

// call sends one request and returns the response with its body read.
func (o *testOP) call(method, path, body string, hdr map[string]string) (*http.Response, string) {
	o.t.Helper()
	req, _ := http.NewRequest(method, o.issuer+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := o.hc.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	return res, readBody(o.t, res)
}

// /userinfo speaks RFC 6750 §3: 401 with a Bearer challenge for a
// missing token (no error code, §3.1) and for one that is bad, expired
// or revoked (invalid_token); 403 only for insufficient_scope; 400 for a
// malformed request.
func TestUserinfoBearerErrors(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	tok := o.loginTokens(o.oauth("web", "name", "offline_access"), testAccount, []string{"name"})
	revoked := o.loginTokens(o.oauth("web"), testAccount, nil)
	if st, _ := o.postForm(revokePath, url.Values{"token": {revoked.AccessToken}}, "web", testSecret); st != http.StatusOK {
		t.Fatalf("revoke: %d", st)
	}
	// A refresh narrowed to claim scopes mints a token without openid.
	st, r := o.postForm(tokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "scope": {"name"}}, "web", testSecret)
	if st != http.StatusOK {
		t.Fatalf("narrowed refresh: %d %v", st, r)
	}
	noOpenID := r["access_token"].(string)

	expiring := newTestOP(t, store.NewMemory(), func(o *Options) { o.AccessTokenTTL = time.Nanosecond })
	expired := expiring.loginTokens(expiring.oauth("web"), testAccount, nil)

	realm := `Bearer realm="` + o.issuer + `"`
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	tests := []struct {
		name      string
		op        *testOP
		method    string
		path      string
		body      string
		hdr       map[string]string
		status    int
		challenge string // exact WWW-Authenticate, or prefix when ending in ","
		err       string
	}{
		{"missing", o, http.MethodGet, userinfoPath, "", nil, http.StatusUnauthorized, realm, ""},
		{"garbage", o, http.MethodGet, userinfoPath, "", bearer("garbage"), http.StatusUnauthorized, realm + `, error="invalid_token",`, "invalid_token"},
		{"ID token", o, http.MethodGet, userinfoPath, "", bearer(tok.Extra("id_token").(string)), http.StatusUnauthorized, realm + `, error="invalid_token",`, "invalid_token"},
		{"revoked", o, http.MethodGet, userinfoPath, "", bearer(revoked.AccessToken), http.StatusUnauthorized, realm + `, error="invalid_token",`, "invalid_token"},
		{"expired", expiring, http.MethodGet, userinfoPath, "", bearer(expired.AccessToken), http.StatusUnauthorized, `Bearer realm="` + expiring.issuer + `", error="invalid_token",`, "invalid_token"},
		{"no openid scope", o, http.MethodGet, userinfoPath, "", bearer(noOpenID), http.StatusForbidden, realm + `, error="insufficient_scope",`, "insufficient_scope"},
		{"in the query", o, http.MethodGet, userinfoPath + "?access_token=" + url.QueryEscape(tok.AccessToken), "", nil, http.StatusBadRequest, realm + `, error="invalid_request",`, "invalid_request"},
		{"two ways", o, http.MethodPost, userinfoPath, "access_token=" + url.QueryEscape(tok.AccessToken), bearer(tok.AccessToken), http.StatusBadRequest, realm + `, error="invalid_request",`, "invalid_request"},
		{"another scheme", o, http.MethodGet, userinfoPath, "", map[string]string{"Authorization": "Basic " + basicAuth("web", testSecret)}, http.StatusBadRequest, realm + `, error="invalid_request",`, "invalid_request"},
		{"good, header", o, http.MethodGet, userinfoPath, "", bearer(tok.AccessToken), http.StatusOK, "", ""},
		{"good, form body", o, http.MethodPost, userinfoPath, "access_token=" + url.QueryEscape(tok.AccessToken), nil, http.StatusOK, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, body := tc.op.call(tc.method, tc.path, tc.body, tc.hdr)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.status, body)
			}
			ch := res.Header.Get("WWW-Authenticate")
			if strings.HasSuffix(tc.challenge, ",") && !strings.HasPrefix(ch, tc.challenge) || !strings.HasSuffix(tc.challenge, ",") && ch != tc.challenge {
				t.Fatalf("WWW-Authenticate %q, want %q", ch, tc.challenge)
			}
			if tc.err == "" {
				return
			}
			if ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); ct != "application/json" || !strings.Contains(body, `"error":"`+tc.err+`"`) {
				t.Fatalf("body %s (%s)", body, res.Header.Get("Content-Type"))
			}
		})
	}
}

// Introspection and revocation refuse clients as RFC 6749 §5.2 says: 401
// invalid_client as JSON with a Basic challenge, never text showing the
// library's internals; a missing token is invalid_request.
func TestIntrospectionRevocationErrors(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	tok := o.loginTokens(o.oauth("web"), testAccount, nil)
	at := url.QueryEscape(tok.AccessToken)
	basic := func(id, secret string) map[string]string {
		return map[string]string{"Authorization": "Basic " + basicAuth(id, secret)}
	}
	for _, path := range []string{introspectPath, revokePath} {
		for _, tc := range []struct {
			name   string
			body   string
			hdr    map[string]string
			status int
			err    string
		}{
			{"wrong secret", "token=" + at, basic("web", "wrong"), http.StatusUnauthorized, "invalid_client"},
			{"unknown client", "token=" + at, basic("nobody", "x"), http.StatusUnauthorized, "invalid_client"},
			{"no client", "token=" + at, nil, http.StatusUnauthorized, "invalid_client"},
			{"malformed Basic", "token=" + at, map[string]string{"Authorization": "Basic !!!"}, http.StatusUnauthorized, "invalid_client"},
			{"private_key_jwt client with a secret", "token=" + at, basic("pkjwt", testSecret), http.StatusUnauthorized, "invalid_client"},
			{"no token", "", basic("web", testSecret), http.StatusBadRequest, "invalid_request"},
		} {
			t.Run(path+" "+tc.name, func(t *testing.T) {
				res, body := o.call(http.MethodPost, path, tc.body, tc.hdr)
				ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
				if res.StatusCode != tc.status || ct != "application/json" || !strings.Contains(body, `"error":"`+tc.err+`"`) {
					t.Fatalf("%d %s: %s", res.StatusCode, res.Header.Get("Content-Type"), body)
				}
				for _, leak := range []string{"ErrorType=", "Parent=", "provider:", "clients:", "whitelist:"} {
					if strings.Contains(body, leak) {
						t.Fatalf("internal text %q in %s", leak, body)
					}
				}
				if ch := res.Header.Get("WWW-Authenticate"); (res.StatusCode == http.StatusUnauthorized) != strings.HasPrefix(ch, `Basic realm="`+o.issuer+`"`) {
					t.Fatalf("WWW-Authenticate %q with %d", ch, res.StatusCode)
				}
			})
		}
	}
	// A public client may revoke its tokens (RFC 7009 §2.1), not
	// introspect (RFC 7662 §2.1).
	if res, body := o.call(http.MethodPost, introspectPath, "client_id=public&token="+at, nil); res.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"invalid_client"`) {
		t.Fatalf("public client introspected: %d %s", res.StatusCode, body)
	}
	if res, body := o.call(http.MethodPost, revokePath, "client_id=public&token=unknown", nil); res.StatusCode != http.StatusOK {
		t.Fatalf("public client's revocation: %d %s", res.StatusCode, body)
	}
}

// Every authorization response names its issuer (RFC 9207), success and
// error alike, whichever part of the provider sends it: /authorize, the
// login route, consent, the callback.
func TestAuthorizationResponseIss(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	check := func(name string, loc string) {
		t.Helper()
		u, err := url.Parse(loc)
		if err != nil || u.Query().Get("iss") != o.issuer || (u.Query().Get("code") == "") == (u.Query().Get("error") == "") {
			t.Fatalf("%s: %q, want one of code and error, and iss=%s", name, loc, o.issuer)
		}
	}
	// /authorize's own refusal, after the client and redirect URI are
	// known to be good.
	res := o.get("/authorize?" + url.Values{"client_id": {"web"}, "redirect_uri": {"https://rp.example/cb"}, "response_type": {"code"}, "scope": {"openid"}, "state": {"s"}}.Encode())
	check("authorize", res.Header.Get("Location"))
	// The login route: prompt=none without a session.
	b := o.browser()
	ar := o.authorize("web", oauth2.SetAuthURLParam("prompt", "none"))
	_, loc, _ := b.get(authreq.LoginURL(ar))
	check("login_required", loc)
	// A resident's sign-in: consent denied, then allowed.
	b = o.proofed(o.pki.wallet(t, factsTaro))
	ar, _, _ = b.request("other", []string{"name"}, "")
	_, loc = b.consent(ar, "deny")
	check("access_denied", loc)
	ar, _, _ = b.request("web", []string{"name"}, "")
	_, loc = b.consent(ar, "allow")
	rp := b.callback(loc)
	check("code", rp.String())
	if rp.Query().Get("state") != "st-1" {
		t.Fatalf("state lost: %s", rp.Redacted())
	}
}

// The page for an authorization request the provider may not send back
// to the RP speaks the resident's language, chosen as every other page
// chooses it, and leads on: a language switch and the account page. It
// never redirects.
func TestAuthorizeErrorPageLanguage(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	unknown := url.Values{"client_id": {"stranger"}, "redirect_uri": {"https://rp.example/cb"}, "response_type": {"code"}, "scope": {"openid"}}
	withLocales := func(v url.Values, l string) string {
		w := url.Values{}
		for k, vs := range v {
			w[k] = vs
		}
		w.Set("ui_locales", l)
		return w.Encode()
	}
	for _, tc := range []struct {
		name   string
		query  string
		hdr    []string
		lang   string
		status int
		want   string
	}{
		{"no hint", unknown.Encode(), nil, "ja", http.StatusBadRequest, "このサービスは登録されていません。"},
		{"ui_locales", withLocales(unknown, "en"), nil, "en", http.StatusBadRequest, "This service is not registered with us."},
		{"Accept-Language", unknown.Encode(), []string{"Accept-Language", "en-GB,en;q=0.8"}, "en", http.StatusBadRequest, "This service is not registered with us."},
		{"the resident's pick beats the browser", unknown.Encode() + "&lang=ja", []string{"Accept-Language", "en"}, "ja", http.StatusBadRequest, "このサービスは登録されていません。"},
		{"oversized ui_locales ignored", withLocales(unknown, strings.Repeat("en ", 40)), nil, "ja", http.StatusBadRequest, "このサービスは登録されていません。"},
		{"wrong redirect", url.Values{"client_id": {"web"}, "redirect_uri": {"https://evil.example/cb"}, "response_type": {"code"}, "scope": {"openid"}, "ui_locales": {"en"}}.Encode(), nil, "en", http.StatusBadRequest, "return address does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, loc, body := o.browser().get("/authorize?"+tc.query, tc.hdr...)
			if status != tc.status || loc != "" {
				t.Fatalf("status %d, Location %q; want %d and none", status, loc, tc.status)
			}
			for _, want := range []string{`<html lang="` + tc.lang + `">`, tc.want, `id="error-account" href="/account"`, `id="lang-en"`, `id="lang-ja"`} {
				if !strings.Contains(body, want) {
					t.Errorf("page lacks %q:\n%s", want, body)
				}
			}
		})
	}
}
