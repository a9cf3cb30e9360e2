package store_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/consent/consenttest"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/whitelist"
	"github.com/watashi-id/watashi/whitelist/whitelisttest"
)

// The HA suites run the same contracts as the standalone ones, against a
// Sentinel deployment (one master, two replicas, three sentinels) and a
// six-node Cluster (three masters, one replica each), then break them:
// the master killed with SIGKILL, slots migrated under load.

func newHAStore(t *testing.T, o store.RedisOptions) *store.Redis {
	t.Helper()
	if o.Prefix == "" {
		o.Prefix = fmt.Sprintf("ha%d:", prefixSeq.Add(1))
	}
	o = haTimeouts(o)
	r, err := store.NewRedis(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// contracts runs every storage contract of the repository on one
// topology: the KV suite, the consent store's and the relying-party
// registry's. The last two are where keys of one record family meet, so
// a key layout that spans Cluster slots in one command would fail here
// with CROSSSLOT.
func contracts(t *testing.T, o store.RedisOptions) {
	t.Run("KV", func(t *testing.T) {
		storetest.RunKV(t, func(t *testing.T) store.KV { return newHAStore(t, o) })
	})
	t.Run("Consent", func(t *testing.T) {
		consenttest.RunStore(t, func(t *testing.T) consent.KV { return newHAStore(t, o) }, store.ErrNotFound)
	})
	t.Run("Whitelist", func(t *testing.T) {
		whitelisttest.Run(t, func(t *testing.T) whitelist.Backend {
			return whitelist.KVBackend(newHAStore(t, o), store.ErrNotFound)
		})
	})
}

func TestSentinel(t *testing.T) {
	s := storetest.StartSentinel(t, 2, 3)
	o := store.RedisOptions{Addrs: s.SentinelAddrs, MasterName: s.MasterName}
	if r := newHAStore(t, o); r.WaitReplicas() != 1 {
		t.Fatalf("Sentinel waits for %d replicas by default, want 1", r.WaitReplicas())
	}
	t.Run("Contracts", func(t *testing.T) { contracts(t, o) })
	t.Run("DurableWritesSurviveKill", func(t *testing.T) {
		kv := newHAStore(t, o)
		res := writeThrough(t, kv, func() {
			old, err := s.MasterAddr(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			s.Node(old).Kill()
			s.WaitNewMaster(t, old, storetest.FailoverWithin)
		})
		res.check(t, kv)
	})
}

func TestCluster(t *testing.T) {
	c := storetest.StartCluster(t, 3, 1)
	o := store.RedisOptions{Addrs: c.Addrs()}
	if r := newHAStore(t, o); r.WaitReplicas() != 1 {
		t.Fatalf("Cluster waits for %d replicas by default, want 1", r.WaitReplicas())
	}
	t.Run("Contracts", func(t *testing.T) { contracts(t, o) })
	t.Run("DurableWriteFollowsAskAndMoved", func(t *testing.T) {
		// A durable write and its WAIT share one connection, outside the
		// cluster client's own redirect handling: this is the code that
		// follows ASK (slot half moved) and MOVED (client's map stale).
		const prefix = "redir:"
		kv := newHAStore(t, store.RedisOptions{Addrs: c.Addrs(), Prefix: prefix})
		ctx := context.Background()
		must(t, kv.Set(ctx, "{r}old", []byte("1"), 0)) // the client now knows the slot's owner
		slot, err := c.Nodes[0].Client().ClusterKeySlot(ctx, prefix+"{r}old").Result()
		if err != nil {
			t.Fatal(err)
		}
		from := c.Owner(t, int(slot))
		masters, _ := c.Masters(t)
		to := masters[0]
		if to == from {
			to = masters[1]
		}
		m := c.BeginMigration(t, int(slot), from, to)
		// Missing on the source: ASK, and the write lands on the target.
		must(t, kv.Set(ctx, "{r}new", []byte("2"), 0))
		if n, _ := from.Client().Exists(ctx, prefix+"{r}new").Result(); n != 0 {
			t.Fatal("the new key was written on the source during the migration")
		}
		m.Finish(t)
		// The client still maps the slot to the source: MOVED.
		must(t, kv.Set(ctx, "{r}old", []byte("3"), 0))
		ok, err := kv.CompareAndSwap(ctx, "{r}new", []byte("2"), []byte("4"))
		if !ok || err != nil {
			t.Fatalf("CAS after the move = %v, %v", ok, err)
		}
		for k, want := range map[string]string{"{r}old": "3", "{r}new": "4"} {
			if v, err := kv.Get(ctx, k); err != nil || string(v) != want {
				t.Errorf("Get %s = %q, %v; want %q", k, v, err, want)
			}
		}
		if n, _ := to.Client().Exists(ctx, prefix+"{r}old", prefix+"{r}new").Result(); n != 2 {
			t.Errorf("target holds %d of the 2 keys", n)
		}
	})
	t.Run("SnapshotSpansMasters", func(t *testing.T) {
		const prefix = "snapall:"
		kv := newHAStore(t, store.RedisOptions{Addrs: c.Addrs(), Prefix: prefix})
		ctx := context.Background()
		for i := range 200 {
			must(t, kv.Set(ctx, fmt.Sprintf("k:%d", i), fmt.Appendf(nil, "v%d", i), 0))
		}
		got := map[string]string{}
		must(t, kv.Snapshot(ctx, "", func(r store.Record) error {
			if _, dup := got[r.Key]; dup {
				t.Errorf("%s delivered twice", r.Key)
			}
			got[r.Key] = string(r.Value)
			return nil
		}))
		for i := range 200 {
			if v := got[fmt.Sprintf("k:%d", i)]; v != fmt.Sprintf("v%d", i) {
				t.Fatalf("k:%d = %q in the snapshot of %d records", i, v, len(got))
			}
		}
		masters, _ := c.Masters(t)
		for _, m := range masters {
			if n, _ := m.Client().Keys(ctx, prefix+"*").Result(); len(n) == 0 {
				t.Errorf("master %s holds none of the keys: the test proves nothing about spanning masters", m.Addr)
			}
		}
	})
	t.Run("SnapshotDuringMigration", func(t *testing.T) {
		// A key already moved to a master that does not own its slot yet
		// answers MOVED there: the snapshot reports a change, and
		// succeeds, whole, once the slot has moved.
		const prefix = "snapmig:"
		kv := newHAStore(t, store.RedisOptions{Addrs: c.Addrs(), Prefix: prefix})
		ctx := context.Background()
		must(t, kv.Set(ctx, "{m}moved", []byte("1"), 0))
		must(t, kv.Set(ctx, "{m}stays", []byte("2"), 0))
		must(t, kv.Set(ctx, "elsewhere", []byte("3"), 0))
		slot, err := c.Nodes[0].Client().ClusterKeySlot(ctx, prefix+"{m}moved").Result()
		if err != nil {
			t.Fatal(err)
		}
		from := c.Owner(t, int(slot))
		masters, _ := c.Masters(t)
		to := masters[0]
		if to == from {
			to = masters[1]
		}
		m := c.BeginMigration(t, int(slot), from, to)
		if err := from.Client().Do(ctx, "migrate", "127.0.0.1", to.Port, "", 0, 5000, "keys", prefix+"{m}moved").Err(); err != nil {
			t.Fatalf("MIGRATE: %v", err)
		}
		err = kv.Snapshot(ctx, "", func(store.Record) error { return nil })
		if !errors.Is(err, store.ErrSnapshotChanged) {
			t.Fatalf("Snapshot during a migration = %v, want ErrSnapshotChanged", err)
		}
		m.Finish(t)
		var keys []string
		for attempt := 0; ; attempt++ {
			keys = keys[:0]
			err := kv.Snapshot(ctx, "", func(r store.Record) error { keys = append(keys, r.Key); return nil })
			if errors.Is(err, store.ErrSnapshotChanged) && attempt < 10 {
				time.Sleep(100 * time.Millisecond) // the client learns the new layout
				continue
			}
			must(t, err)
			break
		}
		sort.Strings(keys)
		if strings.Join(keys, ",") != "elsewhere,{m}moved,{m}stays" {
			t.Fatalf("snapshot after the migration: %v", keys)
		}
	})
	t.Run("DurableWritesThroughReshard", func(t *testing.T) {
		kv := newHAStore(t, o)
		res := writeThrough(t, kv, func() {
			_, ids := c.Masters(t)
			c.MoveSlots(t, ids[0], ids[1], 1500)
			c.WaitConsistent(t, 30*time.Second)
		})
		res.check(t, kv)
		// A reshard is planned maintenance: the client follows ASK and
		// MOVED, and nothing may fail because of it. The one failure
		// tolerated is a replica too slow to confirm a durable write in
		// time on an overloaded CI machine, which is not the reshard's.
		if res.otherErrs > 0 || res.ephemeralErrs > 0 {
			t.Errorf("reshard: %d durable and %d ephemeral operations failed: %v", res.durableErrs, res.ephemeralErrs, res.errs)
		}
	})
}

// haTimeouts gives the HA tests' clients room for the CI machine: two
// cores shared by the test binaries and a dozen redis-server processes
// writing AOF to one disk, where a replica has been seen to take more
// than the production default of 500 ms to acknowledge.
func haTimeouts(o store.RedisOptions) store.RedisOptions {
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = 2 * time.Second
	}
	return o
}

// throughResult is what writers saw while an incident happened.
type throughResult struct {
	acked                      []string // durable keys whose write returned nil
	durableErrs, ephemeralErrs int
	errs                       []string // the first few
	// otherErrs counts failures that are neither a replica confirming
	// too late (ErrNotReplicated) nor a deadline.
	otherErrs                   int
	firstErr, lastErr, incident time.Time
	incidentTook                time.Duration
}

// writeThrough runs durable and ephemeral writers (bounded: 2 ms
// apart, for at most 60 s) while incident runs, and 2 s after it.
func writeThrough(t *testing.T, kv store.KV, incident func()) *throughResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := &throughResult{}
	var mu sync.Mutex
	fail := func(durable bool, err error) {
		mu.Lock()
		defer mu.Unlock()
		if !errors.Is(err, store.ErrNotReplicated) && !errors.Is(err, context.DeadlineExceeded) {
			res.otherErrs++
		}
		if durable {
			res.durableErrs++
		} else {
			res.ephemeralErrs++
		}
		if res.firstErr.IsZero() {
			res.firstErr = time.Now()
		}
		res.lastErr = time.Now()
		if len(res.errs) < 5 {
			res.errs = append(res.errs, fmt.Sprintf("%v: %v", time.Since(res.incident).Round(time.Millisecond), err))
		}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load() && ctx.Err() == nil; i++ {
				k := fmt.Sprintf("durable:%d:%d", g, i)
				var err error
				if i%2 == 0 {
					err = kv.Set(ctx, k, []byte(k), 0)
				} else {
					var ok bool
					if ok, err = kv.SetNX(ctx, k, []byte(k), 0); err == nil && !ok {
						err = errors.New("SetNX of a fresh key did not write")
					}
				}
				if err != nil {
					fail(true, err)
				} else {
					mu.Lock()
					res.acked = append(res.acked, k)
					mu.Unlock()
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load() && ctx.Err() == nil; i++ {
			if err := kv.Set(ctx, fmt.Sprintf("eph:%d", i), []byte("x"), time.Minute); err != nil {
				fail(false, err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	res.incident = time.Now()
	incident()
	res.incidentTook = time.Since(res.incident)
	time.Sleep(2 * time.Second)
	stop.Store(true)
	wg.Wait()
	if !res.lastErr.IsZero() && time.Since(res.lastErr) < time.Second {
		t.Errorf("writes still failing at the end (last error %v ago)", time.Since(res.lastErr))
	}
	recovery := time.Duration(0)
	if !res.lastErr.IsZero() {
		recovery = res.lastErr.Sub(res.incident)
	}
	if len(res.errs) > 0 {
		t.Logf("errors (time after the incident began): %s", strings.Join(res.errs, " | "))
	}
	t.Logf("incident took %v; %d durable writes acknowledged, %d durable and %d ephemeral failed; errors until %v after the incident began",
		res.incidentTook.Round(time.Millisecond), len(res.acked), res.durableErrs, res.ephemeralErrs, recovery.Round(time.Millisecond))
	return res
}

// check reads back every acknowledged durable write.
func (res *throughResult) check(t *testing.T, kv store.KV) {
	t.Helper()
	if len(res.acked) < 100 {
		t.Fatalf("only %d durable writes acknowledged: the writers hardly ran", len(res.acked))
	}
	var lost []string
	for _, k := range res.acked {
		v, err := kv.Get(context.Background(), k)
		if err != nil || string(v) != k {
			lost = append(lost, k)
		}
	}
	if len(lost) > 0 {
		sort.Strings(lost)
		t.Fatalf("%d of %d acknowledged durable writes lost, e.g. %v", len(lost), len(res.acked), lost[:min(5, len(lost))])
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
