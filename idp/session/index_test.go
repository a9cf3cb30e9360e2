package session

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

// revocations records the grants the manager revoked.
type revocations struct {
	mu  sync.Mutex
	ids []string
}

func (r *revocations) RevokeGrant(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, id)
	return nil
}

func (r *revocations) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.ids)
	sort.Strings(out)
	return out
}

// outbox reads back what was published to a real events.Outbox.
func published(t *testing.T, kv events.KV) []events.Event {
	t.Helper()
	o := events.NewOutbox(kv, nil)
	o.Poll = 20 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A last event marks the end of what the test published.
	marker := fmt.Sprintf("marker%d", seq.Add(1))
	if err := o.Publish(ctx, events.Event{Kind: events.FactsStale, AccountID: marker}); err != nil {
		t.Fatal(err)
	}
	var got []events.Event
	err := o.Consume(ctx, marker, func(_ context.Context, e events.Event) error {
		if e.AccountID == marker {
			cancel()
			return nil
		}
		if e.Kind != events.FactsStale {
			got = append(got, e)
		}
		return nil
	})
	if ctx.Err() != context.Canceled {
		t.Fatalf("the marker never came: %v", err)
	}
	return got
}

var seq atomic.Int64

type indexEnv struct {
	m      *Manager
	clk    *clock
	kv     store.KV
	tokens *revocations
	out    *events.Outbox
	since  int // events already read
}

func newIndexEnv(t *testing.T, kv store.KV) *indexEnv {
	m, clk := newManager(t, kv, time.Hour)
	e := &indexEnv{m: m, clk: clk, kv: kv, tokens: &revocations{}, out: events.NewOutbox(kv, nil)}
	m.SetTokens(e.tokens, 30*24*time.Hour)
	m.SetEvents(e.out)
	return e
}

// start signs in and returns the session and its cookie.
func (e *indexEnv) start(t *testing.T, acct, authenticator, client string) (*Session, *http.Cookie) {
	t.Helper()
	w := httptest.NewRecorder()
	sess, err := e.m.Begin(context.Background(), w, authreq.Authentication{AccountID: acct, ACR: ACRJPKI, Time: e.clk.Now(),
		Method: "jpki:JPKIAPGPSETOKEN", Authenticator: authenticator}, client)
	if err != nil {
		t.Fatal(err)
	}
	return sess, sessionCookie(t, w, e.m.name)
}

func (e *indexEnv) current(c *http.Cookie) bool {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(c)
	_, ok := e.m.Current(r)
	return ok
}

func (e *indexEnv) issue(t *testing.T, s *Session, client, grant string) {
	t.Helper()
	if err := e.m.TokensIssued(context.Background(), s.ID, s.AccountID, s.Authenticator, client, grant, e.clk.Now().Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
}

func ended(evs []events.Event) map[string]events.Event {
	out := map[string]events.Event{}
	for _, e := range evs {
		if e.Kind == events.SessionEnded {
			out[e.SessionID] = e
		}
	}
	return out
}

func stores(t *testing.T, fn func(t *testing.T, kv store.KV)) {
	t.Run("memory", func(t *testing.T) { fn(t, store.NewMemory()) })
	t.Run("redis", func(t *testing.T) {
		addr := storetest.StartRedis(t)
		r, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		fn(t, r)
	})
}

func TestSignOutEverywhere(t *testing.T) {
	stores(t, func(t *testing.T, kv store.KV) {
		e := newIndexEnv(t, kv)
		ctx := context.Background()
		phone, phoneC := e.start(t, "alice", "jpki:L1", "rp1")
		laptop, laptopC := e.start(t, "alice", "passkey:P1", "")
		bob, bobC := e.start(t, "bob", "jpki:L9", "rp1")
		e.issue(t, phone, "rp1", "g1")
		e.issue(t, phone, "rp2", "g2")
		e.issue(t, laptop, "rp2", "g3")
		e.issue(t, bob, "rp1", "g9")
		if phone.ID == "" || phone.ID == laptop.ID || len(phone.ID) < 40 {
			t.Fatalf("session IDs %q %q", phone.ID, laptop.ID)
		}

		if err := e.m.SignOutEverywhere(ctx, "alice", events.ReasonEverywhere); err != nil {
			t.Fatal(err)
		}
		if e.current(phoneC) || e.current(laptopC) {
			t.Fatal("a session of alice survived")
		}
		if !e.current(bobC) {
			t.Fatal("bob's session ended")
		}
		if got := e.tokens.list(); !slices.Equal(got, []string{"g1", "g2", "g3"}) {
			t.Fatalf("revoked %v, want alice's g1 g2 g3", got)
		}
		evs := published(t, kv)
		var signedIn []string
		for _, ev := range evs {
			if ev.Kind == events.SignedIn {
				signedIn = append(signedIn, ev.AccountID+"/"+strings.Join(ev.ClientIDs, ",")+"/"+ev.Method)
				if ev.SessionID == "" {
					t.Error("SignedIn without a session")
				}
			}
		}
		if want := []string{"alice/rp1/jpki:JPKIAPGPSETOKEN", "alice//jpki:JPKIAPGPSETOKEN", "bob/rp1/jpki:JPKIAPGPSETOKEN"}; !slices.Equal(signedIn, want) {
			t.Fatalf("SignedIn events %v, want %v", signedIn, want)
		}
		end := ended(evs)
		if len(end) != 2 {
			t.Fatalf("SessionEnded events %+v", end)
		}
		if ev := end[phone.ID]; ev.Reason != events.ReasonEverywhere || !slices.Equal(ev.ClientIDs, []string{"rp1", "rp2"}) || ev.AccountID != "alice" {
			t.Fatalf("phone's SessionEnded = %+v", ev)
		}
		if ev := end[laptop.ID]; !slices.Equal(ev.ClientIDs, []string{"rp2"}) {
			t.Fatalf("laptop's SessionEnded = %+v", ev)
		}
		// Again: nothing is left to end, nothing is announced twice.
		if err := e.m.SignOutEverywhere(ctx, "alice", events.ReasonEverywhere); err != nil {
			t.Fatal(err)
		}
		if got := e.tokens.list(); len(got) != 3 {
			t.Fatalf("second run revoked again: %v", got)
		}
		if n := len(ended(published(t, kv))); n != 2 {
			t.Fatalf("%d SessionEnded after a second run", n)
		}
	})
}

func TestEndAuthenticator(t *testing.T) {
	stores(t, func(t *testing.T, kv store.KV) {
		e := newIndexEnv(t, kv)
		ctx := context.Background()
		phone, phoneC := e.start(t, "alice", "jpki:PHONE", "rp1")
		card, cardC := e.start(t, "alice", "jpki:CARD", "rp1")
		e.issue(t, phone, "rp1", "gp")
		e.issue(t, card, "rp1", "gc")
		// An earlier phone session the resident signed out of: its
		// tokens still go when the phone is removed.
		old, oldC := e.start(t, "alice", "jpki:PHONE", "rp2")
		e.issue(t, old, "rp2", "gold")
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(oldC)
		e.m.End(httptest.NewRecorder(), r)

		for _, bad := range []struct{ acct, authn string }{{"alice", "jpki:UNKNOWN"}, {"bob", "jpki:PHONE"}} {
			if err := e.m.EndAuthenticator(ctx, bad.acct, bad.authn, events.ReasonAuthenticatorRemoved); err != nil {
				t.Fatal(err)
			}
		}
		if !e.current(phoneC) || !e.current(cardC) || len(e.tokens.list()) != 0 {
			t.Fatal("an unknown authenticator or another account ended something")
		}
		if err := e.m.EndAuthenticator(ctx, "", "jpki:PHONE", "x"); err == nil {
			t.Fatal("EndAuthenticator without an account accepted")
		}

		if err := e.m.EndAuthenticator(ctx, "alice", "jpki:PHONE", events.ReasonAuthenticatorRemoved); err != nil {
			t.Fatal(err)
		}
		if e.current(phoneC) {
			t.Fatal("the phone's session survived")
		}
		if !e.current(cardC) {
			t.Fatal("the card's session ended")
		}
		if got := e.tokens.list(); !slices.Equal(got, []string{"gold", "gp"}) {
			t.Fatalf("revoked %v, want the phone's gold gp", got)
		}
		end := ended(published(t, kv))
		if ev := end[old.ID]; ev.Reason != events.ReasonLogout || !slices.Equal(ev.ClientIDs, []string{"rp2"}) {
			t.Fatalf("logout's SessionEnded = %+v", ev)
		}
		if ev := end[phone.ID]; ev.Reason != events.ReasonAuthenticatorRemoved || !slices.Equal(ev.ClientIDs, []string{"rp1"}) {
			t.Fatalf("phone's SessionEnded = %+v", ev)
		}
		if _, ok := end[card.ID]; ok || len(end) != 2 {
			t.Fatalf("SessionEnded events %+v", end)
		}
	})
}

func TestIndexBounds(t *testing.T) {
	kv := store.NewMemory()
	e := newIndexEnv(t, kv)
	ctx := context.Background()
	var cookies []*http.Cookie
	for range maxSessions + 2 {
		_, c := e.start(t, "alice", "jpki:L", "")
		cookies = append(cookies, c)
		e.clk.Advance(time.Second)
	}
	live := 0
	for _, c := range cookies {
		if e.current(c) {
			live++
		}
	}
	if live != maxSessions || e.current(cookies[0]) || e.current(cookies[1]) || !e.current(cookies[len(cookies)-1]) {
		t.Fatalf("%d live sessions; the oldest should have ended", live)
	}
	members, _ := kv.SetMembers(ctx, acctSessKey("alice"))
	if len(members) != maxSessions {
		t.Fatalf("index holds %d sessions", len(members))
	}
	// Expired entries leave the index with the next addition.
	e.clk.Advance(2 * time.Hour)
	e.start(t, "alice", "jpki:L", "")
	if members, _ := kv.SetMembers(ctx, acctSessKey("alice")); len(members) != 1 {
		t.Fatalf("index holds %d sessions after they expired", len(members))
	}

	s, _ := e.start(t, "carol", "jpki:L", "")
	for i := range maxFamilies + 3 {
		e.clk.Advance(time.Millisecond)
		e.issue(t, s, "rp", fmt.Sprint("g", i))
	}
	if got := e.tokens.list(); len(got) != 3 || !slices.Contains(got, "g0") {
		t.Fatalf("beyond the cap revoked %v, want the 3 oldest", got)
	}
	if members, _ := kv.SetMembers(ctx, acctFamKey("carol")); len(members) != maxFamilies {
		t.Fatalf("family index holds %d", len(members))
	}
	for _, bad := range []struct{ acct, grant string }{{"", "g"}, {"carol", ""}, {"carol", "a:b"}} {
		if err := e.m.TokensIssued(ctx, s.ID, bad.acct, "", "rp", bad.grant, e.clk.Now().Add(time.Hour)); err == nil {
			t.Errorf("TokensIssued(%q, %q) accepted", bad.acct, bad.grant)
		}
	}
}

func TestPairwiseSID(t *testing.T) {
	a := PairwiseSID("session-1", "rp1.example.jp")
	if a == "" || a != PairwiseSID("session-1", "rp1.example.jp") {
		t.Fatal("not stable")
	}
	for _, other := range []string{
		PairwiseSID("session-1", "rp2.example.jp"),
		PairwiseSID("session-2", "rp1.example.jp"),
		PairwiseSID("session-1rp1.example.jp", ""),
	} {
		if other == a {
			t.Fatal("two sessions or sectors share a sid")
		}
	}
	if strings.Contains(a, "session-1") || len(a) != 24 {
		t.Fatalf("sid %q", a)
	}
	if PairwiseSID("", "rp1.example.jp") != "" {
		t.Fatal("a sid for no session")
	}
}

// counted counts the store calls the session manager makes.
type counted struct {
	kv *store.Memory
	n  *atomic.Int64
}

func (c counted) Get(ctx context.Context, k string) ([]byte, error) {
	c.n.Add(1)
	return c.kv.Get(ctx, k)
}
func (c counted) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	c.n.Add(1)
	return c.kv.Set(ctx, k, v, ttl)
}
func (c counted) Delete(ctx context.Context, k ...string) error {
	c.n.Add(1)
	return c.kv.Delete(ctx, k...)
}
func (c counted) SetAdd(ctx context.Context, k string, ttl time.Duration, m ...string) error {
	c.n.Add(1)
	return c.kv.SetAdd(ctx, k, ttl, m...)
}
func (c counted) SetMembers(ctx context.Context, k string) ([]string, error) {
	c.n.Add(1)
	return c.kv.SetMembers(ctx, k)
}
func (c counted) SetRemove(ctx context.Context, k string, m ...string) error {
	c.n.Add(1)
	return c.kv.SetRemove(ctx, k, m...)
}

// countingOutbox counts the outbox's store calls on publish.
type countingOutbox struct {
	n *atomic.Int64
}

func (o countingOutbox) Publish(context.Context, events.Event) error {
	o.n.Add(2) // StreamAdd and the wake-up (events.Outbox.Publish)
	return nil
}

// TestIndexRoundTrips pins the store round trips the operator guide
// quotes.
func TestIndexRoundTrips(t *testing.T) {
	var n atomic.Int64
	kv := counted{kv: store.NewMemory(), n: &n}
	m, clk := newManager(t, kv, time.Hour)
	m.SetTokens(&revocations{}, time.Hour)
	m.SetEvents(countingOutbox{n: &n})
	ctx := context.Background()
	w := httptest.NewRecorder()
	sess, err := m.Begin(ctx, w, authreq.Authentication{AccountID: "a", ACR: ACRJPKI, Time: clk.Now(), Authenticator: "jpki:L"}, "rp")
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Swap(0); got != 1+5 {
		t.Errorf("sign-in: %d round trips, want 6 (1 before the index)", got)
	}
	if err := m.TokensIssued(ctx, sess.ID, "a", "jpki:L", "rp", "g1", clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := n.Swap(0); got != 3 {
		t.Errorf("code exchange: %d round trips, want 3", got)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(sessionCookie(t, w, m.name))
	m.End(httptest.NewRecorder(), r)
	if got := n.Swap(0); got != 1+8 {
		t.Errorf("logout: %d round trips, want 9 (1 before the index)", got)
	}
}
