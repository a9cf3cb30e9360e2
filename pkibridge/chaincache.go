package pkibridge

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// ChainCacheEntries bounds the chain cache of one Verifier. An entry costs
// a few hundred bytes (the leaf itself is not kept), so the bound is about
// 2 MB; it covers the authentication certificates active in any hour.
const ChainCacheEntries = 10000

// chainCache remembers chains buildChain has built and checkChain has
// accepted, so that a certificate that signs in again does not pay for
// chain building (crypto/x509's chain search and the CA's RSA signature on
// the leaf) every time.
//
// An entry is keyed by SHA-256 over the leaf's DER and the DER of the
// certificates the envelope carried, and it is used only while
//   - the Verifier's Anchors is the same (immutable) set,
//   - every configured intermediate in the chain is still configured,
//   - Policy.MinRSABits is the same, and
//   - now lies inside the validity window of every certificate in the
//     chain, without Leeway: near a bound the chain is built afresh,
//     which is where the leeway rules live.
//
// Under those conditions buildChain would find a chain that passes
// checkChain again (the certificates, keys and signatures are the same
// bytes), so the cache changes cost, not verdicts. Everything that is not
// about the chain (profile, attributes, revocation, the envelope
// signature, the leaf's own validity) is checked on every call. Eviction
// is random once the cache is full.
type chainCache struct {
	mu      sync.Mutex
	entries map[[sha256.Size]byte]*chainEntry
	hits    atomic.Uint64
	misses  atomic.Uint64
}

type chainEntry struct {
	anchors    *Anchors
	minRSABits int
	// issuers is chain[1:]; the leaf is the caller's.
	issuers []*x509.Certificate
	// configured are the members of issuers taken from
	// Verifier.Intermediates.
	configured []*x509.Certificate
	// notBefore and notAfter bound the common validity window.
	notBefore, notAfter time.Time
}

func (v *Verifier) chainCache() *chainCache {
	if v.NoChainCache {
		return nil
	}
	if c := atomic.LoadPointer(&v.chains); c != nil {
		return (*chainCache)(c)
	}
	atomic.CompareAndSwapPointer(&v.chains, nil, unsafe.Pointer(&chainCache{entries: map[[sha256.Size]byte]*chainEntry{}}))
	return (*chainCache)(atomic.LoadPointer(&v.chains))
}

// chain returns a verified chain for leaf, from the cache when it may,
// otherwise from buildChain, caching the result.
func (v *Verifier) chain(leaf *x509.Certificate, extra []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	cache := v.chainCache()
	if cache == nil {
		return v.buildChain(leaf, extra, now)
	}
	key := chainKey(leaf, extra)
	minBits := v.Policy.MinRSABits
	if minBits <= 0 {
		minBits = minRSABitsFloor
	}
	if issuers := cache.lookup(key, v, minBits, now); issuers != nil {
		cache.hits.Add(1)
		return append([]*x509.Certificate{leaf}, issuers...), nil
	}
	cache.misses.Add(1)
	chain, err := v.buildChain(leaf, extra, now)
	if err != nil {
		return nil, err
	}
	e := &chainEntry{
		anchors:    v.Anchors,
		minRSABits: minBits,
		issuers:    slices.Clone(chain[1:]),
		notBefore:  leaf.NotBefore,
		notAfter:   leaf.NotAfter,
	}
	for _, c := range e.issuers {
		e.notBefore = laterTime(e.notBefore, c.NotBefore)
		e.notAfter = earlierTime(e.notAfter, c.NotAfter)
		if !slices.Contains(extra, c) && slices.Contains(v.Intermediates, c) {
			e.configured = append(e.configured, c)
		}
	}
	if !now.Before(e.notBefore) && !now.After(e.notAfter) {
		cache.store(key, e)
	}
	return chain, nil
}

// chainKey hashes the leaf and the envelope's certificates, each
// length-prefixed so that no two lists share a key.
func chainKey(leaf *x509.Certificate, extra []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	var n [4]byte
	for i := -1; i < len(extra); i++ {
		c := leaf
		if i >= 0 {
			c = extra[i]
		}
		binary.BigEndian.PutUint32(n[:], uint32(len(c.Raw)))
		h.Write(n[:])
		h.Write(c.Raw)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}

// lookup returns the cached issuers for key when the entry may be used
// by v at now, and drops an entry that has gone out of its window.
func (c *chainCache) lookup(key [sha256.Size]byte, v *Verifier, minBits int, now time.Time) []*x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil {
		return nil
	}
	if now.Before(e.notBefore) || now.After(e.notAfter) {
		delete(c.entries, key)
		return nil
	}
	if e.anchors != v.Anchors || e.minRSABits != minBits {
		return nil
	}
	for _, ic := range e.configured {
		if !slices.Contains(v.Intermediates, ic) {
			return nil
		}
	}
	return e.issuers
}

func (c *chainCache) store(key [sha256.Size]byte, e *chainEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= ChainCacheEntries {
		for k := range c.entries { // map order is random: random eviction
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = e
}
