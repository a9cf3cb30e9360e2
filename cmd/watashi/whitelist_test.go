package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/store/storetest"
)

// TestServeWhitelist is the operator's and the integrator's day against
// a running `watashi serve` with the whitelist on Redis: an initial
// access token from `client token issue`, registration over HTTP, the
// client pending (error page), `client approve` (into the login),
// `client suspend` refused at /authorize and at the token endpoint
// within one second, `client resume`; and the admin API on its own
// listener. The commands run in-process against the same Redis.
func TestServeWhitelist(t *testing.T) {
	redisAddr := storetest.StartRedis(t)
	dir := t.TempDir()
	token, hashLine := runAdminToken(t)
	hashFile := filepath.Join(dir, "admin.hash")
	if err := os.WriteFile(hashFile, []byte(hashLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // serve binds it again; the issuer must name it beforehand
	issuer := "http://" + addr
	kek, _ := opensslRand(t, dir, "kek.key")
	cfg := writeConfig(t, `issuer: `+issuer+`
dev: true
listen: `+addr+`
telemetry_listen: 127.0.0.1:0
store:
  type: redis
  redis: {addrs: ["`+redisAddr+`"], prefix: "wl:", timeout: 10s}
secrets:
  kek_file: `+kek+`
pki:
  revocation:
    mode: "off"
whitelist:
  enabled: true
  admin_listen: 127.0.0.1:0
  admin_token_hash_file: `+hashFile+`
`)
	base := []string{"--config", cfg, "--dev"}

	var logs lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	adminAddr := make(chan net.Addr, 1)
	result := make(chan error, 1)
	go func() {
		result <- serve(ctx, serveParams{config: cfg, dev: true, stderr: &logs,
			ready: func(net.Addr, net.Addr) { close(ready) }, adminReady: func(a net.Addr) { adminAddr <- a }})
	}()
	select {
	case <-ready:
	case err := <-result:
		t.Fatalf("serve ended before listening: %v\n%s", err, logs.String())
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	// The operator issues an initial access token with the CLI.
	iat := runJSON(t, append([]string{"client", "token", "issue", "--tier", "standard", "--ttl", "1h", "--json"}, base...)...)
	tok, _ := iat["initial_access_token"].(string)
	if tok == "" {
		t.Fatalf("token issue: %v", iat)
	}

	// The integrator registers over HTTP.
	const redirect = "https://integrator.example.test/cb"
	body := `{"redirect_uris":["` + redirect + `"],"client_name":"Integrator","organization_name":"Integrator KK",` +
		`"token_endpoint_auth_method":"client_secret_basic","grant_types":["authorization_code","refresh_token"],"response_types":["code"]}`
	req, _ := http.NewRequest(http.MethodPost, issuer+"/register", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var reg struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		Status       string `json:"status"`
	}
	_ = json.NewDecoder(res.Body).Decode(&reg)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated || reg.ClientID == "" || reg.Status != "pending" {
		t.Fatalf("registration: %s %+v", res.Status, reg)
	}

	ep := oauth2.Endpoint{AuthURL: issuer + "/authorize", TokenURL: issuer + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}
	conf := &oauth2.Config{ClientID: reg.ClientID, ClientSecret: reg.ClientSecret, RedirectURL: redirect, Endpoint: ep,
		Scopes: []string{"openid", "name"}}
	// authorize: true = into the login, false = the error page (never a
	// redirect to the RP).
	authorize := func() bool {
		t.Helper()
		u := conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("nonce", "n"))
		res, err := hc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		switch {
		case res.StatusCode == http.StatusFound && strings.HasPrefix(res.Header.Get("Location"), "/login"):
			return true
		case res.StatusCode == http.StatusBadRequest && res.Header.Get("Location") == "":
			return false
		}
		t.Fatalf("authorize: %s Location %q", res.Status, res.Header.Get("Location"))
		return false
	}
	// tokenAccepted: the refresh grant authenticates the client first;
	// invalid_grant means it passed, invalid_client that it was refused.
	tokenAccepted := func() bool {
		t.Helper()
		_, err := conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: "bogus", Expiry: time.Unix(1, 0)}).Token()
		re, ok := err.(*oauth2.RetrieveError)
		if !ok {
			t.Fatalf("refresh: %v", err)
		}
		switch re.ErrorCode {
		case "invalid_grant":
			return true
		case "invalid_client":
			return false
		}
		t.Fatalf("refresh: %v", err)
		return false
	}
	if authorize() || tokenAccepted() {
		t.Fatal("a pending client is accepted")
	}
	runJSON(t, append([]string{"client", "approve", reg.ClientID, "--reason", "contract signed", "--json"}, base...)...)
	if !authorize() || !tokenAccepted() {
		t.Fatal("an approved client is refused")
	}
	var lat []time.Duration
	for range 5 {
		start := time.Now()
		runJSON(t, append([]string{"client", "suspend", reg.ClientID, "--reason", "incident", "--json"}, base...)...)
		for authorize() || tokenAccepted() {
			if time.Since(start) > time.Second {
				t.Fatal("the suspended client is still accepted after 1 s")
			}
		}
		lat = append(lat, time.Since(start))
		runJSON(t, append([]string{"client", "resume", reg.ClientID, "--json"}, base...)...)
		if !authorize() || !tokenAccepted() {
			t.Fatal("a resumed client is refused")
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("CLI suspend to refusal by the server (command run included): median %v", lat[len(lat)/2])

	// The admin API, on its own listener only.
	adm := <-adminAddr
	get := func(base, tok string) int {
		req, _ := http.NewRequest(http.MethodGet, base+"/whitelist/clients", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := get("http://"+adm.String(), token); code != http.StatusOK {
		t.Errorf("admin API with the token: %d", code)
	}
	if code := get("http://"+adm.String(), ""); code != http.StatusUnauthorized {
		t.Errorf("admin API without a token: %d", code)
	}
	if code := get(issuer, token); code == http.StatusOK {
		t.Error("the admin API answers on the public listener")
	}
	cancel()
	if err := <-result; err != nil {
		t.Fatalf("serve: %v\n%s", err, logs.String())
	}
	if strings.Contains(logs.String(), reg.ClientSecret) || strings.Contains(logs.String(), tok) {
		t.Error("the logs contain a secret")
	}
}

func runAdminToken(t *testing.T) (token, hash string) {
	t.Helper()
	out := runJSON(t, "client", "admin-token", "--json")
	token, _ = out["token"].(string)
	hash, _ = out["hash"].(string)
	if token == "" || hash == "" {
		t.Fatalf("admin-token: %v", out)
	}
	return token, hash
}

// TestDemoRegistration: the demo's guide prints an initial access token,
// and the curl registration it shows works against the demo (approved at
// once), while the static demo RP stays.
func TestDemoRegistration(t *testing.T) {
	d, ts := startDemo(t)
	var guide strings.Builder
	d.guide(&guide)
	if d.iat == "" || !strings.Contains(guide.String(), "Bearer "+d.iat) || !strings.Contains(guide.String(), ts.URL+"/register") {
		t.Fatalf("guide lacks the registration example:\n%s", guide.String())
	}
	body := `{"redirect_uris":["http://127.0.0.1:9999/cb"],"client_name":"My RP","organization_name":"Me",` +
		`"token_endpoint_auth_method":"client_secret_basic"}`
	for _, tc := range []struct {
		name, token string
		want        int
	}{{"with the printed token", d.iat, http.StatusCreated}, {"with another token", "not-the-token", http.StatusUnauthorized}} {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/register", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tc.token)
		req.Header.Set("Content-Type", "application/json")
		res, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			ClientID string `json:"client_id"`
			Status   string `json:"status"`
		}
		_ = json.NewDecoder(res.Body).Decode(&out)
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Fatalf("%s: %s", tc.name, res.Status)
		}
		if tc.want == http.StatusCreated && (out.ClientID == "" || out.Status != "approved") {
			t.Fatalf("%s: %+v, want an approved client", tc.name, out)
		}
	}
}
