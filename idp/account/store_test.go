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
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/pkibridge"
)

var serial atomic.Int64

// cert is a throwaway certificate: the store only links it and records
// its issuer, serial and expiry.
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
	return newStoreRing(t, kv, seal.GenerateRing())
}

func newStoreRing(t *testing.T, kv KV, ring *seal.Ring) *Store {
	t.Helper()
	s, err := New(kv, Options{KEK: ring})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewNeedsKEK(t *testing.T) {
	if _, err := New(store.NewMemory(), Options{}); err == nil {
		t.Fatal("a store without a KEK")
	}
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
	a, err := s.Get(ctx, taro)
	if err != nil || len(a.AuthCerts) != 2 || len(a.SignCerts) != 2 || a.FactsSource.Serial != renewedSig.Leaf.SerialNumber.String() {
		t.Fatalf("account after renewal: %+v %v", a, err)
	}

	// Another person's signature certificate cannot refresh the account
	// the authentication certificate points at.
	hanako := sigResult(t, "山田花子", "1982-02-02")
	if _, _, err := s.Proof(ctx, hanako, taroAuth, ""); !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("other person's facts: %v", err)
	}
	a, err = s.Get(ctx, taro)
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
}

// A record that is not what this store sealed for that account is an
// error, never an empty or a foreign account: plaintext from before
// encryption at rest, garbage, another account's record or data key
// copied in, a store sealed under another KEK.
func TestRecordsRefused(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	s := newStore(t, kv)
	a, _, err := s.Proof(ctx, sigResult(t, "山田太郎", "1980-01-01"), authResult(t), "")
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := s.Proof(ctx, sigResult(t, "佐藤次郎", "1990-03-03"), authResult(t), "")
	if err != nil {
		t.Fatal(err)
	}
	get := func(key string) []byte {
		v, err := kv.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	recA, keyA, recB, keyB := get(accountKey(a)), get(dataKeyKey(a)), get(accountKey(b)), get(dataKeyKey(b))

	tests := []struct {
		name       string
		rec, dek   []byte
		wantSealed bool // the error says the record is not sealed
	}{
		{"plaintext JSON from before", []byte(`{"id":"` + a + `","facts":{"name":"山田太郎"}}`), keyA, true},
		{"garbage", []byte("{"), keyA, true},
		{"empty", []byte{}, keyA, true},
		{"another account's record", recB, keyA, false},
		{"another account's data key", recA, keyB, false},
		{"both of another account", recB, keyB, false},
		{"data key truncated", recA, keyA[:20], false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := kv.Set(ctx, accountKey(a), tc.rec, 0); err != nil {
				t.Fatal(err)
			}
			if err := kv.Set(ctx, dataKeyKey(a), tc.dek, 0); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(ctx, a)
			if err == nil || errors.Is(err, ErrNotFound) || got != nil {
				t.Fatalf("Get = %+v, %v", got, err)
			}
			if tc.wantSealed != strings.Contains(err.Error(), "record is not sealed") {
				t.Fatalf("error %v", err)
			}
		})
	}
	// Restored, it reads again; and another deployment's KEK reads
	// nothing of it.
	_ = kv.Set(ctx, accountKey(a), recA, 0)
	_ = kv.Set(ctx, dataKeyKey(a), keyA, 0)
	if got, err := s.Get(ctx, a); err != nil || got.Facts.Name != "山田太郎" {
		t.Fatalf("restored: %v", err)
	}
	other := newStore(t, kv)
	if _, err := other.Get(ctx, a); !errors.Is(err, seal.ErrUnknownKEK) {
		t.Fatalf("another KEK: %v", err)
	}
}

// Deleting an account destroys its data key: a copy of its record taken
// before (a replica, a dump, an attacker's) can no longer be opened, not
// even with the KEK and every data key left in the store. The links go
// too, so the same certificates prove a new account afterwards.
func TestDeleteShredsTheRecord(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	ring := seal.GenerateRing()
	s := newStoreRing(t, kv, ring)
	sig, auth := sigResult(t, "山田太郎", "1980-01-01"), authResult(t)
	id, _, err := s.Proof(ctx, sig, auth, "")
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := s.Proof(ctx, sigResult(t, "佐藤次郎", "1990-03-03"), authResult(t), "")
	if err != nil {
		t.Fatal(err)
	}
	stolen, err := kv.Get(ctx, accountKey(id))
	if err != nil {
		t.Fatal(err)
	}
	// Before the deletion the copy opens with the stored data key.
	w, _ := kv.Get(ctx, dataKeyKey(id))
	if sealer, err := ring.OpenSealer(w, []byte(dataKeyKey(id))); err != nil {
		t.Fatal(err)
	} else if _, err := sealer.Open(stolen, []byte(accountKey(id))); err != nil {
		t.Fatalf("the copy does not open before deletion: %v", err)
	}

	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{accountKey(id), dataKeyKey(id)} {
		if _, err := kv.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s survives: %v", key, err)
		}
	}
	if ids, _ := s.IDs(ctx); len(ids) != 1 || ids[0] != other {
		t.Fatalf("account list %v", ids)
	}
	// Every key the store still holds, with the KEK, against the copy.
	candidates := [][]byte{}
	for _, key := range []string{dataKeyKey(other), linkKeyKey} {
		w, err := kv.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ring.Unwrap(w, []byte(key))
		if err != nil {
			t.Fatal(err)
		}
		candidates = append(candidates, k)
	}
	for _, k := range candidates {
		sealer, err := seal.NewSealer(k)
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := sealer.Open(stolen, []byte(accountKey(id))); err == nil {
			t.Fatalf("the deleted account's record opens: %s", pt)
		}
	}
	// Putting the copy back does not revive the account.
	_ = kv.Set(ctx, accountKey(id), stolen, 0)
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("copy put back: %v", err)
	}
	if _, err := s.SignIn(ctx, auth); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("sign-in after deletion: %v", err)
	}
	if err := s.Delete(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second deletion: %v", err)
	}
	if _, err := kv.Get(ctx, accountKey(id)); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("a second deletion leaves the copy that was put back")
	}
	// The resident can start again with the same card.
	again, created, err := s.Proof(ctx, sig, auth, id)
	if err != nil || !created || again == id {
		t.Fatalf("proofing after deletion: %q %v %v", again, created, err)
	}
	if got, err := s.SignIn(ctx, auth); err != nil || got != again {
		t.Fatalf("sign-in to the new account: %q %v", got, err)
	}
}

// A deletion that stopped after the data key leaves links behind; a
// proofing meeting them drops them instead of failing for ever.
func TestProofAfterInterruptedDeletion(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	s := newStore(t, kv)
	sig, auth := sigResult(t, "山田太郎", "1980-01-01"), authResult(t)
	id, _, err := s.Proof(ctx, sig, auth, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, dataKeyKey(id)); err != nil {
		t.Fatal(err)
	}
	again, created, err := s.Proof(ctx, sig, auth, "")
	if err != nil || !created || again == id {
		t.Fatalf("proofing over stale links: %q %v %v", again, created, err)
	}
	if err := s.Delete(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("finishing the deletion: %v", err)
	}
	if _, err := kv.Get(ctx, accountKey(id)); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("record left")
	}
}

// KEK rotation: with the new KEK current and the old still configured,
// Rewrap moves every data key to the new one; then the old KEK can go.
func TestRewrap(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	k1, k2 := kek(t, 1), kek(t, 2)
	old := ring(t, k1)
	s1 := newStoreRing(t, kv, old)
	var ids []string
	for range 3 {
		id, _, err := s1.Proof(ctx, sigResult(t, "山田太郎", "1980-01-01"), authResult(t), "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	before := map[string][]byte{}
	for _, id := range ids {
		before[id], _ = kv.Get(ctx, accountKey(id))
	}

	rotating := newStoreRing(t, kv, ring(t, k2, k1))
	c, err := rotating.Rewrap(ctx, true)
	if err != nil || c.ByKEK[k1.ID()] != 4 || c.Rewrapped != 0 || len(c.ByKEK) != 1 {
		t.Fatalf("dry run: %+v %v", c, err)
	}
	if _, err := newStoreRing(t, kv, ring(t, k2)).Get(ctx, ids[0]); !errors.Is(err, seal.ErrUnknownKEK) {
		t.Fatalf("dry run changed something: %v", err)
	}
	c, err = rotating.Rewrap(ctx, false)
	if err != nil || c.ByKEK[k1.ID()] != 4 || c.Rewrapped != 4 {
		t.Fatalf("rotation: %+v %v", c, err)
	}
	c, err = rotating.Rewrap(ctx, false)
	if err != nil || c.ByKEK[k2.ID()] != 4 || c.Rewrapped != 0 {
		t.Fatalf("second rotation: %+v %v", c, err)
	}
	after := newStoreRing(t, kv, ring(t, k2))
	for _, id := range ids {
		if a, err := after.Get(ctx, id); err != nil || a.Facts.Name != "山田太郎" {
			t.Fatalf("after the rotation: %v", err)
		}
		// The records themselves were not touched: only their keys.
		if rec, _ := kv.Get(ctx, accountKey(id)); string(rec) != string(before[id]) {
			t.Fatal("record rewritten")
		}
	}
	if _, _, err := after.Proof(ctx, sigResult(t, "佐藤次郎", "1990-03-03"), authResult(t), ""); err != nil {
		t.Fatalf("new proofing under the new KEK alone: %v", err)
	}
	// A KEK removed too early stops the rotation with the reason.
	if _, err := newStoreRing(t, kv, ring(t, kek(t, 3))).Rewrap(ctx, false); !errors.Is(err, seal.ErrUnknownKEK) {
		t.Fatalf("rotation without the wrapping KEK: %v", err)
	}
}

func kek(t *testing.T, b byte) *seal.KEK {
	t.Helper()
	key := make([]byte, seal.KeySize)
	for i := range key {
		key[i] = b
	}
	k, err := seal.ParseKEK(key)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ring(t *testing.T, cur *seal.KEK, prev ...*seal.KEK) *seal.Ring {
	t.Helper()
	r, err := seal.NewRing(cur, prev...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Put stores an account as given, under a fresh data key.
func TestPut(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	s := newStore(t, kv)
	a := &Account{ID: "acct-x", Facts: &pkibridge.Attributes{Name: "山田太郎"}}
	for range 2 {
		if err := s.Put(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.Get(ctx, "acct-x"); err != nil || got.Facts.Name != "山田太郎" {
		t.Fatalf("%+v %v", got, err)
	}
	if err := s.Put(ctx, &Account{}); err == nil {
		t.Fatal("an account without an ID")
	}
}

func TestAddCertRefBounded(t *testing.T) {
	var list []CertRef
	for i := range maxCertRefs + 3 {
		list = addCertRef(list, CertRef{Link: string(rune('a' + i))})
	}
	list = addCertRef(list, CertRef{Link: string(rune('a' + maxCertRefs + 2))})
	if len(list) != maxCertRefs || list[0].Link != string(rune('a'+3)) || list[len(list)-1].Link != string(rune('a'+maxCertRefs+2)) {
		t.Fatalf("%+v", list)
	}
}

// BenchmarkGet is one account read: with Redis, the record and its data
// key (two round trips), the unwrap and the open; the same on the memory
// store shows the crypto and decoding alone.
func BenchmarkGet(b *testing.B) {
	for _, bk := range []struct {
		name string
		kv   func(b *testing.B) KV
	}{
		{"memory", func(*testing.B) KV { return store.NewMemory() }},
		{"redis", func(b *testing.B) KV {
			kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{storetest.StartRedis(b)}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { kv.Close() })
			return kv
		}},
	} {
		b.Run(bk.name, func(b *testing.B) {
			ctx := context.Background()
			s, err := New(bk.kv(b), Options{KEK: seal.GenerateRing()})
			if err != nil {
				b.Fatal(err)
			}
			a := &Account{ID: "acct-bench", Facts: &pkibridge.Attributes{Name: "山田\u3000太郎", Birthdate: "1980-12-31",
				Gender: "male", GenderCode: "1", Address: "東京都千代田区霞が関一丁目1番1号"},
				FactsSource: &FactsSource{Issuer: "OU=JPKI for digital signature,O=JPKI,C=JP", Serial: "123456789",
					Recheck: &RevocationRef{IssuerCert: make([]byte, 1100), RawIssuer: make([]byte, 120)}},
				AuthCerts: []CertRef{{Link: "x"}}, SignCerts: []CertRef{{Link: "y"}}}
			if err := s.Put(ctx, a); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Get(ctx, "acct-bench"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
