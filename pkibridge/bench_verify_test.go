package pkibridge_test

import (
	"context"
	"crypto/x509"
	"net/http/httptest"
	"testing"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// The full-verification benchmarks measure what a sign-in costs the
// provider: envelope parse and signature, chain to the anchor, profile,
// attributes, and a revocation check answered from the warm OCSP cache.
// Two RSA-2048 verifications are unavoidable (the envelope signature and
// the CA's signature on the leaf), so the target is at most twice
// 2 × BenchmarkRSAVerifyPKCS1v15. The chain cache is off here so that the
// chain is built every time; BenchmarkVerify*CachedChain measure it on.

func benchVerifier(b *testing.B) (*pkibridge.Verifier, *envFixture) {
	b.Helper()
	f := envFixtures(b)
	srv := httptest.NewServer(jpkisim.NewRevocationServer(f.ca))
	b.Cleanup(srv.Close)
	ocsp, err := pkibridge.NewOCSPClient(srv.URL+"/ocsp/0", pkibridge.OCSPOptions{})
	if err != nil {
		b.Fatal(err)
	}
	anchors, err := pkibridge.NewAnchors(f.ca.Cert)
	if err != nil {
		b.Fatal(err)
	}
	v := &pkibridge.Verifier{
		Anchors:    anchors,
		Policy:     pkibridge.DefaultPolicy(),
		Revocation: &pkibridge.Checker{OCSP: []*pkibridge.OCSPClient{ocsp}},
		Mode:       pkibridge.RevocationRequire,
		// Build the chain every time: the target is for the full work.
		NoChainCache: true,
	}
	return v, f
}

func BenchmarkVerifyJWS(b *testing.B) {
	v, f := benchVerifier(b)
	tok, err := jpkisim.SignJWS(f.leaf.Key, []*x509.Certificate{f.leaf.Cert}, envBenchPayload)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if res, err := v.VerifyJWS(ctx, tok, envBenchPayload); err != nil || res.Revocation.Status != pkibridge.StatusGood {
		b.Fatalf("warm-up: %v %+v", err, res)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyJWS(ctx, tok, envBenchPayload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCMS(b *testing.B) {
	v, f := benchVerifier(b)
	der, err := jpkisim.SignCMS(f.leaf.Key, f.leaf.Cert, envBenchPayload, false)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if res, err := v.VerifyCMS(ctx, der, nil, envBenchPayload); err != nil || res.Revocation.Status != pkibridge.StatusGood {
		b.Fatalf("warm-up: %v %+v", err, res)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyCMS(ctx, der, nil, envBenchPayload); err != nil {
			b.Fatal(err)
		}
	}
}
