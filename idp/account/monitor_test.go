package account

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// TestCheckFacts: the monitor's check against a real CRL of the
// simulator CA: good, then revoked (stale, to be announced once), and a
// checker that cannot decide changes nothing.
func TestCheckFacts(t *testing.T) {
	ctx := context.Background()
	ca, err := jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindSignature})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(jpkisim.NewRevocationServer(ca))
	t.Cleanup(srv.Close)
	dpName, _ := asn1.Marshal(pkix.Name{Country: []string{"JP"}, Organization: []string{"JPKI"}, CommonName: "CRL1"}.ToRDNSequence())
	dp := crlDP(t, dpName)
	s, err := New(store.NewMemory(), Options{KEK: ring(t, kek(t, 1))})
	if err != nil {
		t.Fatal(err)
	}
	facts := jpkisim.Facts{Name: "山田\u3000太郎", Gender: "1", Birthdate: "319800101", Address: "東京都千代田区霞が関1-1"}
	leaf, err := ca.Issue(jpkisim.LeafOptions{Facts: &facts, ExtraExtensions: []pkix.Extension{dp}})
	if err != nil {
		t.Fatal(err)
	}
	sig := &pkibridge.Result{Kind: pkibridge.KindSignature, Leaf: leaf.Cert, Chain: []*x509.Certificate{leaf.Cert, ca.Cert},
		Attributes: &pkibridge.Attributes{Name: facts.Name, Birthdate: "1980-01-01"}, Revocation: pkibridge.RevocationInfo{Status: pkibridge.StatusGood}}
	id, _, err := s.Proof(ctx, sig, authResult(t), "")
	if err != nil {
		t.Fatal(err)
	}
	crl := func() RevocationChecker {
		ch, err := pkibridge.NewChecker([]string{srv.URL + "/crl/0.crl"}, nil, []*x509.Certificate{ca.Cert}, pkibridge.CheckerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	// An OCSP responder that does not answer: undecided, nothing changes.
	dead, _ := pkibridge.NewChecker(nil, []string{"http://127.0.0.1:1/ocsp"}, nil, pkibridge.CheckerOptions{OCSP: pkibridge.OCSPOptions{Timeout: time.Second}})
	before, _ := s.Get(ctx, id)
	if r, err := s.CheckFacts(ctx, id, dead); err != nil || r != FactsUndecided || r.Announce() || !r.Asked() {
		t.Fatalf("undecided: %v %v", r, err)
	}
	if a, _ := s.Get(ctx, id); !a.FactsSource.CheckedAt.Equal(before.FactsSource.CheckedAt) || a.FactsSource.Stale {
		t.Fatal("an undecided check changed the account")
	}
	if r, err := s.CheckFacts(ctx, id, crl()); err != nil || r != FactsGood {
		t.Fatalf("good: %v %v", r, err)
	}
	ca.Revoke(leaf.Cert.SerialNumber, time.Now(), 1)
	if r, err := s.CheckFacts(ctx, id, crl()); err != nil || r != FactsRevoked || !r.Announce() {
		t.Fatalf("revoked: %v %v", r, err)
	}
	// Not announced yet: the next check says so without asking.
	if r, err := s.CheckFacts(ctx, id, dead); err != nil || r != FactsStaleUnannounced || r.Asked() {
		t.Fatalf("stale, unannounced: %v %v", r, err)
	}
	if err := s.AnnounceStale(ctx, id); err != nil {
		t.Fatal(err)
	}
	if r, err := s.CheckFacts(ctx, id, crl()); err != nil || r != FactsSkipped {
		t.Fatalf("announced: %v %v", r, err)
	}
	a, _ := s.Get(ctx, id)
	if !a.FactsSource.Stale || a.FactsSource.AnnouncedAt.IsZero() || a.FactsSource.Revocation.Status != pkibridge.StatusRevoked {
		t.Fatalf("facts source %+v", a.FactsSource)
	}
	// A missing account is nothing to check.
	if r, err := s.CheckFacts(ctx, "gone", crl()); err != nil || r != FactsSkipped {
		t.Fatalf("missing account: %v %v", r, err)
	}
}

// BenchmarkCheckFacts is the facts monitor's cost per account with the
// CRL answering: the sealed account read and opened, the CRL index
// looked up, CheckedAt written back (memory store).
func BenchmarkCheckFacts(b *testing.B) {
	ctx := context.Background()
	ca, err := jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindSignature})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(jpkisim.NewRevocationServer(ca))
	b.Cleanup(srv.Close)
	dpName, _ := asn1.Marshal(pkix.Name{Country: []string{"JP"}, Organization: []string{"JPKI"}, CommonName: "CRL1"}.ToRDNSequence())
	dirName, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: dpName})
	full, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: dirName})
	dpv, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: full})
	seq, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: dpv})
	dpExt, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: seq})
	dp := pkix.Extension{Id: oidExtCRLDistributionPoints, Value: dpExt}
	s, err := New(store.NewMemory(), Options{KEK: seal.GenerateRing()})
	if err != nil {
		b.Fatal(err)
	}
	facts := jpkisim.Facts{Name: "山田\u3000太郎", Gender: "1", Birthdate: "319800101", Address: "東京都千代田区霞が関1-1"}
	leaf, err := ca.Issue(jpkisim.LeafOptions{Facts: &facts, ExtraExtensions: []pkix.Extension{dp}})
	if err != nil {
		b.Fatal(err)
	}
	sig := &pkibridge.Result{Kind: pkibridge.KindSignature, Leaf: leaf.Cert, Chain: []*x509.Certificate{leaf.Cert, ca.Cert},
		Attributes: &pkibridge.Attributes{Name: facts.Name, Birthdate: "1980-01-01"}, Revocation: pkibridge.RevocationInfo{Status: pkibridge.StatusGood}}
	authCA, err := jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindAuthentication})
	if err != nil {
		b.Fatal(err)
	}
	authLeaf, err := authCA.Issue(jpkisim.LeafOptions{})
	if err != nil {
		b.Fatal(err)
	}
	id, _, err := s.Proof(ctx, sig, &pkibridge.Result{Kind: pkibridge.KindAuthentication, Leaf: authLeaf.Cert}, "")
	if err != nil {
		b.Fatal(err)
	}
	crl, err := pkibridge.NewChecker([]string{srv.URL + "/crl/0.crl"}, nil, []*x509.Certificate{ca.Cert}, pkibridge.CheckerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if r, err := s.CheckFacts(ctx, id, crl); err != nil || r != FactsGood {
		b.Fatalf("%v %v", r, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.CheckFacts(ctx, id, crl); err != nil {
			b.Fatal(err)
		}
	}
}
