package pkibridge_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

func TestClassify(t *testing.T) {
	e := coreSetup(t)
	ec := func(c elliptic.Curve) crypto.Signer {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	def := pkibridge.DefaultPolicy()
	zeroBits := def
	zeroBits.MinRSABits = 0
	strict := def
	strict.MinRSABits = 3072
	smartphone := def
	smartphone.SignaturePolicies = append([]string{"1.2.392.200149.8.5.1.1.99"}, def.SignaturePolicies...)
	critical := func(oid asn1.ObjectIdentifier) pkix.Extension {
		return pkix.Extension{Id: oid, Critical: true, Value: []byte{0x05, 0x00}}
	}
	cases := []struct {
		name   string
		policy pkibridge.Policy
		ca     *jpkisim.CA
		opts   jpkisim.LeafOptions
		nilIn  bool
		kind   pkibridge.Kind
		want   pkibridge.Reason
		detail string
	}{
		{name: "signature", ca: e.sigCA, kind: pkibridge.KindSignature},
		{name: "authentication", ca: e.authCA, kind: pkibridge.KindAuthentication},
		{name: "signature with extra usage bits", ca: e.sigCA, opts: jpkisim.LeafOptions{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment}, kind: pkibridge.KindSignature},
		{name: "non-critical usage, right bits", ca: e.sigCA, opts: jpkisim.LeafOptions{KeyUsageNonCritical: true}, kind: pkibridge.KindSignature},
		{name: "configured smartphone signature OID", policy: smartphone, ca: e.sigCA, opts: jpkisim.LeafOptions{Policies: []string{"1.2.392.200149.8.5.1.1.99"}}, kind: pkibridge.KindSignature},
		{name: "extra unrelated policy alongside", ca: e.authCA, opts: jpkisim.LeafOptions{Policies: []string{"1.2.3.4", pkibridge.PolicyAuthentication}}, kind: pkibridge.KindAuthentication},
		{name: "ECDSA P-256", ca: e.authCA, opts: jpkisim.LeafOptions{Key: ec(elliptic.P256())}, kind: pkibridge.KindAuthentication},
		{name: "RSA-3072 under strict policy", policy: strict, ca: e.authCA, opts: jpkisim.LeafOptions{KeyBits: 3072}, kind: pkibridge.KindAuthentication},

		{name: "nil certificate", nilIn: true, want: pkibridge.ReasonMalformed, detail: "no certificate"},
		{name: "unknown critical extension", ca: e.authCA, opts: jpkisim.LeafOptions{ExtraExtensions: []pkix.Extension{critical(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 7})}}, want: pkibridge.ReasonMalformed, detail: "1.3.6.1.4.1.99999.7"},
		{name: "CA as leaf", ca: e.authCA, opts: jpkisim.LeafOptions{IsCA: true}, want: pkibridge.ReasonKeyUsage, detail: "CA certificate"},
		{name: "keyCertSign as leaf", ca: e.sigCA, opts: jpkisim.LeafOptions{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageCertSign}, want: pkibridge.ReasonKeyUsage, detail: "keyCertSign"},
		{name: "key usage missing", ca: e.sigCA, opts: jpkisim.LeafOptions{KeyUsage: -1}, want: pkibridge.ReasonKeyUsage, detail: "no key usage extension"},
		{name: "signature lacks nonRepudiation (non-critical)", ca: e.sigCA, opts: jpkisim.LeafOptions{KeyUsage: x509.KeyUsageDigitalSignature, KeyUsageNonCritical: true}, want: pkibridge.ReasonKeyUsage, detail: "lacks nonRepudiation"},
		{name: "signature lacks digitalSignature", ca: e.sigCA, opts: jpkisim.LeafOptions{KeyUsage: x509.KeyUsageContentCommitment}, want: pkibridge.ReasonKeyUsage, detail: "lacks digitalSignature"},
		{name: "auth lacks digitalSignature", ca: e.authCA, opts: jpkisim.LeafOptions{KeyUsage: x509.KeyUsageKeyAgreement}, want: pkibridge.ReasonKeyUsage, detail: "lacks digitalSignature"},
		{name: "auth with nonRepudiation", ca: e.authCA, opts: jpkisim.LeafOptions{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment}, want: pkibridge.ReasonKeyUsage, detail: "includes nonRepudiation"},
		{name: "no policy", ca: e.authCA, opts: jpkisim.LeafOptions{Policies: []string{}}, want: pkibridge.ReasonKeyUsage, detail: "no certificate policy"},
		{name: "unknown policy", ca: e.authCA, opts: jpkisim.LeafOptions{Policies: []string{"1.2.392.200149.8.5.1.3.31"}}, want: pkibridge.ReasonKeyUsage, detail: "1.2.392.200149.8.5.1.3.31"},
		{name: "smartphone OID not configured", ca: e.sigCA, opts: jpkisim.LeafOptions{Policies: []string{"1.2.392.200149.8.5.1.1.99"}}, want: pkibridge.ReasonKeyUsage, detail: "no accepted certificate policy"},
		{name: "both kinds' policies", ca: e.sigCA, opts: jpkisim.LeafOptions{Policies: []string{pkibridge.PolicySignature, pkibridge.PolicyAuthentication}}, want: pkibridge.ReasonKeyUsage, detail: "both"},
		{name: "empty policy lists accept nothing", policy: pkibridge.Policy{MinRSABits: 2048}, ca: e.sigCA, want: pkibridge.ReasonKeyUsage, detail: "no accepted certificate policy"},
		{name: "RSA-1024", ca: e.authCA, opts: jpkisim.LeafOptions{KeyBits: 1024}, want: pkibridge.ReasonWeakKey, detail: "1024 bits is below the minimum of 2048"},
		{name: "RSA-1024 with MinRSABits unset", policy: zeroBits, ca: e.authCA, opts: jpkisim.LeafOptions{KeyBits: 1024}, want: pkibridge.ReasonWeakKey, detail: "minimum of 2048"},
		{name: "RSA-2048 under strict policy", policy: strict, ca: e.authCA, want: pkibridge.ReasonWeakKey, detail: "2048 bits is below the minimum of 3072"},
		{name: "ECDSA P-224", ca: e.authCA, opts: jpkisim.LeafOptions{Key: ec(elliptic.P224())}, want: pkibridge.ReasonWeakKey, detail: "P-224"},
		{name: "ECDSA P-521", ca: e.authCA, opts: jpkisim.LeafOptions{Key: ec(elliptic.P521())}, want: pkibridge.ReasonWeakKey, detail: "P-521"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.policy
			if p.SignaturePolicies == nil && p.AuthenticationPolicies == nil && p.MinRSABits == 0 {
				p = def
			}
			var cert *x509.Certificate
			if !c.nilIn {
				cert = coreIssue(t, c.ca, c.opts)
			}
			kind, err := p.Classify(cert)
			coreWantReason(t, err, c.want)
			if err != nil {
				if kind != "" {
					t.Fatalf("kind %q returned with an error", kind)
				}
				if !strings.Contains(err.Error(), c.detail) {
					t.Fatalf("detail %q does not say %q", err, c.detail)
				}
				return
			}
			if kind != c.kind {
				t.Fatalf("kind %s, want %s", kind, c.kind)
			}
		})
	}
}
