package pkibridge_test

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"math/big"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/smallstep/pkcs7"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// Fuzz workers are separate processes with their own (random) fixture
// keys, so the invariants below never refer to fixture keys: a success is
// instead re-checked by an independent implementation (go-jose, smallstep
// pkcs7, textbook RSA). Fuzzing cannot forge a signature, so any success
// those reject means one of our checks was skipped.

// envFuzzWorker reports whether this process is a fuzzing worker. Workers
// get the corpus from the coordinator and ignore f.Add, and under coverage
// instrumentation generating the RSA fixtures takes minutes, so they skip
// building seeds.
func envFuzzWorker() bool {
	fl := flag.Lookup("test.fuzzworker")
	return fl != nil && fl.Value.String() == "true"
}

// envFuzzOutcome holds a parser to its contract on any input: either an
// *Error with a Reason and no envelope, or a complete envelope.
func envFuzzOutcome(t *testing.T, env *pkibridge.Envelope, err error, format string) {
	t.Helper()
	if err != nil {
		if env != nil {
			t.Fatalf("envelope returned with error %v", err)
		}
		var pe *pkibridge.Error
		if !errors.As(err, &pe) || pe.Reason == "" {
			t.Fatalf("error without a Reason: %T %v", err, err)
		}
		return
	}
	if env == nil || env.Leaf == nil || env.Format != format || env.Algorithm == "" || env.Hash == 0 {
		t.Fatalf("incomplete envelope %+v", env)
	}
}

func FuzzParseJWS(f *testing.F) {
	if !envFuzzWorker() {
		envSeedJWS(f)
	}
	algs := []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256}
	f.Fuzz(func(t *testing.T, in []byte) {
		env, err := pkibridge.ParseJWS(in, pkibridge.DefaultPolicy())
		envFuzzOutcome(t, env, err, "jws")
		if err != nil {
			return
		}
		s := strings.TrimSpace(string(in))
		parts := strings.Split(s, ".")
		want, derr := base64.RawURLEncoding.DecodeString(parts[1])
		if derr != nil || !bytes.Equal(want, env.Content) {
			t.Fatal("content is not the decoded payload segment")
		}
		obj, jerr := jose.ParseSignedCompact(s, algs)
		if jerr != nil {
			t.Fatalf("accepted, but go-jose cannot parse it: %v", jerr)
		}
		got, verr := obj.Verify(env.Leaf.PublicKey)
		if verr != nil || !bytes.Equal(got, env.Content) {
			t.Fatalf("accepted, but go-jose does not verify it with x5c[0]: %v", verr)
		}
	})
}

func envSeedJWS(f *testing.F) {
	fx := envFixtures(f)
	payload := []byte(`{"txn":"fuzz"}`)
	for _, c := range []struct {
		key   crypto.Signer
		chain []*x509.Certificate
	}{
		{fx.leaf.Key, []*x509.Certificate{fx.leaf.Cert}},
		{fx.leaf.Key, []*x509.Certificate{fx.leaf.Cert, fx.ca.Cert}},
		{fx.ec.Key, []*x509.Certificate{fx.ec.Cert}},
	} {
		tok, err := jpkisim.SignJWS(c.key, c.chain, payload)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	x5c := envX5C(fx.leaf.Cert)
	f.Add(envJWS(`{"alg":"PS256","x5c":`+x5c+`}`, payload, envPS256(f, fx.leaf.Key, rsa.PSSSaltLengthEqualsHash)))
	f.Add(envJWS(`{"alg":"none","x5c":`+x5c+`}`, payload, nil))
	f.Add(envJWS(`{"alg":"HS256","x5c":`+x5c+`}`, payload, envHS256(fx.leaf.Cert.RawSubjectPublicKeyInfo)))
	f.Add(envJWS(`{"alg":"RS256","x5c":`+x5c+`,"jwk":{"kty":"RSA"}}`, payload, envRS256(f, fx.leaf.Key)))
	f.Add([]byte("a.b.c"))
	f.Add([]byte("{}"))
	f.Add([]byte(""))
}

func FuzzParseCMS(f *testing.F) {
	if !envFuzzWorker() {
		envSeedCMS(f)
	}
	f.Fuzz(func(t *testing.T, in, detached []byte, useDetached bool) {
		if !useDetached {
			detached = nil
		} else if detached == nil {
			detached = []byte{}
		}
		env, err := pkibridge.ParseCMS(in, detached, pkibridge.DefaultPolicy())
		envFuzzOutcome(t, env, err, "cms")
		if err != nil {
			return
		}
		if detached != nil && !bytes.Equal(env.Content, detached) {
			t.Fatal("content differs from the detached content given")
		}
		envCrossCheckCMS(t, in, env)
	})
}

func envSeedCMS(f *testing.F) {
	fx := envFixtures(f)
	content := []byte("fuzz content")
	for _, detached := range []bool{false, true} {
		der, err := jpkisim.SignCMS(fx.leaf.Key, fx.leaf.Cert, content, detached)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der, content, detached)
		f.Add(pem.EncodeToMemory(&pem.Block{Type: "CMS", Bytes: der}), content, detached)
	}
	ec, err := jpkisim.SignCMS(fx.ec.Key, fx.ec.Cert, content, false)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ec, []byte(nil), false)
	f.Add(envBuildCMS(f, envCMS{key: fx.leaf.Key, cert: fx.leaf.Cert, content: content, noAttrs: true}), []byte(nil), false)
	f.Add(envBuildCMS(f, envCMS{key: fx.leaf.Key, cert: fx.leaf.Cert, content: content,
		sigOID: envOIDPSS, sigPar: envPSSParams(envOIDSHA256, envOIDSHA256, 32), pssSalt: 32}), []byte(nil), false)
	f.Add(envBuildCMS(f, envCMS{key: fx.ca.Key, cert: fx.ca.Cert, content: content, ski: fx.ca.Cert.SubjectKeyId}), []byte(nil), false)
	// BER as a streaming signer writes it, when openssl is at hand.
	dir := f.TempDir()
	envWriteCert(f, dir, "leaf.pem", fx.leaf.Cert)
	envWriteKey(f, dir, "leaf.key", fx.leaf.Key)
	envWriteFile(f, dir, "data", content)
	if ber, err := envOpenSSLErr(dir, "cms", "-sign", "-binary", "-in", "data", "-signer", "leaf.pem", "-inkey", "leaf.key",
		"-md", "sha256", "-outform", "DER", "-nodetach", "-stream"); err == nil {
		f.Add(ber, []byte(nil), false)
	}
	f.Add([]byte{0x30, 0x80, 0x00, 0x00}, []byte(nil), false)
	f.Add([]byte("-----BEGIN CMS-----\n-----END CMS-----\n"), []byte(nil), false)
}

// envCrossCheckCMS re-verifies an accepted SignedData with smallstep
// pkcs7, for the shapes it supports (PKCS#1 v1.5 or ECDSA, signer named by
// issuer and serial).
func envCrossCheckCMS(t *testing.T, in []byte, env *pkibridge.Envelope) {
	t.Helper()
	if strings.Contains(env.Algorithm, "PSS") {
		return
	}
	der := in
	if b, _ := pem.Decode(bytes.TrimSpace(in)); b != nil {
		der = b.Bytes
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		t.Fatalf("accepted, but pkcs7 cannot parse it: %v", err)
	}
	if p7.GetOnlySigner() == nil {
		return // subjectKeyIdentifier: pkcs7 only finds signers by issuer and serial
	}
	p7.Content = env.Content
	if err := p7.Verify(); err != nil {
		t.Fatalf("accepted, but pkcs7 does not verify it: %v", err)
	}
}

func FuzzParseRaw(f *testing.F) {
	if !envFuzzWorker() {
		envSeedRaw(f)
	}
	hashes := []crypto.Hash{0, crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512, crypto.MD5, crypto.SHA224, crypto.Hash(200)}
	f.Fuzz(func(t *testing.T, sig, certDER, data []byte, h uint8) {
		cert, err := x509.ParseCertificate(certDER)
		if err != nil {
			return // certificates come parsed; their parser is not ours to fuzz
		}
		hash := hashes[int(h)%len(hashes)]
		env, err := pkibridge.ParseRaw(sig, cert, data, hash, pkibridge.DefaultPolicy())
		envFuzzOutcome(t, env, err, "raw")
		if err != nil {
			return
		}
		if !bytes.Equal(env.Content, data) || env.Leaf != cert {
			t.Fatal("envelope is not the data and certificate given")
		}
		if !envTextbookPKCS1(cert.PublicKey.(*rsa.PublicKey), env.Hash, data, sig) {
			t.Fatal("accepted, but textbook RSA does not verify it")
		}
	})
}

func envSeedRaw(f *testing.F) {
	fx := envFixtures(f)
	data := []byte("raw fuzz data")
	sig, err := jpkisim.SignRaw(fx.leaf.Key, data)
	if err != nil {
		f.Fatal(err)
	}
	leaf := fx.leaf.Cert.Raw
	f.Add(sig, leaf, data, uint8(0))
	f.Add(sig, leaf, data, uint8(2))
	f.Add(envRSASign(f, fx.leaf.Key, crypto.SHA1, data), leaf, data, uint8(1))
	f.Add(envRSASign(f, fx.leaf.Key, crypto.SHA512, data), leaf, data, uint8(4))
	f.Add(sig, fx.ec.Cert.Raw, data, uint8(0))
	f.Add(envRSASign(f, fx.weak.Key, crypto.SHA256, data), fx.weak.Cert.Raw, data, uint8(0))
	f.Add([]byte{}, []byte{}, []byte{}, uint8(5))
}

// envTextbookPKCS1 verifies an RSASSA-PKCS1-v1_5 signature the long way
// (RFC 8017 §8.2.2): s^e mod n must equal 00 01 FF..FF 00 DigestInfo.
func envTextbookPKCS1(pub *rsa.PublicKey, h crypto.Hash, data, sig []byte) bool {
	oids := map[crypto.Hash]asn1.ObjectIdentifier{
		crypto.SHA1:   {1, 3, 14, 3, 2, 26},
		crypto.SHA256: {2, 16, 840, 1, 101, 3, 4, 2, 1},
		crypto.SHA384: {2, 16, 840, 1, 101, 3, 4, 2, 2},
		crypto.SHA512: {2, 16, 840, 1, 101, 3, 4, 2, 3},
	}
	oid, ok := oids[h]
	if !ok {
		return false
	}
	type algID struct {
		OID    asn1.ObjectIdentifier
		Params asn1.RawValue
	}
	di, err := asn1.Marshal(struct {
		Alg    algID
		Digest []byte
	}{algID{oid, asn1.NullRawValue}, envDigestOf(h, data)})
	if err != nil {
		return false
	}
	k := pub.Size()
	if len(sig) != k || len(di)+11 > k {
		return false
	}
	em := make([]byte, k)
	em[1] = 1
	for i := 2; i < k-len(di)-1; i++ {
		em[i] = 0xff
	}
	copy(em[k-len(di):], di)
	m := new(big.Int).Exp(new(big.Int).SetBytes(sig), big.NewInt(int64(pub.E)), pub.N)
	return bytes.Equal(m.FillBytes(make([]byte, k)), em)
}
