package pkibridge_test

import (
	"context"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// The chain cache may change what a verification costs, never its
// verdict: each test verifies once to fill the cache, changes one thing,
// and checks both the verdict and whether the cached chain was used.

type chainCacheUse struct{ entries, hits, misses int }

func chainCacheUsage(v *pkibridge.Verifier) chainCacheUse {
	n, h, m := pkibridge.ChainCacheStats(v)
	return chainCacheUse{n, int(h), int(m)}
}

func chainVerify(t *testing.T, v *pkibridge.Verifier, leaf *x509.Certificate, extra []*x509.Certificate, want pkibridge.Reason) *pkibridge.Result {
	t.Helper()
	res, err := v.VerifyCertificate(context.Background(), leaf, extra)
	coreWantReason(t, err, want)
	return res
}

func TestChainCacheReusesChain(t *testing.T) {
	e := coreSetup(t)
	v := e.verifier()
	leaf := coreIssue(t, e.authCA, jpkisim.LeafOptions{})
	first := chainVerify(t, v, leaf, nil, "")
	if got := chainCacheUsage(v); got != (chainCacheUse{entries: 1, misses: 1}) {
		t.Fatalf("after the first verification: %+v", got)
	}
	// The same certificate parsed again, as from a new envelope.
	again, err := x509.ParseCertificate(leaf.Raw)
	if err != nil {
		t.Fatal(err)
	}
	second := chainVerify(t, v, again, nil, "")
	if got := chainCacheUsage(v); got != (chainCacheUse{entries: 1, hits: 1, misses: 1}) {
		t.Fatalf("after the second verification: %+v", got)
	}
	if len(second.Chain) != len(first.Chain) || second.Chain[0] != again || second.Leaf != again ||
		second.Chain[1] != first.Chain[1] || second.Kind != first.Kind || second.Revocation.Status != pkibridge.StatusGood {
		t.Fatalf("cached result %+v differs from %+v", second, first)
	}
	// The result's chain is the caller's to keep: changing it must not
	// reach the cache.
	second.Chain[1] = nil
	third := chainVerify(t, v, leaf, nil, "")
	if third.Chain[1] != first.Chain[1] {
		t.Fatal("a caller's change to Result.Chain reached the cache")
	}
}

func TestChainCacheDifferentLeaf(t *testing.T) {
	e := coreSetup(t)
	v := e.verifier()
	chainVerify(t, v, coreIssue(t, e.authCA, jpkisim.LeafOptions{}), nil, "")
	// Same key, same issuer, same subject: only the serial differs.
	chainVerify(t, v, coreIssue(t, e.authCA, jpkisim.LeafOptions{}), nil, "")
	if got := chainCacheUsage(v); got != (chainCacheUse{entries: 2, misses: 2}) {
		t.Fatalf("a different leaf used the cache: %+v", got)
	}
	// A tampered copy of a cached leaf is a different leaf.
	leaf := coreIssue(t, e.authCA, jpkisim.LeafOptions{})
	chainVerify(t, v, leaf, nil, "")
	chainVerify(t, v, coreTamper(t, leaf), nil, pkibridge.ReasonBadSignature)
	if got := chainCacheUsage(v); got.hits != 0 {
		t.Fatalf("a tampered leaf used the cache: %+v", got)
	}
}

func TestChainCacheOtherAnchors(t *testing.T) {
	e := coreSetup(t)
	v := e.verifier()
	leaf := coreIssue(t, e.authCA, jpkisim.LeafOptions{})
	chainVerify(t, v, leaf, nil, "")

	// Anchors without the issuer: untrusted, whatever was cached.
	only, err := pkibridge.NewAnchors(e.sigCA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	v.Anchors = only
	chainVerify(t, v, leaf, nil, pkibridge.ReasonUntrusted)
	// Same issuer in a new set: built again, not taken from the cache.
	same, err := pkibridge.NewAnchors(e.authCA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	v.Anchors = same
	chainVerify(t, v, leaf, nil, "")
	if got := chainCacheUsage(v); got.hits != 0 || got.misses != 3 {
		t.Fatalf("a chain was reused across anchor sets: %+v", got)
	}
	chainVerify(t, v, leaf, nil, "")
	if got := chainCacheUsage(v); got.hits != 1 {
		t.Fatalf("the new anchor set does not use its own entry: %+v", got)
	}
}

func TestChainCacheValidityWindow(t *testing.T) {
	e := coreSetup(t)
	now := e.now
	// An anchor that expires long before its leaf.
	ca := coreCA(t, jpkisim.CAOptions{Kind: pkibridge.KindAuthentication, Key: coreKey(4), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(2 * time.Hour)})
	anchors, err := pkibridge.NewAnchors(ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	leaf := coreIssue(t, ca, jpkisim.LeafOptions{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	at := now
	v := e.verifier()
	v.Anchors = anchors
	v.Revocation = simRevocation{cas: []*jpkisim.CA{ca}}
	v.Now = func() time.Time { return at }
	chainVerify(t, v, leaf, nil, "")

	// Past the anchor's notAfter but within Leeway: accepted, and only by
	// building the chain again, since the cached window has closed.
	v.Leeway = 30 * time.Minute
	at = ca.Cert.NotAfter.Add(10 * time.Minute)
	chainVerify(t, v, leaf, nil, "")
	if got := chainCacheUsage(v); got.hits != 0 {
		t.Fatalf("cached chain used outside its window: %+v", got)
	}
	// Beyond the leeway the anchor has expired, though the leaf has not.
	at = ca.Cert.NotAfter.Add(time.Hour)
	chainVerify(t, v, leaf, nil, pkibridge.ReasonExpired)
	// Back inside the window the chain is cached again, and after the
	// leaf expires it is refused as before.
	at = now
	v.Leeway = 0
	chainVerify(t, v, leaf, nil, "")
	chainVerify(t, v, leaf, nil, "")
	if got := chainCacheUsage(v); got.hits != 1 {
		t.Fatalf("chain not cached inside its window: %+v", got)
	}
	at = leaf.NotAfter.Add(time.Second)
	chainVerify(t, v, leaf, nil, pkibridge.ReasonExpired)
	at = leaf.NotBefore.Add(-time.Second)
	chainVerify(t, v, leaf, nil, pkibridge.ReasonNotYetValid)
}

func TestChainCacheConfiguredIntermediate(t *testing.T) {
	e := coreSetup(t)
	inter := coreSubCA(t, e.authCA, coreKey(4), e.now.Add(-time.Hour), e.now.AddDate(3, 0, 0))
	leaf := coreIssue(t, inter, jpkisim.LeafOptions{})
	v := e.verifier()
	v.Mode = pkibridge.RevocationOff
	v.Intermediates = []*x509.Certificate{inter.Cert}
	if res := chainVerify(t, v, leaf, nil, ""); len(res.Chain) != 3 {
		t.Fatalf("chain of %d", len(res.Chain))
	}
	v.Intermediates = nil
	chainVerify(t, v, leaf, nil, pkibridge.ReasonUntrusted)
	if got := chainCacheUsage(v); got.hits != 0 {
		t.Fatalf("chain through a removed intermediate was reused: %+v", got)
	}
	// The same intermediate carried by the envelope builds its own entry.
	chainVerify(t, v, leaf, []*x509.Certificate{inter.Cert}, "")
	chainVerify(t, v, leaf, []*x509.Certificate{inter.Cert}, "")
	if got := chainCacheUsage(v); got.hits != 1 {
		t.Fatalf("envelope-carried intermediate: %+v", got)
	}
}

func TestChainCachePolicyMinimum(t *testing.T) {
	e := coreSetup(t)
	weak := coreCA(t, jpkisim.CAOptions{Kind: pkibridge.KindAuthentication, KeyBits: 1024})
	anchors, err := pkibridge.NewAnchors(weak.Cert)
	if err != nil {
		t.Fatal(err)
	}
	leaf := coreIssue(t, weak, jpkisim.LeafOptions{})
	v := e.verifier()
	v.Anchors = anchors
	v.Mode = pkibridge.RevocationOff
	v.Policy.MinRSABits = 1024
	chainVerify(t, v, leaf, nil, "")
	v.Policy.MinRSABits = 2048
	chainVerify(t, v, leaf, nil, pkibridge.ReasonWeakKey)
	if got := chainCacheUsage(v); got.hits != 0 {
		t.Fatalf("chain accepted under a lower key minimum was reused: %+v", got)
	}
}

func TestChainCacheStillChecksRevocationAndProfile(t *testing.T) {
	e := coreSetup(t)
	v := e.verifier()
	leaf := coreIssue(t, e.authCA, jpkisim.LeafOptions{})
	chainVerify(t, v, leaf, nil, "")
	e.authCA.Revoke(leaf.SerialNumber, e.now.Add(-time.Minute), 1)
	chainVerify(t, v, leaf, nil, pkibridge.ReasonRevoked)
	sig := coreIssue(t, e.sigCA, jpkisim.LeafOptions{})
	chainVerify(t, v, sig, nil, "")
	v.Policy.SignaturePolicies = nil
	chainVerify(t, v, sig, nil, pkibridge.ReasonKeyUsage)
	if got := chainCacheUsage(v); got.hits != 1 {
		t.Fatalf("want the revoked leaf's chain from the cache and revocation checked anyway: %+v", got)
	}
}

func TestChainCacheOptOut(t *testing.T) {
	e := coreSetup(t)
	v := e.verifier()
	v.NoChainCache = true
	leaf := coreIssue(t, e.authCA, jpkisim.LeafOptions{})
	chainVerify(t, v, leaf, nil, "")
	chainVerify(t, v, leaf, nil, "")
	if got := chainCacheUsage(v); got != (chainCacheUse{}) {
		t.Fatalf("NoChainCache still caches: %+v", got)
	}
}

// BenchmarkVerifyJWSCachedChain and BenchmarkVerifyCMSCachedChain are the
// repeat sign-in: the same certificate again, its chain from the cache.
// The envelope signature, profile, attributes and revocation are still
// checked, so one RSA verification remains.
func BenchmarkVerifyJWSCachedChain(b *testing.B) {
	v, f := benchVerifier(b)
	v.NoChainCache = false
	tok, err := jpkisim.SignJWS(f.leaf.Key, []*x509.Certificate{f.leaf.Cert}, envBenchPayload)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := v.VerifyJWS(ctx, tok, envBenchPayload); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyJWS(ctx, tok, envBenchPayload); err != nil {
			b.Fatal(err)
		}
	}
	if _, hits, _ := pkibridge.ChainCacheStats(v); hits == 0 {
		b.Fatal("chain cache not used")
	}
}

func BenchmarkVerifyCMSCachedChain(b *testing.B) {
	v, f := benchVerifier(b)
	v.NoChainCache = false
	der, err := jpkisim.SignCMS(f.leaf.Key, f.leaf.Cert, envBenchPayload, false)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := v.VerifyCMS(ctx, der, nil, envBenchPayload); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyCMS(ctx, der, nil, envBenchPayload); err != nil {
			b.Fatal(err)
		}
	}
	if _, hits, _ := pkibridge.ChainCacheStats(v); hits == 0 {
		b.Fatal("chain cache not used")
	}
}

// Run with -race: one Verifier shared by concurrent sign-ins, the first
// of which make the cache.
func TestChainCacheConcurrent(t *testing.T) {
	e := coreSetup(t)
	v := e.verifier()
	leaves := []*x509.Certificate{
		coreIssue(t, e.authCA, jpkisim.LeafOptions{}),
		coreIssue(t, e.authCA, jpkisim.LeafOptions{}),
		coreIssue(t, e.sigCA, jpkisim.LeafOptions{}),
	}
	var wg sync.WaitGroup
	errs := make(chan error, 24)
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.VerifyCertificate(context.Background(), leaves[i%len(leaves)], nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := chainCacheUsage(v); got.entries != len(leaves) || got.hits+got.misses != 24 {
		t.Fatalf("after 24 concurrent verifications of %d leaves: %+v", len(leaves), got)
	}
}
