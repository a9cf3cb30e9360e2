package web

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// csrfBrowser fetches a form page through Wrap and returns the cookie and
// token a real browser would hold.
func csrfBrowser(t *testing.T, k *Kit, purpose string) (*http.Cookie, string) {
	t.Helper()
	var tok, again string
	h := k.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok = k.CSRFTokenFor(w, r, purpose)
		again = k.CSRFTokenFor(w, r, purpose) // same response: no second cookie
	}), nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/consent", nil))
	cs := rec.Result().Cookies()
	if len(cs) != 1 || cs[0].Name != k.CookieName("csrf") || !cs[0].HttpOnly || cs[0].MaxAge != 0 {
		t.Fatalf("csrf cookies %+v", cs)
	}
	if tok == "" || tok != again {
		t.Fatalf("tokens %q %q", tok, again)
	}
	// A returning browser gets the same token from its cookie.
	h = k.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { again = k.CSRFTokenFor(w, r, purpose) }), nil)
	req := httptest.NewRequest("GET", "/consent", nil)
	req.AddCookie(cs[0])
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if again != tok || len(rec.Result().Cookies()) != 0 {
		t.Fatalf("returning browser: token %q (want %q), cookies %v", again, tok, rec.Result().Cookies())
	}
	return cs[0], tok
}

// csrfPost is a form post carrying cookie and the token in csrf_token,
// with no Origin or Sec-Fetch-Site.
func csrfPost(cookie *http.Cookie, tok string) *http.Request {
	req := httptest.NewRequest("POST", "/consent", strings.NewReader(url.Values{CSRFField: {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cookie != nil {
		req.AddCookie(cookie)
	}
	return req
}

func TestCSRF(t *testing.T) {
	k, _, _ := newKit(t, Options{Issuer: "https://id.example.jp/base"})
	cookie, tok := csrfBrowser(t, k, "form")
	otherCookie, otherTok := csrfBrowser(t, k, "form")
	_, purposeTok := csrfBrowser(t, k, "logout")
	tests := []struct {
		name    string
		method  string // POST unless set
		host    string // httptest's example.com unless set
		cookie  *http.Cookie
		field   string
		header  string
		origin  string
		sfs     string
		wantOK  bool
		purpose string
	}{
		// httptest's Host is example.com: this passes only because New
		// adds the issuer's origin (path dropped) as a trusted origin, as
		// it must behind a proxy that rewrites Host.
		{name: "valid, issuer origin", cookie: cookie, field: tok, origin: "https://id.example.jp", wantOK: true},
		{name: "valid, no origin headers", cookie: cookie, field: tok, wantOK: true},
		{name: "valid, sec-fetch-site", cookie: cookie, field: tok, sfs: "same-origin", wantOK: true},
		{name: "valid in header", cookie: cookie, header: tok, origin: "https://id.example.jp", wantOK: true},
		{name: "header wins over field", cookie: cookie, header: "!!!", field: tok},
		{name: "valid PUT", method: "PUT", cookie: cookie, header: tok, sfs: "same-origin", wantOK: true},
		// Safe methods skip the origin layer, never the token.
		{name: "GET, cross site, valid token", method: "GET", cookie: cookie, header: tok, sfs: "cross-site", wantOK: true},
		{name: "GET without token", method: "GET", cookie: cookie},
		{name: "other purpose", cookie: cookie, field: tok, purpose: "logout"},
		{name: "token of other purpose", cookie: cookie, field: purposeTok},
		{name: "cross origin", cookie: cookie, field: tok, origin: "https://evil.example"},
		{name: "issuer's host on another port", cookie: cookie, field: tok, origin: "https://id.example.jp:8443"},
		{name: "null origin", cookie: cookie, field: tok, origin: "null"},
		// Our pages send Referrer-Policy: no-referrer, under which browsers
		// serialise the Origin of their own posts as "null";
		// Sec-Fetch-Site still tells where the post came from.
		{name: "null origin, same-origin fetch (no-referrer page)", cookie: cookie, field: tok, origin: "null", sfs: "same-origin", wantOK: true},
		{name: "null origin, cross-site fetch", cookie: cookie, field: tok, origin: "null", sfs: "cross-site"},
		{name: "origin with other scheme", cookie: cookie, field: tok, origin: "http://id.example.jp"},
		{name: "cross site fetch", cookie: cookie, field: tok, sfs: "cross-site"},
		{name: "cross site fetch from evil origin", cookie: cookie, field: tok, sfs: "cross-site", origin: "https://evil.example"},
		{name: "same site but other origin", cookie: cookie, field: tok, sfs: "same-site"},
		{name: "unknown sec-fetch-site", cookie: cookie, field: tok, sfs: "bogus"},
		// Changed with CrossOriginProtection: Sec-Fetch-Site: none (a
		// navigation the user started from the address bar or a bookmark)
		// used to be refused; no other site can cause it, so it passes the
		// origin layer. The token is still required.
		{name: "sec-fetch-site none", cookie: cookie, field: tok, sfs: "none", wantOK: true},
		{name: "sec-fetch-site none without token", cookie: cookie, sfs: "none"},
		// Changed with CrossOriginProtection: without Sec-Fetch-Site (old
		// browsers), an Origin whose host is the request's Host passes,
		// whatever its scheme: a page cannot forge Origin, Host is where
		// the browser sent the post, and HSTS (set outside development)
		// keeps browsers off http. The token is still required.
		{name: "origin host equals Host", host: "id.example.jp", cookie: cookie, field: tok, origin: "https://id.example.jp", wantOK: true},
		{name: "origin host equals Host, http", host: "id.example.jp", cookie: cookie, field: tok, origin: "http://id.example.jp", wantOK: true},
		{name: "origin host equals Host, no token", host: "id.example.jp", cookie: cookie, origin: "https://id.example.jp"},
		{name: "origin host differs from Host", host: "id.example.jp", cookie: cookie, field: tok, origin: "https://evil.example"},
		// Changed with CrossOriginProtection: a cross-site fetch whose
		// Origin is the issuer's is exempt as a trusted origin. Origin is
		// set by the browser, so only a page of the issuer sends it (such
		// a request reaches us under another host name).
		{name: "cross-site fetch from the issuer origin", cookie: cookie, field: tok, sfs: "cross-site", origin: "https://id.example.jp", wantOK: true},
		{name: "no cookie", field: tok},
		{name: "no token", cookie: cookie},
		{name: "other browser's token", cookie: cookie, field: otherTok},
		{name: "other browser's cookie", cookie: otherCookie, field: tok},
		{name: "malformed token", cookie: cookie, field: "!!!"},
		{name: "truncated token", cookie: cookie, field: tok[:20]},
		{name: "padded token", cookie: cookie, field: tok + "="},
		{name: "forged cookie and token pair", cookie: &http.Cookie{Name: cookie.Name, Value: strings.Repeat("A", 43)}, field: tok},
		{name: "short cookie", cookie: &http.Cookie{Name: cookie.Name, Value: "abc"}, field: tok},
		{name: "cookie under the dev name", cookie: &http.Cookie{Name: "watashi-csrf", Value: cookie.Value}, field: tok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{}
			if tt.field != "" {
				form.Set(CSRFField, tt.field)
			}
			method := tt.method
			if method == "" {
				method = "POST"
			}
			req := httptest.NewRequest(method, "/consent", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.host != "" {
				req.Host = tt.host
			}
			if tt.cookie != nil {
				req.AddCookie(tt.cookie)
			}
			if tt.header != "" {
				req.Header.Set(CSRFHeader, tt.header)
			}
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			if tt.sfs != "" {
				req.Header.Set("Sec-Fetch-Site", tt.sfs)
			}
			purpose := tt.purpose
			if purpose == "" {
				purpose = "form"
			}
			if got := k.CheckCSRFFor(req, purpose); got != tt.wantOK {
				t.Fatalf("CheckCSRFFor = %v, want %v", got, tt.wantOK)
			}
		})
	}
	// The default pair uses the "form" purpose.
	if !k.CheckCSRF(csrfPost(cookie, tok)) {
		t.Fatal("CheckCSRF refuses a CSRFTokenFor(form) token")
	}
	if k.CheckCSRF(csrfPost(cookie, purposeTok)) {
		t.Fatal("CheckCSRF accepts a logout token")
	}
	// Another deployment's key does not accept our tokens.
	k2, _, _ := newKit(t, Options{CookieKey: bytes.Repeat([]byte{8}, 32)})
	if k2.CheckCSRF(csrfPost(cookie, tok)) {
		t.Fatal("token accepted under another cookie key")
	}
}

// TestCSRFToken covers where the secret comes from. CSRFToken takes the
// response, so unlike the old csrfToken(r) it needs no request state from
// the middleware and works outside Wrap too; what it must still get right
// is setting the cookie at most once per response.
func TestCSRFToken(t *testing.T) {
	k, _, _ := newKit(t, Options{})
	name := k.CookieName("csrf")
	valid, _ := csrfBrowser(t, k, "form")
	tests := []struct {
		name      string
		cookie    *http.Cookie
		setup     func(w http.ResponseWriter) // before the token is asked for
		wantSet   bool                        // a new secret cookie on the response
		wantValue string                      // the secret used, when known
	}{
		{name: "new browser", wantSet: true},
		{name: "returning browser", cookie: valid, wantValue: valid.Value},
		{name: "malformed cookie replaced", cookie: &http.Cookie{Name: name, Value: "abc"}, wantSet: true},
		{name: "secret already set on this response", setup: func(w http.ResponseWriter) { k.SetCookie(w, name, valid.Value, 0) }, wantValue: valid.Value},
		{name: "malformed secret on this response ignored", setup: func(w http.ResponseWriter) { k.SetCookie(w, name, "abc", 0) }, wantSet: true},
		{name: "cleared on this response", cookie: &http.Cookie{Name: name, Value: "abc"}, setup: func(w http.ResponseWriter) { k.ClearCookie(w, name) }, wantSet: true},
		// The browser would end without the secret: a token for it is useless.
		{name: "set then cleared on this response", setup: func(w http.ResponseWriter) { k.SetCookie(w, name, valid.Value, 0); k.ClearCookie(w, name) }, wantSet: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/consent", nil)
			if tt.cookie != nil {
				req.AddCookie(tt.cookie)
			}
			rec := httptest.NewRecorder() // no Wrap
			if tt.setup != nil {
				tt.setup(rec)
			}
			before := len(setCookies(rec.Header()))
			form := k.CSRFToken(rec, req)
			logout := k.CSRFTokenFor(rec, req, "logout")
			again := k.CSRFToken(rec, req)
			if form == "" || form != again || form == logout {
				t.Fatalf("tokens form=%q again=%q logout=%q", form, again, logout)
			}
			cs := setCookies(rec.Header())
			if set := len(cs) - before; set != map[bool]int{true: 1, false: 0}[tt.wantSet] {
				t.Fatalf("%d cookies set on the response: %v", set, cs)
			}
			secret := tt.wantValue
			if tt.wantSet {
				c := cs[len(cs)-1]
				if c.Name != name || !validCSRFSecret(c.Value) || !c.HttpOnly || !c.Secure || c.Path != "/" || c.SameSite != http.SameSiteLaxMode {
					t.Fatalf("secret cookie %+v", c)
				}
				secret = c.Value
			}
			// Both tokens check against the one secret the browser ends with.
			sc := &http.Cookie{Name: name, Value: secret}
			if !k.CheckCSRF(csrfPost(sc, form)) {
				t.Fatal("form token refused")
			}
			if !k.CheckCSRFFor(csrfPost(sc, logout), "logout") {
				t.Fatal("logout token refused")
			}
		})
	}
}

// TestCSRFTokenAfterHeader: a cookie made after the response started is
// lost, and every post of that form will be refused; the log says why.
// The old csrfToken logged this too.
func TestCSRFTokenAfterHeader(t *testing.T) {
	k, _, _ := newKit(t, Options{})
	cookie, _ := csrfBrowser(t, k, "form")
	for _, tt := range []struct {
		name    string
		cookie  *http.Cookie
		wantLog bool
	}{
		{"new browser", nil, true},
		{"browser with the cookie needs none", cookie, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, logs, _ := newKit(t, Options{})
			req := httptest.NewRequest("GET", "/", nil)
			if tt.cookie != nil {
				req.AddCookie(tt.cookie)
			}
			k.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusOK)
				_ = k.CSRFToken(w, r)
			}), nil).ServeHTTP(httptest.NewRecorder(), req)
			const msg = "csrf cookie needed after the response started; the form will be refused"
			if !tt.wantLog {
				if strings.Contains(logs.String(), msg) {
					t.Fatalf("logged: %s", logs.String())
				}
				return
			}
			if m := logLine(t, logs, msg); m["level"] != "ERROR" || m["request_id"] == nil {
				t.Fatalf("log %v", m)
			}
		})
	}
}

// setCookies parses the Set-Cookie lines of h as they stand now (a
// recorder's Result is a snapshot taken once).
func setCookies(h http.Header) []*http.Cookie {
	return (&http.Response{Header: h}).Cookies()
}
