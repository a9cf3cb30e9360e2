package pkibridge

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
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
	i := bytes.IndexByte(s, '.')
	j := i + 1 + bytes.IndexByte(s[i+1:], '.')
	parts := [3][]byte{s[:i], s[i+1 : j], s[j+1:]}
	signingInput := s[:j]

	headerJSON, err := jwsDecodeSegment(parts[0])
	if err != nil {
		return nil, Wrap(ReasonMalformed, err, "JWS header")
	}
	hdr, err := jwsParseHeader(headerJSON)
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

// Strict decoders, built once: Encoding.Strict returns a fresh copy.
var (
	b64URLStrict = base64.RawURLEncoding.Strict()
	b64StdStrict = base64.StdEncoding.Strict()
)

// jwsDecodeSegment decodes base64url without padding. It refuses CR and LF,
// which encoding/base64 silently skips: a JWS that decodes the same from
// two spellings invites confusion. Every other byte outside the alphabet
// is already a decoding error; the slow path only names it.
func jwsDecodeSegment(seg []byte) ([]byte, error) {
	out := make([]byte, b64URLStrict.DecodedLen(len(seg)))
	n, err := b64URLStrict.Decode(out, seg)
	if err != nil || bytes.IndexByte(seg, '\r') >= 0 || bytes.IndexByte(seg, '\n') >= 0 {
		for i, c := range seg {
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return nil, fmt.Errorf("bad base64url: byte %d is not in the unpadded base64url alphabet", i)
			}
		}
		return nil, fmt.Errorf("bad base64url: %w", err)
	}
	return out[:n], nil
}

// jwsHeader is the protected header reduced to what ParseJWS acts on. It
// is filled by one pass over the JSON and judged afterwards, in a fixed
// order, so that the first rule an attacker breaks is the one reported
// whatever the member order.
type jwsHeader struct {
	present   uint16 // jwsHas* bits
	alg       string
	algString bool
	// x5c holds the members of an x5c array of strings, up to
	// jwsMaxChain+1 of them; x5cLen counts them all.
	x5c       [][]byte
	x5cLen    int
	x5cArray  bool // an array whose members are all strings
	b64True   bool // b64 is the literal true
	x5t       [2]string
	x5tString [2]bool
}

// Header members ParseJWS knows, as jwsHeader.present bits.
const (
	jwsHasAlg uint16 = 1 << iota
	jwsHasX5C
	jwsHasX5T
	jwsHasX5TS256
	jwsHasJWK
	jwsHasJKU
	jwsHasX5U
	jwsHasCrit
	jwsHasB64
	jwsHasEnc
	jwsHasZip
)

// jwsMaxHeaderDepth is encoding/json's own nesting limit, kept so that a
// header it would refuse is refused here too.
const jwsMaxHeaderDepth = 10000

// jwsValue is a member's value as far as jwsHeader.set cares.
type jwsValue struct {
	kind jwsKind
	str  []byte   // jwsString
	strs [][]byte // jwsStrings: the first jwsMaxChain+1 members
	n    int      // jwsStrings: how many members
}

type jwsKind uint8

const (
	jwsOther   jwsKind = iota
	jwsString          // a string
	jwsStrings         // an array of strings, possibly empty
	jwsTrue            // the literal true
)

// set records one member.
func (h *jwsHeader) set(key string, v *jwsValue) {
	switch key {
	case "alg":
		h.present |= jwsHasAlg
		if v.kind == jwsString {
			h.alg, h.algString = string(v.str), true
		}
	case "x5c":
		h.present |= jwsHasX5C
		if v.kind == jwsStrings {
			h.x5c, h.x5cLen, h.x5cArray = v.strs, v.n, true
		}
	case "x5t", "x5t#S256":
		i, bit := 0, jwsHasX5T
		if key == "x5t#S256" {
			i, bit = 1, jwsHasX5TS256
		}
		h.present |= bit
		if v.kind == jwsString {
			h.x5t[i], h.x5tString[i] = string(v.str), true
		}
	case "b64":
		h.present |= jwsHasB64
		h.b64True = v.kind == jwsTrue
	case "jwk":
		h.present |= jwsHasJWK
	case "jku":
		h.present |= jwsHasJKU
	case "x5u":
		h.present |= jwsHasX5U
	case "crit":
		h.present |= jwsHasCrit
	case "enc":
		h.present |= jwsHasEnc
	case "zip":
		h.present |= jwsHasZip
	}
}

// jwsParseHeader reads the protected header in one pass, refusing
// duplicate members: encoding/json would silently keep the last, and two
// parsers disagreeing on "alg" is how algorithm confusion starts. Keys are
// matched exactly (json.Unmarshal into a struct would fold case).
//
// Headers as signers write them (ASCII strings without escapes, an array
// of such strings for x5c, true/false/null) are read by jwsScanHeader,
// which leaves the x5c members where they are in b, to be base64-decoded
// once; anything else, and every error, goes through jwsDecodeHeader.
func jwsParseHeader(b []byte) (*jwsHeader, error) {
	if h, ok := jwsScanHeader(b); ok {
		return h, nil
	}
	return jwsDecodeHeader(b)
}

// jwsDecodeHeader reads the header with an encoding/json token walk,
// which decides every question of syntax; members we do not act on are
// checked and skipped.
func jwsDecodeHeader(b []byte) (*jwsHeader, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	notJSON := errors.New("not JSON")
	tok, err := dec.Token()
	if err != nil {
		return nil, notJSON
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	// Inside the object numbers are only skipped, and 1e400 is valid JSON
	// that float64 cannot hold.
	dec.UseNumber()
	h := &jwsHeader{}
	var keys [jwsMaxHeaderFields]string
	n := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, notJSON
		}
		key, ok := tok.(string)
		if !ok {
			return nil, notJSON
		}
		for _, k := range keys[:n] {
			if k == key {
				return nil, fmt.Errorf("duplicate member %q", key)
			}
		}
		if n >= jwsMaxHeaderFields {
			return nil, fmt.Errorf("more than %d members", jwsMaxHeaderFields)
		}
		keys[n] = key
		n++
		first, err := dec.Token()
		if err != nil {
			return nil, notJSON
		}
		var v jwsValue
		switch first := first.(type) {
		case string:
			v = jwsValue{kind: jwsString, str: []byte(first)}
		case bool:
			if first {
				v.kind = jwsTrue
			}
		case json.Delim:
			if first == '[' {
				if err := jwsDecodeArray(dec, &v); err != nil {
					return nil, notJSON
				}
			} else if err := jwsSkipValue(dec, first, 0); err != nil {
				return nil, notJSON
			}
		}
		h.set(key, &v)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, notJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return h, nil
}

// jwsDecodeArray reads the members of an array after its '['. Members that
// are not strings make it jwsOther but are still walked for syntax.
func jwsDecodeArray(dec *json.Decoder, v *jwsValue) error {
	v.kind = jwsStrings
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		v.n++
		s, ok := tok.(string)
		switch {
		case !ok:
			v.kind = jwsOther
			if err := jwsSkipValue(dec, tok, 1); err != nil {
				return err
			}
		case len(v.strs) <= jwsMaxChain:
			v.strs = append(v.strs, []byte(s))
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		return errors.New("not JSON")
	}
	return nil
}

// jwsSkipValue consumes the rest of a value whose first token was first.
// level is how many arrays or objects inside the member's value are open
// around it (0 for the member's value itself), for the depth limit.
func jwsSkipValue(dec *json.Decoder, first json.Token, level int) error {
	d, ok := first.(json.Delim)
	if !ok {
		return nil
	}
	if d != '{' && d != '[' {
		return errors.New("not JSON")
	}
	for open := level + 1; open > level; {
		if open > jwsMaxHeaderDepth {
			return errors.New("nested too deeply")
		}
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				open++
			} else {
				open--
			}
		}
	}
	return nil
}

// jwsScanHeader reads the common shape of a header without encoding/json:
// an object whose keys and string values are printable ASCII without
// escapes, whose other values are arrays of such strings, true, false or
// null, with JSON whitespace anywhere JSON allows it. Such text is valid
// JSON, and every string in it stands for itself. ok is false for
// anything else (numbers, objects, escapes, non-ASCII, duplicates, too
// many members, bad syntax), which jwsDecodeHeader then reads or refuses.
func jwsScanHeader(b []byte) (h *jwsHeader, ok bool) {
	s := jwsScanner{b: b}
	var keys [jwsMaxHeaderFields][]byte
	n := 0
	if s.ws(); !s.eat('{') {
		return nil, false
	}
	h = &jwsHeader{}
	if s.ws(); !s.eat('}') {
		for {
			s.ws()
			key, ok := s.str()
			if !ok || n == jwsMaxHeaderFields {
				return nil, false
			}
			for _, k := range keys[:n] {
				if bytes.Equal(k, key) {
					return nil, false
				}
			}
			keys[n] = key
			n++
			if s.ws(); !s.eat(':') {
				return nil, false
			}
			s.ws()
			var v jwsValue
			if !s.value(&v) {
				return nil, false
			}
			h.set(string(key), &v)
			if s.ws(); s.eat(',') {
				continue
			}
			if s.eat('}') {
				break
			}
			return nil, false
		}
	}
	s.ws()
	return h, s.i == len(b)
}

type jwsScanner struct {
	b []byte
	i int
}

func (s *jwsScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jwsScanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *jwsScanner) lit(word string) bool {
	if bytes.HasPrefix(s.b[s.i:], []byte(word)) {
		s.i += len(word)
		return true
	}
	return false
}

// str reads a string of printable ASCII without escapes.
func (s *jwsScanner) str() ([]byte, bool) {
	if !s.eat('"') {
		return nil, false
	}
	end := bytes.IndexByte(s.b[s.i:], '"')
	if end < 0 {
		return nil, false
	}
	out := s.b[s.i : s.i+end]
	for _, c := range out {
		if c < 0x20 || c > 0x7e || c == '\\' {
			return nil, false
		}
	}
	s.i += end + 1
	return out, true
}

func (s *jwsScanner) value(v *jwsValue) bool {
	if s.i == len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		str, ok := s.str()
		*v = jwsValue{kind: jwsString, str: str}
		return ok
	case 't':
		v.kind = jwsTrue
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	case '[':
		s.i++
		v.kind = jwsStrings
		if s.ws(); s.eat(']') {
			return true
		}
		for {
			s.ws()
			str, ok := s.str()
			if !ok {
				return false
			}
			if len(v.strs) <= jwsMaxChain {
				v.strs = append(v.strs, str)
			}
			v.n++
			if s.ws(); s.eat(',') {
				continue
			}
			return s.eat(']')
		}
	}
	return false
}

func jwsAlg(h *jwsHeader) (string, error) {
	if h.present&jwsHasAlg == 0 {
		return "", Fail(ReasonMalformed, "JWS header has no alg")
	}
	if !h.algString {
		return "", Fail(ReasonMalformed, "JWS alg is not a string")
	}
	alg := h.alg
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

// jwsRefusedHeaders name keys or key locations other than x5c. We never
// fetch keys and never take one from the message itself: only the
// certificate's key can prove anything.
var jwsRefusedHeaders = []struct {
	name string
	bit  uint16
}{{"jwk", jwsHasJWK}, {"jku", jwsHasJKU}, {"x5u", jwsHasX5U}}

// jwsCheckHeader refuses the header members that change what is verified
// or with which key.
func jwsCheckHeader(h *jwsHeader) error {
	for _, r := range jwsRefusedHeaders {
		if h.present&r.bit != 0 {
			return Fail(ReasonMalformed, "JWS header %q not accepted: the key comes only from x5c", r.name)
		}
	}
	if h.present&jwsHasCrit != 0 {
		return Fail(ReasonMalformed, "JWS crit header not accepted: no extensions are understood")
	}
	if h.present&jwsHasB64 != 0 && !h.b64True {
		return Fail(ReasonMalformed, "JWS with an unencoded payload (b64) not accepted")
	}
	if h.present&jwsHasEnc != 0 {
		return Fail(ReasonMalformed, "JWS header %q not accepted: encrypted or compressed content", "enc")
	}
	if h.present&jwsHasZip != 0 {
		return Fail(ReasonMalformed, "JWS header %q not accepted: encrypted or compressed content", "zip")
	}
	return nil
}

// jwsX5CStrings checks x5c's shape and returns its members.
func jwsX5CStrings(h *jwsHeader) ([][]byte, error) {
	if h.present&jwsHasX5C == 0 {
		return nil, Fail(ReasonMalformed, "JWS header has no x5c: the signing certificate is required")
	}
	if !h.x5cArray {
		return nil, Fail(ReasonMalformed, "JWS x5c is not an array of strings")
	}
	if h.x5cLen == 0 {
		return nil, Fail(ReasonMalformed, "JWS x5c is empty")
	}
	if h.x5cLen > jwsMaxChain {
		return nil, Fail(ReasonMalformed, "JWS x5c has %d certificates, at most %d accepted", h.x5cLen, jwsMaxChain)
	}
	return h.x5c, nil
}

// jwsX5C decodes x5c: standard base64 DER (RFC 7515 §4.1.6), leaf first.
func jwsX5C(h *jwsHeader) ([]*x509.Certificate, error) {
	x5c, err := jwsX5CStrings(h)
	if err != nil {
		return nil, err
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
func jwsCheckThumbprints(h *jwsHeader, leaf *x509.Certificate) error {
	for i, th := range []struct {
		name string
		bit  uint16
	}{{"x5t", jwsHasX5T}, {"x5t#S256", jwsHasX5TS256}} {
		if h.present&th.bit == 0 {
			continue
		}
		if !h.x5tString[i] {
			return Fail(ReasonMalformed, "JWS %s is not a string", th.name)
		}
		want, err := jwsDecodeSegment([]byte(h.x5t[i]))
		if err != nil {
			return Wrap(ReasonMalformed, err, "JWS %s", th.name)
		}
		var sum []byte
		if i == 0 {
			s := sha1.Sum(leaf.Raw)
			sum = s[:]
		} else {
			s := sha256.Sum256(leaf.Raw)
			sum = s[:]
		}
		if subtle.ConstantTimeCompare(want, sum) != 1 {
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

// envDecodeStdBase64 decodes padded standard base64, refusing line breaks
// and the URL alphabet rather than letting encoding/base64 skip or reject
// them with a less helpful message.
func envDecodeStdBase64(s []byte) ([]byte, error) {
	out := make([]byte, b64StdStrict.DecodedLen(len(s)))
	n, err := b64StdStrict.Decode(out, s)
	if err != nil || bytes.IndexByte(s, '\r') >= 0 || bytes.IndexByte(s, '\n') >= 0 {
		for i, c := range s {
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
				if c == '-' || c == '_' {
					return nil, errors.New("base64url where standard base64 is required")
				}
				return nil, fmt.Errorf("bad base64: byte %d is not in the standard alphabet", i)
			}
		}
		return nil, fmt.Errorf("bad base64: %w", err)
	}
	return out[:n], nil
}

// envQuote shortens an attacker-chosen string for an error detail.
func envQuote(s string) string {
	const max = 32
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
