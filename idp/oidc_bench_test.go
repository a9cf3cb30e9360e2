package idp

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

// benchOP drives the provider's handler in-process (no sockets).
type benchOP struct {
	b      *testing.B
	s      *Server
	h      http.Handler
	issuer string
}

func newBenchOP(b *testing.B, kv store.KV) *benchOP {
	fixtures(b)
	seedKeys(b, kv)
	const issuer = "http://op.bench"
	s, err := New(context.Background(), testOptions(kv, issuer))
	if err != nil {
		b.Fatal(err)
	}
	return &benchOP{b: b, s: s, h: s.Handler(), issuer: issuer}
}

func (o *benchOP) serve(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	o.h.ServeHTTP(rec, req)
	return rec
}

// code runs authorize → (sign-in done directly) → callback and returns a
// fresh code with its verifier.
func (o *benchOP) code(clientID string, scope ...string) (code, verifier string) {
	ctx := context.Background()
	verifier = oauth2.GenerateVerifier()
	redirect := redirectOf(o.s, clientID)
	sc := "openid"
	if len(scope) > 0 {
		sc = scope[0]
	}
	q := url.Values{"client_id": {clientID}, "response_type": {"code"}, "scope": {sc},
		"redirect_uri": {redirect}, "state": {"s"}, "nonce": {"n"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
	areq := httptest.NewRequest(http.MethodGet, o.issuer+authorizePath+"?"+q.Encode(), nil)
	areq.RemoteAddr = benchAddr() // many RPs' users, not one address past the rate limit
	rec := o.serve(areq)
	loc, _ := url.Parse(rec.Header().Get("Location"))
	id := loc.Query().Get("id")
	c := bindCookie(o.s, rec.Result().Cookies())
	if c == nil {
		o.b.Fatal("/authorize set no binding cookie")
	}
	cookie := c.Value
	if err := o.s.requests.Bind(ctx, id, ids.Hash(cookie)); err != nil {
		o.b.Fatal(err)
	}
	if err := completeRequest(o.s, id, authreq.Authentication{AccountID: testAccount, ACR: "aal3", AMR: []string{"hwk", "pin"}}, nil); err != nil {
		o.b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, authreq.CallbackURL(o.issuer, id), nil)
	req.AddCookie(&http.Cookie{Name: o.s.web.CookieName("bind"), Value: cookie})
	rec = o.serve(req)
	cb, _ := url.Parse(rec.Header().Get("Location"))
	if code = cb.Query().Get("code"); code == "" {
		o.b.Fatalf("no code: %d %s", rec.Code, rec.Header().Get("Location"))
	}
	return code, verifier
}

func (o *benchOP) exchange(clientID, code, verifier string) *httptest.ResponseRecorder {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"redirect_uri": {redirectOf(o.s, clientID)}}
	if clientID == "public" {
		form.Set("client_id", clientID)
	}
	req := httptest.NewRequest(http.MethodPost, o.issuer+tokenPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if clientID != "public" {
		req.SetBasicAuth(clientID, testSecret)
	}
	return o.serve(req)
}

// BenchmarkTokenExchange times the token endpoint alone: code → access and
// ID token (ES256), with the code's request read, then its grant (the
// single-use point), index and token writes in one batch. Codes are prepared with the timer stopped.
func BenchmarkTokenExchange(b *testing.B) {
	for _, client := range []string{"web", "public"} {
		b.Run(client, func(b *testing.B) {
			o := newBenchOP(b, store.NewMemory())
			// Warm the secret cache: a busy RP pays Argon2 once.
			c, v := o.code(client)
			if rec := o.exchange(client, c, v); rec.Code != http.StatusOK {
				b.Fatalf("warm-up: %d %s", rec.Code, rec.Body)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				code, verifier := o.code(client)
				b.StartTimer()
				if rec := o.exchange(client, code, verifier); rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkProviderRoundTrip is the provider's share of one login:
// authorize, completion, callback, code exchange and userinfo, on the
// memory store and on Redis. The sign-in transaction itself is SIGNIN's.
func BenchmarkProviderRoundTrip(b *testing.B) {
	for _, be := range []struct {
		name string
		kv   func(testing.TB) store.KV
	}{{"memory", memoryKV}, {"redis", redisKV}} {
		b.Run(be.name, func(b *testing.B) {
			o := newBenchOP(b, be.kv(b))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				code, verifier := o.code("web")
				rec := o.exchange("web", code, verifier)
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
				at := extractJSON(rec.Body.String(), "access_token")
				req := httptest.NewRequest(http.MethodGet, o.issuer+userinfoPath, nil)
				req.Header.Set("Authorization", "Bearer "+at)
				if rec := o.serve(req); rec.Code != http.StatusOK {
					b.Fatalf("userinfo %d", rec.Code)
				}
			}
		})
	}
}

func extractJSON(body, key string) string {
	i := strings.Index(body, `"`+key+`":"`)
	if i < 0 {
		return ""
	}
	rest := body[i+len(key)+4:]
	return rest[:strings.IndexByte(rest, '"')]
}

// BenchmarkAuthorize is /authorize alone, on the memory store and on
// Redis: the parameter checks, the client lookup, the claims resolution,
// the per-address rate limit and the stored record. Each request comes
// from its own address, as residents' browsers do.
func BenchmarkAuthorize(b *testing.B) {
	for _, be := range []struct {
		name string
		kv   func(testing.TB) store.KV
	}{{"memory", memoryKV}, {"redis", redisKV}} {
		b.Run(be.name, func(b *testing.B) {
			o := newBenchOP(b, be.kv(b))
			q := url.Values{"client_id": {"web"}, "response_type": {"code"}, "scope": {"openid name"},
				"redirect_uri": {redirectOf(o.s, "web")}, "state": {"s"}, "nonce": {"n"},
				"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}}
			target := o.issuer + authorizePath + "?" + q.Encode()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				req := httptest.NewRequest(http.MethodGet, target, nil)
				req.RemoteAddr = benchAddr()
				if rec := o.serve(req); rec.Code != http.StatusFound {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
