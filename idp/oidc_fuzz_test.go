package idp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/store"
)

func FuzzParseClaimsParam(f *testing.F) {
	for _, s := range []string{`{}`, `{"userinfo":{"name":null}}`, `{"id_token":{"acr":{"essential":true,"values":["aal3"]}}}`,
		`[]`, `null`, `{"userinfo":[]}`, `{`, strings.Repeat("{", 5000), `{"a":1,"a":2}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		out, cr, err := parseClaimsParam(v)
		if err != nil {
			return
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(out, &obj) != nil || obj == nil || cr == nil || len(out) > consent.MaxClaimsRequestSize {
			t.Fatalf("accepted %q as %q", v, out)
		}
		// What is stored parses again to the same request.
		again, err := consent.ParseClaimsRequest(out)
		if err != nil {
			t.Fatalf("stored form %q does not parse: %v", out, err)
		}
		a, _ := json.Marshal(cr)
		b, _ := json.Marshal(again)
		if string(a) != string(b) {
			t.Fatalf("stored form changes the request: %s vs %s", a, b)
		}
	})
}

func FuzzVerifyLogoutNext(f *testing.F) {
	s := &Server{opts: Options{CookieKey: []byte("cookie-key-for-fuzzing-0123456789abcdef")}}
	s.now = time.Now
	good := s.signLogoutNext("https://rp.example/bye?state=1")
	for _, v := range []string{good, "", ".", "a.b", good + "x", strings.Replace(good, ".", "..", 1)} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		dest, ok := s.verifyLogoutNext(v)
		if ok && v != good {
			// Only values we signed verify; the fuzzer cannot forge an HMAC.
			t.Fatalf("forged %q -> %q", v, dest)
		}
	})
}

func FuzzParseSecretHash(f *testing.F) {
	fixtures(f)
	for _, v := range []string{fixtureSecret, "", "$argon2id$v=19$m=999999999,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=19456,t=2,p=1$$", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h, err := parseSecretHash(v)
		if err != nil {
			return
		}
		if h.Memory > 256*1024 || h.Time > 10 || h.Threads > 8 || len(h.Key) > 64 {
			t.Fatalf("accepted unsafe parameters from %q", v)
		}
	})
}

func FuzzSplitToken(f *testing.F) {
	for _, v := range []string{"a.b", ".b", "a.", "a.b.c", "a:b.c", "{a}.b", "", newID() + "." + newShortID()} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		g, rest, ok := splitToken(v)
		if !ok {
			return
		}
		if g+tokenSep+rest != v || g == "" || rest == "" || strings.ContainsAny(g, ".:{}") {
			t.Fatalf("split %q into %q / %q", v, g, rest)
		}
	})
}

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
