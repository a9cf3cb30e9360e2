package idp

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/store"
)

// authorizeQuery is a valid /authorize request of the "web" client.
func authorizeQuery() url.Values {
	return url.Values{
		"client_id": {"web"}, "response_type": {"code"}, "scope": {"openid name"},
		"redirect_uri": {"https://rp.example/cb"}, "state": {"st-1"}, "nonce": {"n-1"},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
		"code_challenge_method": {"S256"},
	}
}

// redisMemory is used_memory of the Redis behind kv.
func redisMemory(t *testing.T, kv store.KV) int64 {
	t.Helper()
	info, err := kv.(*store.Redis).Client().Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no used_memory in %q", info)
	return 0
}

// storedRequests lists the auth request keys and their sizes.
func storedRequests(t *testing.T, kv store.KV) map[string]int64 {
	t.Helper()
	c := kv.(*store.Redis).Client()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "test:ar:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, k := range keys {
		n, err := c.StrLen(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[k] = n
	}
	return out
}

// TestAuthorizeCannotFillTheStore runs the flood that filled Redis
// through /authorize against a real redis-server: a 60 KiB nonce is
// refused and stores nothing, 200 rapid requests from one address stop
// at the per-address limit, and no stored request exceeds the record cap.
// Redis's own used_memory is the measure.
func TestAuthorizeCannotFillTheStore(t *testing.T) {
	kv := redisKV(t)
	start := time.Date(2026, 12, 4, 10, 0, 5, 0, time.UTC)
	clock := &testClock{}
	clock.Advance(start.Sub(time.Now()))
	o := newTestOP(t, kv, func(o *Options) { o.Now = clock.Now })
	expectRedirectError := func(t *testing.T, res *http.Response, wantState bool) url.Values {
		t.Helper()
		loc := res.Header.Get("Location")
		short := loc[:min(len(loc), 200)]
		u, err := url.Parse(loc)
		if res.StatusCode != http.StatusFound || err != nil || u.Host != "rp.example" {
			t.Fatalf("%d %q, want the error at the RP", res.StatusCode, short)
		}
		q := u.Query()
		if q.Get("error") != "invalid_request" || q.Has("code") || q.Has("state") != wantState {
			t.Fatalf("error redirect %s", short)
		}
		return q
	}

	before := redisMemory(t, kv)

	// Over a parameter's cap, with the client and redirect URI good: the
	// RP hears invalid_request naming the parameter.
	t.Run("60 KiB nonce", func(t *testing.T) {
		q := authorizeQuery()
		q.Set("nonce", strings.Repeat("n", 60<<10))
		// Too large as a request before any parameter is looked at.
		res := o.get(authorizePath + "?" + q.Encode())
		if res.StatusCode != http.StatusRequestEntityTooLarge || res.Header.Get("Location") != "" {
			t.Fatalf("60 KiB request: %d %q, want a 413 page", res.StatusCode, res.Header.Get("Location"))
		}
		// Within the request size, over the parameter's cap.
		q.Set("nonce", strings.Repeat("n", authreq.ParamLimits()["nonce"]+1))
		got := expectRedirectError(t, o.get(authorizePath+"?"+q.Encode()), true)
		if !strings.Contains(got.Get("error_description"), "nonce") {
			t.Fatalf("description %q does not name the parameter", got.Get("error_description"))
		}
		// The same as a POST form.
		res, err := o.hc.PostForm(o.issuer+authorizePath, q)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		expectRedirectError(t, res, true)
		big := authorizeQuery()
		big.Set("nonce", strings.Repeat("n", 60<<10))
		res, err = o.hc.PostForm(o.issuer+authorizePath, big)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusRequestEntityTooLarge || res.Header.Get("Location") != "" {
			t.Fatalf("60 KiB form: %d, want a 413 page", res.StatusCode)
		}
	})

	t.Run("every parameter's cap", func(t *testing.T) {
		for name, max := range authreq.ParamLimits() {
			q := authorizeQuery()
			q.Set(name, strings.Repeat("a", max+1))
			res := o.get(authorizePath + "?" + q.Encode())
			switch name {
			case "client_id", "redirect_uri":
				// Where errors may go is not known: a page.
				if res.StatusCode != http.StatusRequestEntityTooLarge || res.Header.Get("Location") != "" {
					t.Errorf("%s over its cap: %d %q, want a 413 page", name, res.StatusCode, res.Header.Get("Location"))
				}
			default:
				expectRedirectError(t, res, name != "state")
			}
		}
		// A parameter given twice is refused too (RFC 6749 §3.1): at the
		// RP, or on a page when it is the client or the redirect URI.
		q := authorizeQuery()
		q.Add("nonce", "again")
		expectRedirectError(t, o.get(authorizePath+"?"+q.Encode()), true)
		q = authorizeQuery()
		q.Add("redirect_uri", "https://rp.example/cb")
		if res := o.get(authorizePath + "?" + q.Encode()); res.StatusCode != http.StatusBadRequest || res.Header.Get("Location") != "" {
			t.Errorf("redirect_uri twice: %d %q, want a 400 page", res.StatusCode, res.Header.Get("Location"))
		}
	})

	// The record cap holds whatever JSON escaping does to values within
	// their caps: '<' is six bytes in the record.
	t.Run("record cap", func(t *testing.T) {
		q := authorizeQuery()
		q.Set("state", strings.Repeat("<", authreq.ParamLimits()["state"]))
		q.Set("login_hint", strings.Repeat("<", authreq.ParamLimits()["login_hint"]))
		res := o.get(authorizePath + "?" + q.Encode())
		got := expectRedirectError(t, res, true)
		if !strings.Contains(got.Get("error_description"), "too large") {
			t.Fatalf("description %q", got.Get("error_description"))
		}
	})

	if n := len(storedRequests(t, kv)); n != 0 {
		t.Fatalf("refused requests stored %d records", n)
	}

	// The flood: 200 valid requests with a nonce at its cap, as fast as
	// the client can send them, from one address.
	var accepted, limited int
	for i := range 200 {
		q := authorizeQuery()
		q.Set("nonce", strings.Repeat("n", authreq.ParamLimits()["nonce"]))
		q.Set("state", fmt.Sprint(i))
		res := o.get(authorizePath + "?" + q.Encode())
		switch {
		case res.StatusCode == http.StatusFound && strings.HasPrefix(res.Header.Get("Location"), "/login?id="):
			accepted++
		case res.StatusCode == http.StatusTooManyRequests:
			if res.Header.Get("Location") != "" || res.Header.Get("Retry-After") == "" {
				t.Fatalf("429 with Location %q, Retry-After %q", res.Header.Get("Location"), res.Header.Get("Retry-After"))
			}
			limited++
		default:
			t.Fatalf("request %d: %d %q", i, res.StatusCode, res.Header.Get("Location"))
		}
	}
	if accepted != authreq.CreatePerAddress || limited != 200-authreq.CreatePerAddress {
		t.Fatalf("accepted %d, limited %d; want %d and the rest", accepted, limited, authreq.CreatePerAddress)
	}
	stored := storedRequests(t, kv)
	if len(stored) != authreq.CreatePerAddress {
		t.Fatalf("%d records stored, want %d", len(stored), authreq.CreatePerAddress)
	}
	for k, n := range stored {
		if n > authreq.MaxRecordBytes {
			t.Fatalf("%s holds %d bytes, over the cap of %d", k, n, authreq.MaxRecordBytes)
		}
	}
	after := redisMemory(t, kv)
	// Each record is at most MaxRecordBytes plus Redis's own bookkeeping
	// of a key with a TTL (well under 1 KiB); the rate-limit counter is
	// one more small key.
	limit := int64(authreq.CreatePerAddress) * (authreq.MaxRecordBytes + 1024)
	t.Logf("used_memory %d -> %d (+%d bytes for %d requests, at most %d allowed)", before, after, after-before, accepted, limit)
	if after-before > limit {
		t.Fatalf("used_memory grew by %d bytes, more than %d", after-before, limit)
	}

	// Another address is not affected, and the next window lets the first
	// one in again.
	other := &http.Client{
		Transport:     &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	res, err := other.Get(o.issuer + authorizePath + "?" + authorizeQuery().Encode())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound {
		t.Fatalf("another address: %d", res.StatusCode)
	}
	clock.Advance(authreq.CreateWindow)
	if res := o.get(authorizePath + "?" + authorizeQuery().Encode()); res.StatusCode != http.StatusFound {
		t.Fatalf("next window: %d", res.StatusCode)
	}
}

// redisClients is connected_clients of the Redis behind kv.
func redisClients(t *testing.T, kv store.KV) int64 {
	t.Helper()
	info, err := kv.(*store.Redis).Client().Info(context.Background(), "clients").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "connected_clients:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatalf("no connected_clients in %q", info)
	return 0
}

// TestEventStreamsBounded: every event stream holds a subscription, a
// Redis connection of its own, for minutes. One client address may hold
// only a few at once; past that the page is told to poll, and Redis
// sees no new connection.
func TestEventStreamsBounded(t *testing.T) {
	kv := redisKV(t)
	o := newSigninOP(t, kv)
	b := o.browser()
	txID, _ := b.openTx(o.authorize("web"), authreq.PurposeProofing)
	open := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, o.issuer+"/login/tx/"+txID+"/events", nil)
		res, err := b.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		// Open streams would keep the test server from closing.
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	before, memBefore := redisClients(t, kv), redisMemory(t, kv)
	var streams []*http.Response
	for i := range streamsPerAddress {
		res := open()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %d", i, res.StatusCode)
		}
		streams = append(streams, res)
	}
	during := redisClients(t, kv)
	t.Logf("%d streams: connected_clients %d -> %d, used_memory +%d bytes", streamsPerAddress, before, during, redisMemory(t, kv)-memBefore)
	if during-before < streamsPerAddress {
		t.Fatalf("connected_clients %d -> %d: the streams do not hold subscriptions?", before, during)
	}
	res := open()
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("stream over the limit: %d", res.StatusCode)
	}
	if now := redisClients(t, kv); now > during {
		t.Fatalf("the refused stream opened a Redis connection: %d -> %d", during, now)
	}
	// Closing one makes room; the limit counts open streams, not opens.
	streams[0].Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := open()
		if res.StatusCode == http.StatusOK {
			streams[0] = res
			break
		}
		res.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no room after a stream closed: %d", res.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
