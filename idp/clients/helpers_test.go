package clients

import (
	"context"
	"sync"
	"testing"
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
