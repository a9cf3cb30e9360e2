package clients

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"

	"github.com/watashi-id/watashi/whitelist"
)

// Argon2 hashing is slow: the fixture secret is hashed once per test
// binary.
var (
	fixtureOnce   sync.Once
	fixtureSecret string // hash of testSecret
)

const testSecret = "correct horse battery staple"

var testPairwiseKey = []byte("pairwise-key-for-tests-0123456789abcdef")

func fixtures(t testing.TB) {
	t.Helper()
	fixtureOnce.Do(func() {
		var err error
		if fixtureSecret, err = HashSecret(testSecret); err != nil {
			panic(err)
		}
	})
}

// newResolver is a Resolver of static clients only, for tests that need
// its caches or its pairwise key.
func newResolver(t testing.TB, o Options) *Resolver {
	t.Helper()
	if o.PairwiseKey == nil {
		o.PairwiseKey = testPairwiseKey
	}
	r, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// loopbackFetcher is the guarded fetcher with the test servers' loopback
// network exempted and ts's certificate trusted, as an operator with an
// internal integrator would configure it.
func loopbackFetcher(ts *httptest.Server) *whitelist.Fetcher {
	return whitelist.NewFetcher(whitelist.FetcherOptions{
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		TLS:   ts.Client().Transport.(*http.Transport).TLSClientConfig,
	})
}
