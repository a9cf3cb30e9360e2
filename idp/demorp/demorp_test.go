package demorp

import (
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestNewRefuses(t *testing.T) {
	for _, c := range []Config{
		{},
		{Issuer: "http://127.0.0.1:1", ClientID: "rp"},
		{Issuer: "http://127.0.0.1:1", ClientID: "rp", BaseURL: "/rp"},
		{Issuer: "http://127.0.0.1:1", ClientID: "rp", BaseURL: "ftp://x/rp"},
		{Issuer: "http://127.0.0.1:1", BaseURL: "http://127.0.0.1/rp"},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
	rp, err := New(Config{Issuer: "http://127.0.0.1:1", ClientID: "rp", BaseURL: "http://127.0.0.1:8080/rp/", Scopes: []string{"name", "openid"}})
	if err != nil {
		t.Fatal(err)
	}
	if rp.RedirectURL() != "http://127.0.0.1:8080/rp/callback" || rp.PostLogoutURL() != "http://127.0.0.1:8080/rp/" || strings.Join(rp.scopeSlice, " ") != "openid name" {
		t.Fatalf("redirect %q post-logout %q scopes %q", rp.RedirectURL(), rp.PostLogoutURL(), rp.scopeSlice)
	}
}

func TestRoutes(t *testing.T) {
	// A provider that is not there: a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	rp, err := New(Config{Issuer: dead, ClientID: "rp", BaseURL: "http://127.0.0.1:8080/rp"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/", 200, "Sign in with Watashi"},
		{"GET", "/login", 502, "discovery document could not be loaded"},
		{"GET", "/callback?code=x&state=y", 400, "login cookie is missing"},
		{"GET", "/logout", 302, ""},
		{"GET", "/nope", 404, ""},
		{"POST", "/login", 405, ""},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.body) {
			t.Errorf("%s %s: %d, want %d with %q", tt.method, tt.path, rec.Code, tt.status, tt.body)
		}
		if rec.Header().Get("Content-Security-Policy") == "" || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: security headers missing", tt.method, tt.path)
		}
	}
	// Discovery failed above; a logout without a session goes home.
	rec := httptest.NewRecorder()
	rp.ServeHTTP(rec, httptest.NewRequest("GET", "/logout", nil))
	if loc := rec.Header().Get("Location"); loc != "/rp/" {
		t.Fatalf("logout without session: Location %q", loc)
	}
	if c := rec.Result().Cookies(); len(c) != 1 || c[0].MaxAge != -1 || c[0].Path != "/rp/" {
		t.Fatalf("logout cookies %+v", c)
	}
}

func TestBoundedMap(t *testing.T) {
	m := newBoundedMap[int](3)
	for i := range 5 {
		m.put(fmt.Sprint(i), i)
	}
	for i := range 5 {
		_, ok := m.get(fmt.Sprint(i))
		if ok != (i >= 2) {
			t.Fatalf("key %d present=%v after eviction", i, ok)
		}
	}
	if v, ok := m.take("3"); !ok || v != 3 {
		t.Fatalf("take: %v %v", v, ok)
	}
	if _, ok := m.take("3"); ok {
		t.Fatal("taken twice")
	}
	m.put("a", 10)
	m.put("b", 11) // evicts "2", the oldest left
	if _, ok := m.get("2"); ok {
		t.Fatal("oldest not evicted")
	}
	if _, ok := m.get("4"); !ok {
		t.Fatal("evicted the wrong entry")
	}
}
