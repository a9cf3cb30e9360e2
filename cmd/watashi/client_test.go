package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/whitelist"
	"github.com/watashi-id/watashi/whitelist/whitelisttest"
)

func clientConfig(t *testing.T, addr, prefix string) string {
	return writeConfig(t, `issuer: http://127.0.0.1:8080
dev: true
store:
  type: redis
  redis:
    addrs: ["`+addr+`"]
    prefix: "`+prefix+`"
pki:
  revocation:
    mode: "off"
`)
}

// runJSON runs a command that must succeed and decodes its JSON.
func runJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	code, out, errs := runKeys(t, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d\n%s\n%s", args, code, out, errs)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v: not JSON: %q", args, out)
	}
	return v
}

// The operator's whole day against a real Redis, with a "server" node
// (a registry with Run, as the provider will hold one) watching the
// same store: what the CLI does takes effect there.
func TestClientCommands(t *testing.T) {
	addr := storetest.StartRedis(t)
	cfg := clientConfig(t, addr, "cli:")
	base := []string{"--config", cfg, "--dev"}
	cmdArgs := func(a ...string) []string { return append(append([]string{"client"}, a...), base...) }

	kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: "cli:"})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	server, err := whitelist.New(whitelist.Options{Backend: whitelist.KVBackend(kv, store.ErrNotFound), Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); server.Run(ctx) }()
	defer func() { cancel(); <-done }()

	out := runJSON(t, cmdArgs("add", "--json", "--tier", "basic", "--name", "Example RP", "--org", "Example KK",
		"--redirect-uri", "https://rp.example/cb", "--auth-method", "client_secret_basic", "--actor", "alice", "--reason", "ticket 1")...)
	cl := out["client"].(map[string]any)
	id := cl["client_id"].(string)
	secret, _ := out["client_secret"].(string)
	if cl["status"] != "pending" || secret == "" || out["registration_access_token"] == "" || cl["secret_hash"] != nil {
		t.Fatalf("add: %v", out)
	}
	if _, err := server.Authorize(context.Background(), id); !errors.Is(err, whitelist.ErrPending) {
		t.Fatalf("server sees %v", err)
	}

	// Table output by default.
	code, table, _ := runKeys(t, cmdArgs("list")...)
	if code != 0 || !strings.HasPrefix(table, "CLIENT_ID") || !strings.Contains(table, id) || !strings.Contains(table, "pending") {
		t.Fatalf("list table: %d %q", code, table)
	}
	code, table, _ = runKeys(t, cmdArgs("show", id)...)
	if code != 0 || !strings.Contains(table, "Example KK") || !strings.Contains(table, "openid name") {
		t.Fatalf("show table: %q", table)
	}

	// An invalid transition is refused (1) and changes nothing.
	code, _, errs := runKeys(t, cmdArgs("suspend", id, "--reason", "x")...)
	if code != 1 || !strings.Contains(errs, "cannot suspend") {
		t.Fatalf("suspend pending: %d %q", code, errs)
	}
	runJSON(t, cmdArgs("approve", id, "--json", "--actor", "alice", "--reason", "contract signed")...)
	whitelisttest.WaitLive(t, server, id)
	c, err := server.Authorize(context.Background(), id)
	if err != nil || !c.VerifySecret(secret) {
		t.Fatalf("approved client: %v", err)
	}

	// A suspension from the CLI reaches the running server within a second.
	t.Setenv("USER", "carol")
	out = runJSON(t, cmdArgs("suspend", id, "--json", "--reason", "incident 42")...)
	if out["client"].(map[string]any)["status"] != "suspended" {
		t.Fatalf("suspend: %v", out)
	}
	start := time.Now()
	for {
		_, err := server.Authorize(context.Background(), id)
		if errors.Is(err, whitelist.ErrSuspended) {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("the server still authorises the client: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	runJSON(t, cmdArgs("resume", id, "--json", "--reason", "closed")...)

	out = runJSON(t, cmdArgs("rotate-secret", id, "--json")...)
	s2 := out["client_secret"].(string)
	if s2 == "" || s2 == secret {
		t.Fatalf("rotate: %v", out)
	}

	out = runJSON(t, cmdArgs("history", id, "--json")...)
	hist := out["history"].([]any)
	var actions, actors, reasons []string
	for _, h := range hist {
		m := h.(map[string]any)
		actions = append(actions, m["action"].(string))
		actors = append(actors, m["actor"].(string))
		r, _ := m["reason"].(string)
		reasons = append(reasons, r)
	}
	if strings.Join(actions, ",") != "register,approve,suspend,resume,rotate-secret" ||
		actors[0] != "alice" || actors[2] != "carol" || reasons[1] != "contract signed" || reasons[2] != "incident 42" {
		t.Fatalf("history: %v %v %v", actions, actors, reasons)
	}
	code, table, _ = runKeys(t, cmdArgs("history", id)...)
	if code != 0 || !strings.HasPrefix(table, "TIME") || !strings.Contains(table, "incident 42") {
		t.Fatalf("history table: %q", table)
	}

	runJSON(t, cmdArgs("revoke", id, "--json", "--reason", "contract ended")...)
	if code, _, _ := runKeys(t, cmdArgs("resume", id)...); code != 1 {
		t.Fatalf("resume revoked: %d", code)
	}
	out = runJSON(t, cmdArgs("list", "--json", "--status", "revoked")...)
	if n := len(out["clients"].([]any)); n != 1 {
		t.Fatalf("revoked list has %d", n)
	}
	runJSON(t, cmdArgs("delete", id, "--json")...)
	if code, _, _ := runKeys(t, cmdArgs("show", id)...); code != 1 {
		t.Fatalf("show deleted: %d", code)
	}
	if _, err := server.Authorize(context.Background(), id); !errors.Is(err, whitelist.ErrUnknownClient) {
		t.Fatalf("server after delete: %v", err)
	}
	// The history outlives the client.
	out = runJSON(t, cmdArgs("history", id, "--json")...)
	if n := len(out["history"].([]any)); n != 7 {
		t.Fatalf("history after delete has %d entries", n)
	}

	// A metadata file, approved at once, with a private_key_jwt key set.
	meta := filepath.Join(t.TempDir(), "rp.json")
	mb, _ := json.Marshal(map[string]any{"client_name": "File RP", "organization_name": "File KK",
		"redirect_uris": []string{"https://file.example/cb"}, "token_endpoint_auth_method": "private_key_jwt",
		"jwks": json.RawMessage(whitelisttest.JWKS(t))})
	os.WriteFile(meta, mb, 0o600)
	out = runJSON(t, cmdArgs("add", "--json", "--tier", "standard", "--metadata", meta, "--approve", "--id", "file-rp")...)
	if out["client"].(map[string]any)["status"] != "approved" || out["client_secret"] != nil {
		t.Fatalf("add from file: %v", out)
	}
	if code, _, errs := runKeys(t, cmdArgs("rotate-secret", "file-rp")...); code != 1 || !strings.Contains(errs, "client_secret_basic") {
		t.Fatalf("rotate on private_key_jwt: %d %s", code, errs)
	}

	// Initial access tokens.
	out = runJSON(t, cmdArgs("token", "issue", "--json", "--tier", "standard", "--ttl", "48h", "--one-time", "--note", "Example Shop")...)
	tok := out["initial_access_token"].(string)
	tokID := out["token"].(map[string]any)["id"].(string)
	if !strings.HasPrefix(tok, tokID+".") {
		t.Fatalf("token %q id %q", tok, tokID)
	}
	code, table, _ = runKeys(t, cmdArgs("token", "list")...)
	if code != 0 || !strings.Contains(table, tokID) || !strings.Contains(table, "active") || strings.Contains(table, tok) {
		t.Fatalf("token list: %q", table)
	}
	runJSON(t, cmdArgs("token", "revoke", tokID, "--json")...)
	out = runJSON(t, cmdArgs("token", "list", "--json")...)
	if st := out["tokens"].([]any)[0].(map[string]any)["state"]; st != "revoked" {
		t.Fatalf("token state %v", st)
	}
	if code, _, _ := runKeys(t, cmdArgs("token", "revoke", tokID)...); code != 1 {
		t.Fatalf("revoke twice: %d", code)
	}
}

func TestClientCommandErrors(t *testing.T) {
	addr := storetest.StartRedis(t)
	cfg := clientConfig(t, addr, "clierr:")
	memCfg := writeConfig(t, "issuer: http://127.0.0.1:8080\ndev: true\nstore:\n  type: memory\npki:\n  revocation:\n    mode: \"off\"\n")
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"client_name":"x","organization_name":"y","redirect_uris":["https://a.example/cb#frag"]}`), 0o600)
	cases := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"no config", []string{"client", "list"}, 2, "--config"},
		{"memory store", []string{"client", "list", "--config", memCfg, "--dev"}, 2, "memory"},
		{"unknown client", []string{"client", "show", "nobody", "--config", cfg, "--dev"}, 1, "unknown client"},
		{"no ID", []string{"client", "approve", "--config", cfg, "--dev"}, 2, "exactly one"},
		{"unknown subcommand", []string{"client", "frobnicate"}, 2, "unknown command"},
		{"add without tier", []string{"client", "add", "--config", cfg, "--dev", "--name", "x"}, 2, "--tier"},
		{"add without metadata", []string{"client", "add", "--config", cfg, "--dev", "--tier", "basic"}, 2, "--metadata"},
		{"add mixing file and flags", []string{"client", "add", "--config", cfg, "--dev", "--tier", "basic", "--metadata", bad, "--name", "x"}, 2, "cannot be combined"},
		{"add invalid metadata", []string{"client", "add", "--config", cfg, "--dev", "--tier", "basic", "--metadata", bad}, 1, "fragment"},
		{"add unknown tier", []string{"client", "add", "--config", cfg, "--dev", "--tier", "gold", "--name", "x", "--org", "y", "--redirect-uri", "https://a.example/cb"}, 2, "not configured"},
		{"token without tier", []string{"client", "token", "issue", "--config", cfg, "--dev"}, 2, "--tier"},
		{"token too long", []string{"client", "token", "issue", "--config", cfg, "--dev", "--tier", "basic", "--ttl", "100000h"}, 2, "lifetime"},
		{"bad status filter", []string{"client", "list", "--config", cfg, "--dev", "--status", "happy"}, 2, "--status"},
		{"revoke unknown token", []string{"client", "token", "revoke", "iat_0000000000000000", "--config", cfg, "--dev"}, 1, "unknown"},
		{"actor with control chars", []string{"client", "approve", "x12", "--config", cfg, "--dev", "--actor", "a\x07b"}, 2, "actor"},
	}
	for _, tc := range cases {
		code, out, errs := runKeys(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.says) {
			t.Errorf("%s: exit %d (want %d), stderr %q, stdout %q", tc.name, code, tc.code, errs, out)
		}
	}
	out := runJSON(t, "client", "list", "--config", cfg, "--dev", "--json")
	if n := len(out["clients"].([]any)); n != 0 {
		t.Fatalf("refused commands created %d clients", n)
	}
}

func TestClientAdminToken(t *testing.T) {
	out := runJSON(t, "client", "admin-token", "--json")
	tok, hash := out["token"].(string), out["hash"].(string)
	r, err := whitelist.New(whitelist.Options{Backend: whitelist.KVBackend(store.NewMemory(), store.ErrNotFound)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AdminHandler(whitelist.AdminOptions{TokenHash: hash}); err != nil || tok == "" || strings.Contains(hash, tok) {
		t.Fatalf("admin-token output unusable: %v", err)
	}
}
