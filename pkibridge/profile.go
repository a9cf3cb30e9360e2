package pkibridge

import "encoding/asn1"

// Kind says which of the two JPKI certificates a leaf is.
type Kind string

const (
	// KindSignature is the 署名用電子証明書: it carries the basic four facts and
	// is used once, for identity proofing.
	KindSignature Kind = "signature"
	// KindAuthentication is the 利用者証明用電子証明書: no personal data, used
	// for every later sign-in.
	KindAuthentication Kind = "authentication"
)

// Certificate policy OIDs of the JPKI card certificates.
const (
	PolicySignature      = "1.2.392.200149.8.5.1.1.20"
	PolicyAuthentication = "1.2.392.200149.8.5.1.3.30"
)

// SubjectAltName otherName type-ids of the basic four facts.
var (
	OIDName                = asn1.ObjectIdentifier{1, 2, 392, 200149, 8, 5, 5, 1}
	OIDNameSubstitution    = asn1.ObjectIdentifier{1, 2, 392, 200149, 8, 5, 5, 2}
	OIDGender              = asn1.ObjectIdentifier{1, 2, 392, 200149, 8, 5, 5, 3}
	OIDBirthdate           = asn1.ObjectIdentifier{1, 2, 392, 200149, 8, 5, 5, 4}
	OIDAddress             = asn1.ObjectIdentifier{1, 2, 392, 200149, 8, 5, 5, 5}
	OIDAddressSubstitution = asn1.ObjectIdentifier{1, 2, 392, 200149, 8, 5, 5, 6}
)

// Policy is what a deployment accepts. The zero value is not useful; start
// from DefaultPolicy. Smartphone (GP-SE) certificates may carry policy OIDs
// that are not publicly confirmed, which is why the lists are configurable.
type Policy struct {
	// SignaturePolicies and AuthenticationPolicies are the certificate
	// policy OIDs (dotted strings) that classify a leaf.
	SignaturePolicies      []string
	AuthenticationPolicies []string
	// MinRSABits is the smallest RSA modulus accepted anywhere in a chain
	// and for the signing key. JPKI uses 2048.
	MinRSABits int
	// AllowSHA1 admits SHA-1 digests in CMS and raw signatures. Off by
	// default: the jpki/myna tool defaults to SHA-1 and we refuse it unless
	// an operator opts in.
	AllowSHA1 bool
	// MaxEnvelopeBytes bounds any envelope before parsing.
	MaxEnvelopeBytes int
}

// DefaultPolicy is the production policy: card OIDs, RSA-2048, no SHA-1.
func DefaultPolicy() Policy {
	return Policy{
		SignaturePolicies:      []string{PolicySignature},
		AuthenticationPolicies: []string{PolicyAuthentication},
		MinRSABits:             2048,
		MaxEnvelopeBytes:       64 << 10,
	}
}
