package whitelist_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/whitelist"
	"github.com/watashi-id/watashi/whitelist/whitelisttest"
)

func newNode(t testing.TB, b whitelist.Backend) *whitelist.Registry {
	t.Helper()
	r, err := whitelist.New(whitelist.Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func run(t testing.TB, r *whitelist.Registry) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func addApproved(t testing.TB, r *whitelist.Registry, host string) string {
	t.Helper()
	reg, err := r.Add(context.Background(), whitelist.AddRequest{Metadata: whitelisttest.WebMetadata(t, host),
		Tier: whitelist.TierBasic, Approve: true, Change: operator})
	if err != nil {
		t.Fatal(err)
	}
	return reg.Client.ID
}

// Two nodes, each with its own connection to one real Redis: a
// suspension made on one is refused by the other within one second.
// The delays are logged; their median goes into the report.
func TestTwoNodesOneRedis(t *testing.T) {
	addr := storetest.StartRedis(t)
	a := newNode(t, redisNode(t, addr, "two:"))
	b := newNode(t, redisNode(t, addr, "two:"))
	run(t, b)
	id := addApproved(t, a, "two.example")
	ctx := context.Background()
	var ds []time.Duration
	for range 25 {
		whitelisttest.WaitLive(t, b, id)
		d, err := whitelisttest.MeasureSuspension(ctx, a, b, id, time.Second)
		if err != nil {
			t.Fatalf("node b: %v", err)
		}
		ds = append(ds, d)
		if _, err := a.Resume(ctx, id, operator); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(ds)
	t.Logf("suspension propagation over Redis, %d runs: min %v, median %v, p90 %v, max %v",
		len(ds), ds[0], ds[len(ds)/2], ds[len(ds)*9/10], ds[len(ds)-1])
}

// BenchmarkSuspensionPropagation reports the same delay as ns/op.
func BenchmarkSuspensionPropagation(bm *testing.B) {
	addr := storetest.StartRedis(bm)
	a := newNode(bm, redisNode(bm, addr, "bench:"))
	b := newNode(bm, redisNode(bm, addr, "bench:"))
	run(bm, b)
	id := addApproved(bm, a, "bench.example")
	ctx := context.Background()
	var total time.Duration
	var ds []time.Duration
	for bm.Loop() {
		bm.StopTimer()
		whitelisttest.WaitLive(bm, b, id)
		bm.StartTimer()
		d, err := whitelisttest.MeasureSuspension(ctx, a, b, id, time.Second)
		if err != nil {
			bm.Fatal(err)
		}
		total += d
		ds = append(ds, d)
		bm.StopTimer()
		if _, err := a.Resume(ctx, id, operator); err != nil {
			bm.Fatal(err)
		}
		bm.StartTimer()
	}
	slices.Sort(ds)
	bm.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "µs-median")
	bm.ReportMetric(float64(ds[len(ds)-1].Microseconds()), "µs-max")
}

// BenchmarkAuthorizeCached is the provider's per-request cost.
func BenchmarkAuthorizeCached(bm *testing.B) {
	r := newNode(bm, memoryBackend(nil))
	id := addApproved(bm, r, "fast.example")
	ctx := context.Background()
	for bm.Loop() {
		if _, err := r.Authorize(ctx, id); err != nil {
			bm.Fatal(err)
		}
	}
}

// lossy drops every published message, as Redis does to a subscriber
// that is reconnecting or too slow.
type lossy struct{ whitelist.Store }

func (lossy) Publish(context.Context, string, []byte) error { return nil }

// A lost pub/sub message delays a suspension by one poll interval at
// most: the change counter catches it.
func TestLostMessageCaughtByPoll(t *testing.T) {
	kv := store.NewMemory()
	b := whitelist.KVBackend(kv, store.ErrNotFound)
	a := newNode(t, whitelist.Backend{Store: lossy{kv}, Audit: b.Audit, ErrNotFound: store.ErrNotFound})
	node := newNode(t, b)
	run(t, node)
	id := addApproved(t, a, "lossy.example")
	whitelisttest.WaitLive(t, node, id)
	d, err := whitelisttest.MeasureSuspension(context.Background(), a, node, id, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("without pub/sub: %v", d)
}

// brokenSub cannot subscribe, as when Redis refuses SUBSCRIBE.
type brokenSub struct{ whitelist.Store }

func (brokenSub) Subscribe(context.Context, string) (<-chan []byte, error) {
	return nil, errors.New("subscribe refused")
}

func TestBrokenSubscriptionFallsBack(t *testing.T) {
	kv := store.NewMemory()
	b := whitelist.KVBackend(kv, store.ErrNotFound)
	clock := whitelisttest.NewClock()
	node, err := whitelist.New(whitelist.Options{Backend: whitelist.Backend{Store: brokenSub{kv}, Audit: b.Audit, ErrNotFound: store.ErrNotFound},
		Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	run(t, node)
	a := newNode(t, b)
	id := addApproved(t, a, "broken.example")
	if _, err := node.Authorize(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if node.Live() {
		t.Fatal("live without a subscription")
	}
	if _, err := a.Suspend(context.Background(), id, operator); err != nil {
		t.Fatal(err)
	}
	clock.Advance(1001 * time.Millisecond)
	if _, err := node.Authorize(context.Background(), id); !errors.Is(err, whitelist.ErrSuspended) {
		t.Fatalf("after the fallback TTL: %v", err)
	}
}

// gated holds Get calls for one key until released, to interleave a
// cache fill with an invalidation.
type gated struct {
	whitelist.Store
	mu      sync.Mutex
	key     string
	entered chan struct{}
	release chan struct{}
}

func (g *gated) Get(ctx context.Context, key string) ([]byte, error) {
	g.mu.Lock()
	hold := g.key == key
	g.mu.Unlock()
	if !hold {
		return g.Store.Get(ctx, key)
	}
	v, err := g.Store.Get(ctx, key)
	g.entered <- struct{}{}
	<-g.release
	return v, err
}

// A fill that read the record before a suspension was published must
// not put the stale approved copy back into the cache.
func TestStaleFillNotCached(t *testing.T) {
	kv := store.NewMemory()
	b := whitelist.KVBackend(kv, store.ErrNotFound)
	g := &gated{Store: kv, entered: make(chan struct{}), release: make(chan struct{})}
	node := newNode(t, whitelist.Backend{Store: g, Audit: b.Audit, ErrNotFound: store.ErrNotFound})
	run(t, node)
	a := newNode(t, b)
	id := addApproved(t, a, "stale.example")
	whitelisttest.WaitLive(t, node, id) // caches it
	if _, err := a.Suspend(context.Background(), id, operator); err != nil {
		t.Fatal(err)
	}
	// Wait until node has dropped the entry, then resume and start a
	// fill that reads "approved"; suspend again while it is held.
	for {
		if _, err := node.Authorize(context.Background(), id); errors.Is(err, whitelist.ErrSuspended) {
			break
		}
	}
	if _, err := a.Resume(context.Background(), id, operator); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	g.key = "wl:client:" + id
	g.mu.Unlock()
	res := make(chan error, 1)
	go func() { _, err := node.Authorize(context.Background(), id); res <- err }()
	<-g.entered // the fill has read the approved record
	g.mu.Lock()
	g.key = ""
	g.mu.Unlock()
	// a's suspension reaches node through pub/sub while the fill waits;
	// a second, unrelated change lets us know when node has processed it.
	if _, err := a.Suspend(context.Background(), id, operator); err != nil {
		t.Fatal(err)
	}
	marker := addApproved(t, a, "marker.example")
	if _, err := node.Authorize(context.Background(), marker); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Suspend(context.Background(), marker, operator); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := node.Authorize(context.Background(), marker); errors.Is(err, whitelist.ErrSuspended) {
			break
		}
	}
	close(g.release)
	if err := <-res; err != nil {
		t.Fatalf("the held fill: %v", err) // it read "approved" before the suspension
	}
	if _, err := node.Authorize(context.Background(), id); !errors.Is(err, whitelist.ErrSuspended) {
		t.Fatalf("stale fill was cached: %v", err)
	}
}
