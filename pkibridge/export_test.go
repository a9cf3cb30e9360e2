package pkibridge

// Hooks for the external tests (package pkibridge_test), which can use
// jpkisim where the package's own tests cannot (jpkisim imports it).

// SANTakesFastPath reports whether ParseSAN reads ext without falling back
// to encoding/asn1.
func SANTakesFastPath(ext []byte) bool {
	_, ok := sanFactsFast(ext)
	return ok
}

// ChainCacheStats reports the size and use of v's chain cache.
func ChainCacheStats(v *Verifier) (entries int, hits, misses uint64) {
	c := (*chainCache)(v.chains)
	if c == nil {
		return 0, 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.hits.Load(), c.misses.Load()
}
