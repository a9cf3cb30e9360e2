package idp_test

// End-to-end tests written as an independent relying party: they use only
// the exported API of idp (New, Options, Client, HashClientSecret,
// Handler), the wallet simulator, and off-the-shelf client libraries
// (golang.org/x/oauth2 and coreos/go-oidc). The provider runs on a real
// loopback listener, the browser is an http.Client with a cookie jar that
// does not follow redirects (every hop is checked), and it finds its way
// through the HTML pages as a browser would: links, forms, hidden fields.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"html"
	"io"
	"mime"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

const (
	e2eSecret = "e2e client secret, long enough"
	// The RP's redirect hosts are never contacted: the browser stops at
	// the redirect and hands the URL to the RP code, as a browser would
	// hand it to the RP's server.
	e2eCityRedirect  = "https://city.example.test/cb"
	e2eCity2Redirect = "https://city.example.test/cb2" // same sector
	e2eShopRedirect  = "https://shop.example.test/cb"  // another sector
)

var e2eScopes = []string{oidc.ScopeOpenID, oidc.ScopeOfflineAccess, "name", "birthdate", "gender", "address"}

// Taro's basic four facts as his signature certificate carries them, and
// what the RP must receive for them.
var (
	e2eTaro = jpkisim.Facts{Name: "山田\u3000太郎", Gender: "1", Birthdate: "319801231",
		Address: "東京都千代田区霞が関一丁目1番1号"}
	e2eHanako = jpkisim.Facts{Name: "佐藤\u3000花子", Gender: "2", Birthdate: "420000101", Address: "京都府京都市上京区"}
)

// e2ePKI is the simulator PKI: two CAs, their OCSP responders on a
// loopback listener, a pool of RSA keys (generation dominates run time;
// certificates are issued fresh per wallet) and the client secret hash
// (Argon2id, also slow). Shared by every test of the binary.
type e2ePKI struct {
	sigCA, authCA *jpkisim.CA
	revURL        string
	keys          []*rsa.PrivateKey
	next          atomic.Uint64
	secretHash    string
}

var (
	e2eOnce sync.Once
	e2eVal  *e2ePKI
	e2eErr  error
)

func e2eSim(t testing.TB) *e2ePKI {
	t.Helper()
	e2eOnce.Do(func() {
		p := &e2ePKI{}
		if p.sigCA, e2eErr = jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindSignature}); e2eErr != nil {
			return
		}
		if p.authCA, e2eErr = jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindAuthentication}); e2eErr != nil {
			return
		}
		for range 4 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				e2eErr = err
				return
			}
			p.keys = append(p.keys, k)
		}
		if p.secretHash, e2eErr = clients.HashSecret(e2eSecret); e2eErr != nil {
			return
		}
		// Never closed: shared by every test of the binary.
		p.revURL = httptest.NewServer(jpkisim.NewRevocationServer(p.sigCA, p.authCA)).URL
		e2eVal = p
	})
	if e2eErr != nil {
		t.Fatalf("simulator PKI: %v", e2eErr)
	}
	return e2eVal
}

// verifier trusts only the two simulator CAs and requires a revocation
// answer from their OCSP responders. Each provider gets its own (its
// own OCSP cache), as each node of a deployment has.
func (p *e2ePKI) verifier(t testing.TB) *pkibridge.Verifier {
	t.Helper()
	anchors, err := pkibridge.NewAnchors(p.sigCA.Cert, p.authCA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	chk, err := pkibridge.NewChecker(nil, []string{p.revURL + "/ocsp/0", p.revURL + "/ocsp/1"}, nil, pkibridge.CheckerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &pkibridge.Verifier{Anchors: anchors, Policy: pkibridge.DefaultPolicy(), Revocation: chk, Mode: pkibridge.RevocationRequire}
}

func (p *e2ePKI) key() *rsa.PrivateKey { return p.keys[p.next.Add(1)%uint64(len(p.keys))] }

// wallet enrolls a resident: a signature certificate with facts and a
// user-authentication certificate, from the trusted CAs.
func (p *e2ePKI) wallet(t testing.TB, f jpkisim.Facts) *walletsim.Wallet {
	t.Helper()
	w, err := walletsim.EnrollWith(p.sigCA, p.authCA, f, walletsim.EnrollOptions{SigKey: p.key(), AuthKey: p.key()})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func e2eClients(hash string) []*clients.Client {
	scopes := []string{"offline_access", "name", "birthdate", "gender", "address"}
	return []*clients.Client{
		{ID: "city", DisplayName: "市民ポータル", Purpose: "住民票の写しのオンライン請求", AuthMethod: "client_secret_basic",
			SecretHash: hash, RedirectURIs: []string{e2eCityRedirect}, Scopes: scopes},
		{ID: "city-2", DisplayName: "市民ポータル (2)", AuthMethod: "client_secret_basic",
			SecretHash: hash, RedirectURIs: []string{e2eCity2Redirect}, Scopes: scopes},
		{ID: "shop", DisplayName: "Example Shop", AuthMethod: "client_secret_basic",
			SecretHash: hash, RedirectURIs: []string{e2eShopRedirect}, Scopes: scopes},
	}
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// e2eOP is a running provider.
type e2eOP struct {
	t      testing.TB
	ts     *httptest.Server
	issuer string
	kv     store.KV
	opts   idp.Options
	hc     *http.Client // trusts the listener's certificate; follows no redirects
	pki    *e2ePKI
	front  *swapHandler
}

type opSetup struct {
	kv  store.KV
	tls bool // https listener and production mode (Dev false)
}

// swapHandler is the load balancer in front of the provider: tests put
// another node of the same deployment behind the same issuer URL.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}
func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

func startOP(t testing.TB, s opSetup) *e2eOP {
	t.Helper()
	pki := e2eSim(t)
	ts := httptest.NewUnstartedServer(nil)
	scheme := "http"
	if s.tls {
		scheme = "https"
	}
	issuer := scheme + "://" + ts.Listener.Addr().String()
	o := idp.Options{Issuer: issuer, Dev: !s.tls, Store: s.kv, Verifier: pki.verifier(t), Clients: e2eClients(pki.secretHash),
		PairwiseKey: randomBytes(t, 32), CookieKey: randomBytes(t, 32), KEK: seal.GenerateRing()}
	copy(o.TokenKey[:], randomBytes(t, 32))
	srv, err := idp.New(context.Background(), o)
	if err != nil {
		ts.Close()
		t.Fatalf("idp.New: %v", err)
	}
	front := &swapHandler{}
	front.set(srv.Handler())
	ts.Config.Handler = front
	if s.tls {
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(ts.Close)
	if ts.URL != issuer {
		t.Fatalf("listener %s, issuer %s", ts.URL, issuer)
	}
	hc := ts.Client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &e2eOP{t: t, ts: ts, issuer: issuer, kv: s.kv, opts: o, hc: hc, pki: pki, front: front}
}

// withT is op for a subtest: failures go to the subtest's t.
func (op *e2eOP) withT(t testing.TB) *e2eOP { c := *op; c.t = t; return &c }

// node puts another node of the same deployment (same store, issuer and
// secrets; its own verifier and OCSP cache; options changed by mutate)
// behind the issuer URL until the returned function restores the first.
func (op *e2eOP) node(mutate func(*idp.Options)) (restore func()) {
	op.t.Helper()
	o := op.opts
	o.Verifier = op.pki.verifier(op.t)
	if mutate != nil {
		mutate(&o)
	}
	srv, err := idp.New(context.Background(), o)
	if err != nil {
		op.t.Fatalf("second node: %v", err)
	}
	first := op.front.h.Load()
	op.front.set(srv.Handler())
	return func() { op.front.h.Store(first) }
}

func memoryStore(testing.TB) store.KV { return store.NewMemory() }

func redisStore(t testing.TB) store.KV {
	t.Helper()
	kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{storetest.StartRedis(t)}, Prefix: "e2e:"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	return kv
}

var e2eStores = []struct {
	name string
	kv   func(testing.TB) store.KV
}{{"memory", memoryStore}, {"redis", redisStore}}

// ---------------------------------------------------------------------------
// The relying party: x/oauth2 + go-oidc, nothing from watashi.

type relyingParty struct {
	t        testing.TB
	ctx      context.Context
	provider *oidc.Provider
	conf     *oauth2.Config
	verifier *oidc.IDTokenVerifier
	meta     struct {
		Introspection string   `json:"introspection_endpoint"`
		Revocation    string   `json:"revocation_endpoint"`
		SubjectTypes  []string `json:"subject_types_supported"`
		PKCEMethods   []string `json:"code_challenge_methods_supported"`
		ResponseTypes []string `json:"response_types_supported"`
		Claims        []string `json:"claims_supported"`
	}
	hc     *http.Client
	issuer string
}

func (op *e2eOP) rp(clientID, redirect string, scopes ...string) *relyingParty {
	t := op.t
	t.Helper()
	// go-oidc keeps this client for its JWKS fetches.
	ctx := oidc.ClientContext(context.Background(), op.ts.Client())
	p, err := oidc.NewProvider(ctx, op.issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	rp := &relyingParty{t: t, ctx: ctx, provider: p, hc: op.ts.Client(), issuer: op.issuer}
	if err := p.Claims(&rp.meta); err != nil {
		t.Fatal(err)
	}
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader // client_secret_basic
	if len(scopes) == 0 {
		scopes = e2eScopes
	}
	rp.conf = &oauth2.Config{ClientID: clientID, ClientSecret: e2eSecret, RedirectURL: redirect, Endpoint: ep, Scopes: scopes}
	rp.verifier = p.Verifier(&oidc.Config{ClientID: clientID})
	return rp
}

func (rp *relyingParty) withT(t testing.TB) *relyingParty { c := *rp; c.t = t; return &c }

// attempt is one authorization request as the RP remembers it.
type attempt struct {
	state, nonce, pkce string
	url                string
}

func randomString() string { return oauth2.GenerateVerifier()[:32] }

func (rp *relyingParty) begin(extra ...oauth2.AuthCodeOption) *attempt {
	a := &attempt{state: randomString(), nonce: randomString(), pkce: oauth2.GenerateVerifier()}
	opts := append([]oauth2.AuthCodeOption{oidc.Nonce(a.nonce), oauth2.S256ChallengeOption(a.pkce)}, extra...)
	a.url = rp.conf.AuthCodeURL(a.state, opts...)
	return a
}

// login is what the RP holds after a successful callback.
type login struct {
	tok    *oauth2.Token
	idt    *oidc.IDToken
	claims map[string]any
}

// callback checks the redirect the browser brought back (our redirect
// URI, our state), exchanges the code with the PKCE verifier and verifies
// the ID token, nonce included.
func (rp *relyingParty) callback(a *attempt, u *url.URL) *login {
	t := rp.t
	t.Helper()
	if got := u.Scheme + "://" + u.Host + u.Path; got != rp.conf.RedirectURL {
		t.Fatalf("redirected to %s, want %s", got, rp.conf.RedirectURL)
	}
	q := u.Query()
	if q.Get("state") != a.state {
		t.Fatalf("state %q, want %q", q.Get("state"), a.state)
	}
	if q.Get("error") != "" || q.Get("code") == "" {
		t.Fatalf("callback without a code: %s", u.Redacted())
	}
	if iss := q.Get("iss"); iss != "" && iss != rp.issuer {
		t.Fatalf("iss %q in the response (RFC 9207) is not the issuer", iss)
	}
	tok, err := rp.conf.Exchange(rp.ctx, q.Get("code"), oauth2.VerifierOption(a.pkce))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	l := &login{tok: tok}
	l.idt, l.claims = rp.verifyIDToken(tok)
	if l.idt.Nonce != a.nonce {
		t.Fatalf("ID token nonce %q, want %q", l.idt.Nonce, a.nonce)
	}
	return l
}

func (rp *relyingParty) verifyIDToken(tok *oauth2.Token) (*oidc.IDToken, map[string]any) {
	t := rp.t
	t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("token response without id_token")
	}
	idt, err := rp.verifier.Verify(rp.ctx, raw)
	if err != nil {
		t.Fatalf("go-oidc refused the ID token: %v", err)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	return idt, claims
}

// exchangeErr exchanges a code and returns the OAuth error code ("" on
// success).
func (rp *relyingParty) exchangeErr(code string, opts ...oauth2.AuthCodeOption) (*oauth2.Token, string) {
	tok, err := rp.conf.Exchange(rp.ctx, code, opts...)
	return tok, oauthError(rp.t, err)
}

func oauthError(t testing.TB, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode == "" {
		t.Fatalf("not an OAuth error response: %v", err)
	}
	return re.ErrorCode
}

func (rp *relyingParty) refresh(rt string) (*oauth2.Token, string) {
	tok, err := rp.conf.TokenSource(rp.ctx, &oauth2.Token{RefreshToken: rt, Expiry: time.Unix(1, 0)}).Token()
	return tok, oauthError(rp.t, err)
}

// userinfo returns the claims, or the HTTP status of the refusal.
func (rp *relyingParty) userinfo(tok *oauth2.Token) (*oidc.UserInfo, int) {
	t := rp.t
	t.Helper()
	ui, err := rp.provider.UserInfo(rp.ctx, oauth2.StaticTokenSource(tok))
	if err == nil {
		return ui, http.StatusOK
	}
	// go-oidc reports "<status text>: body"; read the status ourselves.
	req, _ := http.NewRequest(http.MethodGet, rp.provider.UserInfoEndpoint(), nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	res, rerr := rp.hc.Do(req)
	if rerr != nil {
		t.Fatal(rerr)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK {
		t.Fatalf("go-oidc userinfo failed but the endpoint answers 200: %v", err)
	}
	return nil, res.StatusCode
}

// backChannel posts a form with client_secret_basic and decodes the JSON.
func (rp *relyingParty) backChannel(endpoint string, form url.Values) (int, map[string]any) {
	t := rp.t
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(rp.conf.ClientID), url.QueryEscape(rp.conf.ClientSecret))
	res, err := rp.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(res.Body).Decode(&m)
	return res.StatusCode, m
}

func (rp *relyingParty) active(token string) bool {
	rp.t.Helper()
	code, m := rp.backChannel(rp.meta.Introspection, url.Values{"token": {token}})
	if code != http.StatusOK {
		rp.t.Fatalf("introspection: %d %v", code, m)
	}
	return m["active"] == true
}

// ---------------------------------------------------------------------------
// The browser.

type browser struct {
	t  testing.TB
	op *e2eOP
	hc *http.Client
}

func (op *e2eOP) browser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		op.t.Fatal(err)
	}
	return &browser{t: op.t, op: op, hc: &http.Client{
		Transport:     op.ts.Client().Transport,
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// withT is the same browser (same cookies) reporting to a subtest's t.
func (b *browser) withT(t testing.TB) *browser { c := *b; c.t = t; return &c }

// hop is one response as the browser sees it; loc is resolved against the
// request URL.
type hop struct {
	status int
	loc    *url.URL
	body   string
	header http.Header
	url    *url.URL
}

func (h hop) String() string {
	l := ""
	if h.loc != nil {
		l = " → " + h.loc.Redacted()
	}
	return h.url.Path + ": " + http.StatusText(h.status) + l
}

func (b *browser) abs(u string) *url.URL {
	base, _ := url.Parse(b.op.issuer + "/")
	ref, err := url.Parse(u)
	if err != nil {
		b.t.Fatalf("bad URL %q", u)
	}
	return base.ResolveReference(ref)
}

func (b *browser) do(req *http.Request) hop {
	b.t.Helper()
	req.Header.Set("Accept-Language", "en")
	res, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	h := hop{status: res.StatusCode, body: string(body), header: res.Header, url: req.URL}
	if l := res.Header.Get("Location"); l != "" {
		if h.loc, err = req.URL.Parse(l); err != nil {
			b.t.Fatalf("bad Location %q", l)
		}
	}
	return h
}

func (b *browser) get(u string) hop {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.abs(u).String(), nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// submit posts a form as a browser does: urlencoded, with Origin.
func (b *browser) submit(u string, form url.Values) hop {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.abs(u).String(), strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.op.issuer)
	return b.do(req)
}

func (b *browser) expectRedirect(h hop, pathPrefix string) *url.URL {
	b.t.Helper()
	if h.status/100 != 3 || h.loc == nil || !strings.HasPrefix(h.loc.Path, pathPrefix) {
		b.t.Fatalf("%s: want a redirect to %s…\n%.600s", h, pathPrefix, h.body)
	}
	return h.loc
}

func (b *browser) expectPage(h hop) string {
	b.t.Helper()
	if h.status != http.StatusOK {
		b.t.Fatalf("%s: want a page\n%.800s", h, h.body)
	}
	if mt, _, _ := mime.ParseMediaType(h.header.Get("Content-Type")); mt != "text/html" {
		b.t.Fatalf("%s: Content-Type %q", h, h.header.Get("Content-Type"))
	}
	return h.body
}

// Page scraping: what a browser (or its user) finds on the page.
var (
	reAppLink   = regexp.MustCompile(`id="applink" href="([^"]+)"`)
	reCode      = regexp.MustCompile(`id="code"[^>]*>([^<]+)<`)
	reStatusURL = regexp.MustCompile(`data-status-url="([^"]+)"`)
	reForm      = regexp.MustCompile(`(?s)<form[^>]*method="post"[^>]*action="([^"]*)"[^>]*>(.*?)</form>`)
	reInput     = regexp.MustCompile(`<input\b([^>]*)>`)
	reAttr      = regexp.MustCompile(`([a-z][a-z-]*)(?:="([^"]*)")?`)
	reHref      = regexp.MustCompile(`href="([^"]+)"`)
)

func scrape(t testing.TB, re *regexp.Regexp, page string) string {
	t.Helper()
	m := re.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("%s not on the page:\n%s", re, page)
	}
	return html.UnescapeString(m[1])
}

// form returns the action of the page's POST form whose action contains
// actionPart, and what a browser would submit from its inputs: hidden and
// text fields, checked radio buttons, and checkboxes that are checked
// (or all enabled ones, when the resident ticks every box).
func form(t testing.TB, page, actionPart string, tickAll ...bool) (string, url.Values) {
	t.Helper()
	for _, m := range reForm.FindAllStringSubmatch(page, -1) {
		action := html.UnescapeString(m[1])
		if !strings.Contains(action, actionPart) {
			continue
		}
		v := url.Values{}
		for _, in := range reInput.FindAllStringSubmatch(m[2], -1) {
			attrs := map[string]string{}
			for _, a := range reAttr.FindAllStringSubmatch(in[1], -1) {
				attrs[a[1]] = html.UnescapeString(a[2])
			}
			name, typ := attrs["name"], attrs["type"]
			_, checked := attrs["checked"]
			_, disabled := attrs["disabled"]
			if name == "" || disabled {
				continue
			}
			switch typ {
			case "checkbox":
				if !checked && !(len(tickAll) > 0 && tickAll[0]) {
					continue
				}
			case "radio":
				if !checked {
					continue
				}
			case "submit", "button", "image", "file", "reset":
				continue
			}
			v.Add(name, attrs["value"])
		}
		return action, v
	}
	t.Fatalf("no form posting to …%s… on the page:\n%s", actionPart, page)
	return "", nil
}

func link(t testing.TB, page, part string) string {
	t.Helper()
	for _, m := range reHref.FindAllStringSubmatch(page, -1) {
		if u := html.UnescapeString(m[1]); strings.Contains(u, part) {
			return u
		}
	}
	t.Fatalf("no link containing %q on the page:\n%s", part, page)
	return ""
}

// authorize sends the RP's request and lands on the provider's login
// route (no session yet) or wherever the provider sends a signed-in
// browser.
func (b *browser) authorize(a *attempt) *url.URL {
	b.t.Helper()
	return b.expectRedirect(b.get(a.url), "/login")
}

// loginPage is the page of one open transaction.
type loginPage struct {
	url  *url.URL
	tx   string
	body string
}

// openTransaction follows a /login URL to the page of a new transaction.
func (b *browser) openTransaction(u *url.URL) loginPage {
	b.t.Helper()
	pu := b.expectRedirect(b.get(u.String()), "/login")
	tx := pu.Query().Get("tx")
	if tx == "" {
		b.t.Fatalf("login redirect without a transaction: %s", pu)
	}
	return loginPage{url: pu, tx: tx, body: b.expectPage(b.get(pu.String()))}
}

// walletLink is what the resident's phone receives: the same-device app
// link of the page (the QR code carries the transaction URL inside it).
func (p loginPage) walletLink(t testing.TB) string {
	t.Helper()
	app := scrape(t, reAppLink, p.body)
	inner, err := walletsim.ParseURL(app)
	if err != nil {
		t.Fatalf("app link %q: %v", app, err)
	}
	if !strings.Contains(inner.Path, "/wallet/v1/transactions/") {
		t.Fatalf("app link carries %s, not a transaction URL", inner)
	}
	return app
}

type txState struct {
	State  string `json:"state"`
	Reason string `json:"reason"`
}

// status reads the page's status endpoint as its script does.
func (b *browser) status(p loginPage) (int, txState) {
	b.t.Helper()
	h := b.get(scrape(b.t, reStatusURL, p.body))
	var st txState
	if h.status == http.StatusOK {
		if err := json.Unmarshal([]byte(h.body), &st); err != nil {
			b.t.Fatalf("status is not JSON: %s", h.body)
		}
	}
	return h.status, st
}

// await polls the status until the transaction leaves "pending" (with a
// deadline: the page's script polls and follows SSE the same way).
func (b *browser) await(p loginPage, deadline time.Duration) txState {
	b.t.Helper()
	end := time.Now().Add(deadline)
	for {
		code, st := b.status(p)
		if code != http.StatusOK {
			b.t.Fatalf("status: HTTP %d", code)
		}
		if st.State != "pending" {
			return st
		}
		if time.Now().After(end) {
			b.t.Fatalf("transaction still pending after %s", deadline)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// finish reloads the page of a verified transaction and presses Continue.
func (b *browser) finish(p loginPage) *url.URL {
	b.t.Helper()
	page := b.expectPage(b.get(p.url.String()))
	action, fields := form(b.t, page, "/finish")
	return b.expectRedirect(b.submit(action, fields), "/consent")
}

// consent allows on the consent page (or passes through a remembered
// consent) and returns the provider's callback.
func (b *browser) consent(u *url.URL) *url.URL {
	b.t.Helper()
	h := b.get(u.String())
	if h.status/100 == 3 {
		return b.expectRedirect(h, "/authorize/callback")
	}
	page := b.expectPage(h)
	action, fields := form(b.t, page, "/consent", true) // the resident shares everything asked
	fields.Set("action", "allow")
	return b.expectRedirect(b.submit(action, fields), "/authorize/callback")
}

// toRP follows the provider's callback to the RP's redirect URI.
func (b *browser) toRP(u *url.URL) *url.URL {
	b.t.Helper()
	h := b.get(u.String())
	if h.status != http.StatusFound || h.loc == nil || h.loc.Host == b.abs("/").Host {
		b.t.Fatalf("%s: want 302 to the RP\n%.600s", h, h.body)
	}
	return h.loc
}

// signedInCode runs an authorization request in a browser that has an
// SSO session: login route, consent (remembered or allowed), callback.
func (b *browser) signedInCode(a *attempt) *url.URL {
	b.t.Helper()
	h := b.get(b.authorize(a).String())
	return b.toRP(b.consent(b.expectRedirect(h, "/consent")))
}

// signIn is a whole sign-in of an enrolled resident with a new
// transaction of the given purpose ("" = the default sign-in).
func (b *browser) signIn(w *walletsim.Wallet, a *attempt, purpose, format string) *url.URL {
	b.t.Helper()
	lu := b.authorize(a)
	if purpose != "" {
		q := lu.Query()
		q.Set("purpose", purpose)
		lu.RawQuery = q.Encode()
	}
	p := b.openTransaction(lu)
	if err := w.Approve(context.Background(), b.op.hc, p.walletLink(b.t), format); err != nil {
		b.t.Fatalf("wallet: %v", err)
	}
	if st := b.await(p, 10*time.Second); st.State != "verified" {
		b.t.Fatalf("transaction %+v, want verified", st)
	}
	return b.toRP(b.consent(b.finish(p)))
}

// ---------------------------------------------------------------------------
// The scenarios.

// TestE2EResident: a resident's first visit (sign-in refused as not
// enrolled, identity proofing with both certificates), the RP's token,
// ID token and userinfo checks, refresh rotation and reuse detection,
// SSO and revocation; then sign-in with the authentication certificate
// alone from a fresh browser, and pairwise subjects across RPs. Memory
// and Redis stores on http in development mode, and Redis behind TLS in
// production mode.
func TestE2EResident(t *testing.T) {
	variants := []struct {
		name string
		kv   func(testing.TB) store.KV
		tls  bool
	}{
		{"memory", memoryStore, false},
		{"redis", redisStore, false},
		{"redis-https-production", redisStore, true},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			op := startOP(t, opSetup{kv: v.kv(t), tls: v.tls})
			city := op.rp("city", e2eCityRedirect)
			checkDiscovery(t, city)
			if v.tls {
				checkProductionWeb(t, op, city)
			}
			w := op.pki.wallet(t, e2eTaro)

			// (a) First visit.
			a := city.begin()
			alice := op.browser()
			p := alice.openTransaction(alice.authorize(a))
			if err := w.Approve(context.Background(), op.hc, p.walletLink(t), walletsim.FormatJWS); walletsim.ErrorCode(err) != "not_enrolled" {
				t.Fatalf("sign-in before proofing: %v, want not_enrolled", err)
			}
			if st := alice.await(p, 10*time.Second); st != (txState{"failed", "not_enrolled"}) {
				t.Fatalf("browser sees %+v, want failed/not_enrolled", st)
			}
			// The page now offers identity proofing; the resident follows it.
			page := alice.expectPage(alice.get(p.url.String()))
			if !strings.Contains(page, "not registered yet") {
				t.Fatalf("the page does not explain not_enrolled:\n%s", page)
			}
			p = alice.openTransaction(alice.abs(link(t, page, "purpose=proofing")))

			// The wallet shows what it is asked and the page's comparison code.
			tx, err := walletsim.Fetch(context.Background(), op.hc, p.walletLink(t))
			if err != nil {
				t.Fatalf("wallet fetch: %v", err)
			}
			if tx.Purpose != "proofing" || !slices.Equal(tx.Certificates, []string{"signature", "authentication"}) ||
				tx.RP.DisplayName != "市民ポータル" || tx.RP.Purpose == "" || tx.Issuer != op.issuer ||
				tx.ComparisonCode != scrape(t, reCode, p.body) || !slices.Contains(tx.RequestedClaims, "address") {
				t.Fatalf("wallet sees %+v (page code %s)", tx, scrape(t, reCode, p.body))
			}
			if err := w.Submit(context.Background(), op.hc, tx, walletsim.FormatJWS); err != nil {
				t.Fatalf("proofing: %v", err)
			}
			if st := alice.await(p, 10*time.Second); st.State != "verified" {
				t.Fatalf("after proofing: %+v", st)
			}
			rpURL := alice.toRP(alice.consent(alice.finish(p)))
			first := city.callback(a, rpURL)
			sub := checkLogin(t, first, "city")
			if first.tok.RefreshToken == "" {
				t.Fatal("no refresh token for offline_access")
			}
			ui, code := city.userinfo(first.tok)
			if code != http.StatusOK {
				t.Fatalf("userinfo: HTTP %d", code)
			}
			checkFacts(t, ui, sub)
			if !city.active(first.tok.AccessToken) {
				t.Fatal("introspection: fresh access token inactive")
			}

			// Refresh rotates; reusing the old token kills the family.
			second, errc := city.refresh(first.tok.RefreshToken)
			if errc != "" {
				t.Fatalf("refresh: %s", errc)
			}
			if second.RefreshToken == "" || second.RefreshToken == first.tok.RefreshToken || second.AccessToken == first.tok.AccessToken {
				t.Fatal("refresh did not rotate the tokens")
			}
			if idt, _ := city.verifyIDToken(second); idt.Subject != sub {
				t.Fatalf("refreshed ID token sub %q, want %q", idt.Subject, sub)
			}
			if _, errc := city.refresh(first.tok.RefreshToken); errc != "invalid_grant" {
				t.Fatalf("reuse of a rotated refresh token: %q, want invalid_grant", errc)
			}
			if _, errc := city.refresh(second.RefreshToken); errc != "invalid_grant" {
				t.Fatalf("the family survived reuse: %q", errc)
			}
			if city.active(second.AccessToken) {
				t.Fatal("access token of a revoked family still active")
			}

			// SSO: the same browser gets a code without seeing a page.
			a = city.begin(oauth2.SetAuthURLParam("prompt", "none"))
			third := city.callback(a, alice.signedInCode(a))
			if checkLogin(t, third, "city") != sub {
				t.Fatal("SSO login changed the sub")
			}
			// Revoking the access token (RFC 7009) stops userinfo.
			if code, m := city.backChannel(city.meta.Revocation, url.Values{"token": {third.tok.AccessToken}, "token_type_hint": {"access_token"}}); code != http.StatusOK {
				t.Fatalf("revocation: %d %v", code, m)
			}
			if _, code := city.userinfo(third.tok); code != http.StatusUnauthorized && code != http.StatusForbidden {
				t.Fatalf("userinfo with a revoked token: HTTP %d", code)
			}
			if city.active(third.tok.AccessToken) {
				t.Fatal("introspection: revoked token active")
			}

			// (b) A fresh browser, the authentication certificate alone, CMS.
			bob := op.browser()
			a = city.begin()
			lu := bob.authorize(a)
			p = bob.openTransaction(lu)
			tx, err = walletsim.Fetch(context.Background(), op.hc, p.walletLink(t))
			if err != nil {
				t.Fatal(err)
			}
			if tx.Purpose != "signin" || !slices.Equal(tx.Certificates, []string{"authentication"}) {
				t.Fatalf("sign-in asks for %s %v", tx.Purpose, tx.Certificates)
			}
			if err := w.Submit(context.Background(), op.hc, tx, walletsim.FormatCMS); err != nil {
				t.Fatalf("sign-in with CMS: %v", err)
			}
			if st := bob.await(p, 10*time.Second); st.State != "verified" {
				t.Fatalf("sign-in: %+v", st)
			}
			// Consent was given in (a): it is not asked again.
			again := city.callback(a, bob.toRP(bob.consent(bob.finish(p))))
			if got := checkLogin(t, again, "city"); got != sub {
				t.Fatalf("sign-in sub %q, proofing sub %q", got, sub)
			}
			if ui, _ := city.userinfo(again.tok); ui == nil || ui.Subject != sub {
				t.Fatalf("userinfo after sign-in: %+v", ui)
			}

			// Pairwise: the same sector sees the same sub, another sector
			// another one (bob is signed in now; each RP asks consent once).
			city2 := op.rp("city-2", e2eCity2Redirect)
			a = city2.begin()
			if got := checkLogin(t, city2.callback(a, bob.signedInCode(a)), "city-2"); got != sub {
				t.Fatalf("same sector, other client: sub %q, want %q", got, sub)
			}
			shop := op.rp("shop", e2eShopRedirect, oidc.ScopeOpenID, "name")
			a = shop.begin()
			shopLogin := shop.callback(a, bob.signedInCode(a))
			shopSub := checkLogin(t, shopLogin, "shop")
			if shopSub == sub {
				t.Fatal("another sector got the same sub")
			}
			sui, _ := shop.userinfo(shopLogin.tok)
			if sui == nil || sui.Subject != shopSub {
				t.Fatalf("shop userinfo %+v", sui)
			}
			var shopClaims map[string]any
			_ = sui.Claims(&shopClaims)
			if _, ok := shopClaims["birthdate"]; ok || shopClaims["name"] != "山田\u3000太郎" {
				t.Fatalf("shop (scope name only) received %v", shopClaims)
			}
			// A second resident is someone else everywhere.
			hanako := op.pki.wallet(t, e2eHanako)
			a = city.begin()
			h := city.callback(a, op.browser().signIn(hanako, a, "proofing", walletsim.FormatJWS))
			if checkLogin(t, h, "city") == sub {
				t.Fatal("two residents share a sub")
			}
		})
	}
}

func checkDiscovery(t *testing.T, rp *relyingParty) {
	t.Helper()
	m := rp.meta
	if !slices.Equal(m.SubjectTypes, []string{"pairwise"}) || !slices.Equal(m.PKCEMethods, []string{"S256"}) ||
		!slices.Equal(m.ResponseTypes, []string{"code"}) || m.Introspection == "" || m.Revocation == "" {
		t.Fatalf("discovery: %+v", m)
	}
	for _, c := range []string{"sub", "name", "family_name", "given_name", "birthdate", "gender", "address"} {
		if !slices.Contains(m.Claims, c) {
			t.Errorf("claims_supported lacks %s", c)
		}
	}
}

// checkProductionWeb: outside development the browser binding and the
// other cookies are __Host- cookies (Secure, Path=/, no Domain) and
// responses carry HSTS.
func checkProductionWeb(t *testing.T, op *e2eOP, rp *relyingParty) {
	t.Helper()
	b := op.browser()
	// /authorize sets the binding cookie, the login route the others.
	ah := b.get(rp.begin().url)
	h := b.get(b.expectRedirect(ah, "/login").String())
	cookies := append((&http.Response{Header: ah.header}).Cookies(), (&http.Response{Header: h.header}).Cookies()...)
	if len(cookies) == 0 {
		t.Fatal("the authorization and login routes set no cookie")
	}
	for _, c := range cookies {
		if !strings.HasPrefix(c.Name, "__Host-") || !c.Secure || !c.HttpOnly || c.Path != "/" || c.Domain != "" {
			t.Errorf("cookie %s: Secure=%v HttpOnly=%v Path=%q Domain=%q", c.Name, c.Secure, c.HttpOnly, c.Path, c.Domain)
		}
	}
	if h.header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS outside development")
	}
}

// checkLogin checks what every certificate sign-in must carry and returns
// the sub.
func checkLogin(t *testing.T, l *login, clientID string) string {
	t.Helper()
	c := l.claims
	if c["acr"] != "aal3" {
		t.Errorf("acr %v, want aal3", c["acr"])
	}
	amr, _ := c["amr"].([]any)
	if !slices.Contains(amr, any("hwk")) || !slices.Contains(amr, any("pin")) {
		t.Errorf("amr %v, want hwk and pin", c["amr"])
	}
	if at, _ := c["auth_time"].(float64); at <= 0 || time.Since(time.Unix(int64(at), 0)) > 5*time.Minute {
		t.Errorf("auth_time %v", c["auth_time"])
	}
	if !slices.Equal(l.idt.Audience, []string{clientID}) {
		t.Errorf("aud %v", l.idt.Audience)
	}
	// Pairwise subjects are an HMAC-SHA-256 (43 base64url characters),
	// never an internal identifier.
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`).MatchString(l.idt.Subject) {
		t.Errorf("sub %q is not a pairwise identifier", l.idt.Subject)
	}
	return l.idt.Subject
}

// checkFacts: the verified facts of e2eTaro, as OIDC claims.
func checkFacts(t *testing.T, ui *oidc.UserInfo, sub string) {
	t.Helper()
	if ui.Subject != sub {
		t.Fatalf("userinfo sub %q, ID token sub %q", ui.Subject, sub)
	}
	var c struct {
		Name       string `json:"name"`
		FamilyName string `json:"family_name"`
		GivenName  string `json:"given_name"`
		Birthdate  string `json:"birthdate"`
		Gender     string `json:"gender"`
		Address    struct {
			Formatted string `json:"formatted"`
			Country   string `json:"country"`
		} `json:"address"`
	}
	if err := ui.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "山田\u3000太郎" || c.FamilyName != "山田" || c.GivenName != "太郎" || c.Birthdate != "1980-12-31" ||
		c.Gender != "male" || c.Address.Formatted != e2eTaro.Address {
		t.Fatalf("userinfo facts: %+v", c)
	}
}

// TestE2ERefusals: what must fail, end to end, on both stores.
func TestE2ERefusals(t *testing.T) {
	for _, st := range e2eStores {
		t.Run(st.name, func(t *testing.T) {
			op := startOP(t, opSetup{kv: st.kv(t)})
			city := op.rp("city", e2eCityRedirect)
			// An enrolled resident with a signed-in browser, for the
			// token-level cases.
			w := op.pki.wallet(t, e2eTaro)
			resident := op.browser()
			a := city.begin()
			city.callback(a, resident.signIn(w, a, "proofing", walletsim.FormatJWS))
			// run gives each case helpers that report to its own t.
			run := func(name string, f func(t *testing.T, op *e2eOP, city *relyingParty, resident *browser)) {
				t.Run(name, func(t *testing.T) { f(t, op.withT(t), city.withT(t), resident.withT(t)) })
			}

			// Requests the provider must not send back to the RP: an error
			// page, no Location.
			errorPage := func(t *testing.T, op *e2eOP, authURL, want string) {
				t.Helper()
				h := op.browser().get(authURL)
				if h.status != http.StatusBadRequest || h.loc != nil {
					t.Fatalf("%s: want 400 without Location", h)
				}
				if !strings.Contains(h.body, want) {
					t.Fatalf("error page lacks %q:\n%s", want, h.body)
				}
			}
			run("redirect_uri mismatch", func(t *testing.T, op *e2eOP, city *relyingParty, resident *browser) {
				evil := *city.conf
				evil.RedirectURL = "https://evil.example.test/cb"
				errorPage(t, op, (&relyingParty{t: t, conf: &evil}).begin().url, "return address")
			})
			run("unknown client", func(t *testing.T, op *e2eOP, city *relyingParty, resident *browser) {
				stranger := *city.conf
				stranger.ClientID = "stranger"
				errorPage(t, op, (&relyingParty{t: t, conf: &stranger}).begin().url, "not registered")
			})

			// Requests refused back to the RP (valid client and redirect).
			rpError := func(t *testing.T, b *browser, authURL, state, want string) {
				t.Helper()
				h := b.get(authURL)
				for hops := 0; h.status/100 == 3 && h.loc != nil && h.loc.Host == b.abs("/").Host; hops++ {
					if hops == 5 {
						t.Fatalf("%s: redirect loop inside the provider", h)
					}
					h = b.get(h.loc.String()) // through the login route
				}
				if h.status/100 != 3 || h.loc == nil {
					t.Fatalf("%s: want a redirect to the RP\n%.400s", h, h.body)
				}
				q := h.loc.Query()
				if got := h.loc.Scheme + "://" + h.loc.Host + h.loc.Path; got != e2eCityRedirect || q.Get("error") != want || q.Get("state") != state || q.Has("code") {
					t.Fatalf("redirect %s, want error=%s with state %s", h.loc, want, state)
				}
			}
			run("missing PKCE", func(t *testing.T, op *e2eOP, city *relyingParty, resident *browser) {
				u := city.conf.AuthCodeURL("st-nopkce", oidc.Nonce("n"))
				rpError(t, op.browser(), u, "st-nopkce", "invalid_request")
			})
			run("plain PKCE", func(t *testing.T, op *e2eOP, city *relyingParty, resident *browser) {
				v := oauth2.GenerateVerifier()
				u := city.conf.AuthCodeURL("st-plain", oidc.Nonce("n"),
					oauth2.SetAuthURLParam("code_challenge", v), oauth2.SetAuthURLParam("code_challenge_method", "plain"))
				rpError(t, op.browser(), u, "st-plain", "invalid_request")
			})
			run("prompt=none without a session", func(t *testing.T, op *e2eOP, city *relyingParty, resident *browser) {
				a := city.begin(oauth2.SetAuthURLParam("prompt", "none"))
				rpError(t, op.browser(), a.url, a.state, "login_required")
			})

			run("wrong PKCE verifier", func(t *testing.T, op *e2eOP, city *relyingParty, resident *browser) {
				a := city.begin()
				cb := resident.signedInCode(a)
				code := cb.Query().Get("code")
				if _, e := city.exchangeErr(code, oauth2.VerifierOption(oauth2.GenerateVerifier())); e != "invalid_grant" {
					t.Fatalf("wrong verifier: %q, want invalid_grant", e)
				}
				if _, e := city.exchangeErr(code); e == "" {
					t.Fatal("exchange without a verifier succeeded")
				}
				// Failed exchanges spend nothing: the right verifier still
				// works, once.
				if _, e := city.exchangeErr(code, oauth2.VerifierOption(a.pkce)); e != "" {
					t.Fatalf("code after failed exchanges: %q, want tokens", e)
				}
			})
			run("code replay", func(t *testing.T, op *e2eOP, city *relyingParty, resident *browser) {
				a := city.begin()
				cb := resident.signedInCode(a)
				code := cb.Query().Get("code")
				l := city.callback(a, cb)
				if _, code := city.userinfo(l.tok); code != http.StatusOK {
					t.Fatalf("userinfo before replay: %d", code)
				}
				if _, e := city.exchangeErr(code, oauth2.VerifierOption(a.pkce)); e != "invalid_grant" {
					t.Fatalf("replay: %q, want invalid_grant", e)
				}
				if _, code := city.userinfo(l.tok); code == http.StatusOK {
					t.Fatal("the first exchange's access token survived the replay")
				}
				if city.active(l.tok.AccessToken) {
					t.Fatal("introspection: access token active after replay")
				}
				if _, e := city.refresh(l.tok.RefreshToken); e != "invalid_grant" {
					t.Fatalf("refresh token after replay: %q", e)
				}
			})

			run("foreign transaction", func(t *testing.T, op *e2eOP, city *relyingParty, resident *browser) {
				owner, thief := op.browser(), op.browser()
				a := city.begin()
				p := owner.openTransaction(owner.authorize(a))
				finishAction, _ := form(t, p.body, "/finish")
				// The thief has a page of its own: its own cookies and a
				// valid CSRF token, and it learnt the owner's URLs.
				tp := thief.openTransaction(thief.authorize(city.begin()))
				_, thiefFields := form(t, tp.body, "/finish")
				if code, _ := thief.status(p); code != http.StatusForbidden {
					t.Fatalf("thief polls the owner's status: HTTP %d", code)
				}
				if h := thief.get(p.url.String()); h.status != http.StatusForbidden {
					t.Fatalf("thief opens the owner's page: %s", h)
				}
				if err := w.Approve(context.Background(), op.hc, p.walletLink(t), walletsim.FormatJWS); err != nil {
					t.Fatalf("wallet: %v", err)
				}
				if st := owner.await(p, 10*time.Second); st.State != "verified" {
					t.Fatalf("owner sees %+v", st)
				}
				h := thief.submit(finishAction, thiefFields)
				if h.status != http.StatusForbidden || h.loc != nil || !strings.Contains(h.body, "started in another browser") {
					t.Fatalf("thief finishes the owner's transaction: %s\n%.500s", h, h.body)
				}
				if h := thief.get("/consent?" + url.Values{"id": {p.url.Query().Get("id")}}.Encode()); h.status != http.StatusForbidden {
					t.Fatalf("thief opens the owner's consent: %s", h)
				}
				// Nothing the thief did spoilt it for the owner.
				city.callback(a, owner.toRP(owner.consent(owner.finish(p))))
			})

			for _, format := range []string{walletsim.FormatJWS, walletsim.FormatCMS, walletsim.FormatRaw} {
				run("signature over other bytes/"+format, func(t *testing.T, op *e2eOP, city *relyingParty, resident *browser) {
					b := op.browser()
					a := city.begin()
					p := b.openTransaction(b.authorize(a))
					tx, err := walletsim.Fetch(context.Background(), op.hc, p.walletLink(t))
					if err != nil {
						t.Fatal(err)
					}
					// The same statement with another challenge: what a
					// signature made for another transaction looks like.
					other := bytes.Replace(tx.Bytes, []byte(tx.Signed.Nonce), []byte(strings.Repeat("A", len(tx.Signed.Nonce))), 1)
					sigs, err := w.SignBytes(other, format, tx.Certificates)
					if err != nil {
						t.Fatal(err)
					}
					err = w.SubmitSignatures(context.Background(), op.hc, tx, walletsim.Submission{Signatures: sigs, ComparisonCode: tx.ComparisonCode, QRToken: tx.QRToken})
					if walletsim.ErrorCode(err) != "bad_signature" {
						t.Fatalf("signature over other bytes: %v, want bad_signature", err)
					}
					if st := b.await(p, 10*time.Second); st != (txState{"failed", "bad_signature"}) {
						t.Fatalf("browser sees %+v", st)
					}
					// The transaction is over: an honest answer is too late,
					// and the browser cannot continue.
					if err := w.Submit(context.Background(), op.hc, tx, format); walletsim.ErrorCode(err) != "already_used" {
						t.Fatalf("answer after a final refusal: %v", err)
					}
					action, fields := form(t, p.body, "/finish")
					if h := b.submit(action, fields); h.status != http.StatusConflict || h.loc != nil {
						t.Fatalf("finish of a failed transaction: %s", h)
					}
				})
			}

			run("revoked authentication certificate", func(t *testing.T, op *e2eOP, city *relyingParty, resident *browser) {
				// Revoked before it was ever used: sign-in and proofing.
				r := op.pki.wallet(t, e2eHanako)
				op.pki.authCA.Revoke(r.AuthCert.SerialNumber, time.Now(), 1)
				for _, purpose := range []string{"", "proofing"} {
					b := op.browser()
					lu := b.authorize(city.begin())
					if purpose != "" {
						lu = b.abs(lu.String() + "&purpose=" + purpose)
					}
					p := b.openTransaction(lu)
					if err := r.Approve(context.Background(), op.hc, p.walletLink(t), walletsim.FormatJWS); walletsim.ErrorCode(err) != "revoked" {
						t.Fatalf("%s with a revoked certificate: %v", purpose, err)
					}
					if st := b.await(p, 10*time.Second); st != (txState{"failed", "revoked"}) {
						t.Fatalf("browser sees %+v", st)
					}
				}
				// An enrolled resident whose certificate is revoked later,
				// signing in at a node that has not cached a "good" answer.
				e := op.pki.wallet(t, e2eHanako)
				a := city.begin()
				city.callback(a, op.browser().signIn(e, a, "proofing", walletsim.FormatJWS))
				op.pki.authCA.Revoke(e.AuthCert.SerialNumber, time.Now(), 1)
				defer op.node(nil)()
				b := op.browser()
				p := b.openTransaction(b.authorize(city.begin()))
				if err := e.Approve(context.Background(), op.hc, p.walletLink(t), walletsim.FormatCMS); walletsim.ErrorCode(err) != "revoked" {
					t.Fatalf("sign-in after revocation: %v", err)
				}
			})

			run("expired transaction", func(t *testing.T, op *e2eOP, city *relyingParty, resident *browser) {
				defer op.node(func(o *idp.Options) { o.TransactionTTL = 2 * time.Second })()
				b := op.browser()
				p := b.openTransaction(b.authorize(city.begin()))
				tx, err := walletsim.Fetch(context.Background(), op.hc, p.walletLink(t))
				if err != nil {
					t.Fatalf("fetch of a fresh transaction: %v", err)
				}
				sigs, err := w.SignBytes(tx.Bytes, walletsim.FormatJWS, tx.Certificates)
				if err != nil {
					t.Fatal(err)
				}
				// The resident is slow: the page learns the expiry first.
				if st := b.await(p, 10*time.Second); st.State != "expired" {
					t.Fatalf("browser sees %+v, want expired", st)
				}
				err = w.SubmitSignatures(context.Background(), op.hc, tx, walletsim.Submission{Signatures: sigs, ComparisonCode: tx.ComparisonCode, QRToken: tx.QRToken})
				var we *walletsim.Error
				if !errors.As(err, &we) || we.Code != "expired_transaction" || we.Status != http.StatusGone {
					t.Fatalf("late submission: %v, want 410 expired_transaction", err)
				}
				if err := w.Approve(context.Background(), op.hc, p.walletLink(t), walletsim.FormatJWS); walletsim.ErrorCode(err) != "expired_transaction" {
					t.Fatalf("late fetch: %v", err)
				}
				// Said once, with the time limit, and a way to try again.
				if page := b.expectPage(b.get(p.url.String())); strings.Count(page, "expired") != 1 || !strings.Contains(page, "valid for 2 seconds") || !strings.Contains(page, `id="retry"`) {
					t.Fatalf("page of an expired transaction:\n%s", page)
				}
				action, fields := form(t, p.body, "/finish")
				if h := b.submit(action, fields); h.status != http.StatusConflict || h.loc != nil {
					t.Fatalf("finish of an expired transaction: %s", h)
				}
			})
		})
	}
}
