package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// TestServeE2ERelyingParty: an RP built on x/oauth2 and go-oidc logs a
// resident in through `watashi serve` as production runs it: no --dev,
// Redis, secrets from files, the simulator CAs as the only anchors with
// OCSP required, and TLS terminated by a reverse proxy in front of the
// public listener (the issuer is the proxy's https URL). The resident
// proves identity with the wallet simulator (signature and
// authentication certificates) on first use.
func TestServeE2ERelyingParty(t *testing.T) {
	redisAddr := storetest.StartRedis(t)
	dir := t.TempDir()

	// The simulator PKI: CA certificates as anchor files, OCSP responders.
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

	// The TLS front's address is the issuer, so it is opened first.
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
	const secret = "a client secret from a file, 32+"
	writeFile(t, dir, "city.secret", []byte(secret+"\n"))
	const redirect = "https://rp.example.test/cb"
	cfg := writeFile(t, dir, "watashi.yaml", []byte(`
issuer: `+issuer+`
listen: 127.0.0.1:0
telemetry_listen: 127.0.0.1:0
trusted_proxies: [127.0.0.1/32]
store:
  type: redis
  # A generous command timeout: CI machines running many test binaries
  # at once have starved redis-server past the 2s default.
  redis: {addrs: [`+redisAddr+`], prefix: "e2e:", timeout: 10s}
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
  - client_id: city
    display_name: 市民ポータル
    token_endpoint_auth_method: client_secret_basic
    client_secret_file: city.secret
    redirect_uris: [`+redirect+`]
    scopes: [offline_access, name, birthdate, gender, address]
`))

	var logs lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan net.Addr, 1)
	result := make(chan error, 1)
	go func() {
		result <- serve(ctx, serveParams{config: cfg, stderr: &logs, ready: func(pub, _ net.Addr) { ready <- pub }})
	}()
	var public net.Addr
	select {
	case public = <-ready:
	case err := <-result:
		t.Fatalf("serve ended before listening: %v\n%s", err, logs.String())
	}
	front.Config.Handler = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(&url.URL{Scheme: "http", Host: public.String()})
		r.Out.Host = r.In.Host
		r.SetXForwarded()
	}}
	front.StartTLS()
	t.Cleanup(front.Close)

	// The RP: discovery, code flow with PKCE, state and nonce.
	rpCtx := oidc.ClientContext(context.Background(), front.Client())
	provider, err := oidc.NewProvider(rpCtx, issuer)
	if err != nil {
		t.Fatalf("discovery through the TLS front: %v", err)
	}
	ep := provider.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	conf := &oauth2.Config{ClientID: "city", ClientSecret: secret, RedirectURL: redirect, Endpoint: ep,
		Scopes: []string{oidc.ScopeOpenID, oidc.ScopeOfflineAccess, "name", "birthdate", "gender", "address"}}
	state, nonce, pkce := oauth2.GenerateVerifier()[:24], oauth2.GenerateVerifier()[:24], oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(pkce))

	// The browser: a cookie jar, every hop seen.
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	br := &e2eServeBrowser{t: t, issuer: issuer, hc: &http.Client{Transport: front.Client().Transport, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}

	ah := br.get(authURL)
	loginURL := br.redirect(ah, "/login")
	h := br.get(loginURL)
	// /authorize sets the browser binding, the login route the others.
	cookies := append(ah.res.Cookies(), h.res.Cookies()...)
	if len(ah.res.Cookies()) == 0 {
		t.Error("the authorization route set no cookie (the browser binding)")
	}
	for _, c := range cookies {
		if !strings.HasPrefix(c.Name, "__Host-") || !c.Secure || !c.HttpOnly {
			t.Errorf("production cookie %s: Secure=%v HttpOnly=%v, want __Host-, Secure, HttpOnly", c.Name, c.Secure, c.HttpOnly)
		}
	}
	if h.res.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS in production")
	}
	page := br.page(br.get(br.redirect(h, "/login")))
	// First time here: switch to identity proofing.
	txPage := br.redirect(br.get(e2eServeScrape(t, regexp.MustCompile(`href="([^"]*purpose=proofing[^"]*)"`), page)), "/login")
	page = br.page(br.get(txPage))

	w, err := walletsim.Enroll(sigCA, authCA, jpkisim.Facts{Name: "山田\u3000太郎", Gender: "1", Birthdate: "319801231", Address: "東京都千代田区霞が関一丁目1番1号"})
	if err != nil {
		t.Fatal(err)
	}
	appLink := e2eServeScrape(t, regexp.MustCompile(`id="applink" href="([^"]+)"`), page)
	if err := w.Approve(context.Background(), front.Client(), appLink, walletsim.FormatJWS); err != nil {
		t.Fatalf("wallet proofing through serve: %v", err)
	}
	statusURL := e2eServeScrape(t, regexp.MustCompile(`data-status-url="([^"]+)"`), page)
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var st struct{ State, Reason string }
		if err := json.Unmarshal([]byte(br.page2(br.get(statusURL), "application/json")), &st); err != nil {
			t.Fatal(err)
		}
		if st.State == "verified" {
			break
		}
		if st.State != "pending" || time.Now().After(end) {
			t.Fatalf("transaction %+v, want verified", st)
		}
	}
	page = br.page(br.get(txPage))
	action, fields := e2eServeForm(t, page)
	consent := br.redirect(br.post(action, fields), "/consent")
	action, fields = e2eServeForm(t, br.page(br.get(consent)))
	fields.Set("action", "allow")
	callback := br.redirect(br.post(action, fields), "/authorize/callback")
	h = br.get(callback)
	if h.res.StatusCode != http.StatusFound {
		t.Fatalf("callback: %s", h.res.Status)
	}
	back, err := url.Parse(h.res.Header.Get("Location"))
	if err != nil || back.Scheme+"://"+back.Host+back.Path != redirect || back.Query().Get("state") != state {
		t.Fatalf("back at the RP with %s", h.res.Header.Get("Location"))
	}

	// The RP's side: exchange, ID token, userinfo.
	tok, err := conf.Exchange(rpCtx, back.Query().Get("code"), oauth2.VerifierOption(pkce))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: "city"}).Verify(rpCtx, rawID)
	if err != nil {
		t.Fatalf("go-oidc refused the ID token: %v", err)
	}
	var claims struct {
		Nonce    string   `json:"nonce"`
		ACR      string   `json:"acr"`
		AMR      []string `json:"amr"`
		AuthTime int64    `json:"auth_time"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if idt.Issuer != issuer || claims.Nonce != nonce || claims.ACR != "aal3" || !slices.Contains(claims.AMR, "hwk") || claims.AuthTime == 0 {
		t.Fatalf("ID token: iss %s, %+v", idt.Issuer, claims)
	}
	ui, err := provider.UserInfo(rpCtx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var facts struct {
		Name, Birthdate, Gender string
		Address                 struct{ Formatted string }
	}
	if err := ui.Claims(&facts); err != nil {
		t.Fatal(err)
	}
	if ui.Subject != idt.Subject || facts.Name != "山田\u3000太郎" || facts.Birthdate != "1980-12-31" || facts.Gender != "male" ||
		facts.Address.Formatted != "東京都千代田区霞が関一丁目1番1号" {
		t.Fatalf("userinfo %s %+v (ID token sub %s)", ui.Subject, facts, idt.Subject)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token for offline_access")
	}
	if _, err := conf.TokenSource(rpCtx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Unix(1, 0)}).Token(); err != nil {
		t.Fatalf("refresh: %v", err)
	}

	cancel()
	if err := <-result; err != nil {
		t.Fatalf("serve: %v\n%s", err, logs.String())
	}
	// The operator traces the RP's sub back to the account, and only
	// with that RP's sector: the same sub at an unknown client, or a sub
	// the RP never got, finds nothing.
	code, found, errs := runKeys(t, "account", "find", "--config", cfg, "--client", "city", "--sub", idt.Subject, "--json")
	var hit struct{ Account, Sub string }
	if code != 0 || json.Unmarshal([]byte(found), &hit) != nil || hit.Account == "" || hit.Sub != idt.Subject {
		t.Fatalf("account find: %d %q %s", code, found, errs)
	}
	if code, _, errs := runKeys(t, "account", "find", "--config", cfg, "--client", "city", "--sub", idt.Subject+"x"); code != exitRefused || !strings.Contains(errs, "no account") {
		t.Fatalf("account find, a sub never issued: %d %s", code, errs)
	}
	if code, _, errs := runKeys(t, "account", "find", "--config", cfg, "--client", "bank", "--sub", idt.Subject); code != exitUsage || !strings.Contains(errs, "no such client") {
		t.Fatalf("account find, unknown client: %d %s", code, errs)
	}

	// What went through the logs: nothing personal, no secret.
	out := logs.String()
	for _, s := range []string{"山田", "1980-12-31", "霞が関", secret, tok.AccessToken, tok.RefreshToken, back.Query().Get("code")} {
		if strings.Contains(out, s) {
			t.Errorf("the logs contain personal data or a secret (%.8q…)", s)
		}
	}
}

type e2eServeBrowser struct {
	t      *testing.T
	issuer string
	hc     *http.Client
}

type e2eServeHop struct {
	res  *http.Response
	body string
}

func (b *e2eServeBrowser) do(req *http.Request) e2eServeHop {
	b.t.Helper()
	res, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return e2eServeHop{res: res, body: string(body)}
}

func (b *e2eServeBrowser) abs(u string) string {
	if strings.HasPrefix(u, "/") {
		return b.issuer + u
	}
	return u
}

func (b *e2eServeBrowser) get(u string) e2eServeHop {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.abs(u), nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *e2eServeBrowser) post(u string, form url.Values) e2eServeHop {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.abs(u), strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.issuer)
	return b.do(req)
}

// redirect checks a redirect inside the provider and returns its target.
func (b *e2eServeBrowser) redirect(h e2eServeHop, pathPrefix string) string {
	b.t.Helper()
	loc, err := h.res.Location()
	if h.res.StatusCode/100 != 3 || err != nil || !strings.HasPrefix(loc.Path, pathPrefix) || !strings.HasPrefix(loc.String(), b.issuer+"/") {
		b.t.Fatalf("%s %s: want a redirect to %s…\n%.500s", h.res.Request.URL.Path, h.res.Status, pathPrefix, h.body)
	}
	return loc.String()
}

func (b *e2eServeBrowser) page(h e2eServeHop) string { return b.page2(h, "text/html") }

func (b *e2eServeBrowser) page2(h e2eServeHop, contentType string) string {
	b.t.Helper()
	if h.res.StatusCode != http.StatusOK || !strings.HasPrefix(h.res.Header.Get("Content-Type"), contentType) {
		b.t.Fatalf("%s %s (%s), want a %s page\n%.800s", h.res.Request.URL.Path, h.res.Status, h.res.Header.Get("Content-Type"), contentType, h.body)
	}
	return h.body
}

func e2eServeScrape(t *testing.T, re *regexp.Regexp, page string) string {
	t.Helper()
	m := re.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("%s not on the page:\n%s", re, page)
	}
	return html.UnescapeString(m[1])
}

var (
	e2eServeFormRe  = regexp.MustCompile(`(?s)<form method="post" action="([^"]*)"[^>]*>(.*?)</form>`)
	e2eServeInputRe = regexp.MustCompile(`<input\b([^>]*)>`)
	e2eServeAttrRe  = regexp.MustCompile(`([a-z][a-z-]*)(?:="([^"]*)")?`)
)

// e2eServeForm returns the first POST form of the page and what a
// browser submits from it: hidden fields, checked radio buttons, and
// every enabled checkbox (the resident ticks all boxes).
func e2eServeForm(t *testing.T, page string) (string, url.Values) {
	t.Helper()
	m := e2eServeFormRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form on the page:\n%s", page)
	}
	v := url.Values{}
	for _, in := range e2eServeInputRe.FindAllStringSubmatch(m[2], -1) {
		attrs := map[string]string{}
		for _, a := range e2eServeAttrRe.FindAllStringSubmatch(in[1], -1) {
			attrs[a[1]] = html.UnescapeString(a[2])
		}
		_, checked := attrs["checked"]
		_, disabled := attrs["disabled"]
		if attrs["name"] == "" || disabled || (attrs["type"] == "radio" && !checked) {
			continue
		}
		v.Add(attrs["name"], attrs["value"])
	}
	return html.UnescapeString(m[1]), v
}
