package idp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/whitelist"
	"github.com/watashi-id/watashi/whitelist/whitelisttest"
)

// TestJWKSURIFetchGuarded: a registered client's jwks_uri that names an
// internal address is refused when the token side fetches it, even when
// the record got into the registry (registered under other rules, or its
// name resolved elsewhere then): the provider's default fetcher never
// connects. The same client works through a fetcher that exempts the
// network, so the refusal is the guard and nothing else.
func TestJWKSURIFetchGuarded(t *testing.T) {
	fixtures(t)
	var hits atomic.Int64
	integrator := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(fixtureRPJWKS)
	}))
	defer integrator.Close()
	roots := integrator.Client().Transport.(*http.Transport).TLSClientConfig
	exempt := whitelist.NewFetcher(whitelist.FetcherOptions{TLS: roots, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})

	kv := store.NewMemory()
	reg, err := whitelist.New(whitelist.Options{Backend: whitelist.KVBackend(kv, store.ErrNotFound), Dev: true, Fetcher: exempt})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m := whitelisttest.WebMetadata(t, "rp.example.com")
	m.JWKS, m.JWKSURI = nil, integrator.URL+"/jwks.json"
	change := whitelist.Change{Actor: "test", Via: "test", Reason: "jwks_uri guard"}
	added, err := reg.Add(ctx, whitelist.AddRequest{Metadata: m, Tier: whitelist.TierBasic, Approve: true, Change: change})
	if err != nil {
		t.Fatal(err)
	}
	id := added.Client.ID

	introspect := func(o *testOP, jti string) int {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: fixtureRPKey, KeyID: "rp-key-1"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		payload, _ := json.Marshal(map[string]any{"iss": id, "sub": id, "aud": o.issuer, "jti": jti, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()})
		jws, err := signer.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := jws.CompactSerialize()
		code, _ := o.postForm(introspectPath, url.Values{"token": {"x"}, "client_assertion_type": {oidc.ClientAssertionTypeJWTAssertion}, "client_assertion": {a}}, "", "")
		return code
	}

	// The provider's own fetcher: production rules, trusting the test CA
	// so that only the address can stop it.
	guarded := newTestOP(t, kv, func(o *Options) {
		o.Registry = reg
		o.Fetcher = whitelist.NewFetcher(whitelist.FetcherOptions{TLS: roots})
	})
	if code := introspect(guarded, "a1"); code == http.StatusOK {
		t.Fatal("a client authenticated with keys from a loopback jwks_uri")
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the provider fetched the loopback jwks_uri %d times", n)
	}
	// The default outside development (no Fetcher given) is the same
	// guard.
	o := Options{Dev: false}
	o.SetDefaults()
	if _, err := o.Fetcher.Fetch(ctx, integrator.URL+"/jwks.json", whitelist.FetchOptions{}); err == nil || hits.Load() != 0 {
		t.Fatalf("the default fetcher reached a loopback address: %v", err)
	}

	open := newTestOP(t, kv, func(o *Options) { o.Registry = reg; o.Fetcher = exempt })
	if code := introspect(open, "a2"); code != http.StatusOK {
		t.Fatalf("through an exempting fetcher: %d", code)
	}
	if hits.Load() == 0 {
		t.Fatal("the exempting fetcher did not fetch")
	}
}
