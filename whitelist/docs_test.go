package whitelist_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/whitelist"
)

// shBlocks returns the ```sh blocks of a Markdown file.
func shBlocks(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?ms)^```sh\n(.*?)^```\\s*$")
	var out []string
	for _, m := range re.FindAllSubmatch(b, -1) {
		out = append(out, string(m[1]))
	}
	return out
}

// TestIntegratorDocExamples runs every sh block of docs/integrators.md,
// in order and in one directory, against a registration endpoint with a
// known initial access token: each must exit 0 and print JSON, and
// together they must leave the registry as the guide says.
func TestIntegratorDocExamples(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			if storetest.RequireEnv("WATASHI_REQUIRE_CURL") {
				t.Fatalf("%s not found and WATASHI_REQUIRE_CURL is set", tool)
			}
			t.Skipf("%s not installed (set WATASHI_REQUIRE_CURL=1 to make this fatal)", tool)
		}
	}
	blocks := shBlocks(t, filepath.Join("..", "docs", "integrators.md"))
	if len(blocks) < 5 {
		t.Fatalf("found %d sh blocks", len(blocks))
	}
	e := newEnv(t, whitelist.Backend{})
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	os.Mkdir(work, 0o700)
	env := append(os.Environ(), "WATASHI="+e.srv.URL, "IAT="+e.standard, "CURL_CA_BUNDLE="+ca)
	for i, block := range blocks {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", block)
		cmd.Dir, cmd.Env = work, env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		if err != nil {
			t.Fatalf("block %d failed: %v\n%s\nstdout: %s\nstderr: %s", i+1, err, block, stdout.String(), stderr.String())
		}
		dec := json.NewDecoder(&stdout)
		n := 0
		for {
			var v any
			if err := dec.Decode(&v); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("block %d printed something that is not JSON: %v\n%s", i+1, err, stdout.String())
			}
			if m, ok := v.(map[string]any); ok && m["error"] != nil {
				t.Fatalf("block %d printed an error: %v", i+1, m)
			}
			n++
		}
		if n == 0 {
			t.Fatalf("block %d printed no JSON", i+1)
		}
	}

	// The guide's story, checked on the registry itself.
	list, err := e.r.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]*whitelist.Client{}
	for _, c := range list {
		names[c.ClientName] = c
	}
	shop, wallet := names["Example Shop"], names["Example Wallet"]
	if shop == nil || shop.Status != whitelist.StatusPending || shop.TokenEndpointAuthMethod != whitelist.AuthPrivateKeyJWT {
		t.Fatalf("the web example did not register as described: %+v", shop)
	}
	if wallet == nil || wallet.ApplicationType != whitelist.AppNative || !strings.HasPrefix(wallet.Sector, "client:") {
		t.Fatalf("the native example did not register as described: %+v", wallet)
	}
	var reg struct {
		ClientID string `json:"client_id"`
	}
	b, _ := os.ReadFile(filepath.Join(work, "registration.json"))
	if err := json.Unmarshal(b, &reg); err != nil || reg.ClientID == "" {
		t.Fatalf("registration.json: %v", err)
	}
	h, err := e.r.History(context.Background(), reg.ClientID)
	if err != nil || len(h) != 3 || h[1].Action != whitelist.ActionUpdate || h[2].Action != whitelist.ActionDelete {
		t.Fatalf("the clinic example's history: %+v %v", h, err)
	}
}
