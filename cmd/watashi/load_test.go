package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/watashi-id/watashi/cmd/watashi/loadtool"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestLoadAgainstServe: `watashi load setup` writes a configuration that
// `watashi serve` accepts on a real Redis, and `watashi load run` drives
// every phase against it with each client authentication, reporting
// figures from the provider's metrics and Redis INFO.
func TestLoadAgainstServe(t *testing.T) {
	redisAddr := storetest.StartRedis(t)
	dir := filepath.Join(t.TempDir(), "load")
	listen, telemetry := freeAddr(t), freeAddr(t)
	var out, errOut bytes.Buffer
	if code := run([]string{"load", "setup", "--dir", dir, "--listen", listen, "--telemetry", telemetry, "--redis", redisAddr}, &out, &errOut); code != exitOK {
		t.Fatalf("setup: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	// A second setup would replace the CAs a provider trusts: refused.
	if code := run([]string{"load", "setup", "--dir", dir, "--listen", listen, "--telemetry", telemetry}, &out, &errOut); code != exitUsage {
		t.Fatalf("setup over an existing directory: exit %d, want %d", code, exitUsage)
	}

	var logs lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		result <- serve(ctx, serveParams{config: filepath.Join(dir, loadtool.ConfigFile), dev: true, stderr: &logs,
			ready: func(net.Addr, net.Addr) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-result:
		t.Fatalf("serve refused the setup's configuration: %v\n%s", err, logs.String())
	}

	for _, auth := range []string{loadtool.AuthSecretBasic, loadtool.AuthPrivateKeyJWT} {
		t.Run(auth, func(t *testing.T) {
			report := filepath.Join(t.TempDir(), "report.json")
			out.Reset()
			errOut.Reset()
			args := []string{"load", "run", "--dir", dir, "--concurrency", "2", "--duration", "700ms", "--auth", auth, "--json", report}
			if auth == loadtool.AuthPrivateKeyJWT {
				args = append(args, "--residents", "3") // the default, 64 per worker, runs with the other
			}
			code := run(args, &out, &errOut)
			if code != exitOK {
				t.Fatalf("run: exit %d\n%s%s\n%s", code, out.String(), errOut.String(), logs.String())
			}
			if !strings.Contains(out.String(), "store RTs/op") {
				t.Errorf("no table on standard output:\n%s", out.String())
			}
			b, err := os.ReadFile(report)
			if err != nil {
				t.Fatal(err)
			}
			var rep loadtool.Report
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Phases) != 4 {
				t.Fatalf("%d phases, want 4: %s", len(rep.Phases), b)
			}
			for _, p := range rep.Phases {
				if p.Done == 0 || len(p.Errors) != 0 || p.Auth != auth {
					t.Errorf("phase %s: %d done, errors %v, auth %s", p.Phase, p.Done, p.Errors, p.Auth)
				}
				if p.ServerCPUms == nil || *p.ServerCPUms <= 0 || p.StoreOps == nil || *p.StoreOps < 1 || p.BgOps == nil ||
					p.RedisCmds == nil || *p.RedisCmds < 1 || p.RedisCPUms == nil {
					t.Errorf("phase %s: figures missing: %s", p.Phase, b)
				}
				if p.P50ms <= 0 || p.P99ms < p.P50ms {
					t.Errorf("phase %s: percentiles p50 %v p99 %v", p.Phase, p.P50ms, p.P99ms)
				}
			}
			if login := rep.Phases[0]; login.Phase != loadtool.PhaseLogin || login.RedisBytes == nil {
				t.Errorf("the login phase reports no bytes retained: %+v", login)
			}
		})
	}
}

// Bad options are refused before any load is sent.
func TestLoadRunRefuses(t *testing.T) {
	dir := t.TempDir()
	if code := run([]string{"load", "setup", "--dir", dir, "--listen", freeAddr(t), "--telemetry", freeAddr(t)}, &bytes.Buffer{}, &bytes.Buffer{}); code != exitOK {
		t.Fatalf("setup: exit %d", code)
	}
	for name, args := range map[string][]string{
		"no dir":          {"load", "run"},
		"zero workers":    {"load", "run", "--dir", dir, "--concurrency", "0"},
		"too many":        {"load", "run", "--dir", dir, "--concurrency", "5000"},
		"no duration":     {"load", "run", "--dir", dir, "--duration", "0s"},
		"unknown phase":   {"load", "run", "--dir", dir, "--phases", "login,dance"},
		"unknown auth":    {"load", "run", "--dir", dir, "--auth", "client_secret_post"},
		"not a setup":     {"load", "run", "--dir", t.TempDir()},
		"nobody listens":  {"load", "run", "--dir", dir, "--duration", "1s"},
		"setup no dir":    {"load", "setup"},
		"setup bad addr":  {"load", "setup", "--dir", t.TempDir(), "--listen", "nowhere"},
		"unknown command": {"load", "explode"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != exitUsage {
			t.Errorf("%s: exit %d, want %d\n%s", name, code, exitUsage, errOut.String())
		}
	}
}
