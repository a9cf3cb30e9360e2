package pkibridge_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// coreRSAKeys are generated once per test binary: RSA-2048 generation is
// the slowest step of issuing, and tests do not need distinct leaf keys
// unless they say so.
var coreRSAKeys = sync.OnceValue(func() []*rsa.PrivateKey {
	keys := make([]*rsa.PrivateKey, 6)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	return keys
})

// Key slots: 0 leaf, 1 signature CA, 2 authentication CA, 3 unknown CA,
// 4 and 5 for second generations and intermediates.
func coreKey(i int) *rsa.PrivateKey { return coreRSAKeys()[i] }

// coreFacts are synthetic basic four facts; the values are fiction.
func coreFacts() *jpkisim.Facts {
	return &jpkisim.Facts{
		Name:                "山田\u3000太郎",
		NameSubstitution:    "00000",
		Gender:              "1",
		Birthdate:           jpkisim.EraDate(time.Date(1980, 12, 31, 0, 0, 0, 0, time.UTC)),
		Address:             "東京都千代田区千代田１－１",
		AddressSubstitution: "0000000000000",
	}
}

type coreEnv struct {
	sigCA, authCA *jpkisim.CA
	anchors       *pkibridge.Anchors
	now           time.Time
}

func coreSetup(t testing.TB) *coreEnv {
	t.Helper()
	sig := coreCA(t, jpkisim.CAOptions{Kind: pkibridge.KindSignature, Key: coreKey(1)})
	auth := coreCA(t, jpkisim.CAOptions{Kind: pkibridge.KindAuthentication, Key: coreKey(2)})
	anchors, err := pkibridge.NewAnchors(sig.Cert, auth.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return &coreEnv{sigCA: sig, authCA: auth, anchors: anchors, now: time.Now()}
}

func coreCA(t testing.TB, opts jpkisim.CAOptions) *jpkisim.CA {
	t.Helper()
	ca, err := jpkisim.NewCA(opts)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// coreIssue issues from ca with the shared leaf key and, for signature
// CAs, the synthetic facts unless opts says otherwise.
func coreIssue(t testing.TB, ca *jpkisim.CA, opts jpkisim.LeafOptions) *x509.Certificate {
	t.Helper()
	if opts.Key == nil && opts.KeyBits == 0 {
		opts.Key = coreKey(0)
	}
	if ca.Kind == pkibridge.KindSignature && opts.Facts == nil && !opts.OmitFacts {
		opts.Facts = coreFacts()
	}
	leaf, err := ca.Issue(opts)
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Cert
}

// coreSubCA makes an intermediate CA under parent, usable with Issue.
func coreSubCA(t testing.TB, parent *jpkisim.CA, key *rsa.PrivateKey, notBefore, notAfter time.Time) *jpkisim.CA {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{Country: []string{"JP"}, Organization: []string{"JPKI-SIMULATOR"}, OrganizationalUnit: []string{"intermediate"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          []byte(key.PublicKey.N.Bytes()[:20]),
		AuthorityKeyId:        parent.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, &key.PublicKey, parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &jpkisim.CA{Kind: parent.Kind, Cert: cert, Key: key}
}

// simRevocation answers from the simulator CAs' own revocation lists.
type simRevocation struct {
	cas   []*jpkisim.CA
	calls *int
}

func (s simRevocation) CheckRevocation(_ context.Context, leaf, issuer *x509.Certificate) (pkibridge.RevocationInfo, error) {
	if s.calls != nil {
		*s.calls++
	}
	for _, ca := range s.cas {
		if !bytes.Equal(ca.Cert.RawSubjectPublicKeyInfo, issuer.RawSubjectPublicKeyInfo) {
			continue
		}
		if r, ok := ca.IsRevoked(leaf.SerialNumber); ok {
			return pkibridge.RevocationInfo{Status: pkibridge.StatusRevoked, Source: "sim", RevokedAt: r.RevokedAt}, nil
		}
		return pkibridge.RevocationInfo{Status: pkibridge.StatusGood, Source: "sim"}, nil
	}
	return pkibridge.RevocationInfo{Status: pkibridge.StatusUnknown}, errors.New("issuer not covered by this checker")
}

// faultRevocation injects the one thing a real checker cannot be made to
// do on demand: have no answer.
type faultRevocation struct{ status pkibridge.RevocationStatus }

func (f faultRevocation) CheckRevocation(context.Context, *x509.Certificate, *x509.Certificate) (pkibridge.RevocationInfo, error) {
	if f.status == "" {
		return pkibridge.RevocationInfo{Status: pkibridge.StatusUnknown, Source: "ocsp:http://responder.invalid"}, errors.New("responder unreachable")
	}
	return pkibridge.RevocationInfo{Status: f.status, Source: "fault"}, nil
}

func (e *coreEnv) verifier() *pkibridge.Verifier {
	now := e.now
	return &pkibridge.Verifier{
		Anchors:    e.anchors,
		Policy:     pkibridge.DefaultPolicy(),
		Revocation: simRevocation{cas: []*jpkisim.CA{e.sigCA, e.authCA}},
		Now:        func() time.Time { return now },
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// coreSelfSigned makes a self-signed certificate with the auth profile
// (not a CA), signed by its own key.
func coreSelfSigned(t testing.TB, key *rsa.PrivateKey) *x509.Certificate {
	t.Helper()
	oid, err := x509.ParseOID(pkibridge.PolicyAuthentication)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{Country: []string{"JP"}, Organization: []string{"JPKI-SIMULATOR"}, CommonName: "self"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		Policies:     []x509.OID{oid},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// coreTamper flips a bit in the certificate's signature.
func coreTamper(t testing.TB, c *x509.Certificate) *x509.Certificate {
	t.Helper()
	raw := bytes.Clone(c.Raw)
	raw[len(raw)-1] ^= 0x01
	out, err := x509.ParseCertificate(raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func coreWantReason(t *testing.T, err error, want pkibridge.Reason) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got success, want %s", want)
	}
	var pe *pkibridge.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v is not a *pkibridge.Error", err)
	}
	if pe.Reason != want {
		t.Fatalf("reason %s, want %s (%v)", pe.Reason, want, err)
	}
	if pe.Detail == "" {
		t.Fatalf("error without detail: %v", err)
	}
}

// coreNoPersonalData fails if s mentions any of the synthetic facts.
func coreNoPersonalData(t *testing.T, s string) {
	t.Helper()
	f := coreFacts()
	for _, v := range []string{f.Name, "山田", "太郎", f.Address, f.Birthdate, "1980-12-31"} {
		if strings.Contains(s, v) {
			t.Fatalf("personal data in %q", s)
		}
	}
}

func TestVerifyCertificate(t *testing.T) {
	e := coreSetup(t)
	now := e.now
	other := coreCA(t, jpkisim.CAOptions{Kind: pkibridge.KindAuthentication, Key: coreKey(3)})
	weakCA := coreCA(t, jpkisim.CAOptions{Kind: pkibridge.KindAuthentication, KeyBits: 1024})
	shortCA := coreCA(t, jpkisim.CAOptions{Kind: pkibridge.KindAuthentication, Key: coreKey(4), NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Minute)})
	expiredCA := coreCA(t, jpkisim.CAOptions{Kind: pkibridge.KindAuthentication, Key: coreKey(4), NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	lateCA := coreCA(t, jpkisim.CAOptions{Kind: pkibridge.KindAuthentication, Key: coreKey(5), NotBefore: now.Add(time.Minute)})
	futureCA := coreCA(t, jpkisim.CAOptions{Kind: pkibridge.KindAuthentication, Key: coreKey(5), NotBefore: now.Add(time.Hour)})
	inter := coreSubCA(t, e.authCA, coreKey(4), now.Add(-time.Hour), now.AddDate(3, 0, 0))
	expiredInter := coreSubCA(t, e.authCA, coreKey(4), now.Add(-48*time.Hour), now.Add(-time.Hour))
	weakInter := coreSubCA(t, e.authCA, func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}(), now.Add(-time.Hour), now.AddDate(3, 0, 0))

	ecKey := func(c elliptic.Curve) crypto.Signer {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	unknownCritical := pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{0x05, 0x00}}
	unknownNonCritical := unknownCritical
	unknownNonCritical.Critical = false
	criticalSAN, err := jpkisim.SANExtension(*coreFacts())
	if err != nil {
		t.Fatal(err)
	}
	criticalSAN.Critical = true
	smartphoneOID := "1.2.392.200149.8.5.1.3.99"

	sigFacts := func(mut func(*jpkisim.Facts)) *jpkisim.Facts {
		f := coreFacts()
		mut(f)
		return f
	}
	anchorsWith := func(certs ...*x509.Certificate) *pkibridge.Anchors {
		a, err := pkibridge.NewAnchors(certs...)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	eeParent := &jpkisim.CA{Kind: pkibridge.KindAuthentication, Cert: coreIssue(t, e.authCA, jpkisim.LeafOptions{Key: coreKey(5)}), Key: coreKey(5)}

	type tc struct {
		name   string
		leaf   func() *x509.Certificate
		extra  []*x509.Certificate
		adjust func(v *pkibridge.Verifier)
		want   pkibridge.Reason
		detail string // substring of the error, when set
		// on success
		kind      pkibridge.Kind
		chainLen  int
		softFail  bool
		revStatus pkibridge.RevocationStatus
	}
	sig := func(o jpkisim.LeafOptions) func() *x509.Certificate {
		return func() *x509.Certificate { return coreIssue(t, e.sigCA, o) }
	}
	auth := func(o jpkisim.LeafOptions) func() *x509.Certificate {
		return func() *x509.Certificate { return coreIssue(t, e.authCA, o) }
	}
	from := func(ca *jpkisim.CA, o jpkisim.LeafOptions) func() *x509.Certificate {
		return func() *x509.Certificate { return coreIssue(t, ca, o) }
	}
	withLeeway := func(d time.Duration) func(*pkibridge.Verifier) {
		return func(v *pkibridge.Verifier) { v.Leeway = d }
	}
	trust := func(certs ...*x509.Certificate) func(*pkibridge.Verifier) {
		return func(v *pkibridge.Verifier) { v.Anchors = anchorsWith(certs...) }
	}
	revokedAuth := func() *x509.Certificate {
		c := coreIssue(t, e.authCA, jpkisim.LeafOptions{})
		e.authCA.Revoke(c.SerialNumber, now.Add(-time.Minute), 1)
		return c
	}
	revokedSig := func() *x509.Certificate {
		c := coreIssue(t, e.sigCA, jpkisim.LeafOptions{})
		e.sigCA.Revoke(c.SerialNumber, now.Add(-time.Minute), 3)
		return c
	}

	cases := []tc{
		{name: "valid signature cert", leaf: sig(jpkisim.LeafOptions{}), kind: pkibridge.KindSignature, chainLen: 2, revStatus: pkibridge.StatusGood},
		{name: "valid auth cert", leaf: auth(jpkisim.LeafOptions{}), kind: pkibridge.KindAuthentication, chainLen: 2, revStatus: pkibridge.StatusGood},
		{name: "valid ECDSA P-256 auth cert", leaf: auth(jpkisim.LeafOptions{Key: ecKey(elliptic.P256())}), kind: pkibridge.KindAuthentication, chainLen: 2, revStatus: pkibridge.StatusGood},
		{name: "valid ECDSA P-384 auth cert", leaf: auth(jpkisim.LeafOptions{Key: ecKey(elliptic.P384())}), kind: pkibridge.KindAuthentication, chainLen: 2, revStatus: pkibridge.StatusGood},
		{name: "critical SAN with otherNames only is understood", leaf: sig(jpkisim.LeafOptions{OmitFacts: true, ExtraExtensions: []pkix.Extension{criticalSAN}}), kind: pkibridge.KindSignature, chainLen: 2, revStatus: pkibridge.StatusGood},
		{name: "unknown non-critical extension ignored", leaf: auth(jpkisim.LeafOptions{ExtraExtensions: []pkix.Extension{unknownNonCritical}}), kind: pkibridge.KindAuthentication, chainLen: 2, revStatus: pkibridge.StatusGood},

		// validity
		{name: "expired leaf", leaf: auth(jpkisim.LeafOptions{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}), want: pkibridge.ReasonExpired},
		{name: "leaf not yet valid", leaf: auth(jpkisim.LeafOptions{NotBefore: now.Add(24 * time.Hour)}), want: pkibridge.ReasonNotYetValid},
		{name: "leaf expired within leeway", leaf: auth(jpkisim.LeafOptions{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Minute)}), adjust: withLeeway(5 * time.Minute), kind: pkibridge.KindAuthentication, chainLen: 2, revStatus: pkibridge.StatusGood},
		{name: "leaf expired beyond leeway", leaf: auth(jpkisim.LeafOptions{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-10 * time.Minute)}), adjust: withLeeway(5 * time.Minute), want: pkibridge.ReasonExpired},
		{name: "leaf starts within leeway", leaf: auth(jpkisim.LeafOptions{NotBefore: now.Add(time.Minute)}), adjust: withLeeway(5 * time.Minute), kind: pkibridge.KindAuthentication, chainLen: 2, revStatus: pkibridge.StatusGood},
		{name: "leaf expired, leeway zero", leaf: auth(jpkisim.LeafOptions{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Minute)}), want: pkibridge.ReasonExpired},
		{name: "anchor expired", leaf: from(expiredCA, jpkisim.LeafOptions{NotBefore: now.Add(-24 * time.Hour)}), adjust: trust(expiredCA.Cert), want: pkibridge.ReasonExpired, detail: "anchor "},
		{name: "anchor expired within leeway", leaf: from(shortCA, jpkisim.LeafOptions{NotBefore: now.Add(-24 * time.Hour)}), adjust: func(v *pkibridge.Verifier) {
			v.Anchors = anchorsWith(shortCA.Cert)
			v.Leeway = 5 * time.Minute
			v.Mode = pkibridge.RevocationOff
		}, kind: pkibridge.KindAuthentication, chainLen: 2, revStatus: pkibridge.StatusSkipped},
		{name: "anchor not yet valid", leaf: from(futureCA, jpkisim.LeafOptions{}), adjust: trust(futureCA.Cert), want: pkibridge.ReasonNotYetValid},
		{name: "anchor starts within leeway", leaf: from(lateCA, jpkisim.LeafOptions{}), adjust: func(v *pkibridge.Verifier) {
			v.Anchors = anchorsWith(lateCA.Cert)
			v.Leeway = 5 * time.Minute
			v.Mode = pkibridge.RevocationOff
		}, kind: pkibridge.KindAuthentication, chainLen: 2, revStatus: pkibridge.StatusSkipped},

		// trust
		{name: "unknown CA", leaf: from(other, jpkisim.LeafOptions{}), want: pkibridge.ReasonUntrusted},
		{name: "x5c carries another root", leaf: from(other, jpkisim.LeafOptions{}), extra: []*x509.Certificate{other.Cert}, want: pkibridge.ReasonUntrusted},
		{name: "self-signed leaf", leaf: func() *x509.Certificate { return coreSelfSigned(t, coreKey(0)) }, want: pkibridge.ReasonUntrusted},
		{name: "self-signed leaf offered in x5c too", leaf: func() *x509.Certificate { return coreSelfSigned(t, coreKey(0)) }, extra: []*x509.Certificate{coreSelfSigned(t, coreKey(0))}, want: pkibridge.ReasonUntrusted},
		{name: "no anchors configured", leaf: auth(jpkisim.LeafOptions{}), adjust: func(v *pkibridge.Verifier) { v.Anchors = nil }, want: pkibridge.ReasonUntrusted},
		{name: "tampered leaf signature", leaf: func() *x509.Certificate { return coreTamper(t, coreIssue(t, e.authCA, jpkisim.LeafOptions{})) }, want: pkibridge.ReasonBadSignature, detail: "authority key identifier"},
		{name: "SHA-1 signed leaf", leaf: auth(jpkisim.LeafOptions{SignatureAlgorithm: x509.SHA1WithRSA}), want: pkibridge.ReasonWeakAlgorithm, detail: "SHA1-RSA"},
		{name: "chain via configured intermediate", leaf: from(inter, jpkisim.LeafOptions{}), adjust: func(v *pkibridge.Verifier) {
			v.Intermediates = []*x509.Certificate{inter.Cert}
			v.Mode = pkibridge.RevocationOff
		}, kind: pkibridge.KindAuthentication, chainLen: 3, revStatus: pkibridge.StatusSkipped},
		{name: "chain via intermediate in x5c", leaf: from(inter, jpkisim.LeafOptions{}), extra: []*x509.Certificate{inter.Cert}, adjust: func(v *pkibridge.Verifier) { v.Mode = pkibridge.RevocationOff }, kind: pkibridge.KindAuthentication, chainLen: 3, revStatus: pkibridge.StatusSkipped},
		{name: "x5c includes the anchor itself", leaf: auth(jpkisim.LeafOptions{}), extra: []*x509.Certificate{e.authCA.Cert}, kind: pkibridge.KindAuthentication, chainLen: 2, revStatus: pkibridge.StatusGood},
		{name: "issued by an end-entity certificate", leaf: from(eeParent, jpkisim.LeafOptions{}), extra: []*x509.Certificate{eeParent.Cert}, want: pkibridge.ReasonUntrusted, detail: "is not a CA certificate"},
		{name: "intermediate missing", leaf: from(inter, jpkisim.LeafOptions{}), want: pkibridge.ReasonUntrusted},
		{name: "intermediate expired", leaf: from(expiredInter, jpkisim.LeafOptions{NotBefore: now.Add(-24 * time.Hour)}), extra: []*x509.Certificate{expiredInter.Cert}, want: pkibridge.ReasonExpired, detail: "intermediate "},
		{name: "intermediate RSA-1024", leaf: from(weakInter, jpkisim.LeafOptions{}), extra: []*x509.Certificate{weakInter.Cert}, want: pkibridge.ReasonWeakKey},
		{name: "anchor RSA-1024", leaf: from(weakCA, jpkisim.LeafOptions{}), adjust: trust(weakCA.Cert), want: pkibridge.ReasonWeakKey},

		// profile
		{name: "CA certificate as leaf", leaf: auth(jpkisim.LeafOptions{IsCA: true}), want: pkibridge.ReasonKeyUsage},
		{name: "keyCertSign leaf", leaf: auth(jpkisim.LeafOptions{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}), want: pkibridge.ReasonKeyUsage},
		{name: "key usage missing", leaf: auth(jpkisim.LeafOptions{KeyUsage: -1}), want: pkibridge.ReasonKeyUsage},
		{name: "non-critical key usage still enforced", leaf: sig(jpkisim.LeafOptions{KeyUsage: x509.KeyUsageDigitalSignature, KeyUsageNonCritical: true}), want: pkibridge.ReasonKeyUsage},
		{name: "non-critical correct key usage accepted", leaf: auth(jpkisim.LeafOptions{KeyUsageNonCritical: true}), kind: pkibridge.KindAuthentication, chainLen: 2, revStatus: pkibridge.StatusGood},
		{name: "signature policy, auth usage", leaf: sig(jpkisim.LeafOptions{KeyUsage: x509.KeyUsageDigitalSignature}), want: pkibridge.ReasonKeyUsage},
		{name: "auth policy, signature usage", leaf: auth(jpkisim.LeafOptions{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment}), want: pkibridge.ReasonKeyUsage},
		{name: "encipherment only", leaf: auth(jpkisim.LeafOptions{KeyUsage: x509.KeyUsageKeyEncipherment}), want: pkibridge.ReasonKeyUsage},
		{name: "unknown policy", leaf: auth(jpkisim.LeafOptions{Policies: []string{"1.2.392.200149.8.5.1.9.9"}}), want: pkibridge.ReasonKeyUsage},
		{name: "no policy", leaf: auth(jpkisim.LeafOptions{Policies: []string{}}), want: pkibridge.ReasonKeyUsage},
		{name: "both policies", leaf: auth(jpkisim.LeafOptions{Policies: []string{pkibridge.PolicySignature, pkibridge.PolicyAuthentication}}), want: pkibridge.ReasonKeyUsage},
		{name: "smartphone policy refused by default", leaf: auth(jpkisim.LeafOptions{Policies: []string{smartphoneOID}}), want: pkibridge.ReasonKeyUsage},
		{name: "smartphone policy accepted when configured", leaf: auth(jpkisim.LeafOptions{Policies: []string{smartphoneOID}}), adjust: func(v *pkibridge.Verifier) {
			v.Policy.AuthenticationPolicies = append(v.Policy.AuthenticationPolicies, smartphoneOID)
		}, kind: pkibridge.KindAuthentication, chainLen: 2, revStatus: pkibridge.StatusGood},
		{name: "RSA-1024 leaf", leaf: auth(jpkisim.LeafOptions{KeyBits: 1024}), want: pkibridge.ReasonWeakKey},
		{name: "ECDSA P-521 leaf", leaf: auth(jpkisim.LeafOptions{Key: ecKey(elliptic.P521())}), want: pkibridge.ReasonWeakKey},
		{name: "Ed25519 leaf", leaf: auth(jpkisim.LeafOptions{Key: edKey}), want: pkibridge.ReasonWeakKey},
		{name: "unknown critical extension", leaf: auth(jpkisim.LeafOptions{ExtraExtensions: []pkix.Extension{unknownCritical}}), want: pkibridge.ReasonMalformed},

		// revocation
		{name: "revoked auth cert", leaf: revokedAuth, want: pkibridge.ReasonRevoked},
		{name: "revoked signature cert", leaf: revokedSig, want: pkibridge.ReasonRevoked},
		{name: "revoked even in prefer", leaf: revokedAuth, adjust: func(v *pkibridge.Verifier) { v.Mode = pkibridge.RevocationPrefer }, want: pkibridge.ReasonRevoked},
		{name: "revoked ignored in off", leaf: revokedAuth, adjust: func(v *pkibridge.Verifier) { v.Mode = pkibridge.RevocationOff }, kind: pkibridge.KindAuthentication, chainLen: 2, revStatus: pkibridge.StatusSkipped},
		{name: "unknown status, require", leaf: auth(jpkisim.LeafOptions{}), adjust: func(v *pkibridge.Verifier) {
			v.Revocation = faultRevocation{}
			v.Mode = pkibridge.RevocationRequire
		}, want: pkibridge.ReasonRevocationUnknown},
		{name: "unknown status without error, require", leaf: auth(jpkisim.LeafOptions{}), adjust: func(v *pkibridge.Verifier) {
			v.Revocation = faultRevocation{status: pkibridge.StatusUnknown}
		}, want: pkibridge.ReasonRevocationUnknown},
		{name: "unrecognised status counts as unknown", leaf: auth(jpkisim.LeafOptions{}), adjust: func(v *pkibridge.Verifier) {
			v.Revocation = faultRevocation{status: "maybe"}
		}, want: pkibridge.ReasonRevocationUnknown},
		{name: "unknown status, prefer", leaf: auth(jpkisim.LeafOptions{}), adjust: func(v *pkibridge.Verifier) {
			v.Revocation = faultRevocation{}
			v.Mode = pkibridge.RevocationPrefer
		}, kind: pkibridge.KindAuthentication, chainLen: 2, softFail: true, revStatus: pkibridge.StatusUnknown},
		{name: "no checker, require", leaf: auth(jpkisim.LeafOptions{}), adjust: func(v *pkibridge.Verifier) { v.Revocation = nil }, want: pkibridge.ReasonRevocationUnknown},
		{name: "no checker, prefer", leaf: auth(jpkisim.LeafOptions{}), adjust: func(v *pkibridge.Verifier) {
			v.Revocation = nil
			v.Mode = pkibridge.RevocationPrefer
		}, want: pkibridge.ReasonRevocationUnknown},
		{name: "no checker, off", leaf: auth(jpkisim.LeafOptions{}), adjust: func(v *pkibridge.Verifier) {
			v.Revocation = nil
			v.Mode = pkibridge.RevocationOff
		}, kind: pkibridge.KindAuthentication, chainLen: 2, revStatus: pkibridge.StatusSkipped},
		{name: "unrecognised mode", leaf: auth(jpkisim.LeafOptions{}), adjust: func(v *pkibridge.Verifier) { v.Mode = "sometimes" }, want: pkibridge.ReasonRevocationUnknown},

		// attributes
		{name: "signature cert without SAN", leaf: sig(jpkisim.LeafOptions{OmitFacts: true}), want: pkibridge.ReasonAttributes},
		{name: "name missing", leaf: sig(jpkisim.LeafOptions{Facts: sigFacts(func(f *jpkisim.Facts) { f.Name = "" })}), want: pkibridge.ReasonAttributes},
		{name: "gender missing", leaf: sig(jpkisim.LeafOptions{Facts: sigFacts(func(f *jpkisim.Facts) { f.Gender = "" })}), want: pkibridge.ReasonAttributes},
		{name: "birthdate missing", leaf: sig(jpkisim.LeafOptions{Facts: sigFacts(func(f *jpkisim.Facts) { f.Birthdate = "" })}), want: pkibridge.ReasonAttributes},
		{name: "address missing", leaf: sig(jpkisim.LeafOptions{Facts: sigFacts(func(f *jpkisim.Facts) { f.Address = "" })}), want: pkibridge.ReasonAttributes},
		{name: "birthdate era mismatch", leaf: sig(jpkisim.LeafOptions{Facts: sigFacts(func(f *jpkisim.Facts) { f.Birthdate = "419801231" })}), want: pkibridge.ReasonAttributes},
		{name: "gender 4", leaf: sig(jpkisim.LeafOptions{Facts: sigFacts(func(f *jpkisim.Facts) { f.Gender = "4" })}), want: pkibridge.ReasonAttributes},
		{name: "auth cert facts are not read", leaf: auth(jpkisim.LeafOptions{ExtraExtensions: []pkix.Extension{criticalSAN}}), kind: pkibridge.KindAuthentication, chainLen: 2, revStatus: pkibridge.StatusGood},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			leaf := c.leaf()
			v := e.verifier()
			var logs bytes.Buffer
			v.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			if c.adjust != nil {
				c.adjust(v)
			}
			res, err := v.VerifyCertificate(context.Background(), leaf, c.extra)
			coreWantReason(t, err, c.want)
			coreNoPersonalData(t, logs.String())
			if err != nil {
				if !strings.Contains(err.Error(), c.detail) {
					t.Fatalf("error %q does not say %q", err, c.detail)
				}
				coreNoPersonalData(t, err.Error())
				if res != nil {
					t.Fatal("result returned with an error")
				}
				return
			}
			if res.Kind != c.kind {
				t.Errorf("kind %s, want %s", res.Kind, c.kind)
			}
			if res.Leaf != leaf || len(res.Chain) != c.chainLen || res.Chain[0] != leaf {
				t.Fatalf("chain of %d, want %d starting with the leaf", len(res.Chain), c.chainLen)
			}
			if top := res.Chain[len(res.Chain)-1]; !v.Anchors.Contains(top) {
				t.Error("chain does not end at an anchor")
			}
			if res.Revocation.Status != c.revStatus || res.Revocation.SoftFail != c.softFail {
				t.Errorf("revocation %+v, want status %s soft-fail %v", res.Revocation, c.revStatus, c.softFail)
			}
			if c.softFail && !strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("soft-fail not logged as a warning: %q", logs.String())
			}
			if (res.Attributes != nil) != (c.kind == pkibridge.KindSignature) {
				t.Errorf("attributes %v for kind %s", res.Attributes != nil, c.kind)
			}
		})
	}
}

func TestVerifySignatureAttributes(t *testing.T) {
	e := coreSetup(t)
	leaf := coreIssue(t, e.sigCA, jpkisim.LeafOptions{})
	res, err := e.verifier().VerifyCertificate(context.Background(), leaf, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := coreFacts()
	want := pkibridge.Attributes{
		Name: f.Name, FamilyName: "山田", GivenName: "太郎",
		Birthdate: "1980-12-31", BirthdateEra: 3,
		Gender: "male", GenderCode: "1",
		Address: f.Address, NameSubstitution: f.NameSubstitution, AddressSubstitution: f.AddressSubstitution,
	}
	if *res.Attributes != want {
		t.Fatalf("attributes %+v, want %+v", *res.Attributes, want)
	}
	if res.Chain[1] != e.sigCA.Cert {
		t.Fatal("chain does not end at the signature CA")
	}
}

// TestVerifyPreferLogsNoPersonalData uses a signature certificate so the
// log would have facts to leak.
func TestVerifyPreferLogsNoPersonalData(t *testing.T) {
	e := coreSetup(t)
	v := e.verifier()
	var logs bytes.Buffer
	v.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	v.Revocation = faultRevocation{}
	v.Mode = pkibridge.RevocationPrefer
	res, err := v.VerifyCertificate(context.Background(), coreIssue(t, e.sigCA, jpkisim.LeafOptions{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Revocation.SoftFail || res.Attributes == nil {
		t.Fatalf("want soft-fail with attributes, got %+v", res.Revocation)
	}
	out := logs.String()
	if !strings.Contains(out, `"level":"WARN"`) || !strings.Contains(out, "responder unreachable") {
		t.Fatalf("warning missing: %s", out)
	}
	coreNoPersonalData(t, out)
}

func TestVerifyOffDoesNotCallChecker(t *testing.T) {
	e := coreSetup(t)
	calls := 0
	for _, mode := range []pkibridge.RevocationMode{pkibridge.RevocationOff, "", pkibridge.RevocationPrefer, pkibridge.RevocationRequire} {
		v := e.verifier()
		v.Revocation = simRevocation{cas: []*jpkisim.CA{e.authCA}, calls: &calls}
		v.Mode = mode
		before := calls
		if _, err := v.VerifyCertificate(context.Background(), coreIssue(t, e.authCA, jpkisim.LeafOptions{}), nil); err != nil {
			t.Fatal(err)
		}
		if got, want := calls-before, map[bool]int{true: 0, false: 1}[mode == pkibridge.RevocationOff]; got != want {
			t.Errorf("mode %q: %d checker calls, want %d", mode, got, want)
		}
	}
}

func TestVerifyEnvelope(t *testing.T) {
	e := coreSetup(t)
	leaf := coreIssue(t, e.authCA, jpkisim.LeafOptions{})
	challenge := []byte("watashi/v1 tx=abc rp=example exp=1700000000")
	big := bytes.Repeat([]byte{'a'}, pkibridge.DefaultPolicy().MaxEnvelopeBytes+1)
	env := func(mut func(*pkibridge.Envelope)) *pkibridge.Envelope {
		en := &pkibridge.Envelope{Format: "raw", Leaf: leaf, Content: bytes.Clone(challenge), Hash: crypto.SHA256, Algorithm: "sha256WithRSA"}
		if mut != nil {
			mut(en)
		}
		return en
	}
	cases := []struct {
		name     string
		env      *pkibridge.Envelope
		expected []byte
		want     pkibridge.Reason
	}{
		{"valid", env(nil), challenge, ""},
		{"nil envelope", nil, challenge, pkibridge.ReasonMalformed},
		{"no leaf", env(func(en *pkibridge.Envelope) { en.Leaf = nil }), challenge, pkibridge.ReasonMalformed},
		{"content differs by one byte", env(func(en *pkibridge.Envelope) { en.Content[3] ^= 1 }), challenge, pkibridge.ReasonBadSignature},
		{"content is a prefix", env(func(en *pkibridge.Envelope) { en.Content = en.Content[:10] }), challenge, pkibridge.ReasonBadSignature},
		{"content empty", env(func(en *pkibridge.Envelope) { en.Content = nil }), challenge, pkibridge.ReasonBadSignature},
		{"expected empty", env(func(en *pkibridge.Envelope) { en.Content = nil }), nil, pkibridge.ReasonMalformed},
		{"content oversized", env(func(en *pkibridge.Envelope) { en.Content = big }), challenge, pkibridge.ReasonMalformed},
		{"expected oversized", env(func(en *pkibridge.Envelope) { en.Content = big }), big, pkibridge.ReasonMalformed},
		{"too many extra certificates", env(func(en *pkibridge.Envelope) {
			for range pkibridge.MaxExtraCertificates + 1 {
				en.Extra = append(en.Extra, e.authCA.Cert)
			}
		}), challenge, pkibridge.ReasonMalformed},
		{"nil extra certificate", env(func(en *pkibridge.Envelope) { en.Extra = []*x509.Certificate{nil} }), challenge, pkibridge.ReasonMalformed},
		{"content matches but certificate untrusted", env(func(en *pkibridge.Envelope) { en.Leaf = coreSelfSigned(t, coreKey(0)) }), challenge, pkibridge.ReasonUntrusted},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := e.verifier().Verify(context.Background(), c.env, c.expected)
			coreWantReason(t, err, c.want)
			if err != nil {
				return
			}
			if res.Format != "raw" || res.Algorithm != "sha256WithRSA" || res.Kind != pkibridge.KindAuthentication {
				t.Fatalf("result %s/%s/%s", res.Format, res.Algorithm, res.Kind)
			}
		})
	}
}

// mapRevocation is the cheapest possible checker, so that the benchmark
// measures the verifier.
type mapRevocation map[string]bool

func (m mapRevocation) CheckRevocation(_ context.Context, leaf, _ *x509.Certificate) (pkibridge.RevocationInfo, error) {
	if m[leaf.SerialNumber.String()] {
		return pkibridge.RevocationInfo{Status: pkibridge.StatusRevoked}, nil
	}
	return pkibridge.RevocationInfo{Status: pkibridge.StatusGood}, nil
}

func BenchmarkVerifyCertificate(b *testing.B) {
	e := coreSetup(b)
	leaf := coreIssue(b, e.authCA, jpkisim.LeafOptions{})
	v := e.verifier()
	v.Revocation = mapRevocation{"1": true}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyCertificate(ctx, leaf, nil); err != nil {
			b.Fatal(err)
		}
	}
}
