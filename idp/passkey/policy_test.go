package passkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
)

// mdsPKI is a metadata service of our own: a root and the blob signer it
// certifies.
type mdsPKI struct {
	root, signer       *x509.Certificate
	rootKey, signerKey *ecdsa.PrivateKey
	rootPEM            string
}

func newMDSPKI(t testing.TB, signerNotAfter time.Time) *mdsPKI {
	t.Helper()
	p := &mdsPKI{}
	var err error
	if p.rootKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if p.signerKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test MDS root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, rt, rt, &p.rootKey.PublicKey, p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	p.root, _ = x509.ParseCertificate(der)
	p.rootPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	st := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "test MDS signer"},
		NotBefore: now.Add(-time.Hour), NotAfter: signerNotAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err = x509.CreateCertificate(rand.Reader, st, p.root, &p.signerKey.PublicKey, p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	p.signer, _ = x509.ParseCertificate(der)
	return p
}

// blob signs payload with key, carrying chain in x5c.
func signBlob(t testing.TB, payload []byte, key crypto.Signer, chain ...*x509.Certificate) []byte {
	t.Helper()
	var x5c []string
	for _, c := range chain {
		x5c = append(x5c, encodeStd(c.Raw))
	}
	opts := (&jose.SignerOptions{}).WithHeader("x5c", x5c).WithType("JWT")
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return []byte(out)
}

// encodeStd is standard base64 with padding, as x5c wants.
func encodeStd(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

const testPayload = `{"legalHeader":"test","no":7,"nextUpdate":"2099-01-01","entries":[]}`

func TestLoadMetadata(t *testing.T) {
	now := time.Now()
	p := newMDSPKI(t, now.Add(12*time.Hour))
	good := signBlob(t, []byte(testPayload), p.signerKey, p.signer, p.root)
	md, err := LoadMetadata(good, p.rootPEM, now)
	if err != nil {
		t.Fatal(err)
	}
	if md.Number != 7 || md.NextUpdate.Year() != 2099 || md.Provider == nil {
		t.Fatalf("%+v", md)
	}

	other := newMDSPKI(t, now.Add(12*time.Hour))
	expired := newMDSPKI(t, now.Add(-time.Minute))
	for _, c := range []struct {
		name string
		blob []byte
		root string
		at   time.Time
	}{
		{"empty", nil, p.rootPEM, now},
		{"not a JWS", []byte("not.a.jws"), p.rootPEM, now},
		{"another root", good, other.rootPEM, now},
		{"the FIDO root", good, "", now},
		{"signed by a key the chain does not certify", signBlob(t, []byte(testPayload), other.signerKey, p.signer, p.root), p.rootPEM, now},
		{"no chain", signBlob(t, []byte(testPayload), p.signerKey), p.rootPEM, now},
		{"expired signer", signBlob(t, []byte(testPayload), expired.signerKey, expired.signer, expired.root), expired.rootPEM, now},
		{"checked after the signer expired", good, p.rootPEM, now.Add(48 * time.Hour)},
		{"payload not JSON", signBlob(t, []byte("nope"), p.signerKey, p.signer, p.root), p.rootPEM, now},
		{"payload without nextUpdate", signBlob(t, []byte(`{"no":1,"entries":[]}`), p.signerKey, p.signer, p.root), p.rootPEM, now},
		{"tampered payload", tamper(good), p.rootPEM, now},
		{"garbage root", good, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", now},
	} {
		if _, err := LoadMetadata(c.blob, c.root, c.at); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

// tamper changes the payload of a compact JWS, keeping its signature.
func tamper(jws []byte) []byte {
	parts := strings.Split(string(jws), ".")
	parts[1] = b64.EncodeToString([]byte(strings.Replace(testPayload, `"no":7`, `"no":8`, 1)))
	return []byte(strings.Join(parts, "."))
}

func TestAAGUIDPolicy(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	for _, c := range []struct {
		name   string
		p      AAGUIDPolicy
		aaguid []byte
		ok     bool
	}{
		{"no policy", AAGUIDPolicy{}, a[:], true},
		{"no policy, no AAGUID", AAGUIDPolicy{}, nil, true},
		{"denied", AAGUIDPolicy{Denied: []uuid.UUID{a}}, a[:], false},
		{"not denied", AAGUIDPolicy{Denied: []uuid.UUID{a}}, b[:], true},
		{"allowed", AAGUIDPolicy{Allowed: []uuid.UUID{a}}, a[:], true},
		{"not allowed", AAGUIDPolicy{Allowed: []uuid.UUID{a}}, b[:], false},
		{"zero with an allow list", AAGUIDPolicy{Allowed: []uuid.UUID{a}}, make([]byte, 16), false},
		{"malformed", AAGUIDPolicy{}, []byte{1, 2, 3}, false},
	} {
		if err := c.p.Check(c.aaguid); (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestParseAAGUIDs(t *testing.T) {
	got, err := ParseAAGUIDs([]string{"01020304-0506-0708-0102-030405060708", " ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4 "})
	if err != nil || len(got) != 2 {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"", "nope", "01020304050607080102030405060708", "{01020304-0506-0708-0102-030405060708}", "urn:uuid:01020304-0506-0708-0102-030405060708"} {
		if _, err := ParseAAGUIDs([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzLoadMetadata(f *testing.F) {
	p := newMDSPKI(f, time.Now().Add(time.Hour))
	f.Add(signBlob(f, []byte(testPayload), p.signerKey, p.signer, p.root))
	f.Add([]byte("a.b.c"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, blob []byte) {
		md, err := LoadMetadata(blob, p.rootPEM, time.Now())
		if err == nil && md.Provider == nil {
			t.Fatal("accepted without a provider")
		}
	})
}

func FuzzParseAAGUIDs(f *testing.F) {
	f.Add("01020304-0506-0708-0102-030405060708")
	f.Add("x")
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := ParseAAGUIDs([]string{s})
		if err == nil && (len(ids) != 1 || ids[0].String() != strings.ToLower(strings.TrimSpace(s))) {
			t.Fatalf("%q parsed as %v", s, ids)
		}
	})
}
