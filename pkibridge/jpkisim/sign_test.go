package jpkisim_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

type signFixture struct {
	ca    *jpkisim.CA
	leaf  *jpkisim.Leaf // RSA-2048
	other *jpkisim.Leaf // another RSA-2048 leaf of the same CA
	ec    *jpkisim.Leaf // P-256
	ec384 *jpkisim.Leaf // P-384
}

var signFixtureOnce = sync.OnceValues(func() (*signFixture, error) {
	ca, err := jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindAuthentication})
	if err != nil {
		return nil, err
	}
	f := &signFixture{ca: ca}
	if f.leaf, err = ca.Issue(jpkisim.LeafOptions{}); err != nil {
		return nil, err
	}
	if f.other, err = ca.Issue(jpkisim.LeafOptions{}); err != nil {
		return nil, err
	}
	for _, l := range []struct {
		curve elliptic.Curve
		out   **jpkisim.Leaf
	}{{elliptic.P256(), &f.ec}, {elliptic.P384(), &f.ec384}} {
		k, err := ecdsa.GenerateKey(l.curve, rand.Reader)
		if err != nil {
			return nil, err
		}
		if *l.out, err = ca.Issue(jpkisim.LeafOptions{Key: k}); err != nil {
			return nil, err
		}
	}
	return f, nil
})

func signFixtures(tb testing.TB) *signFixture {
	tb.Helper()
	f, err := signFixtureOnce()
	if err != nil {
		tb.Fatalf("fixtures: %v", err)
	}
	return f
}

func signRepeat(c *x509.Certificate, n int) []*x509.Certificate {
	out := make([]*x509.Certificate, n)
	for i := range out {
		out[i] = c
	}
	return out
}

// fixedSigner answers every Sign with the same bytes, standing in for a
// token or HSM whose output the signers must not trust blindly.
type fixedSigner struct {
	crypto.Signer
	sig []byte
}

func (s fixedSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return s.sig, nil
}

func signECDSADER(r, s *big.Int) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	return b.BytesOrPanic()
}

// TestSignRoundTrip: what the signers make, pkibridge's parsers accept as
// the envelope that was meant, which is the whole point of having them.
func TestSignRoundTrip(t *testing.T) {
	f := signFixtures(t)
	content := []byte("round trip\x00\xff")
	p := pkibridge.DefaultPolicy()
	check := func(t *testing.T, env *pkibridge.Envelope, err error, format, alg string, leaf *x509.Certificate, extra int) {
		t.Helper()
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		if env.Format != format || env.Algorithm != alg || !env.Leaf.Equal(leaf) || len(env.Extra) != extra ||
			!bytes.Equal(env.Content, content) || env.Hash != crypto.SHA256 {
			t.Fatalf("envelope %+v", env)
		}
	}
	for _, tc := range []struct {
		name  string
		leaf  *jpkisim.Leaf
		chain []*x509.Certificate
		alg   string
	}{
		{"RS256", f.leaf, []*x509.Certificate{f.leaf.Cert}, "RS256"},
		{"RS256 with CA", f.leaf, []*x509.Certificate{f.leaf.Cert, f.ca.Cert}, "RS256"},
		{"ES256", f.ec, []*x509.Certificate{f.ec.Cert}, "ES256"},
	} {
		t.Run("jws "+tc.name, func(t *testing.T) {
			tok, err := jpkisim.SignJWS(tc.leaf.Key, tc.chain, content)
			if err != nil {
				t.Fatal(err)
			}
			env, err := pkibridge.ParseJWS(tok, p)
			check(t, env, err, "jws", tc.alg, tc.leaf.Cert, len(tc.chain)-1)
		})
	}
	for _, tc := range []struct {
		name     string
		leaf     *jpkisim.Leaf
		detached bool
		alg      string
	}{
		{"rsa attached", f.leaf, false, "sha256WithRSA"},
		{"rsa detached", f.leaf, true, "sha256WithRSA"},
		{"ecdsa attached", f.ec, false, "ecdsaWithSHA256"},
		{"ecdsa detached", f.ec, true, "ecdsaWithSHA256"},
	} {
		t.Run("cms "+tc.name, func(t *testing.T) {
			der, err := jpkisim.SignCMS(tc.leaf.Key, tc.leaf.Cert, content, tc.detached)
			if err != nil {
				t.Fatal(err)
			}
			var detached []byte
			if tc.detached {
				detached = content
				if bytes.Contains(der, content) {
					t.Fatal("detached SignedData carries the content")
				}
			}
			env, err := pkibridge.ParseCMS(der, detached, p)
			check(t, env, err, "cms", tc.alg, tc.leaf.Cert, 0)
		})
	}
	t.Run("raw", func(t *testing.T) {
		sig, err := jpkisim.SignRaw(f.leaf.Key, content)
		if err != nil {
			t.Fatal(err)
		}
		env, err := pkibridge.ParseRaw(sig, f.leaf.Cert, content, 0, p)
		check(t, env, err, "raw", "sha256WithRSA", f.leaf.Cert, 0)
	})
}

// TestSignJWSShape pins the token a wallet sends: a header of exactly alg
// and x5c (standard base64 DER, leaf first) and, for ES256, the fixed
// 64-byte r||s that JWS requires rather than the signer's ASN.1.
func TestSignJWSShape(t *testing.T) {
	f := signFixtures(t)
	payload := []byte(`{"txn":"shape"}`)
	for _, tc := range []struct {
		leaf   *jpkisim.Leaf
		chain  []*x509.Certificate
		alg    string
		sigLen int
	}{
		{f.leaf, []*x509.Certificate{f.leaf.Cert, f.ca.Cert}, "RS256", 256},
		{f.ec, []*x509.Certificate{f.ec.Cert}, "ES256", 64},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			tok, err := jpkisim.SignJWS(tc.leaf.Key, tc.chain, payload)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(string(tok), ".")
			if len(parts) != 3 {
				t.Fatalf("%d parts", len(parts))
			}
			x5c := make([]string, len(tc.chain))
			for i, c := range tc.chain {
				x5c[i] = base64.StdEncoding.EncodeToString(c.Raw)
			}
			want, _ := json.Marshal(map[string]any{"alg": tc.alg, "x5c": x5c})
			hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
			if err != nil || !bytes.Equal(hdr, want) {
				t.Fatalf("header %s, want %s (%v)", hdr, want, err)
			}
			if got, err := base64.RawURLEncoding.DecodeString(parts[1]); err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("payload %q (%v)", got, err)
			}
			sig, err := base64.RawURLEncoding.DecodeString(parts[2])
			if err != nil || len(sig) != tc.sigLen {
				t.Fatalf("signature of %d bytes, want %d (%v)", len(sig), tc.sigLen, err)
			}
		})
	}

	// Short r and s are left-padded, not shortened.
	fixed := fixedSigner{Signer: f.ec.Key, sig: signECDSADER(big.NewInt(1), big.NewInt(2))}
	tok, err := jpkisim.SignJWS(fixed, []*x509.Certificate{f.ec.Cert}, payload)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(string(tok[bytes.LastIndexByte(tok, '.')+1:]))
	want := make([]byte, 64)
	want[31], want[63] = 1, 2
	if !bytes.Equal(sig, want) {
		t.Fatalf("r||s %x", sig)
	}
}

func TestSignJWSRefuses(t *testing.T) {
	f := signFixtures(t)
	p := []byte("p")
	tooBig := new(big.Int).Lsh(big.NewInt(1), 256)
	for name, fn := range map[string]func() ([]byte, error){
		"nil key":        func() ([]byte, error) { return jpkisim.SignJWS(nil, []*x509.Certificate{f.leaf.Cert}, p) },
		"no chain":       func() ([]byte, error) { return jpkisim.SignJWS(f.leaf.Key, nil, p) },
		"nil cert":       func() ([]byte, error) { return jpkisim.SignJWS(f.leaf.Key, []*x509.Certificate{nil}, p) },
		"key mismatch":   func() ([]byte, error) { return jpkisim.SignJWS(f.other.Key, []*x509.Certificate{f.leaf.Cert}, p) },
		"P-384":          func() ([]byte, error) { return jpkisim.SignJWS(f.ec384.Key, []*x509.Certificate{f.ec384.Cert}, p) },
		"six in x5c":     func() ([]byte, error) { return jpkisim.SignJWS(f.leaf.Key, signRepeat(f.leaf.Cert, 6), p) },
		"unparsed certs": func() ([]byte, error) { return jpkisim.SignJWS(f.leaf.Key, []*x509.Certificate{{}}, p) },
		"signer returns junk": func() ([]byte, error) {
			return jpkisim.SignJWS(fixedSigner{f.ec.Key, []byte{0x30, 0x00}}, []*x509.Certificate{f.ec.Cert}, p)
		},
		"signer returns zero r": func() ([]byte, error) {
			return jpkisim.SignJWS(fixedSigner{f.ec.Key, signECDSADER(big.NewInt(0), big.NewInt(1))}, []*x509.Certificate{f.ec.Cert}, p)
		},
		"signer returns a 257-bit s": func() ([]byte, error) {
			return jpkisim.SignJWS(fixedSigner{f.ec.Key, signECDSADER(big.NewInt(1), tooBig)}, []*x509.Certificate{f.ec.Cert}, p)
		},
	} {
		if _, err := fn(); err == nil {
			t.Errorf("%s: SignJWS did not refuse", name)
		}
	}
}

// TestSignJWSChainLimit keeps SignJWS's x5c limit equal to ParseJWS's: the
// simulator must neither refuse a chain the provider accepts nor make one
// it refuses.
func TestSignJWSChainLimit(t *testing.T) {
	f := signFixtures(t)
	tok, err := jpkisim.SignJWS(f.leaf.Key, signRepeat(f.leaf.Cert, 5), []byte("p"))
	if err != nil {
		t.Fatalf("five certificates refused: %v", err)
	}
	if _, err := pkibridge.ParseJWS(tok, pkibridge.DefaultPolicy()); err != nil {
		t.Fatalf("ParseJWS refuses five certificates: %v", err)
	}
	if _, err := jpkisim.SignJWS(f.leaf.Key, signRepeat(f.leaf.Cert, 6), []byte("p")); err == nil {
		t.Fatal("six certificates signed")
	}
	x5c := make([]string, 6)
	for i := range x5c {
		x5c[i] = base64.StdEncoding.EncodeToString(f.leaf.Cert.Raw)
	}
	hdr, _ := json.Marshal(map[string]any{"alg": "RS256", "x5c": x5c})
	parts := bytes.SplitN(tok, []byte("."), 2)
	six := append([]byte(base64.RawURLEncoding.EncodeToString(hdr)+"."), parts[1]...)
	if _, err := pkibridge.ParseJWS(six, pkibridge.DefaultPolicy()); err == nil {
		t.Fatal("ParseJWS accepts six certificates: SignJWS's limit is stale")
	}
}

// TestSignJWSGoJose checks SignJWS against an independent implementation:
// go-jose verifies our tokens and finds our x5c chain.
func TestSignJWSGoJose(t *testing.T) {
	f := signFixtures(t)
	payload := []byte("interop payload")
	for _, tc := range []struct {
		leaf *jpkisim.Leaf
		alg  jose.SignatureAlgorithm
	}{
		{f.leaf, jose.RS256},
		{f.ec, jose.ES256},
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			ours, err := jpkisim.SignJWS(tc.leaf.Key, []*x509.Certificate{tc.leaf.Cert}, payload)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := jose.ParseSignedCompact(string(ours), []jose.SignatureAlgorithm{tc.alg})
			if err != nil {
				t.Fatalf("go-jose cannot parse SignJWS output: %v", err)
			}
			got, err := parsed.Verify(tc.leaf.Cert.PublicKey)
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("go-jose does not verify SignJWS output: %v", err)
			}
			pool := x509.NewCertPool()
			pool.AddCert(f.ca.Cert)
			chains, err := parsed.Signatures[0].Protected.Certificates(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			if err != nil || len(chains) == 0 || !chains[0][0].Equal(tc.leaf.Cert) {
				t.Fatalf("go-jose does not see our x5c: %v", err)
			}
		})
	}
}

func TestSignCMSRefuses(t *testing.T) {
	f := signFixtures(t)
	if _, err := jpkisim.SignCMS(f.other.Key, f.leaf.Cert, []byte("x"), false); err == nil {
		t.Fatal("SignCMS signed with a key that is not the certificate's")
	}
	if _, err := jpkisim.SignCMS(nil, f.leaf.Cert, []byte("x"), false); err == nil {
		t.Fatal("SignCMS accepted a nil key")
	}
	if _, err := jpkisim.SignCMS(f.leaf.Key, nil, []byte("x"), false); err == nil {
		t.Fatal("SignCMS accepted a nil certificate")
	}
	if _, err := jpkisim.SignCMS(f.leaf.Key, &x509.Certificate{PublicKey: f.leaf.Cert.PublicKey, SerialNumber: big.NewInt(1)}, []byte("x"), false); err == nil {
		t.Fatal("SignCMS accepted a certificate without its encoding")
	}
}

// TestSignCMSOpenSSLVerify: what SignCMS makes, openssl verifies (the
// signature only: -noverify skips the chain, which is pkibridge's to judge).
func TestSignCMSOpenSSLVerify(t *testing.T) {
	jpkisim.RequireOpenSSL(t)
	f := signFixtures(t)
	dir := t.TempDir()
	content := []byte("signed by SignCMS\n\x00binary")
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	openssl := func(args ...string) error {
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("openssl %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	write("data", content)
	for _, tc := range []struct {
		name     string
		leaf     *jpkisim.Leaf
		detached bool
	}{
		{"rsa attached", f.leaf, false},
		{"rsa detached", f.leaf, true},
		{"ecdsa attached", f.ec, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := jpkisim.SignCMS(tc.leaf.Key, tc.leaf.Cert, content, tc.detached)
			if err != nil {
				t.Fatal(err)
			}
			write("sig.der", der)
			args := []string{"cms", "-verify", "-noverify", "-binary", "-inform", "DER", "-in", "sig.der", "-out", "out"}
			if tc.detached {
				args = append(args, "-content", "data")
			}
			if err := openssl(args...); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dir, "out"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, content) {
				t.Fatalf("openssl recovered %q", got)
			}
			// And openssl refuses it against other content, so the check
			// above is not vacuous.
			if tc.detached {
				write("wrong", []byte("other"))
				if err := openssl("cms", "-verify", "-noverify", "-binary", "-inform", "DER", "-in", "sig.der", "-content", "wrong"); err == nil {
					t.Fatal("openssl verified a detached signature over other content")
				}
			}
		})
	}
}

func TestSignRaw(t *testing.T) {
	f := signFixtures(t)
	data := []byte("payload")
	sig, err := jpkisim.SignRaw(f.leaf.Key, data)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if err := rsa.VerifyPKCS1v15(f.leaf.Cert.PublicKey.(*rsa.PublicKey), crypto.SHA256, sum[:], sig); err != nil {
		t.Fatalf("SignRaw is not PKCS#1 v1.5 SHA-256: %v", err)
	}
	if _, err := jpkisim.SignRaw(f.ec.Key, data); err == nil {
		t.Fatal("SignRaw accepted an EC key")
	}
	if _, err := jpkisim.SignRaw(nil, data); err == nil {
		t.Fatal("SignRaw accepted a nil key")
	}
}
