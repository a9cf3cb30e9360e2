package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
)

// RunKV runs the KV contract against a backend. newKV must return an empty
// store (or one whose keys cannot collide: use a fresh prefix).
func RunKV(t *testing.T, newKV func(t *testing.T) store.KV) {
	ctx := context.Background()
	t.Run("GetMissing", func(t *testing.T) {
		kv := newKV(t)
		if _, err := kv.Get(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get missing = %v, want ErrNotFound", err)
		}
	})
	t.Run("SetGetDelete", func(t *testing.T) {
		kv := newKV(t)
		must(t, kv.Set(ctx, "a", []byte("1"), 0))
		got, err := kv.Get(ctx, "a")
		if err != nil || string(got) != "1" {
			t.Fatalf("Get = %q, %v", got, err)
		}
		must(t, kv.Set(ctx, "a", []byte("2"), time.Minute))
		got, _ = kv.Get(ctx, "a")
		if string(got) != "2" {
			t.Fatalf("overwrite: got %q", got)
		}
		must(t, kv.Delete(ctx, "a", "never-existed"))
		if _, err := kv.Get(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("after Delete: %v", err)
		}
	})
	t.Run("ValueIsCopied", func(t *testing.T) {
		kv := newKV(t)
		v := []byte("abc")
		must(t, kv.Set(ctx, "c", v, 0))
		v[0] = 'X'
		got, _ := kv.Get(ctx, "c")
		if string(got) != "abc" {
			t.Fatalf("store aliases caller's slice: %q", got)
		}
	})
	t.Run("TTLExpires", func(t *testing.T) {
		kv := newKV(t)
		must(t, kv.Set(ctx, "t", []byte("x"), 50*time.Millisecond))
		ok, err := kv.SetNX(ctx, "t2", []byte("x"), 50*time.Millisecond)
		if !ok || err != nil {
			t.Fatalf("SetNX = %v, %v", ok, err)
		}
		waitGone(t, kv, "t")
		waitGone(t, kv, "t2")
	})
	t.Run("SetNX", func(t *testing.T) {
		kv := newKV(t)
		ok, err := kv.SetNX(ctx, "n", []byte("first"), time.Minute)
		if !ok || err != nil {
			t.Fatalf("first SetNX = %v, %v", ok, err)
		}
		ok, err = kv.SetNX(ctx, "n", []byte("second"), time.Minute)
		if ok || err != nil {
			t.Fatalf("second SetNX = %v, %v", ok, err)
		}
		got, _ := kv.Get(ctx, "n")
		if string(got) != "first" {
			t.Fatalf("SetNX overwrote: %q", got)
		}
	})
	t.Run("TakeIsSingleUse", func(t *testing.T) {
		kv := newKV(t)
		must(t, kv.Set(ctx, "code", []byte("v"), time.Minute))
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := kv.Take(ctx, "code")
				if err == nil && string(v) == "v" {
					mu.Lock()
					wins++
					mu.Unlock()
				} else if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("Take: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("Take succeeded %d times, want exactly 1", wins)
		}
	})
	t.Run("CompareAndSwap", func(t *testing.T) {
		kv := newKV(t)
		must(t, kv.Set(ctx, "s", []byte("pending"), time.Minute))
		ok, err := kv.CompareAndSwap(ctx, "s", []byte("other"), []byte("done"))
		if ok || err != nil {
			t.Fatalf("CAS with wrong old = %v, %v", ok, err)
		}
		ok, err = kv.CompareAndSwap(ctx, "s", []byte("pending"), []byte("done"))
		if !ok || err != nil {
			t.Fatalf("CAS = %v, %v", ok, err)
		}
		ok, _ = kv.CompareAndSwap(ctx, "s", []byte("pending"), []byte("done2"))
		if ok {
			t.Fatal("second CAS from the old value succeeded")
		}
		ok, _ = kv.CompareAndSwap(ctx, "missing", []byte(""), []byte("x"))
		if ok {
			t.Fatal("CAS on a missing key succeeded")
		}
		// CAS keeps the TTL.
		must(t, kv.Set(ctx, "ttl", []byte("a"), 60*time.Millisecond))
		if ok, _ := kv.CompareAndSwap(ctx, "ttl", []byte("a"), []byte("b")); !ok {
			t.Fatal("CAS failed")
		}
		waitGone(t, kv, "ttl")
	})
	t.Run("Incr", func(t *testing.T) {
		kv := newKV(t)
		for i := int64(1); i <= 3; i++ {
			n, err := kv.Incr(ctx, "ctr", 60*time.Millisecond)
			if err != nil || n != i {
				t.Fatalf("Incr #%d = %d, %v", i, n, err)
			}
		}
		waitGone(t, kv, "ctr")
		n, _ := kv.Incr(ctx, "ctr", time.Minute)
		if n != 1 {
			t.Fatalf("counter after expiry = %d, want 1", n)
		}
	})
	t.Run("Sets", func(t *testing.T) {
		kv := newKV(t)
		got, err := kv.SetMembers(ctx, "set")
		if err != nil || len(got) != 0 {
			t.Fatalf("missing set = %v, %v", got, err)
		}
		must(t, kv.SetAdd(ctx, "set", 0, "b", "a"))
		must(t, kv.SetAdd(ctx, "set", 0, "a", "c"))
		must(t, kv.SetRemove(ctx, "set", "c", "zzz"))
		got, _ = kv.SetMembers(ctx, "set")
		sort.Strings(got)
		if fmt.Sprint(got) != "[a b]" {
			t.Fatalf("members = %v", got)
		}
		must(t, kv.SetAdd(ctx, "eph", 60*time.Millisecond, "x"))
		deadline := time.Now().Add(3 * time.Second)
		for {
			m, _ := kv.SetMembers(ctx, "eph")
			if len(m) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("set with ttl did not expire")
			}
			time.Sleep(20 * time.Millisecond)
		}
		must(t, kv.Delete(ctx, "set"))
		got, _ = kv.SetMembers(ctx, "set")
		if len(got) != 0 {
			t.Fatalf("deleted set still has %v", got)
		}
	})
	t.Run("PubSub", func(t *testing.T) {
		kv := newKV(t)
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch, err := kv.Subscribe(sctx, "chan")
		if err != nil {
			t.Fatal(err)
		}
		must(t, kv.Publish(ctx, "other", []byte("no")))
		must(t, kv.Publish(ctx, "chan", []byte("hello")))
		select {
		case m := <-ch:
			if string(m) != "hello" {
				t.Fatalf("got %q", m)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("no message within 3s")
		}
		cancel()
		for range ch { // drains and must close after cancel
		}
	})
	t.Run("CanceledContext", func(t *testing.T) {
		kv := newKV(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := kv.Set(cctx, "x", []byte("y"), 0); err == nil {
			t.Fatal("Set with a canceled context succeeded")
		}
		if _, err := kv.Get(ctx, "x"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("canceled Set changed the store: %v", err)
		}
	})
	t.Run("Streams", func(t *testing.T) {
		kv := newKV(t)
		got, err := kv.StreamRange(ctx, "log", "", 0)
		if err != nil || len(got) != 0 {
			t.Fatalf("empty stream = %v, %v", got, err)
		}
		var ids []string
		for _, v := range []string{"one", "two", "three"} {
			id, err := kv.StreamAdd(ctx, "log", []byte(v))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		all, _ := kv.StreamRange(ctx, "log", "", 0)
		if len(all) != 3 || string(all[0].Value) != "one" || string(all[2].Value) != "three" || all[1].ID != ids[1] {
			t.Fatalf("range = %+v", all)
		}
		after, _ := kv.StreamRange(ctx, "log", ids[0], 1)
		if len(after) != 1 || string(after[0].Value) != "two" {
			t.Fatalf("range after first, count 1 = %+v", after)
		}
		none, _ := kv.StreamRange(ctx, "log", ids[2], 0)
		if len(none) != 0 {
			t.Fatalf("range after last = %+v", none)
		}
	})
	t.Run("StreamTrim", func(t *testing.T) {
		kv := newKV(t)
		if n, err := kv.StreamTrim(ctx, "log", "1-0"); err != nil || n != 0 {
			t.Fatalf("trim of a missing stream = %d, %v", n, err)
		}
		var ids []string
		for _, v := range []string{"a", "b", "c", "d"} {
			id, err := kv.StreamAdd(ctx, "log", []byte(v))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		for _, bad := range []string{"", "x", "1-", "-1", "01-0", "1-2-3"} {
			if _, err := kv.StreamTrim(ctx, "log", bad); err == nil {
				t.Errorf("StreamTrim(%q) succeeded", bad)
			}
		}
		if all, _ := kv.StreamRange(ctx, "log", "", 0); len(all) != 4 {
			t.Fatalf("a refused trim changed the stream: %+v", all)
		}
		// Entries below minID go; minID itself stays.
		n, err := kv.StreamTrim(ctx, "log", ids[2])
		if err != nil || n != 2 {
			t.Fatalf("trim below the third = %d, %v", n, err)
		}
		left, _ := kv.StreamRange(ctx, "log", "", 0)
		if len(left) != 2 || left[0].ID != ids[2] || string(left[1].Value) != "d" {
			t.Fatalf("after trim = %+v", left)
		}
		if n, err := kv.StreamTrim(ctx, "log", ids[2]); err != nil || n != 0 {
			t.Fatalf("trim again = %d, %v", n, err)
		}
		// Trimmed to nothing, the stream still orders what comes next
		// after what it had.
		ms, seq, _ := store.ParseStreamID(ids[3])
		if _, err := kv.StreamTrim(ctx, "log", fmt.Sprintf("%d-%d", ms, seq+1)); err != nil {
			t.Fatal(err)
		}
		if all, _ := kv.StreamRange(ctx, "log", "", 0); len(all) != 0 {
			t.Fatalf("trim past the end left %+v", all)
		}
		id, err := kv.StreamAdd(ctx, "log", []byte("e"))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := kv.StreamRange(ctx, "log", ids[3], 0); len(got) != 1 || got[0].ID != id {
			t.Fatalf("entry after a full trim = %q, not after %q: %+v", id, ids[3], got)
		}
	})
	t.Run("Ping", func(t *testing.T) {
		if err := newKV(t).Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
	runSnapshot(t, newKV)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitGone polls until key expires; TTL resolution differs by backend.
func waitGone(t *testing.T, kv store.KV, key string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, err := kv.Get(context.Background(), key); errors.Is(err, store.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %q did not expire", key)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
