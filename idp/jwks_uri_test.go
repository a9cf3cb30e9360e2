package idp

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
	"github.com/watashi-id/watashi/idp/store"
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
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"keys":[]}`)) })
	ts := httptest.NewTLSServer(mux)
	defer ts.Close()

	now := time.Now()
	var offset atomic.Int64
	o := testOptions(store.NewMemory(), "https://id.example.test")
	o.Dev = false
	o.HTTPClient = ts.Client()
	o.Now = func() time.Time { return now.Add(time.Duration(offset.Load())) }
	s := &Server{opts: o, now: o.Now, oidc: &oidcState{}}
	ctx := context.Background()

	keys, err := s.clientKeysFromURI(ctx, ts.URL+"/jwks", "k1")
	if err != nil || len(keys) != 1 || keys[0].KeyID != "k1" {
		t.Fatalf("first fetch: %v %v", keys, err)
	}
	if _, err := s.clientKeysFromURI(ctx, ts.URL+"/jwks", "k1"); err != nil || hits.Load() != 1 {
		t.Fatalf("cached fetch: hits=%d err=%v", hits.Load(), err)
	}
	// The RP rotates to k2: an unknown kid refetches, but not more often
	// than every jwksURIRetry.
	served.Store(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub(k2, "k2")}})
	if keys, _ := s.clientKeysFromURI(ctx, ts.URL+"/jwks", "k2"); hasKID(keys, "k2") || hits.Load() != 1 {
		t.Fatalf("refetched within the retry gap: hits=%d", hits.Load())
	}
	offset.Store(int64(jwksURIRetry + time.Second))
	if keys, err := s.clientKeysFromURI(ctx, ts.URL+"/jwks", "k2"); err != nil || !hasKID(keys, "k2") || hits.Load() != 2 {
		t.Fatalf("kid miss after the retry gap: %v %v hits=%d", keys, err, hits.Load())
	}
	// Past the TTL the set is refetched even without a kid.
	offset.Store(int64(jwksURIRetry + jwksURITTL + 2*time.Second))
	if _, err := s.clientKeysFromURI(ctx, ts.URL+"/jwks", ""); err != nil || hits.Load() != 3 {
		t.Fatalf("after TTL: hits=%d err=%v", hits.Load(), err)
	}

	bad := []struct{ name, uri, want string }{
		{"http outside dev", strings.Replace(ts.URL, "https", "http", 1) + "/jwks", "https"},
		{"relative", "/jwks", "https"},
		{"private key material", ts.URL + "/private", "non-public"},
		{"oversized", ts.URL + "/big", "exceeds 65536 bytes"},
		{"not a key set", ts.URL + "/notjson", "not a JSON Web Key Set"},
		{"server error", ts.URL + "/error", "status 500"},
		{"redirect not followed", ts.URL + "/redirect", "status 302"},
		{"no keys", ts.URL + "/empty", "no signing keys"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.clientKeysFromURI(ctx, tc.uri, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
