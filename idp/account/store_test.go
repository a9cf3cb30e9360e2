package account

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
)

var serial atomic.Int64

// cert is a throwaway certificate: the store only fingerprints it and
// records its issuer, serial and expiry.
func cert(t *testing.T) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: "test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sigResult(t *testing.T, name, birthdate string) *pkibridge.Result {
	return &pkibridge.Result{Kind: pkibridge.KindSignature, Leaf: cert(t),
		Attributes: &pkibridge.Attributes{Name: name, Birthdate: birthdate, Address: "東京都千代田区1-1"},
		Revocation: pkibridge.RevocationInfo{Status: pkibridge.StatusGood}}
}

func authResult(t *testing.T) *pkibridge.Result {
	return &pkibridge.Result{Kind: pkibridge.KindAuthentication, Leaf: cert(t)}
}

func newStore(t *testing.T, kv KV) *Store {
	t.Helper()
	s, err := New(kv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The store's refusals are its domain errors, which the sign-in maps to
// the wallet protocol's codes.
func TestDomainErrors(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	s := newStore(t, kv)

	taroSig, taroAuth := sigResult(t, "山田太郎", "1980-01-01"), authResult(t)
	if _, err := s.SignIn(ctx, taroAuth); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("unlinked certificate: %v", err)
	}
	taro, created, err := s.Proof(ctx, taroSig, taroAuth, "")
	if err != nil || !created || taro == "" {
		t.Fatalf("first proofing: %q %v %v", taro, created, err)
	}
	if id, err := s.SignIn(ctx, taroAuth); err != nil || id != taro {
		t.Fatalf("sign-in after proofing: %q %v", id, err)
	}
	// The signature certificate is linked too, but never signs anyone in.
	if _, err := s.SignIn(ctx, &pkibridge.Result{Kind: pkibridge.KindAuthentication, Leaf: taroSig.Leaf}); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("sign-in with the signature certificate: %v", err)
	}
	// Proving again with the same certificates, or a renewed card of the
	// same person, joins the account.
	if id, created, err := s.Proof(ctx, taroSig, taroAuth, ""); err != nil || created || id != taro {
		t.Fatalf("second proofing: %q %v %v", id, created, err)
	}
	renewedSig, renewedAuth := sigResult(t, "山田太郎", "1980-01-01"), authResult(t)
	if id, created, err := s.Proof(ctx, renewedSig, renewedAuth, taro); err != nil || created || id != taro {
		t.Fatalf("renewal: %q %v %v", id, created, err)
	}
	if id, err := s.SignIn(ctx, renewedAuth); err != nil || id != taro {
		t.Fatalf("sign-in with the renewed card: %q %v", id, err)
	}

	// Another person's signature certificate cannot refresh the account
	// the authentication certificate points at.
	hanako := sigResult(t, "山田花子", "1982-02-02")
	if _, _, err := s.Proof(ctx, hanako, taroAuth, ""); !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("other person's facts: %v", err)
	}
	a, err := s.Get(ctx, taro)
	if err != nil || a.Facts.Name != "山田太郎" {
		t.Fatalf("facts after a refused proofing: %+v %v", a, err)
	}

	// A second resident; certificates or a session of different accounts
	// are a conflict.
	jiro, _, err := s.Proof(ctx, sigResult(t, "佐藤次郎", "1990-03-03"), authResult(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Proof(ctx, taroSig, taroAuth, jiro); !errors.Is(err, ErrConflict) {
		t.Fatalf("session of another account: %v", err)
	}
	jiroSig2 := sigResult(t, "佐藤次郎", "1990-03-03")
	if _, _, err := s.Proof(ctx, jiroSig2, taroAuth, jiro); !errors.Is(err, ErrConflict) {
		t.Fatalf("authentication certificate of another account: %v", err)
	}
	if _, _, err := s.Proof(ctx, taroSig, authResult(t), jiro); !errors.Is(err, ErrConflict) {
		t.Fatalf("signature certificate of another account: %v", err)
	}

	// A link to an account that is gone is not an enrolment.
	if err := kv.Delete(ctx, accountKey(jiro)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{jiro, "", "no-such-account"} {
		if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) || !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q) = %v", id, err)
		}
	}
}

func TestSignInDeletedAccount(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	s := newStore(t, kv)
	auth := authResult(t)
	id, _, err := s.Proof(ctx, sigResult(t, "山田太郎", "1980-01-01"), auth, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, accountKey(id)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignIn(ctx, auth); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("sign-in to a deleted account: %v", err)
	}
	// A corrupt record is an error, not an empty account.
	_ = kv.Set(ctx, accountKey("bad"), []byte("{"), 0)
	if _, err := s.Get(ctx, "bad"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("corrupt record: %v", err)
	}
}

func TestAddCertRefBounded(t *testing.T) {
	var list []CertRef
	for i := range maxCertRefs + 3 {
		list = addCertRef(list, CertRef{Fingerprint: string(rune('a' + i))})
	}
	list = addCertRef(list, CertRef{Fingerprint: string(rune('a' + maxCertRefs + 2))})
	if len(list) != maxCertRefs || list[0].Fingerprint != string(rune('a'+3)) || list[len(list)-1].Fingerprint != string(rune('a'+maxCertRefs+2)) {
		t.Fatalf("%+v", list)
	}
}
