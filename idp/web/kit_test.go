package web

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/store"
)

func TestNew(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	tests := []struct {
		name        string
		o           Options
		noCounter   bool
		noTemplates bool
		wantErr     string // "" when New must succeed
	}{
		{name: "production", o: Options{Issuer: "https://id.example.jp", CookieKey: key}},
		{name: "issuer with path", o: Options{Issuer: "https://id.example.jp/base", CookieKey: key}},
		{name: "dev over http", o: Options{Issuer: "http://127.0.0.1:8080", Dev: true, CookieKey: key}},
		{name: "longer key", o: Options{Issuer: "https://id.example.jp", CookieKey: make([]byte, 64)}},
		{name: "key of 31 bytes", o: Options{Issuer: "https://id.example.jp", CookieKey: make([]byte, 31)}, wantErr: "cookie key"},
		{name: "no key", o: Options{Issuer: "https://id.example.jp"}, wantErr: "cookie key"},
		// The old initWeb made up a throwaway key in development. That is
		// the provider's job now (idp.secrets fills Options.CookieKey
		// before it builds the Kit), so the Kit itself never runs without
		// a key, in development or not.
		{name: "dev without key", o: Options{Issuer: "http://127.0.0.1:8080", Dev: true}, wantErr: "cookie key"},
		{name: "issuer without scheme", o: Options{Issuer: "id.example.jp", CookieKey: key}, wantErr: "absolute http(s) URL"},
		{name: "ftp issuer", o: Options{Issuer: "ftp://id.example.jp", CookieKey: key}, wantErr: "absolute http(s) URL"},
		{name: "javascript issuer", o: Options{Issuer: "javascript:alert(1)", CookieKey: key}, wantErr: "absolute http(s) URL"},
		{name: "issuer without host", o: Options{Issuer: "https:///path", CookieKey: key}, wantErr: "absolute http(s) URL"},
		{name: "unparsable issuer", o: Options{Issuer: "https://id.example.jp/%zz", CookieKey: key}, wantErr: "absolute http(s) URL"},
		{name: "no issuer", o: Options{CookieKey: key}, wantErr: "absolute http(s) URL"},
		{name: "no counter", o: Options{Issuer: "https://id.example.jp", CookieKey: key}, noCounter: true, wantErr: "Counter"},
		{name: "no templates", o: Options{Issuer: "https://id.example.jp", CookieKey: key}, noTemplates: true, wantErr: "Templates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			if !tt.noCounter {
				o.Counter = store.NewMemory()
			}
			if !tt.noTemplates {
				o.Templates = mustTemplates(t)
			}
			o.Metrics = prometheus.NewRegistry()
			k, err := New(o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New: %v, want an error about %q", err, tt.wantErr)
				}
				if k != nil {
					t.Fatal("New returned a Kit with its error")
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if k.Issuer() != o.Issuer || k.Dev() != o.Dev {
				t.Fatalf("Issuer %q Dev %v", k.Issuer(), k.Dev())
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	// Only the required options: logger, clock, registry and client IP
	// header fall back to their defaults.
	k, err := New(Options{Issuer: "https://id.example.jp", CookieKey: make([]byte, 32), Counter: store.NewMemory(), Templates: mustTemplates(t)})
	if err != nil {
		t.Fatal(err)
	}
	if k.Logger() == nil || k.Now().IsZero() || k.Templates() == nil {
		t.Fatal("defaults missing")
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = "203.0.113.5:1"
	if got := k.ClientIP(req).String(); got != "203.0.113.5" {
		t.Fatalf("ClientIP %s", got)
	}
	if !k.Allow(t.Context(), "b", "k", 1, time.Minute) || k.Allow(t.Context(), "b", "k", 1, time.Minute) {
		t.Fatal("Allow with the default clock")
	}
	rec := httptest.NewRecorder()
	k.Wrap(http.NotFoundHandler(), nil).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusNotFound || rec.Header().Get("X-Request-ID") == "" {
		t.Fatalf("Wrap with defaults: %d %v", rec.Code, rec.Header())
	}
}

func TestNewCopiesKey(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	k, _, _ := newKit(t, Options{CookieKey: key})
	cookie, tok := csrfBrowser(t, k, "form")
	// The caller's slice changing afterwards must not change the Kit's key.
	for i := range key {
		key[i] = 0
	}
	if !k.CheckCSRF(csrfPost(cookie, tok)) {
		t.Fatal("the Kit shares its key with the caller's slice")
	}
}

func TestMetricsRegistry(t *testing.T) {
	o := func(reg prometheus.Registerer) Options {
		return Options{Issuer: "https://id.example.jp", CookieKey: make([]byte, 32), Counter: store.NewMemory(), Templates: mustTemplates(t), Metrics: reg}
	}
	t.Run("two kits share one registry", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		k1, err := New(o(reg))
		if err != nil {
			t.Fatal(err)
		}
		k2, err := New(o(reg))
		if err != nil {
			t.Fatalf("second Kit on the same registry: %v", err)
		}
		for _, k := range []*Kit{k1, k2} {
			k.Wrap(http.NotFoundHandler(), nil).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		}
		if v := counterValue(t, reg, "watashi_http_requests_total", map[string]string{"route": "other", "code": "404"}); v != 2 {
			t.Fatalf("shared counter %v, want 2", v)
		}
	})
	t.Run("conflicting collector refused", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "watashi_http_panics_total", Help: "something else"}))
		if _, err := New(o(reg)); err == nil {
			t.Fatal("New accepted a registry with a conflicting collector")
		}
	})
}
