package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

func TestRedisWaitOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    store.RedisOptions
		want int
		err  string
	}{
		{"standalone waits for nobody", store.RedisOptions{Addrs: []string{"127.0.0.1:1"}}, 0, ""},
		{"sentinel waits for one", store.RedisOptions{Addrs: []string{"127.0.0.1:1"}, MasterName: "m"}, 1, ""},
		{"cluster waits for one", store.RedisOptions{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}, 1, ""},
		{"explicit count", store.RedisOptions{Addrs: []string{"127.0.0.1:1"}, WaitReplicas: 2}, 2, ""},
		{"negative turns it off", store.RedisOptions{Addrs: []string{"127.0.0.1:1"}, MasterName: "m", WaitReplicas: -1}, 0, ""},
		{"wait not below timeout", store.RedisOptions{Addrs: []string{"127.0.0.1:1"}, MasterName: "m", Timeout: time.Second, WaitTimeout: time.Second}, 0, "must be below"},
		{"short timeout, standalone", store.RedisOptions{Addrs: []string{"127.0.0.1:1"}, Timeout: 200 * time.Millisecond}, 0, ""},
		{"short timeout, sentinel", store.RedisOptions{Addrs: []string{"127.0.0.1:1"}, MasterName: "m", Timeout: 200 * time.Millisecond}, 1, ""},
		{"negative timeout", store.RedisOptions{Addrs: []string{"127.0.0.1:1"}, Timeout: -time.Second}, 0, "negative"},
		{"negative wait timeout", store.RedisOptions{Addrs: []string{"127.0.0.1:1"}, WaitTimeout: -time.Second}, 0, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := store.NewRedis(tc.o)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("NewRedis = %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.WaitReplicas() != tc.want {
				t.Fatalf("WaitReplicas = %d, want %d", r.WaitReplicas(), tc.want)
			}
		})
	}
}

// With the only replica stalled, every write that changes a durable
// record must report ErrNotReplicated (it is on the master, not known to
// survive a failover), and every ephemeral write must go through without
// waiting.
func TestRedisWaitForReplicas(t *testing.T) {
	nodes := storetest.StartReplicated(t, 1)
	master, replica := nodes[0], nodes[1]
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	raw := newHAStore(t, store.RedisOptions{Addrs: []string{master.Addr}, Prefix: "wait:", WaitReplicas: 1, WaitTimeout: 500 * time.Millisecond})
	kv, err := store.Instrument(raw, reg)
	if err != nil {
		t.Fatal(err)
	}

	// In sync: a durable write returns once the replica has it. On a
	// loaded machine the replica's first acknowledgements may come later
	// than the wait allows: the first write may be retried until it has
	// caught up, which is the precondition here, not the property tested
	// (and on the uninstrumented store, so that the error count below
	// counts only the stalled replica's).
	for deadline := time.Now().Add(15 * time.Second); ; {
		err := raw.Set(ctx, "acct", []byte("v1"), 0)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrNotReplicated) || time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	if v, err := replica.Client().Get(ctx, "wait:acct").Result(); err != nil || v != "v1" {
		t.Fatalf("replica after a durable write: %q, %v", v, err)
	}
	must(t, kv.Set(ctx, "tx", []byte("pending"), time.Minute))
	must(t, kv.SetAdd(ctx, "links", 0, "a", "b"))
	must(t, kv.SetAdd(ctx, "eph-set", time.Minute, "a", "b"))
	must(t, kv.Set(ctx, "gone-eph", []byte("x"), time.Minute))
	must(t, kv.Set(ctx, "gone-durable", []byte("x"), 0))
	must(t, kv.Restore(ctx, store.Record{Key: "restored", Kind: store.KindSet, Members: []string{"a"}}))
	if n, err := replica.Client().SCard(ctx, "wait:restored").Result(); err != nil || n != 1 {
		t.Fatalf("replica after a Restore: %d members, %v", n, err)
	}

	replica.Pause()
	defer replica.Resume()
	notReplicated := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrNotReplicated) {
			t.Errorf("%s with the replica stalled = %v, want ErrNotReplicated", what, err)
		}
	}
	notReplicated("durable Set", kv.Set(ctx, "acct", []byte("v2"), 0))
	_, err = kv.SetNX(ctx, "link", []byte("x"), 0)
	notReplicated("durable SetNX", err)
	_, err = kv.CompareAndSwap(ctx, "acct", []byte("v2"), []byte("v3"))
	notReplicated("CAS of a durable record", err)
	notReplicated("durable SetAdd", kv.SetAdd(ctx, "links", 0, "c"))
	notReplicated("SetRemove from a durable set", kv.SetRemove(ctx, "links", "a"))
	notReplicated("Delete of a durable record", kv.Delete(ctx, "gone-durable"))
	_, err = kv.StreamAdd(ctx, "audit", []byte("entry"))
	notReplicated("StreamAdd", err)
	notReplicated("Restore", kv.Restore(ctx, store.Record{Key: "restored", Kind: store.KindStream, Entries: []store.StreamEntry{{ID: "1-1", Value: []byte("e")}}}))

	for what, err := range map[string]error{
		"ephemeral Set":                 kv.Set(ctx, "code", []byte("x"), time.Minute),
		"Delete of an ephemeral record": kv.Delete(ctx, "gone-eph", "never-existed"),
		"SetAdd with a TTL":             kv.SetAdd(ctx, "eph-set", time.Minute, "c"),
		"SetRemove from an ephemeral":   kv.SetRemove(ctx, "eph-set", "a"),
	} {
		if err != nil {
			t.Errorf("%s with the replica stalled: %v", what, err)
		}
	}
	if ok, err := kv.CompareAndSwap(ctx, "tx", []byte("pending"), []byte("verified")); !ok || err != nil {
		t.Errorf("CAS of an ephemeral record = %v, %v", ok, err)
	}
	if ok, err := kv.SetNX(ctx, "acct", []byte("x"), 0); ok || err != nil {
		t.Errorf("SetNX that writes nothing = %v, %v; nothing to wait for", ok, err)
	}
	if _, err := kv.Take(ctx, "code"); err != nil {
		t.Errorf("Take: %v", err)
	}
	if _, err := kv.Incr(ctx, "ctr", time.Minute); err != nil {
		t.Errorf("Incr: %v", err)
	}
	// The write happened on the master all the same: "not replicated" is
	// "not known to be safe", never "not done".
	if v, err := kv.Get(ctx, "acct"); err != nil || string(v) != "v3" {
		t.Errorf("master holds %q, %v", v, err)
	}
	if n := errCount(t, reg, "set", "not_replicated"); n != 1 {
		t.Errorf("watashi_store_errors_total{op=set,kind=not_replicated} = %v, want 1", n)
	}

	// Waiting can be turned off.
	off := newHAStore(t, store.RedisOptions{Addrs: []string{master.Addr}, WaitReplicas: -1})
	must(t, off.Set(ctx, "acct", []byte("v4"), 0))

	replica.Resume()
	must(t, kv.Set(ctx, "acct", []byte("v5"), 0))
}

func errCount(t *testing.T, reg *prometheus.Registry, op, kind string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "watashi_store_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["op"] == op && labels["kind"] == kind {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no watashi_store_errors_total{op=%q,kind=%q}", op, kind)
	return 0
}
