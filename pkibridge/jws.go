package pkibridge

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// jwsMaxChain bounds x5c. A JPKI chain is the leaf and at most its CA; a
// longer list only costs parsing time.
const jwsMaxChain = 5

// jwsMaxHeaderFields bounds the protected header; real ones have two or three.
const jwsMaxHeaderFields = 32

// jwsAlgs is the algorithm allow-list. Everything else, `none` and HMAC
// above all, is refused: the key comes from a certificate, so a symmetric
// algorithm could only be keyed with public bytes.
var jwsAlgs = map[string]bool{"RS256": true, "PS256": true, "ES256": true}

// jwsRefusedHeaders name keys or key locations other than x5c. We never
// fetch keys and never take one from the message itself: only the
// certificate's key can prove anything.
var jwsRefusedHeaders = []string{"jwk", "jku", "x5u"}

// ParseJWS reads a compact JWS whose x5c header carries the signing
// certificate, the form a wallet app produces most easily. It checks the
// signature with x5c[0]'s key under an explicit algorithm allow-list and
// refuses every header that could point verification elsewhere (jwk, jku,
// x5u, crit, b64=false). An algorithm that cannot be used with the leaf's
// key type (RS256 with an EC key, ES256 with anything but P-256) is
// ReasonBadSignature: the signature cannot be valid under the declared
// algorithm.
func ParseJWS(compact []byte, p Policy) (*Envelope, error) {
	limit := envLimit(p)
	if len(compact) > limit {
		return nil, Fail(ReasonMalformed, "JWS too large: %d bytes, limit %d", len(compact), limit)
	}
	s := bytes.TrimSpace(compact)
	if len(s) == 0 {
		return nil, Fail(ReasonMalformed, "empty JWS")
	}
	if s[0] == '{' {
		return nil, Fail(ReasonMalformed, "JWS JSON serialization not accepted: send the compact form")
	}
	switch n := bytes.Count(s, []byte{'.'}) + 1; {
	case n == 5:
		return nil, Fail(ReasonMalformed, "compact JWS has 3 parts, got 5 (a JWE?)")
	case n != 3:
		return nil, Fail(ReasonMalformed, "compact JWS has 3 parts, got %d", n)
	}
	parts := bytes.SplitN(s, []byte{'.'}, 3)
	signingInput := s[:len(parts[0])+1+len(parts[1])]

	headerJSON, err := jwsDecodeSegment(parts[0])
	if err != nil {
		return nil, Wrap(ReasonMalformed, err, "JWS header")
	}
	hdr, err := jwsHeaderFields(headerJSON)
	if err != nil {
		return nil, Wrap(ReasonMalformed, err, "JWS header")
	}
	alg, err := jwsAlg(hdr)
	if err != nil {
		return nil, err
	}
	if err := jwsCheckHeader(hdr); err != nil {
		return nil, err
	}
	chain, err := jwsX5C(hdr)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	if err := jwsCheckThumbprints(hdr, leaf); err != nil {
		return nil, err
	}

	if len(parts[1]) == 0 {
		return nil, Fail(ReasonMalformed, "JWS with a detached payload not accepted")
	}
	payload, err := jwsDecodeSegment(parts[1])
	if err != nil {
		return nil, Wrap(ReasonMalformed, err, "JWS payload")
	}
	if len(parts[2]) == 0 {
		return nil, Fail(ReasonMalformed, "JWS has an empty signature")
	}
	sig, err := jwsDecodeSegment(parts[2])
	if err != nil {
		return nil, Wrap(ReasonMalformed, err, "JWS signature")
	}
	if err := jwsVerify(alg, leaf, signingInput, sig, p); err != nil {
		return nil, err
	}
	return &Envelope{
		Format:    "jws",
		Leaf:      leaf,
		Extra:     chain[1:],
		Content:   payload,
		Hash:      crypto.SHA256,
		Algorithm: alg,
	}, nil
}

// VerifyJWS is ParseJWS followed by Verify, the one call the OP makes for a
// wallet's JWS.
func (v *Verifier) VerifyJWS(ctx context.Context, compact []byte, expected []byte) (*Result, error) {
	if v == nil {
		return nil, Fail(ReasonMalformed, "nil Verifier")
	}
	env, err := ParseJWS(compact, envPolicy(v))
	if err != nil {
		return nil, err
	}
	return v.Verify(ctx, env, expected)
}

// SignJWS makes the compact JWS a wallet sends: RS256 for RSA keys (what a
// card can do), ES256 for P-256 keys. chain[0] must be key's certificate;
// a mismatch is refused here rather than producing a JWS that can never
// verify.
func SignJWS(key crypto.Signer, chain []*x509.Certificate, payload []byte) ([]byte, error) {
	if key == nil {
		return nil, errors.New("pkibridge: SignJWS: nil key")
	}
	if len(chain) == 0 || chain[0] == nil {
		return nil, errors.New("pkibridge: SignJWS: no certificate")
	}
	for i, c := range chain {
		if c == nil || len(c.Raw) == 0 {
			return nil, fmt.Errorf("pkibridge: SignJWS: chain[%d] is not a parsed certificate", i)
		}
	}
	if len(chain) > jwsMaxChain {
		return nil, fmt.Errorf("pkibridge: SignJWS: %d certificates, at most %d", len(chain), jwsMaxChain)
	}
	if !envSameKey(key.Public(), chain[0].PublicKey) {
		return nil, errors.New("pkibridge: SignJWS: key does not match chain[0]")
	}
	var alg string
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		alg = "RS256"
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("pkibridge: SignJWS: ES256 needs P-256, key is %s", envKeyName(k))
		}
		alg = "ES256"
	default:
		return nil, fmt.Errorf("pkibridge: SignJWS: unsupported key %s", envKeyName(k))
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
		return nil, fmt.Errorf("pkibridge: SignJWS: %w", err)
	}
	if alg == "ES256" {
		if sig, err = jwsECDSAFixed(sig, 32); err != nil {
			return nil, err
		}
	}
	return []byte(input + "." + enc.EncodeToString(sig)), nil
}

// jwsDecodeSegment decodes base64url without padding. It checks the
// alphabet first because encoding/base64 silently skips CR and LF, and a
// JWS that decodes the same from two spellings invites confusion.
func jwsDecodeSegment(seg []byte) ([]byte, error) {
	for i, c := range seg {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return nil, fmt.Errorf("bad base64url: byte %d is not in the unpadded base64url alphabet", i)
		}
	}
	out := make([]byte, base64.RawURLEncoding.DecodedLen(len(seg)))
	n, err := base64.RawURLEncoding.Strict().Decode(out, seg)
	if err != nil {
		return nil, fmt.Errorf("bad base64url: %w", err)
	}
	return out[:n], nil
}

// jwsHeaderFields splits the protected header into its members, refusing
// duplicates: encoding/json would silently keep the last, and two parsers
// disagreeing on "alg" is how algorithm confusion starts. Keys are matched
// exactly (json.Unmarshal into a struct would fold case).
func jwsHeaderFields(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, errors.New("not JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	fields := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("not JSON")
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("not JSON")
		}
		if _, dup := fields[key]; dup {
			return nil, fmt.Errorf("duplicate member %q", key)
		}
		if len(fields) >= jwsMaxHeaderFields {
			return nil, fmt.Errorf("more than %d members", jwsMaxHeaderFields)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errors.New("not JSON")
		}
		fields[key] = raw
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errors.New("not JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return fields, nil
}

func jwsAlg(hdr map[string]json.RawMessage) (string, error) {
	raw, ok := hdr["alg"]
	if !ok {
		return "", Fail(ReasonMalformed, "JWS header has no alg")
	}
	var alg string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &alg) != nil {
		return "", Fail(ReasonMalformed, "JWS alg is not a string")
	}
	if jwsAlgs[alg] {
		return alg, nil
	}
	switch {
	case strings.EqualFold(alg, "none"):
		return "", Fail(ReasonWeakAlgorithm, "JWS alg %q: unsigned tokens are never accepted", envQuote(alg))
	case strings.HasPrefix(strings.ToUpper(alg), "HS"):
		return "", Fail(ReasonWeakAlgorithm, "JWS alg %q: HMAC is never accepted, a certificate holds no shared secret", envQuote(alg))
	}
	return "", Fail(ReasonWeakAlgorithm, "JWS alg %q not accepted: use RS256, PS256 or ES256", envQuote(alg))
}

// jwsCheckHeader refuses the header members that change what is verified
// or with which key.
func jwsCheckHeader(hdr map[string]json.RawMessage) error {
	for _, name := range jwsRefusedHeaders {
		if _, ok := hdr[name]; ok {
			return Fail(ReasonMalformed, "JWS header %q not accepted: the key comes only from x5c", name)
		}
	}
	if _, ok := hdr["crit"]; ok {
		return Fail(ReasonMalformed, "JWS crit header not accepted: no extensions are understood")
	}
	if raw, ok := hdr["b64"]; ok && string(raw) != "true" {
		return Fail(ReasonMalformed, "JWS with an unencoded payload (b64) not accepted")
	}
	for _, name := range []string{"enc", "zip"} {
		if _, ok := hdr[name]; ok {
			return Fail(ReasonMalformed, "JWS header %q not accepted: encrypted or compressed content", name)
		}
	}
	return nil
}

// jwsX5C decodes x5c: standard base64 DER (RFC 7515 §4.1.6), leaf first.
func jwsX5C(hdr map[string]json.RawMessage) ([]*x509.Certificate, error) {
	raw, ok := hdr["x5c"]
	if !ok {
		return nil, Fail(ReasonMalformed, "JWS header has no x5c: the signing certificate is required")
	}
	var x5c []string
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &x5c) != nil {
		return nil, Fail(ReasonMalformed, "JWS x5c is not an array of strings")
	}
	if len(x5c) == 0 {
		return nil, Fail(ReasonMalformed, "JWS x5c is empty")
	}
	if len(x5c) > jwsMaxChain {
		return nil, Fail(ReasonMalformed, "JWS x5c has %d certificates, at most %d accepted", len(x5c), jwsMaxChain)
	}
	chain := make([]*x509.Certificate, len(x5c))
	for i, s := range x5c {
		der, err := envDecodeStdBase64(s)
		if err != nil {
			return nil, Wrap(ReasonMalformed, err, "JWS x5c[%d]", i)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, Wrap(ReasonMalformed, err, "JWS x5c[%d] is not an X.509 certificate", i)
		}
		chain[i] = cert
	}
	return chain, nil
}

// jwsCheckThumbprints holds optional x5t / x5t#S256 to the leaf: a
// thumbprint naming another certificate means the sender and we disagree on
// the key.
func jwsCheckThumbprints(hdr map[string]json.RawMessage, leaf *x509.Certificate) error {
	for _, th := range []struct {
		name string
		sum  func([]byte) []byte
	}{
		{"x5t", func(b []byte) []byte { s := sha1.Sum(b); return s[:] }},
		{"x5t#S256", func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }},
	} {
		raw, ok := hdr[th.name]
		if !ok {
			continue
		}
		var s string
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return Fail(ReasonMalformed, "JWS %s is not a string", th.name)
		}
		want, err := jwsDecodeSegment([]byte(s))
		if err != nil {
			return Wrap(ReasonMalformed, err, "JWS %s", th.name)
		}
		if subtle.ConstantTimeCompare(want, th.sum(leaf.Raw)) != 1 {
			return Fail(ReasonMalformed, "JWS %s does not match x5c[0]", th.name)
		}
	}
	return nil
}

func jwsVerify(alg string, leaf *x509.Certificate, input, sig []byte, p Policy) error {
	digest := sha256.Sum256(input)
	switch alg {
	case "RS256", "PS256":
		pub, ok := leaf.PublicKey.(*rsa.PublicKey)
		if !ok {
			return Fail(ReasonBadSignature, "JWS alg %s needs an RSA key, x5c[0] has %s", alg, envKeyName(leaf.PublicKey))
		}
		if err := envCheckRSA(pub, p); err != nil {
			return err
		}
		if len(sig) != pub.Size() {
			return Fail(ReasonMalformed, "JWS %s signature is %d bytes, the RSA modulus is %d", alg, len(sig), pub.Size())
		}
		var err error
		if alg == "RS256" {
			err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
		} else {
			// RFC 7518 §3.5: the salt is as long as the hash.
			err = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		if err != nil {
			return Fail(ReasonBadSignature, "JWS %s signature does not verify with x5c[0]'s key", alg)
		}
		return nil
	case "ES256":
		pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			return Fail(ReasonBadSignature, "JWS alg ES256 needs a P-256 key, x5c[0] has %s", envKeyName(leaf.PublicKey))
		}
		if len(sig) != 64 {
			return Fail(ReasonMalformed, "JWS ES256 signature is %d bytes, want 64", len(sig))
		}
		r := new(big.Int).SetBytes(sig[:32])
		s := new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(pub, digest[:], r, s) {
			return Fail(ReasonBadSignature, "JWS ES256 signature does not verify with x5c[0]'s key")
		}
		return nil
	}
	return Fail(ReasonWeakAlgorithm, "JWS alg %q not accepted", alg)
}

// jwsECDSAFixed turns the ASN.1 ECDSA signature a crypto.Signer returns
// into JWS's fixed-width r||s.
func jwsECDSAFixed(der []byte, size int) ([]byte, error) {
	var r, s big.Int
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() ||
		r.Sign() <= 0 || s.Sign() <= 0 || r.BitLen() > size*8 || s.BitLen() > size*8 {
		return nil, errors.New("pkibridge: SignJWS: signer returned a malformed ECDSA signature")
	}
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	s.FillBytes(out[size:])
	return out, nil
}

// envDecodeStdBase64 decodes padded standard base64, refusing line breaks
// and the URL alphabet rather than letting encoding/base64 skip or reject
// them with a less helpful message.
func envDecodeStdBase64(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			if c == '-' || c == '_' {
				return nil, errors.New("base64url where standard base64 is required")
			}
			return nil, fmt.Errorf("bad base64: byte %d is not in the standard alphabet", i)
		}
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("bad base64: %w", err)
	}
	return b, nil
}

// envSameKey reports whether two public keys are equal, for the Sign*
// helpers' sanity check.
func envSameKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// envQuote shortens an attacker-chosen string for an error detail.
func envQuote(s string) string {
	const max = 32
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
