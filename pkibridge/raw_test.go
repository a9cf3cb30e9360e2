package pkibridge_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// Shared fixtures of the envelope parser tests (raw, jws, cms, fuzz,
// bench). Names start with env to stay clear of other test files.

// envFactsName is the simulated holder's name: no error may ever contain it.
const envFactsName = "試験\u3000花子"

type envFixture struct {
	ca    *jpkisim.CA
	leaf  *jpkisim.Leaf // RSA-2048 signature certificate, the normal case
	other *jpkisim.Leaf // another RSA-2048 leaf: "signed by someone else"
	ec    *jpkisim.Leaf // P-256
	ec384 *jpkisim.Leaf // P-384
	weak  *jpkisim.Leaf // RSA-1024
}

var envFixtureOnce = sync.OnceValues(func() (*envFixture, error) {
	ca, err := jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindSignature})
	if err != nil {
		return nil, err
	}
	facts := &jpkisim.Facts{
		Name:      envFactsName,
		Gender:    "2",
		Birthdate: jpkisim.EraDate(time.Date(1990, 4, 1, 0, 0, 0, 0, time.UTC)),
		Address:   "東京都千代田区試験町一丁目1番1号",
	}
	f := &envFixture{ca: ca}
	issue := func(key crypto.Signer, bits int) (*jpkisim.Leaf, error) {
		return ca.Issue(jpkisim.LeafOptions{Facts: facts, Key: key, KeyBits: bits})
	}
	if f.leaf, err = issue(nil, 2048); err != nil {
		return nil, err
	}
	if f.other, err = issue(nil, 2048); err != nil {
		return nil, err
	}
	if f.weak, err = issue(nil, 1024); err != nil {
		return nil, err
	}
	k256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if f.ec, err = issue(k256, 0); err != nil {
		return nil, err
	}
	k384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if f.ec384, err = issue(k384, 0); err != nil {
		return nil, err
	}
	return f, nil
})

func envFixtures(tb testing.TB) *envFixture {
	tb.Helper()
	f, err := envFixtureOnce()
	if err != nil {
		tb.Fatalf("fixtures: %v", err)
	}
	return f
}

// envWant checks an outcome: want "" means success.
func envWant(t *testing.T, err error, want pkibridge.Reason) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("accepted, want %s", want)
	}
	var pe *pkibridge.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %T is not a *pkibridge.Error: %v", err, err)
	}
	if pe.Reason != want {
		t.Fatalf("reason %s, want %s (%v)", pe.Reason, want, err)
	}
	if strings.Contains(err.Error(), envFactsName) || strings.Contains(err.Error(), "試験") {
		t.Fatalf("error leaks personal data: %v", err)
	}
}

// envOpenSSL runs the real openssl in dir and returns its stdout.
func envOpenSSL(t testing.TB, dir string, args ...string) []byte {
	t.Helper()
	out, err := envOpenSSLErr(dir, args...)
	if err != nil {
		t.Fatalf("openssl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func envOpenSSLErr(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, errors.New(err.Error() + ": " + stderr.String())
	}
	return stdout.Bytes(), nil
}

func envNeedOpenSSL(t testing.TB) {
	t.Helper()
	jpkisim.RequireOpenSSL(t)
}

// envWriteCert and envWriteKey put PEM files where openssl can read them.
func envWriteCert(t testing.TB, dir, name string, certs ...*x509.Certificate) string {
	t.Helper()
	var buf bytes.Buffer
	for _, c := range certs {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envWriteKey(t testing.TB, dir, name string, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envWriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envRSASign(t testing.TB, key crypto.Signer, h crypto.Hash, data []byte) []byte {
	t.Helper()
	d := h.New()
	d.Write(data)
	sig, err := key.Sign(rand.Reader, d.Sum(nil), h)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func TestParseRaw(t *testing.T) {
	f := envFixtures(t)
	data := []byte("watashi sign-in transaction 42")
	good, err := jpkisim.SignRaw(f.leaf.Key, data)
	if err != nil {
		t.Fatal(err)
	}
	byOther, err := jpkisim.SignRaw(f.other.Key, data)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), pkibridge.DefaultPolicy().MaxEnvelopeBytes+1)
	sha256Sig := envRSASign(t, f.leaf.Key, crypto.SHA256, data) // where the hash argument is what is refused

	cases := []struct {
		name   string
		sig    []byte
		cert   *x509.Certificate
		data   []byte
		hash   crypto.Hash
		policy func(*pkibridge.Policy)
		want   pkibridge.Reason
		alg    string
	}{
		{name: "sha256 default", sig: good, cert: f.leaf.Cert, data: data, want: "", alg: "sha256WithRSA"},
		{name: "sha256 explicit", sig: good, cert: f.leaf.Cert, data: data, hash: crypto.SHA256, alg: "sha256WithRSA"},
		{name: "sha384", sig: envRSASign(t, f.leaf.Key, crypto.SHA384, data), cert: f.leaf.Cert, data: data, hash: crypto.SHA384, alg: "sha384WithRSA"},
		{name: "sha512", sig: envRSASign(t, f.leaf.Key, crypto.SHA512, data), cert: f.leaf.Cert, data: data, hash: crypto.SHA512, alg: "sha512WithRSA"},
		{name: "sha1 refused by default", sig: envRSASign(t, f.leaf.Key, crypto.SHA1, data), cert: f.leaf.Cert, data: data, hash: crypto.SHA1, want: pkibridge.ReasonWeakAlgorithm},
		{name: "sha1 with AllowSHA1", sig: envRSASign(t, f.leaf.Key, crypto.SHA1, data), cert: f.leaf.Cert, data: data, hash: crypto.SHA1,
			policy: func(p *pkibridge.Policy) { p.AllowSHA1 = true }, alg: "sha1WithRSA"},
		{name: "md5 never", sig: sha256Sig, cert: f.leaf.Cert, data: data, hash: crypto.MD5, policy: func(p *pkibridge.Policy) { p.AllowSHA1 = true }, want: pkibridge.ReasonWeakAlgorithm},
		{name: "sha224 not listed", sig: sha256Sig, cert: f.leaf.Cert, data: data, hash: crypto.SHA224, want: pkibridge.ReasonWeakAlgorithm},
		{name: "unknown hash value", sig: good, cert: f.leaf.Cert, data: data, hash: crypto.Hash(99), want: pkibridge.ReasonWeakAlgorithm},
		{name: "hash mismatch", sig: good, cert: f.leaf.Cert, data: data, hash: crypto.SHA512, want: pkibridge.ReasonBadSignature},
		{name: "tampered data", sig: good, cert: f.leaf.Cert, data: []byte("watashi sign-in transaction 43"), want: pkibridge.ReasonBadSignature},
		{name: "other key", sig: byOther, cert: f.leaf.Cert, data: data, want: pkibridge.ReasonBadSignature},
		{name: "flipped bit", sig: envFlip(good, len(good)-1), cert: f.leaf.Cert, data: data, want: pkibridge.ReasonBadSignature},
		{name: "nil cert", sig: good, cert: nil, data: data, want: pkibridge.ReasonMalformed},
		{name: "empty sig", sig: nil, cert: f.leaf.Cert, data: data, want: pkibridge.ReasonMalformed},
		{name: "short sig", sig: good[:255], cert: f.leaf.Cert, data: data, want: pkibridge.ReasonMalformed},
		{name: "long sig", sig: append(append([]byte{}, good...), 0), cert: f.leaf.Cert, data: data, want: pkibridge.ReasonMalformed},
		{name: "leading zero padding", sig: append([]byte{0}, good...), cert: f.leaf.Cert, data: data, want: pkibridge.ReasonMalformed},
		{name: "oversized data", sig: good, cert: f.leaf.Cert, data: big, want: pkibridge.ReasonMalformed},
		{name: "oversized sig", sig: big, cert: f.leaf.Cert, data: data, want: pkibridge.ReasonMalformed},
		{name: "ec certificate", sig: good, cert: f.ec.Cert, data: data, want: pkibridge.ReasonBadSignature},
		{name: "rsa-1024 certificate", sig: envRSASign(t, f.weak.Key, crypto.SHA256, data), cert: f.weak.Cert, data: data, want: pkibridge.ReasonWeakKey},
		{name: "rsa-1024 with lowered minimum", sig: envRSASign(t, f.weak.Key, crypto.SHA256, data), cert: f.weak.Cert, data: data,
			policy: func(p *pkibridge.Policy) { p.MinRSABits = 1024 }, alg: "sha256WithRSA"},
		{name: "empty data signed", sig: envRSASign(t, f.leaf.Key, crypto.SHA256, nil), cert: f.leaf.Cert, data: nil, alg: "sha256WithRSA"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := pkibridge.DefaultPolicy()
			if tc.policy != nil {
				tc.policy(&p)
			}
			env, err := pkibridge.ParseRaw(tc.sig, tc.cert, tc.data, tc.hash, p)
			envWant(t, err, tc.want)
			if tc.want != "" {
				if env != nil {
					t.Fatal("envelope returned with an error")
				}
				return
			}
			if env.Format != "raw" || env.Algorithm != tc.alg || env.Leaf != tc.cert || !bytes.Equal(env.Content, tc.data) || len(env.Extra) != 0 {
				t.Fatalf("envelope %+v", env)
			}
			wantHash := tc.hash
			if wantHash == 0 {
				wantHash = crypto.SHA256
			}
			if env.Hash != wantHash {
				t.Fatalf("hash %v, want %v", env.Hash, wantHash)
			}
		})
	}
}

// TestParseRawContentIsACopy: the envelope must not alias the caller's
// buffer, or a later reuse of it would change what was "verified".
func TestParseRawContentIsACopy(t *testing.T) {
	f := envFixtures(t)
	data := []byte("bytes to sign")
	sig, err := jpkisim.SignRaw(f.leaf.Key, data)
	if err != nil {
		t.Fatal(err)
	}
	env, err := pkibridge.ParseRaw(sig, f.leaf.Cert, data, 0, pkibridge.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	data[0] = 'X'
	if string(env.Content) != "bytes to sign" {
		t.Fatalf("content aliases the input: %q", env.Content)
	}
}

// TestParseRawOpenSSL checks raw signatures made by openssl the two ways a
// card host does it: hashing and signing in one step (dgst -sign), and
// signing a digest the host computed (pkeyutl with a digest, i.e. the
// card receiving a DigestInfo).
func TestParseRawOpenSSL(t *testing.T) {
	envNeedOpenSSL(t)
	f := envFixtures(t)
	dir := t.TempDir()
	envWriteKey(t, dir, "leaf.key", f.leaf.Key)
	data := []byte("watashi raw interop\n")
	envWriteFile(t, dir, "data", data)
	for _, tc := range []struct {
		name string
		hash crypto.Hash
		args []string
		want pkibridge.Reason
	}{
		{"dgst sha256", crypto.SHA256, []string{"dgst", "-sha256", "-sign", "leaf.key", "data"}, ""},
		{"dgst sha512", crypto.SHA512, []string{"dgst", "-sha512", "-sign", "leaf.key", "data"}, ""},
		{"dgst sha1", crypto.SHA1, []string{"dgst", "-sha1", "-sign", "leaf.key", "data"}, pkibridge.ReasonWeakAlgorithm},
		{"pkeyutl digestinfo sha256", crypto.SHA256, nil, ""},
		{"dgst sha256 declared sha384", crypto.SHA384, []string{"dgst", "-sha256", "-sign", "leaf.key", "data"}, pkibridge.ReasonBadSignature},
		{"pss is not a card signature", crypto.SHA256, []string{"dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sign", "leaf.key", "data"}, pkibridge.ReasonBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if args == nil {
				sum := sha256.Sum256(data)
				envWriteFile(t, dir, "digest", sum[:])
				args = []string{"pkeyutl", "-sign", "-inkey", "leaf.key", "-pkeyopt", "digest:sha256", "-in", "digest"}
			}
			sig := envOpenSSL(t, dir, args...)
			env, err := pkibridge.ParseRaw(sig, f.leaf.Cert, data, tc.hash, pkibridge.DefaultPolicy())
			envWant(t, err, tc.want)
			if err == nil && !bytes.Equal(env.Content, data) {
				t.Fatal("content differs")
			}
		})
	}
}

// envFlip returns a copy of b with one bit flipped at i.
func envFlip(b []byte, i int) []byte {
	c := append([]byte{}, b...)
	c[i] ^= 0x01
	return c
}

// envGoodRevocation answers "good" for everything: the wrapper tests are
// about the envelope path, revocation has its own tests.
type envGoodRevocation struct{}

func (envGoodRevocation) CheckRevocation(context.Context, *x509.Certificate, *x509.Certificate) (pkibridge.RevocationInfo, error) {
	return pkibridge.RevocationInfo{Status: pkibridge.StatusGood, Source: "test"}, nil
}

// envVerifier trusts the fixture CA only.
func envVerifier(t testing.TB, f *envFixture) *pkibridge.Verifier {
	t.Helper()
	anchors, err := pkibridge.NewAnchors(f.ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return &pkibridge.Verifier{Anchors: anchors, Policy: pkibridge.DefaultPolicy(), Revocation: envGoodRevocation{}}
}

func TestVerifyRaw(t *testing.T) {
	f := envFixtures(t)
	v := envVerifier(t, f)
	challenge := []byte("watashi challenge raw 1")
	sig, err := jpkisim.SignRaw(f.leaf.Key, challenge)
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.VerifyRaw(context.Background(), sig, f.leaf.Cert, challenge, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Format != "raw" || res.Algorithm != "sha256WithRSA" || res.Kind != pkibridge.KindSignature || !res.Leaf.Equal(f.leaf.Cert) {
		t.Fatalf("result %+v", res)
	}
	_, err = v.VerifyRaw(context.Background(), sig, f.leaf.Cert, []byte("watashi challenge raw 2"), 0)
	envWant(t, err, pkibridge.ReasonBadSignature)
	_, err = v.VerifyRaw(context.Background(), sig, f.leaf.Cert, challenge, crypto.SHA1)
	envWant(t, err, pkibridge.ReasonWeakAlgorithm)
	// A leaf from a CA the Verifier does not trust: the signature is
	// fine, the certificate is not.
	other, err := jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindSignature, Key: f.other.Key.(*rsa.PrivateKey)})
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := other.Issue(jpkisim.LeafOptions{OmitFacts: true, Key: f.leaf.Key})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.VerifyRaw(context.Background(), sig, stranger.Cert, challenge, 0)
	envWant(t, err, pkibridge.ReasonUntrusted)
	var nilV *pkibridge.Verifier
	_, err = nilV.VerifyRaw(context.Background(), sig, f.leaf.Cert, challenge, 0)
	envWant(t, err, pkibridge.ReasonMalformed)
}
