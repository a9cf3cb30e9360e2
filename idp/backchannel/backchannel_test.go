package backchannel_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/watashi-id/watashi/idp/backchannel"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/keys"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/whitelist"
)

// rp is a relying party's back-channel logout endpoint: a real TLS
// server that records the logout tokens it receives and answers with
// the status it is told to.
type rp struct {
	*httptest.Server
	mu     sync.Mutex
	tokens []string
	status int
}

func newRP(t *testing.T) *rp {
	r := &rp{status: http.StatusOK}
	r.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		tok := req.PostFormValue("logout_token")
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.status == http.StatusOK {
			r.tokens = append(r.tokens, tok)
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(r.status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *rp) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.tokens...)
}

func (r *rp) answer(status int) {
	r.mu.Lock()
	r.status = status
	r.mu.Unlock()
}

// verify checks a logout token as an RP would (§2.6): signature against
// the JWKS, typ, iss, aud, the event, no nonce, iat/exp.
func verify(t *testing.T, km *keys.Manager, tok, aud string) backchannel.Token {
	t.Helper()
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Header
	if h.ExtraHeaders["typ"] != "logout+jwt" {
		t.Fatalf("typ %v", h.ExtraHeaders["typ"])
	}
	pub, _ := km.Published(context.Background())
	var payload []byte
	for _, k := range pub {
		if k.ID() == h.KeyID {
			payload, err = jws.Verify(k.Key())
		}
	}
	if payload == nil || err != nil {
		t.Fatalf("signature: %v", err)
	}
	var raw map[string]any
	_ = json.Unmarshal(payload, &raw)
	if _, ok := raw["nonce"]; ok {
		t.Fatal("logout token carries a nonce")
	}
	var c backchannel.Token
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "https://id.example.jp" || c.Audience != aud || c.JTI == "" || c.Exp() <= c.IssuedAt || c.Sub() == "" {
		t.Fatalf("claims %s", payload)
	}
	if string(c.Events[backchannel.EventURI]) != "{}" || len(c.Events) != 1 {
		t.Fatalf("events %s", payload)
	}
	return c
}

func TestLogoutTokens(t *testing.T) {
	for name, newKV := range map[string]func(t *testing.T) store.KV{
		"memory": func(*testing.T) store.KV { return store.NewMemory() },
		"redis": func(t *testing.T) store.KV {
			kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{storetest.StartRedis(t)}, Prefix: "bcl:"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { kv.Close() })
			return kv
		},
	} {
		t.Run(name, func(t *testing.T) { testLogoutTokens(t, newKV(t)) })
	}
}

func testLogoutTokens(t *testing.T, kv store.KV) {
	ctx := context.Background()
	a, b := newRP(t), newRP(t)
	tlsConf := &tls.Config{RootCAs: a.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	fetcher := whitelist.NewFetcher(whitelist.FetcherOptions{TLS: tlsConf, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	res, err := clients.New(ctx, clients.Options{PairwiseKey: make([]byte, 32), Static: []*clients.Client{
		{ID: "rp-a", RedirectURIs: []string{"https://a.example/cb"}, AuthMethod: "none", BackchannelLogoutURI: a.URL + "/bcl"},
		{ID: "rp-b", RedirectURIs: []string{"https://b.example/cb"}, AuthMethod: "none", BackchannelLogoutURI: b.URL + "/bcl", IDTokenAlg: "RS256"},
		{ID: "rp-c", RedirectURIs: []string{"https://c.example/cb"}, AuthMethod: "none"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	km, err := keys.New(kv, keys.Options{KEK: seal.GenerateRing()})
	if err != nil || km.Ensure(ctx) != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := func() time.Time { return now }
	s, err := backchannel.New(backchannel.Options{
		Store: kv, Issuer: "https://id.example.jp", Clients: res, Keys: km, Fetcher: fetcher, Now: clk,
		SID:   func(sid, sector string) string { return "sid(" + sid + "," + sector + ")" },
		Queue: backchannel.QueueForTest(),
	})
	if err != nil {
		t.Fatal(err)
	}
	// One session ended in which three clients got tokens; c has no URI
	// and "gone" is unknown.
	if err := s.Ended(ctx, "ev-1", "acct-1", "sess-1", []string{"rp-a", "rp-b", "rp-c", "gone", "rp-a"}); err != nil {
		t.Fatal(err)
	}
	// The event handled again: queued once.
	if err := s.Ended(ctx, "ev-1", "acct-1", "sess-1", []string{"rp-a", "rp-b"}); err != nil {
		t.Fatal(err)
	}
	s.Round(ctx)
	if len(a.got()) != 1 || len(b.got()) != 1 {
		t.Fatalf("a got %d, b got %d tokens", len(a.got()), len(b.got()))
	}
	ca, cb := verify(t, km, a.got()[0], "rp-a"), verify(t, km, b.got()[0], "rp-b")
	ea, _ := res.Lookup(ctx, "rp-a")
	eb, _ := res.Lookup(ctx, "rp-b")
	if ca.Sub() != res.Subject(ea.Client, "acct-1") || cb.Sub() != res.Subject(eb.Client, "acct-1") || ca.Sub() == cb.Sub() {
		t.Fatalf("subs %q %q: want each RP's pairwise sub", ca.Sub(), cb.Sub())
	}
	if ca.SID != "sid(sess-1,a.example)" || cb.SID != "sid(sess-1,b.example)" {
		t.Fatalf("sids %q %q", ca.SID, cb.SID)
	}
	if jws, _ := jose.ParseSigned(b.got()[0], []jose.SignatureAlgorithm{jose.RS256}); jws == nil {
		t.Fatal("rp-b asked for RS256")
	}

	// rp-a is down: the token waits and is retried, same jti, fresh iat.
	a.answer(http.StatusServiceUnavailable)
	if err := s.Ended(ctx, "ev-2", "acct-1", "", []string{"rp-a"}); err != nil {
		t.Fatal(err)
	}
	s.Round(ctx)
	a.answer(http.StatusOK)
	s.Round(ctx) // not due yet
	if len(a.got()) != 1 {
		t.Fatal("retried before the backoff")
	}
	now = now.Add(time.Minute)
	s.Round(ctx)
	if len(a.got()) != 2 {
		t.Fatalf("not retried: %d", len(a.got()))
	}
	c2 := verify(t, km, a.got()[1], "rp-a")
	if c2.SID != "" || c2.IssuedAt != now.Unix() {
		t.Fatalf("consent-withdrawn style token: %+v", c2)
	}

	// An RP that refuses the token (400) is not asked again.
	b.answer(http.StatusBadRequest)
	_ = s.Ended(ctx, "ev-3", "acct-1", "sess-2", []string{"rp-b"})
	s.Round(ctx)
	b.answer(http.StatusOK)
	now = now.Add(time.Hour)
	s.Round(ctx)
	if len(b.got()) != 1 {
		t.Fatalf("a refused token was sent again: %d", len(b.got()))
	}
}

func TestNewRequiresParts(t *testing.T) {
	if _, err := backchannel.New(backchannel.Options{}); err == nil || errors.Is(err, context.Canceled) {
		t.Fatal("New without parts")
	}
}

// TestHandle: the outbox consumer sends for SessionEnded (with sid) and
// ConsentWithdrawn (the withdrawn client only, without sid), and ignores
// other kinds.
func TestHandle(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	a, b := newRP(t), newRP(t)
	tlsConf := &tls.Config{RootCAs: a.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	fetcher := whitelist.NewFetcher(whitelist.FetcherOptions{TLS: tlsConf, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	res, err := clients.New(ctx, clients.Options{PairwiseKey: make([]byte, 32), Static: []*clients.Client{
		{ID: "rp-a", RedirectURIs: []string{"https://a.example/cb"}, AuthMethod: "none", BackchannelLogoutURI: a.URL},
		{ID: "rp-b", RedirectURIs: []string{"https://b.example/cb"}, AuthMethod: "none", BackchannelLogoutURI: b.URL},
	}})
	if err != nil {
		t.Fatal(err)
	}
	km, _ := keys.New(kv, keys.Options{KEK: seal.GenerateRing()})
	if err := km.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := backchannel.New(backchannel.Options{Store: kv, Issuer: "https://id.example.jp", Clients: res, Keys: km, Fetcher: fetcher,
		SID: func(sid, sector string) string { return sid + "@" + sector }})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []events.Event{
		{ID: "1-0", Kind: events.SignedIn, AccountID: "acct", SessionID: "s1", ClientIDs: []string{"rp-a", "rp-b"}},
		{ID: "2-0", Kind: events.ConsentWithdrawn, AccountID: "acct", ClientIDs: []string{"rp-b", "rp-a"}},
		{ID: "3-0", Kind: events.CredentialChanged, AccountID: "acct", Credential: &events.Credential{Type: "jpki", Change: "delete", Ref: "x"}},
	} {
		if err := s.Handle(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	s.Round(ctx)
	if len(a.got()) != 0 || len(b.got()) != 1 {
		t.Fatalf("a got %d, b got %d; want only b, once", len(a.got()), len(b.got()))
	}
	if c := verify(t, km, b.got()[0], "rp-b"); c.SID != "" {
		t.Fatalf("a withdrawn consent names a session: %q", c.SID)
	}
	if err := s.Handle(ctx, events.Event{ID: "4-0", Kind: events.SessionEnded, AccountID: "acct", SessionID: "s2", ClientIDs: []string{"rp-a"}}); err != nil {
		t.Fatal(err)
	}
	s.Round(ctx)
	if len(a.got()) != 1 || verify(t, km, a.got()[0], "rp-a").SID != "s2@a.example" {
		t.Fatalf("session end: %d tokens", len(a.got()))
	}
}

// TestGuardedFetcher: a back-channel logout URI at an internal address is
// never called: the guarded fetcher refuses it, and the token is dropped
// rather than retried.
func TestGuardedFetcher(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	rp := newRP(t)
	tlsConf := &tls.Config{RootCAs: rp.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	strict := whitelist.NewFetcher(whitelist.FetcherOptions{TLS: tlsConf}) // production rules: no loopback
	res, err := clients.New(ctx, clients.Options{PairwiseKey: make([]byte, 32), Static: []*clients.Client{
		{ID: "rp", RedirectURIs: []string{"https://a.example/cb"}, AuthMethod: "none", BackchannelLogoutURI: rp.URL},
	}})
	if err != nil {
		t.Fatal(err)
	}
	km, _ := keys.New(kv, keys.Options{KEK: seal.GenerateRing()})
	if err := km.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := backchannel.New(backchannel.Options{Store: kv, Issuer: "https://id.example.jp", Clients: res, Keys: km, Fetcher: strict})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ended(ctx, "ev", "acct", "sess", []string{"rp"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		s.Round(ctx)
	}
	if len(rp.got()) != 0 {
		t.Fatal("a loopback URI was called")
	}
	var left int
	_ = kv.Scan(ctx, "dq:backchannel:j:", func(string) error { left++; return nil })
	if left != 0 {
		t.Fatalf("%d refused jobs still queued", left)
	}
}
