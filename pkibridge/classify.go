package pkibridge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"strings"
)

var (
	oidExtKeyUsage       = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
)

// minRSABitsFloor applies when Policy.MinRSABits is unset: a zero-valued
// Policy must not quietly accept toy keys.
const minRSABitsFloor = 2048

// understoodCriticalExtensions are critical extensions crypto/x509 leaves
// in UnhandledCriticalExtensions but this package processes itself. Go
// flags a critical SubjectAltName that holds only otherNames, which is
// exactly what a JPKI signature certificate may carry; ParseAttributes
// reads it.
var understoodCriticalExtensions = []asn1.ObjectIdentifier{oidExtSubjectAltName}

// Classify decides whether cert is a JPKI signature or authentication
// certificate under p, so that a signature made for sign-in can never be
// taken as identity proofing or the reverse. Key usage decides together
// with the policy OID and is enforced even when the extension is not
// critical (national-eID deployments have been bitten by verifiers that
// skip non-critical usage). Beyond the two digitalSignature /
// nonRepudiation patterns, other usage bits are tolerated except
// keyCertSign, which marks a CA.
func (p Policy) Classify(cert *x509.Certificate) (Kind, error) {
	if cert == nil {
		return "", Fail(ReasonMalformed, "no certificate")
	}
	if unknown := unhandledCritical(cert); len(unknown) > 0 {
		return "", Fail(ReasonMalformed, "certificate has unknown critical extension(s) %s", joinOIDs(unknown))
	}
	if (cert.BasicConstraintsValid && cert.IsCA) || cert.KeyUsage&x509.KeyUsageCertSign != 0 {
		return "", Fail(ReasonKeyUsage, "a CA certificate (basicConstraints cA or keyCertSign) cannot sign as a leaf")
	}
	if !certHasExtension(cert, oidExtKeyUsage) {
		return "", Fail(ReasonKeyUsage, "certificate has no key usage extension")
	}
	ds := cert.KeyUsage&x509.KeyUsageDigitalSignature != 0
	nr := cert.KeyUsage&x509.KeyUsageContentCommitment != 0

	var sig, auth bool
	var found []string
	for _, oid := range cert.Policies {
		s := oid.String()
		found = append(found, s)
		if containsString(p.SignaturePolicies, s) {
			sig = true
		}
		if containsString(p.AuthenticationPolicies, s) {
			auth = true
		}
	}
	if len(found) == 0 {
		for _, oid := range cert.PolicyIdentifiers {
			s := oid.String()
			found = append(found, s)
			sig = sig || containsString(p.SignaturePolicies, s)
			auth = auth || containsString(p.AuthenticationPolicies, s)
		}
	}
	var kind Kind
	switch {
	case sig && auth:
		return "", Fail(ReasonKeyUsage, "certificate carries both a signature and an authentication policy OID (%s)", strings.Join(found, ", "))
	case sig:
		kind = KindSignature
	case auth:
		kind = KindAuthentication
	case len(found) == 0:
		return "", Fail(ReasonKeyUsage, "certificate has no certificate policy; want one of the accepted policy OIDs")
	default:
		return "", Fail(ReasonKeyUsage, "no accepted certificate policy OID (certificate has %s)", strings.Join(found, ", "))
	}
	if !ds {
		return "", Fail(ReasonKeyUsage, "%s certificate key usage lacks digitalSignature", kind)
	}
	if kind == KindSignature && !nr {
		return "", Fail(ReasonKeyUsage, "signature policy OID but key usage lacks nonRepudiation (contentCommitment)")
	}
	if kind == KindAuthentication && nr {
		return "", Fail(ReasonKeyUsage, "authentication policy OID but key usage includes nonRepudiation, the signature certificate's usage")
	}
	if err := p.checkPublicKey(cert, leafRole); err != nil {
		return "", err
	}
	return kind, nil
}

// checkPublicKey refuses keys JPKI verification must not rely on: RSA
// below the policy minimum and anything but RSA and ECDSA P-256/P-384
// (JPKI cards are RSA; ECDSA is admitted for future smartphone profiles).
// role names the certificate's place in the chain, and is called only to
// word an error.
func (p Policy) checkPublicKey(cert *x509.Certificate, role func() string) error {
	minBits := p.MinRSABits
	if minBits <= 0 {
		minBits = minRSABitsFloor
	}
	switch k := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minBits {
			return Fail(ReasonWeakKey, "%s RSA key of %d bits is below the minimum of %d", role(), bits, minBits)
		}
		return nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384():
			return nil
		}
		return Fail(ReasonWeakKey, "%s ECDSA curve %s is not accepted (want P-256 or P-384)", role(), k.Curve.Params().Name)
	case nil:
		return Fail(ReasonWeakKey, "%s public key algorithm is not supported", role())
	default:
		return Fail(ReasonWeakKey, "%s public key type %s is not accepted (want RSA or ECDSA P-256/P-384)", role(), keyTypeName(k))
	}
}

// unhandledCritical lists the critical extensions neither crypto/x509 nor
// this package understands.
func unhandledCritical(cert *x509.Certificate) []asn1.ObjectIdentifier {
	var out []asn1.ObjectIdentifier
	for _, oid := range cert.UnhandledCriticalExtensions {
		known := false
		for _, u := range understoodCriticalExtensions {
			if oid.Equal(u) {
				known = true
				break
			}
		}
		if !known {
			out = append(out, oid)
		}
	}
	return out
}

// withoutUnderstoodCritical returns cert, or a shallow copy of it whose
// UnhandledCriticalExtensions no longer lists the extensions this package
// processes, so that crypto/x509 chain building does not refuse them.
func withoutUnderstoodCritical(cert *x509.Certificate) *x509.Certificate {
	if len(cert.UnhandledCriticalExtensions) == 0 {
		return cert
	}
	rest := unhandledCritical(cert)
	if len(rest) == len(cert.UnhandledCriticalExtensions) {
		return cert
	}
	c := *cert
	c.UnhandledCriticalExtensions = rest
	return &c
}

func joinOIDs(oids []asn1.ObjectIdentifier) string {
	s := make([]string, len(oids))
	for i, o := range oids {
		s[i] = o.String()
	}
	return strings.Join(s, ", ")
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func keyTypeName(k any) string {
	t := fmt.Sprintf("%T", k)
	switch t {
	case "ed25519.PublicKey":
		return "Ed25519"
	case "*ecdh.PublicKey":
		return "ECDH"
	case "*dsa.PublicKey":
		return "DSA"
	}
	return t
}
