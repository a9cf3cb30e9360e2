package idp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// simPKI is the simulator PKI the sign-in tests verify against: two CAs,
// their CRL/OCSP server on a real loopback listener, and a small pool of
// RSA keys (key generation dominates the run time; certificates are
// issued fresh for every wallet, so fingerprints never repeat).
type simPKI struct {
	sigCA, authCA *jpkisim.CA
	// otherSig, otherAuth are CAs nobody trusts.
	otherSig, otherAuth *jpkisim.CA
	revURL              string
	keys                []*rsa.PrivateKey
	next                atomic.Uint64
}

var (
	simOnce sync.Once
	simVal  *simPKI
	simErr  error
)

func simulatorPKI(t testing.TB) *simPKI {
	t.Helper()
	simOnce.Do(func() {
		p := &simPKI{}
		for _, c := range []struct {
			dst  **jpkisim.CA
			kind pkibridge.Kind
			org  string
		}{
			{&p.sigCA, pkibridge.KindSignature, ""},
			{&p.authCA, pkibridge.KindAuthentication, ""},
			{&p.otherSig, pkibridge.KindSignature, "JPKI-ROGUE"},
			{&p.otherAuth, pkibridge.KindAuthentication, "JPKI-ROGUE"},
		} {
			if *c.dst, simErr = jpkisim.NewCA(jpkisim.CAOptions{Kind: c.kind, Organization: c.org}); simErr != nil {
				return
			}
		}
		for range 4 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				simErr = err
				return
			}
			p.keys = append(p.keys, k)
		}
		// Never closed: shared by every test of the binary.
		srv := httptest.NewServer(jpkisim.NewRevocationServer(p.sigCA, p.authCA))
		p.revURL = srv.URL
		simVal = p
	})
	if simErr != nil {
		t.Fatalf("simulator PKI: %v", simErr)
	}
	return simVal
}

// verifier is a production-shaped Verifier: simulator anchors, OCSP
// against the simulator's responders, revocation required. Each test gets
// its own, so OCSP caches never leak between tests.
func (p *simPKI) verifier(t testing.TB) *pkibridge.Verifier {
	t.Helper()
	anchors, err := pkibridge.NewAnchors(p.sigCA.Cert, p.authCA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	checker, err := pkibridge.NewChecker(nil, []string{p.revURL + "/ocsp/0", p.revURL + "/ocsp/1"}, nil, pkibridge.CheckerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &pkibridge.Verifier{Anchors: anchors, Policy: pkibridge.DefaultPolicy(), Revocation: checker, Mode: pkibridge.RevocationRequire}
}

func (p *simPKI) key() *rsa.PrivateKey { return p.keys[p.next.Add(1)%uint64(len(p.keys))] }

var (
	factsTaro   = jpkisim.Facts{Name: "山田\u3000太郎", NameSubstitution: "0000", Gender: "1", Birthdate: "319801231", Address: "東京都千代田区霞が関一丁目1番1号", AddressSubstitution: "0"}
	factsTaroJP = jpkisim.Facts{Name: "山田\u3000太郎", Gender: "1", Birthdate: "319801231", Address: "大阪府大阪市北区中之島一丁目3番20号"} // moved house
	factsHanako = jpkisim.Facts{Name: "佐藤\u3000花子", Gender: "2", Birthdate: "420000101", Address: "京都府京都市上京区"}
)

// wallet enrolls a simulated resident with the trusted CAs.
func (p *simPKI) wallet(t testing.TB, f jpkisim.Facts) *walletsim.Wallet {
	t.Helper()
	w, err := walletsim.EnrollWith(p.sigCA, p.authCA, f, walletsim.EnrollOptions{SigKey: p.key(), AuthKey: p.key()})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// rogueWallet's certificates chain to CAs nobody trusts.
func (p *simPKI) rogueWallet(t testing.TB, f jpkisim.Facts) *walletsim.Wallet {
	t.Helper()
	w, err := walletsim.EnrollWith(p.otherSig, p.otherAuth, f, walletsim.EnrollOptions{SigKey: p.key(), AuthKey: p.key()})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// testClock is a settable clock for Options.Now.
type testClock struct{ off atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *testClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// signinOP is the provider with the simulator PKI behind it.
type signinOP struct {
	*testOP
	pki   *simPKI
	clock *testClock
}

func newSigninOP(t testing.TB, kv store.KV) *signinOP {
	t.Helper()
	pki := simulatorPKI(t)
	clock := &testClock{}
	o := newTestOP(t, kv, func(o *Options) {
		o.Verifier = pki.verifier(t)
		o.Now = clock.Now
	})
	return &signinOP{testOP: o, pki: pki, clock: clock}
}

// browser is one user agent: its own cookie jar, no redirect following.
type browser struct {
	t   testing.TB
	op  *signinOP
	hc  *http.Client
	jar *cookiejar.Jar
}

func (o *signinOP) browser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		o.t.Fatal(err)
	}
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{t: o.t, op: o, hc: hc, jar: jar}
}

func (b *browser) abs(u string) string {
	if strings.HasPrefix(u, "/") {
		return b.op.issuer + u
	}
	return u
}

// get returns status, Location and body.
func (b *browser) get(u string, hdr ...string) (int, string, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.abs(u), nil)
	if err != nil {
		b.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) (int, string, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.abs(u), strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.op.issuer)
	return b.do(req)
}

func (b *browser) do(req *http.Request) (int, string, string) {
	b.t.Helper()
	if req.Method == http.MethodGet && req.URL.Path == authreq.LoginPath {
		b.claim(req.URL.Query().Get("id"))
	}
	res, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return res.StatusCode, res.Header.Get("Location"), string(body)
}

// claim makes a request the harness's RP started (startAuth, which is
// no browser) this browser's, as if this browser had followed the RP's
// redirect to /authorize, which binds the request to the browser: the
// first browser to open its login page takes it. With no binding cookie
// yet, the browser takes the one /authorize set; with one, the request is
// bound to that one instead, as /authorize would have done.
func (b *browser) claim(id string) {
	b.t.Helper()
	o := b.op.testOP
	o.mu.Lock()
	c := o.binds[id]
	delete(o.binds, id)
	o.mu.Unlock()
	if c == nil {
		return
	}
	u, err := url.Parse(b.op.issuer)
	if err != nil {
		b.t.Fatal(err)
	}
	for _, have := range b.jar.Cookies(u) {
		if have.Name == c.Name {
			if _, err := o.s.requests.Update(context.Background(), id, func(ar *authreq.AuthRequest) error {
				ar.Binding = ids.Hash(have.Value)
				return nil
			}); err != nil {
				b.t.Fatal(err)
			}
			return
		}
	}
	b.jar.SetCookies(u, []*http.Cookie{c})
}

var csrfPattern = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

func csrfFrom(t testing.TB, page string) string {
	t.Helper()
	m := csrfPattern.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", page)
	}
	return m[1]
}

// authorize starts an RP request for client and returns the auth request ID.
func (o *signinOP) authorize(clientID string, extra ...oauth2.AuthCodeOption) string {
	o.t.Helper()
	return o.startAuth(o.oauth(clientID, "name", "birthdate"), oauth2.GenerateVerifier(), extra...)
}

// openTx follows /login?id=AR[&purpose=P] to the page of a new
// transaction and returns its ID and the page.
func (b *browser) openTx(arID, purpose string) (string, string) {
	b.t.Helper()
	u := authreq.LoginURL(arID)
	if purpose != "" {
		u = authreq.LoginURL(arID, "purpose", purpose)
	}
	code, loc, body := b.get(u)
	if code != http.StatusSeeOther || !strings.Contains(loc, "tx=") {
		b.t.Fatalf("login: want 303 to a transaction, got %d %q\n%s", code, loc, body)
	}
	lu, err := url.Parse(loc)
	if err != nil {
		b.t.Fatal(err)
	}
	code, _, page := b.get(loc)
	if code != http.StatusOK {
		b.t.Fatalf("login page: %d\n%s", code, page)
	}
	return lu.Query().Get("tx"), page
}

// status reads the transaction status as this browser.
func (b *browser) status(txID string) (int, txStatus) {
	b.t.Helper()
	code, _, body := b.get("/login/tx/" + txID + "/status")
	var st txStatus
	if code == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			b.t.Fatalf("status JSON: %v: %s", err, body)
		}
	}
	return code, st
}

// walletURL is the URL the browser's QR code shows now.
func (b *browser) walletURL(txID string) string {
	b.t.Helper()
	code, st := b.status(txID)
	if code != http.StatusOK || st.QR == nil {
		b.t.Fatalf("status: %d %+v", code, st)
	}
	return st.QR.TxURL
}

// finish presses Continue on the page of a verified transaction and
// returns the consent redirect.
func (b *browser) finish(arID, txID string) string {
	b.t.Helper()
	code, _, page := b.get(authreq.LoginURL(arID, "tx", txID))
	if code != http.StatusOK {
		b.t.Fatalf("verified page: %d\n%s", code, page)
	}
	action, _ := pageForm(b.t, page, "finish-now")
	code, loc, body := b.post(action, url.Values{web.CSRFField: {csrfFrom(b.t, page)}})
	if code != http.StatusSeeOther || !(strings.HasPrefix(loc, "/consent?") || strings.HasPrefix(loc, "/account")) {
		b.t.Fatalf("finish: %d %q\n%s", code, loc, body)
	}
	return loc
}

// consent answers the consent page as a browser would submit it with
// the screen's defaults (essential claims, optional claims pre-ticked;
// sensitive optional claims stay unticked) and returns the redirect (the
// provider's callback, or the RP on deny).
func (b *browser) consent(arID, action string) (int, string) {
	b.t.Helper()
	return b.consentWith(arID, action, nil)
}

// consentAll shares everything the screen offers.
func (b *browser) consentAll(arID string) (int, string) {
	b.t.Helper()
	return b.consentWith(arID, "allow", tickAll)
}

// consentWith lets choose changes the screen's fields before submitting.
func (b *browser) consentWith(arID, action string, choose func([]formField) []formField) (int, string) {
	b.t.Helper()
	code, loc, page := b.get(authreq.ConsentURL(arID))
	if code == http.StatusSeeOther || code == http.StatusFound {
		return code, loc // consent already given, or an error for the RP
	}
	if code != http.StatusOK {
		b.t.Fatalf("consent page: %d\n%s", code, page)
	}
	formAction, fields := pageForm(b.t, page, "consent")
	if choose != nil {
		fields = choose(fields)
	}
	v := submission(fields)
	v.Set("action", action)
	code, loc, body := b.post(formAction, v)
	if code != http.StatusSeeOther && code != http.StatusFound {
		b.t.Fatalf("consent post: %d\n%s", code, body)
	}
	return code, loc
}

// callback follows the provider's callback to the RP redirect.
func (b *browser) callback(loc string) *url.URL {
	b.t.Helper()
	code, rp, body := b.get(loc)
	if code != http.StatusFound {
		b.t.Fatalf("callback: %d\n%s", code, body)
	}
	u, err := url.Parse(rp)
	if err != nil {
		b.t.Fatal(err)
	}
	return u
}

// signIn runs a whole browser sign-in with w for a new auth request of
// clientID, answering a transaction of purpose, and returns the RP
// redirect.
func (b *browser) signIn(w *walletsim.Wallet, clientID, purpose, format string) *url.URL {
	b.t.Helper()
	ar := b.op.authorize(clientID)
	tx, _ := b.openTx(ar, purpose)
	if err := w.Approve(context.Background(), b.op.ts.Client(), b.walletURL(tx), format); err != nil {
		b.t.Fatalf("wallet approve: %v", err)
	}
	b.finish(ar, tx)
	_, loc := b.consentAll(ar)
	return b.callback(loc)
}
