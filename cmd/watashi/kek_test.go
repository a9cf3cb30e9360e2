package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/config"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/pkibridge"
)

// sealedConfig writes a dev config on a real Redis with the given KEK
// files (current first).
func sealedConfig(t *testing.T, addr, prefix string, keks ...string) string {
	t.Helper()
	prev := ""
	if len(keks) > 1 {
		prev = "\n  previous_kek_files: [" + strings.Join(keks[1:], ", ") + "]"
	}
	return writeConfig(t, `issuer: http://127.0.0.1:8080
dev: true
store:
  type: redis
  redis:
    addrs: ["`+addr+`"]
    prefix: "`+prefix+`"
secrets:
  kek_file: `+keks[0]+prev+`
pki:
  revocation:
    mode: "off"
`)
}

// openAccounts opens the account store a config names, as the server
// would.
func openAccounts(t *testing.T, cfgPath string) (*account.Store, store.KV) {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := cfg.OpenStore(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	ring, err := cfg.RequireKEK(true)
	if err != nil {
		t.Fatal(err)
	}
	s, err := account.New(kv, account.Options{KEK: ring})
	if err != nil {
		t.Fatal(err)
	}
	return s, kv
}

type kekOut struct {
	Current   string         `json:"current_kek"`
	KEKs      []string       `json:"configured_keks"`
	ByKEK     map[string]int `json:"by_kek"`
	Rewrapped int            `json:"rewrapped"`
	Remaining int            `json:"remaining"`
}

func runKEK(t *testing.T, args ...string) (int, kekOut, string) {
	t.Helper()
	code, out, errs := runKeys(t, args...)
	var r kekOut
	if code != exitUsage {
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v: %q %s", err, out, errs)
		}
	}
	return code, r, errs
}

// The rotation procedure of the operator guide against a real Redis:
// accounts and signing keys under KEK 1; every node moves to KEK 2 with
// KEK 1 as previous; `kek rotate` re-wraps everything; KEK 1 can then go,
// and a node that only has KEK 1 reads nothing.
func TestKEKRotation(t *testing.T) {
	addr := storetest.StartRedis(t)
	dir := t.TempDir()
	kek1, _ := opensslRand(t, dir, "kek1.key")
	kek2, _ := opensslRand(t, dir, "kek2.key")
	onlyOld := sealedConfig(t, addr, "rot:", kek1)
	rotating := sealedConfig(t, addr, "rot:", kek2, kek1)
	onlyNew := sealedConfig(t, addr, "rot:", kek2)

	ctx := context.Background()
	old, _ := openAccounts(t, onlyOld)
	for i := range 3 {
		if err := old.Put(ctx, &account.Account{ID: fmt.Sprintf("acct-%d", i), Facts: &pkibridge.Attributes{Name: "山田\u3000太郎"}}); err != nil {
			t.Fatal(err)
		}
	}
	// The link key is made on first use.
	if _, err := old.LinkedTo(ctx, mustCert(t)); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runKeys(t, "keys", "rotate", "--config", onlyOld, "--dev", "--json"); code != 0 {
		t.Fatalf("keys rotate: %d %s %s", code, out, errs)
	}

	code, st, errs := runKEK(t, "kek", "status", "--config", onlyOld, "--dev", "--json")
	const wrapped = 3 + 1 + 4 // accounts, link key, signing keys
	if code != 0 || st.ByKEK[st.Current] != wrapped || st.Remaining != 0 || len(st.KEKs) != 1 {
		t.Fatalf("status under KEK 1: %d %+v %s", code, st, errs)
	}
	id1 := st.Current

	code, st, errs = runKEK(t, "kek", "status", "--config", rotating, "--dev", "--json")
	if code != 0 || st.Current == id1 || st.ByKEK[id1] != wrapped || st.Remaining != wrapped || st.Rewrapped != 0 || len(st.KEKs) != 2 {
		t.Fatalf("status during the rotation: %d %+v %s", code, st, errs)
	}
	code, st, errs = runKEK(t, "kek", "rotate", "--config", rotating, "--dev", "--json")
	if code != 0 || st.ByKEK[id1] != wrapped || st.Rewrapped != wrapped || st.Remaining != 0 {
		t.Fatalf("rotate: %d %+v %s", code, st, errs)
	}
	code, st, errs = runKEK(t, "kek", "status", "--config", onlyNew, "--dev", "--json")
	if code != 0 || st.ByKEK[st.Current] != wrapped || len(st.ByKEK) != 1 || st.Remaining != 0 {
		t.Fatalf("status under KEK 2 alone: %d %+v %s", code, st, errs)
	}
	newAccounts, _ := openAccounts(t, onlyNew)
	if a, err := newAccounts.Get(ctx, "acct-1"); err != nil || a.Facts.Name != "山田\u3000太郎" {
		t.Fatalf("account under the new KEK: %v", err)
	}
	if code, out, errs := runKeys(t, "keys", "list", "--config", onlyNew, "--dev", "--json"); code != 0 || strings.Count(out, `"kid"`) != 4 {
		t.Fatalf("keys under the new KEK: %d %s %s", code, out, errs)
	}
	// The table form names the roles.
	if code, out, _ := runKeys(t, "kek", "status", "--config", rotating, "--dev"); code != 0 || !strings.Contains(out, "current") ||
		!strings.Contains(out, "previous") || !strings.Contains(out, "remaining under other KEKs: 0") {
		t.Fatalf("table: %d\n%s", code, out)
	}

	// A node left with the old KEK alone reads nothing, and says why.
	if _, err := old.Get(ctx, "acct-1"); err == nil {
		t.Fatal("the old KEK still opens a re-wrapped account")
	}
	code, _, errs = runKEK(t, "kek", "status", "--config", onlyOld, "--dev", "--json")
	if code != exitUsage || !strings.Contains(errs, "not configured") {
		t.Fatalf("status with the old KEK alone: %d %s", code, errs)
	}
}

func TestKEKCommandErrors(t *testing.T) {
	addr := storetest.StartRedis(t)
	kek, _ := opensslRand(t, t.TempDir(), "kek.key")
	memory := writeConfig(t, "issuer: http://127.0.0.1:8080\ndev: true\nstore:\n  type: memory\npki:\n  revocation:\n    mode: \"off\"\n")
	same := sealedConfig(t, addr, "x:", kek, kek)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no config", []string{"kek", "rotate"}, "--config"},
		{"memory store", []string{"kek", "status", "--config", memory, "--dev"}, "memory"},
		{"previous is current", []string{"kek", "rotate", "--config", same, "--dev"}, "secrets.previous_kek_files[0]: is the same key as secrets.kek_file"},
		{"unknown subcommand", []string{"kek", "shred"}, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runKeys(t, tc.args...)
			if code != exitUsage || !strings.Contains(errs+out, tc.want) {
				t.Fatalf("status %d, stdout %q, stderr %q; want %q", code, out, errs, tc.want)
			}
		})
	}
}
