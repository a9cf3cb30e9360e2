package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/config"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/pkibridge"
)

func mustCert(t *testing.T) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "t"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
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

// `watashi account delete` on a real Redis: the account proved with two
// certificates and a consent goes, data key first; the certificates can
// prove a new account; a second deletion, or an unknown ID, exits 1.
func TestAccountDeleteCommand(t *testing.T) {
	addr := storetest.StartRedis(t)
	kek, _ := opensslRand(t, t.TempDir(), "kek.key")
	cfg := sealedConfig(t, addr, "acct-cli:", kek)
	accounts, kv := openAccounts(t, cfg)
	ctx := context.Background()
	sig := &pkibridge.Result{Kind: pkibridge.KindSignature, Leaf: mustCert(t), Attributes: &pkibridge.Attributes{Name: "山田\u3000太郎", Birthdate: "1980-12-31"}}
	auth := &pkibridge.Result{Kind: pkibridge.KindAuthentication, Leaf: mustCert(t)}
	id, _, err := accounts.Proof(ctx, sig, auth, "")
	if err != nil {
		t.Fatal(err)
	}
	grants := consent.NewStore(kv, store.ErrNotFound)
	if _, err := grants.Consent(ctx, id, "web", consent.Requested{}, false, consent.Choice{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	other, _, err := accounts.Proof(ctx, &pkibridge.Result{Kind: pkibridge.KindSignature, Leaf: mustCert(t), Attributes: &pkibridge.Attributes{Name: "佐藤\u3000花子"}},
		&pkibridge.Result{Kind: pkibridge.KindAuthentication, Leaf: mustCert(t)}, "")
	if err != nil {
		t.Fatal(err)
	}

	code, out, errs := runKeys(t, "account", "delete", "--config", cfg, "--dev", "--id", id, "--json")
	var r struct {
		Account  string `json:"account"`
		Deleted  bool   `json:"deleted"`
		Consents int    `json:"consents_deleted"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.Account != id || !r.Deleted || r.Consents != 1 {
		t.Fatalf("delete: %d %q %s", code, out, errs)
	}
	for _, key := range []string{"acct:" + id, "acctkey:" + id} {
		if _, err := kv.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s survives: %v", key, err)
		}
	}
	if _, err := accounts.Get(ctx, id); !errors.Is(err, account.ErrNotFound) {
		t.Fatalf("deleted account reads: %v", err)
	}
	if g, _ := grants.List(ctx, id); len(g) != 0 {
		t.Fatalf("consents survive: %v", g)
	}
	if _, err := accounts.SignIn(ctx, auth); !errors.Is(err, account.ErrNotEnrolled) {
		t.Fatalf("sign-in after deletion: %v", err)
	}
	if again, created, err := accounts.Proof(ctx, sig, auth, ""); err != nil || !created || again == id {
		t.Fatalf("proving again: %q %v %v", again, created, err)
	}
	if a, err := accounts.Get(ctx, other); err != nil || a.Facts.Name != "佐藤\u3000花子" {
		t.Fatalf("the other account: %v", err)
	}

	code, out, errs = runKeys(t, "account", "delete", "--config", cfg, "--dev", "--id", id)
	if code != exitRefused || out != "" || !strings.Contains(errs, "no account") {
		t.Fatalf("second deletion: %d %q %q", code, out, errs)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no id", []string{"account", "delete", "--config", cfg, "--dev"}, "--id is required"},
		{"no config", []string{"account", "delete", "--id", "x"}, "--config"},
		{"unknown subcommand", []string{"account", "list"}, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runKeys(t, tc.args...)
			if code != exitUsage || !strings.Contains(errs+out, tc.want) {
				t.Fatalf("status %d, stdout %q, stderr %q; want %q", code, out, errs, tc.want)
			}
		})
	}
}

// `watashi account find` on a real Redis, table-driven over what an
// operator may type: it finds an account by the sub one client holds,
// never by another client's sub, and refuses bad input before it
// touches the store.
func TestAccountFindCommand(t *testing.T) {
	addr := storetest.StartRedis(t)
	dir := t.TempDir()
	kek, _ := opensslRand(t, dir, "kek.key")
	pairwise, _ := opensslRand(t, dir, "pairwise.key")
	cfg := writeConfig(t, `issuer: http://127.0.0.1:8080
dev: true
store:
  type: redis
  redis:
    addrs: ["`+addr+`"]
    prefix: "find-cli:"
secrets:
  kek_file: `+kek+`
  pairwise_key_file: `+pairwise+`
pki:
  revocation:
    mode: "off"
clients:
  - client_id: city
    display_name: City
    token_endpoint_auth_method: none
    redirect_uris: [https://city.example.test/cb]
  - client_id: bank
    display_name: Bank
    token_endpoint_auth_method: none
    redirect_uris: [https://bank.example.test/cb]
`)
	accounts, _ := openAccounts(t, cfg)
	ctx := context.Background()
	var ids []string
	for _, name := range []string{"山田\u3000太郎", "佐藤\u3000花子"} {
		id, _, err := accounts.Proof(ctx, &pkibridge.Result{Kind: pkibridge.KindSignature, Leaf: mustCert(t), Attributes: &pkibridge.Attributes{Name: name}},
			&pkibridge.Result{Kind: pkibridge.KindAuthentication, Leaf: mustCert(t)}, "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	loaded, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	subjects, err := loaded.Subjects()
	if err != nil {
		t.Fatal(err)
	}
	citySub := subjects.Sub("city.example.test", ids[1])
	bankSub := subjects.Sub("bank.example.test", ids[1])

	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"city's sub", []string{"--client", "city", "--sub", citySub}, 0, ids[1] + "\n", ""},
		{"bank's sub", []string{"--client", "bank", "--sub", bankSub}, 0, ids[1] + "\n", ""},
		{"bank's sub at city", []string{"--client", "city", "--sub", bankSub}, exitRefused, "", "no account"},
		{"unknown client", []string{"--client", "shop", "--sub", citySub}, exitUsage, "", "no such client"},
		{"no client", []string{"--sub", citySub}, exitUsage, "", "--client is required"},
		{"no sub", []string{"--client", "city"}, exitUsage, "", "--sub is required"},
		{"oversized sub", []string{"--client", "city", "--sub", strings.Repeat("a", 257)}, exitUsage, "", "at most 256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runKeys(t, append([]string{"account", "find", "--config", cfg, "--dev"}, tc.args...)...)
			if code != tc.code || out != tc.out || !strings.Contains(errs, tc.err) {
				t.Fatalf("status %d, stdout %q, stderr %q; want %d %q %q", code, out, errs, tc.code, tc.out, tc.err)
			}
		})
	}

	// A configuration without a pairwise key cannot trace anything: the
	// subjects of a key generated for one --dev process died with it.
	noKey := sealedConfig(t, addr, "find-cli:", kek)
	code, _, errs := runKeys(t, "account", "find", "--config", noKey, "--dev", "--client", "city", "--sub", citySub)
	if code != exitUsage || !strings.Contains(errs, "secrets.pairwise_key is not configured") {
		t.Fatalf("without a pairwise key: %d %s", code, errs)
	}
}
