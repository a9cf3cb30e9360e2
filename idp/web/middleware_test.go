package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

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
		{"quote", `abcdefgh"x`, false},
		{"non-ascii", "abcdefgh\u00e9", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, logs, _ := newKit(t, Options{})
			var inCtx string
			h := k.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				inCtx = RequestID(r.Context())
			}), nil)
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
			if !tt.keep && tt.incoming != "" && strings.Contains(logs.String(), tt.incoming) {
				t.Fatalf("rejected ID %q reached the log", tt.incoming)
			}
		})
	}
	t.Run("unique", func(t *testing.T) {
		k, _, _ := newKit(t, Options{})
		seen := map[string]bool{}
		for range 100 {
			rec := httptest.NewRecorder()
			k.Wrap(http.NotFoundHandler(), nil).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			id := rec.Header().Get("X-Request-ID")
			if seen[id] {
				t.Fatalf("request ID %q generated twice", id)
			}
			seen[id] = true
		}
	})
	if RequestID(context.Background()) != "" {
		t.Fatal("request ID outside a request")
	}
	if got := RequestID(WithRequestID(context.Background(), "job-12345678")); got != "job-12345678" {
		t.Fatalf("WithRequestID: %q", got)
	}
}

func FuzzRequestID(f *testing.F) {
	f.Add("3f2b8c1e-9a4d-4e7f")
	f.Add("a\r\nb")
	f.Add("abcdefgh\u00e9")
	shape := regexp.MustCompile(`^[A-Za-z0-9-]{8,64}$`)
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := ValidRequestID(id), shape.MatchString(id); got != want {
			t.Fatalf("ValidRequestID(%q) = %v, want %v", id, got, want)
		}
	})
}

func TestAccessLogCarriesNoSecrets(t *testing.T) {
	k, logs, _ := newKit(t, Options{})
	mux := http.NewServeMux()
	mux.HandleFunc("/authorize/callback", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusFound)
	})
	h := k.Wrap(mux, map[string]string{"/authorize/callback": "authorize_callback"})
	q := url.Values{"code": {"SECRET-CODE-123"}, "login_hint": {"山田太郎"}, "state": {"st4te-value"}}
	req := httptest.NewRequest("POST", "/authorize/callback?"+q.Encode(), strings.NewReader("password=BODY-SECRET"))
	req.Header.Set("Cookie", "watashi-bind=COOKIE-SECRET")
	req.Header.Set("Authorization", "Bearer TOKEN-SECRET")
	req.Header.Set("X-Forwarded-For", "203.0.113.99")
	req.RemoteAddr = "198.51.100.23:5555"
	h.ServeHTTP(httptest.NewRecorder(), req)

	m := accessLog(t, logs)
	want := map[string]any{"level": "INFO", "method": "POST", "path": "/authorize/callback", "route": "authorize_callback", "status": float64(302), "bytes": float64(0)}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("access log %s = %v, want %v", k, m[k], v)
		}
	}
	if _, ok := m["duration"]; !ok {
		t.Error("access log has no duration")
	}
	all := logs.String()
	for _, secret := range []string{"SECRET-CODE-123", "山田太郎", "st4te-value", "COOKIE-SECRET", "BODY-SECRET", "TOKEN-SECRET", "code=", "?", "203.0.113.99", "198.51.100.23"} {
		if strings.Contains(all, secret) {
			t.Errorf("log contains %q: %s", secret, all)
		}
	}
}

func TestAccessLogLongPath(t *testing.T) {
	k, logs, _ := newKit(t, Options{})
	long := "/" + strings.Repeat("a", 1000)
	k.Wrap(http.NotFoundHandler(), nil).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", long, nil))
	if p, _ := accessLog(t, logs)["path"].(string); p != long[:maxLoggedPath]+"..." {
		t.Fatalf("logged path of %d bytes: %q", len(p), p)
	}
}

func TestRequestIDReachesHandlerLogs(t *testing.T) {
	k, logs, _ := newKit(t, Options{})
	h := k.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.Logger().With("component", "test").InfoContext(r.Context(), "inner")
		// Wrapping an already wrapped logger must not add the ID twice.
		NewLogger(k.Logger()).InfoContext(r.Context(), "rewrapped")
	}), nil)
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Request-ID", "req-12345678")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if m := logLine(t, logs, "inner"); m["request_id"] != "req-12345678" || m["component"] != "test" {
		t.Fatalf("inner log line %v", m)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"rewrapped"`) && strings.Count(line, `"request_id"`) != 1 {
			t.Fatalf("request_id not exactly once: %s", line)
		}
	}
	// Outside a request, nothing is added.
	logs2 := &syncBuffer{}
	NewLogger(slog.New(slog.NewJSONHandler(logs2, nil))).Info("background")
	if strings.Contains(logs2.String(), "request_id") {
		t.Fatalf("request_id outside a request: %s", logs2.String())
	}
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
			name: "headers of the abandoned answer dropped",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.SetCookie(w, &http.Cookie{Name: "session", Value: "half-made"})
				w.Header().Set("Location", "https://rp.example.com/cb?code=x")
				w.Header().Set("Content-Type", "text/html")
				panic("half way")
			},
			wantStatus: 500,
			wantLogged: "string",
			leak:       "half way",
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
			k, logs, reg := newKit(t, Options{})
			rec := httptest.NewRecorder()
			k.Wrap(tt.handler, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/boom", nil))
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			id := rec.Header().Get("X-Request-ID")
			if tt.wantStatus == 500 {
				if !strings.Contains(rec.Body.String(), id) {
					t.Fatalf("500 body %q does not name request ID %q", rec.Body.String(), id)
				}
				h := rec.Header()
				if h.Get("Set-Cookie") != "" || h.Get("Location") != "" || h.Get("Content-Type") != "text/plain; charset=utf-8" || h.Get("Cache-Control") != "no-store" {
					t.Fatalf("500 headers %v", h)
				}
				if h.Get("Content-Security-Policy") == "" {
					t.Fatal("500 lost the security headers")
				}
			}
			m := logLine(t, logs, "handler panic")
			if m["panic"] != tt.wantLogged || m["request_id"] != id || m["level"] != "ERROR" {
				t.Fatalf("panic log %v", m)
			}
			if s, _ := m["stack"].(string); !strings.Contains(s, "runtime/debug.Stack") {
				t.Fatalf("panic log has no stack: %v", m)
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
	k, logs, reg := newKit(t, Options{})
	h := k.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) }), nil)
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
		// The aborted request is still counted and logged.
		accessLog(t, logs)
	}()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	t.Fatal("panic swallowed")
}

func TestSecurityHeaders(t *testing.T) {
	targets := FormActionSources([]string{
		"https://rp.example.com/cb", "https://rp.example.com:8443/cb2", "https://www.example.org/bye",
		"http://127.0.0.1/cb", "http://[::1]:5000/cb", "com.example.app:/oauth",
	})
	tests := []struct {
		name       string
		dev        bool
		targets    []string
		formAction string
	}{
		{"production", false, targets, "form-action 'self' com.example.app: http://127.0.0.1:* http://[::1]:* https://rp.example.com https://rp.example.com:8443 https://www.example.org"},
		{"dev", true, targets, "form-action 'self' com.example.app: http://127.0.0.1:* http://[::1]:* https://rp.example.com https://rp.example.com:8443 https://www.example.org"},
		{"no clients", false, nil, "form-action 'self'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, _, _ := newKit(t, Options{Dev: tt.dev, FormTargets: tt.targets})
			rec := httptest.NewRecorder()
			k.Wrap(http.NotFoundHandler(), nil).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			h := rec.Header()
			want := map[string]string{
				"X-Frame-Options":        "DENY",
				"X-Content-Type-Options": "nosniff",
				"Referrer-Policy":        "no-referrer",
			}
			for k, v := range want {
				if h.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, h.Get(k), v)
				}
			}
			if hsts := h.Get("Strict-Transport-Security"); tt.dev != (hsts == "") {
				t.Errorf("HSTS = %q", hsts)
			} else if !tt.dev && hsts != "max-age=63072000; includeSubDomains" {
				t.Errorf("HSTS = %q", hsts)
			}
			csp := h.Get("Content-Security-Policy")
			directives := strings.Split(csp, "; ")
			for _, d := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'", tt.formAction} {
				found := false
				for _, got := range directives {
					found = found || got == d
				}
				if !found {
					t.Errorf("CSP %q lacks directive %q", csp, d)
				}
			}
			if strings.Contains(csp, "unsafe") || strings.Contains(csp, "*;") {
				t.Errorf("CSP allows unsafe sources: %q", csp)
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
			_, _ = w.Write([]byte("<p>hi"))
		}, "no-store"},
		{"upper-case content type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "TEXT/HTML")
			_, _ = w.Write([]byte("<p>hi"))
		}, "no-store"},
		{"sniffed html", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("<!DOCTYPE html><html></html>")) }, "no-store"},
		{"html error status", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(400)
		}, "no-store"},
		{"handler's own policy kept", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Cache-Control", "private, max-age=60")
			_, _ = w.Write([]byte("x"))
		}, "private, max-age=60"},
		{"json untouched", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("{}"))
		}, ""},
		{"sniffed text untouched", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("plain words")) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, _, _ := newKit(t, Options{})
			rec := httptest.NewRecorder()
			k.Wrap(tt.handler, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			// Result: the headers as sent, not as changed afterwards.
			if got := rec.Result().Header.Get("Cache-Control"); got != tt.want {
				t.Fatalf("Cache-Control %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFlushThroughWrapper(t *testing.T) {
	k, logs, _ := newKit(t, Options{})
	var flushable bool
	h := k.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, flushable = w.(http.Flusher)
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("ResponseController.Flush: %v", err)
		}
		// Deadlines reach the connection through Unwrap; the recorder
		// has none, which must be reported as such, not hidden.
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Second)); !errors.Is(err, http.ErrNotSupported) {
			t.Errorf("SetWriteDeadline: %v", err)
		}
	}), nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/events", nil))
	if !flushable || !rec.Flushed {
		t.Fatalf("flushable=%v flushed=%v", flushable, rec.Flushed)
	}
	if rec.Code != http.StatusOK || accessLog(t, logs)["status"] != float64(200) {
		t.Fatalf("status %d", rec.Code)
	}
}

func TestMetricsRoutes(t *testing.T) {
	k, logs, reg := newKit(t, Options{})
	mux := http.NewServeMux()
	nop := func(w http.ResponseWriter, r *http.Request) {}
	mux.HandleFunc("GET /login", nop)
	mux.HandleFunc("/wallet/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	// The provider's endpoints, which keep short labels through routes.
	mux.HandleFunc("/.well-known/openid-configuration", nop)
	mux.HandleFunc("/oauth/token", nop)
	mux.HandleFunc("/", nop)
	routes := map[string]string{
		"/.well-known/openid-configuration": "discovery",
		"/oauth/token":                      "token",
		"/never/mounted":                    "unused",
	}
	h := k.Wrap(mux, routes)
	for _, p := range []string{"/login?id=1", "/wallet/abc", "/wallet/def", "/.well-known/openid-configuration", "/oauth/token", "/random/scanner/path", "/wp-admin.php"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	// No catch-all: a miss (404) and a wrong method (405) match no
	// pattern, so they are "other" too.
	bare := http.NewServeMux()
	bare.HandleFunc("GET /login", nop)
	for _, req := range []*http.Request{httptest.NewRequest("GET", "/nope", nil), httptest.NewRequest("POST", "/login", nil)} {
		k.Wrap(bare, routes).ServeHTTP(httptest.NewRecorder(), req)
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
		{"other", "404", 1},
		{"other", "405", 1},
		{"/", "200", 0},
		{"unused", "200", 0},
	}
	for _, tt := range tests {
		if v := counterValue(t, reg, "watashi_http_requests_total", map[string]string{"route": tt.route, "code": tt.code}); v != tt.want {
			t.Errorf("requests{route=%q,code=%q} = %v, want %v", tt.route, tt.code, v, tt.want)
		}
	}
	if v := counterValue(t, reg, "watashi_http_request_duration_seconds", map[string]string{"route": "other"}); v != 4 {
		t.Errorf("duration samples for other = %v", v)
	}
	if m := accessLog(t, logs); m["route"] != "GET /login" {
		t.Errorf("access log route %v", m["route"])
	}
}
