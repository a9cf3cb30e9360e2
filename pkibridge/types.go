package pkibridge

import (
	"context"
	"crypto"
	"crypto/x509"
	"time"
)

// Envelope is a parsed signature envelope whose signature has already been
// checked against the leaf's public key. It says nothing yet about trust:
// Verifier.Verify does chain, profile, revocation and the content match.
type Envelope struct {
	// Format is "jws", "cms" or "raw".
	Format string
	// Leaf is the certificate whose key made the signature.
	Leaf *x509.Certificate
	// Extra are the other certificates the envelope carried (x5c[1:], CMS
	// certificates), offered as intermediates; never as anchors.
	Extra []*x509.Certificate
	// Content is the exact byte string the signature covers: the JWS
	// payload, the CMS content (attached or the detached bytes given), or
	// the raw data.
	Content []byte
	// Hash is the digest algorithm the signature used.
	Hash crypto.Hash
	// Algorithm names the signature algorithm for logs and metrics
	// ("RS256", "PS256", "ES256", "sha256WithRSA").
	Algorithm string
}

// Attributes are the basic four facts (基本4情報) from a signature
// certificate's SubjectAltName. They are personal data: never log them.
type Attributes struct {
	Name       string `json:"name"`
	FamilyName string `json:"family_name"`
	GivenName  string `json:"given_name"`
	// Birthdate is ISO 8601 (YYYY-MM-DD).
	Birthdate string `json:"birthdate"`
	// BirthdateEra is the era digit from the certificate (0-5).
	BirthdateEra int `json:"birthdate_era"`
	// Gender is "male", "female" or "not_known" (codes 1, 2, 3).
	Gender     string `json:"gender"`
	GenderCode string `json:"gender_code"`
	Address    string `json:"address"`
	// NameSubstitution and AddressSubstitution are the 0/1 flag strings
	// marking characters replaced because they are outside JIS level 1/2.
	NameSubstitution    string `json:"name_substitution"`
	AddressSubstitution string `json:"address_substitution"`
}

// Result is what a successful verification proves.
type Result struct {
	Kind Kind
	Leaf *x509.Certificate
	// Chain runs from the leaf to the anchor.
	Chain      []*x509.Certificate
	Attributes *Attributes // nil for authentication certificates
	Revocation RevocationInfo
	Format     string
	Algorithm  string
}

// RevocationStatus is a revocation source's answer.
type RevocationStatus string

const (
	StatusGood    RevocationStatus = "good"
	StatusRevoked RevocationStatus = "revoked"
	StatusUnknown RevocationStatus = "unknown" // no answer, or the source does not cover this cert
	StatusSkipped RevocationStatus = "skipped" // mode off
)

// RevocationInfo records how revocation was decided, for audit.
type RevocationInfo struct {
	Status    RevocationStatus `json:"status"`
	Source    string           `json:"source,omitempty"` // "crl:<location>" or "ocsp:<url>"
	RevokedAt time.Time        `json:"revoked_at,omitzero"`
	// SoftFail is set when mode prefer let an unknown status pass.
	SoftFail bool   `json:"soft_fail,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// RevocationChecker answers whether leaf (issued by issuer) is revoked.
// It returns StatusUnknown with a non-nil error when it could not find
// out; the Verifier applies the RevocationMode to that.
type RevocationChecker interface {
	CheckRevocation(ctx context.Context, leaf, issuer *x509.Certificate) (RevocationInfo, error)
}

// RevocationMode is what an unknown revocation status means.
type RevocationMode string

const (
	// RevocationRequire: no definitive "good" answer means invalid. Default.
	RevocationRequire RevocationMode = "require"
	// RevocationPrefer: an unknown status passes with a logged soft-fail;
	// "revoked" still fails.
	RevocationPrefer RevocationMode = "prefer"
	// RevocationOff skips revocation. Development only.
	RevocationOff RevocationMode = "off"
)

// ParseRevocationMode accepts the three mode names.
func ParseRevocationMode(s string) (RevocationMode, error) {
	switch RevocationMode(s) {
	case RevocationRequire, RevocationPrefer, RevocationOff:
		return RevocationMode(s), nil
	case "":
		return RevocationRequire, nil
	}
	return "", Fail(ReasonMalformed, "revocation mode %q: want require, prefer or off", s)
}
