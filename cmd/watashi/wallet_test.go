package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/watashi-id/watashi/idp"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// runCLIIn is runCLI with a standard input (the approve prompt).
func runCLIIn(tb testing.TB, stdin string, args ...string) cliResult {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	root := newRootCmd()
	root.SetIn(strings.NewReader(stdin))
	code := execute(root, args, &stdout, &stderr)
	return cliResult{code: code, stdout: stdout.Bytes(), stderr: stderr.String()}
}

func enrollArgs(walletDir, caDir string, extra ...string) []string {
	return append([]string{"wallet", "enroll", "--dir", walletDir, "--ca-dir", caDir,
		"--name", "山田 太郎", "--birthdate", "1980-12-31", "--gender", "male", "--address", "東京都千代田区霞が関"}, extra...)
}

func TestWalletEnroll(t *testing.T) {
	root := t.TempDir()
	caDir, w1, w2 := filepath.Join(root, "ca"), filepath.Join(root, "w1"), filepath.Join(root, "w2")
	r := runCLI(t, enrollArgs(w1, caDir)...)
	if r.code != 0 {
		t.Fatalf("enroll: %s", r)
	}
	m := r.object(t)
	if m["simulator"] != true || m["token"] != "JPKIAPGPSETOKEN" {
		t.Fatalf("output: %v", m)
	}
	if strings.Contains(string(r.stdout), "山田") || strings.Contains(string(r.stdout), "千代田") {
		t.Fatal("enroll printed personal facts")
	}
	ca1, err := jpkisim.LoadCA(filepath.Join(caDir, "signature"))
	if err != nil {
		t.Fatal(err)
	}
	// A second wallet comes from the same CAs, with the next serials.
	r = runCLI(t, enrollArgs(w2, caDir, "--token", "card", "--biometric")...)
	if r.code != 0 {
		t.Fatalf("second enroll: %s", r)
	}
	ca2, err := jpkisim.LoadCA(filepath.Join(caDir, "signature"))
	if err != nil || !ca2.Cert.Equal(ca1.Cert) {
		t.Fatalf("the CA was recreated: %v", err)
	}
	s1 := r.object(t)["signature_certificate"].(map[string]any)["serial"]
	if s1 == m["signature_certificate"].(map[string]any)["serial"] {
		t.Fatal("serial reused")
	}
	for _, f := range []string{"signature.crt", "signature.key", "authentication.crt", "authentication.key", "wallet.json"} {
		if _, err := os.Stat(filepath.Join(w2, f)); err != nil {
			t.Fatal(err)
		}
	}
	// Refusals: existing wallet, bad facts, missing flags.
	for name, args := range map[string][]string{
		"existing wallet": enrollArgs(w1, caDir),
		"bad birth date":  append(enrollArgs(filepath.Join(root, "w3"), caDir), "--birthdate", "1980/12/31"),
		"bad gender":      append(enrollArgs(filepath.Join(root, "w3"), caDir), "--gender", "x"),
		"name w/o space":  append(enrollArgs(filepath.Join(root, "w3"), caDir), "--name", "山田太郎"),
		"bad token":       append(enrollArgs(filepath.Join(root, "w3"), caDir), "--token", "usb"),
		"no dir":          {"wallet", "enroll", "--ca-dir", caDir},
		"extra argument":  append(enrollArgs(filepath.Join(root, "w3"), caDir), "extra"),
	} {
		if r := runCLI(t, args...); r.code != exitUsage {
			t.Errorf("%s: %s", name, r)
		}
	}
	if r := runCLI(t, append(enrollArgs(w1, caDir), "--force")...); r.code != 0 {
		t.Fatalf("--force: %s", r)
	}
}

// TestWalletApprove answers a real provider's transaction with the
// command-line wallet, as a developer does against `watashi demo`.
func TestWalletApprove(t *testing.T) {
	root := t.TempDir()
	caDir, wdir := filepath.Join(root, "ca"), filepath.Join(root, "wallet")
	if r := runCLI(t, enrollArgs(wdir, caDir)...); r.code != 0 {
		t.Fatalf("enroll: %s", r)
	}
	sigCA, err := jpkisim.LoadCA(filepath.Join(caDir, "signature"))
	if err != nil {
		t.Fatal(err)
	}
	authCA, err := jpkisim.LoadCA(filepath.Join(caDir, "authentication"))
	if err != nil {
		t.Fatal(err)
	}
	rev := httptest.NewServer(jpkisim.NewRevocationServer(sigCA, authCA))
	defer rev.Close()
	anchors, _ := pkibridge.NewAnchors(sigCA.Cert, authCA.Cert)
	checker, err := pkibridge.NewChecker(nil, []string{rev.URL + "/ocsp/0", rev.URL + "/ocsp/1"}, nil, pkibridge.CheckerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	issuer := "http://" + ts.Listener.Addr().String()
	srv, err := idp.New(context.Background(), idp.Options{
		Issuer: issuer, Dev: true, Store: store.NewMemory(),
		Verifier: &pkibridge.Verifier{Anchors: anchors, Policy: pkibridge.DefaultPolicy(), Revocation: checker},
		Clients: []*clients.Client{{ID: "cli-rp", DisplayName: "CLI RP", AuthMethod: "none",
			RedirectURIs: []string{"https://rp.example/cb"}, Scopes: []string{"name"}}},
		PairwiseKey: []byte("pairwise-key-for-tests-0123456789abcdef"),
		CookieKey:   []byte("cookie-key-for-tests-0123456789abcdef"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = srv.Handler()
	ts.Start()
	defer ts.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) *http.Response {
		t.Helper()
		if strings.HasPrefix(u, "/") {
			u = issuer + u
		}
		res, err := browser.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	// openTx returns the transaction URL the login page shows.
	codes := map[string]string{} // the confirmation code each login page shows
	openTx := func(purpose string) (string, string) {
		sum := sha256.Sum256([]byte("a-code-verifier-a-code-verifier-a-code-verifier"))
		q := url.Values{"client_id": {"cli-rp"}, "redirect_uri": {"https://rp.example/cb"}, "response_type": {"code"},
			"scope": {"openid name"}, "state": {"s"}, "code_challenge_method": {"S256"},
			"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}}
		login := get("/authorize?" + q.Encode()).Header.Get("Location")
		loc := get(login + "&purpose=" + purpose).Header.Get("Location")
		u, _ := url.Parse(loc)
		txID := u.Query().Get("tx")
		page, err := browser.Get(issuer + loc)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(page.Body)
		page.Body.Close()
		if m := regexp.MustCompile(`id="code"[^>]*>([^<]+)<`).FindSubmatch(body); m != nil {
			codes[txID] = string(m[1])
		}
		res, err := browser.Get(issuer + "/login/tx/" + txID + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var st struct {
			State string
			QR    struct {
				TxURL   string `json:"tx_url"`
				AppLink string `json:"app_link"`
			}
		}
		if err := json.NewDecoder(res.Body).Decode(&st); err != nil || st.QR.TxURL == "" {
			t.Fatalf("status: %v %+v", err, st)
		}
		return txID, st.QR.AppLink
	}

	status := func(txID string) (string, string) {
		t.Helper()
		res, err := browser.Get(issuer + "/login/tx/" + txID + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var st struct{ State, Reason string }
		json.NewDecoder(res.Body).Decode(&st)
		return st.State, st.Reason
	}
	// A "no" at the prompt, a "different code", a --code that differs
	// and the decline command: the provider hears each, and the browser
	// stops waiting with the reason. Nothing is signed.
	for _, c := range []struct {
		name, stdin string
		args        []string
		reason      string
	}{
		{"no at the prompt", "n\n", []string{"approve", "--dir", wdir}, "declined"},
		{"different code at the prompt", "d\n", []string{"approve", "--dir", wdir}, "comparison_mismatch"},
		{"--code differs", "", []string{"approve", "--dir", wdir, "--code", "00-00x"}, "comparison_mismatch"},
		{"decline", "", []string{"decline"}, "declined"},
		{"decline --codes-differ", "", []string{"decline", "--codes-differ"}, "comparison_mismatch"},
	} {
		txID, appLink := openTx("proofing")
		args := append([]string{"wallet", c.args[0], appLink}, c.args[1:]...)
		r := runCLIIn(t, c.stdin, args...)
		if m := r.object(t); r.code != exitRefused || m["status"] != "declined" || m["reason"] != c.reason {
			t.Fatalf("%s: %s", c.name, r)
		}
		if state, reason := status(txID); state != "failed" || reason != c.reason {
			t.Fatalf("%s: the browser sees %s %s", c.name, state, reason)
		}
		if c.stdin == "n\n" {
			for _, want := range []string{"CLI RP", "Confirmation code", "identity proofing"} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("prompt lacks %q:\n%s", want, r.stderr)
				}
			}
		}
	}
	// The code the login page shows, given with --code, is the same.
	txID, appLink := openTx("proofing")
	if codes[txID] == "" {
		t.Fatal("no confirmation code on the login page")
	}
	r := runCLIIn(t, "y\n", "wallet", "approve", appLink, "--dir", wdir, "--format", "cms", "--code", codes[txID])
	if r.code != 0 || r.object(t)["status"] != "verified" {
		t.Fatalf("approve: %s", r)
	}
	if state, _ := status(txID); state != "verified" {
		t.Fatalf("browser sees %q", state)
	}
	// Answering again is refused by the provider: status 1 with its code.
	r = runCLI(t, "wallet", "approve", appLink, "--dir", wdir, "--yes")
	if m := r.object(t); r.code != exitRefused || m["error"] != "already_used" {
		t.Fatalf("second approve: %s", r)
	}
	// A later sign-in with the authentication certificate alone.
	_, appLink = openTx("signin")
	if r := runCLI(t, "wallet", "approve", appLink, "--dir", wdir, "--yes", "--format", "raw"); r.code != 0 {
		t.Fatalf("sign-in: %s", r)
	}

	for name, args := range map[string][]string{
		"no dir":       {"wallet", "approve", appLink},
		"bad format":   {"wallet", "approve", appLink, "--dir", wdir, "--format", "xml"},
		"not a URL":    {"wallet", "approve", "ftp://x/y", "--dir", wdir},
		"no wallet":    {"wallet", "approve", appLink, "--dir", filepath.Join(root, "none")},
		"no argument":  {"wallet", "approve", "--dir", wdir},
		"unreachable":  {"wallet", "approve", "http://127.0.0.1:1/wallet/v1/transactions/x?qr_token=1.x", "--dir", wdir, "--yes"},
		"unknown verb": {"wallet", "frobnicate"},
	} {
		if r := runCLI(t, args...); r.code != exitUsage {
			t.Errorf("%s: %s", name, r)
		}
	}
}
