package walletsim

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

var (
	caOnce        sync.Once
	sigCA, authCA *jpkisim.CA
	key1, key2    *rsa.PrivateKey
	caErr         error
)

func cas(t testing.TB) (*jpkisim.CA, *jpkisim.CA) {
	t.Helper()
	caOnce.Do(func() {
		if sigCA, caErr = jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindSignature}); caErr != nil {
			return
		}
		if authCA, caErr = jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindAuthentication}); caErr != nil {
			return
		}
		if key1, caErr = rsa.GenerateKey(rand.Reader, 2048); caErr != nil {
			return
		}
		key2, caErr = rsa.GenerateKey(rand.Reader, 2048)
	})
	if caErr != nil {
		t.Fatal(caErr)
	}
	return sigCA, authCA
}

var taro = jpkisim.Facts{Name: "山田\u3000太郎", Gender: "1", Birthdate: "319801231", Address: "東京都千代田区"}

func testWallet(t testing.TB) *Wallet {
	t.Helper()
	s, a := cas(t)
	w, err := EnrollWith(s, a, taro, EnrollOptions{SigKey: key1, AuthKey: key2})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestEnrollRefusesWrongCAs(t *testing.T) {
	s, a := cas(t)
	if _, err := Enroll(a, s, taro); err == nil {
		t.Fatal("swapped CAs accepted")
	}
	if _, err := Enroll(nil, a, taro); err == nil {
		t.Fatal("nil CA accepted")
	}
}

func TestSaveLoad(t *testing.T) {
	w := testWallet(t)
	w.Token, w.UserVerification = TokenCard, "pin"
	dir := filepath.Join(t.TempDir(), "wallet")
	if err := w.Save(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{sigKeyFile, authKeyFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v %v", f, st.Mode(), err)
		}
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.SigCert.Equal(w.SigCert) || !got.AuthCert.Equal(w.AuthCert) || got.Token != TokenCard {
		t.Fatal("loaded wallet differs")
	}
	// Keys swapped between the two slots: refused.
	sk, _ := os.ReadFile(filepath.Join(dir, sigKeyFile))
	os.WriteFile(filepath.Join(dir, sigKeyFile), []byte("garbage"), 0o600)
	if _, err := Load(dir); err == nil {
		t.Fatal("garbage key accepted")
	}
	ak, _ := os.ReadFile(filepath.Join(dir, authKeyFile))
	os.WriteFile(filepath.Join(dir, sigKeyFile), ak, 0o600)
	os.WriteFile(filepath.Join(dir, authKeyFile), sk, 0o600)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("swapped keys: %v", err)
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Fatal("empty directory accepted")
	}
}

func TestParseURL(t *testing.T) {
	tx := "https://idp.example/wallet/v1/transactions/abc?qr_token=1.x"
	for _, c := range []struct {
		in   string
		want string // "" = refused
	}{
		{tx, tx},
		{"http://127.0.0.1:8080/wallet/v1/transactions/abc?qr_token=1.x", "http://127.0.0.1:8080/wallet/v1/transactions/abc?qr_token=1.x"},
		{"https://idp.example/base/wallet/v1/transactions/abc", "https://idp.example/base/wallet/v1/transactions/abc"},
		{"watashi://sign?tx=" + "https%3A%2F%2Fidp.example%2Fwallet%2Fv1%2Ftransactions%2Fabc%3Fqr_token%3D1.x", tx},
		{"https://idp.example/wallet/open?tx=" + "https%3A%2F%2Fidp.example%2Fwallet%2Fv1%2Ftransactions%2Fabc%3Fqr_token%3D1.x", tx},
		{"  " + tx + "\n", tx},
		{"ftp://idp.example/wallet/v1/transactions/abc", ""},
		{"https://idp.example/other/abc", ""},
		{"https://idp.example/wallet/v1/transactions/", ""},
		{"https://idp.example/wallet/v1/transactions/a/b", ""},
		{"https://user@idp.example/wallet/v1/transactions/abc", ""},
		{"https://idp.example/wallet/v1/transactions/abc#frag", ""},
		{"watashi://sign", ""},
		{"watashi://sign?tx=javascript%3Aalert(1)", ""},
		{"%zz", ""},
		{"", ""},
	} {
		u, err := ParseURL(c.in)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("ParseURL(%q) accepted: %s", c.in, u)
		case c.want != "" && (err != nil || u.String() != c.want):
			t.Errorf("ParseURL(%q) = %v, %v; want %s", c.in, u, err, c.want)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"https://a/wallet/v1/transactions/x", "watashi://sign?tx=x", "http://a/?tx=%", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURL(s)
		if err == nil && (u.Host == "" || (u.Scheme != "https" && u.Scheme != "http")) {
			t.Fatalf("accepted %q as %v", s, u)
		}
	})
}

func TestFactsFromInput(t *testing.T) {
	f, err := FactsFromInput("山田 太郎", "1980-12-31", "male", "東京都千代田区")
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "山田\u3000太郎" || f.Birthdate != "319801231" || f.Gender != "1" || f.NameSubstitution != "00000" {
		t.Fatalf("%+v", f)
	}
	if f, err := FactsFromInput("佐藤\u3000花子", "2020-01-01", "female", "x"); err != nil || f.Birthdate != "520200101" {
		t.Fatalf("%+v %v", f, err)
	}
	for _, c := range [][4]string{
		{"山田太郎", "1980-12-31", "male", "a"},   // no separator
		{"山田 ", "1980-12-31", "male", "a"},    // no given name
		{"山田 太郎", "31/12/1980", "male", "a"},  // date format
		{"山田 太郎", "1800-01-01", "male", "a"},  // before Meiji
		{"山田 太郎", "2999-01-01", "male", "a"},  // future
		{"山田 太郎", "1980-12-31", "other", "a"}, // gender
		{"山田 太郎", "1980-12-31", "male", ""},   // address
		{"山田 太郎", "1980-12-31", "male", strings.Repeat("あ", 201)},
	} {
		if _, err := FactsFromInput(c[0], c[1], c[2], c[3]); err == nil {
			t.Errorf("accepted %q", c)
		}
	}
}

// TestSignBytes: each format's signature is what pkibridge parses, over
// exactly the bytes given.
func TestSignBytes(t *testing.T) {
	w := testWallet(t)
	data := []byte(`{"typ":"watashi-signin+v1"}`)
	sigs, err := w.SignBytes(data, FormatRaw, []string{CertSignature, CertAuthentication})
	if err != nil || len(sigs) != 2 {
		t.Fatal(err)
	}
	for i, want := range []*rsa.PrivateKey{key1, key2} {
		s := sigs[i]
		sig, _ := base64.StdEncoding.DecodeString(s.SigB64)
		der, _ := base64.StdEncoding.DecodeString(s.CertB64)
		certs, err := pkibridge.ParseCertificates(der)
		if err != nil {
			t.Fatal(err)
		}
		env, err := pkibridge.ParseRaw(sig, certs[0], data, crypto.SHA256, pkibridge.DefaultPolicy())
		if err != nil || !env.Leaf.PublicKey.(*rsa.PublicKey).Equal(&want.PublicKey) {
			t.Fatalf("raw %d: %v", i, err)
		}
	}
	for _, format := range []string{FormatJWS, FormatCMS} {
		sigs, err := w.SignBytes(data, format, []string{CertAuthentication})
		if err != nil {
			t.Fatal(err)
		}
		var env *pkibridge.Envelope
		if format == FormatJWS {
			env, err = pkibridge.ParseJWS([]byte(sigs[0].JWS), pkibridge.DefaultPolicy())
		} else {
			cms, _ := base64.StdEncoding.DecodeString(sigs[0].CMSB64)
			env, err = pkibridge.ParseCMS(cms, nil, pkibridge.DefaultPolicy())
		}
		if err != nil || string(env.Content) != string(data) || !env.Leaf.Equal(w.AuthCert) {
			t.Fatalf("%s: %v", format, err)
		}
	}
	if _, err := w.SignBytes(data, "xml", []string{CertAuthentication}); err == nil {
		t.Fatal("unknown format signed")
	}
	if _, err := w.SignBytes(data, FormatJWS, []string{"other"}); err == nil {
		t.Fatal("unknown certificate kind signed")
	}
	if _, err := w.SignBytes(data, FormatJWS, nil); err == nil {
		t.Fatal("no certificate: signed")
	}
}

// TestFetchRefusesInconsistentTransactions: a wallet signs nothing whose
// bytes disagree with what it would show, or that names another issuer
// than the server it asked (a relayed transaction). The server here is a
// fault injector: the real provider cannot produce these answers.
func TestFetchRefusesInconsistentTransactions(t *testing.T) {
	var doc map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(doc)
	}))
	defer srv.Close()
	exp := time.Now().Add(5 * time.Minute).Unix()
	build := func(issuer string, mutSigned func(m map[string]any), mutDoc func(m map[string]any)) map[string]any {
		signed := map[string]any{"aud": issuer, "client_id": "web", "exp": exp, "iss": issuer, "nonce": "n",
			"purpose": "signin", "rp": "Web RP", "txn": "tx1", "typ": SignedType}
		if mutSigned != nil {
			mutSigned(signed)
		}
		b, _ := json.Marshal(signed)
		d := map[string]any{"transaction": "tx1", "issuer": issuer,
			"rp":      map[string]any{"client_id": "web", "display_name": "Web RP", "whitelisted": true},
			"purpose": "signin", "requested_claims": []string{"name"}, "certificates": []string{"authentication"},
			"expires_at": exp, "comparison_code": "12-34",
			"sign": map[string]any{"bytes_b64": base64.StdEncoding.EncodeToString(b), "formats": []string{"jws"}}}
		if mutDoc != nil {
			mutDoc(d)
		}
		return d
	}
	url := srv.URL + "/wallet/v1/transactions/tx1?qr_token=1.x"
	doc = build(srv.URL, nil, nil)
	tx, err := Fetch(context.Background(), srv.Client(), url)
	if err != nil {
		t.Fatalf("consistent transaction refused: %v", err)
	}
	if tx.QRToken != "1.x" || tx.URL != srv.URL+"/wallet/v1/transactions/tx1" || tx.Signed.Nonce != "n" {
		t.Fatalf("%+v", tx)
	}
	for _, c := range []struct {
		name string
		doc  map[string]any
	}{
		{"other issuer (relayed)", build("https://real-idp.example", nil, nil)},
		{"typ", build(srv.URL, func(m map[string]any) { m["typ"] = "jwt" }, nil)},
		{"txn", build(srv.URL, func(m map[string]any) { m["txn"] = "tx2" }, nil)},
		{"rp name", build(srv.URL, func(m map[string]any) { m["rp"] = "Evil" }, nil)},
		{"client", build(srv.URL, func(m map[string]any) { m["client_id"] = "evil" }, nil)},
		{"exp", build(srv.URL, func(m map[string]any) { m["exp"] = exp + 600 }, nil)},
		{"aud", build(srv.URL, func(m map[string]any) { m["aud"] = "https://x" }, nil)},
		{"purpose", build(srv.URL, nil, func(m map[string]any) { m["purpose"] = "proofing" })},
		{"certificates", build(srv.URL, nil, func(m map[string]any) { m["certificates"] = []string{"signature"} })},
		{"extra field in bytes", build(srv.URL, func(m map[string]any) { m["amount"] = 100 }, nil)},
		{"no nonce", build(srv.URL, func(m map[string]any) { m["nonce"] = "" }, nil)},
		{"bytes not base64", build(srv.URL, nil, func(m map[string]any) { m["sign"] = map[string]any{"bytes_b64": "!!"} })},
	} {
		doc = c.doc
		if _, err := Fetch(context.Background(), srv.Client(), url); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

// TestFetchKeepsOnlyTheIssuersReturnURL: a return URL is followed after
// the PIN, so only one on the provider's own origin is kept.
func TestFetchKeepsOnlyTheIssuersReturnURL(t *testing.T) {
	var ret string
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		exp := time.Now().Add(5 * time.Minute).Unix()
		b, _ := json.Marshal(map[string]any{"aud": srv.URL, "client_id": "web", "exp": exp, "iss": srv.URL, "nonce": "n",
			"purpose": "signin", "rp": "Web RP", "txn": "tx1", "typ": SignedType})
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"transaction": "tx1", "issuer": srv.URL,
			"rp": map[string]any{"client_id": "web", "display_name": "Web RP", "whitelisted": true}, "purpose": "signin",
			"certificates": []string{"authentication"}, "expires_at": exp, "comparison_code": "12-34", "return_url": ret,
			"sign": map[string]any{"bytes_b64": base64.StdEncoding.EncodeToString(b), "formats": []string{"jws"}}})
	}))
	defer srv.Close()
	for _, c := range []struct{ ret, want string }{
		{srv.URL + "/login/tx/tx1/return", srv.URL + "/login/tx/tx1/return"},
		{"https://evil.example/login/tx/tx1/return", ""},
		{srv.URL + ".evil.example/x", ""},
		{"javascript:alert(1)", ""},
		{"", ""},
	} {
		ret = c.ret
		tx, err := Fetch(context.Background(), srv.Client(), srv.URL+"/wallet/v1/transactions/tx1?qr_token=1.x")
		if err != nil {
			t.Fatal(err)
		}
		if tx.ReturnURL != c.want {
			t.Errorf("return_url %q kept as %q, want %q", c.ret, tx.ReturnURL, c.want)
		}
	}
}
