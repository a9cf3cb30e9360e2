package demorp

import (
	"fmt"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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

func TestReceivedClaims(t *testing.T) {
	id := map[string]any{"iss": "x", "sub": "s", "aud": "rp", "exp": 1, "iat": 1, "nonce": "n", "acr": "aal3", "amr": []any{"hwk"},
		"auth_time": 1, "at_hash": "h", "c_hash": "h", "azp": "rp", "client_id": "rp", "sid": "x", "name": "渡志　花子"}
	ui := map[string]any{"sub": "s", "address": map[string]any{"formatted": "x"}, "birthdate": "2000-01-01", "name": "渡志　花子", "zz_custom": 1}
	got := received(id, ui)
	want := []receivedClaim{{Name: "name", IDToken: true, Userinfo: true}, {Name: "birthdate", Userinfo: true}, {Name: "address", Userinfo: true}, {Name: "zz_custom", Userinfo: true}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("received = %+v, want %+v", got, want)
	}
	if got := received(map[string]any{"sub": "s", "acr": "aal2"}, nil); len(got) != 0 {
		t.Fatalf("protocol claims only: %+v", got)
	}
}

// TestHomeShowsReceivedClaims: the signed-in page lists what the RP
// received, never the token response's scope.
func TestHomeShowsReceivedClaims(t *testing.T) {
	rp, err := New(Config{Issuer: "http://127.0.0.1:1", ClientID: "rp", BaseURL: "http://127.0.0.1:8080/rp"})
	if err != nil {
		t.Fatal(err)
	}
	rp.sessions.put("sid", &session{created: time.Now(), refresh: true,
		idClaims: map[string]any{"sub": "pairwise", "acr": "aal3"},
		userinfo: map[string]any{"sub": "pairwise", "name": "渡志　花子", "birthdate": "2000-01-01"}})
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: sessCookie, Value: "sid"})
	rec := httptest.NewRecorder()
	rp.ServeHTTP(rec, req)
	body := rec.Body.String()
	for _, want := range []string{`id="rp-received"`, "<code>name</code>", "<code>birthdate</code>", "refresh token"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, not := range []string{"Granted scope", "<code>acr</code>"} {
		if strings.Contains(body, not) {
			t.Errorf("page shows %q", not)
		}
	}
	if strings.Index(body, "<code>name</code>") > strings.Index(body, "<code>birthdate</code>") {
		t.Error("the name is not listed first")
	}
}

func TestLogo(t *testing.T) {
	rp, err := New(Config{Issuer: "http://127.0.0.1:1", ClientID: "rp", BaseURL: "http://127.0.0.1:8080/rp"})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	rp.ServeHTTP(rec, httptest.NewRequest("GET", "/logo.png", nil))
	cfg, err := png.DecodeConfig(rec.Body)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "image/png" || err != nil || cfg.Width != 96 || cfg.Height != 96 {
		t.Fatalf("logo: %d %s %+v %v", rec.Code, rec.Header().Get("Content-Type"), cfg, err)
	}
}
