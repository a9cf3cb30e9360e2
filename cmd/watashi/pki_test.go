package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/pkibridge/jpkisim"

	"github.com/spf13/cobra"

	"github.com/watashi-id/watashi/pkibridge"
)

var policyForFuzz = pkibridge.DefaultPolicy()

// ---- shared test harness (also used by catalogue_test.go) ------------------

// testRoot holds what TestMain creates lazily and removes at the end.
var testRoot string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "watashi-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testRoot = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fixture is one run of testdata/openssl/mkjpki.sh.
type fixture struct{ dir string }

func (f fixture) p(name string) string { return filepath.Join(f.dir, name) }

var (
	fixtureOnce sync.Once
	fixtureDir  string
	fixtureErr  error
)

// openssl returns the openssl binary; the tests depend on the real thing
// and fail (not skip) without it, because CI must exercise interop.
func opensslPath(tb testing.TB) string {
	tb.Helper()
	return jpkisim.RequireOpenSSL(tb)
}

// sharedFixture builds the openssl PKI once per test binary. Tests must not
// modify it; those that need to change the CA database copy it first.
func sharedFixture(tb testing.TB) fixture {
	tb.Helper()
	opensslPath(tb)
	fixtureOnce.Do(func() {
		fixtureDir = filepath.Join(testRoot, "pki")
		fixtureErr = runMkJPKI(fixtureDir)
	})
	if fixtureErr != nil {
		tb.Fatalf("mkjpki.sh: %v", fixtureErr)
	}
	return fixture{dir: fixtureDir}
}

func runMkJPKI(dir string) error {
	script, err := filepath.Abs(filepath.Join("..", "..", "testdata", "openssl", "mkjpki.sh"))
	if err != nil {
		return err
	}
	cmd := exec.Command("sh", script, dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v: %s", err, stderr.String())
	}
	return nil
}

// ossl runs openssl with args in dir and fails the test on error.
func ossl(tb testing.TB, dir string, stdin []byte, args ...string) []byte {
	tb.Helper()
	cmd := exec.Command(opensslPath(tb), args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("openssl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// cliResult is one in-process run of the command line.
type cliResult struct {
	code   int
	stdout []byte
	stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// runCLI runs watashi in-process exactly as main does.
func runCLI(tb testing.TB, args ...string) cliResult {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return cliResult{code: code, stdout: stdout.Bytes(), stderr: stderr.String()}
}

// object decodes the single JSON object the command printed.
func (r cliResult) object(tb testing.TB) map[string]any {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.stdout))
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatalf("stdout is not one JSON object: %v\n%s", err, r)
	}
	if dec.More() {
		tb.Fatalf("stdout has more than one JSON value\n%s", r)
	}
	return m
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// watashiBinary builds the real binary once, for tests of exit statuses
// as a shell sees them.
func watashiBinary(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		binPath = filepath.Join(testRoot, "watashi")
		cmd := exec.Command(goBin, "build", "-o", binPath, ".")
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binPath
}

func execCLI(tb testing.TB, args ...string) cliResult {
	tb.Helper()
	cmd := exec.Command(watashiBinary(tb), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		tb.Fatalf("exec watashi: %v", err)
	}
	return cliResult{code: code, stdout: stdout.Bytes(), stderr: stderr.String()}
}

func writeFile(tb testing.TB, dir, name string, data []byte) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func readFile(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ---- inspect -----------------------------------------------------------------

// opensslView is what openssl itself reports about a certificate, the
// reference the inspect output is compared with.
type opensslView struct {
	subject, issuer, serialHex, fingerprint string
	notBefore, notAfter                     time.Time
}

func viewWithOpenSSL(t *testing.T, cert string) opensslView {
	t.Helper()
	line := func(args ...string) string {
		out := strings.TrimSpace(string(ossl(t, "", nil, append([]string{"x509", "-in", cert, "-noout"}, args...)...)))
		_, v, ok := strings.Cut(out, "=")
		if !ok {
			t.Fatalf("openssl output %q", out)
		}
		return strings.TrimSpace(v)
	}
	parseDate := func(s string) time.Time {
		tm, err := time.Parse("Jan _2 15:04:05 2006 MST", s)
		if err != nil {
			t.Fatalf("openssl date %q: %v", s, err)
		}
		return tm
	}
	return opensslView{
		subject:     line("-subject", "-nameopt", "RFC2253"),
		issuer:      line("-issuer", "-nameopt", "RFC2253"),
		serialHex:   strings.ToLower(line("-serial")),
		fingerprint: strings.ToLower(strings.ReplaceAll(line("-fingerprint", "-sha256"), ":", "")),
		notBefore:   parseDate(line("-startdate")),
		notAfter:    parseDate(line("-enddate")),
	}
}

func TestInspectSignatureCertificate(t *testing.T) {
	fx := sharedFixture(t)
	der := writeFile(t, t.TempDir(), "sign.der", ossl(t, "", nil, "x509", "-in", fx.p("sign.pem"), "-outform", "DER"))
	want := viewWithOpenSSL(t, fx.p("sign.pem"))
	var outputs [][]byte
	for _, file := range []string{fx.p("sign.pem"), der} {
		r := runCLI(t, "pki", "inspect", file)
		if r.code != 0 {
			t.Fatalf("inspect %s: %s", filepath.Base(file), r)
		}
		outputs = append(outputs, r.stdout)
		m := r.object(t)
		if got := keysOf(m); !reflect.DeepEqual(got, []string{"attributes", "certificate"}) {
			t.Errorf("top-level keys %v", got)
		}
		c := m["certificate"].(map[string]any)
		checkCertificateJSON(t, c, want)
		if c["kind"] != "signature" {
			t.Errorf("kind %v, want signature", c["kind"])
		}
		if got := c["policy_oids"]; !reflect.DeepEqual(got, []any{"1.2.392.200149.8.5.1.1.20"}) {
			t.Errorf("policy_oids %v", got)
		}
		if got := c["key_usage"]; !reflect.DeepEqual(got, []any{"digitalSignature", "nonRepudiation"}) {
			t.Errorf("key_usage %v", got)
		}
		wantAttrs := map[string]any{
			"name":                 "山田\u3000太郎",
			"family_name":          "山田",
			"given_name":           "太郎",
			"birthdate":            "1980-12-31",
			"birthdate_era":        float64(3),
			"gender":               "male",
			"gender_code":          "1",
			"address":              "東京都千代田区霞が関二丁目一番二号",
			"name_substitution":    "00000",
			"address_substitution": "0000000000000000",
		}
		if got := m["attributes"]; !reflect.DeepEqual(got, wantAttrs) {
			t.Errorf("attributes\n got %v\nwant %v", got, wantAttrs)
		}
	}
	if !bytes.Equal(outputs[0], outputs[1]) {
		t.Errorf("PEM and DER inputs give different output:\n%s\n%s", outputs[0], outputs[1])
	}
}

func TestInspectAuthenticationCertificate(t *testing.T) {
	fx := sharedFixture(t)
	r := runCLI(t, "pki", "inspect", fx.p("auth.pem"))
	if r.code != 0 {
		t.Fatal(r)
	}
	m := r.object(t)
	if _, ok := m["attributes"]; ok {
		t.Errorf("authentication certificate printed attributes: %v", m["attributes"])
	}
	c := m["certificate"].(map[string]any)
	checkCertificateJSON(t, c, viewWithOpenSSL(t, fx.p("auth.pem")))
	if c["kind"] != "authentication" {
		t.Errorf("kind %v", c["kind"])
	}
	if got := c["key_usage"]; !reflect.DeepEqual(got, []any{"digitalSignature"}) {
		t.Errorf("key_usage %v", got)
	}
	if got := c["policy_oids"]; !reflect.DeepEqual(got, []any{"1.2.392.200149.8.5.1.3.30"}) {
		t.Errorf("policy_oids %v", got)
	}
	if strings.Contains(string(r.stdout), "山田") {
		t.Error("personal data in an authentication certificate's output")
	}
}

// checkCertificateJSON compares the certificate object with openssl's view
// and pins its key set, so that an added or renamed field is a decision.
func checkCertificateJSON(t *testing.T, c map[string]any, want opensslView) {
	t.Helper()
	wantKeys := []string{"issuer", "key_usage", "kind", "not_after", "not_before", "policy_oids", "public_key",
		"serial", "serial_hex", "sha256_fingerprint", "signature_algorithm", "subject"}
	if got := keysOf(c); !reflect.DeepEqual(got, wantKeys) {
		t.Errorf("certificate keys\n got %v\nwant %v", got, wantKeys)
	}
	if c["subject"] != want.subject {
		t.Errorf("subject %q, openssl says %q", c["subject"], want.subject)
	}
	if c["issuer"] != want.issuer {
		t.Errorf("issuer %q, openssl says %q", c["issuer"], want.issuer)
	}
	wantHex := strings.TrimLeft(want.serialHex, "0")
	if c["serial_hex"] != wantHex {
		t.Errorf("serial_hex %v, openssl says %s", c["serial_hex"], want.serialHex)
	}
	n, ok := new(big.Int).SetString(want.serialHex, 16)
	if !ok || c["serial"] != n.String() {
		t.Errorf("serial %v, want decimal of %s", c["serial"], want.serialHex)
	}
	if c["sha256_fingerprint"] != want.fingerprint {
		t.Errorf("fingerprint %v, openssl says %s", c["sha256_fingerprint"], want.fingerprint)
	}
	if c["not_before"] != want.notBefore.UTC().Format(time.RFC3339) || c["not_after"] != want.notAfter.UTC().Format(time.RFC3339) {
		t.Errorf("validity %v..%v, openssl says %v..%v", c["not_before"], c["not_after"], want.notBefore, want.notAfter)
	}
	if pk := c["public_key"]; !reflect.DeepEqual(pk, map[string]any{"algorithm": "RSA", "bits": float64(2048)}) {
		t.Errorf("public_key %v", pk)
	}
	if c["signature_algorithm"] != "SHA256-RSA" {
		t.Errorf("signature_algorithm %v", c["signature_algorithm"])
	}
}

func TestInspectRefusedProfiles(t *testing.T) {
	fx := sharedFixture(t)
	tests := []struct {
		file   string
		args   []string
		reason string
		bits   float64
	}{
		{file: "caleaf.pem", reason: "key_usage"},
		{file: "noku.pem", reason: "key_usage"},
		{file: "wrongku.pem", reason: "key_usage"},
		{file: "wrongpolicy.pem", reason: "key_usage"},
		{file: "wrongpolicy.pem", args: []string{"--policy-oid", "auth:1.3.6.1.4.1.55555.2.1"}, reason: "key_usage"},
		{file: "critext.pem", reason: "malformed"},
		{file: "weak.pem", reason: "weak_key", bits: 1024},
		{file: "badbirth.pem", reason: "attributes"},
		{file: "badgender.pem", reason: "attributes"},
		{file: "nofacts.pem", reason: "attributes"},
		{file: "selfsigned.pem", reason: ""}, // profile fine; trust is verify's job
		{file: "expired.pem", reason: ""},    // likewise validity
		{file: "wrongpolicy.pem", args: []string{"--policy-oid", "1.3.6.1.4.1.55555.2.1"}, reason: ""},
		{file: "wrongpolicy.pem", args: []string{"--policy-oid", "signature:1.3.6.1.4.1.55555.2.1"}, reason: ""},
	}
	for _, tt := range tests {
		t.Run(tt.file+strings.Join(tt.args, "_"), func(t *testing.T) {
			r := runCLI(t, append([]string{"pki", "inspect", fx.p(tt.file)}, tt.args...)...)
			m := r.object(t)
			c, ok := m["certificate"].(map[string]any)
			if !ok {
				t.Fatalf("no certificate object: %s", r)
			}
			if tt.reason == "" {
				if r.code != 0 || m["reason"] != nil || c["kind"] != "signature" {
					t.Fatalf("want accepted signature certificate: %s", r)
				}
				return
			}
			if r.code != 1 {
				t.Fatalf("exit %d, want 1: %s", r.code, r)
			}
			if m["reason"] != tt.reason {
				t.Errorf("reason %v, want %s (%v)", m["reason"], tt.reason, m["error"])
			}
			if e, _ := m["error"].(string); e == "" {
				t.Error("no error detail")
			}
			if _, ok := m["attributes"]; ok {
				t.Error("attributes printed for a refused certificate")
			}
			if tt.reason == "attributes" {
				if c["kind"] != "signature" {
					t.Errorf("kind %v: the profile itself is fine", c["kind"])
				}
			} else if v, ok := c["kind"]; !ok || v != nil {
				t.Errorf("kind %v, want null", v)
			}
			if tt.bits != 0 && c["public_key"].(map[string]any)["bits"] != tt.bits {
				t.Errorf("public_key %v", c["public_key"])
			}
			if strings.Contains(r.stderr+fmt.Sprint(m["error"]), "山田") || strings.Contains(fmt.Sprint(m["error"]), "31980") {
				t.Errorf("personal data in the error: %v", m["error"])
			}
		})
	}
}

func TestInspectUnreadable(t *testing.T) {
	fx := sharedFixture(t)
	dir := t.TempDir()
	der := ossl(t, "", nil, "x509", "-in", fx.p("sign.pem"), "-outform", "DER")
	pem := readFile(t, fx.p("sign.pem"))
	tests := []struct {
		name   string
		file   string
		reason string // "" when the file could not even be read
	}{
		{"missing", filepath.Join(dir, "nope.pem"), ""},
		{"directory", dir, ""},
		{"empty", writeFile(t, dir, "empty", nil), "malformed"},
		{"truncated DER", writeFile(t, dir, "trunc.der", der[:len(der)/2]), "malformed"},
		{"DER with trailing garbage", writeFile(t, dir, "trail.der", append(append([]byte{}, der...), 0, 1, 2)), "malformed"},
		{"truncated PEM", writeFile(t, dir, "trunc.pem", pem[:len(pem)/2]), "malformed"},
		{"PEM with a broken body", writeFile(t, dir, "body.pem", bytes.Replace(pem, []byte("MII"), []byte("MIX"), 1)), "malformed"},
		{"private key", fx.p("sign.key"), "malformed"},
		{"CRL", fx.p("crl.pem"), "malformed"},
		{"text", fx.p("data.txt"), "malformed"},
		{"too large", writeFile(t, dir, "big", bytes.Repeat([]byte("A"), maxCertFileBytes+1)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, "pki", "inspect", tt.file)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2: %s", r.code, r)
			}
			m := r.object(t)
			if e, _ := m["error"].(string); e == "" {
				t.Errorf("no error: %s", r)
			}
			if tt.reason != "" && m["reason"] != tt.reason {
				t.Errorf("reason %v, want %s", m["reason"], tt.reason)
			}
			if _, ok := m["certificate"]; ok {
				t.Errorf("certificate printed for unparseable input")
			}
		})
	}
}

// TestUsageErrors pins status 2 and a JSON error for every malformed
// command line the contract names, before any file is trusted.
func TestUsageErrors(t *testing.T) {
	fx := sharedFixture(t)
	dir := t.TempDir()
	a, d, j, c := fx.p("ca.pem"), fx.p("data.txt"), fx.p("sign.jws"), fx.p("sign-attached.p7s")
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name string
		args []string
		json bool // a JSON error object on stdout
	}{
		{"unknown command", []string{"frobnicate"}, false},
		{"unknown pki command", []string{"pki", "frobnicate"}, false},
		{"inspect without file", []string{"pki", "inspect"}, true},
		{"inspect two files", []string{"pki", "inspect", fx.p("sign.pem"), fx.p("auth.pem")}, true},
		{"inspect unknown flag", []string{"pki", "inspect", "--bogus", fx.p("sign.pem")}, true},
		{"inspect bad policy oid", []string{"pki", "inspect", "--policy-oid", "not-an-oid", fx.p("sign.pem")}, true},
		{"inspect bad policy prefix", []string{"pki", "inspect", "--policy-oid", "root:1.2.3", fx.p("sign.pem")}, true},
		{"verify without anchor", []string{"pki", "verify", "--data", d, "--jws", j}, true},
		{"verify without data", []string{"pki", "verify", "--anchor", a, "--jws", j}, true},
		{"verify without envelope", []string{"pki", "verify", "--anchor", a, "--data", d}, true},
		{"verify cms and jws", []string{"pki", "verify", "--anchor", a, "--data", d, "--jws", j, "--cms", c}, true},
		{"verify jws and sig", []string{"pki", "verify", "--anchor", a, "--data", d, "--jws", j, "--sig", fx.p("sign.sig"), "--cert", fx.p("sign.pem")}, true},
		{"verify sig without cert", []string{"pki", "verify", "--anchor", a, "--data", d, "--sig", fx.p("sign.sig")}, true},
		{"verify cert without sig", []string{"pki", "verify", "--anchor", a, "--data", d, "--jws", j, "--cert", fx.p("sign.pem")}, true},
		{"verify bad revocation", []string{"pki", "verify", "--anchor", a, "--data", d, "--jws", j, "--revocation", "maybe"}, true},
		{"verify empty revocation", []string{"pki", "verify", "--anchor", a, "--data", d, "--jws", j, "--revocation", ""}, true},
		{"verify bad at", []string{"pki", "verify", "--anchor", a, "--data", d, "--jws", j, "--at", "yesterday"}, true},
		{"verify bad hash", []string{"pki", "verify", "--anchor", a, "--data", d, "--sig", fx.p("sign.sig"), "--cert", fx.p("sign.pem"), "--hash", "md5"}, true},
		{"verify bad timeout", []string{"pki", "verify", "--anchor", a, "--data", d, "--jws", j, "--timeout", "0s"}, true},
		{"verify positional", []string{"pki", "verify", "--anchor", a, "--data", d, "--jws", j, "extra"}, true},
		{"verify unknown flag", []string{"pki", "verify", "--anchor", a, "--data", d, "--jws", j, "--bogus"}, true},
		{"verify missing anchor file", []string{"pki", "verify", "--anchor", missing, "--data", d, "--jws", j}, true},
		{"verify leaf as anchor", []string{"pki", "verify", "--anchor", fx.p("sign.pem"), "--data", d, "--jws", j}, true},
		{"verify garbage anchor", []string{"pki", "verify", "--anchor", d, "--data", d, "--jws", j}, true},
		{"verify missing data file", []string{"pki", "verify", "--anchor", a, "--data", missing, "--jws", j}, true},
		{"verify missing jws file", []string{"pki", "verify", "--anchor", a, "--data", d, "--jws", missing}, true},
		{"verify missing cms file", []string{"pki", "verify", "--anchor", a, "--data", d, "--cms", missing}, true},
		{"verify missing sig file", []string{"pki", "verify", "--anchor", a, "--data", d, "--sig", missing, "--cert", fx.p("sign.pem")}, true},
		{"verify missing cert file", []string{"pki", "verify", "--anchor", a, "--data", d, "--sig", fx.p("sign.sig"), "--cert", missing}, true},
		{"verify missing intermediate", []string{"pki", "verify", "--anchor", a, "--data", d, "--jws", j, "--intermediate", missing}, true},
		{"verify garbage intermediate", []string{"pki", "verify", "--anchor", a, "--data", d, "--jws", j, "--intermediate", d}, true},
		{"verify data is a directory", []string{"pki", "verify", "--anchor", a, "--data", dir, "--jws", j}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.args...)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2: %s", r.code, r)
			}
			if r.stderr == "" {
				t.Error("nothing on stderr")
			}
			if !tt.json {
				return
			}
			m := r.object(t)
			if e, _ := m["error"].(string); e == "" {
				t.Errorf("no error in %s", r.stdout)
			}
			if tt.args[1] == "verify" && m["valid"] != false {
				t.Errorf("valid %v, want false", m["valid"])
			}
			if _, ok := m["reason"]; ok && tt.args[1] == "verify" {
				t.Errorf("usage error carries a reason: %v", m["reason"])
			}
		})
	}
}

func TestHelpMentionsContract(t *testing.T) {
	r := runCLI(t, "pki", "verify", "--help")
	if r.code != 0 {
		t.Fatal(r)
	}
	for _, s := range []string{"base64", "modulus", "--revocation", "require", "prefer", "Exit status", "1 MiB"} {
		if !strings.Contains(string(r.stdout), s) {
			t.Errorf("verify --help lacks %q", s)
		}
	}
	if r := runCLI(t, "pki"); r.code != 0 || !strings.Contains(string(r.stdout), "inspect") {
		t.Errorf("pki without subcommand: %s", r)
	}
}

// TestRecoversFromPanic drives the last-resort guard: whatever goes wrong
// below, scripts get JSON and status 2, never a stack trace.
func TestRecoversFromPanic(t *testing.T) {
	var stdout, stderr bytes.Buffer
	root := newRootCmd()
	root.AddCommand(&cobra.Command{Use: "boom", RunE: func(*cobra.Command, []string) error { panic("kaboom") }})
	code := execute(root, []string{"boom"}, &stdout, &stderr)
	if code != 2 {
		t.Fatalf("exit %d", code)
	}
	r := cliResult{code: code, stdout: stdout.Bytes(), stderr: stderr.String()}
	if e, _ := r.object(t)["error"].(string); !strings.Contains(e, "internal error") {
		t.Errorf("error %q", e)
	}
	if strings.Contains(r.stderr, "goroutine") {
		t.Errorf("stack trace leaked: %s", r.stderr)
	}
}

// TestExitStatusOfBinary checks the statuses as a shell sees them.
func TestExitStatusOfBinary(t *testing.T) {
	fx := sharedFixture(t)
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"pki", "inspect", fx.p("sign.pem")}, 0},
		{[]string{"pki", "inspect", fx.p("badgender.pem")}, 1},
		{[]string{"pki", "inspect", fx.p("data.txt")}, 2},
		{[]string{"pki", "verify", "--anchor", fx.p("ca.pem"), "--data", fx.p("data.txt"), "--jws", fx.p("sign.jws"), "--crl", fx.p("crl.pem")}, 0},
		{[]string{"pki", "verify", "--anchor", fx.p("ca2.pem"), "--data", fx.p("data.txt"), "--jws", fx.p("sign.jws"), "--crl", fx.p("crl.pem")}, 1},
		{[]string{"pki", "verify", "--data", fx.p("data.txt"), "--jws", fx.p("sign.jws")}, 2},
		{[]string{"pki", "verify", "--anchor", fx.p("ca.pem"), "--data", fx.p("data.txt"), "--jws", fx.p("sign.jws"), "--revocation", "sometimes"}, 2},
		{[]string{"no-such-command"}, 2},
	}
	for _, tt := range tests {
		r := execCLI(t, tt.args...)
		if r.code != tt.code {
			t.Errorf("watashi %s: %s, want exit %d", strings.Join(tt.args, " "), r, tt.code)
		}
		if tt.args[0] == "pki" {
			r.object(t)
		}
	}
}

// FuzzInspect feeds arbitrary bytes through inspect's whole decision and
// its JSON rendering; it must never panic.
func FuzzInspect(f *testing.F) {
	fx := sharedFixture(f)
	for _, name := range []string{"sign.pem", "auth.pem", "badbirth.pem", "critext.pem", "weak.pem", "crl.der"} {
		f.Add(readFile(f, fx.p(name)))
	}
	der := ossl(f, "", nil, "x509", "-in", fx.p("sign.pem"), "-outform", "DER")
	f.Add(der)
	f.Add(der[:len(der)-7])
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		out, code := inspectBytes(data, policyForFuzz)
		if code == exitOK && (out.Certificate == nil || out.Certificate.Kind == nil) {
			t.Fatalf("accepted without a kind: %+v", out)
		}
		if code != exitOK && out.Error == "" {
			t.Fatalf("refused without an error: %+v", out)
		}
		var buf bytes.Buffer
		writeJSON(&buf, out)
		if !json.Valid(buf.Bytes()) {
			t.Fatalf("invalid JSON: %s", buf.Bytes())
		}
	})
}

func TestDecodeSignature(t *testing.T) {
	fx := sharedFixture(t)
	certs, err := pkibridge.ParseCertificates(readFile(t, fx.p("sign.pem")))
	if err != nil {
		t.Fatal(err)
	}
	leaf := certs[0]
	sig := readFile(t, fx.p("sign.sig"))
	if len(sig) != 256 {
		t.Fatalf("openssl signature of %d bytes", len(sig))
	}
	b64 := base64.StdEncoding.EncodeToString(sig)
	allA := bytes.Repeat([]byte("A"), 256) // base64 text, but decodes to 192 bytes
	tests := []struct {
		name string
		in   []byte
		want []byte
	}{
		{"binary", sig, sig},
		{"std base64", []byte(b64), sig},
		{"std base64 wrapped with CRLF", []byte(b64[:64] + "\r\n" + b64[64:] + "\r\n"), sig},
		{"unpadded url base64", []byte(base64.RawURLEncoding.EncodeToString(sig)), sig},
		{"base64 of the wrong length", []byte(base64.StdEncoding.EncodeToString(sig[:255])), []byte(base64.StdEncoding.EncodeToString(sig[:255]))},
		{"base64-looking binary", allA, allA},
		{"empty", nil, nil},
		{"whitespace", []byte(" \n"), []byte(" \n")},
	}
	for _, tt := range tests {
		if got := decodeSignature(tt.in, leaf); !bytes.Equal(got, tt.want) {
			t.Errorf("%s: got %d bytes, want %d", tt.name, len(got), len(tt.want))
		}
	}
}
