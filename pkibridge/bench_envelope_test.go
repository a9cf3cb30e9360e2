package pkibridge_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"testing"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// The envelope benchmarks use RSA-2048 and SHA-256, the JPKI case.
// BenchmarkRSAVerifyPKCS1v15 is the yardstick: parsing should cost little
// beyond that one public-key operation.

var envBenchPayload = []byte(`{"iss":"https://op.example","txn":"0123456789abcdef","rp":"client-1","exp":1900000000}`)

func BenchmarkParseJWS(b *testing.B) {
	f := envFixtures(b)
	tok, err := jpkisim.SignJWS(f.leaf.Key, []*x509.Certificate{f.leaf.Cert}, envBenchPayload)
	if err != nil {
		b.Fatal(err)
	}
	p := pkibridge.DefaultPolicy()
	b.ReportAllocs()
	b.SetBytes(int64(len(tok)))
	for b.Loop() {
		if _, err := pkibridge.ParseJWS(tok, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCMS(b *testing.B) {
	f := envFixtures(b)
	der, err := jpkisim.SignCMS(f.leaf.Key, f.leaf.Cert, envBenchPayload, false)
	if err != nil {
		b.Fatal(err)
	}
	p := pkibridge.DefaultPolicy()
	b.ReportAllocs()
	b.SetBytes(int64(len(der)))
	for b.Loop() {
		if _, err := pkibridge.ParseCMS(der, nil, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRSAVerifyPKCS1v15(b *testing.B) {
	f := envFixtures(b)
	sum := sha256.Sum256(envBenchPayload)
	sig, err := jpkisim.SignRaw(f.leaf.Key, envBenchPayload)
	if err != nil {
		b.Fatal(err)
	}
	pub := f.leaf.Cert.PublicKey.(*rsa.PublicKey)
	b.ReportAllocs()
	for b.Loop() {
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}
