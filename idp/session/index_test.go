package session

import (
	"context"
	"errors"
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
	"github.com/watashi-id/watashi/idp/internal/ids"
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
	// Never more than maxSessions live, the newest always, and those
	// ended always the oldest: past the cap a sign-in ends the oldest
	// down to maxSessions-sessionSlack, so the next sessionSlack sign-ins
	// end nothing.
	var cookies []*http.Cookie
	endings := 0
	for i := range 3 * maxSessions {
		_, c := e.start(t, "alice", "jpki:L", "")
		cookies = append(cookies, c)
		e.clk.Advance(time.Second)
		live, firstLive := 0, -1
		for j, c := range cookies {
			if e.current(c) {
				live++
				if firstLive < 0 {
					firstLive = j
				}
			}
		}
		if live > maxSessions || !e.current(c) || live != len(cookies)-firstLive {
			t.Fatalf("after sign-in %d: %d live from %d; want at most %d, the newest, and no gap", i, live, firstLive, maxSessions)
		}
		want := min(len(cookies), maxSessions)
		if len(cookies) > maxSessions {
			want = maxSessions - sessionSlack + (len(cookies)-maxSessions-1)%(sessionSlack+1)
		}
		if live != want {
			t.Fatalf("after sign-in %d: %d live, want %d", i, live, want)
		}
		if live == maxSessions-sessionSlack && len(cookies) > maxSessions {
			endings++
		}
		members, _ := kv.SetMembers(ctx, acctSessKey("alice"))
		if len(members) != live {
			t.Fatalf("after sign-in %d: the index holds %d for %d live sessions", i, len(members), live)
		}
	}
	if want := (3*maxSessions - maxSessions + sessionSlack) / (sessionSlack + 1); endings != want {
		t.Fatalf("%d sign-ins ended sessions, want %d", endings, want)
	}
	// Expired entries leave the index once maxDead of them gathered.
	e.clk.Advance(2 * time.Hour)
	e.start(t, "alice", "jpki:L", "")
	if members, _ := kv.SetMembers(ctx, acctSessKey("alice")); len(members) != 1 {
		t.Fatalf("index holds %d sessions after they expired", len(members))
	}
	// Fewer stay until then, and do not count against the cap.
	for range maxDead - 1 {
		e.start(t, "erin", "jpki:L", "")
	}
	e.clk.Advance(2 * time.Hour)
	e.start(t, "erin", "jpki:L", "")
	if members, _ := kv.SetMembers(ctx, acctSessKey("erin")); len(members) != maxDead {
		t.Fatalf("index holds %d members, want the %d expired and the new one", len(members), maxDead-1)
	}
	for range maxSessions - 1 {
		e.start(t, "erin", "jpki:L", "")
	}
	if members, _ := kv.SetMembers(ctx, acctSessKey("erin")); len(members) != maxDead-1+maxSessions {
		t.Fatalf("expired entries counted against the cap: %d members", len(members))
	}

	s, _ := e.start(t, "carol", "jpki:L", "")
	most := 0
	for i := range 2 * maxFamilies {
		e.clk.Advance(time.Millisecond)
		e.issue(t, s, "rp", fmt.Sprint("g", i))
		members, _ := kv.SetMembers(ctx, acctFamKey("carol"))
		most = max(most, len(members))
	}
	if most != maxFamilies+pruneEvery-1 {
		t.Fatalf("the family index held up to %d, want %d", most, maxFamilies+pruneEvery-1)
	}
	if got := e.tokens.list(); len(got) != maxFamilies || !slices.Contains(got, "g0") || slices.Contains(got, fmt.Sprint("g", 2*maxFamilies-1)) {
		t.Fatalf("beyond the cap revoked %d, want the %d oldest", len(got), maxFamilies)
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
func (c counted) Incr(ctx context.Context, k string, ttl time.Duration) (int64, error) {
	c.n.Add(1)
	return c.kv.Incr(ctx, k, ttl)
}
func (c counted) SetRemove(ctx context.Context, k string, m ...string) error {
	c.n.Add(1)
	return c.kv.SetRemove(ctx, k, m...)
}
func (c counted) Do(ctx context.Context, ops ...store.Op) ([]store.Result, error) {
	c.n.Add(1)
	return c.kv.Do(ctx, ops...)
}

// countingOutbox counts the events published.
type countingOutbox struct {
	n *atomic.Int64
}

func (o countingOutbox) Publish(context.Context, events.Event) error {
	o.n.Add(1)
	return nil
}

// AppendOp appends to a log of the test's own, in the caller's batch.
func (o countingOutbox) AppendOp(e events.Event) (store.Op, error) {
	return store.StreamAdd("test:events", []byte(e.Kind)), nil
}

func (o countingOutbox) Appended(res store.Result) error {
	o.n.Add(1)
	return res.Err
}

// TestIndexRoundTrips pins the store round trips of each step of a
// session's life, so that one more shows as a failure: a call of the
// store is one round trip, a batch (KV.Do) one. Events go to the outbox,
// counted apart (events.Outbox.Publish is one round trip of its own).
func TestIndexRoundTrips(t *testing.T) {
	var n, published atomic.Int64
	kv := counted{kv: store.NewMemory(), n: &n}
	m, clk := newManager(t, kv, time.Hour)
	m.SetTokens(&revocations{}, 30*24*time.Hour)
	m.SetEvents(countingOutbox{n: &published})
	ctx := context.Background()
	begin := func(t *testing.T, acct, authenticator string) *http.Cookie {
		t.Helper()
		w := httptest.NewRecorder()
		if _, err := m.Begin(ctx, w, authreq.Authentication{AccountID: acct, ACR: ACRJPKI, Time: clk.Now(),
			Method: "jpki:LABEL", Authenticator: authenticator}, "rp"); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Millisecond)
		return sessionCookie(t, w, m.name)
	}
	issue := func(t *testing.T, acct, sid, grant string) {
		t.Helper()
		if err := m.TokensIssued(ctx, sid, acct, "jpki:L", "rp", grant, clk.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	var alice *http.Cookie
	var sid string
	for _, step := range []struct {
		name          string
		setup, do     func(t *testing.T)
		trips, events int64
	}{
		{name: "sign-in", do: func(t *testing.T) { alice = begin(t, "alice", "jpki:L") }, trips: 1, events: 1},
		{name: "current", do: func(t *testing.T) {
			s, ok := m.Current(withCookie(m.name, alice.Value))
			if !ok {
				t.Fatal("no session")
			}
			sid = s.ID
		}, trips: 1},
		// The account's first: its counter is new, the set is read once.
		{name: "first code exchange", do: func(t *testing.T) { issue(t, "alice", sid, "g0") }, trips: 2},
		{name: "code exchange", do: func(t *testing.T) { issue(t, "alice", sid, "g1") }, trips: 1},
		{name: "code exchange that prunes", setup: func(t *testing.T) {
			for i := 2; i < pruneEvery-1; i++ {
				issue(t, "alice", sid, fmt.Sprint("g", i))
			}
		}, do: func(t *testing.T) { issue(t, "alice", sid, "g15") }, trips: 2},
		{name: "logout", do: func(t *testing.T) { m.End(httptest.NewRecorder(), withCookie(m.name, alice.Value)) }, trips: 2, events: 1},
		{name: "sign-in past the cap", setup: func(t *testing.T) {
			for range maxSessions {
				begin(t, "bob", "jpki:L")
			}
		}, do: func(t *testing.T) { begin(t, "bob", "jpki:L") }, trips: 2, events: 1 + sessionSlack + 1},
		{name: "sign-in under the cap again", do: func(t *testing.T) { begin(t, "bob", "jpki:L") }, trips: 1, events: 1},
		{name: "sign out everywhere", setup: func(t *testing.T) {
			begin(t, "carol", "jpki:A")
			begin(t, "carol", "jpki:B")
			issue(t, "carol", "", "gc")
		}, do: func(t *testing.T) {
			if err := m.SignOutEverywhere(ctx, "carol", events.ReasonEverywhere); err != nil {
				t.Fatal(err)
			}
		}, trips: 3, events: 2},
		{name: "end an authenticator", setup: func(t *testing.T) {
			begin(t, "dave", "jpki:A")
			begin(t, "dave", "jpki:B")
			if err := m.TokensIssued(ctx, "", "dave", "jpki:A", "rp", "gd", clk.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}, do: func(t *testing.T) {
			if err := m.EndAuthenticator(ctx, "dave", "jpki:A", events.ReasonAuthenticatorRemoved); err != nil {
				t.Fatal(err)
			}
		}, trips: 4, events: 1},
	} {
		if step.setup != nil {
			step.setup(t)
		}
		n.Store(0)
		published.Store(0)
		step.do(t)
		if got, ev := n.Load(), published.Load(); got != step.trips || ev != step.events {
			t.Errorf("%s: %d round trips and %d events, want %d and %d", step.name, got, ev, step.trips, step.events)
		}
	}
}

// Sessions made when the record was keyed by the cookie's hex hash, with
// a reference record from the ID to it, are still ended by signing out
// everywhere and by removing their authenticator.
func TestLegacySessionsEnd(t *testing.T) {
	for _, c := range []struct {
		name  string
		end   func(e *indexEnv) error
		ended bool
	}{
		{"sign out everywhere", func(e *indexEnv) error {
			return e.m.SignOutEverywhere(context.Background(), "alice", events.ReasonEverywhere)
		}, true},
		{"its authenticator removed", func(e *indexEnv) error {
			return e.m.EndAuthenticator(context.Background(), "alice", "jpki:OLD", events.ReasonAuthenticatorRemoved)
		}, true},
		{"another authenticator removed", func(e *indexEnv) error {
			return e.m.EndAuthenticator(context.Background(), "alice", "jpki:NEW", events.ReasonAuthenticatorRemoved)
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			stores(t, func(t *testing.T, kv store.KV) {
				e := newIndexEnv(t, kv)
				ctx := context.Background()
				// What the earlier code wrote for one sign-in.
				sid, cookie := ids.Long(), ids.Long()
				exp := e.clk.Now().Add(time.Hour)
				record := recordKeyOf(ids.Hash(cookie))
				ref := fmt.Sprintf(`{"h":%q,"a":"alice","n":"jpki:OLD","x":%q}`, ids.Hash(cookie), exp.Format(time.RFC3339Nano))
				for k, v := range map[string]string{record: `{"id":"` + sid + `","account_id":"alice"}`, legacyRefKey(sid): ref} {
					if err := kv.Set(ctx, k, []byte(v), time.Hour); err != nil {
						t.Fatal(err)
					}
				}
				if err := kv.SetAdd(ctx, acctSessKey("alice"), time.Hour, newMember(exp, sid, "")); err != nil {
					t.Fatal(err)
				}
				e.start(t, "alice", "jpki:NEW", "rp1")
				if err := c.end(e); err != nil {
					t.Fatal(err)
				}
				_, errRecord := kv.Get(ctx, record)
				_, errRef := kv.Get(ctx, legacyRefKey(sid))
				gone := errors.Is(errRecord, store.ErrNotFound) && errors.Is(errRef, store.ErrNotFound)
				if gone != c.ended || !gone && (errRecord != nil || errRef != nil) {
					t.Fatalf("record %v, reference %v; want ended %v", errRecord, errRef, c.ended)
				}
				if _, ok := ended(published(t, kv))[sid]; ok != c.ended {
					t.Fatalf("SessionEnded %v, want %v", ok, c.ended)
				}
			})
		})
	}
}

// recordKeyOf is the key the earlier code kept a record under.
func recordKeyOf(hexHash string) string { return "sess:" + hexHash }
