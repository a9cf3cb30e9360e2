package web

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestCookies(t *testing.T) {
	for _, tt := range []struct {
		name     string
		dev      bool
		wantName string
	}{
		// __Host-: the browser refuses the cookie unless it is Secure,
		// host-only and Path=/, so a sibling subdomain cannot plant one.
		{"production", false, "__Host-watashi-bind"},
		// Plain http on loopback cannot carry Secure cookies.
		{"dev", true, "watashi-bind"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, _, _ := newKit(t, Options{Dev: tt.dev})
			name := k.CookieName("bind")
			if name != tt.wantName {
				t.Fatalf("CookieName %q, want %q", name, tt.wantName)
			}
			rec := httptest.NewRecorder()
			k.SetCookie(rec, name, "v1", 90*time.Second+time.Millisecond)
			k.ClearCookie(rec, name)
			cs := rec.Result().Cookies()
			if len(cs) != 2 {
				t.Fatalf("cookies %v", cs)
			}
			set, clr := cs[0], cs[1]
			// Rounded up to whole seconds: never shorter than asked.
			if set.Name != name || set.Value != "v1" || set.MaxAge != 91 || set.Path != "/" || !set.HttpOnly || set.Secure == tt.dev || set.SameSite != http.SameSiteLaxMode || set.Domain != "" {
				t.Fatalf("set cookie %+v", set)
			}
			// Deleting needs the same attributes, or browsers keep the original.
			if clr.Name != name || clr.Value != "" || clr.MaxAge != -1 || clr.Path != "/" || !clr.HttpOnly || clr.Secure == tt.dev || clr.SameSite != http.SameSiteLaxMode || clr.Domain != "" {
				t.Fatalf("clear cookie %+v", clr)
			}
			for _, age := range []time.Duration{0, -time.Second} {
				rec = httptest.NewRecorder()
				k.SetCookie(rec, name, "session", age)
				if c := rec.Result().Cookies()[0]; c.MaxAge != 0 || !c.Expires.IsZero() {
					t.Fatalf("maxAge %v: want a session cookie, got %+v", age, c)
				}
			}
		})
	}
}

func TestPendingCookie(t *testing.T) {
	k, _, _ := newKit(t, Options{})
	tests := []struct {
		name  string
		setup func(w http.ResponseWriter)
		want  string
	}{
		{"none", func(w http.ResponseWriter) {}, ""},
		{"set", func(w http.ResponseWriter) { k.SetCookie(w, "a", "1", 0) }, "1"},
		{"other name", func(w http.ResponseWriter) { k.SetCookie(w, "b", "1", 0) }, ""},
		{"cleared", func(w http.ResponseWriter) { k.ClearCookie(w, "a") }, ""},
		{"cleared then set", func(w http.ResponseWriter) { k.ClearCookie(w, "a"); k.SetCookie(w, "a", "2", time.Hour) }, "2"},
		// The browser keeps the last Set-Cookie of a name.
		{"set then cleared", func(w http.ResponseWriter) { k.SetCookie(w, "a", "1", 0); k.ClearCookie(w, "a") }, ""},
		{"set twice", func(w http.ResponseWriter) { k.SetCookie(w, "a", "1", 0); k.SetCookie(w, "a", "2", 0) }, "2"},
		{"malformed line", func(w http.ResponseWriter) { w.Header().Add("Set-Cookie", "=;;") }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tt.setup(rec)
			if got := pendingCookie(rec.Header(), "a"); got != tt.want {
				t.Fatalf("pendingCookie %q, want %q", got, tt.want)
			}
		})
	}
}
