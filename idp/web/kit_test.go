package idp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// webServer builds a Server with only the web layer initialised, so that
// these tests do not depend on the provider and sign-in layers.
func webServer(t testing.TB, o Options) (*Server, *syncBuffer, *prometheus.Registry) {
	t.Helper()
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	if o.Issuer == "" {
		o.Issuer = "https://id.example.jp"
	}
	if o.Store == nil {
		o.Store = store.NewMemory()
	}
	if o.CookieKey == nil {
		o.CookieKey = bytes.Repeat([]byte{7}, 32)
	}
	o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.Metrics = reg
	o.defaults()
	s := &Server{opts: o, log: o.Logger, kv: o.Store, now: o.Now}
	if err := s.initWeb(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, logs, reg
}

func logLines(t *testing.T, logs *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

func accessLog(t *testing.T, logs *syncBuffer) map[string]any {
	t.Helper()
	for _, m := range logLines(t, logs) {
		if m["msg"] == "http request" {
			return m
		}
	}
	t.Fatalf("no access log line in %s", logs.String())
	return nil
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestRequestID(t *testing.T) {
	tests := []struct {
		name     string
		incoming string
		keep     bool
	}{
		{"none", "", false},
		{"valid uuid", "3f2b8c1e-9a4d-4e7f-8b2a-1c3d5e7f9a0b", true},
		{"valid short", "abcdEF12", true},
		{"exactly 64", strings.Repeat("a", 64), true},
		{"too short", "abc1234", false},
		{"too long", strings.Repeat("a", 65), false},
		{"space", "abcd efgh", false},
		{"newline injection", "abcdefgh\nlevel=ERROR", false},
		{"underscore", "abcd_efgh", false},
		{"non-ascii", "abcdefgh\u00e9", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, logs, _ := webServer(t, Options{})
			var inCtx string
			h := s.wrapPublic(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				inCtx = RequestIDFrom(r.Context())
			}))
			req := httptest.NewRequest("GET", "/x", nil)
			if tt.incoming != "" {
				req.Header.Set("X-Request-ID", tt.incoming)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			got := rec.Header().Get("X-Request-ID")
			if got != inCtx {
				t.Fatalf("header %q, context %q", got, inCtx)
			}
			if tt.keep && got != tt.incoming {
				t.Fatalf("valid incoming ID %q replaced by %q", tt.incoming, got)
			}
			if !tt.keep && !hexID.MatchString(got) {
				t.Fatalf("invalid incoming ID %q: got %q, want a generated one", tt.incoming, got)
			}
			if id := accessLog(t, logs)["request_id"]; id != got {
				t.Fatalf("access log request_id %v, want %q", id, got)
			}
		})
	}
	if RequestIDFrom(context.Background()) != "" {
		t.Fatal("request ID outside a request")
	}
}

func TestAccessLogCarriesNoSecrets(t *testing.T) {
	s, logs, _ := webServer(t, Options{})
	h := s.wrapPublic(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusFound)
	}))
	q := url.Values{"code": {"SECRET-CODE-123"}, "login_hint": {"山田太郎"}, "state": {"st4te-value"}}
	req := httptest.NewRequest("POST", "/authorize/callback?"+q.Encode(), strings.NewReader("password=BODY-SECRET"))
	req.Header.Set("Cookie", "watashi-bind=COOKIE-SECRET")
	req.Header.Set("Authorization", "Bearer TOKEN-SECRET")
	h.ServeHTTP(httptest.NewRecorder(), req)

	m := accessLog(t, logs)
	want := map[string]any{"level": "INFO", "method": "POST", "path": "/authorize/callback", "route": "authorize_callback", "status": float64(302)}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("access log %s = %v, want %v", k, m[k], v)
		}
	}
	if _, ok := m["duration"]; !ok {
		t.Error("access log has no duration")
	}
	all := logs.String()
	for _, secret := range []string{"SECRET-CODE-123", "山田太郎", "st4te-value", "COOKIE-SECRET", "BODY-SECRET", "TOKEN-SECRET", "code=", "?"} {
		if strings.Contains(all, secret) {
			t.Errorf("log contains %q: %s", secret, all)
		}
	}
}

func TestRequestIDReachesHandlerLogs(t *testing.T) {
	s, logs, _ := webServer(t, Options{})
	h := s.wrapPublic(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.With("component", "test").InfoContext(r.Context(), "inner")
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Request-ID", "req-12345678")
	h.ServeHTTP(httptest.NewRecorder(), req)
	for _, m := range logLines(t, logs) {
		if m["msg"] == "inner" {
			if m["request_id"] != "req-12345678" || m["component"] != "test" {
				t.Fatalf("inner log line %v", m)
			}
			return
		}
	}
	t.Fatal("inner log line missing")
}

func TestPanicRecovery(t *testing.T) {
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		wantStatus int
		wantLogged string // panic description expected in the log
		leak       string // must not appear in the log
	}{
		{
			name:       "string panic with personal data",
			handler:    func(w http.ResponseWriter, r *http.Request) { panic("address of 山田太郎: 東京都千代田区") },
			wantStatus: 500,
			wantLogged: "string",
			leak:       "山田太郎",
		},
		{
			name: "error panic",
			handler: func(w http.ResponseWriter, r *http.Request) {
				panic(errors.New("birthdate 1980-12-31"))
			},
			wantStatus: 500,
			wantLogged: "*errors.errorString",
			leak:       "1980-12-31",
		},
		{
			name: "runtime error",
			handler: func(w http.ResponseWriter, r *http.Request) {
				var m map[string]int
				m["x"] = 1
			},
			wantStatus: 500,
			wantLogged: "assignment to entry in nil map",
		},
		{
			name: "after headers",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusAccepted)
				panic("late")
			},
			wantStatus: http.StatusAccepted,
			wantLogged: "string",
			leak:       "late",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, logs, reg := webServer(t, Options{})
			rec := httptest.NewRecorder()
			s.wrapPublic(tt.handler).ServeHTTP(rec, httptest.NewRequest("GET", "/boom", nil))
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			id := rec.Header().Get("X-Request-ID")
			if tt.wantStatus == 500 && !strings.Contains(rec.Body.String(), id) {
				t.Fatalf("500 body %q does not name request ID %q", rec.Body.String(), id)
			}
			var found bool
			for _, m := range logLines(t, logs) {
				if m["msg"] == "handler panic" {
					found = true
					if m["panic"] != tt.wantLogged || m["request_id"] != id || m["level"] != "ERROR" {
						t.Fatalf("panic log %v", m)
					}
				}
			}
			if !found {
				t.Fatal("panic not logged")
			}
			if tt.leak != "" && strings.Contains(logs.String(), tt.leak) {
				t.Fatalf("log leaks %q", tt.leak)
			}
			if got := accessLog(t, logs)["status"]; got != float64(tt.wantStatus) {
				t.Fatalf("access log status %v", got)
			}
			if v := counterValue(t, reg, "watashi_http_panics_total", nil); v != 1 {
				t.Fatalf("panics counter %v", v)
			}
		})
	}
}

func TestPanicAbortHandlerPropagates(t *testing.T) {
	s, logs, reg := webServer(t, Options{})
	h := s.wrapPublic(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) }))
	defer func() {
		if p := recover(); p != http.ErrAbortHandler {
			t.Fatalf("recovered %v, want http.ErrAbortHandler", p)
		}
		if strings.Contains(logs.String(), "handler panic") {
			t.Fatal("an abort is not an error")
		}
		if v := counterValue(t, reg, "watashi_http_panics_total", nil); v != 0 {
			t.Fatalf("panics counter %v", v)
		}
	}()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	t.Fatal("panic swallowed")
}

func TestSecurityHeaders(t *testing.T) {
	clients := []*Client{
		{ID: "web", RedirectURIs: []string{"https://rp.example.com/cb", "https://rp.example.com:8443/cb2"}, PostLogout: []string{"https://www.example.org/bye"}},
		{ID: "native", RedirectURIs: []string{"http://127.0.0.1/cb", "http://[::1]:5000/cb", "com.example.app:/oauth"}},
	}
	for _, dev := range []bool{false, true} {
		s, _, _ := webServer(t, Options{Dev: dev, Clients: clients})
		rec := httptest.NewRecorder()
		s.wrapPublic(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		h := rec.Header()
		want := map[string]string{
			"X-Frame-Options":        "DENY",
			"X-Content-Type-Options": "nosniff",
			"Referrer-Policy":        "no-referrer",
		}
		for k, v := range want {
			if h.Get(k) != v {
				t.Errorf("dev=%v %s = %q, want %q", dev, k, h.Get(k), v)
			}
		}
		if hsts := h.Get("Strict-Transport-Security"); dev != (hsts == "") {
			t.Errorf("dev=%v HSTS = %q", dev, hsts)
		} else if !dev && hsts != "max-age=63072000; includeSubDomains" {
			t.Errorf("HSTS = %q", hsts)
		}
		csp := h.Get("Content-Security-Policy")
		for _, d := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'",
			"form-action 'self' com.example.app: http://127.0.0.1:* http://[::1]:* https://rp.example.com https://rp.example.com:8443 https://www.example.org"} {
			if !strings.Contains(csp, d) {
				t.Errorf("CSP %q lacks %q", csp, d)
			}
		}
		if strings.Contains(csp, "unsafe") {
			t.Errorf("CSP allows unsafe sources: %q", csp)
		}
	}
}

func TestFormActionSources(t *testing.T) {
	tests := []struct {
		name string
		uris []string
		want []string
	}{
		{"https origin, path dropped", []string{"https://RP.example.com/cb?x=1"}, []string{"https://rp.example.com"}},
		{"dedup", []string{"https://a.example/1", "https://a.example/2"}, []string{"https://a.example"}},
		{"loopback any port", []string{"http://localhost:1234/cb"}, []string{"http://localhost:*"}},
		{"http non-loopback kept exact", []string{"http://rp.example.com/cb"}, []string{"http://rp.example.com"}},
		{"private-use scheme", []string{"jp.example.app:/cb"}, []string{"jp.example.app:"}},
		{"quote injection", []string{"https://a.example'unsafe-inline'/cb"}, nil},
		{"semicolon injection", []string{"https://a.example;script-src*/cb"}, nil},
		{"relative", []string{"/cb"}, nil},
		{"garbage", []string{"%zz"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := formActionSources([]*Client{nil, {RedirectURIs: tt.uris}})
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCacheControlOnHTML(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"explicit html", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte("<p>hi"))
		}, "no-store"},
		{"sniffed html", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<!DOCTYPE html><html></html>")) }, "no-store"},
		{"html error status", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(400)
		}, "no-store"},
		{"handler's own policy kept", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Cache-Control", "private, max-age=60")
			w.Write([]byte("x"))
		}, "private, max-age=60"},
		{"json untouched", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte("{}"))
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, _ := webServer(t, Options{})
			rec := httptest.NewRecorder()
			s.wrapPublic(tt.handler).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if got := rec.Header().Get("Cache-Control"); got != tt.want {
				t.Fatalf("Cache-Control %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFlushThroughWrapper(t *testing.T) {
	s, _, _ := webServer(t, Options{})
	var flushable bool
	h := s.wrapPublic(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, flushable = w.(http.Flusher)
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("ResponseController.Flush: %v", err)
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/events", nil))
	if !flushable || !rec.Flushed {
		t.Fatalf("flushable=%v flushed=%v", flushable, rec.Flushed)
	}
}

func TestCookies(t *testing.T) {
	for _, dev := range []bool{false, true} {
		s, _, _ := webServer(t, Options{Dev: dev})
		name := s.cookieName("bind")
		wantName := "__Host-watashi-bind"
		if dev {
			wantName = "watashi-bind"
		}
		if name != wantName {
			t.Fatalf("dev=%v cookieName %q", dev, name)
		}
		rec := httptest.NewRecorder()
		s.setCookie(rec, name, "v1", 90*time.Second+time.Millisecond)
		s.clearCookie(rec, name)
		cs := rec.Result().Cookies()
		if len(cs) != 2 {
			t.Fatalf("cookies %v", cs)
		}
		set, clr := cs[0], cs[1]
		if set.Value != "v1" || set.MaxAge != 91 || set.Path != "/" || !set.HttpOnly || set.Secure == dev || set.SameSite != http.SameSiteLaxMode || set.Domain != "" {
			t.Fatalf("dev=%v set cookie %+v", dev, set)
		}
		if clr.MaxAge != -1 || clr.Path != "/" || clr.Secure == dev || clr.Name != name {
			t.Fatalf("dev=%v clear cookie %+v", dev, clr)
		}
		rec = httptest.NewRecorder()
		s.setCookie(rec, name, "session", 0)
		if c := rec.Result().Cookies()[0]; c.MaxAge != 0 || !c.Expires.IsZero() {
			t.Fatalf("session cookie %+v", c)
		}
	}
}

// csrfBrowser fetches a form page through wrapPublic and returns the
// cookie and token a real browser would hold.
func csrfBrowser(t *testing.T, s *Server, purpose string) (*http.Cookie, string) {
	t.Helper()
	var tok, again string
	h := s.wrapPublic(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok = s.csrfTokenFor(r, purpose)
		again = s.csrfTokenFor(r, purpose) // same request: no second cookie
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/consent", nil))
	cs := rec.Result().Cookies()
	if len(cs) != 1 || cs[0].Name != s.cookieName("csrf") || !cs[0].HttpOnly {
		t.Fatalf("csrf cookies %+v", cs)
	}
	if tok == "" || tok != again {
		t.Fatalf("tokens %q %q", tok, again)
	}
	// A returning browser gets the same token from its cookie.
	h = s.wrapPublic(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { again = s.csrfTokenFor(r, purpose) }))
	req := httptest.NewRequest("GET", "/consent", nil)
	req.AddCookie(cs[0])
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if again != tok || len(rec.Result().Cookies()) != 0 {
		t.Fatalf("returning browser: token %q (want %q), cookies %v", again, tok, rec.Result().Cookies())
	}
	return cs[0], tok
}

func TestCSRF(t *testing.T) {
	s, _, _ := webServer(t, Options{Issuer: "https://id.example.jp/base"})
	cookie, tok := csrfBrowser(t, s, "form")
	otherCookie, otherTok := csrfBrowser(t, s, "form")
	_, purposeTok := csrfBrowser(t, s, "logout")
	tests := []struct {
		name    string
		cookie  *http.Cookie
		field   string
		header  string
		origin  string
		sfs     string
		wantOK  bool
		purpose string
	}{
		{name: "valid, same origin", cookie: cookie, field: tok, origin: "https://id.example.jp", wantOK: true},
		{name: "valid, no origin headers", cookie: cookie, field: tok, wantOK: true},
		{name: "valid, sec-fetch-site", cookie: cookie, field: tok, sfs: "same-origin", wantOK: true},
		{name: "valid in header", cookie: cookie, header: tok, origin: "https://id.example.jp", wantOK: true},
		{name: "other purpose", cookie: cookie, field: tok, purpose: "logout"},
		{name: "token of other purpose", cookie: cookie, field: purposeTok},
		{name: "cross origin", cookie: cookie, field: tok, origin: "https://evil.example"},
		{name: "null origin", cookie: cookie, field: tok, origin: "null"},
		{name: "null origin, same-origin fetch (no-referrer page)", cookie: cookie, field: tok, origin: "null", sfs: "same-origin", wantOK: true},
		{name: "null origin, cross-site fetch", cookie: cookie, field: tok, origin: "null", sfs: "cross-site"},
		{name: "origin with other scheme", cookie: cookie, field: tok, origin: "http://id.example.jp"},
		{name: "cross site fetch", cookie: cookie, field: tok, sfs: "cross-site"},
		{name: "same site but other origin", cookie: cookie, field: tok, sfs: "same-site"},
		{name: "no cookie", field: tok},
		{name: "no token", cookie: cookie},
		{name: "other browser's token", cookie: cookie, field: otherTok},
		{name: "other browser's cookie", cookie: otherCookie, field: tok},
		{name: "malformed token", cookie: cookie, field: "!!!"},
		{name: "truncated token", cookie: cookie, field: tok[:20]},
		{name: "forged cookie and token pair", cookie: &http.Cookie{Name: cookie.Name, Value: strings.Repeat("A", 43)}, field: tok},
		{name: "short cookie", cookie: &http.Cookie{Name: cookie.Name, Value: "abc"}, field: tok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{}
			if tt.field != "" {
				form.Set("csrf_token", tt.field)
			}
			req := httptest.NewRequest("POST", "/consent", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.cookie != nil {
				req.AddCookie(tt.cookie)
			}
			if tt.header != "" {
				req.Header.Set("X-CSRF-Token", tt.header)
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
			if got := s.checkCSRFFor(req, purpose); got != tt.wantOK {
				t.Fatalf("checkCSRF = %v, want %v", got, tt.wantOK)
			}
		})
	}
	// The default pair uses the "form" purpose.
	req := httptest.NewRequest("POST", "/consent", strings.NewReader("csrf_token="+tok))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(cookie)
	if !s.checkCSRF(req) {
		t.Fatal("checkCSRF refuses a csrfTokenFor(form) token")
	}
	// Another deployment's key does not accept our tokens.
	s2, _, _ := webServer(t, Options{Issuer: "https://id.example.jp", CookieKey: bytes.Repeat([]byte{8}, 32)})
	req = httptest.NewRequest("POST", "/consent", strings.NewReader("csrf_token="+tok))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(cookie)
	if s2.checkCSRF(req) {
		t.Fatal("token accepted under another cookie key")
	}
}

func TestCSRFTokenOutsideWrapper(t *testing.T) {
	s, logs, _ := webServer(t, Options{})
	if tok := s.csrfToken(httptest.NewRequest("GET", "/", nil)); tok != "" {
		t.Fatalf("token %q without a way to set its cookie", tok)
	}
	if !strings.Contains(logs.String(), "outside wrapPublic") {
		t.Fatal("misuse not logged")
	}
}

func TestCookieKeyRequired(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    Options
		ok   bool
	}{
		{"prod without key", Options{Issuer: "https://id.example.jp"}, false},
		{"prod short key", Options{Issuer: "https://id.example.jp", CookieKey: make([]byte, 31)}, false},
		{"dev without key", Options{Issuer: "http://127.0.0.1:8080", Dev: true}, true},
		{"bad issuer", Options{Issuer: "id.example.jp", CookieKey: make([]byte, 32)}, false},
		{"no issuer", Options{CookieKey: make([]byte, 32)}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.defaults()
			s := &Server{opts: o, log: o.Logger, kv: store.NewMemory(), now: o.Now}
			err := s.initWeb(context.Background())
			if (err == nil) != tt.ok {
				t.Fatalf("initWeb: %v", err)
			}
			if err == nil && len(s.opts.CookieKey) != 32 {
				t.Fatalf("cookie key %d bytes", len(s.opts.CookieKey))
			}
		})
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		name   string
		remote string
		header []string
		hdr    string
		want   string
	}{
		{"direct", "203.0.113.5:4444", nil, "", "203.0.113.5"},
		{"direct ignores header", "203.0.113.5:4444", []string{"1.2.3.4"}, "", "203.0.113.5"},
		{"trusted proxy", "10.1.1.1:80", []string{"198.51.100.7"}, "", "198.51.100.7"},
		{"client-supplied prefix ignored", "10.1.1.1:80", []string{"1.1.1.1, 198.51.100.7"}, "", "198.51.100.7"},
		{"chain of proxies", "10.1.1.1:80", []string{"198.51.100.7, 10.2.2.2"}, "", "198.51.100.7"},
		{"several header lines", "10.1.1.1:80", []string{"1.1.1.1", "198.51.100.7"}, "", "198.51.100.7"},
		{"all trusted", "10.1.1.1:80", []string{"10.3.3.3, 10.2.2.2"}, "", "10.3.3.3"},
		{"garbage stops walk", "10.1.1.1:80", []string{"198.51.100.7, junk, 10.2.2.2"}, "", "10.2.2.2"},
		{"garbage only", "10.1.1.1:80", []string{"junk"}, "", "10.1.1.1"},
		{"no header", "10.1.1.1:80", nil, "", "10.1.1.1"},
		{"entry with port", "10.1.1.1:80", []string{"198.51.100.7:5555"}, "", "198.51.100.7"},
		{"ipv6 entry", "[fd00::1]:80", []string{"[2001:db8::9]:443"}, "", "2001:db8::9"},
		{"mapped ipv4 remote", "[::ffff:10.1.1.1]:80", []string{"198.51.100.7"}, "", "198.51.100.7"},
		{"custom header", "10.1.1.1:80", []string{"198.51.100.9"}, "X-Real-IP", "198.51.100.9"},
		{"unparsable remote", "pipe", []string{"198.51.100.7"}, "", "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, _ := webServer(t, Options{TrustedProxies: trusted, ClientIPHeader: tt.hdr})
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = tt.remote
			name := tt.hdr
			if name == "" {
				name = "X-Forwarded-For"
			}
			for _, v := range tt.header {
				req.Header.Add(name, v)
			}
			if got := s.clientIP(req).String(); got != tt.want {
				t.Fatalf("clientIP = %s, want %s", got, tt.want)
			}
		})
	}
}

func FuzzClientIP(f *testing.F) {
	f.Add("10.1.1.1:80", "198.51.100.7, 10.2.2.2")
	f.Add("[fd00::1]:1", "[2001:db8::1]:443,,, ,")
	f.Add("x", "[")
	s, _, _ := webServer(f, Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}})
	f.Fuzz(func(t *testing.T, remote, header string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = remote
		req.Header.Set("X-Forwarded-For", header)
		a := s.clientIP(req)
		if !a.IsValid() {
			return
		}
		// An address we return must come from the input.
		if a == parseHostAddr(remote) {
			return
		}
		for _, hop := range strings.Split(header, ",") {
			if a == parseHostAddr(strings.TrimSpace(hop)) {
				return
			}
		}
		t.Fatalf("clientIP %s is neither RemoteAddr nor a header hop", a)
	})
}

func FuzzRequestID(f *testing.F) {
	f.Add("3f2b8c1e-9a4d-4e7f")
	f.Add("a\r\nb")
	f.Fuzz(func(t *testing.T, id string) {
		if validRequestID(id) && !regexp.MustCompile(`^[A-Za-z0-9-]{8,64}$`).MatchString(id) {
			t.Fatalf("accepted %q", id)
		}
	})
}

// failingKV injects store failures that a live backend cannot be made to
// produce on demand.
type failingKV struct{ store.KV }

func (failingKV) Incr(context.Context, string, time.Duration) (int64, error) {
	return 0, errors.New("injected: connection refused")
}
func (failingKV) Ping(context.Context) error { return errors.New("injected: connection refused") }

func TestRateLimit(t *testing.T) {
	backends := map[string]func(t *testing.T) store.KV{
		"memory": func(t *testing.T) store.KV { return store.NewMemory() },
		"redis": func(t *testing.T) store.KV {
			r, err := store.NewRedis(store.RedisOptions{Addrs: []string{storetest.StartRedis(t)}, Prefix: "rltest:"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			return r
		},
	}
	for name, mk := range backends {
		t.Run(name, func(t *testing.T) {
			now := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
			s, _, reg := webServer(t, Options{Store: mk(t), Now: func() time.Time { return now }})
			ctx := context.Background()
			for i := 1; i <= 3; i++ {
				if !s.rateLimit(ctx, "tx", "198.51.100.7", 3, time.Minute) {
					t.Fatalf("event %d refused", i)
				}
			}
			if s.rateLimit(ctx, "tx", "198.51.100.7", 3, time.Minute) {
				t.Fatal("4th event allowed")
			}
			if !s.rateLimit(ctx, "tx", "198.51.100.8", 3, time.Minute) {
				t.Fatal("another key shares the counter")
			}
			if !s.rateLimit(ctx, "wallet", "198.51.100.7", 3, time.Minute) {
				t.Fatal("another bucket shares the counter")
			}
			now = now.Add(59 * time.Second)
			if s.rateLimit(ctx, "tx", "198.51.100.7", 3, time.Minute) {
				t.Fatal("allowed within the same window")
			}
			now = now.Add(time.Second)
			if !s.rateLimit(ctx, "tx", "198.51.100.7", 3, time.Minute) {
				t.Fatal("refused in the next window")
			}
			if v := counterValue(t, reg, "watashi_rate_limited_total", map[string]string{"bucket": "tx"}); v != 2 {
				t.Fatalf("rate limited counter %v, want 2", v)
			}
			if s.rateLimit(ctx, "tx", "k", 0, time.Minute) || s.rateLimit(ctx, "tx", "k", 1, 0) {
				t.Fatal("a zero limit or window allows")
			}
		})
	}
	t.Run("store down allows", func(t *testing.T) {
		s, logs, _ := webServer(t, Options{Store: failingKV{store.NewMemory()}})
		if !s.rateLimit(context.Background(), "tx", "198.51.100.7", 1, time.Minute) {
			t.Fatal("store failure refused the request")
		}
		if !strings.Contains(logs.String(), "rate limit unavailable") {
			t.Fatal("store failure not logged")
		}
	})
}

func TestRateLimitKeyHidesClient(t *testing.T) {
	s, _, _ := webServer(t, Options{})
	k := s.rateLimitKey("tx", "198.51.100.7", 42)
	if !regexp.MustCompile(`^rl:tx:[A-Za-z0-9_-]{22}:42$`).MatchString(k) || strings.Contains(k, "198.51") {
		t.Fatalf("key %q", k)
	}
	if k == s.rateLimitKey("tx", "198.51.100.8", 42) {
		t.Fatal("keys collide")
	}
}

func counterValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == k && lp.GetValue() == v {
			return true
		}
	}
	return false
}

func TestMetricsRoutes(t *testing.T) {
	s, _, reg := webServer(t, Options{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/wallet/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	h := s.wrapPublic(mux)
	for _, p := range []string{"/login?id=1", "/wallet/abc", "/wallet/def", "/.well-known/openid-configuration", "/oauth/token", "/random/scanner/path", "/wp-admin.php"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	tests := []struct {
		route, code string
		want        float64
	}{
		{"GET /login", "200", 1},
		{"/wallet/{id}", "418", 2},
		{"discovery", "200", 1},
		{"token", "200", 1},
		{"other", "200", 2},
	}
	for _, tt := range tests {
		if v := counterValue(t, reg, "watashi_http_requests_total", map[string]string{"route": tt.route, "code": tt.code}); v != tt.want {
			t.Errorf("requests{route=%q,code=%q} = %v, want %v", tt.route, tt.code, v, tt.want)
		}
	}
	if v := counterValue(t, reg, "watashi_http_request_duration_seconds", map[string]string{"route": "other"}); v != 2 {
		t.Errorf("duration samples for other = %v", v)
	}
	// Two servers on one registry share the collectors instead of failing.
	o := Options{Issuer: "https://id.example.jp", CookieKey: make([]byte, 32), Metrics: reg, Store: store.NewMemory()}
	o.defaults()
	s2 := &Server{opts: o, log: o.Logger, kv: o.Store, now: o.Now}
	if err := s2.initWeb(context.Background()); err != nil {
		t.Fatalf("second server on the same registry: %v", err)
	}
}
