package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

var prefixSeq atomic.Int64

// backends runs fn against the memory store and a real redis-server.
// newKV returns a second handle on the same data (a second node).
func backends(t *testing.T, fn func(t *testing.T, newKV func() KV)) {
	t.Run("memory", func(t *testing.T) {
		m := store.NewMemory()
		fn(t, func() KV { return m })
	})
	t.Run("redis", func(t *testing.T) {
		addr := storetest.StartRedis(t)
		prefix := fmt.Sprintf("ev%d:", prefixSeq.Add(1))
		fn(t, func() KV {
			r, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			return r
		})
	})
}

func fast(o *Outbox) *Outbox {
	o.LeaseTTL = 600 * time.Millisecond
	o.Poll = time.Minute // wake-ups, not polling, must deliver
	o.MinBackoff = 10 * time.Millisecond
	o.MaxBackoff = 40 * time.Millisecond
	return o
}

// collector records what a consumer received.
type collector struct {
	mu  sync.Mutex
	got []Event
	ch  chan Event
}

func newCollector() *collector { return &collector{ch: make(chan Event, 100)} }

func (c *collector) handle(_ context.Context, e Event) error {
	c.mu.Lock()
	c.got = append(c.got, e)
	c.mu.Unlock()
	c.ch <- e
	return nil
}

func (c *collector) next(t *testing.T, within time.Duration) Event {
	t.Helper()
	select {
	case e := <-c.ch:
		return e
	case <-time.After(within):
		t.Fatalf("no event within %v", within)
		return Event{}
	}
}

func (c *collector) none(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case e := <-c.ch:
		t.Fatalf("unexpected event %+v", e)
	case <-time.After(within):
	}
}

func consume(t *testing.T, o *Outbox, name string, h func(context.Context, Event) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Consume(ctx, name, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Consume returned %v, want context.Canceled", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Consume did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitCursor waits until the consumer's cursor has passed id.
func waitCursor(t *testing.T, kv KV, name, id string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		b, err := kv.Get(context.Background(), cursorPrefix+name)
		if err == nil && !idLess(string(b), id) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cursor %q never reached %q (%v)", b, id, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func signedIn(account, sid string) Event {
	return Event{Kind: SignedIn, AccountID: account, SessionID: sid, ClientIDs: []string{"rp1"}, Method: "jpki:JPKIAPGPSETOKEN"}
}

func TestPublishConsumeInOrder(t *testing.T) {
	backends(t, func(t *testing.T, newKV func() KV) {
		ctx := context.Background()
		o := fast(NewOutbox(newKV(), nil))
		before := time.Now().Add(-time.Second)
		for i := range 3 {
			if err := o.Publish(ctx, signedIn("acct", fmt.Sprint("s", i))); err != nil {
				t.Fatal(err)
			}
		}
		c := newCollector()
		consume(t, o, "mail", c.handle)
		var last string
		for i := range 3 {
			e := c.next(t, 3*time.Second)
			if e.SessionID != fmt.Sprint("s", i) || e.Kind != SignedIn || e.Method != "jpki:JPKIAPGPSETOKEN" || e.ClientIDs[0] != "rp1" {
				t.Fatalf("event %d = %+v", i, e)
			}
			if e.ID == "" || (last != "" && !idLess(last, e.ID)) {
				t.Fatalf("event %d ID %q not after %q", i, e.ID, last)
			}
			if e.Time.Before(before) || e.Time.After(time.Now()) {
				t.Fatalf("event %d time %v", i, e.Time)
			}
			last = e.ID
		}
		// An idle consumer hears of a new event by the wake-up, long
		// before its one-minute poll.
		start := time.Now()
		if err := o.Publish(ctx, Event{Kind: SessionEnded, AccountID: "acct", SessionID: "s9", Reason: ReasonLogout}); err != nil {
			t.Fatal(err)
		}
		if e := c.next(t, 3*time.Second); e.SessionID != "s9" || e.Reason != ReasonLogout {
			t.Fatalf("woken event = %+v", e)
		}
		t.Logf("delivered %v after Publish", time.Since(start))
		c.none(t, 100*time.Millisecond)
	})
}

func TestPublishRefusesBadEvents(t *testing.T) {
	long := strings.Repeat("x", maxField+1)
	many := make([]string, maxClients+1)
	for i := range many {
		many[i] = fmt.Sprint("rp", i)
	}
	for _, tc := range []struct {
		name string
		e    Event
	}{
		{"unknown kind", Event{Kind: "deleted", AccountID: "a"}},
		{"no kind", Event{AccountID: "a"}},
		{"no account", Event{Kind: SignedIn}},
		{"too many clients", Event{Kind: SessionEnded, AccountID: "a", ClientIDs: many}},
		{"long client", Event{Kind: SessionEnded, AccountID: "a", ClientIDs: []string{long}}},
		{"long method", Event{Kind: SignedIn, AccountID: "a", Method: long}},
		{"long account", Event{Kind: SignedIn, AccountID: long}},
		{"long label", Event{Kind: CredentialChanged, AccountID: "a", Credential: &Credential{Type: "jpki", Change: "delete", Ref: "l", Label: long}}},
		{"credential change without credential", Event{Kind: CredentialChanged, AccountID: "a"}},
		{"consent withdrawn without client", Event{Kind: ConsentWithdrawn, AccountID: "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv := store.NewMemory()
			o := NewOutbox(kv, nil)
			if err := o.Publish(context.Background(), tc.e); err == nil {
				t.Fatal("Publish accepted it")
			}
			if got, _ := kv.StreamRange(context.Background(), streamKey, "", 0); len(got) != 0 {
				t.Fatalf("a refused event was stored: %+v", got)
			}
		})
	}
}

func TestConsumeRefusesBadNames(t *testing.T) {
	o := NewOutbox(store.NewMemory(), nil)
	for _, name := range []string{"", "Mail", "a b", "a:b", "-x", strings.Repeat("a", 64), "../x"} {
		if err := o.Consume(context.Background(), name, func(context.Context, Event) error { return nil }); err == nil {
			t.Errorf("Consume(%q) accepted", name)
		}
	}
	if err := o.Consume(context.Background(), "ok", nil); err == nil {
		t.Error("Consume without a handler accepted")
	}
}

func TestHandlerErrorsAreRetriedInOrder(t *testing.T) {
	backends(t, func(t *testing.T, newKV func() KV) {
		ctx := context.Background()
		o := fast(NewOutbox(newKV(), nil))
		for i := range 3 {
			if err := o.Publish(ctx, signedIn("acct", fmt.Sprint("s", i))); err != nil {
				t.Fatal(err)
			}
		}
		var mu sync.Mutex
		var seen []string
		failures := 0
		done := make(chan struct{})
		consume(t, o, "flaky", func(_ context.Context, e Event) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, e.SessionID)
			if e.SessionID == "s1" && failures < 3 {
				failures++
				return errors.New("smtp: 451 try again")
			}
			if e.SessionID == "s2" {
				close(done)
			}
			return nil
		})
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the events after a failing one never came")
		}
		mu.Lock()
		defer mu.Unlock()
		want := "s0 s1 s1 s1 s1 s2"
		if got := strings.Join(seen, " "); got != want {
			t.Fatalf("handled %q, want %q", got, want)
		}
	})
}

func TestCursorSurvivesRestart(t *testing.T) {
	backends(t, func(t *testing.T, newKV func() KV) {
		ctx := context.Background()
		o := fast(NewOutbox(newKV(), nil))
		for i := range 2 {
			if err := o.Publish(ctx, signedIn("acct", fmt.Sprint("a", i))); err != nil {
				t.Fatal(err)
			}
		}
		c := newCollector()
		stop := consume(t, o, "bcl", c.handle)
		c.next(t, 3*time.Second)
		c.next(t, 3*time.Second)
		stop()
		for i := range 2 {
			if err := o.Publish(ctx, signedIn("acct", fmt.Sprint("b", i))); err != nil {
				t.Fatal(err)
			}
		}
		// Another node, a fresh outbox: it continues after the cursor.
		o2 := fast(NewOutbox(newKV(), nil))
		c2 := newCollector()
		consume(t, o2, "bcl", c2.handle)
		if e := c2.next(t, 3*time.Second); e.SessionID != "b0" {
			t.Fatalf("after restart got %q, want b0", e.SessionID)
		}
		if e := c2.next(t, 3*time.Second); e.SessionID != "b1" {
			t.Fatalf("after restart got %q, want b1", e.SessionID)
		}
		// A different consumer reads everything from the start.
		c3 := newCollector()
		consume(t, o2, "ssf", c3.handle)
		if e := c3.next(t, 3*time.Second); e.SessionID != "a0" {
			t.Fatalf("new consumer starts at %q, want a0", e.SessionID)
		}
	})
}

// TestOneNodeAtATime runs the same consumer on two nodes: every event is
// handled once, by whichever holds the lease, and when that node stops
// the other takes over.
func TestOneNodeAtATime(t *testing.T) {
	backends(t, func(t *testing.T, newKV func() KV) {
		ctx := context.Background()
		var mu sync.Mutex
		count := map[string]int{}
		who := map[string]string{}
		got := make(chan string, 100)
		handler := func(node string) func(context.Context, Event) error {
			return func(_ context.Context, e Event) error {
				mu.Lock()
				count[e.SessionID]++
				who[e.SessionID] = node
				mu.Unlock()
				got <- e.SessionID
				return nil
			}
		}
		a := fast(NewOutbox(newKV(), nil))
		b := fast(NewOutbox(newKV(), nil))
		stopA := consume(t, a, "mail", handler("a"))
		time.Sleep(100 * time.Millisecond) // a takes the lease first
		consume(t, b, "mail", handler("b"))
		for i := range 10 {
			if err := a.Publish(ctx, signedIn("acct", fmt.Sprint("s", i))); err != nil {
				t.Fatal(err)
			}
		}
		for range 10 {
			select {
			case <-got:
			case <-time.After(3 * time.Second):
				t.Fatal("events not delivered")
			}
		}
		stopA()
		start := time.Now()
		if err := b.Publish(ctx, signedIn("acct", "after")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("the other node did not take over")
		}
		t.Logf("takeover delivered after %v", time.Since(start))
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		for sid, n := range count {
			if n != 1 {
				t.Errorf("%s handled %d times", sid, n)
			}
		}
		for i := range 10 {
			if w := who[fmt.Sprint("s", i)]; w != "a" {
				t.Errorf("s%d handled by %s while a held the lease", i, w)
			}
		}
		if who["after"] != "b" {
			t.Errorf("after a stopped, handled by %q", who["after"])
		}
	})
}

// TestLeaseLapsesWhenNodeDies: a node whose store connection is gone
// cannot give its lease back; another takes it after the TTL.
func TestLeaseLapsesWhenNodeDies(t *testing.T) {
	addr := storetest.StartRedis(t)
	prefix := fmt.Sprintf("ev%d:", prefixSeq.Add(1))
	open := func() *store.Redis {
		r, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: prefix, Timeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ra, rb := open(), open()
	defer rb.Close()
	a := fast(NewOutbox(ra, nil))
	b := fast(NewOutbox(rb, nil))
	ca, cb := newCollector(), newCollector()
	consume(t, a, "mail", ca.handle)
	time.Sleep(100 * time.Millisecond)
	consume(t, b, "mail", cb.handle)
	ctx := context.Background()
	if err := b.Publish(ctx, signedIn("acct", "first")); err != nil {
		t.Fatal(err)
	}
	e := ca.next(t, 3*time.Second)
	if e.SessionID != "first" {
		t.Fatalf("a got %+v", e)
	}
	waitCursor(t, rb, "mail", e.ID)
	ra.Close() // node a loses the store for good
	if err := b.Publish(ctx, signedIn("acct", "second")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if e := cb.next(t, 5*time.Second); e.SessionID != "second" {
		t.Fatalf("b got %+v", e)
	}
	if d := time.Since(start); d < b.LeaseTTL/2 {
		t.Fatalf("b took over after %v, before the lease could lapse", d)
	}
	cb.none(t, 100*time.Millisecond)
}

func TestTrimKeepsWhatConsumersNeed(t *testing.T) {
	backends(t, func(t *testing.T, newKV func() KV) {
		ctx := context.Background()
		kv := newKV()
		o := fast(NewOutbox(kv, nil))
		o.TrimEvery = time.Hour
		for i := range 4 {
			if err := o.Publish(ctx, signedIn("acct", fmt.Sprint("s", i))); err != nil {
				t.Fatal(err)
			}
		}
		c := newCollector()
		var handled atomic.Int32
		stop := consume(t, o, "slow", func(ctx context.Context, e Event) error {
			if handled.Load() == 2 {
				<-ctx.Done() // stuck on the third
				return ctx.Err()
			}
			handled.Add(1)
			return c.handle(ctx, e)
		})
		c.next(t, 3*time.Second)
		waitCursor(t, kv, "slow", c.next(t, 3*time.Second).ID)
		stop()
		length := func() int {
			all, err := kv.StreamRange(ctx, streamKey, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			return len(all)
		}
		// Within the retention nothing goes.
		if n, err := o.Trim(ctx); err != nil || n != 0 || length() != 4 {
			t.Fatalf("trim within retention = %d, %v; %d left", n, err, length())
		}
		// Past the retention, only what the consumer handled goes.
		o.now = func() time.Time { return time.Now().Add(o.Retention + time.Minute) }
		if n, err := o.Trim(ctx); err != nil || n != 2 || length() != 2 {
			t.Fatalf("trim past retention = %d, %v; %d left", n, err, length())
		}
		// Past the maximum age, everything goes, handled or not.
		o.now = func() time.Time { return time.Now().Add(o.MaxAge + time.Minute) }
		if n, err := o.Trim(ctx); err != nil || n != 2 || length() != 0 {
			t.Fatalf("trim past max age = %d, %v; %d left", n, err, length())
		}
		// The consumer carries on with what comes next.
		o.now = time.Now
		if err := o.Publish(ctx, signedIn("acct", "later")); err != nil {
			t.Fatal(err)
		}
		c2 := newCollector()
		consume(t, o, "slow", c2.handle)
		if e := c2.next(t, 3*time.Second); e.SessionID != "later" {
			t.Fatalf("after trim got %+v", e)
		}
	})
}

func TestUndecodableEntryIsPassed(t *testing.T) {
	kv := store.NewMemory()
	ctx := context.Background()
	if _, err := kv.StreamAdd(ctx, streamKey, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	o := fast(NewOutbox(kv, nil))
	if err := o.Publish(ctx, signedIn("acct", "good")); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	consume(t, o, "mail", c.handle)
	if e := c.next(t, 3*time.Second); e.SessionID != "good" {
		t.Fatalf("got %+v", e)
	}
}

// Without any consumer, Maintain keeps the log to its retention.
func TestMaintainTrimsWithoutConsumers(t *testing.T) {
	kv := store.NewMemory()
	ctx := context.Background()
	o := NewOutbox(kv, nil)
	for i := range 3 {
		if err := o.Publish(ctx, signedIn("acct", fmt.Sprint("s", i))); err != nil {
			t.Fatal(err)
		}
	}
	o.Retention, o.TrimEvery = time.Hour, 20*time.Millisecond
	o.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { o.Maintain(mctx); close(done) }()
	deadline := time.Now().Add(3 * time.Second)
	for {
		all, _ := kv.StreamRange(ctx, streamKey, "", 0)
		if len(all) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entries outlived the retention", len(all))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

// wakeCounter counts the wake-ups an outbox publishes and its cursor
// writes.
type wakeCounter struct {
	KV
	n, cas atomic.Int32
}

func (w *wakeCounter) CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error) {
	w.cas.Add(1)
	return w.KV.CompareAndSwap(ctx, key, old, new)
}

func (w *wakeCounter) Publish(ctx context.Context, channel string, msg []byte) error {
	w.n.Add(1)
	return w.KV.Publish(ctx, channel, msg)
}

// TestBurstWakesOnce appends a burst of events: the consumers are woken
// once for all of them, not once per event, still receive every one
// without waiting for a poll, and move their cursor once per read.
func TestBurstWakesOnce(t *testing.T) {
	backends(t, func(t *testing.T, newKV func() KV) {
		ctx := context.Background()
		kv := &wakeCounter{KV: newKV()}
		o := fast(NewOutbox(kv, nil))
		c := newCollector()
		consume(t, o, "burst", c.handle)
		time.Sleep(50 * time.Millisecond) // the consumer is idle, waiting
		for i := range 20 {
			if err := o.Publish(ctx, signedIn("acct", fmt.Sprint("s", i))); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 20 {
			if e := c.next(t, 3*time.Second); e.SessionID != fmt.Sprint("s", i) {
				t.Fatalf("event %d is %q", i, e.SessionID)
			}
		}
		if n := kv.n.Load(); n != 1 {
			t.Errorf("%d wake-ups for one burst of 20 events, want 1", n)
		}
		time.Sleep(50 * time.Millisecond) // the last cursor write
		if n := kv.cas.Load(); n != 1 {
			t.Errorf("%d cursor writes for one burst read at once, want 1", n)
		}
	})
}
