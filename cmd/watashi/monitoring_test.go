package main

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
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
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.yaml.in/yaml/v3"
	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// TestComposeStackAndMonitoring runs what deploy/compose runs, minus
// Docker: secrets made by its init.sh, redis-server with its redis.conf
// and the ACL file (the watashi user restricted to its prefix), and
// `watashi serve` with its watashi.yaml. Only what a test cannot have is
// replaced: addresses, the simulator PKI instead of J-LIS's OCSP, and one
// relying party. A resident signs in, a code is replayed, a rate limit is
// hit; then every metric the dashboard and the alert rules in
// deploy/monitoring name must be on /metrics.
func TestComposeStackAndMonitoring(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if storetest.RequireEnv("WATASHI_REQUIRE_OPENSSL") {
			t.Fatalf("openssl not found and WATASHI_REQUIRE_OPENSSL is set: %v", err)
		}
		t.Skip("openssl not installed")
	}
	compose := filepath.Join("..", "..", "deploy", "compose")
	dir := t.TempDir()
	if out, err := exec.Command("sh", filepath.Join(compose, "init.sh"), dir).CombinedOutput(); err != nil {
		t.Fatalf("init.sh: %v\n%s", err, out)
	}
	for _, f := range []string{"secrets/pairwise.key", "secrets/token.key", "secrets/cookie.key", "secrets/kek.key", "secrets/redis.password",
		"secrets/redis.acl", "certs/server.crt", "certs/server.key", "certs/ca.crt"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Fatalf("init.sh did not make %s: %v", f, err)
		}
	}
	for _, d := range []string{"secrets", "certs"} {
		if fi, _ := os.Stat(filepath.Join(dir, d)); fi.Mode().Perm() != 0o700 {
			t.Errorf("%s/ is %v, want 0700", d, fi.Mode().Perm())
		}
	}
	// A second run keeps every secret: rotating the pairwise key would
	// change every subject.
	before, _ := os.ReadFile(filepath.Join(dir, "secrets/pairwise.key"))
	if out, err := exec.Command("sh", filepath.Join(compose, "init.sh"), dir).CombinedOutput(); err != nil {
		t.Fatalf("init.sh again: %v\n%s", err, out)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "secrets/pairwise.key")); string(after) != string(before) {
		t.Fatal("init.sh replaced an existing pairwise key")
	}

	redisConf, err := os.ReadFile(filepath.Join(compose, "redis.conf"))
	if err != nil {
		t.Fatal(err)
	}
	redis := storetest.StartNode(t, string(redisConf), "--aclfile", filepath.Join(dir, "secrets/redis.acl"))
	password := strings.TrimSpace(string(mustRead(t, filepath.Join(dir, "secrets/redis.password"))))

	// The ACL user can do everything Watashi does, inside its prefix,
	// and nothing outside it.
	t.Run("StoreUnderACL", func(t *testing.T) {
		n := 0
		storetest.RunKV(t, func(t *testing.T) store.KV {
			n++ // a fresh prefix each: the suite wants an empty store
			kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{redis.Addr}, Username: "watashi", Password: password, Prefix: fmt.Sprintf("watashi:acl%d:", n)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { kv.Close() })
			return kv
		})
		outside, _ := store.NewRedis(store.RedisOptions{Addrs: []string{redis.Addr}, Username: "watashi", Password: password, Prefix: "other:"})
		defer outside.Close()
		if err := outside.Set(context.Background(), "k", []byte("v"), time.Minute); err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("write outside the prefix = %v, want NOPERM", err)
		}
		anon, _ := store.NewRedis(store.RedisOptions{Addrs: []string{redis.Addr}})
		defer anon.Close()
		if err := anon.Ping(context.Background()); err == nil {
			t.Error("the default user is not off")
		}
	})

	// The simulator PKI stands in for J-LIS.
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
	const secret = "a client secret from a file, 32+"
	writeFile(t, dir, "city.secret", []byte(secret+"\n"))
	const redirect = "https://rp.example.test/cb"

	var cfg map[string]any
	if err := yaml.Unmarshal(mustRead(t, filepath.Join(compose, "watashi.yaml")), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["issuer"] = issuer
	cfg["trusted_proxies"] = []string{"127.0.0.1/32"}
	pki := cfg["pki"].(map[string]any)
	pki["anchors"] = []string{"sig-ca.pem", "auth-ca.pem"}
	pki["revocation"].(map[string]any)["ocsp"] = []string{rev.URL + "/ocsp/0", rev.URL + "/ocsp/1"}
	cfg["clients"] = []map[string]any{{"client_id": "city", "display_name": "市民ポータル", "token_endpoint_auth_method": "client_secret_basic",
		"client_secret_file": "city.secret", "redirect_uris": []string{redirect}, "scopes": []string{"offline_access", "name", "birthdate"}}}
	// CI machines running many test binaries at once have starved
	// redis-server past the 2s default.
	cfg["store"].(map[string]any)["redis"].(map[string]any)["timeout"] = "10s"
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := writeFile(t, dir, "watashi.yaml", data)
	// compose.yaml's environment, pointed at init.sh's files.
	for k, v := range map[string]string{
		"WATASHI_PAIRWISE_KEY_FILE":   filepath.Join(dir, "secrets/pairwise.key"),
		"WATASHI_TOKEN_KEY_FILE":      filepath.Join(dir, "secrets/token.key"),
		"WATASHI_COOKIE_KEY_FILE":     filepath.Join(dir, "secrets/cookie.key"),
		"WATASHI_KEK_FILE":            filepath.Join(dir, "secrets/kek.key"),
		"WATASHI_REDIS_PASSWORD_FILE": filepath.Join(dir, "secrets/redis.password"),
		"WATASHI_REDIS_ADDRS":         redis.Addr,
		"WATASHI_LISTEN":              "127.0.0.1:0",
		"WATASHI_TELEMETRY_LISTEN":    "127.0.0.1:0",
	} {
		t.Setenv(k, v)
	}

	var logs lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type addrs struct{ pub, tel net.Addr }
	ready := make(chan addrs, 1)
	result := make(chan error, 1)
	go func() {
		result <- serve(ctx, serveParams{config: cfgPath, stderr: &logs, ready: func(p, tl net.Addr) { ready <- addrs{p, tl} }})
	}()
	var a addrs
	select {
	case a = <-ready:
	case err := <-result:
		t.Fatalf("serve with the Compose configuration: %v\n%s", err, logs.String())
	}
	front.Config.Handler = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(&url.URL{Scheme: "http", Host: a.pub.String()})
		r.Out.Host = r.In.Host
		r.SetXForwarded()
	}}
	front.StartTLS()
	t.Cleanup(front.Close)
	telemetry := "http://" + a.tel.String()
	if code, body := httpGet(t, telemetry+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz %d:\n%s\n%s", code, body, logs.String())
	}

	// A resident proves identity and signs in to the RP.
	rpCtx := oidc.ClientContext(context.Background(), front.Client())
	provider, err := oidc.NewProvider(rpCtx, issuer)
	if err != nil {
		t.Fatal(err)
	}
	ep := provider.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	conf := &oauth2.Config{ClientID: "city", ClientSecret: secret, RedirectURL: redirect, Endpoint: ep,
		Scopes: []string{oidc.ScopeOpenID, oidc.ScopeOfflineAccess, "name", "birthdate"}}
	state, pkce := oauth2.GenerateVerifier()[:24], oauth2.GenerateVerifier()
	jar, _ := cookiejar.New(nil)
	br := &e2eServeBrowser{t: t, issuer: issuer, hc: &http.Client{Transport: front.Client().Transport, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	loginURL := br.redirect(br.get(conf.AuthCodeURL(state, oauth2.S256ChallengeOption(pkce))), "/login")
	page := br.page(br.get(br.redirect(br.get(loginURL), "/login")))
	txPage := br.redirect(br.get(e2eServeScrape(t, regexp.MustCompile(`href="([^"]*purpose=proofing[^"]*)"`), page)), "/login")
	page = br.page(br.get(txPage))
	w, err := walletsim.Enroll(sigCA, authCA, jpkisim.Facts{Name: "山田\u3000太郎", Gender: "1", Birthdate: "319801231", Address: "東京都千代田区霞が関一丁目1番1号"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Approve(context.Background(), front.Client(), e2eServeScrape(t, regexp.MustCompile(`id="applink" href="([^"]+)"`), page), walletsim.FormatJWS); err != nil {
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
			t.Fatalf("transaction %s", st.State)
		}
	}
	action, fields := e2eServeForm(t, br.page(br.get(txPage)))
	consent := br.redirect(br.post(action, fields), "/consent")
	action, fields = e2eServeForm(t, br.page(br.get(consent)))
	fields.Set("action", "allow")
	h := br.get(br.redirect(br.post(action, fields), "/authorize/callback"))
	back, err := h.res.Location()
	if err != nil || back.Query().Get("code") == "" {
		t.Fatalf("callback: %s", h.res.Status)
	}
	code := back.Query().Get("code")
	if _, err := conf.Exchange(rpCtx, code, oauth2.VerifierOption(pkce)); err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	// The code comes back: a replay, which revokes the grant.
	if _, err := conf.Exchange(rpCtx, code, oauth2.VerifierOption(pkce)); err == nil {
		t.Fatal("a replayed code was exchanged")
	}
	// One client address fetching transactions past its limit.
	limited := false
	for range 130 {
		if c, _ := httpGet(t, front.URL+"/wallet/v1/transactions/no-such-tx", front.Client()); c == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("the wallet fetch limit never answered 429")
	}

	_, metrics := httpGet(t, telemetry+"/metrics")
	exposed := exposedFamilies(metrics)
	named := kitMetricNames(t)
	if len(named) < 10 {
		t.Fatalf("the kit names only %v", named)
	}
	// Families whose first series needs an event that a running server
	// cannot be made to produce from outside within a test: a scheduled
	// key rotation comes key_rotation (at least 1 h) after the current
	// key. Prometheus adds `up` itself.
	eventOnly := map[string]string{
		"watashi_signing_key_rotations_total": "first series at the first rotation, >= 1h after start",
		"up":                                  "Prometheus's own",
	}
	var missing []string
	for _, n := range named {
		if !exposed[n] && eventOnly[n] == "" {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Errorf("deploy/monitoring names metrics that /metrics does not expose: %v", missing)
	}
	for n := range eventOnly {
		if !slices.Contains(named, n) {
			t.Errorf("stale exception %s: the kit does not name it", n)
		}
	}
	// The replayed code and the rate limit are on the dashboard.
	for _, series := range []string{`watashi_oidc_token_reuse_total{kind="code"} 1`, `watashi_rate_limited_total{bucket="wallet_fetch"}`,
		`watashi_wallet_submissions_total{outcome="verified"} 1`} {
		if !strings.Contains(metrics, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}

	// The guide's backup and restore, as the ACL user, while the server
	// runs: every command they send is allowed inside the prefix.
	backupFile := filepath.Join(dir, "watashi.wbk")
	if code, out, errs := runKeys(t, "backup", "--config", cfgPath, "--out", backupFile); code != 0 {
		t.Fatalf("backup under the Compose ACL: %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := runKeys(t, "restore", "--config", cfgPath, "--in", backupFile); code != 1 || !strings.Contains(errs, "--force") {
		t.Fatalf("restore over the live store: %d %s", code, errs)
	}
	cfg["store"].(map[string]any)["redis"].(map[string]any)["prefix"] = "watashi:copy:"
	copyCfg, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rc, out, errs := runKeys(t, "restore", "--config", writeFile(t, dir, "copy.yaml", copyCfg), "--in", backupFile, "--json")
	if r := decodeReport(t, out); rc != 0 || r.Restored == 0 || r.Families["acct"] != 1 || len(r.Readable) != 1 {
		t.Fatalf("restore under the Compose ACL: %d %+v\n%s", rc, r, errs)
	}

	cancel()
	if err := <-result; err != nil {
		t.Fatalf("serve: %v\n%s", err, logs.String())
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func httpGet(t *testing.T, u string, client ...*http.Client) (int, string) {
	t.Helper()
	c := http.DefaultClient
	if len(client) > 0 {
		c = client[0]
	}
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// exposedFamilies lists the metric families of a Prometheus exposition.
func exposedFamilies(text string) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = true
		}
	}
	return out
}

var (
	reMetricName = regexp.MustCompile(`\b(watashi_[a-z0-9_]+|go_[a-z0-9_]+|process_[a-z0-9_]+|up)\b`)
	reLabelMatch = regexp.MustCompile(`\{[^}]*\}`)
)

// kitMetricNames collects the metric names of every PromQL expression in
// the dashboard and the alert rules (histogram series folded into their
// family).
func kitMetricNames(t *testing.T) []string {
	t.Helper()
	dir := filepath.Join("..", "..", "deploy", "monitoring")
	var exprs []string
	var dash any
	if err := json.Unmarshal(mustRead(t, filepath.Join(dir, "watashi-dashboard.json")), &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "query") {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(dash)
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Expr, For string
				Labels           map[string]string
				Annotations      map[string]string
			}
		}
	}
	dec := yaml.NewDecoder(strings.NewReader(string(mustRead(t, filepath.Join(dir, "watashi-alerts.yaml")))))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("alert rules: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v: alert, expr and a summary are required", r)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("rule %s: severity %q", r.Alert, s)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("rule %s: for %q", r.Alert, r.For)
				}
			}
			exprs = append(exprs, r.Expr)
		}
	}
	seen := map[string]bool{}
	for _, e := range exprs {
		// Label values ({job=~"$job"}) are not metric names.
		for _, n := range reMetricName.FindAllString(reLabelMatch.ReplaceAllString(e, ""), -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(n, suffix); ok && strings.HasSuffix(base, "_seconds") {
					n = base
				}
			}
			seen[n] = true
		}
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
