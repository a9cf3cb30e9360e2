package walletsim_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/watashi-id/watashi/idp"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// demo is a provider with the phone page mounted as `watashi demo` does.
type demo struct {
	t      *testing.T
	issuer string
	ts     *httptest.Server
}

func newDemo(t *testing.T) *demo {
	t.Helper()
	sigCA, err := jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindSignature})
	if err != nil {
		t.Fatal(err)
	}
	authCA, err := jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindAuthentication})
	if err != nil {
		t.Fatal(err)
	}
	rev := httptest.NewServer(jpkisim.NewRevocationServer(sigCA, authCA))
	t.Cleanup(rev.Close)
	anchors, err := pkibridge.NewAnchors(sigCA.Cert, authCA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	checker, err := pkibridge.NewChecker(nil, []string{rev.URL + "/ocsp/0", rev.URL + "/ocsp/1"}, nil, pkibridge.CheckerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	issuer := "http://" + ts.Listener.Addr().String()
	s, err := idp.New(context.Background(), idp.Options{
		Issuer:   issuer,
		Dev:      true,
		Store:    store.NewMemory(),
		Verifier: &pkibridge.Verifier{Anchors: anchors, Policy: pkibridge.DefaultPolicy(), Revocation: checker},
		Clients: []*clients.Client{{ID: "demo-rp", DisplayName: "Demo RP", AuthMethod: "none",
			RedirectURIs: []string{"https://rp.example/cb"}, Scopes: []string{"name", "birthdate"}}},
		PairwiseKey:   []byte("pairwise-key-for-tests-0123456789abcdef"),
		CookieKey:     []byte("cookie-key-for-tests-0123456789abcdef"),
		DemoWalletURL: issuer + "/phone/",
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/phone/", walletsim.PhoneHandler(sigCA, authCA, ts.Client()))
	mux.Handle("/", s.Handler())
	ts.Config.Handler = mux
	ts.Start()
	t.Cleanup(ts.Close)
	return &demo{t: t, issuer: issuer, ts: ts}
}

type agent struct {
	t  *testing.T
	d  *demo
	hc *http.Client
}

func (d *demo) agent() *agent {
	jar, _ := cookiejar.New(nil)
	return &agent{t: d.t, d: d, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (a *agent) do(method, u string, form url.Values) (int, string, string) {
	a.t.Helper()
	if strings.HasPrefix(u, "/") {
		u = a.d.issuer + u
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		a.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", a.d.issuer)
	}
	res, err := a.hc.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("Location"), string(b)
}

func find(t *testing.T, re, page string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("%s not found in:\n%s", re, page)
	}
	return html.UnescapeString(m[1])
}

// startLogin runs the RP's authorize and opens a transaction of purpose
// in browser b; it returns the phone link and the browser's code.
func (d *demo) startLogin(b *agent, purpose string) (phoneLink, code, txID string) {
	d.t.Helper()
	sum := sha256.Sum256([]byte("verifier-verifier-verifier-verifier-verifier"))
	q := url.Values{"client_id": {"demo-rp"}, "redirect_uri": {"https://rp.example/cb"}, "response_type": {"code"},
		"scope": {"openid name"}, "state": {"st"}, "code_challenge_method": {"S256"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}}
	st, loc, body := b.do(http.MethodGet, "/authorize?"+q.Encode(), nil)
	if st != http.StatusFound {
		d.t.Fatalf("authorize: %d %s", st, body)
	}
	if purpose != "" {
		loc += "&purpose=" + purpose
	}
	st, loc, _ = b.do(http.MethodGet, loc, nil)
	if st != http.StatusSeeOther {
		d.t.Fatalf("login: %d", st)
	}
	u, _ := url.Parse(loc)
	_, _, page := b.do(http.MethodGet, loc, nil)
	return find(d.t, `id="applink" href="([^"]+)"`, page), find(d.t, `id="code"[^>]*>([^<]+)<`, page), u.Query().Get("tx")
}

// TestPhoneSimulator clicks through the demo: enroll on the phone page,
// open the login page's link, compare the codes, approve; the browser
// sees the transaction verified.
func TestPhoneSimulator(t *testing.T) {
	d := newDemo(t)
	browser, phone := d.agent(), d.agent()

	link, code, _ := d.startLogin(browser, "")
	if !strings.HasPrefix(link, d.issuer+"/phone/?link=1&tx=") {
		t.Fatalf("app link in demo mode: %s", link)
	}
	// Not enrolled yet: the phone page asks for the facts first.
	st, _, page := phone.do(http.MethodGet, link, nil)
	if st != http.StatusOK || !strings.Contains(page, `action="enroll"`) || !strings.Contains(page, "SIMULATOR") {
		t.Fatalf("enroll form: %d\n%s", st, page)
	}
	csrf := find(t, `name="csrf" value="([^"]+)"`, page)
	tx := find(t, `name="tx" value="([^"]+)"`, page)
	form := url.Values{"csrf": {csrf}, "tx": {tx}, "link": {find(t, `name="link" value="([^"]+)"`, page)},
		"family": {"山田"}, "given": {"太郎"}, "birthdate": {"1980-12-31"}, "gender": {"male"}, "address": {"東京都千代田区"}}

	// Bad input is refused with the form kept.
	bad := url.Values{}
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("birthdate", "31.12.1980")
	if st, _, p := phone.do(http.MethodPost, "/phone/enroll", bad); st != http.StatusBadRequest || !strings.Contains(p, `value="山田"`) {
		t.Fatalf("bad birth date: %d", st)
	}
	// A forged form token is refused.
	forged := url.Values{}
	for k, v := range form {
		forged[k] = v
	}
	forged.Set("csrf", "x")
	if st, _, _ := phone.do(http.MethodPost, "/phone/enroll", forged); st != http.StatusForbidden {
		t.Fatalf("forged token: %d", st)
	}

	st, loc, _ := phone.do(http.MethodPost, "/phone/enroll", form)
	if st != http.StatusSeeOther {
		t.Fatalf("enroll: %d", st)
	}
	// First use: sign-in is refused with not_enrolled.
	if !strings.HasPrefix(loc, "/phone/?link=1&tx=") {
		t.Fatalf("enroll redirect: %q", loc)
	}
	_, _, page = phone.do(http.MethodGet, loc, nil)
	if got := find(t, `class="code">([^<]+)<`, page); got != code {
		t.Fatalf("phone shows code %q, browser %q", got, code)
	}
	approve := url.Values{"csrf": {find(t, `name="csrf" value="([^"]+)"`, page)}, "txid": {find(t, `name="txid" value="([^"]+)"`, page)}, "format": {"cms"}}
	// Said in words (both languages), the provider's code apart.
	if st, _, p := phone.do(http.MethodPost, "/phone/approve", approve); st != http.StatusBadRequest || !strings.Contains(p, "<code>not_enrolled</code>") ||
		!strings.Contains(p, "はじめての方") || strings.Contains(p, "HTTP 400") {
		t.Fatalf("sign-in before proofing: %d\n%s", st, p)
	}

	// Proofing from the same phone.
	link, code, txID := d.startLogin(browser, "proofing")
	_, _, page = phone.do(http.MethodGet, link, nil)
	if got := find(t, `class="code">([^<]+)<`, page); got != code || !strings.Contains(page, "signature, authentication") {
		t.Fatalf("proofing page: code %q vs %q\n%s", got, code, page)
	}
	// Opened through the browser's link: after approving, the phone goes
	// back to the browser by the transaction's return URL.
	approve = url.Values{"csrf": {find(t, `name="csrf" value="([^"]+)"`, page)}, "txid": {find(t, `name="txid" value="([^"]+)"`, page)},
		"format": {"raw"}, "link": {find(t, `name="link" value="([^"]+)"`, page)}}
	if st, loc, p := phone.do(http.MethodPost, "/phone/approve", approve); st != http.StatusSeeOther || loc != d.issuer+"/login/tx/"+txID+"/return" {
		t.Fatalf("approve: %d %q\n%s", st, loc, p)
	}
	_, _, status := browser.do(http.MethodGet, "/login/tx/"+txID+"/status", nil)
	var s struct{ State string }
	if err := json.Unmarshal([]byte(status), &s); err != nil || s.State != "verified" {
		t.Fatalf("browser status: %s", status)
	}
	// Approving the same transaction again, or coming Back to it: the
	// phone says it answered already, and leads back to the browser.
	if st, loc, _ := phone.do(http.MethodPost, "/phone/approve", approve); st != http.StatusSeeOther || loc != d.issuer+"/login/tx/"+txID+"/return" {
		t.Fatalf("second approve: %d %q", st, loc)
	}
	if st, _, p := phone.do(http.MethodGet, link, nil); st != http.StatusOK || !strings.Contains(p, "already answered") || !strings.Contains(p, `id="phone-return"`) || strings.Contains(p, `action="approve"`) {
		t.Fatalf("back to the answered transaction: %d\n%s", st, p)
	}
}

func TestPhoneRefusesForeignURLs(t *testing.T) {
	d := newDemo(t)
	phone := d.agent()
	_, _, page := phone.do(http.MethodGet, "/phone/", nil)
	csrf := find(t, `name="csrf" value="([^"]+)"`, page)
	form := url.Values{"csrf": {csrf}, "tx": {""}, "family": {"佐藤"}, "given": {"花子"}, "birthdate": {"2000-01-01"}, "gender": {"female"}, "address": {"京都府"}}
	if st, _, _ := phone.do(http.MethodPost, "/phone/enroll", form); st != http.StatusSeeOther {
		t.Fatalf("enroll: %d", st)
	}
	for _, u := range []string{
		"https://evil.example/wallet/v1/transactions/x?qr_token=1.x",
		"http://169.254.169.254/latest/meta-data",
		"not a url",
	} {
		if st, _, _ := phone.do(http.MethodGet, "/phone/?tx="+url.QueryEscape(u), nil); st != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", u, st)
		}
	}
	if st, _, _ := phone.do(http.MethodPut, "/phone/", nil); st != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", st)
	}
	if st, _, _ := phone.do(http.MethodGet, "/phone/approve", nil); st != http.StatusMethodNotAllowed {
		t.Errorf("GET approve: %d", st)
	}
	if st, _, p := phone.do(http.MethodPost, "/phone/reset", url.Values{"csrf": {csrf}}); st != http.StatusOK || !strings.Contains(p, `action="enroll"`) {
		t.Errorf("reset: %d", st)
	}
}

// enrolled is a phone page agent that has enrolled (proofing needs no
// earlier certificate).
func (d *demo) enrolledPhone() *agent {
	d.t.Helper()
	phone := d.agent()
	_, _, page := phone.do(http.MethodGet, "/phone/", nil)
	form := url.Values{"csrf": {find(d.t, `name="csrf" value="([^"]+)"`, page)}, "tx": {""},
		"family": {"佐藤"}, "given": {"花子"}, "birthdate": {"2000-01-01"}, "gender": {"female"}, "address": {"京都府"}}
	if st, _, _ := phone.do(http.MethodPost, "/phone/enroll", form); st != http.StatusSeeOther {
		d.t.Fatalf("enroll: %d", st)
	}
	return phone
}

// TestPhoneDeclines: "decline" and "the codes differ" reach the
// provider, which ends the browser's wait with the reason; opened with a
// pasted URL (another device) the phone stays put and says where to look,
// opened through the browser's link it goes back to the browser.
func TestPhoneDeclines(t *testing.T) {
	d := newDemo(t)
	phone := d.enrolledPhone()
	for _, c := range []struct {
		button, reason string
		link           bool
	}{
		{"deny", "declined", false},
		{"differ", "comparison_mismatch", false},
		{"deny", "declined", true},
		{"differ", "comparison_mismatch", true},
	} {
		t.Run(fmt.Sprintf("%s link=%v", c.button, c.link), func(t *testing.T) {
			browser := d.agent()
			link, _, txID := d.startLogin(browser, "proofing")
			open := link
			if !c.link {
				u, _ := url.Parse(link)
				open = "/phone/?" + url.Values{"tx": {u.Query().Get("tx")}}.Encode() // pasted, as if scanned
			}
			_, _, page := phone.do(http.MethodGet, open, nil)
			form := url.Values{"csrf": {find(t, `name="csrf" value="([^"]+)"`, page)}, "txid": {find(t, `name="txid" value="([^"]+)"`, page)}}
			if c.link {
				form.Set("link", find(t, `name="link" value="([^"]+)"`, page))
			} else if strings.Contains(page, `name="link"`) {
				t.Fatal("a pasted URL is taken for the same device")
			}
			st, loc, p := phone.do(http.MethodPost, "/phone/"+c.button, form)
			switch {
			case c.link && (st != http.StatusSeeOther || loc != d.issuer+"/login/tx/"+txID+"/return"):
				t.Fatalf("same device: %d %q\n%s", st, loc, p)
			case !c.link && (st != http.StatusOK || loc != "" || !strings.Contains(p, `id="phone-done"`) || strings.Contains(p, `id="phone-return"`)):
				t.Fatalf("other device: %d %q\n%s", st, loc, p)
			}
			_, _, status := browser.do(http.MethodGet, "/login/tx/"+txID+"/status", nil)
			var s struct{ State, Reason string }
			if err := json.Unmarshal([]byte(status), &s); err != nil || s.State != "failed" || s.Reason != c.reason {
				t.Fatalf("browser status: %s", status)
			}
		})
	}
}
