package jpkisim

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// The signers below make what a wallet or card tool sends, so that the
// wallet simulator and the tests can exercise pkibridge's envelope parsers
// without a card. They live here, not in pkibridge, because the provider
// only ever verifies: signing code in the production package would be code
// a deployment carries but never runs.
//
// They deliberately share nothing with pkibridge's parsers. The OIDs and
// limits are spelled out again here, so a parser that misreads a constant
// is caught by the round-trip tests instead of agreeing with its own
// mistake.

// signMaxChain is pkibridge.ParseJWS's x5c limit. Refusing a longer chain
// here makes the simulator fail where it would otherwise make a token the
// provider can never accept.
const signMaxChain = 5

// OIDs of the SignedData that SignCMS writes (RFC 5652, RFC 5754, RFC 8017).
var (
	signOIDData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	signOIDSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	signOIDContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	signOIDMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	signOIDSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	signOIDRSA           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	signOIDECDSASHA256   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
)

var signTag0Cons = cbasn1.Tag(0).ContextSpecific().Constructed()

// SignJWS makes the compact JWS a wallet sends: RS256 for RSA keys (what a
// card can do), ES256 for P-256 keys. chain[0] must be key's certificate;
// a mismatch is refused here rather than producing a JWS that can never
// verify.
func SignJWS(key crypto.Signer, chain []*x509.Certificate, payload []byte) ([]byte, error) {
	if key == nil {
		return nil, errors.New("jpkisim: SignJWS: nil key")
	}
	if len(chain) == 0 || chain[0] == nil {
		return nil, errors.New("jpkisim: SignJWS: no certificate")
	}
	for i, c := range chain {
		if c == nil || len(c.Raw) == 0 {
			return nil, fmt.Errorf("jpkisim: SignJWS: chain[%d] is not a parsed certificate", i)
		}
	}
	if len(chain) > signMaxChain {
		return nil, fmt.Errorf("jpkisim: SignJWS: %d certificates, at most %d", len(chain), signMaxChain)
	}
	if !signSameKey(key.Public(), chain[0].PublicKey) {
		return nil, errors.New("jpkisim: SignJWS: key does not match chain[0]")
	}
	var alg string
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		alg = "RS256"
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("jpkisim: SignJWS: ES256 needs P-256, key is %s", signKeyName(k))
		}
		alg = "ES256"
	default:
		return nil, fmt.Errorf("jpkisim: SignJWS: unsupported key %s", signKeyName(k))
	}
	x5c := make([]string, len(chain))
	for i, c := range chain {
		x5c[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	hdr, err := json.Marshal(struct {
		Alg string   `json:"alg"`
		X5C []string `json:"x5c"`
	}{alg, x5c})
	if err != nil {
		return nil, err
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(hdr) + "." + enc.EncodeToString(payload)
	digest := sha256.Sum256([]byte(input))
	sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("jpkisim: SignJWS: %w", err)
	}
	if alg == "ES256" {
		if sig, err = signECDSAFixed(sig, 32); err != nil {
			return nil, err
		}
	}
	return []byte(input + "." + enc.EncodeToString(sig)), nil
}

// SignCMS makes a DER SignedData with SHA-256 and signed attributes
// (contentType, messageDigest), the shape card tools produce. cert must be
// key's certificate.
func SignCMS(key crypto.Signer, cert *x509.Certificate, content []byte, detached bool) ([]byte, error) {
	if key == nil || cert == nil || len(cert.Raw) == 0 || cert.SerialNumber == nil {
		return nil, errors.New("jpkisim: SignCMS: nil key or incomplete certificate")
	}
	if !signSameKey(key.Public(), cert.PublicKey) {
		return nil, errors.New("jpkisim: SignCMS: key does not match the certificate")
	}
	var sigAlg asn1.ObjectIdentifier
	sigNull := false
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		sigAlg, sigNull = signOIDRSA, true
	case *ecdsa.PublicKey:
		sigAlg = signOIDECDSASHA256
	default:
		return nil, fmt.Errorf("jpkisim: SignCMS: unsupported key %s", signKeyName(k))
	}

	digest := sha256.Sum256(content)
	attrs := [][]byte{
		signAttr(signOIDContentType, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(signOIDData) }),
		signAttr(signOIDMessageDigest, func(b *cryptobyte.Builder) { b.AddASN1OctetString(digest[:]) }),
	}
	// DER orders SET OF by encoding.
	slices.SortFunc(attrs, bytes.Compare)
	ab := cryptobyte.NewBuilder(nil)
	ab.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
		for _, a := range attrs {
			b.AddBytes(a)
		}
	})
	attrSet, err := ab.Bytes()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(attrSet)
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("jpkisim: SignCMS: %w", err)
	}
	signedAttrs := append([]byte{}, attrSet...)
	signedAttrs[0] = byte(signTag0Cons) // [0] IMPLICIT in the SignerInfo

	addAlg := func(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, null bool) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			if null {
				b.AddASN1NULL()
			}
		})
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(signOIDSignedData)
		b.AddASN1(signTag0Cons, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(1)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { addAlg(b, signOIDSHA256, true) })
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(signOIDData)
					if !detached {
						b.AddASN1(signTag0Cons, func(b *cryptobyte.Builder) { b.AddASN1OctetString(content) })
					}
				})
				b.AddASN1(signTag0Cons, func(b *cryptobyte.Builder) { b.AddBytes(cert.Raw) })
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1Int64(1)
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddBytes(cert.RawIssuer)
							b.AddASN1BigInt(cert.SerialNumber)
						})
						addAlg(b, signOIDSHA256, true)
						b.AddBytes(signedAttrs)
						addAlg(b, sigAlg, sigNull)
						b.AddASN1OctetString(sig)
					})
				})
			})
		})
	})
	return b.Bytes()
}

// SignRaw makes the signature pkibridge.ParseRaw expects, the primitive a
// card applies to the DigestInfo its host sends.
func SignRaw(key crypto.Signer, data []byte) ([]byte, error) {
	if key == nil {
		return nil, errors.New("jpkisim: SignRaw: nil key")
	}
	if _, ok := key.Public().(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("jpkisim: SignRaw: raw signatures are RSA PKCS#1 v1.5, key is %s", signKeyName(key.Public()))
	}
	digest := sha256.Sum256(data)
	return key.Sign(rand.Reader, digest[:], crypto.SHA256)
}

func signAttr(oid asn1.ObjectIdentifier, value func(*cryptobyte.Builder)) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { value(b) })
	})
	return b.BytesOrPanic()
}

// signECDSAFixed turns the ASN.1 ECDSA signature a crypto.Signer returns
// into JWS's fixed-width r||s.
func signECDSAFixed(der []byte, size int) ([]byte, error) {
	var r, s big.Int
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() ||
		r.Sign() <= 0 || s.Sign() <= 0 || r.BitLen() > size*8 || s.BitLen() > size*8 {
		return nil, errors.New("jpkisim: SignJWS: signer returned a malformed ECDSA signature")
	}
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	s.FillBytes(out[size:])
	return out, nil
}

// signSameKey backs the signers' refusal of a key that is not the
// certificate's: such a signature could never verify, and a simulator that
// makes one only moves the failure somewhere harder to read.
func signSameKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// signKeyName describes a key in an error by type and size only.
func signKeyName(pub any) string {
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
