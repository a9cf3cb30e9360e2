package signin

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/templates"
)

var testKey = []byte("k-0123456789abcdef0123456789abcdef")

// testTemplates parses the embedded pages once per test binary.
var testTemplates = sync.OnceValues(func() (*templates.Set, error) { return templates.New("") })

// newTestHandler is the least of a Handler that the transaction helpers
// need: the QR key, a web kit with the given clock, and the store.
func newTestHandler(t testing.TB, kv store.KV, now func() time.Time) *Handler {
	t.Helper()
	set, err := testTemplates()
	if err != nil {
		t.Fatal(err)
	}
	k, err := web.New(web.Options{
		Issuer:    "https://idp.example",
		CookieKey: bytes.Repeat([]byte{7}, 32),
		Counter:   store.NewMemory(),
		Templates: set,
		Now:       now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &Handler{web: k, kv: kv, txTTL: 5 * time.Minute, log: k.Logger(),
		txs: &transactions{kv: kv, issuer: k.Issuer(), key: testKey, now: k.Now, log: k.Logger()}}
}

// testCertDER is a throwaway self-signed certificate: decodeSignature
// only parses it.
func testCertDER(t testing.TB) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
