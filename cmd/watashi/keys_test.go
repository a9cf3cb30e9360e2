package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/watashi-id/watashi/idp/store/storetest"
)

type keysOut struct {
	Rotated *bool `json:"rotated"`
	Keys    []struct {
		KID   string `json:"kid"`
		Alg   string `json:"alg"`
		State string `json:"state"`
	} `json:"keys"`
}

func runKeys(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "watashi.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// `watashi keys` against a real Redis: an empty store gets keys on the
// first rotation, and each rotation moves the ring one step.
func TestKeysCommand(t *testing.T) {
	addr := storetest.StartRedis(t)
	kek, _ := opensslRand(t, t.TempDir(), "kek.key")
	cfg := writeConfig(t, `issuer: http://127.0.0.1:8080
dev: true
store:
  type: redis
  redis:
    addrs: ["`+addr+`"]
    prefix: "keys-cli:"
secrets:
  kek_file: `+kek+`
pki:
  revocation:
    mode: "off"
`)
	code, out, errs := runKeys(t, "keys", "list", "--config", cfg, "--dev", "--json")
	if code != 0 {
		t.Fatalf("list: %d %s %s", code, out, errs)
	}
	var empty keysOut
	if err := json.Unmarshal([]byte(out), &empty); err != nil || len(empty.Keys) != 0 {
		t.Fatalf("empty store lists %q", out)
	}

	var seen []string
	for round := 1; round <= 3; round++ {
		code, out, errs = runKeys(t, "keys", "rotate", "--config", cfg, "--dev", "--json")
		if code != 0 {
			t.Fatalf("rotate: %d %s %s", code, out, errs)
		}
		var r keysOut
		if err := json.Unmarshal([]byte(out), &r); err != nil || r.Rotated == nil || !*r.Rotated {
			t.Fatalf("rotate output %q", out)
		}
		states := map[string]int{}
		current := ""
		for _, k := range r.Keys {
			states[k.Alg+"/"+k.State]++
			if k.Alg == "ES256" && k.State == "current" {
				current = k.KID
			}
		}
		// Round 1 starts from nothing: current and next only.
		want := 3
		if round == 1 {
			want = 2
		}
		if len(r.Keys) != 2*want || states["ES256/current"] != 1 || states["RS256/next"] != 1 {
			t.Fatalf("round %d: %v", round, states)
		}
		for _, s := range seen {
			if s == current {
				t.Fatalf("round %d: current key reused", round)
			}
		}
		seen = append(seen, current)
		if strings.Contains(out, "private") || strings.Contains(out, "pkcs8") {
			t.Fatal("private material printed")
		}
	}
	code, out, _ = runKeys(t, "keys", "list", "--config", cfg, "--dev")
	if code != 0 || !strings.Contains(out, "ALG") || strings.Count(out, "\n") != 7 {
		t.Fatalf("table: %d\n%s", code, out)
	}
}

func TestKeysCommandErrors(t *testing.T) {
	memory := writeConfig(t, "issuer: http://127.0.0.1:8080\ndev: true\nstore:\n  type: memory\npki:\n  revocation:\n    mode: \"off\"\n")
	unreachable := writeConfig(t, "issuer: http://127.0.0.1:8080\ndev: true\nstore:\n  type: redis\n  redis:\n    addrs: [\"127.0.0.1:1\"]\n    timeout: 200ms\npki:\n  revocation:\n    mode: \"off\"\n")
	noKEK := writeConfig(t, "issuer: http://127.0.0.1:8080\ndev: true\nstore:\n  type: redis\n  redis:\n    addrs: [\""+storetest.StartRedis(t)+"\"]\npki:\n  revocation:\n    mode: \"off\"\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no config", []string{"keys", "list"}, "--config"},
		{"missing file", []string{"keys", "rotate", "--config", "/nonexistent/watashi.yaml"}, "watashi.yaml"},
		{"dev config without --dev", []string{"keys", "list", "--config", memory}, "--dev"},
		{"memory store", []string{"keys", "rotate", "--config", memory, "--dev"}, "memory"},
		{"unreachable store", []string{"keys", "list", "--config", unreachable, "--dev"}, "unreachable"},
		{"no KEK", []string{"keys", "list", "--config", noKEK, "--dev"}, "secrets.kek_file: required"},
		{"unknown subcommand", []string{"keys", "shred"}, "unknown command"},
		{"extra argument", []string{"keys", "list", "x", "--config", memory}, "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runKeys(t, tc.args...)
			if code != exitUsage || !strings.Contains(errs+out, tc.want) {
				t.Fatalf("status %d, stdout %q, stderr %q; want %q", code, out, errs, tc.want)
			}
		})
	}
}
