package idp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
)

// Requests the provider must refuse by redirecting an OAuth error to the
// (valid) redirect URI, with the state.
func TestAuthorizeRedirectsErrors(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	v := oauth2.GenerateVerifier()
	base := func() url.Values {
		return url.Values{
			"client_id": {"web"}, "response_type": {"code"}, "scope": {"openid name"},
			"redirect_uri": {"https://rp.example/cb"}, "state": {"st-9"},
			"code_challenge": {oauth2.S256ChallengeFromVerifier(v)}, "code_challenge_method": {"S256"},
		}
	}
	tests := []struct {
		name  string
		edit  func(url.Values)
		error string
	}{
		{"no PKCE", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, "invalid_request"},
		{"plain PKCE", func(q url.Values) { q.Set("code_challenge", v); q.Set("code_challenge_method", "plain") }, "invalid_request"},
		{"method missing", func(q url.Values) { q.Del("code_challenge_method") }, "invalid_request"},
		{"unknown method", func(q url.Values) { q.Set("code_challenge_method", "S512") }, "invalid_request"},
		{"short challenge", func(q url.Values) { q.Set("code_challenge", "abc") }, "invalid_request"},
		{"no openid", func(q url.Values) { q.Set("scope", "name") }, "invalid_scope"},
		{"fragment mode", func(q url.Values) { q.Set("response_mode", "fragment") }, "invalid_request"},
		{"form_post mode", func(q url.Values) { q.Set("response_mode", "form_post") }, "invalid_request"},
		{"claims not JSON", func(q url.Values) { q.Set("claims", "{not json") }, "invalid_request"},
		{"claims array", func(q url.Values) { q.Set("claims", `["name"]`) }, "invalid_request"},
		{"claims member not object", func(q url.Values) { q.Set("claims", `{"userinfo":["name"]}`) }, "invalid_request"},
		{"claims twice", func(q url.Values) { q.Add("claims", `{}`); q.Add("claims", `{}`) }, "invalid_request"},
		{"implicit", func(q url.Values) { q.Set("response_type", "id_token") }, "unauthorized_client"},
		{"prompt none with login", func(q url.Values) { q.Set("prompt", "none login") }, "invalid_request"},
		{"request_uri", func(q url.Values) { q.Set("request_uri", "https://rp.example/req") }, "request_uri_not_supported"},
		// Client and redirect URI are good, so even an unparseable
		// parameter is the RP's to hear about (RFC 6749 §4.1.2.1).
		{"max_age not a number", func(q url.Values) { q.Set("max_age", "soon") }, "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := base()
			tc.edit(q)
			res := o.get(authorizePath + "?" + q.Encode())
			if res.StatusCode != http.StatusFound {
				t.Fatalf("status %d, want 302", res.StatusCode)
			}
			u, err := url.Parse(res.Header.Get("Location"))
			if err != nil || u.Host != "rp.example" || u.Path != "/cb" {
				t.Fatalf("redirect to %q", res.Header.Get("Location"))
			}
			// Errors travel where the request asked for responses (query
			// or, for fragment/implicit requests, the fragment).
			params := u.Query()
			if u.Fragment != "" {
				params, _ = url.ParseQuery(u.Fragment)
			}
			if got := params.Get("error"); got != tc.error {
				t.Fatalf("error=%q (%s), want %q", got, params.Get("error_description"), tc.error)
			}
			if params.Get("state") != "st-9" || params.Has("code") {
				t.Fatalf("bad error redirect %s", u)
			}
		})
	}
}

// Requests that must NOT be redirected: unknown client, unregistered
// redirect URI, unparseable requests. They get our HTML page.
func TestAuthorizeErrorPage(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	ch := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	tests := []struct {
		name  string
		query string
		want  string
	}{
		{"unknown client", url.Values{"client_id": {"nope"}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {"https://rp.example/cb"}, "code_challenge": {ch}, "code_challenge_method": {"S256"}}.Encode(), "not registered"},
		{"no client", url.Values{"response_type": {"code"}, "redirect_uri": {"https://rp.example/cb"}}.Encode(), "not registered"},
		{"bad redirect", url.Values{"client_id": {"web"}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {"https://evil.example/cb"}, "code_challenge": {ch}, "code_challenge_method": {"S256"}}.Encode(), "return address"},
		{"redirect prefix", url.Values{"client_id": {"web"}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {"https://rp.example/cb/x"}}.Encode(), "return address"},
		{"redirect other client", url.Values{"client_id": {"web"}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {"https://other.example/cb"}}.Encode(), "return address"},
		{"no redirect", url.Values{"client_id": {"web"}, "response_type": {"code"}, "scope": {"openid"}}.Encode(), "return address"},
		{"bad escape", "client_id=web&redirect_uri=https%3A%2F%2Frp.example%2Fcb%25zz", "return address"},
		{"loopback for confidential", url.Values{"client_id": {"web"}, "redirect_uri": {"http://127.0.0.1:8080/cb"}}.Encode(), "return address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, o.issuer+authorizePath+"?"+tc.query, nil)
			req.Header.Set("Accept-Language", "en")
			res, err := o.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, res)
			if res.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", res.StatusCode, body)
			}
			if loc := res.Header.Get("Location"); loc != "" {
				t.Fatalf("Location %q on an error page", loc)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Fatalf("Content-Type %q", ct)
			}
			if !strings.Contains(body, tc.want) || !strings.Contains(body, res.Header.Get("X-Request-ID")) {
				t.Fatalf("page lacks %q or the request ID: %s", tc.want, body)
			}
			if strings.Contains(body, "Parent=") || strings.Contains(body, "ErrorType") {
				t.Fatalf("page leaks library internals: %s", body)
			}
		})
	}
}

// A native client's loopback redirect may use any port (RFC 8252 §7.3).
func TestAuthorizeNativeLoopback(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	conf := o.oauth("public", "name")
	conf.RedirectURL = "http://127.0.0.1:53117/cb"
	v := oauth2.GenerateVerifier()
	code := o.login(conf, v, testAccount, nil)
	conf.ClientSecret = ""
	conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	if _, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(v)); err != nil {
		t.Fatalf("public client exchange: %v", err)
	}
	conf.RedirectURL = "http://127.0.0.1:53117/other"
	res := o.get(conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)))
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("other loopback path: %d", res.StatusCode)
	}
}

// The whole code flow against both stores, checked by an independent RP
// (go-oidc): ID token contents, and one pairwise sub everywhere.
func TestCodeFlow(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		o := newTestOP(t, newKV(t), nil)
		ctx := o.ctx()
		prov, err := gooidc.NewProvider(ctx, o.issuer)
		if err != nil {
			t.Fatal(err)
		}
		conf := o.oauth("web")
		conf.Endpoint = prov.Endpoint()
		conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
		tok := o.loginTokens(conf, testAccount, nil)
		raw, _ := tok.Extra("id_token").(string)
		idt, err := prov.Verifier(&gooidc.Config{ClientID: "web"}).Verify(ctx, raw)
		if err != nil {
			t.Fatalf("ID token: %v", err)
		}
		var claims map[string]any
		if err := idt.Claims(&claims); err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]any{"acr": "aal3", "nonce": "n-1", "azp": "web"} {
			if claims[k] != want {
				t.Errorf("%s = %v, want %v", k, claims[k], want)
			}
		}
		if amr, _ := claims["amr"].([]any); len(amr) != 2 || amr[0] != "hwk" || amr[1] != "pin" {
			t.Errorf("amr = %v", claims["amr"])
		}
		if _, ok := claims["auth_time"].(float64); !ok {
			t.Errorf("auth_time missing")
		}
		if tok.RefreshToken != "" {
			t.Errorf("refresh token without offline_access")
		}
		wantSub := clients.PairwiseSub(o.s.opts.PairwiseKey, "rp.example", testAccount)
		if idt.Subject != wantSub {
			t.Fatalf("ID token sub %q, want pairwise %q", idt.Subject, wantSub)
		}
		ui, err := prov.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			t.Fatalf("userinfo: %v", err)
		}
		if ui.Subject != wantSub {
			t.Fatalf("userinfo sub %q", ui.Subject)
		}
		in := o.introspect(tok.AccessToken, "web")
		if in["active"] != true || in["sub"] != wantSub || in["client_id"] != "web" || in["acr"] != "aal3" {
			t.Fatalf("introspection %v", in)
		}
	})
}

// A code works once; a replay fails and kills what the first exchange
// minted (RFC 6749 §4.1.2).
func TestCodeReplayRevokes(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		o := newTestOP(t, newKV(t), nil)
		conf := o.oauth("web", "offline_access")
		v := oauth2.GenerateVerifier()
		code := o.login(conf, v, testAccount, nil)
		tok, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := o.userinfo(tok.AccessToken); st != http.StatusOK {
			t.Fatalf("userinfo before replay: %d", st)
		}
		_, err = conf.Exchange(o.ctx(), code, oauth2.VerifierOption(v))
		var re *oauth2.RetrieveError
		if err == nil || !asRetrieve(err, &re) || re.ErrorCode != "invalid_grant" {
			t.Fatalf("replay: %v", err)
		}
		if st, body := o.userinfo(tok.AccessToken); st != http.StatusUnauthorized || body["error"] != "invalid_token" {
			t.Fatalf("userinfo after replay: %d %v", st, body)
		}
		if in := o.introspect(tok.AccessToken, "web"); in["active"] != false {
			t.Fatalf("introspection after replay: %v", in)
		}
		if st, body := o.refresh("web", tok.RefreshToken); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("refresh after replay: %d %v", st, body)
		}
	})
}

func asRetrieve(err error, re **oauth2.RetrieveError) bool {
	e, ok := err.(*oauth2.RetrieveError)
	if ok {
		*re = e
	}
	return ok
}

// Every failed exchange is refused with its error and changes nothing:
// the code still works for its own client afterwards, once.
func TestCodeExchangeFailures(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	conf := o.oauth("web")
	tests := []struct {
		name string
		run  func(code, verifier string) error
		want string
	}{
		{"wrong verifier", func(code, _ string) error {
			_, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
			return err
		}, "invalid_grant"},
		{"no verifier", func(code, _ string) error {
			_, err := conf.Exchange(o.ctx(), code)
			return err
		}, "invalid_request"},
		{"wrong secret", func(code, v string) error {
			c := *conf
			c.ClientSecret = "wrong"
			_, err := c.Exchange(o.ctx(), code, oauth2.VerifierOption(v))
			return err
		}, "invalid_client"},
		{"other client", func(code, v string) error {
			c := *o.oauth("other")
			c.RedirectURL = conf.RedirectURL
			_, err := c.Exchange(o.ctx(), code, oauth2.VerifierOption(v))
			return err
		}, "invalid_grant"},
		{"wrong redirect", func(code, v string) error {
			c := *conf
			c.RedirectURL = "https://rp.example/elsewhere"
			_, err := c.Exchange(o.ctx(), code, oauth2.VerifierOption(v))
			return err
		}, "invalid_grant"},
		{"garbage code", func(_, v string) error {
			_, err := conf.Exchange(o.ctx(), "not-a-code", oauth2.VerifierOption(v))
			return err
		}, "invalid_grant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := oauth2.GenerateVerifier()
			code := o.login(conf, v, testAccount, nil)
			err := tc.run(code, v)
			var re *oauth2.RetrieveError
			if err == nil || !asRetrieve(err, &re) || re.ErrorCode != tc.want {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
			if _, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(v)); err != nil {
				t.Fatalf("the code was spent by a failed exchange (%s): %v", tc.name, err)
			}
			if _, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(v)); err == nil {
				t.Fatal("the code worked twice")
			}
		})
	}
}

// Only the browser that signed in picks up the code, and only once.
func TestCallbackBinding(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	ctx := context.Background()
	conf := o.oauth("web")
	v := oauth2.GenerateVerifier()
	id := o.startAuth(conf, v)
	// /authorize bound the request to the browser it answered.
	good := o.bindingOf(id)
	if good == nil {
		t.Fatal("/authorize set no binding cookie")
	}
	if err := o.s.requests.Bind(ctx, id, ids.Hash(good.Value)); err != nil {
		t.Fatal(err)
	}
	if err := o.s.requests.Bind(ctx, id, ids.Hash("another browser")); err == nil {
		t.Fatal("a second binding was accepted")
	}
	if err := o.s.requests.Bind(ctx, id, "not-hex"); err == nil {
		t.Fatal("a malformed binding was accepted")
	}
	cb := authreq.CallbackURL(o.issuer, id)
	// Not completed yet: the library answers interaction_required.
	if res := o.get(cb, good); !strings.Contains(res.Header.Get("Location"), "error=interaction_required") {
		t.Fatalf("callback before completion: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	if err := completeRequest(o.s, id, authreq.Authentication{AccountID: testAccount, ACR: "aal3"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := completeRequest(o.s, id, authreq.Authentication{AccountID: testAccount2}, nil); err == nil {
		t.Fatal("completed twice")
	}
	for name, cookies := range map[string][]*http.Cookie{
		"no cookie":    nil,
		"wrong cookie": {{Name: good.Name, Value: ids.Long()}},
		"other name":   {{Name: "watashi-other", Value: good.Value}},
	} {
		res := o.get(cb, cookies...)
		if res.StatusCode != http.StatusForbidden || res.Header.Get("Location") != "" {
			t.Fatalf("%s: %d %q", name, res.StatusCode, res.Header.Get("Location"))
		}
	}
	if res := o.get(authreq.CallbackURL(o.issuer, "unknown-id"), good); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown id: %d", res.StatusCode)
	}
	first := o.get(cb, good)
	u, _ := url.Parse(first.Header.Get("Location"))
	if u.Query().Get("code") == "" {
		t.Fatalf("first callback: %q", first.Header.Get("Location"))
	}
	second := o.get(cb, good)
	u2, _ := url.Parse(second.Header.Get("Location"))
	if u2.Query().Has("code") || u2.Query().Get("error") != "invalid_request" {
		t.Fatalf("second callback minted %d %q", second.StatusCode, second.Header.Get("Location"))
	}
	if _, err := conf.Exchange(o.ctx(), u.Query().Get("code"), oauth2.VerifierOption(v)); err != nil {
		t.Fatalf("first code after a refused second callback: %v", err)
	}
}

// Refresh tokens rotate; presenting a rotated one revokes the family.
func TestRefreshRotationAndReuse(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		o := newTestOP(t, newKV(t), nil)
		tok := o.loginTokens(o.oauth("web", "offline_access"), testAccount, nil)
		if tok.RefreshToken == "" {
			t.Fatal("no refresh token with offline_access")
		}
		st, r1 := o.refresh("web", tok.RefreshToken)
		if st != http.StatusOK {
			t.Fatalf("refresh: %d %v", st, r1)
		}
		rt2, _ := r1["refresh_token"].(string)
		at2, _ := r1["access_token"].(string)
		if rt2 == "" || rt2 == tok.RefreshToken || at2 == "" {
			t.Fatalf("refresh did not rotate: %v", r1)
		}
		if in := o.introspect(at2, "web"); in["active"] != true {
			t.Fatalf("new access token inactive: %v", in)
		}
		// Another client presenting the token is refused, and consumes
		// nothing: neither the token nor the family suffers.
		if st, body := o.refresh("other", rt2); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("another client refreshed: %d %v", st, body)
		}
		if in := o.introspect(at2, "web"); in["active"] != true {
			t.Fatalf("another client's attempt revoked the family: %v", in)
		}
		// Nor does asking for a scope the family never had.
		if st, body := o.postForm(tokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}, "scope": {"openid gender"}}, "web", testSecret); st != http.StatusBadRequest || body["error"] != "invalid_scope" {
			t.Fatalf("widened refresh: %d %v", st, body)
		}
		st, r2 := o.refresh("web", rt2)
		rt3, _ := r2["refresh_token"].(string)
		if st != http.StatusOK || rt3 == "" {
			t.Fatalf("refresh after refused attempts: %d %v", st, r2)
		}
		// The rotated token's reuse by its own client revokes all.
		if st, body := o.refresh("web", tok.RefreshToken); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("reuse of rotated token: %d %v", st, body)
		}
		if st, _ := o.refresh("web", rt3); st == http.StatusOK {
			t.Fatal("family survived reuse")
		}
		for _, at := range []string{tok.AccessToken, at2} {
			if in := o.introspect(at, "web"); in["active"] != false {
				t.Fatalf("access token alive after family revocation: %v", in)
			}
		}
	})
}

// TestConcurrentRefresh presents one refresh token many times at once:
// at most one presentation gets tokens, and the others count as reuse and
// end the family.
func TestConcurrentRefresh(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		o := newTestOP(t, newKV(t), nil)
		tok := o.loginTokens(o.oauth("web", "offline_access"), testAccount, nil)
		const n = 8
		var wg sync.WaitGroup
		codes := make(chan int, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, _ := o.refresh("web", tok.RefreshToken)
				codes <- st
			}()
		}
		wg.Wait()
		close(codes)
		ok := 0
		for st := range codes {
			switch st {
			case http.StatusOK:
				ok++
			case http.StatusBadRequest:
			default:
				t.Errorf("refresh answered %d", st)
			}
		}
		if ok > 1 {
			t.Fatalf("%d of %d concurrent presentations of one refresh token got tokens", ok, n)
		}
		if in := o.introspect(tok.AccessToken, "web"); in["active"] != false {
			t.Fatalf("the family survived concurrent reuse: %v", in)
		}
	})
}

func TestRefreshDownscope(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	tok := o.loginTokens(o.oauth("web", "name", "offline_access"), testAccount, nil)
	st, r := o.postForm(tokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "scope": {"openid"}}, "web", testSecret)
	if st != http.StatusOK || r["scope"] != "openid" {
		t.Fatalf("downscoped refresh: %d %v", st, r)
	}
	// The family keeps its scopes: the next refresh may ask for name again.
	st, r = o.postForm(tokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r["refresh_token"].(string)}, "scope": {"openid name offline_access"}}, "web", testSecret)
	if st != http.StatusOK {
		t.Fatalf("refresh after downscope: %d %v", st, r)
	}
	// ...but never more than it had.
	st, _ = o.postForm(tokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r["refresh_token"].(string)}, "scope": {"openid address"}}, "web", testSecret)
	if st == http.StatusOK {
		t.Fatal("refresh widened the scope")
	}
}

func TestRevocation(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		o := newTestOP(t, newKV(t), nil)
		conf := o.oauth("web", "offline_access")

		// Access token alone: the refresh token survives.
		tok := o.loginTokens(conf, testAccount, nil)
		if st, body := o.postForm(revokePath, url.Values{"token": {tok.AccessToken}, "token_type_hint": {"access_token"}}, "other", testSecret); st != http.StatusUnauthorized {
			t.Fatalf("revocation by another client: %d %v", st, body)
		}
		if in := o.introspect(tok.AccessToken, "web"); in["active"] != true {
			t.Fatal("another client's revocation took effect")
		}
		if st, _ := o.postForm(revokePath, url.Values{"token": {tok.AccessToken}}, "web", testSecret); st != http.StatusOK {
			t.Fatalf("revoke AT: %d", st)
		}
		if in := o.introspect(tok.AccessToken, "web"); in["active"] != false {
			t.Fatal("revoked access token active")
		}
		st, r := o.refresh("web", tok.RefreshToken)
		if st != http.StatusOK {
			t.Fatalf("refresh after AT revocation: %d %v", st, r)
		}

		// Refresh token: the whole family.
		rt, at := r["refresh_token"].(string), r["access_token"].(string)
		if st, _ := o.postForm(revokePath, url.Values{"token": {rt}, "token_type_hint": {"refresh_token"}}, "web", testSecret); st != http.StatusOK {
			t.Fatalf("revoke RT: %d", st)
		}
		if in := o.introspect(at, "web"); in["active"] != false {
			t.Fatal("access token alive after its refresh token was revoked")
		}
		if st, _ := o.refresh("web", rt); st == http.StatusOK {
			t.Fatal("revoked refresh token works")
		}

		// Unknown tokens are a success (RFC 7009 §2.2).
		for _, tk := range []string{"garbage", "a.b", ""} {
			st, _ := o.postForm(revokePath, url.Values{"token": {tk}}, "web", testSecret)
			if st != http.StatusOK && !(tk == "" && st == http.StatusBadRequest) {
				t.Fatalf("revoke %q: %d", tk, st)
			}
		}

		// revokeAccountClientTokens: consent withdrawal for one RP.
		t1 := o.loginTokens(conf, testAccount2, nil)
		t2 := o.loginTokens(o.oauth("other"), testAccount2, nil)
		if err := o.s.provider.RevokeAccountClient(context.Background(), testAccount2, "web"); err != nil {
			t.Fatal(err)
		}
		if in := o.introspect(t1.AccessToken, "web"); in["active"] != false {
			t.Fatal("token of the withdrawn client alive")
		}
		if in := o.introspect(t2.AccessToken, "other"); in["active"] != true {
			t.Fatal("another client's token was revoked")
		}
	})
}

func TestIntrospectionOnlyOwnClient(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	tok := o.loginTokens(o.oauth("web"), testAccount, nil)
	if in := o.introspect(tok.AccessToken, "other"); in["active"] != false || len(in) != 1 {
		t.Fatalf("another client learned %v", in)
	}
	if in := o.introspect(tok.AccessToken, "web"); in["active"] != true {
		t.Fatalf("own client: %v", in)
	}
	if in := o.introspect(tok.RefreshToken+"x", "web"); in["active"] != false {
		t.Fatalf("garbage: %v", in)
	}
	// An ID token is not an access token.
	if in := o.introspect(tok.Extra("id_token").(string), "web"); in["active"] != false {
		t.Fatalf("ID token introspected as active: %v", in)
	}
	if st, _ := o.userinfo(tok.Extra("id_token").(string)); st == http.StatusOK {
		t.Fatal("ID token accepted at userinfo")
	}
	if st, _ := o.postForm(introspectPath, url.Values{"token": {tok.AccessToken}}, "web", "wrong"); st != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", st)
	}
	if st, _ := o.postForm(introspectPath, url.Values{"token": {tok.AccessToken}}, "public", ""); st != http.StatusUnauthorized {
		t.Fatalf("public client introspected: %d", st)
	}
}

// A client registered for RS256 gets RS256 ID tokens; go-oidc verifies
// them against our JWKS.
func TestRS256Client(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	ctx := o.ctx()
	prov, err := gooidc.NewProvider(ctx, o.issuer)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		client string
		alg    jose.SignatureAlgorithm
	}{{"rsa", jose.RS256}, {"web", jose.ES256}} {
		conf := o.oauth(tc.client)
		tok := o.loginTokens(conf, testAccount, nil)
		raw := tok.Extra("id_token").(string)
		jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		if got := jws.Signatures[0].Header.Algorithm; got != string(tc.alg) {
			t.Fatalf("%s: alg %s, want %s", tc.client, got, tc.alg)
		}
		if _, err := prov.Verifier(&gooidc.Config{ClientID: tc.client, SupportedSigningAlgs: []string{string(tc.alg)}}).Verify(ctx, raw); err != nil {
			t.Fatalf("%s: %v", tc.client, err)
		}
		// Refreshed ID tokens use the client's algorithm too, and keep acr.
		tok2 := o.loginTokens(o.oauth(tc.client, "offline_access"), testAccount, nil)
		st, r := o.refresh(tc.client, tok2.RefreshToken)
		if st != http.StatusOK {
			t.Fatalf("refresh: %d %v", st, r)
		}
		idt, err := prov.Verifier(&gooidc.Config{ClientID: tc.client, SupportedSigningAlgs: []string{string(tc.alg)}}).Verify(ctx, r["id_token"].(string))
		if err != nil {
			t.Fatalf("%s refreshed ID token: %v", tc.client, err)
		}
		var c struct {
			ACR string `json:"acr"`
		}
		if err := idt.Claims(&c); err != nil || c.ACR != "aal3" {
			t.Fatalf("refreshed ID token acr %q %v", c.ACR, err)
		}
	}
}

// Pairwise subjects: stable per sector, different across sectors and
// accounts, and the same in ID token, userinfo and introspection.
func TestPairwiseEverywhere(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	ctx := o.ctx()
	prov, err := gooidc.NewProvider(ctx, o.issuer)
	if err != nil {
		t.Fatal(err)
	}
	subs := map[string]string{}
	for _, tc := range []struct{ client, account string }{
		{"web", testAccount}, {"web2", testAccount}, {"other", testAccount}, {"web", testAccount2}, {"web", testAccount},
	} {
		tok := o.loginTokens(o.oauth(tc.client), tc.account, nil)
		idt, err := prov.Verifier(&gooidc.Config{ClientID: tc.client}).Verify(ctx, tok.Extra("id_token").(string))
		if err != nil {
			t.Fatal(err)
		}
		ui, err := prov.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			t.Fatal(err)
		}
		in := o.introspect(tok.AccessToken, tc.client)
		if idt.Subject == "" || ui.Subject != idt.Subject || in["sub"] != idt.Subject {
			t.Fatalf("%s/%s: id_token %q userinfo %q introspection %v", tc.client, tc.account, idt.Subject, ui.Subject, in["sub"])
		}
		key := tc.client + "/" + tc.account
		if prev, ok := subs[key]; ok && prev != idt.Subject {
			t.Fatalf("%s: sub not stable", key)
		}
		subs[key] = idt.Subject
	}
	if subs["web/"+testAccount] != subs["web2/"+testAccount] {
		t.Error("same sector, different sub")
	}
	if subs["web/"+testAccount] == subs["other/"+testAccount] {
		t.Error("different sectors share a sub")
	}
	if subs["web/"+testAccount] == subs["web/"+testAccount2] {
		t.Error("different accounts share a sub")
	}
}

func TestEndSession(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	tok := o.loginTokens(o.oauth("web"), testAccount, nil)
	hint := tok.Extra("id_token").(string)
	noSession := httptest.NewRequest(http.MethodGet, session.LogoutPath, nil)

	res := o.get(endSessionPath + "?" + url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {"https://rp.example/bye"}, "state": {"s9"}}.Encode())
	loc, _ := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || loc.Path != session.LogoutPath {
		t.Fatalf("end_session: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	l, ok := o.s.sessions.VerifyLogout(noSession, loc.Query().Get("logout"))
	if !ok || l.Dest != "https://rp.example/bye?state=s9" || l.ClientID != "web" || l.Confirmed {
		t.Fatalf("logout %+v %v", l, ok)
	}

	tests := []struct {
		name  string
		query url.Values
		code  int
		dest  string // "" with code 302: to /logout without destination
	}{
		{"unregistered destination", url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {"https://evil.example/"}}, http.StatusBadRequest, ""},
		{"client mismatch", url.Values{"id_token_hint": {hint}, "client_id": {"other"}}, http.StatusBadRequest, ""},
		{"bad hint", url.Values{"id_token_hint": {"eyJhbGciOiJub25lIn0.e30."}}, http.StatusBadRequest, ""},
		{"unknown client", url.Values{"client_id": {"nobody"}, "post_logout_redirect_uri": {"https://rp.example/bye"}}, http.StatusBadRequest, ""},
		{"no client: our page", url.Values{"post_logout_redirect_uri": {"https://evil.example/"}, "state": {"x"}}, http.StatusFound, ""},
		{"hint without destination", url.Values{"id_token_hint": {hint}}, http.StatusFound, ""},
		{"client_id alone", url.Values{"client_id": {"web"}, "post_logout_redirect_uri": {"https://rp.example/bye"}}, http.StatusFound, "https://rp.example/bye"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := o.get(endSessionPath + "?" + tc.query.Encode())
			if res.StatusCode != tc.code {
				t.Fatalf("%d %q", res.StatusCode, res.Header.Get("Location"))
			}
			if tc.code != http.StatusFound {
				if res.Header.Get("Location") != "" {
					t.Fatalf("refusal redirected to %q", res.Header.Get("Location"))
				}
				return
			}
			loc, _ := url.Parse(res.Header.Get("Location"))
			l, ok := o.s.sessions.VerifyLogout(noSession, loc.Query().Get("logout"))
			if loc.Path != session.LogoutPath || !ok || l.Dest != tc.dest {
				t.Fatalf("to %q: %+v %v", res.Header.Get("Location"), l, ok)
			}
		})
	}
}

// Expired codes and access tokens are refused (a 1 ns lifetime has passed
// by the time the next request arrives).
func TestExpiry(t *testing.T) {
	t.Run("code", func(t *testing.T) {
		o := newTestOP(t, store.NewMemory(), func(o *Options) { o.CodeTTL = time.Nanosecond })
		conf := o.oauth("web")
		v := oauth2.GenerateVerifier()
		code := o.login(conf, v, testAccount, nil)
		var re *oauth2.RetrieveError
		if _, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(v)); !asRetrieve(err, &re) || re.ErrorCode != "invalid_grant" {
			t.Fatalf("expired code: %v", err)
		}
	})
	t.Run("access token", func(t *testing.T) {
		o := newTestOP(t, store.NewMemory(), func(o *Options) { o.AccessTokenTTL = time.Nanosecond })
		tok := o.loginTokens(o.oauth("web"), testAccount, nil)
		if st, _ := o.userinfo(tok.AccessToken); st != http.StatusUnauthorized {
			t.Fatalf("expired access token at userinfo: %d", st)
		}
		if in := o.introspect(tok.AccessToken, "web"); in["active"] != false {
			t.Fatalf("expired access token introspected: %v", in)
		}
	})
}
