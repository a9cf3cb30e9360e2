package idp

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/whitelist"
	"github.com/watashi-id/watashi/whitelist/whitelisttest"
)

// pausableRedis is a real redis-server this test can stop answering
// (SIGSTOP) and resume (SIGCONT), with its data intact: an outage as
// clients see it, a hung primary, followed by recovery.
type pausableRedis struct {
	t   testing.TB
	kv  *store.Redis
	pid int
}

func startPausableRedis(t testing.TB) *pausableRedis {
	t.Helper()
	addr := storetest.StartRedis(t)
	kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: "outage:", Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	info, err := kv.Client().Info(context.Background(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	pid := 0
	for sc := bufio.NewScanner(strings.NewReader(info)); sc.Scan(); {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "process_id:"); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if pid <= 0 {
		t.Fatalf("no process_id in INFO server:\n%s", info)
	}
	p := &pausableRedis{t: t, kv: kv, pid: pid}
	t.Cleanup(p.resume) // never leave it stopped
	return p
}

func (p *pausableRedis) pause() {
	p.t.Helper()
	if err := syscall.Kill(p.pid, syscall.SIGSTOP); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pausableRedis) resume() { _ = syscall.Kill(p.pid, syscall.SIGCONT) }

// internalText is what an answer to a client must never hold: the
// store's address, a Go error's wording, a package prefix.
var internalText = []string{"dial", "tcp", "127.0.0.1:", "redis", "i/o timeout", "deadline", "connection refused", "provider:", "clients:", "whitelist:", "store:", "authreq:"}

func checkNoInternals(t *testing.T, what, text string) {
	t.Helper()
	for _, s := range internalText {
		if strings.Contains(strings.ToLower(text), s) {
			t.Fatalf("%s leaks %q: %s", what, s, text)
		}
	}
}

// A store outage is never reported as a permanent refusal: a registered
// client's /authorize is a "try again" page (503, Retry-After), not
// "unknown client"; the RP of a static client hears
// temporarily_unavailable; the API endpoints answer 503 with Retry-After
// and temporarily_unavailable for a good code and good tokens, never
// invalid_grant, invalid_token, {"active":false} or a revocation that did
// not happen; no answer holds internal text. When the store is back, the
// same code and tokens work.
func TestStoreOutageIsTemporary(t *testing.T) {
	redis := startPausableRedis(t)
	ctx := context.Background()
	reg, err := whitelist.New(whitelist.Options{Backend: whitelist.KVBackend(redis.kv, store.ErrNotFound), Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	change := whitelist.Change{Actor: "test", Via: "test", Reason: "outage test"}
	added, err := reg.Add(ctx, whitelist.AddRequest{Metadata: whitelisttest.WebMetadata(t, "reg.example"), Tier: whitelist.TierStandard, Change: change})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Approve(ctx, added.Client.ID, change); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	o := newTestOP(t, redis.kv, func(o *Options) {
		o.Registry = reg
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	conf := o.oauth("web", "offline_access")
	v := oauth2.GenerateVerifier()
	code := o.login(conf, v, testAccount, nil)
	tok := o.loginTokens(conf, testAccount, nil)

	redis.pause()

	// /authorize of a registered client the registry cannot be asked
	// about.
	authz := url.Values{"client_id": {added.Client.ID}, "redirect_uri": {"https://reg.example/cb"}, "response_type": {"code"},
		"scope": {"openid"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	res, page := o.call(http.MethodGet, authorizePath+"?"+authz.Encode(), "", nil)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || res.Header.Get("Location") != "" ||
		strings.Contains(page, "登録されていません") || !strings.Contains(page, "一時的にご利用いただけません") {
		t.Fatalf("registered client's /authorize in an outage: %d Retry-After %q Location %q\n%s", res.StatusCode, res.Header.Get("Retry-After"), res.Header.Get("Location"), page)
	}
	checkNoInternals(t, "the /authorize page", page)

	// /authorize of a static client: known, so the RP hears it.
	authz.Set("client_id", "web")
	authz.Set("redirect_uri", "https://rp.example/cb")
	authz.Set("state", "s-out")
	res, _ = o.call(http.MethodGet, authorizePath+"?"+authz.Encode(), "", nil)
	back, _ := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || back.Query().Get("error") != "temporarily_unavailable" || back.Query().Get("state") != "s-out" || back.Query().Get("iss") != o.issuer {
		t.Fatalf("static client's /authorize in an outage: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	checkNoInternals(t, "the error redirect", back.RawQuery)

	basic := map[string]string{"Authorization": "Basic " + basicAuth("web", testSecret)}
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      map[string]string
	}{
		{"code exchange", http.MethodPost, tokenPath, codeForm(code, conf.RedirectURL, v).Encode(), basic},
		{"refresh", http.MethodPost, tokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}.Encode(), basic},
		{"userinfo", http.MethodGet, userinfoPath, "", map[string]string{"Authorization": "Bearer " + tok.AccessToken}},
		{"introspection", http.MethodPost, introspectPath, "token=" + url.QueryEscape(tok.AccessToken), basic},
		{"revocation", http.MethodPost, revokePath, "token=" + url.QueryEscape(tok.RefreshToken), basic},
	} {
		res, body := o.call(tc.method, tc.path, tc.body, tc.hdr)
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" ||
			!strings.Contains(body, `"error":"temporarily_unavailable"`) || res.Header.Get("WWW-Authenticate") != "" {
			t.Fatalf("%s in an outage: %d Retry-After %q: %s", tc.name, res.StatusCode, res.Header.Get("Retry-After"), body)
		}
		checkNoInternals(t, tc.name, body)
	}

	redis.resume()

	// Nothing was spent, revoked or forgotten.
	if _, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(v)); err != nil {
		t.Fatalf("the code after the outage: %v", err)
	}
	if st, body := o.userinfo(tok.AccessToken); st != http.StatusOK {
		t.Fatalf("userinfo after the outage: %d %v", st, body)
	}
	if st, body := o.refresh("web", tok.RefreshToken); st != http.StatusOK {
		t.Fatalf("refresh after the outage: %d %v", st, body)
	}
	res, _ = o.call(http.MethodGet, authorizePath+"?"+url.Values{"client_id": {added.Client.ID}, "redirect_uri": {"https://reg.example/cb"},
		"response_type": {"code"}, "scope": {"openid"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}.Encode(), "", nil)
	if res.StatusCode != http.StatusFound || !strings.HasPrefix(res.Header.Get("Location"), "/login?id=") {
		t.Fatalf("registered client's /authorize after the outage: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	// The causes went to the log, for the operator.
	if !strings.Contains(logs.String(), "temporarily_unavailable") && !strings.Contains(logs.String(), "unavailable") {
		t.Fatalf("no outage in the logs:\n%s", logs.String())
	}
}

// faultKV is a real store that fails the next write of one kind, armed by
// the test: the store failing in the middle of an exchange, which a real
// server cannot be made to do at an exact step.
type faultKV struct {
	store.KV
	prefix atomic.Pointer[string]
	// one fails a single operation of the next batch holding it, while
	// the rest of the batch applies (a command refused by the server,
	// say for memory): kind and key prefix.
	one atomic.Pointer[oneFault]
}

type oneFault struct {
	kind   store.OpKind
	prefix string
}

func (f *faultKV) failNextSet(prefix string) { f.prefix.Store(&prefix) }

func (f *faultKV) failNextOp(kind store.OpKind, prefix string) {
	f.one.Store(&oneFault{kind: kind, prefix: prefix})
}

func (f *faultKV) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if p := f.prefix.Load(); p != nil && strings.HasPrefix(key, *p) && f.prefix.CompareAndSwap(p, nil) {
		return errors.New("injected: connection reset by peer")
	}
	return f.KV.Set(ctx, key, val, ttl)
}

// Do fails a batch holding the armed write as a whole, before anything
// is applied: the connection dropped on the way.
func (f *faultKV) Do(ctx context.Context, ops ...store.Op) ([]store.Result, error) {
	if one := f.one.Load(); one != nil {
		for i, op := range ops {
			if op.Kind != one.kind || !strings.HasPrefix(op.Key, one.prefix) || !f.one.CompareAndSwap(one, nil) {
				continue
			}
			rest := append(slices.Clone(ops[:i]), ops[i+1:]...)
			res, err := f.KV.Do(ctx, rest...)
			if err != nil {
				return nil, err
			}
			failed := store.Result{Err: errors.New("injected: OOM command not allowed")}
			return append(res[:i:i], append([]store.Result{failed}, res[i:]...)...), nil
		}
	}
	for _, op := range ops {
		if p := f.prefix.Load(); p != nil && op.Kind == store.OpSet && strings.HasPrefix(op.Key, *p) && f.prefix.CompareAndSwap(p, nil) {
			return nil, errors.New("injected: connection reset by peer")
		}
	}
	return f.KV.Do(ctx, ops...)
}

// A store failing after a code or refresh token was spent, while the
// tokens are minted: the RP hears 503 with Retry-After, and its retry of
// the same request works. The failed attempt neither burns the code nor
// reads as reuse of the refresh token (which would revoke the family).
func TestFailureMidExchangeCanBeRetried(t *testing.T) {
	kv := &faultKV{KV: store.NewMemory()}
	o := newTestOP(t, kv, nil)
	conf := o.oauth("web", "offline_access")
	v := oauth2.GenerateVerifier()
	code := o.login(conf, v, testAccount, nil)
	basic := map[string]string{"Authorization": "Basic " + basicAuth("web", testSecret)}

	kv.failNextSet("rt:") // the refresh token of the exchange
	res, body := o.call(http.MethodPost, tokenPath, codeForm(code, conf.RedirectURL, v).Encode(), basic)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || !strings.Contains(body, temporarilyUnavailableJSON) {
		t.Fatalf("exchange with the store failing: %d %s", res.StatusCode, body)
	}
	checkNoInternals(t, "the failed exchange", body)
	tok, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(v))
	if err != nil {
		t.Fatalf("the retried exchange: %v", err)
	}
	if st, _ := o.userinfo(tok.AccessToken); st != http.StatusOK {
		t.Fatalf("userinfo after the retried exchange: %d", st)
	}

	kv.failNextSet("rt:") // the next refresh token of the rotation
	res, body = o.call(http.MethodPost, tokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}.Encode(), basic)
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, temporarilyUnavailableJSON) {
		t.Fatalf("refresh with the store failing: %d %s", res.StatusCode, body)
	}
	st, r := o.refresh("web", tok.RefreshToken)
	if st != http.StatusOK {
		t.Fatalf("the retried refresh: %d %v", st, r)
	}
	if in := o.introspect(r["access_token"].(string), "web"); in["active"] != true {
		t.Fatalf("the family after a retried refresh: %v", in)
	}
	// The retried token is spent now, as any rotated token.
	if st, _ := o.refresh("web", tok.RefreshToken); st == http.StatusOK {
		t.Fatal("a rotated refresh token worked twice")
	}

	// One operation of the rotation's batch fails while the rest
	// applies: the presented token was consumed, so it is given back,
	// and the retry works without reading as reuse. (The reuse above
	// ended that family: a new one.)
	v = oauth2.GenerateVerifier()
	tok, err = conf.Exchange(o.ctx(), o.login(conf, v, testAccount, nil), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	rt := tok.RefreshToken
	for _, fault := range []struct {
		name   string
		kind   store.OpKind
		prefix string
	}{
		{"the next token's write", store.OpSet, "rt:"},
		{"the grant's second reading", store.OpGet, "grant:"},
	} {
		kv.failNextOp(fault.kind, fault.prefix)
		res, body = o.call(http.MethodPost, tokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode(), basic)
		if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, temporarilyUnavailableJSON) {
			t.Fatalf("refresh with %s failing: %d %s", fault.name, res.StatusCode, body)
		}
		if kv.one.Load() != nil {
			t.Fatalf("%s was never attempted", fault.name)
		}
		st, r = o.refresh("web", rt)
		if st != http.StatusOK {
			t.Fatalf("the refresh retried after %s failed: %d %v", fault.name, st, r)
		}
		rt, _ = r["refresh_token"].(string)
	}
}

const temporarilyUnavailableJSON = `"error":"temporarily_unavailable"`
