package idp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/idp/walletsim"
)

// Whole logins, driven in a loop by a few residents at once against two
// provider nodes sharing a Redis Sentinel deployment or a Redis Cluster,
// while the Redis side fails over or reshards. Every login is the full
// flow of the e2e tests (authorize, sign-in transaction, the wallet's
// JWS with chain and OCSP checks, finish, consent, callback, code
// exchange, userinfo), each step checked; a login that fails anywhere
// counts as one failure. The figures the test logs (failed logins, how
// long after the incident the last one failed) are what
// docs/operator-guide.md quotes.

// haDeployment is two provider nodes on one store behind a round-robin
// front, served in process (no sockets but the Redis ones).
type haDeployment struct {
	reg     *prometheus.Registry // both nodes' metrics
	front   http.Handler
	issuer  string
	wallet  *walletsim.Wallet
	subject atomic.Value // the pairwise sub of the first login
}

type roundRobin struct {
	nodes []http.Handler
	next  atomic.Uint64
}

func (rr *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rr.nodes[rr.next.Add(1)%uint64(len(rr.nodes))].ServeHTTP(w, r)
}

func newHADeployment(t *testing.T, kv store.KV) *haDeployment {
	t.Helper()
	pki := e2eSim(t)
	const issuer = "http://op.ha"
	reg := prometheus.NewRegistry()
	o := idp.Options{Issuer: issuer, Dev: true, Store: kv, Clients: e2eClients(pki.secretHash),
		PairwiseKey: randomBytes(t, 32), CookieKey: randomBytes(t, 32), Metrics: reg, KEK: seal.GenerateRing()}
	copy(o.TokenKey[:], randomBytes(t, 32))
	rr := &roundRobin{}
	for range 2 {
		n := o
		n.Verifier = pki.verifier(t) // each node its own OCSP cache
		srv, err := idp.New(context.Background(), n)
		if err != nil {
			t.Fatal(err)
		}
		rr.nodes = append(rr.nodes, srv.Handler())
	}
	return &haDeployment{reg: reg, front: rr, issuer: issuer, wallet: pki.wallet(t, e2eTaro)}
}

// haClient is a browser, the wallet or the RP: an http.Client whose
// transport calls the front directly, from its own client address (so
// that the per-address rate limits see many residents, not one).
func (d *haDeployment) haClient(jar http.CookieJar) *http.Client {
	addr := nextAddr()
	return &http.Client{
		Jar:           jar,
		Transport:     inProcess{h: d.front, addr: &addr},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
}

type memJar struct {
	mu sync.Mutex
	c  map[string]*http.Cookie
}

func (j *memJar) SetCookies(_ *url.URL, cs []*http.Cookie) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, c := range cs {
		if c.MaxAge < 0 {
			delete(j.c, c.Name)
		} else {
			j.c[c.Name] = c
		}
	}
}

func (j *memJar) Cookies(*url.URL) []*http.Cookie {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []*http.Cookie
	for _, c := range j.c {
		out = append(out, &http.Cookie{Name: c.Name, Value: c.Value})
	}
	return out
}

// step is one request of a login: it fails unless the status is want.
func step(c *http.Client, method, target string, form url.Values, want int, what string, extra ...string) (*http.Response, string, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		return nil, "", err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != want {
		return nil, "", fmt.Errorf("%s: HTTP %d, want %d: %.300s", what, res.StatusCode, want, pageText(string(b)))
	}
	return res, string(b), nil
}

var reTags = regexp.MustCompile(`(?s)<head>.*</head>|<[^>]+>|\s+`)

// pageText is an error page's text, for failure messages.
func pageText(b string) string { return strings.TrimSpace(reTags.ReplaceAllString(b, " ")) }

func scrapeErr(re interface{ FindStringSubmatch(string) []string }, page, what string) (string, error) {
	m := re.FindStringSubmatch(page)
	if m == nil {
		return "", fmt.Errorf("%s not on the page", what)
	}
	return strings.ReplaceAll(m[1], "&amp;", "&"), nil
}

// login is one whole login (proofing when purpose is "proofing"); it
// returns the pairwise subject the RP received.
func (d *haDeployment) login(ctx context.Context, purpose string) (string, error) {
	br := d.haClient(&memJar{c: map[string]*http.Cookie{}})
	verifier := oauth2.GenerateVerifier()
	q := url.Values{"client_id": {"city"}, "response_type": {"code"}, "scope": {strings.Join(e2eScopes, " ")},
		"redirect_uri": {e2eCityRedirect}, "state": {"ha-state"}, "nonce": {"ha-nonce"}, "prompt": {"consent"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
	res, _, err := step(br, http.MethodGet, d.issuer+"/authorize?"+q.Encode(), nil, http.StatusFound, "authorize")
	if err != nil {
		return "", err
	}
	loginURL := res.Header.Get("Location")
	if !strings.HasPrefix(loginURL, "/") && !strings.HasPrefix(loginURL, d.issuer) {
		// An error the provider sends back to the RP.
		u, _ := url.Parse(loginURL)
		return "", fmt.Errorf("authorize: back to the RP with %s: %s", u.Query().Get("error"), u.Query().Get("error_description"))
	}
	if purpose != "" {
		loginURL += "&purpose=" + purpose
	}
	if res, _, err = step(br, http.MethodGet, abs(d.issuer, loginURL), nil, http.StatusSeeOther, "login"); err != nil {
		return "", err
	}
	txPage := abs(d.issuer, res.Header.Get("Location"))
	_, page, err := step(br, http.MethodGet, txPage, nil, http.StatusOK, "login page")
	if err != nil {
		return "", err
	}
	csrf, err := scrapeErr(reBenchCSRF, page, "csrf token")
	if err != nil {
		return "", err
	}
	txURL, err := scrapeErr(reBenchTxURL, page, "transaction URL")
	if err != nil {
		return "", err
	}
	if err := d.wallet.Approve(ctx, d.haClient(nil), txURL, walletsim.FormatJWS); err != nil {
		return "", fmt.Errorf("wallet: %w", err)
	}
	tx, _ := url.Parse(txPage)
	txID := tx.Query().Get("tx")
	_, st, err := step(br, http.MethodGet, d.issuer+"/login/tx/"+txID+"/status", nil, http.StatusOK, "status")
	if err != nil {
		return "", err
	}
	if !strings.Contains(st, `"state":"verified"`) {
		return "", fmt.Errorf("status %s", st)
	}
	origin := []string{"Origin", d.issuer}
	if res, _, err = step(br, http.MethodPost, d.issuer+"/login/tx/"+txID+"/finish", url.Values{"csrf_token": {csrf}}, http.StatusSeeOther, "finish", origin...); err != nil {
		return "", err
	}
	consent := abs(d.issuer, res.Header.Get("Location"))
	if _, page, err = step(br, http.MethodGet, consent, nil, http.StatusOK, "consent page"); err != nil {
		return "", err
	}
	if res, _, err = step(br, http.MethodPost, consent, allowAll(page, csrf), http.StatusSeeOther, "consent", origin...); err != nil {
		return "", err
	}
	if res, _, err = step(br, http.MethodGet, abs(d.issuer, res.Header.Get("Location")), nil, http.StatusFound, "callback"); err != nil {
		return "", err
	}
	cb, err := url.Parse(res.Header.Get("Location"))
	if err != nil || cb.Query().Get("code") == "" || cb.Query().Get("state") != "ha-state" {
		return "", fmt.Errorf("callback to %s", res.Header.Get("Location"))
	}
	rp := d.haClient(nil)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "code_verifier": {verifier}, "redirect_uri": {e2eCityRedirect}}
	_, body, err := step(rp, http.MethodPost, d.issuer+"/oauth/token", form, http.StatusOK, "token",
		"Authorization", "Basic "+basicAuth("city", url.QueryEscape(e2eSecret)))
	if err != nil {
		return "", err
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(body), &tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("token response %.200s", body)
	}
	_, body, err = step(rp, http.MethodGet, d.issuer+"/userinfo", nil, http.StatusOK, "userinfo", "Authorization", "Bearer "+tok.AccessToken)
	if err != nil {
		return "", err
	}
	var ui struct {
		Sub       string `json:"sub"`
		Birthdate string `json:"birthdate"`
	}
	if err := json.Unmarshal([]byte(body), &ui); err != nil || ui.Birthdate != "1980-12-31" || ui.Sub == "" {
		return "", fmt.Errorf("userinfo %.200s", body)
	}
	return ui.Sub, nil
}

func abs(issuer, u string) string {
	if strings.HasPrefix(u, "/") {
		return issuer + u
	}
	return u
}

func basicAuth(user, pass string) string {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// loadResult is what the residents saw around one incident.
type loadResult struct {
	ok, failed int
	// lastFailure is how long after the incident began the last failed
	// login ended (0: none failed); took is the incident's own duration.
	lastFailure, took time.Duration
	errs              []string
}

func (r loadResult) String() string {
	return fmt.Sprintf("%d logins ok, %d failed, last failure ended %v after the incident began (incident took %v)",
		r.ok, r.failed, r.lastFailure.Round(time.Millisecond), r.took.Round(time.Millisecond))
}

// loadThrough runs logins from workers residents at once for lead
// before the incident, during it, and for tail after it; bounded in time
// overall. Every login must return the resident's one subject: a login
// that "succeeds" as someone new would mean the account was lost.
func (d *haDeployment) loadThrough(t *testing.T, workers int, lead, tail time.Duration, incident func()) loadResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	want, _ := d.subject.Load().(string)
	var (
		mu    sync.Mutex
		res   loadResult
		start time.Time // of the incident; zero before it
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() && ctx.Err() == nil {
				sub, err := d.login(ctx, "")
				if err == nil && sub != want {
					err = errors.New("login returned another subject: the account was lost")
				}
				end := time.Now()
				mu.Lock()
				if err != nil {
					res.failed++
					if !start.IsZero() {
						res.lastFailure = max(res.lastFailure, end.Sub(start))
					}
					// The first few, and a sample of late ones: a slow recovery
					// is to be explained from the log alone.
					if late := !start.IsZero() && end.Sub(start) > 3*time.Second; len(res.errs) < 5 || late && len(res.errs) < 25 {
						res.errs = append(res.errs, fmt.Sprintf("%v: %v", end.Sub(start).Round(time.Millisecond), err))
					}
				} else {
					res.ok++
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(lead)
	mu.Lock()
	start = time.Now()
	mu.Unlock()
	incident()
	res.took = time.Since(start)
	time.Sleep(tail)
	stop.Store(true)
	wg.Wait()
	if len(res.errs) > 0 {
		t.Logf("errors (time after the incident began): %s", strings.Join(res.errs, " | "))
	}
	return res
}

// haRecovery bounds how long logins may keep failing once the new
// master is known. On a loaded two-core CI machine this is generous on
// purpose: the logged figures are the measurement, this only catches a
// provider that does not recover at all.
const haRecovery = 15 * time.Second

func (d *haDeployment) enrol(t *testing.T) {
	t.Helper()
	sub, err := d.login(context.Background(), "proofing")
	if err != nil {
		t.Fatalf("proofing: %v", err)
	}
	d.subject.Store(sub)
	if _, err := d.login(context.Background(), ""); err != nil {
		t.Fatalf("first sign-in: %v", err)
	}
}

// storeErrors sums watashi_store_errors_total by kind over both nodes.
func (d *haDeployment) storeErrors(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := d.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "watashi_store_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && m.GetCounter().GetValue() > 0 {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

func TestHASentinelLoginsThroughFailover(t *testing.T) {
	s := storetest.StartSentinel(t, 2, 3)
	// Room for the CI machine (see idp/store's haTimeouts).
	kv, err := store.NewRedis(store.RedisOptions{Addrs: s.SentinelAddrs, MasterName: s.MasterName, Prefix: "watashi:",
		Timeout: 5 * time.Second, WaitTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	d := newHADeployment(t, kv)
	d.enrol(t)

	forced := d.loadThrough(t, 2, time.Second, 3*time.Second, func() { s.Failover(t) })
	t.Logf("SENTINEL FAILOVER: %s", forced)
	killed := d.loadThrough(t, 2, time.Second, 4*time.Second, func() {
		old, err := s.MasterAddr(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		s.Node(old).Kill()
		s.WaitNewMaster(t, old, storetest.FailoverWithin)
	})
	t.Logf("kill -9 of the master: %s", killed)
	for name, r := range map[string]loadResult{"forced failover": forced, "kill -9": killed} {
		if r.ok < 10 {
			t.Errorf("%s: only %d logins succeeded", name, r.ok)
		}
		// How long Sentinel takes to promote a replica is Sentinel's
		// (down-after, elections: slower on a loaded machine); from then
		// on, recovering is the provider's.
		if after := r.lastFailure - r.took; after > haRecovery {
			t.Errorf("%s: logins failed until %v after the new master was known", name, after)
			for _, n := range append(slices.Clone(s.Data), s.Sentinels...) {
				t.Logf("redis %s:\n%s", n.Addr, n.LogTail())
			}
		}
	}
	// The resident's account, certificate link and signing keys survived
	// both: the same subject again (checked on every login above too).
	var sub string
	for end := time.Now().Add(haRecovery); ; time.Sleep(100 * time.Millisecond) {
		if sub, err = d.login(context.Background(), ""); err == nil || time.Now().After(end) {
			break
		}
	}
	if err != nil || sub != d.subject.Load() {
		t.Fatalf("after both failovers: sub %q, %v", sub, err)
	}
}

func TestHAClusterLoginsThroughReshard(t *testing.T) {
	c := storetest.StartCluster(t, 3, 1)
	kv, err := store.NewRedis(store.RedisOptions{Addrs: c.Addrs(), Prefix: "watashi:", Timeout: 5 * time.Second, WaitTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	d := newHADeployment(t, kv)
	d.enrol(t)
	_, ids := c.Masters(t)
	slices.Sort(ids)
	res := d.loadThrough(t, 2, time.Second, 2*time.Second, func() {
		c.MoveSlots(t, ids[0], ids[1], 1500)
		c.WaitConsistent(t, 30*time.Second)
	})
	errs := d.storeErrors(t)
	t.Logf("reshard of 1500 slots: %s; store errors by kind: %v", res, errs)
	if res.ok < 10 {
		t.Errorf("only %d logins succeeded", res.ok)
	}
	// A reshard is planned maintenance: clients follow ASK and MOVED and
	// nothing may fail because of it. The one failure tolerated is a
	// replica too slow to confirm a durable write in time on an
	// overloaded CI machine, which the store counts as not_replicated.
	if errs["error"] > 0 || float64(res.failed) > errs["not_replicated"]+errs["timeout"] {
		t.Errorf("%d logins failed during the reshard; store errors %v", res.failed, errs)
	}
}
