package clients

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/watashi-id/watashi/whitelist"
)

func TestClientKeysFromURI(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub := func(k *ecdsa.PrivateKey, kid string) jose.JSONWebKey {
		return jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "ES256", Use: "sig"}
	}
	var served atomic.Value
	served.Store(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub(k1, "k1")}})
	var hits atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		json.NewEncoder(w).Encode(served.Load())
	})
	mux.HandleFunc("/private", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k1, KeyID: "p"}}})
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"keys":[],"pad":"` + strings.Repeat("x", 70<<10) + `"}`))
	})
	mux.HandleFunc("/notjson", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) })
	mux.HandleFunc("/error", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 500) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/jwks", http.StatusFound) })
	var down atomic.Bool
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub(k1, "k1")}})
	})
	mux.HandleFunc("/enc", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k1.PublicKey, KeyID: "e", Algorithm: "ECDH-ES", Use: "enc"}}})
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"keys":[]}`)) })
	ts := httptest.NewTLSServer(mux)
	defer ts.Close()

	now := time.Now()
	var offset atomic.Int64
	s := newResolver(t, Options{
		Dev:     false,
		Fetcher: loopbackFetcher(ts),
		Now:     func() time.Time { return now.Add(time.Duration(offset.Load())) },
	})
	ctx := context.Background()

	keys, err := s.keysFromURI(ctx, ts.URL+"/jwks", "k1")
	if err != nil || len(keys) != 1 || keys[0].KeyID != "k1" {
		t.Fatalf("first fetch: %v %v", keys, err)
	}
	if _, err := s.keysFromURI(ctx, ts.URL+"/jwks", "k1"); err != nil || hits.Load() != 1 {
		t.Fatalf("cached fetch: hits=%d err=%v", hits.Load(), err)
	}
	// The RP rotates to k2: an unknown kid refetches, but not more often
	// than every jwksURIRetry.
	served.Store(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub(k2, "k2")}})
	if keys, _ := s.keysFromURI(ctx, ts.URL+"/jwks", "k2"); hasKID(keys, "k2") || hits.Load() != 1 {
		t.Fatalf("refetched within the retry gap: hits=%d", hits.Load())
	}
	offset.Store(int64(jwksURIRetry + time.Second))
	if keys, err := s.keysFromURI(ctx, ts.URL+"/jwks", "k2"); err != nil || !hasKID(keys, "k2") || hits.Load() != 2 {
		t.Fatalf("kid miss after the retry gap: %v %v hits=%d", keys, err, hits.Load())
	}
	// Past the TTL the set is refetched even without a kid.
	offset.Store(int64(jwksURIRetry + jwksURITTL + 2*time.Second))
	if _, err := s.keysFromURI(ctx, ts.URL+"/jwks", ""); err != nil || hits.Load() != 3 {
		t.Fatalf("after TTL: hits=%d err=%v", hits.Load(), err)
	}

	// The RP's server fails: the last good set is served until its TTL
	// ends, then the error.
	offset.Store(0)
	if keys, err := s.keysFromURI(ctx, ts.URL+"/flaky", "k1"); err != nil || !hasKID(keys, "k1") {
		t.Fatalf("flaky first fetch: %v %v", keys, err)
	}
	down.Store(true)
	offset.Store(int64(jwksURIRetry + time.Second))
	if keys, err := s.keysFromURI(ctx, ts.URL+"/flaky", "k9"); err != nil || !hasKID(keys, "k1") {
		t.Fatalf("kid miss while the RP is down: %v %v; want the cached set", keys, err)
	}
	offset.Store(int64(jwksURITTL + time.Second))
	if _, err := s.keysFromURI(ctx, ts.URL+"/flaky", ""); err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("past the TTL while the RP is down: %v", err)
	}

	bad := []struct{ name, uri, want string }{
		{"http outside dev", strings.Replace(ts.URL, "https", "http", 1) + "/jwks", "https"},
		{"relative", "/jwks", "absolute"},
		{"private key material", ts.URL + "/private", "non-public"},
		{"oversized", ts.URL + "/big", "larger than 65536 bytes"},
		{"not a key set", ts.URL + "/notjson", "not a JSON Web Key Set"},
		{"server error", ts.URL + "/error", "HTTP 500"},
		{"redirect not followed", ts.URL + "/redirect", "redirects are not followed"},
		{"no keys", ts.URL + "/empty", "no signing keys"},
		{"encryption keys only", ts.URL + "/enc", "no signing keys"},
		{"ftp", "ftp://127.0.0.1/jwks", "https"},
		{"no host", "https:///jwks", "no host"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.keysFromURI(ctx, tc.uri, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// AssertionKeys: only private_key_jwt clients have keys; inline keys are
// used as they are; a registered client without inline keys has its
// jwks_uri fetched.
func TestAssertionKeys(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "uri-key", Algorithm: "ES256", Use: "sig"}}}
	var hits atomic.Int64
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		json.NewEncoder(w).Encode(set)
	}))
	defer ts.Close()
	r := newResolver(t, Options{Fetcher: loopbackFetcher(ts)})
	ctx := context.Background()

	inline := &Entry{Client: &Client{ID: "pk", AuthMethod: AuthPrivateKeyJWT}, Keys: []jose.JSONWebKey{{KeyID: "inline"}}}
	if keys, err := r.AssertionKeys(ctx, inline, "other"); err != nil || len(keys) != 1 || keys[0].KeyID != "inline" {
		t.Fatalf("inline keys: %v %v", keys, err)
	}
	wc := &whitelist.Client{ID: "reg"}
	wc.JWKSURI = ts.URL + "/jwks"
	registered := &Entry{Client: &Client{ID: "reg", AuthMethod: AuthPrivateKeyJWT}, Registry: wc}
	if keys, err := r.AssertionKeys(ctx, registered, "uri-key"); err != nil || !hasKID(keys, "uri-key") || hits.Load() != 1 {
		t.Fatalf("jwks_uri keys: %v %v hits=%d", keys, err, hits.Load())
	}
	// A static private_key_jwt client has no jwks_uri to fall back on.
	static := &Entry{Client: &Client{ID: "pk", AuthMethod: AuthPrivateKeyJWT}}
	if keys, _ := r.AssertionKeys(ctx, static, ""); len(keys) != 0 || hits.Load() != 1 {
		t.Fatalf("static client without keys: %v hits=%d", keys, hits.Load())
	}
	for _, m := range []string{AuthSecretBasic, AuthNone, ""} {
		e := &Entry{Client: &Client{ID: "c", AuthMethod: m}, Keys: inline.Keys, Registry: wc}
		if keys, err := r.AssertionKeys(ctx, e, ""); err == nil || keys != nil {
			t.Errorf("%q client: keys %v, err %v", m, keys, err)
		}
	}
}

// A jwks_uri that fails is not fetched again for jwksURIRetry, however
// many token requests name its client: each would otherwise cost a fetch
// of up to the fetcher's timeout, on the word of anyone who sends a
// client_id.
func TestJWKSURIFailureNotHammered(t *testing.T) {
	var hits atomic.Int64
	var down atomic.Bool
	down.Store(true)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	}))
	defer ts.Close()
	now := time.Now()
	var offset atomic.Int64
	r := newResolver(t, Options{Fetcher: loopbackFetcher(ts), Now: func() time.Time { return now.Add(time.Duration(offset.Load())) }})
	ctx := context.Background()
	for i := range 50 {
		if _, err := r.keysFromURI(ctx, ts.URL+"/jwks", "k1"); err == nil {
			t.Fatalf("request %d: keys from a failing jwks_uri", i)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("50 requests fetched a failing jwks_uri %d times, want 1", n)
	}
	// Once the gap has passed, the RP is asked again and its recovery
	// is seen.
	down.Store(false)
	offset.Store(int64(jwksURIRetry + time.Second))
	if keys, err := r.keysFromURI(ctx, ts.URL+"/jwks", "k1"); err != nil || !hasKID(keys, "k1") || hits.Load() != 2 {
		t.Fatalf("after the gap: %v %v, hits %d", keys, err, hits.Load())
	}
	// A kid nobody has, asked again and again: one refetch per gap.
	for range 20 {
		r.keysFromURI(ctx, ts.URL+"/jwks", "unknown")
	}
	offset.Store(int64(2*jwksURIRetry + 2*time.Second))
	for range 20 {
		r.keysFromURI(ctx, ts.URL+"/jwks", "unknown")
	}
	if n := hits.Load(); n != 3 {
		t.Fatalf("kid misses fetched %d times in all, want 3", n)
	}
}
