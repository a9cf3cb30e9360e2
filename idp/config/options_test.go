package config

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/pkibridge"
)

// TestOpenStore: the store-only commands get the store rules and nothing
// else: a config without secrets or PKI files still opens its store, and a
// store the production rules refuse is not opened.
func TestOpenStore(t *testing.T) {
	const noSecrets = "issuer: https://id.example.jp\npki:\n  revocation:\n    mode: \"off\"\n"
	tests := []struct {
		name, yaml string
		dev        bool
		err        string // prefix of the error; "" opens a memory store
	}{
		{"memory under --dev", noSecrets, true, ""},
		{"dev file under --dev", noSecrets + "dev: true\n", true, ""},
		{"memory outside --dev", noSecrets, false, "store.type: memory"},
		{"dev file without --dev", noSecrets + "dev: true\nstore: {type: redis, redis: {addrs: [127.0.0.1:1]}}\n", false, "dev: true requires the --dev flag"},
		{"unknown store", noSecrets + "store: {type: etcd}\n", true, "store.type: \"etcd\""},
		{"redis without addrs", noSecrets + "store: {type: redis}\n", true, "store.redis.addrs: at least one"},
		{"redis password file missing", noSecrets + "store: {type: redis, redis: {addrs: [127.0.0.1:1], password_file: nope.pass}}\n", true, "store.redis.password_file: open"},
		// Nothing listens on port 1: the Ping fails, after validation passed.
		{"redis unreachable", noSecrets + "store: {type: redis, redis: {addrs: [127.0.0.1:1], timeout: 200ms}}\n", false, "store unreachable:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig([]byte(tt.yaml), t.TempDir(), noEnv)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			kv, err := c.OpenStore(ctx, tt.dev)
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer kv.Close()
				if _, ok := kv.(*store.Memory); !ok {
					t.Fatalf("store %T", kv)
				}
				return
			}
			if err == nil {
				kv.Close()
				t.Fatalf("opened; want %q", tt.err)
			}
			if errs := joined(err); len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tt.err) {
				t.Fatalf("err %q, want one starting %q", errs, tt.err)
			}
		})
	}
}

// The wait settings reach the store: a standalone server told to wait
// for a replica it does not have fails every durable write as not
// replicated, and writes nothing that waits when told -1.
func TestOpenStoreWaits(t *testing.T) {
	addr := storetest.StartRedis(t)
	ctx := context.Background()
	open := func(t *testing.T, extra string) *store.Redis {
		t.Helper()
		c, err := parseConfig([]byte("issuer: https://id.example.jp\npki: {revocation: {mode: \"off\"}}\n"+
			"store: {type: redis, redis: {addrs: [\""+addr+"\"], prefix: \"wait:\""+extra+"}}\n"), t.TempDir(), noEnv)
		if err != nil {
			t.Fatal(err)
		}
		kv, err := c.OpenStore(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { kv.Close() })
		return kv.(*store.Redis)
	}
	if r := open(t, ""); r.WaitReplicas() != 0 {
		t.Fatalf("standalone waits for %d replicas by default", r.WaitReplicas())
	}
	r := open(t, ", wait_replicas: 1, wait_timeout: 50ms")
	if err := r.Set(ctx, "acct", []byte("x"), 0); !errors.Is(err, store.ErrNotReplicated) {
		t.Fatalf("durable write waiting for a replica that is not there = %v", err)
	}
	if err := open(t, ", wait_replicas: -1").Set(ctx, "acct", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
}

// TestNewLogger: the configured level and format, and JSON by default.
func TestNewLogger(t *testing.T) {
	tests := []struct {
		level, format string
		json          bool
		debug, warn   bool // which of a debug and a warn line appear
	}{
		{"", "", true, false, true},
		{"debug", "text", false, true, true},
		{"WARN", "json", true, false, true},
		{"error", "", true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.level+"/"+tt.format, func(t *testing.T) {
			c := &Config{Log: LogConfig{Level: tt.level, Format: tt.format}}
			var buf bytes.Buffer
			l := c.NewLogger(&buf)
			l.Debug("debug-line")
			l.Warn("warn-line")
			out := buf.String()
			if strings.Contains(out, "debug-line") != tt.debug || strings.Contains(out, "warn-line") != tt.warn {
				t.Fatalf("level %q logged %q", tt.level, out)
			}
			if tt.warn {
				first := strings.SplitN(out, "\n", 2)[0]
				if json.Valid([]byte(first)) != tt.json {
					t.Fatalf("format %q logged %q", tt.format, first)
				}
			}
		})
	}
}

// TestWhitelistAdminOff: the admin API needs the whitelist and both of
// its settings; anything less leaves it off.
func TestWhitelistAdminOff(t *testing.T) {
	for _, w := range []WhitelistConfig{
		{AdminListen: "127.0.0.1:9200", AdminTokenHashFile: "/etc/watashi/admin.hash"},
		{Enabled: true, AdminListen: "127.0.0.1:9200"},
		{Enabled: true, AdminTokenHashFile: "/etc/watashi/admin.hash"},
	} {
		c := &Config{Whitelist: w}
		if l, h := c.WhitelistAdmin(); l != "" || h != "" {
			t.Errorf("%+v: admin API on at %q with %q", w, l, h)
		}
	}
}

// TestRedisClientLogsAreJSON: go-redis writes its own messages ("failed
// to dial after 5 attempts") through a process-wide logger that defaults
// to text lines on standard error, which breaks log.format json. The
// check runs in a child process, because only there is standard error
// the real file descriptor the library writes to.
func TestRedisClientLogsAreJSON(t *testing.T) {
	if os.Getenv("WATASHI_REDIS_LOG_CHILD") == "1" {
		redisLogChild()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRedisClientLogsAreJSON$", "-test.count=1")
	cmd.Env = append(os.Environ(), "WATASHI_REDIS_LOG_CHILD=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	routed := 0
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("standard error holds a line that is not JSON: %q\nall of it:\n%s", line, stderr.String())
		}
		if m["msg"] == "redis client" && strings.Contains(fmt.Sprint(m["detail"]), "failed to dial") {
			routed++
		}
	}
	// Both the server's store (Options) and the commands' (OpenStore)
	// tried to dial; the library's complaint must have come through slog,
	// not been dropped.
	if routed < 2 {
		t.Fatalf("%d routed go-redis lines, want 2 or more:\n%s", routed, stderr.String())
	}
}

// redisLogChild opens an unreachable Redis the two ways a process does
// and uses it, with JSON logs on standard error.
func redisLogChild() {
	dir, err := os.MkdirTemp("", "watashi-redislog")
	if err != nil {
		fmt.Println("temp:", err)
		os.Exit(3)
	}
	defer os.RemoveAll(dir)
	// A Redis store needs a KEK, even under --dev.
	if err := os.WriteFile(filepath.Join(dir, "kek.key"), []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
		fmt.Println("kek:", err)
		os.Exit(3)
	}
	const yaml = "issuer: http://127.0.0.1:8080\ndev: true\npki:\n  revocation:\n    mode: \"off\"\n" +
		"store: {type: redis, redis: {addrs: [127.0.0.1:1], timeout: 5s}}\nlog: {format: json}\nsecrets: {kek_file: kek.key}\n"
	c, err := parseConfig([]byte(yaml), dir, noEnv)
	if err != nil {
		fmt.Println("parse:", err)
		os.Exit(3)
	}
	ctx := context.Background()
	if _, err := c.OpenStore(ctx, true); err == nil {
		fmt.Println("OpenStore reached a Redis on port 1")
		os.Exit(3)
	}
	o, err := c.Options(ctx, true)
	if err != nil {
		fmt.Println("options:", err)
		os.Exit(3)
	}
	defer o.Store.Close()
	if _, err := o.Store.Get(ctx, "k"); err == nil {
		fmt.Println("Get reached a Redis on port 1")
		os.Exit(3)
	}
}

// The revocation checker the configuration builds counts its failing
// sources in the provider's registry, by kind, from zero.
func TestRevocationSourceErrorsCounted(t *testing.T) {
	// Nothing listens here: every OCSP query fails at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String() + "/ocsp"
	l.Close()
	c, err := parseConfig([]byte("issuer: http://127.0.0.1:8080\ndev: true\npki:\n  revocation:\n    mode: require\n    timeout: 2s\n    ocsp: [\""+down+"\"]\n"), t.TempDir(), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.Options(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Store.Close()
	count := func(kind string) float64 {
		t.Helper()
		mfs, err := o.Gatherer.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "watashi_revocation_source_errors_total" {
				for _, m := range mf.GetMetric() {
					if m.GetLabel()[0].GetValue() == kind {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		t.Fatalf("no watashi_revocation_source_errors_total{kind=%q}", kind)
		return 0
	}
	if count("ocsp") != 0 || count("crl") != 0 {
		t.Fatal("counters do not start at zero")
	}
	chk := o.Verifier.Revocation.(*pkibridge.Checker)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(1), RawIssuer: []byte{0x30, 0}}
	issuer := &x509.Certificate{RawSubject: []byte{0x30, 0}, RawSubjectPublicKeyInfo: []byte{0x30, 0}}
	for range 2 {
		if _, err := chk.CheckRevocation(context.Background(), leaf, issuer); err == nil {
			t.Fatal("a responder that is down decided")
		}
	}
	if got := count("ocsp"); got != 2 {
		t.Fatalf("ocsp errors = %v, want 2", got)
	}
}
