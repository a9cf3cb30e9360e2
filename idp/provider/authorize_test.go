package provider

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
)

func authorizeQuery() url.Values {
	return url.Values{"client_id": {"web"}, "response_type": {"code"}, "scope": {"openid"},
		"redirect_uri": {testRedirect}, "state": {"s"}, "nonce": {"n"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}}
}

// storedRequests counts the auth request records in kv.
func storedRequests(t *testing.T, kv store.KV) int {
	t.Helper()
	n := 0
	if err := kv.Scan(context.Background(), "ar:", func(string) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// /authorize binds the request to the browser that sent it, in the record
// it creates: with the browser's binding cookie, or a new one it sets. A
// POST, which a cross-site form sends without the SameSite=Lax cookie,
// is left for the login page to bind, and never replaces a cookie.
func TestAuthorizeBindsTheBrowser(t *testing.T) {
	kv := store.NewMemory()
	s := newTestServerOn(t, kv)
	mux := http.NewServeMux()
	s.Mount(mux)
	existing := &http.Cookie{Name: s.web.CookieName("bind"), Value: ids.Long()}
	for _, c := range []struct {
		name      string
		method    string
		cookie    *http.Cookie
		newCookie bool
		bound     func(set *http.Cookie) string
	}{
		{"GET, a new browser", http.MethodGet, nil, true, func(set *http.Cookie) string { return ids.Hash(set.Value) }},
		{"GET, a browser with its cookie", http.MethodGet, existing, false, func(*http.Cookie) string { return ids.Hash(existing.Value) }},
		{"GET, a malformed cookie", http.MethodGet, &http.Cookie{Name: existing.Name, Value: "short"}, true, func(set *http.Cookie) string { return ids.Hash(set.Value) }},
		{"POST", http.MethodPost, nil, false, func(*http.Cookie) string { return "" }},
		{"POST with a cookie", http.MethodPost, existing, false, func(*http.Cookie) string { return "" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := authorizeQuery()
			var r *http.Request
			if c.method == http.MethodGet {
				r = httptest.NewRequest(http.MethodGet, testIssuer+authorizePath+"?"+q.Encode(), nil)
			} else {
				r = httptest.NewRequest(http.MethodPost, testIssuer+authorizePath, strings.NewReader(q.Encode()))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if c.cookie != nil {
				r.AddCookie(c.cookie)
			}
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, r)
			loc, _ := url.Parse(w.Header().Get("Location"))
			if w.Code != http.StatusFound || loc.Path != authreq.LoginPath {
				t.Fatalf("%d %q", w.Code, w.Header().Get("Location"))
			}
			var set *http.Cookie
			for _, ck := range w.Result().Cookies() {
				if ck.Name == existing.Name {
					set = ck
				}
			}
			if (set != nil) != c.newCookie {
				t.Fatalf("binding cookie set: %v, want %v", set, c.newCookie)
			}
			ar, err := s.requests.Load(context.Background(), loc.Query().Get("id"))
			if err != nil {
				t.Fatal(err)
			}
			if want := c.bound(set); ar.Binding != want {
				t.Fatalf("binding %q, want %q", ar.Binding, want)
			}
		})
	}
}

// A request over the address's rate limit is refused and leaves no
// record: the one stored with the count is deleted at once.
func TestAuthorizeRateLimitLeavesNothing(t *testing.T) {
	kv := store.NewMemory()
	s := newTestServerOn(t, kv)
	mux := http.NewServeMux()
	s.Mount(mux)
	get := func(addr string) int {
		r := httptest.NewRequest(http.MethodGet, testIssuer+authorizePath+"?"+authorizeQuery().Encode(), nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w.Code
	}
	for i := range authreq.CreatePerAddress {
		if code := get("192.0.2.1:1000"); code != http.StatusFound {
			t.Fatalf("request %d: %d", i+1, code)
		}
	}
	for range 3 {
		if code := get("192.0.2.1:1000"); code != http.StatusTooManyRequests {
			t.Fatalf("over the limit: %d", code)
		}
	}
	if n := storedRequests(t, kv); n != authreq.CreatePerAddress {
		t.Fatalf("%d requests stored, want %d", n, authreq.CreatePerAddress)
	}
	// Another address is not held back.
	if code := get("192.0.2.2:1000"); code != http.StatusFound {
		t.Fatalf("another address: %d", code)
	}
}
