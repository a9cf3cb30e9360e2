package pkibridge

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	_ "crypto/sha1" // SHA-1 stays verifiable when an operator sets Policy.AllowSHA1
	_ "crypto/sha256"
	_ "crypto/sha512"
	"crypto/x509"
	"fmt"
)

// envMaxRSABits bounds the work one signature check can cost. Larger keys
// are not used by any JPKI card and only make verification slower.
const envMaxRSABits = 8192

// ParseRaw accepts what a My Number Card returns from its signing command:
// the host hashes data and sends the DigestInfo, the card applies its RSA key
// (PKCS#1 v1.5). The certificate is supplied separately because the card
// signature carries none. hash defaults to SHA-256; SHA-1 needs
// Policy.AllowSHA1. A certificate whose key is not RSA cannot have made such a
// signature, so it is ReasonBadSignature, like any other algorithm/key
// mismatch.
func ParseRaw(sig []byte, cert *x509.Certificate, data []byte, hash crypto.Hash, p Policy) (*Envelope, error) {
	limit := envLimit(p)
	if cert == nil {
		return nil, Fail(ReasonMalformed, "raw signature: no certificate given")
	}
	if len(sig) == 0 {
		return nil, Fail(ReasonMalformed, "raw signature: empty signature")
	}
	if len(sig) > limit {
		return nil, Fail(ReasonMalformed, "raw signature too large: %d bytes, limit %d", len(sig), limit)
	}
	if len(data) > limit {
		return nil, Fail(ReasonMalformed, "raw signature: signed data too large: %d bytes, limit %d", len(data), limit)
	}
	if hash == 0 {
		hash = crypto.SHA256
	}
	if err := envCheckHash(hash, p); err != nil {
		return nil, err
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, Fail(ReasonBadSignature, "raw signatures are RSA PKCS#1 v1.5, but the certificate has a %s key", envKeyName(cert.PublicKey))
	}
	if err := envCheckRSA(pub, p); err != nil {
		return nil, err
	}
	if len(sig) != pub.Size() {
		return nil, Fail(ReasonMalformed, "raw signature is %d bytes, the certificate's RSA modulus is %d bytes", len(sig), pub.Size())
	}
	h := hash.New()
	h.Write(data)
	if err := rsa.VerifyPKCS1v15(pub, hash, h.Sum(nil), sig); err != nil {
		return nil, Fail(ReasonBadSignature, "raw RSA PKCS#1 v1.5 signature does not verify with the certificate's key")
	}
	return &Envelope{
		Format:    "raw",
		Leaf:      cert,
		Content:   append([]byte{}, data...),
		Hash:      hash,
		Algorithm: envHashName(hash) + "WithRSA",
	}, nil
}

// VerifyRaw is ParseRaw followed by Verify, for callers that hold a card's
// raw signature and the certificate read from the same card.
func (v *Verifier) VerifyRaw(ctx context.Context, sig []byte, cert *x509.Certificate, expected []byte, hash crypto.Hash) (*Result, error) {
	if v == nil {
		return nil, Fail(ReasonMalformed, "nil Verifier")
	}
	env, err := ParseRaw(sig, cert, expected, hash, envPolicy(v))
	if err != nil {
		return nil, err
	}
	return v.Verify(ctx, env, expected)
}

// The helpers below are shared by the three envelope parsers (raw.go,
// jws.go, cms.go). Their names start with env so that they do not collide
// with other files of the package.

// envPolicy is the policy the Verify* wrappers parse with: a Verifier built
// without a policy still gets production limits, never none.
func envPolicy(v *Verifier) Policy {
	if v.Policy.MinRSABits == 0 {
		return DefaultPolicy()
	}
	return v.Policy
}

// envLimit is the size bound for an envelope. A zero Policy still gets the
// default bound, because parsing unbounded input is never intended.
func envLimit(p Policy) int {
	if p.MaxEnvelopeBytes > 0 {
		return p.MaxEnvelopeBytes
	}
	return DefaultPolicy().MaxEnvelopeBytes
}

// envCheckHash applies the digest allow-list: SHA-256/384/512, and SHA-1
// only when the operator opted in.
func envCheckHash(h crypto.Hash, p Policy) error {
	switch h {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
		return nil
	case crypto.SHA1:
		if p.AllowSHA1 {
			return nil
		}
		return Fail(ReasonWeakAlgorithm, "SHA-1 digest refused (Policy.AllowSHA1 is off)")
	}
	return Fail(ReasonWeakAlgorithm, "digest algorithm %s not accepted: use SHA-256, SHA-384 or SHA-512", envHashName(h))
}

// envCheckRSA refuses signing keys below the policy minimum (checked here
// as well as in classification, so no effort is spent on a weak key) and
// keys so large that verifying them is a denial of service.
func envCheckRSA(pub *rsa.PublicKey, p Policy) error {
	bits := pub.N.BitLen()
	if p.MinRSABits > 0 && bits < p.MinRSABits {
		return Fail(ReasonWeakKey, "RSA key has %d bits, policy minimum is %d", bits, p.MinRSABits)
	}
	if bits > envMaxRSABits {
		return Fail(ReasonWeakKey, "RSA key has %d bits, more than the %d supported", bits, envMaxRSABits)
	}
	return nil
}

func envDigest(h crypto.Hash, data []byte) []byte {
	d := h.New()
	d.Write(data)
	return d.Sum(nil)
}

func envHashName(h crypto.Hash) string {
	switch h {
	case crypto.SHA1:
		return "sha1"
	case crypto.SHA256:
		return "sha256"
	case crypto.SHA384:
		return "sha384"
	case crypto.SHA512:
		return "sha512"
	}
	return h.String()
}

// envKeyName describes a public key for error details: its type and size,
// nothing that identifies the holder.
func envKeyName(pub any) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return "RSA"
		}
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return "ECDSA"
		}
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case nil:
		return "no"
	}
	return fmt.Sprintf("%T", pub)
}
