package account

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/internal/logref"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

// The facts' certificate is not kept, only what a revocation check asks
// about it; the checks still work, by OCSP and by CRL, against the
// simulator CA's real responder and CRL, and the log line that marks the
// facts stale names neither the account nor the certificate.
func TestRecheckWithoutTheCertificate(t *testing.T) {
	ca, err := jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindSignature})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(jpkisim.NewRevocationServer(ca))
	t.Cleanup(srv.Close)
	// A CRL distribution point as JPKI certificates carry it: a
	// directory name.
	dpName, err := asn1.Marshal(pkix.Name{Country: []string{"JP"}, Organization: []string{"JPKI"}, CommonName: "CRL1"}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	dp := crlDP(t, dpName)

	for _, source := range []string{"ocsp", "crl"} {
		t.Run(source, func(t *testing.T) {
			ctx := context.Background()
			var logs bytes.Buffer
			c := &clock{}
			logger := slog.New(logref.Wrap(slog.NewJSONHandler(&logs, nil), logref.Key([]byte("cookie key 0123456789 0123456789"))))
			s, err := New(store.NewMemory(), Options{KEK: ring(t, kek(t, 1)), Recheck: time.Hour, Logger: logger, Now: c.now})
			if err != nil {
				t.Fatal(err)
			}
			checker := func() RevocationChecker {
				var ch *pkibridge.Checker
				var err error
				if source == "ocsp" {
					ch, err = pkibridge.NewChecker(nil, []string{srv.URL + "/ocsp/0"}, nil, pkibridge.CheckerOptions{OCSP: pkibridge.OCSPOptions{NoCache: true}})
				} else {
					ch, err = pkibridge.NewChecker([]string{srv.URL + "/crl/0.crl"}, nil, []*x509.Certificate{ca.Cert}, pkibridge.CheckerOptions{})
				}
				if err != nil {
					t.Fatal(err)
				}
				return ch
			}
			facts := jpkisim.Facts{Name: "山田\u3000太郎", Gender: "1", Birthdate: "319800101", Address: "東京都千代田区霞が関1-1"}
			leaf, err := ca.Issue(jpkisim.LeafOptions{Facts: &facts, ExtraExtensions: []pkix.Extension{dp}})
			if err != nil {
				t.Fatal(err)
			}
			sig := &pkibridge.Result{Kind: pkibridge.KindSignature, Leaf: leaf.Cert, Chain: []*x509.Certificate{leaf.Cert, ca.Cert},
				Attributes: &pkibridge.Attributes{Name: facts.Name, Birthdate: "1980-01-01"},
				Revocation: pkibridge.RevocationInfo{Status: pkibridge.StatusGood}}
			id, _, err := s.Proof(ctx, sig, authResult(t), "")
			if err != nil {
				t.Fatal(err)
			}
			a, err := s.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			ref := a.FactsSource.Recheck
			if ref == nil || !bytes.Equal(ref.RawIssuer, leaf.Cert.RawIssuer) || !bytes.Equal(ref.IssuerCert, ca.Cert.Raw) ||
				!bytes.Equal(ref.AuthorityKeyID, leaf.Cert.AuthorityKeyId) || !bytes.Equal(ref.CRLDistributionPoints, dp.Value) {
				t.Fatalf("revocation reference %+v", ref)
			}

			// Within the period nothing is asked; after it, "good" moves
			// the check forward.
			s.checker = checker()
			c.advance(2 * time.Hour)
			got, err := s.RecheckFacts(ctx, a)
			if err != nil || got.FactsSource.Stale || !got.FactsSource.CheckedAt.After(a.FactsSource.CheckedAt) {
				t.Fatalf("good: %+v %v", got.FactsSource, err)
			}
			// Revoked: stale for good.
			ca.Revoke(leaf.Cert.SerialNumber, time.Now(), 1)
			s.checker = checker()
			c.advance(2 * time.Hour)
			got, err = s.RecheckFacts(ctx, got)
			if err != nil || !got.FactsSource.Stale || got.FactsSource.Revocation.Status != pkibridge.StatusRevoked {
				t.Fatalf("revoked: %+v %v", got.FactsSource, err)
			}
			if a, _ := s.Get(ctx, id); !a.FactsSource.Stale {
				t.Fatal("staleness not stored")
			}
			out := logs.String()
			if !strings.Contains(out, `"msg":"facts marked stale`) || !strings.Contains(out, `"account_ref":"`) {
				t.Fatalf("log: %s", out)
			}
			for _, secret := range []string{id, leaf.Cert.SerialNumber.String(), leaf.Cert.SerialNumber.Text(16), `"cert_serial"`, `"account":`} {
				if strings.Contains(out, secret) {
					t.Errorf("log holds %q: %s", secret, out)
				}
			}
		})
	}
}

// crlDP is a CRL distribution points extension naming one directory
// name, as JPKI certificates do.
func crlDP(t *testing.T, rdn []byte) pkix.Extension {
	t.Helper()
	dirName := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: rdn}
	full := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustMarshal(t, dirName)}
	dpName := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustMarshal(t, full)}
	dp := asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: mustMarshal(t, dpName)}
	v := mustMarshal(t, []asn1.RawValue{dp})
	return pkix.Extension{Id: oidExtCRLDistributionPoints, Value: v}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A revocation reference that cannot be used is logged and leaves the
// facts as they are; it never reaches the checker.
func TestRevocationSubjectRefusals(t *testing.T) {
	good := &RevocationRef{IssuerCert: cert(t).Raw}
	for _, tc := range []struct {
		name string
		fs   FactsSource
	}{
		{"serial not decimal", FactsSource{Serial: "0x10", Recheck: good}},
		{"serial negative", FactsSource{Serial: "-5", Recheck: good}},
		{"serial empty", FactsSource{Serial: "", Recheck: good}},
		{"issuer certificate garbage", FactsSource{Serial: "5", Recheck: &RevocationRef{IssuerCert: []byte{0x30, 0x00}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := tc.fs.revocationSubject(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	fs := FactsSource{Serial: "1004", Recheck: good}
	leaf, issuer, err := fs.revocationSubject()
	if err != nil || leaf.SerialNumber.String() != "1004" || issuer == nil || leaf.Extensions != nil {
		t.Fatalf("%v %v", leaf, err)
	}
}
