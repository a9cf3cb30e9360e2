package main

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// openidClientDir holds the Node RP (rp.mjs) and its pinned dependencies.
const openidClientDir = "../../testdata/openid-client"

// requireNode finds node and npm, skipping only when node is absent and
// WATASHI_REQUIRE_NODE is unset (CI sets it), and installs the pinned
// packages (package-lock.json) when they are missing.
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if storetest.RequireEnv("WATASHI_REQUIRE_NODE") {
			t.Fatalf("node not found and WATASHI_REQUIRE_NODE is set: %v", err)
		}
		t.Skip("node not installed (set WATASHI_REQUIRE_NODE=1 to make this fatal)")
	}
	if _, err := os.Stat(filepath.Join(openidClientDir, "node_modules", "openid-client", "package.json")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			t.Fatalf("node is installed but npm is not, and %s/node_modules is missing: %v", openidClientDir, err)
		}
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline")
		cmd.Dir = openidClientDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", openidClientDir, err, out)
		}
	}
	return node
}

// servedOP is `watashi serve` in production mode (no --dev) on Redis,
// behind a TLS front whose URL is the issuer, with the simulator PKI as
// its only trust anchors and OCSP required.
type servedOP struct {
	issuer string
	front  *httptest.Server
	sigCA  *jpkisim.CA
	authCA *jpkisim.CA
	logs   *lockedBuffer
	stop   func() error
}

// serveBehindTLS starts serve with one static client of secret and
// redirect, and the TLS front.
func serveBehindTLS(t *testing.T, clientID, secret, redirect string) *servedOP {
	t.Helper()
	redisAddr := storetest.StartRedis(t)
	dir := t.TempDir()
	sigCA, err := jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindSignature})
	if err != nil {
		t.Fatal(err)
	}
	authCA, err := jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindAuthentication})
	if err != nil {
		t.Fatal(err)
	}
	for name, ca := range map[string]*jpkisim.CA{"sig-ca.pem": sigCA, "auth-ca.pem": authCA} {
		writeFile(t, dir, name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}))
	}
	rev := httptest.NewServer(jpkisim.NewRevocationServer(sigCA, authCA))
	t.Cleanup(rev.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(nil)
	front.Listener.Close()
	front.Listener = ln
	issuer := "https://" + ln.Addr().String()
	opensslRand(t, dir, "pairwise.key")
	opensslRand(t, dir, "token.key")
	opensslRand(t, dir, "cookie.key")
	opensslRand(t, dir, "kek.key")
	writeFile(t, dir, "rp.secret", []byte(secret+"\n"))
	cfg := writeFile(t, dir, "watashi.yaml", []byte(`
issuer: `+issuer+`
listen: 127.0.0.1:0
telemetry_listen: 127.0.0.1:0
trusted_proxies: [127.0.0.1/32]
store:
  type: redis
  redis: {addrs: [`+redisAddr+`], prefix: "oc:", timeout: 10s}
secrets:
  pairwise_key_file: pairwise.key
  token_key_file: token.key
  cookie_key_file: cookie.key
  kek_file: kek.key
pki:
  anchors: [sig-ca.pem, auth-ca.pem]
  revocation:
    mode: require
    ocsp: [`+rev.URL+`/ocsp/0, `+rev.URL+`/ocsp/1]
clients:
  - client_id: `+clientID+`
    display_name: 市民ポータル
    token_endpoint_auth_method: client_secret_basic
    client_secret_file: rp.secret
    redirect_uris: [`+redirect+`]
    scopes: [offline_access, name, birthdate]
`))
	logs := new(lockedBuffer)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	result := make(chan error, 1)
	go func() {
		result <- serve(ctx, serveParams{config: cfg, stderr: logs, ready: func(pub, _ net.Addr) { ready <- pub }})
	}()
	var public net.Addr
	select {
	case public = <-ready:
	case err := <-result:
		cancel()
		t.Fatalf("serve ended before listening: %v\n%s", err, logs.String())
	}
	front.Config.Handler = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(&url.URL{Scheme: "http", Host: public.String()})
		r.Out.Host = r.In.Host
		r.SetXForwarded()
	}}
	front.StartTLS()
	t.Cleanup(front.Close)
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-result
	}
	t.Cleanup(func() { _ = stop() })
	return &servedOP{issuer: issuer, front: front, sigCA: sigCA, authCA: authCA, logs: logs, stop: stop}
}

// signIn plays the resident's browser from the RP's authorization URL to
// the redirect back to the RP: the first sign-in with identity proofing
// by the wallet simulator, then consent to everything asked.
func (op *servedOP) signIn(t *testing.T, authURL string, f jpkisim.Facts) *url.URL {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	br := &e2eServeBrowser{t: t, issuer: op.issuer, hc: &http.Client{Transport: op.front.Client().Transport, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	h := br.get(br.redirect(br.get(authURL), "/login"))
	page := br.page(br.get(br.redirect(h, "/login")))
	txPage := br.redirect(br.get(e2eServeScrape(t, regexp.MustCompile(`href="([^"]*purpose=proofing[^"]*)"`), page)), "/login")
	page = br.page(br.get(txPage))
	w, err := walletsim.Enroll(op.sigCA, op.authCA, f)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Approve(context.Background(), op.front.Client(), e2eServeScrape(t, regexp.MustCompile(`id="applink" href="([^"]+)"`), page), walletsim.FormatJWS); err != nil {
		t.Fatalf("wallet: %v", err)
	}
	statusURL := e2eServeScrape(t, regexp.MustCompile(`data-status-url="([^"]+)"`), page)
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var st struct{ State string }
		if err := json.Unmarshal([]byte(br.page2(br.get(statusURL), "application/json")), &st); err != nil {
			t.Fatal(err)
		}
		if st.State == "verified" {
			break
		}
		if st.State != "pending" || time.Now().After(end) {
			t.Fatalf("transaction %q, want verified", st.State)
		}
	}
	action, fields := e2eServeForm(t, br.page(br.get(txPage)))
	consent := br.redirect(br.post(action, fields), "/consent")
	action, fields = e2eServeForm(t, br.page(br.get(consent)))
	fields.Set("action", "allow")
	h = br.get(br.redirect(br.post(action, fields), "/authorize/callback"))
	if h.res.StatusCode != http.StatusFound {
		t.Fatalf("callback: %s", h.res.Status)
	}
	back, err := url.Parse(h.res.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return back
}

// rpResult is what rp.mjs observed.
type rpResult struct {
	Step   string `json:"step"`
	Server struct {
		Issuer      string `json:"issuer"`
		IssResponse bool   `json:"authorization_response_iss_parameter_supported"`
	} `json:"server"`
	State   string `json:"state"`
	Nonce   string `json:"nonce"`
	IDToken struct {
		Iss   string `json:"iss"`
		Aud   any    `json:"aud"`
		Nonce string `json:"nonce"`
		Sub   string `json:"sub"`
		ACR   string `json:"acr"`
	} `json:"id_token"`
	TokenScope    string         `json:"token_scope"`
	Userinfo      map[string]any `json:"userinfo"`
	Introspection struct {
		Active   bool   `json:"active"`
		Sub      string `json:"sub"`
		ClientID string `json:"client_id"`
	} `json:"introspection"`
	Refreshed struct {
		Scope   string `json:"scope"`
		Sub     string `json:"sub"`
		Iss     string `json:"iss"`
		Rotated bool   `json:"rotated"`
	} `json:"refreshed"`
	UserinfoAfterRevocationSub string                `json:"userinfo_after_revocation_sub"`
	Negatives                  map[string]rpNegative `json:"negatives"`
}

type rpNegative struct {
	Name       string `json:"name"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	Status     int    `json:"status"`
	Error      string `json:"error"`
	Challenges []struct {
		Scheme     string            `json:"scheme"`
		Parameters map[string]string `json:"parameters"`
	} `json:"challenges"`
	Body  map[string]any `json:"body"`
	Cause struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"cause"`
}

// TestOpenIDClientRelyingParty: an RP on panva's openid-client (Node),
// the strictest widely used client library, against `watashi serve` as
// production runs it. The library does discovery, PKCE, state and nonce;
// refuses an authorization response whose iss is tampered with or missing
// (RFC 9207, as discovery announces); validates the ID token (signature,
// iss, aud, nonce); reads userinfo; introspects; refreshes; revokes; and
// meets the provider's errors the way the RFCs shape them: Bearer and
// Basic challenges, invalid_grant for a replayed code, which revokes what
// the code minted.
func TestOpenIDClientRelyingParty(t *testing.T) {
	node := requireNode(t)
	const (
		clientID = "city"
		secret   = "a client secret from a file, 32+"
		redirect = "https://rp.example.test/cb"
	)
	op := serveBehindTLS(t, clientID, secret, redirect)

	// Node trusts the front's certificate and nothing else new.
	caFile := filepath.Join(t.TempDir(), "front-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: op.front.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "rp.mjs")
	cmd.Dir = openidClientDir
	cmd.Env = append(os.Environ(),
		"NODE_EXTRA_CA_CERTS="+caFile,
		"WATASHI_ISSUER="+op.issuer,
		"RP_CLIENT_ID="+clientID,
		"RP_CLIENT_SECRET="+secret,
		"RP_REDIRECT_URI="+redirect,
		"RP_SCOPE=openid name birthdate offline_access",
	)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	next := func() map[string]json.RawMessage {
		t.Helper()
		if !lines.Scan() {
			_ = cmd.Wait()
			t.Fatalf("rp.mjs ended early: %v\n%s", lines.Err(), stderr.String())
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
			t.Fatalf("rp.mjs said %q", lines.Text())
		}
		if string(m["step"]) == `"error"` {
			_ = cmd.Wait()
			t.Fatalf("rp.mjs failed: %s\n%s", lines.Text(), stderr.String())
		}
		return m
	}

	var authURL string
	if err := json.Unmarshal(next()["url"], &authURL); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(authURL, op.issuer+"/authorize?") {
		t.Fatalf("authorization URL %s", authURL)
	}
	back := op.signIn(t, authURL, jpkisim.Facts{Name: "山田\u3000太郎", Gender: "1", Birthdate: "319801231", Address: "東京都千代田区霞が関一丁目1番1号"})
	if back.Query().Get("iss") != op.issuer {
		t.Fatalf("the authorization response lacks iss: %s", back.Redacted())
	}
	if _, err := fmt.Fprintln(stdin, back.String()); err != nil {
		t.Fatal(err)
	}
	done := next()
	raw := slices.Clone(lines.Bytes())
	if err := cmd.Wait(); err != nil {
		t.Fatalf("rp.mjs: %v\n%s", err, stderr.String())
	}
	var r rpResult
	if err := json.Unmarshal(raw, &r); err != nil || r.Step != "done" || len(done) == 0 {
		t.Fatalf("rp.mjs result %s: %v", raw, err)
	}

	if r.Server.Issuer != op.issuer || !r.Server.IssResponse {
		t.Errorf("discovery as the library read it: %+v", r.Server)
	}
	if r.IDToken.Iss != op.issuer || r.IDToken.Nonce != r.Nonce || r.IDToken.Sub == "" || r.IDToken.ACR != "aal3" || fmt.Sprint(r.IDToken.Aud) != fmt.Sprint([]any{clientID}) {
		t.Errorf("ID token claims %+v (nonce sent %q)", r.IDToken, r.Nonce)
	}
	if r.TokenScope != "openid name birthdate offline_access" {
		t.Errorf("token response scope %q", r.TokenScope)
	}
	if r.Userinfo["sub"] != r.IDToken.Sub || r.Userinfo["name"] != "山田\u3000太郎" || r.Userinfo["birthdate"] != "1980-12-31" {
		t.Errorf("userinfo %v", r.Userinfo)
	}
	if !r.Introspection.Active || r.Introspection.Sub != r.IDToken.Sub || r.Introspection.ClientID != clientID {
		t.Errorf("introspection %+v", r.Introspection)
	}
	if !r.Refreshed.Rotated || r.Refreshed.Sub != r.IDToken.Sub || r.Refreshed.Iss != op.issuer || r.Refreshed.Scope != r.TokenScope {
		t.Errorf("refresh %+v", r.Refreshed)
	}
	if r.UserinfoAfterRevocationSub != r.IDToken.Sub {
		t.Errorf("the refreshed token after revoking the first: %q", r.UserinfoAfterRevocationSub)
	}

	neg := r.Negatives
	// The library's own reasons (oauth4webapi's messages).
	for k, want := range map[string]string{
		"iss_tampered": `unexpected "iss" (issuer) response parameter value`,
		"iss_missing":  `response parameter "iss" (issuer) missing`,
		"state_wrong":  `unexpected "state" response parameter value`,
	} {
		if n := neg[k]; n.Cause.Message != want {
			t.Errorf("%s: the library refused with %+v, want %q", k, n, want)
		}
	}
	bearer := func(k string) {
		t.Helper()
		n := neg[k]
		if n.Status != http.StatusUnauthorized || len(n.Challenges) != 1 || n.Challenges[0].Scheme != "bearer" || n.Challenges[0].Parameters["error"] != "invalid_token" {
			t.Errorf("%s: %+v, want 401 with a Bearer invalid_token challenge", k, n)
		}
	}
	bearer("userinfo_bad_token")
	bearer("userinfo_revoked")
	bearer("userinfo_after_replay")
	if n := neg["refresh_wrong_secret"]; n.Status != http.StatusUnauthorized || len(n.Challenges) != 1 || n.Challenges[0].Scheme != "basic" || n.Body["error"] != "invalid_client" {
		t.Errorf("wrong secret: %+v, want 401 invalid_client with a Basic challenge", n)
	}
	if n := neg["code_replay"]; n.Status != http.StatusBadRequest || n.Error != "invalid_grant" {
		t.Errorf("code replay: %+v, want 400 invalid_grant", n)
	}

	if err := op.stop(); err != nil {
		t.Fatalf("serve: %v\n%s", err, op.logs.String())
	}
	// The provider's logs hold neither the resident's facts nor secrets.
	for _, s := range []string{"山田", "1980-12-31", secret, back.Query().Get("code")} {
		if strings.Contains(op.logs.String(), s) {
			t.Errorf("the logs contain personal data or a secret (%.8q…)", s)
		}
	}
}
