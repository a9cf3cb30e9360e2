package pkibridge

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"testing"
)

func TestChainCacheBounded(t *testing.T) {
	c := &chainCache{entries: map[[sha256.Size]byte]*chainEntry{}}
	var last [sha256.Size]byte
	for i := 0; i < ChainCacheEntries+500; i++ {
		binary.BigEndian.PutUint32(last[:], uint32(i))
		c.store(last, &chainEntry{})
		if len(c.entries) > ChainCacheEntries {
			t.Fatalf("%d entries after %d stores", len(c.entries), i+1)
		}
	}
	if len(c.entries) != ChainCacheEntries {
		t.Fatalf("%d entries, want the bound %d", len(c.entries), ChainCacheEntries)
	}
	if c.entries[last] == nil {
		t.Fatal("the newest entry was evicted")
	}
	// Replacing an entry when full evicts nothing.
	c.store(last, &chainEntry{minRSABits: 1})
	if len(c.entries) != ChainCacheEntries || c.entries[last].minRSABits != 1 {
		t.Fatal("replacing an entry changed the count")
	}
}

func TestChainKeySeparatesCertificateLists(t *testing.T) {
	a := &x509.Certificate{Raw: []byte("AB")}
	b := &x509.Certificate{Raw: []byte("C")}
	ab := &x509.Certificate{Raw: []byte("ABC")}
	e := &x509.Certificate{Raw: []byte("")}
	keys := map[[sha256.Size]byte]string{}
	for name, k := range map[string][sha256.Size]byte{
		"a":     chainKey(a, nil),
		"a,b":   chainKey(a, []*x509.Certificate{b}),
		"ab":    chainKey(ab, nil),
		"b,a":   chainKey(b, []*x509.Certificate{a}),
		"a,e":   chainKey(a, []*x509.Certificate{e}),
		"a,b,e": chainKey(a, []*x509.Certificate{b, e}),
	} {
		if other, dup := keys[k]; dup {
			t.Fatalf("%s and %s share a key", name, other)
		}
		keys[k] = name
	}
}
