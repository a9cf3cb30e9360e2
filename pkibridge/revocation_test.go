package pkibridge

import (
	"context"
	"crypto/x509"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestCheckerOrder: the CRL was published before a revocation the OCSP
// responder already knows about. OCSP is asked first, so its "revoked"
// decides; with the responder down the CRL's (older) "good" decides.
func TestCheckerOrder(t *testing.T) {
	ca := revNewOpenSSLCA(t, "/C=JP/O=JPKI-TEST/OU=order", nil)
	leaf, leafPath, _ := ca.issue("late", "leaf_ext")
	_, crl := ca.gencrl()
	ca.revoke(leafPath, "keyCompromise")
	responder := revStartOCSP(t, ca, ca.pem, ca.key, "-ndays", "1")
	crlPath := revWriteFile(t, crl)
	down := revClosedPortURL(t)

	for _, tc := range []struct {
		name       string
		ocsp       []string
		crls       []string
		want       RevocationStatus
		wantSource string
		// The source errors reported, in order.
		failed []string
	}{
		{"OCSP before CRL", []string{responder}, []string{crlPath}, StatusRevoked, "ocsp:" + responder, nil},
		{"OCSP down, CRL decides", []string{down}, []string{crlPath}, StatusGood, "crl:" + crlPath, []string{SourceOCSP}},
		{"first OCSP down, second decides", []string{down, responder}, nil, StatusRevoked, "ocsp:" + responder, []string{SourceOCSP}},
		{"CRL only", nil, []string{crlPath}, StatusGood, "crl:" + crlPath, nil},
		{"nothing decides", []string{down}, []string{revWriteFile(t, []byte("not a CRL"))}, StatusUnknown, "", []string{SourceOCSP, SourceCRL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var failed []string
			c, err := NewChecker(tc.crls, tc.ocsp, []*x509.Certificate{ca.cert}, CheckerOptions{SourceError: func(kind string) {
				mu.Lock()
				failed = append(failed, kind)
				mu.Unlock()
			}})
			if err != nil {
				t.Fatal(err)
			}
			info, err := c.CheckRevocation(context.Background(), leaf, ca.cert)
			if (err != nil) != (tc.want == StatusUnknown) || info.Status != tc.want || info.Source != tc.wantSource {
				t.Fatalf("got %+v, %v; want %s from %s", info, err, tc.want, tc.wantSource)
			}
			if !slices.Equal(failed, tc.failed) {
				t.Fatalf("source errors reported %v, want %v", failed, tc.failed)
			}
		})
	}
	// A check the caller gave up on is not the sources' failure.
	c, err := NewChecker(nil, []string{down}, nil, CheckerOptions{SourceError: func(kind string) { t.Errorf("reported %s for a canceled check", kind) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.CheckRevocation(ctx, leaf, ca.cert); err == nil {
		t.Fatal("a canceled check decided")
	}
}

// TestCheckerPairing gives NewChecker unpaired CRL locations and issuers
// that include two CAs with the same DN (like two J-LIS generations).
// Each CRL must pair with the CA whose key signed it, and answer only for
// that CA's certificates.
func TestCheckerPairing(t *testing.T) {
	const dn = "/C=JP/O=JPKI-TEST/OU=JPKI for digital signature"
	gen1 := revNewOpenSSLCA(t, dn, nil)
	gen2 := revNewOpenSSLCA(t, dn, nil)
	other := revNewOpenSSLCA(t, "/C=JP/O=OTHER", nil)
	leaf1, p1, _ := gen1.issue("g1", "leaf_ext")
	leaf2, _, _ := gen2.issue("g2", "leaf_ext")
	gen1.revoke(p1, "superseded")
	_, crl1 := gen1.gencrl()
	_, crl2 := gen2.gencrl()
	loc1, loc2 := revWriteFile(t, crl1), revWriteFile(t, crl2)
	issuers := []*x509.Certificate{other.cert, gen2.cert, gen1.cert}

	c, err := NewChecker([]string{loc1, loc2}, nil, issuers, CheckerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := c.CRLs[0].Issuer(); got != gen1.cert {
		t.Fatalf("%s paired with %v, want generation 1", loc1, got.Subject)
	}
	if got := c.CRLs[1].Issuer(); got != gen2.cert {
		t.Fatalf("%s paired with %v, want generation 2", loc2, got.Subject)
	}
	info, err := c.CheckRevocation(context.Background(), leaf1, gen1.cert)
	if err != nil || info.Status != StatusRevoked || info.Source != "crl:"+loc1 {
		t.Fatalf("gen1 leaf: %+v, %v", info, err)
	}
	info, err = c.CheckRevocation(context.Background(), leaf2, gen2.cert)
	if err != nil || info.Status != StatusGood || info.Source != "crl:"+loc2 {
		t.Fatalf("gen2 leaf: %+v, %v", info, err)
	}
	// Each source alone refuses the other generation's leaf.
	if info, err := c.CRLs[0].CheckRevocation(context.Background(), leaf2, gen2.cert); err == nil || info.Status != StatusUnknown {
		t.Fatalf("gen1 CRL answered for gen2 leaf: %+v", info)
	}
	// A leaf no CRL covers: unknown, with every source's reason.
	otherLeaf, _, _ := other.issue("o", "leaf_ext")
	info, err = c.CheckRevocation(context.Background(), otherLeaf, other.cert)
	if err == nil || info.Status != StatusUnknown {
		t.Fatalf("uncovered leaf: %+v, %v", info, err)
	}
	revReasonIs(t, err, ReasonRevocationUnknown)
	for _, loc := range []string{loc1, loc2} {
		if !strings.Contains(err.Error(), loc) {
			t.Errorf("joined error %q omits %s", err, loc)
		}
	}
}

func TestCheckerRefreshAndErrors(t *testing.T) {
	ca := revNewOpenSSLCA(t, "/C=JP/O=JPKI-TEST/OU=errors", nil)
	leaf, _, _ := ca.issue("x", "leaf_ext")
	_, crl := ca.gencrl()
	good := revWriteFile(t, crl)
	bad := revWriteFile(t, crl[:len(crl)/2])

	c, err := NewChecker([]string{good, bad}, nil, []*x509.Certificate{ca.cert}, CheckerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Refresh(context.Background())
	if err == nil || !strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), good+":") {
		t.Fatalf("Refresh = %v; want only %s's failure", err, bad)
	}

	empty := &Checker{}
	if info, err := empty.CheckRevocation(context.Background(), leaf, ca.cert); err == nil || info.Status != StatusUnknown {
		t.Fatalf("no sources: %+v, %v", info, err)
	}

	for _, tc := range []struct {
		name    string
		crls    []string
		ocsp    []string
		issuers []*x509.Certificate
	}{
		{"CRL without issuers", []string{good}, nil, nil},
		{"bad OCSP URL", nil, []string{"not a url"}, nil},
		{"LDAP CRL", []string{"ldap://dir/cn=crl"}, nil, []*x509.Certificate{ca.cert}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewChecker(tc.crls, tc.ocsp, tc.issuers, CheckerOptions{}); err == nil {
				t.Fatal("accepted")
			} else {
				revReasonIs(t, err, ReasonMalformed)
			}
		})
	}
}

// The Checker is what the Verifier holds.
var _ RevocationChecker = (*Checker)(nil)
var _ RevocationChecker = (*CRLSource)(nil)
var _ RevocationChecker = (*OCSPClient)(nil)
