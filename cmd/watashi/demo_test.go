package main

import (
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// startDemo serves the demo on a loopback listener whose address is the
// issuer, as `watashi demo` does.
func startDemo(t *testing.T) (*demo, *httptest.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDemoWith(ln.Addr().String(), slog.New(slog.DiscardHandler))
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(d.handler)
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	if ts.URL != d.issuer {
		t.Fatalf("server %s, issuer %s", ts.URL, d.issuer)
	}
	return d, ts
}

// demoBrowser is one browser: a cookie jar, redirects followed, Origin
// set on POSTs as browsers do.
type demoBrowser struct {
	t      *testing.T
	hc     *http.Client
	origin string
}

func newDemoBrowser(t *testing.T, origin string) *demoBrowser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &demoBrowser{t: t, hc: &http.Client{Jar: jar}, origin: origin}
}

func (b *demoBrowser) do(method, u string, form url.Values) (int, *url.URL, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept-Language", "en")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", b.origin)
	}
	res, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Request.URL, string(data)
}

func TestDemoServes(t *testing.T) {
	d, ts := startDemo(t)
	b := newDemoBrowser(t, d.issuer)
	tests := []struct {
		path, want string
	}{
		{"/rp/", "Sign in with Watashi"},
		{"/.well-known/openid-configuration", `"issuer":"` + d.issuer + `"`},
		{"/phone/", "SIMULATOR"},
		{"/telemetry/healthz", "ok"},
		{"/telemetry/readyz", "signing_key: ok"},
	}
	for _, tt := range tests {
		code, _, body := b.do("GET", ts.URL+tt.path, nil)
		if code != http.StatusOK || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s: %d, want 200 containing %q\n%.400s", tt.path, code, tt.want, body)
		}
	}
	// The simulator's OCSP responders answer where the verifier looks.
	res, err := http.Post(ts.URL+"/sim/ocsp/0", "application/ocsp-request", strings.NewReader("junk"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Header.Get("Content-Type") != "application/ocsp-response" {
		t.Fatalf("/sim/ocsp/0: %s %s", res.Status, res.Header.Get("Content-Type"))
	}
}

func TestDemoAddr(t *testing.T) {
	for _, addr := range []string{"", "8080", ":8080", "0.0.0.0:8080", "[::]:8080", "127.0.0.1:0", "127.0.0.1:"} {
		if _, err := newDemoWith(addr, slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("newDemoWith(%q) accepted an address the browser cannot use as issuer", addr)
		}
	}
	var out, errb strings.Builder
	if code := run([]string{"demo", "--addr", "0.0.0.0:8080"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "not a wildcard") {
		t.Fatalf("demo with a wildcard address: %d %q", code, errb.String())
	}
}

// TestDemoBusyPort: a port another program holds gets a message that says
// so and how to pick another, not only the system's "address already in
// use".
func TestDemoBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	var out, errb strings.Builder
	code := run([]string{"demo", "--addr", "127.0.0.1:" + port}, &out, &errb)
	msg := errb.String()
	if code != exitUsage || !strings.Contains(msg, "127.0.0.1:"+port+" is already in use") || !strings.Contains(msg, "--addr localhost:") {
		t.Fatalf("demo on a busy port: %d %q", code, msg)
	}
	if out.Len() != 0 {
		t.Errorf("the guide was printed although nothing listens: %q", out.String())
	}
}

var (
	hiddenInput = func(name string) *regexp.Regexp {
		return regexp.MustCompile(`name="` + name + `" value="([^"]*)"`)
	}
	csrfInput  = hiddenInput("csrf_token")
	phoneCSRF  = hiddenInput("csrf")
	phoneTxID  = hiddenInput("txid")
	finishForm = regexp.MustCompile(`action="([^"]*/finish(?:\?[^"]*)?)"`)
	switchLink = regexp.MustCompile(`id="mode-proofing" href="([^"]+)"`)
	// demoClaimBox is an optional claim's checkbox on the consent screen.
	demoClaimBox  = regexp.MustCompile(`<input type="checkbox" id="claim-[a-z_0-9]+" name="claim" value="([a-z_0-9]+)"`)
	consentAction = regexp.MustCompile(`<form method="post" action="(/consent[^"]*)"`)
)

func field(t *testing.T, re *regexp.Regexp, page string) string {
	t.Helper()
	m := re.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("%s not found in page:\n%s", re, page)
	}
	return html.UnescapeString(m[1])
}

// TestDemoSignIn clicks through the demo as its guide says: the RP's
// button, the login page, the phone simulator (enrol, approve), continue,
// consent, and the RP showing what it verified.
func TestDemoSignIn(t *testing.T) {
	d, ts := startDemo(t)
	b := newDemoBrowser(t, d.issuer)

	// 1. "Sign in with Watashi" lands on the login page of a transaction.
	code, loginURL, page := b.do("GET", ts.URL+"/rp/login", nil)
	if code != http.StatusOK || loginURL.Path != "/login" || loginURL.Query().Get("tx") == "" {
		t.Fatalf("RP login: %d %s\n%.500s", code, loginURL, page)
	}
	// First visit: "First time (verify identity)" switches the
	// transaction to identity proofing.
	code, loginURL, page = b.do("GET", ts.URL+field(t, switchLink, page), nil)
	if code != http.StatusOK || loginURL.Query().Get("tx") == "" || !strings.Contains(page, "First time") {
		t.Fatalf("switch to proofing: %d %s\n%.500s", code, loginURL, page)
	}
	txID := loginURL.Query().Get("tx")
	_, _, status := b.do("GET", ts.URL+"/login/tx/"+txID+"/status", nil)
	var st struct {
		State string `json:"state"`
		QR    struct {
			TxURL string `json:"tx_url"`
		} `json:"qr"`
	}
	if err := json.Unmarshal([]byte(status), &st); err != nil || st.State != "pending" || st.QR.TxURL == "" {
		t.Fatalf("status %q: %v", status, err)
	}
	// The same-device link leads to the phone simulator.
	phoneLink := ts.URL + "/phone/?tx=" + url.QueryEscape(st.QR.TxURL)
	if !strings.Contains(html.UnescapeString(page), "/phone/?link=1&tx=") {
		t.Fatalf("login page has no link to the phone simulator:\n%s", page)
	}

	// 2. The phone simulator (its own browser tab, same jar): enrol.
	code, _, phonePage := b.do("GET", phoneLink, nil)
	if code != http.StatusOK {
		t.Fatalf("phone: %d\n%s", code, phonePage)
	}
	code, _, phonePage = b.do("POST", ts.URL+"/phone/enroll", url.Values{
		"csrf": {field(t, phoneCSRF, phonePage)}, "tx": {st.QR.TxURL},
		"family": {"山田"}, "given": {"太郎"}, "birthdate": {"1980-12-31"}, "gender": {"male"}, "address": {"東京都千代田区霞が関一丁目1番1号"},
	})
	if code != http.StatusOK || !strings.Contains(phonePage, `name="txid"`) {
		t.Fatalf("phone enroll: %d\n%s", code, phonePage)
	}
	// 3. Approve (JWS).
	code, _, phonePage = b.do("POST", ts.URL+"/phone/approve", url.Values{
		"csrf": {field(t, phoneCSRF, phonePage)}, "txid": {field(t, phoneTxID, phonePage)}, "format": {"jws"},
	})
	if code != http.StatusOK {
		t.Fatalf("phone approve: %d\n%s", code, phonePage)
	}

	// 4. Continue, consent, back at the RP.
	code, _, page = b.do("GET", loginURL.String(), nil)
	if code != http.StatusOK {
		t.Fatalf("login page after approval: %d\n%s", code, page)
	}
	code, consentURL, page := b.do("POST", ts.URL+field(t, finishForm, page), url.Values{"csrf_token": {field(t, csrfInput, page)}})
	if code != http.StatusOK || consentURL.Path != "/consent" {
		t.Fatalf("finish: %d %s\n%s", code, consentURL, page)
	}
	// The resident ticks every claim the screen offers (sensitive ones,
	// the birth date and the address, start unticked) and allows.
	form := url.Values{"csrf_token": {field(t, csrfInput, page)}, "action": {"allow"}}
	for _, m := range demoClaimBox.FindAllStringSubmatch(page, -1) {
		form.Add("claim", m[1])
	}
	if len(form["claim"]) < 3 {
		t.Fatalf("consent screen offers %v\n%s", form["claim"], page)
	}
	code, rpURL, page := b.do("POST", ts.URL+field(t, consentAction, page), form)
	if code != http.StatusOK || rpURL.Path != "/rp/" {
		t.Fatalf("consent: %d %s\n%s", code, rpURL, page)
	}
	for _, want := range []string{"Signed in as 山田　太郎", `&#34;birthdate&#34;: &#34;1980-12-31&#34;`, `&#34;acr&#34;: &#34;aal3&#34;`, "Userinfo", `&#34;address&#34;`,
		"Claims received", "<code>birthdate</code>"} {
		if !strings.Contains(page, want) {
			t.Errorf("RP page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, "Granted scope") {
		t.Error("the RP page shows the token response's scope")
	}
	// The demo RP's registered logo, fetched by the provider through its
	// guarded fetcher, is served from the provider's origin.
	res, err := b.hc.Get(ts.URL + "/rp-logo/" + demoClientID)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "image/png" {
		t.Errorf("the demo RP's logo: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}

	// 5. Logout goes through end_session and back to the RP's home page.
	code, home, page := b.do("GET", ts.URL+"/rp/logout", nil)
	if code != http.StatusOK || home.Path != "/rp/" || !strings.Contains(page, "Sign in with Watashi") {
		t.Fatalf("logout: %d %s\n%.600s", code, home, page)
	}
}

// TestDemoRPRefuses checks the RP's own guards against a live provider.
func TestDemoRPRefuses(t *testing.T) {
	d, ts := startDemo(t)
	noFollow := func(b *demoBrowser) {
		b.hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}

	b := newDemoBrowser(t, d.issuer)
	if code, _, page := b.do("GET", ts.URL+"/rp/callback?code=x&state=y", nil); code != http.StatusBadRequest || !strings.Contains(page, "login cookie is missing") {
		t.Fatalf("callback without a login: %d\n%s", code, page)
	}

	start := func() (*demoBrowser, url.Values) {
		b := newDemoBrowser(t, d.issuer)
		noFollow(b)
		res, err := b.hc.Get(ts.URL + "/rp/login")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		loc, err := res.Location()
		if res.StatusCode != http.StatusFound || err != nil {
			t.Fatalf("RP login: %d %v", res.StatusCode, err)
		}
		q := loc.Query()
		if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || q.Get("state") == "" || q.Get("nonce") == "" {
			t.Fatalf("authorization request %s", loc)
		}
		return b, q
	}

	b, q := start()
	if code, _, page := b.do("GET", ts.URL+"/rp/callback?code=x&state=forged", nil); code != http.StatusBadRequest || !strings.Contains(page, "state parameter does not match") {
		t.Fatalf("wrong state: %d\n%s", code, page)
	}
	// The login was consumed: the right state no longer works either.
	if code, _, _ := b.do("GET", ts.URL+"/rp/callback?code=x&state="+url.QueryEscape(q.Get("state")), nil); code != http.StatusBadRequest {
		t.Fatalf("replayed callback: %d", code)
	}

	b, q = start()
	code, _, page := b.do("GET", ts.URL+"/rp/callback?error=access_denied&error_description=%3Cscript%3E&state="+url.QueryEscape(q.Get("state")), nil)
	if code != http.StatusOK || !strings.Contains(page, "access_denied") || strings.Contains(page, "<script>") {
		t.Fatalf("error response: %d\n%s", code, page)
	}

	b, q = start()
	code, _, page = b.do("GET", ts.URL+"/rp/callback?code=not-a-code&state="+url.QueryEscape(q.Get("state")), nil)
	if code != http.StatusBadGateway || !strings.Contains(page, "code exchange failed") {
		t.Fatalf("bad code: %d\n%s", code, page)
	}

	if code, _, _ := b.do("POST", ts.URL+"/rp/login", url.Values{}); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /rp/login: %d", code)
	}
}
