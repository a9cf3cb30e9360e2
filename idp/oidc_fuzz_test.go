package idp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/watashi-id/watashi/idp/store"
)

// Whatever /authorize receives, it never errs on the server side and never
// redirects anywhere but to the login page or a registered redirect URI.
func FuzzAuthorize(f *testing.F) {
	fixtures(f)
	kv := store.NewMemory()
	seedKeys(f, kv)
	s, err := New(context.Background(), testOptions(kv, "http://op.test"))
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	registered := map[string]bool{}
	for _, c := range s.opts.Clients {
		for _, r := range c.RedirectURIs {
			registered[r] = true
		}
	}
	for _, q := range []string{
		"client_id=web&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
		"client_id=web&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=token&scope=openid",
		"client_id=web&redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
		"client_id=web&redirect_uri=https%3A%2F%2Frp.example%2Fcb&max_age=-1&prompt=none+login&claims=%7B",
		"client_id=public&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&response_type=code&scope=openid+name&code_challenge=x",
		"%zz", "client_id=%00",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "http://op.test/authorize", nil)
		req.URL.RawQuery = q
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%q: status %d", q, rec.Code)
		}
		loc := rec.Header().Get("Location")
		if loc == "" {
			return
		}
		if strings.HasPrefix(loc, "/login?id=") {
			return
		}
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatalf("%q: bad Location %q", q, loc)
		}
		u.RawQuery, u.Fragment = "", ""
		if u.Scheme == "http" && u.Hostname() == "127.0.0.1" {
			u.Host = "127.0.0.1" // native loopback: any port (RFC 8252)
		}
		if !registered[u.String()] {
			t.Fatalf("%q: redirected to unregistered %q", q, loc)
		}
	})
}
