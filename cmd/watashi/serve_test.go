package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/watashi-id/watashi/pkibridge/jpkisim"

	"github.com/watashi-id/watashi/idp/store/storetest"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func opensslRand(t *testing.T, dir, name string) (path, value string) {
	t.Helper()
	jpkisim.RequireOpenSSL(t)
	out, err := exec.Command("openssl", "rand", "-hex", "32").Output()
	if err != nil {
		t.Fatalf("openssl rand: %v", err)
	}
	return writeFile(t, dir, name, out), strings.TrimSpace(string(out))
}

func TestServeRefusesInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "bad.yaml", []byte(`
issuer: http://id.example.jp
store: {type: memory}
pki: {revocation: {mode: "off"}}
cors_allowed_origins: ["*"]
log: {level: loud}
`))
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"every problem at once", []string{"serve", "--config", cfg}, []string{
			"invalid configuration", "issuer: must be https outside --dev", "store.type: memory", "secrets.pairwise_key: required",
			"secrets.token_key: required", "secrets.cookie_key: required", "secrets.kek_file: required", "pki.revocation.mode: off", "cors_allowed_origins[0]", "log.level",
		}},
		{"dev still checks what dev cannot fix", []string{"serve", "--config", cfg, "--dev"}, []string{"log.level"}},
		{"no config flag", []string{"serve"}, []string{"--config is required"}},
		{"missing file", []string{"serve", "--config", filepath.Join(dir, "none.yaml")}, []string{"no such file"}},
		{"unknown field", []string{"serve", "--config", writeFile(t, dir, "typo.yaml", []byte("isuer: https://x.example\n"))}, []string{"field isuer not found"}},
		{"argument", []string{"serve", "--config", cfg, "extra"}, []string{"unknown command"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb strings.Builder
			if code := run(tt.args, &out, &errb); code != exitUsage {
				t.Fatalf("exit %d, want %d\n%s", code, exitUsage, errb.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errb.String())
				}
			}
			if out.Len() != 0 {
				t.Errorf("stdout: %q", out.String())
			}
		})
	}
	// One problem per line, so that an operator can grep them.
	var errb strings.Builder
	run([]string{"serve", "--config", cfg}, io.Discard, &errb)
	if n := strings.Count(errb.String(), "\n  "); n != 9 {
		t.Fatalf("%d problem lines, want 9:\n%s", n, errb.String())
	}
}

// TestServeProductionWithRedis runs `serve` without --dev on a real
// redis-server, as production does (TLS is the reverse proxy's job).
func TestServeProductionWithRedis(t *testing.T) {
	redisAddr := storetest.StartRedis(t)
	dir := t.TempDir()
	_, pairwise := opensslRand(t, dir, "pairwise.key")
	_, token := opensslRand(t, dir, "token.key")
	_, cookie := opensslRand(t, dir, "cookie.key")
	_, kek := opensslRand(t, dir, "kek.key")
	writeFile(t, dir, "rp.secret", []byte("a-client-secret-of-some-length\n"))
	cfg := writeFile(t, dir, "watashi.yaml", []byte(`
issuer: https://id.example.test
listen: 127.0.0.1:0
telemetry_listen: 127.0.0.1:0
store:
  type: redis
  redis: {addrs: [`+redisAddr+`], prefix: "servetest:"}
secrets:
  pairwise_key_file: pairwise.key
  token_key_file: token.key
  cookie_key_file: cookie.key
  kek_file: kek.key
pki:
  revocation:
    mode: require
    ocsp: [http://127.0.0.1:1/ocsp]
clients:
  - client_id: rp
    display_name: Example RP
    token_endpoint_auth_method: client_secret_basic
    client_secret_file: rp.secret
    redirect_uris: [https://rp.example.test/cb]
    scopes: [name]
`))
	var logs lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type addrs struct{ pub, tel net.Addr }
	ready := make(chan addrs, 1)
	result := make(chan error, 1)
	go func() {
		result <- serve(ctx, serveParams{config: cfg, stderr: &logs, ready: func(p, t net.Addr) { ready <- addrs{p, t} }})
	}()
	var a addrs
	select {
	case a = <-ready:
	case err := <-result:
		t.Fatalf("serve ended before listening: %v\n%s", err, logs.String())
	}
	get := func(addr net.Addr, path string) (int, string, http.Header) {
		t.Helper()
		res, err := http.Get("http://" + addr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b), res.Header
	}
	code, body, hdr := get(a.pub, "/.well-known/openid-configuration")
	var disc struct {
		Issuer string `json:"issuer"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &disc) != nil || disc.Issuer != "https://id.example.test" {
		t.Fatalf("discovery: %d %s", code, body)
	}
	if hdr.Get("Strict-Transport-Security") == "" || hdr.Get("X-Request-ID") == "" {
		t.Fatalf("production headers missing: %v", hdr)
	}
	if code, body, _ := get(a.tel, "/readyz"); code != 200 || !strings.Contains(body, "store: ok") {
		t.Fatalf("readyz: %d %s", code, body)
	}
	if code, body, _ := get(a.tel, "/metrics"); code != 200 || !strings.Contains(body, `watashi_http_requests_total{code="200",route="discovery"} 1`) || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics: %d\n%s", code, body)
	}
	if code, _, _ := get(a.pub, "/metrics"); code == 200 {
		t.Fatal("metrics served on the public listener")
	}
	if code, _, _ := get(a.pub, "/readyz"); code == 200 {
		t.Fatal("readiness served on the public listener")
	}
	cancel()
	if err := <-result; err != nil {
		t.Fatalf("serve: %v", err)
	}

	out := logs.String()
	var sawAccess, sawStop bool
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		switch m["msg"] {
		case "http request":
			sawAccess = sawAccess || (m["request_id"] != nil && m["route"] == "discovery")
		case "stopped":
			sawStop = true
		}
	}
	if !sawAccess || !sawStop {
		t.Fatalf("access log with request_id: %v, clean stop: %v\n%s", sawAccess, sawStop, out)
	}
	for _, secret := range []string{pairwise, token, cookie, kek, "a-client-secret"} {
		if strings.Contains(out, secret) {
			t.Fatalf("logs contain a secret")
		}
	}
}

func TestServeDevConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "dev.yaml", []byte(`
issuer: http://127.0.0.1:8080
dev: true
listen: 127.0.0.1:0
telemetry_listen: 127.0.0.1:0
pki: {revocation: {mode: "off"}}
log: {format: text}
`))
	// Without --dev the file is refused.
	var errb strings.Builder
	if code := run([]string{"serve", "--config", cfg}, io.Discard, &errb); code != exitUsage || !strings.Contains(errb.String(), "dev: true requires the --dev flag") {
		t.Fatalf("dev config without --dev: %d\n%s", code, errb.String())
	}
	var logs lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	result := make(chan error, 1)
	go func() {
		result <- serve(ctx, serveParams{config: cfg, dev: true, stderr: &logs, ready: func(_, tel net.Addr) { ready <- tel }})
	}()
	select {
	case tel := <-ready:
		res, err := http.Get("http://" + tel.String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("healthz %d", res.StatusCode)
		}
	case err := <-result:
		t.Fatalf("serve --dev: %v\n%s", err, logs.String())
	}
	cancel()
	if err := <-result; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"running with --dev") {
		t.Fatalf("text logs without the dev warning:\n%s", logs.String())
	}
}
