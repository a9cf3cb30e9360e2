package pkibridge_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

var envB64 = base64.RawURLEncoding

// envJWS assembles a compact JWS from a literal header, so tests can send
// headers no honest signer would.
func envJWS(header string, payload []byte, sign func(input []byte) []byte) []byte {
	input := envB64.EncodeToString([]byte(header)) + "." + envB64.EncodeToString(payload)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return []byte(input + "." + envB64.EncodeToString(sig))
}

func envX5C(certs ...*x509.Certificate) string {
	s := make([]string, len(certs))
	for i, c := range certs {
		s[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	b, _ := json.Marshal(s)
	return string(b)
}

func envRS256(t testing.TB, key crypto.Signer) func([]byte) []byte {
	return func(in []byte) []byte { return envRSASign(t, key, crypto.SHA256, in) }
}

func envPS256(t testing.TB, key crypto.Signer, salt int) func([]byte) []byte {
	return func(in []byte) []byte {
		sum := sha256.Sum256(in)
		sig, err := key.Sign(rand.Reader, sum[:], &rsa.PSSOptions{SaltLength: salt, Hash: crypto.SHA256})
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

func envES256(t testing.TB, key crypto.Signer, size int) func([]byte) []byte {
	return func(in []byte) []byte {
		sum := sha256.Sum256(in)
		r, s, err := ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), sum[:])
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out
	}
}

func envHS256(secret []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}

func TestParseJWS(t *testing.T) {
	f := envFixtures(t)
	payload := []byte(`{"iss":"https://op.example","txn":"t-1","exp":1900000000}`)
	leafX5C := envX5C(f.leaf.Cert)
	hdr := func(alg string, extra ...string) string {
		h := `{"alg":"` + alg + `","x5c":` + leafX5C
		for _, e := range extra {
			h += "," + e
		}
		return h + "}"
	}
	rs := envRS256(t, f.leaf.Key)
	good := envJWS(hdr("RS256"), payload, rs)
	goodParts := strings.Split(string(good), ".")

	signed := func(key crypto.Signer, chain ...*x509.Certificate) []byte {
		t.Helper()
		out, err := jpkisim.SignJWS(key, chain, payload)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(f.leaf.Cert.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pkcs1 := x509.MarshalPKCS1PublicKey(f.leaf.Cert.PublicKey.(*rsa.PublicKey))
	sumS256 := sha256.Sum256(f.leaf.Cert.Raw)
	sumS1 := sha1.Sum(f.leaf.Cert.Raw)
	otherS256 := sha256.Sum256(f.other.Cert.Raw)
	tooMany := make([]string, 6)
	for i := range tooMany {
		tooMany[i] = base64.StdEncoding.EncodeToString(f.leaf.Cert.Raw)
	}
	tooManyJSON, _ := json.Marshal(tooMany)
	urlX5C, _ := json.Marshal([]string{base64.URLEncoding.EncodeToString(f.leaf.Cert.Raw)})
	rawX5C, _ := json.Marshal([]string{base64.RawStdEncoding.EncodeToString(f.leaf.Cert.Raw)})
	jwkJSON, _ := json.Marshal(map[string]string{"kty": "RSA",
		"n": envB64.EncodeToString(f.other.Cert.PublicKey.(*rsa.PublicKey).N.Bytes()), "e": "AQAB"})

	cases := []struct {
		name   string
		token  []byte
		policy func(*pkibridge.Policy)
		want   pkibridge.Reason
		alg    string
		extra  int
	}{
		// Accepted.
		{name: "RS256 SignJWS", token: signed(f.leaf.Key, f.leaf.Cert), alg: "RS256"},
		{name: "RS256 with CA in x5c", token: signed(f.leaf.Key, f.leaf.Cert, f.ca.Cert), alg: "RS256", extra: 1},
		{name: "ES256 SignJWS", token: signed(f.ec.Key, f.ec.Cert), alg: "ES256"},
		{name: "PS256", token: envJWS(hdr("PS256"), payload, envPS256(t, f.leaf.Key, rsa.PSSSaltLengthEqualsHash)), alg: "PS256"},
		{name: "RS256 hand-made", token: good, alg: "RS256"},
		{name: "surrounding newline", token: append(append([]byte("\n"), good...), '\n'), alg: "RS256"},
		{name: "x5t#S256 matches", token: envJWS(hdr("RS256", `"x5t#S256":"`+envB64.EncodeToString(sumS256[:])+`"`), payload, rs), alg: "RS256"},
		{name: "x5t matches", token: envJWS(hdr("RS256", `"x5t":"`+envB64.EncodeToString(sumS1[:])+`"`), payload, rs), alg: "RS256"},
		{name: "kid typ ignored", token: envJWS(hdr("RS256", `"kid":"k1"`, `"typ":"JWT"`), payload, rs), alg: "RS256"},
		{name: "rsa-1024 with lowered minimum", token: signed(f.weak.Key, f.weak.Cert), policy: func(p *pkibridge.Policy) { p.MinRSABits = 1024 }, alg: "RS256"},

		// Shape.
		{name: "empty", token: nil, want: pkibridge.ReasonMalformed},
		{name: "whitespace", token: []byte(" \n\t"), want: pkibridge.ReasonMalformed},
		{name: "oversized", token: append(good, bytes.Repeat([]byte{' '}, pkibridge.DefaultPolicy().MaxEnvelopeBytes)...), want: pkibridge.ReasonMalformed},
		{name: "over a custom limit", token: good, policy: func(p *pkibridge.Policy) { p.MaxEnvelopeBytes = len(good) - 1 }, want: pkibridge.ReasonMalformed},
		{name: "two parts", token: []byte(goodParts[0] + "." + goodParts[1]), want: pkibridge.ReasonMalformed},
		{name: "four parts", token: append(append([]byte{}, good...), ".AAAA"...), want: pkibridge.ReasonMalformed},
		{name: "five parts (JWE)", token: append(append([]byte{}, good...), ".AAAA.AAAA"...), want: pkibridge.ReasonMalformed},
		{name: "JSON serialization", token: []byte(`{"payload":"` + goodParts[1] + `","protected":"` + goodParts[0] + `","signature":"` + goodParts[2] + `"}`), want: pkibridge.ReasonMalformed},
		{name: "header padded", token: []byte(goodParts[0] + "=." + goodParts[1] + "." + goodParts[2]), want: pkibridge.ReasonMalformed},
		{name: "header std alphabet", token: []byte(strings.NewReplacer("-", "+", "_", "/").Replace(goodParts[0]) + "+." + goodParts[1] + "." + goodParts[2]), want: pkibridge.ReasonMalformed},
		{name: "header with line break", token: []byte(goodParts[0][:10] + "\n" + goodParts[0][10:] + "." + goodParts[1] + "." + goodParts[2]), want: pkibridge.ReasonMalformed},
		{name: "payload bad base64url", token: []byte(goodParts[0] + ".*" + goodParts[1] + "." + goodParts[2]), want: pkibridge.ReasonMalformed},
		{name: "payload non-canonical tail", token: []byte(goodParts[0] + "." + envNonCanonical(goodParts[1]) + "." + goodParts[2]), want: pkibridge.ReasonMalformed},
		{name: "signature bad base64url", token: []byte(goodParts[0] + "." + goodParts[1] + "." + goodParts[2] + "!"), want: pkibridge.ReasonMalformed},
		{name: "header not JSON", token: envJWS(`alg=RS256`, payload, rs), want: pkibridge.ReasonMalformed},
		{name: "header JSON array", token: envJWS(`["RS256"]`, payload, rs), want: pkibridge.ReasonMalformed},
		{name: "header trailing data", token: envJWS(hdr("RS256")+`{}`, payload, rs), want: pkibridge.ReasonMalformed},
		{name: "duplicate alg", token: envJWS(`{"alg":"RS256","alg":"none","x5c":`+leafX5C+`}`, payload, rs), want: pkibridge.ReasonMalformed},
		{name: "duplicate x5c", token: envJWS(`{"alg":"RS256","x5c":`+envX5C(f.other.Cert)+`,"x5c":`+leafX5C+`}`, payload, rs), want: pkibridge.ReasonMalformed},
		{name: "detached payload", token: []byte(goodParts[0] + ".." + goodParts[2]), want: pkibridge.ReasonMalformed},
		{name: "empty signature", token: []byte(goodParts[0] + "." + goodParts[1] + "."), want: pkibridge.ReasonMalformed},

		// Algorithms.
		{name: "alg missing", token: envJWS(`{"x5c":`+leafX5C+`}`, payload, rs), want: pkibridge.ReasonMalformed},
		{name: "alg not a string", token: envJWS(`{"alg":256,"x5c":`+leafX5C+`}`, payload, rs), want: pkibridge.ReasonMalformed},
		{name: "alg none unsigned", token: envJWS(hdr("none"), payload, nil), want: pkibridge.ReasonWeakAlgorithm},
		{name: "alg None with signature", token: envJWS(hdr("None"), payload, rs), want: pkibridge.ReasonWeakAlgorithm},
		{name: "alg empty", token: envJWS(hdr(""), payload, rs), want: pkibridge.ReasonWeakAlgorithm},
		{name: "HS256 keyed with the SPKI", token: envJWS(hdr("HS256"), payload, envHS256(pubDER)), want: pkibridge.ReasonWeakAlgorithm},
		{name: "HS256 keyed with the PEM", token: envJWS(hdr("HS256"), payload, envHS256(pubPEM)), want: pkibridge.ReasonWeakAlgorithm},
		{name: "HS512 keyed with PKCS1", token: envJWS(hdr("HS512"), payload, envHS256(pkcs1)), want: pkibridge.ReasonWeakAlgorithm},
		{name: "RS512", token: envJWS(hdr("RS512"), payload, rs), want: pkibridge.ReasonWeakAlgorithm},
		{name: "rs256 lower case", token: envJWS(hdr("rs256"), payload, rs), want: pkibridge.ReasonWeakAlgorithm},
		{name: "ES384", token: envJWS(hdr("ES384"), payload, rs), want: pkibridge.ReasonWeakAlgorithm},
		{name: "EdDSA", token: envJWS(hdr("EdDSA"), payload, rs), want: pkibridge.ReasonWeakAlgorithm},
		{name: "PS256 declared, PKCS1 signature", token: envJWS(hdr("PS256"), payload, rs), want: pkibridge.ReasonBadSignature},
		{name: "RS256 declared, PSS signature", token: envJWS(hdr("RS256"), payload, envPS256(t, f.leaf.Key, rsa.PSSSaltLengthEqualsHash)), want: pkibridge.ReasonBadSignature},
		{name: "PS256 with another salt length", token: envJWS(hdr("PS256"), payload, envPS256(t, f.leaf.Key, 20)), want: pkibridge.ReasonBadSignature},

		// Keys.
		{name: "x5c missing", token: envJWS(`{"alg":"RS256"}`, payload, rs), want: pkibridge.ReasonMalformed},
		{name: "x5c null", token: envJWS(`{"alg":"RS256","x5c":null}`, payload, rs), want: pkibridge.ReasonMalformed},
		{name: "x5c empty", token: envJWS(`{"alg":"RS256","x5c":[]}`, payload, rs), want: pkibridge.ReasonMalformed},
		{name: "x5c a string", token: envJWS(`{"alg":"RS256","x5c":"`+base64.StdEncoding.EncodeToString(f.leaf.Cert.Raw)+`"}`, payload, rs), want: pkibridge.ReasonMalformed},
		{name: "x5c base64url", token: envJWS(`{"alg":"RS256","x5c":`+string(urlX5C)+`}`, payload, rs), want: pkibridge.ReasonMalformed},
		{name: "x5c unpadded", token: envJWS(`{"alg":"RS256","x5c":`+string(rawX5C)+`}`, payload, rs), want: pkibridge.ReasonMalformed},
		{name: "x5c not a certificate", token: envJWS(`{"alg":"RS256","x5c":["AAAA"]}`, payload, rs), want: pkibridge.ReasonMalformed},
		{name: "x5c six certificates", token: envJWS(`{"alg":"RS256","x5c":`+string(tooManyJSON)+`}`, payload, rs), want: pkibridge.ReasonMalformed},
		{name: "jwk header with its own key", token: envJWS(hdr("RS256", `"jwk":`+string(jwkJSON)), payload, envRS256(t, f.other.Key)), want: pkibridge.ReasonMalformed},
		{name: "jwk header even when x5c signs", token: envJWS(hdr("RS256", `"jwk":`+string(jwkJSON)), payload, rs), want: pkibridge.ReasonMalformed},
		{name: "jku", token: envJWS(hdr("RS256", `"jku":"https://attacker.example/jwks"`), payload, rs), want: pkibridge.ReasonMalformed},
		{name: "x5u", token: envJWS(hdr("RS256", `"x5u":"https://attacker.example/cert"`), payload, rs), want: pkibridge.ReasonMalformed},
		{name: "crit", token: envJWS(hdr("RS256", `"crit":["exp"]`, `"exp":1`), payload, rs), want: pkibridge.ReasonMalformed},
		{name: "b64 false", token: envJWS(hdr("RS256", `"b64":false`, `"crit":["b64"]`), payload, rs), want: pkibridge.ReasonMalformed},
		{name: "b64 false without crit", token: envJWS(hdr("RS256", `"b64":false`), payload, rs), want: pkibridge.ReasonMalformed},
		{name: "zip", token: envJWS(hdr("RS256", `"zip":"DEF"`), payload, rs), want: pkibridge.ReasonMalformed},
		{name: "x5t#S256 of another cert", token: envJWS(hdr("RS256", `"x5t#S256":"`+envB64.EncodeToString(otherS256[:])+`"`), payload, rs), want: pkibridge.ReasonMalformed},
		{name: "x5t garbage", token: envJWS(hdr("RS256", `"x5t":"%%%"`), payload, rs), want: pkibridge.ReasonMalformed},

		// Signatures.
		{name: "tampered payload", token: []byte(goodParts[0] + "." + envB64.EncodeToString(bytes.Replace(payload, []byte("t-1"), []byte("t-2"), 1)) + "." + goodParts[2]), want: pkibridge.ReasonBadSignature},
		{name: "tampered header", token: envSwapHeader(good, hdr("RS256", `"kid":"x"`)), want: pkibridge.ReasonBadSignature},
		{name: "signed by another key", token: envJWS(hdr("RS256"), payload, envRS256(t, f.other.Key)), want: pkibridge.ReasonBadSignature},
		{name: "CA first in x5c", token: envJWS(`{"alg":"RS256","x5c":`+envX5C(f.ca.Cert, f.leaf.Cert)+`}`, payload, rs), want: pkibridge.ReasonBadSignature},
		{name: "flipped signature bit", token: []byte(goodParts[0] + "." + goodParts[1] + "." + envB64.EncodeToString(envFlip(envMustB64(goodParts[2]), 7))), want: pkibridge.ReasonBadSignature},
		{name: "RS256 signature too short", token: []byte(goodParts[0] + "." + goodParts[1] + "." + envB64.EncodeToString(envMustB64(goodParts[2])[1:])), want: pkibridge.ReasonMalformed},
		{name: "RS256 with an EC leaf", token: envJWS(`{"alg":"RS256","x5c":`+envX5C(f.ec.Cert)+`}`, payload, rs), want: pkibridge.ReasonBadSignature},
		{name: "PS256 with an EC leaf", token: envJWS(`{"alg":"PS256","x5c":`+envX5C(f.ec.Cert)+`}`, payload, rs), want: pkibridge.ReasonBadSignature},
		{name: "ES256 with an RSA leaf", token: envJWS(hdr("ES256"), payload, envES256(t, f.ec.Key, 32)), want: pkibridge.ReasonBadSignature},
		{name: "ES256 with a P-384 leaf", token: envJWS(`{"alg":"ES256","x5c":`+envX5C(f.ec384.Cert)+`}`, payload, envES256(t, f.ec384.Key, 48)), want: pkibridge.ReasonBadSignature},
		{name: "ES256 by another key", token: envJWS(`{"alg":"ES256","x5c":`+envX5C(f.ec.Cert)+`}`, payload, envES256(t, envMustEC(t), 32)), want: pkibridge.ReasonBadSignature},
		{name: "ES256 DER signature", token: envJWS(`{"alg":"ES256","x5c":`+envX5C(f.ec.Cert)+`}`, payload, envES256DER(t, f.ec.Key)), want: pkibridge.ReasonMalformed},
		{name: "rsa-1024 leaf", token: signed(f.weak.Key, f.weak.Cert), want: pkibridge.ReasonWeakKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := pkibridge.DefaultPolicy()
			if tc.policy != nil {
				tc.policy(&p)
			}
			env, err := pkibridge.ParseJWS(tc.token, p)
			envWant(t, err, tc.want)
			if tc.want != "" {
				if env != nil {
					t.Fatal("envelope returned with an error")
				}
				return
			}
			if env.Format != "jws" || env.Algorithm != tc.alg || env.Hash != crypto.SHA256 ||
				!bytes.Equal(env.Content, payload) || len(env.Extra) != tc.extra || env.Leaf == nil {
				t.Fatalf("envelope %+v", env)
			}
		})
	}
}

func TestParseJWSTooLargeDetail(t *testing.T) {
	_, err := pkibridge.ParseJWS(bytes.Repeat([]byte("A"), 70_000), pkibridge.DefaultPolicy())
	envWant(t, err, pkibridge.ReasonMalformed)
	if !strings.Contains(err.Error(), "too large") {
		t.Fatalf("detail does not say too large: %v", err)
	}
}

// TestParseJWSZeroPolicy: a zero Policy must still bound the input.
func TestParseJWSZeroPolicy(t *testing.T) {
	_, err := pkibridge.ParseJWS(bytes.Repeat([]byte("A"), 1<<20), pkibridge.Policy{})
	envWant(t, err, pkibridge.ReasonMalformed)
	if !strings.Contains(err.Error(), "too large") {
		t.Fatalf("zero policy did not bound the input: %v", err)
	}
}

func TestParseJWSLeafIsX5C0(t *testing.T) {
	f := envFixtures(t)
	tok, err := jpkisim.SignJWS(f.leaf.Key, []*x509.Certificate{f.leaf.Cert, f.ca.Cert}, []byte("p"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := pkibridge.ParseJWS(tok, pkibridge.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if !env.Leaf.Equal(f.leaf.Cert) || len(env.Extra) != 1 || !env.Extra[0].Equal(f.ca.Cert) {
		t.Fatal("leaf or extra certificates are not x5c[0] and x5c[1:]")
	}
}

// TestJWSInteropGoJose holds ParseJWS to an independent implementation:
// go-jose's tokens parse here, PS256 included, which jpkisim.SignJWS never
// makes. The other direction is jpkisim's TestSignJWSGoJose.
func TestJWSInteropGoJose(t *testing.T) {
	f := envFixtures(t)
	payload := []byte("interop payload")
	for _, tc := range []struct {
		leaf crypto.Signer
		cert *x509.Certificate
		alg  jose.SignatureAlgorithm
	}{
		{f.leaf.Key, f.leaf.Cert, jose.RS256},
		{f.leaf.Key, f.leaf.Cert, jose.PS256},
		{f.ec.Key, f.ec.Cert, jose.ES256},
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			opts := (&jose.SignerOptions{}).WithHeader("x5c", []string{base64.StdEncoding.EncodeToString(tc.cert.Raw)})
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: tc.alg, Key: tc.leaf}, opts)
			if err != nil {
				t.Fatal(err)
			}
			obj, err := signer.Sign(payload)
			if err != nil {
				t.Fatal(err)
			}
			compact, err := obj.CompactSerialize()
			if err != nil {
				t.Fatal(err)
			}
			env, err := pkibridge.ParseJWS([]byte(compact), pkibridge.DefaultPolicy())
			if err != nil {
				t.Fatalf("go-jose %s token refused: %v", tc.alg, err)
			}
			if env.Algorithm != string(tc.alg) || !bytes.Equal(env.Content, payload) {
				t.Fatalf("envelope %+v", env)
			}
		})
	}
}

func envMustB64(s string) []byte {
	b, err := envB64.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// envNonCanonical changes the unused low bits of the last base64url
// character, which a lenient decoder maps to the same bytes.
func envNonCanonical(seg string) string {
	if len(seg)%4 == 0 {
		return seg + "AB" // cannot make a canonical-equivalent; still invalid
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[last|1])
}

func envSwapHeader(tok []byte, header string) []byte {
	parts := strings.Split(string(tok), ".")
	return []byte(envB64.EncodeToString([]byte(header)) + "." + parts[1] + "." + parts[2])
}

func envMustEC(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func envES256DER(t testing.TB, key crypto.Signer) func([]byte) []byte {
	return func(in []byte) []byte {
		sum := sha256.Sum256(in)
		sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if len(sig) == 64 {
			t.Fatal("DER ECDSA signature happens to be 64 bytes")
		}
		return sig
	}
}

func TestVerifyJWS(t *testing.T) {
	f := envFixtures(t)
	v := envVerifier(t, f)
	challenge := []byte(`{"txn":"verify-jws"}`)
	tok, err := jpkisim.SignJWS(f.leaf.Key, []*x509.Certificate{f.leaf.Cert, f.ca.Cert}, challenge)
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.VerifyJWS(context.Background(), tok, challenge)
	if err != nil {
		t.Fatal(err)
	}
	if res.Format != "jws" || res.Algorithm != "RS256" || res.Kind != pkibridge.KindSignature || len(res.Chain) != 2 {
		t.Fatalf("result %+v", res)
	}
	_, err = v.VerifyJWS(context.Background(), tok, []byte(`{"txn":"verify-jws-2"}`))
	envWant(t, err, pkibridge.ReasonBadSignature)
	_, err = v.VerifyJWS(context.Background(), envJWS(`{"alg":"none","x5c":`+envX5C(f.leaf.Cert)+`}`, challenge, nil), challenge)
	envWant(t, err, pkibridge.ReasonWeakAlgorithm)
	// A Verifier without a policy still parses with production limits.
	zero := *v
	zero.Policy = pkibridge.Policy{}
	_, err = zero.VerifyJWS(context.Background(), bytes.Repeat([]byte("A"), 1<<20), challenge)
	envWant(t, err, pkibridge.ReasonMalformed)
}
