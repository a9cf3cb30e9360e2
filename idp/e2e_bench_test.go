//go:build unix

package idp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/walletsim"
)

// The benchmarks drive the provider's handler directly (ServeHTTP on a
// recorder, no sockets), as an independent client would over HTTP: the
// browser follows Location headers and reads the pages, the wallet
// speaks its protocol through an in-memory transport, the RP posts to
// the token endpoint. Only the Redis store leaves the process.
//
// Besides ns/op and allocations they report CPU time from getrusage
// (user + system, every thread of the process: handlers, GC, the Redis
// client; not redis-server), counted only while the benchmark timer
// runs, so the wallet's RSA signing is excluded as the issue asks.

// cpuMeter accumulates process CPU time over the timed regions.
type cpuMeter struct {
	b     *testing.B
	total time.Duration
	mark  time.Duration
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reset starts the measurement (with b.ResetTimer).
func (m *cpuMeter) reset() {
	m.b.ResetTimer()
	m.total, m.mark = 0, processCPU()
}

func (m *cpuMeter) stop() {
	m.b.StopTimer()
	m.total += processCPU() - m.mark
}

func (m *cpuMeter) start() {
	m.mark = processCPU()
	m.b.StartTimer()
}

// report ends the measurement and reports CPU per operation.
func (m *cpuMeter) report(unit string) {
	m.stop()
	m.b.ReportMetric(float64(m.total.Nanoseconds())/float64(m.b.N), unit)
}

// benchAddrs gives every simulated resident its own client address: a
// benchmark is many residents, not one address hammering the rate limits.
var benchAddrs atomic.Uint32

func nextAddr() string {
	n := benchAddrs.Add(1)
	return fmt.Sprintf("10.%d.%d.%d:40000", n>>16&255, n>>8&255, n&255)
}

// inProcess is an http.RoundTripper that calls the handler directly.
type inProcess struct {
	h    http.Handler
	addr *string
}

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	// What the server side of net/http would fill in.
	in := r.Clone(r.Context())
	in.RemoteAddr, in.Host, in.RequestURI = *t.addr, r.URL.Host, r.URL.RequestURI()
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, in)
	res := rec.Result()
	res.Request = r
	return res, nil
}

// benchAgent is a browser (cookies, no redirect following) or an RP.
type benchAgent struct {
	b       *testing.B
	h       http.Handler
	issuer  string
	addr    string
	cookies map[string]*http.Cookie
}

func (a *benchAgent) do(method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	if strings.HasPrefix(target, "/") {
		target = a.issuer + target
	}
	var req *http.Request
	if body != "" {
		req = httptest.NewRequest(method, target, strings.NewReader(body))
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	req.RemoteAddr = a.addr
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	for _, c := range a.cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(a.cookies, c.Name)
		} else {
			a.cookies[c.Name] = c
		}
	}
	return rec
}

func (a *benchAgent) expect(rec *httptest.ResponseRecorder, status int, what string) *httptest.ResponseRecorder {
	if rec.Code != status {
		a.b.Fatalf("%s: HTTP %d, want %d\n%.400s", what, rec.Code, status, rec.Body)
	}
	return rec
}

func (a *benchAgent) post(target string, form url.Values, what string) *httptest.ResponseRecorder {
	return a.expect(a.do(http.MethodPost, target, form.Encode(),
		"Content-Type", "application/x-www-form-urlencoded", "Origin", a.issuer), http.StatusSeeOther, what)
}

var (
	reBenchCSRF = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
	// The same-device app link carries the transaction URL; a wallet
	// accepts either.
	reBenchTxURL = regexp.MustCompile(`id="applink" href="([^"]+)"`)
	// reBenchFinish is the login page's Continue form, where a browser
	// posts.
	reBenchFinish = regexp.MustCompile(`<form id="finish" method="post" action="([^"]+)"`)
)

var reBenchClaim = regexp.MustCompile(`name="claim" value="([^"]+)"`)

// allowAll is the consent form with every claim ticked and Allow pressed.
func allowAll(page, csrf string) url.Values {
	f := url.Values{"csrf_token": {csrf}, "action": {"allow"}}
	for _, m := range reBenchClaim.FindAllStringSubmatch(page, -1) {
		f.Add("claim", html.UnescapeString(m[1]))
	}
	return f
}

func benchScrape(b *testing.B, re *regexp.Regexp, page string) string {
	m := re.FindStringSubmatch(page)
	if m == nil {
		b.Fatalf("%s not on the page", re)
	}
	return html.UnescapeString(m[1])
}

// benchOP is a provider served in process, with the endpoints an RP
// learns from discovery.
type benchOP struct {
	h                  http.Handler
	issuer             string
	token, userinfo    string
	authorize          string
	redirect, clientID string
}

func newBenchOP(b *testing.B, kv store.KV, mutate func(*idp.Options)) *benchOP {
	pki := e2eSim(b)
	const issuer = "http://op.bench"
	o := idp.Options{Issuer: issuer, Dev: true, Store: kv, Verifier: pki.verifier(b), Clients: e2eClients(pki.secretHash),
		PairwiseKey: randomBytes(b, 32), CookieKey: randomBytes(b, 32), KEK: seal.GenerateRing()}
	copy(o.TokenKey[:], randomBytes(b, 32))
	if mutate != nil {
		mutate(&o)
	}
	srv, err := idp.New(context.Background(), o)
	if err != nil {
		b.Fatal(err)
	}
	op := &benchOP{h: srv.Handler(), issuer: issuer, redirect: e2eCityRedirect, clientID: "city"}
	rp := op.agent(b)
	var disc struct {
		Authorize string `json:"authorization_endpoint"`
		Token     string `json:"token_endpoint"`
		Userinfo  string `json:"userinfo_endpoint"`
	}
	rec := rp.expect(rp.do(http.MethodGet, "/.well-known/openid-configuration", ""), http.StatusOK, "discovery")
	if err := json.Unmarshal(rec.Body.Bytes(), &disc); err != nil {
		b.Fatal(err)
	}
	op.authorize, op.token, op.userinfo = disc.Authorize, disc.Token, disc.Userinfo
	return op
}

func (op *benchOP) agent(b *testing.B) *benchAgent {
	return &benchAgent{b: b, h: op.h, issuer: op.issuer, addr: nextAddr(), cookies: map[string]*http.Cookie{}}
}

// authURL is the RP's authorization request.
func (op *benchOP) authURL(verifier string, extra ...string) string {
	q := url.Values{"client_id": {op.clientID}, "response_type": {"code"}, "scope": {strings.Join(e2eScopes, " ")},
		"redirect_uri": {op.redirect}, "state": {"bench-state"}, "nonce": {"bench-nonce"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return op.authorize + "?" + q.Encode()
}

// code follows the callback to the RP's redirect and returns the code.
func (op *benchOP) codeFrom(a *benchAgent, callback string) string {
	rec := a.expect(a.do(http.MethodGet, callback, ""), http.StatusFound, "callback")
	u, err := url.Parse(rec.Header().Get("Location"))
	if err != nil || u.Query().Get("code") == "" || u.Query().Get("state") != "bench-state" {
		a.b.Fatalf("callback to %s", rec.Header().Get("Location"))
	}
	return u.Query().Get("code")
}

// exchange is the RP's code exchange; it returns the access token.
func (op *benchOP) exchange(rp *benchAgent, code, verifier string) string {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {op.redirect}}
	req := httptest.NewRequest(http.MethodPost, op.token, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(op.clientID, url.QueryEscape(e2eSecret))
	req.RemoteAddr = rp.addr
	rec := httptest.NewRecorder()
	op.h.ServeHTTP(rec, req)
	var tok struct {
		AccessToken string `json:"access_token"`
		IDToken     string `json:"id_token"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &tok) != nil || tok.AccessToken == "" || tok.IDToken == "" {
		rp.b.Fatalf("token: HTTP %d %.300s", rec.Code, rec.Body)
	}
	return tok.AccessToken
}

// BenchmarkFullLogin is one whole login of an enrolled resident from a
// new browser (no SSO session): authorize, login page (a new sign-in
// transaction), the wallet's fetch and submission of a JWS made with the
// authentication certificate (signature, chain and OCSP checks; the OCSP
// answer is cached after the warm-up, as in production), the status
// poll, finish (SSO session), consent (prompt=consent: the page and the
// Allow), callback (code), code exchange (ES256 ID token) and userinfo
// with the basic four facts. The wallet's RSA signing runs with the
// timer stopped and outside cpu-ns/login.
func BenchmarkFullLogin(b *testing.B) {
	for _, st := range e2eStores {
		// One provider per store for all of b.Run's rounds: the key
		// generation and the warm-up are not repeated per round.
		reg := prometheus.NewRegistry()
		op := newBenchOP(b, st.kv(b), func(o *idp.Options) { o.Metrics = reg })
		w := e2eSim(b).wallet(b, e2eTaro)
		ctx := context.Background()
		var addr string
		wallet := &http.Client{Transport: inProcess{h: op.h, addr: &addr}}
		var m *cpuMeter

		login := func(b *testing.B, purpose string) {
			br := op.agent(b)
			addr = br.addr
			verifier := oauth2.GenerateVerifier()
			rec := br.expect(br.do(http.MethodGet, op.authURL(verifier, "prompt", "consent"), ""), http.StatusFound, "authorize")
			loginURL := rec.Header().Get("Location")
			if purpose != "" {
				loginURL += "&purpose=" + purpose
			}
			rec = br.expect(br.do(http.MethodGet, loginURL, ""), http.StatusSeeOther, "login")
			txPage := rec.Header().Get("Location")
			page := br.expect(br.do(http.MethodGet, txPage, ""), http.StatusOK, "login page").Body.String()
			csrf := benchScrape(b, reBenchCSRF, page)
			tx, err := walletsim.Fetch(ctx, wallet, benchScrape(b, reBenchTxURL, page))
			if err != nil {
				b.Fatal(err)
			}
			if m != nil {
				m.stop()
			}
			sigs, err := w.SignBytes(tx.Bytes, walletsim.FormatJWS, tx.Certificates)
			if err != nil {
				b.Fatal(err)
			}
			if m != nil {
				m.start()
			}
			if err := w.SubmitSignatures(ctx, wallet, tx, walletsim.Submission{Signatures: sigs, ComparisonCode: tx.ComparisonCode, QRToken: tx.QRToken}); err != nil {
				b.Fatal(err)
			}
			rec = br.expect(br.do(http.MethodGet, "/login/tx/"+tx.ID+"/status", ""), http.StatusOK, "status")
			if !strings.Contains(rec.Body.String(), `"state":"verified"`) {
				b.Fatalf("status %s", rec.Body)
			}
			consent := br.post(benchScrape(b, reBenchFinish, page), url.Values{"csrf_token": {csrf}}, "finish").Header().Get("Location")
			page = br.expect(br.do(http.MethodGet, consent, ""), http.StatusOK, "consent page").Body.String()
			callback := br.post(consent, allowAll(page, csrf), "consent").Header().Get("Location")
			code := op.codeFrom(br, callback)

			rp := op.agent(b)
			at := op.exchange(rp, code, verifier)
			rec = rp.expect(rp.do(http.MethodGet, op.userinfo, "", "Authorization", "Bearer "+at), http.StatusOK, "userinfo")
			if !strings.Contains(rec.Body.String(), `"birthdate":"1980-12-31"`) {
				b.Fatalf("userinfo %s", rec.Body)
			}
		}
		// Warm-up: enrolment (proofing), the OCSP cache, the client
		// secret cache (Argon2id once per secret and process).
		login(b, "proofing")
		login(b, "")

		b.Run(st.name, func(b *testing.B) {
			m = &cpuMeter{b: b}
			defer func() { m = nil }()
			b.ReportAllocs()
			trips := requestRoundTrips(b, reg)
			m.reset()
			for range b.N {
				login(b, "")
			}
			m.report("cpu-ns/login")
			b.ReportMetric((requestRoundTrips(b, reg)-trips)/float64(b.N), "store-trips/login")
		})
	}
}

// BenchmarkTokenEndpoint is the code exchange alone: client_secret_basic
// (cached after the first verification), the single-use take of the
// code, PKCE, the grant and token records, an opaque access token, a
// refresh token (offline_access) and an ES256 ID token with the facts.
// The codes are made beforehand by a signed-in browser (SSO, remembered
// consent), so the timed loop is nothing but token requests. req/s is
// for one request at a time.
func BenchmarkTokenEndpoint(b *testing.B) {
	for _, st := range e2eStores {
		op := newBenchOP(b, st.kv(b), func(o *idp.Options) {
			o.CodeTTL = 10 * time.Minute // preparing many codes takes a while
		})
		w := e2eSim(b).wallet(b, e2eTaro)
		ctx := context.Background()
		br := op.agent(b)
		wallet := &http.Client{Transport: inProcess{h: op.h, addr: &br.addr}}
		// One proofing gives the browser its session and the consent.
		verifier := oauth2.GenerateVerifier()
		loginURL := br.expect(br.do(http.MethodGet, op.authURL(verifier), ""), http.StatusFound, "authorize").Header().Get("Location")
		txPage := br.expect(br.do(http.MethodGet, loginURL+"&purpose=proofing", ""), http.StatusSeeOther, "login").Header().Get("Location")
		page := br.expect(br.do(http.MethodGet, txPage, ""), http.StatusOK, "login page").Body.String()
		csrf := benchScrape(b, reBenchCSRF, page)
		if err := w.Approve(ctx, wallet, benchScrape(b, reBenchTxURL, page), walletsim.FormatJWS); err != nil {
			b.Fatal(err)
		}
		consent := br.post(benchScrape(b, reBenchFinish, page), url.Values{"csrf_token": {csrf}}, "finish").Header().Get("Location")
		page = br.expect(br.do(http.MethodGet, consent, ""), http.StatusOK, "consent page").Body.String()
		callback := br.post(consent, allowAll(page, csrf), "consent").Header().Get("Location")
		rp := op.agent(b)
		op.exchange(rp, op.codeFrom(br, callback), verifier) // warms the secret cache

		b.Run(st.name, func(b *testing.B) {
			br.b, rp.b = b, b
			type codeVerifier struct{ code, verifier string }
			codes := make([]codeVerifier, b.N)
			for i := range codes {
				v := oauth2.GenerateVerifier()
				br.addr = nextAddr() // one browser, many requests: past the per-address limit of /authorize
				loginURL := br.expect(br.do(http.MethodGet, op.authURL(v), ""), http.StatusFound, "authorize").Header().Get("Location")
				consent := br.expect(br.do(http.MethodGet, loginURL, ""), http.StatusSeeOther, "SSO").Header().Get("Location")
				callback := br.expect(br.do(http.MethodGet, consent, ""), http.StatusSeeOther, "remembered consent").Header().Get("Location")
				codes[i] = codeVerifier{op.codeFrom(br, callback), v}
			}
			m := &cpuMeter{b: b}
			b.ReportAllocs()
			m.reset()
			for _, c := range codes {
				op.exchange(rp, c.code, c.verifier)
			}
			m.report("cpu-ns/req")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// requestRoundTrips reads the provider's count of its request handlers'
// store round trips.
func requestRoundTrips(tb testing.TB, g prometheus.Gatherer) float64 {
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "watashi_store_round_trips_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == "request" {
				return m.GetCounter().GetValue()
			}
		}
	}
	tb.Fatal("no round-trip counter")
	return 0
}
