package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
)

// runBatch checks Do: each operation as its single counterpart would
// behave, results in order, bad batches refused before anything is
// written.
func runBatch(t *testing.T, newKV func(t *testing.T) store.KV) {
	ctx := context.Background()
	t.Run("BatchOperations", func(t *testing.T) {
		kv := newKV(t)
		must(t, kv.Set(ctx, "b:old", []byte("old"), time.Minute))
		must(t, kv.Set(ctx, "b:durable", []byte("d"), 0))
		res, err := kv.Do(ctx,
			store.Get("b:old"),
			store.Get("b:missing"),
			store.Set("b:new", []byte("new"), time.Minute),
			store.Get("b:new"), // sees the write before it
			store.SetNX("b:old", []byte("x"), time.Minute),
			store.SetNX("b:fresh", []byte("f"), time.Minute),
			store.Incr("b:n", time.Minute),
			store.Incr("b:n", time.Minute),
			store.Delete("b:old"),
			store.Get("b:durable"),
		)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 10 {
			t.Fatalf("%d results for 10 operations", len(res))
		}
		checks := []struct {
			ok   bool
			what string
		}{
			{string(res[0].Val) == "old" && res[0].Err == nil, "Get of a present key"},
			{res[1].Val == nil && errors.Is(res[1].Err, store.ErrNotFound), "Get of a missing key"},
			{res[2].Err == nil, "Set"},
			{string(res[3].Val) == "new", "Get after Set in the same batch"},
			{!res[4].OK && res[4].Err == nil, "SetNX over a present key"},
			{res[5].OK && res[5].Err == nil, "SetNX of an absent key"},
			{res[6].N == 1 && res[7].N == 2, "Incr twice"},
			{res[8].Err == nil, "Delete"},
			{string(res[9].Val) == "d", "Get of a durable record"},
		}
		for _, c := range checks {
			if !c.ok {
				t.Errorf("%s: results %+v", c.what, res)
			}
		}
		if store.FirstErr(res) != nil {
			t.Errorf("FirstErr = %v, want nil (a missing key is an answer)", store.FirstErr(res))
		}
		for key, want := range map[string]string{"b:new": "new", "b:fresh": "f", "b:n": "2"} {
			if got, err := kv.Get(ctx, key); err != nil || string(got) != want {
				t.Errorf("after the batch %s = %q, %v; want %q", key, got, err, want)
			}
		}
		if _, err := kv.Get(ctx, "b:old"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("deleted in the batch, then Get = %v", err)
		}
		// An Incr of a batch continues a counter of Incr, and keeps the TTL.
		n, err := kv.Incr(ctx, "b:n", time.Minute)
		if err != nil || n != 3 {
			t.Errorf("Incr after the batch = %d, %v; want 3", n, err)
		}
	})
	t.Run("BatchTTL", func(t *testing.T) {
		kv := newKV(t)
		if _, err := kv.Do(ctx, store.Set("bt:s", []byte("x"), 50*time.Millisecond),
			store.SetNX("bt:nx", []byte("x"), 50*time.Millisecond),
			store.Incr("bt:n", 50*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		waitGone(t, kv, "bt:s")
		waitGone(t, kv, "bt:nx")
		waitGone(t, kv, "bt:n")
	})
	t.Run("BatchRefused", func(t *testing.T) {
		kv := newKV(t)
		long := make([]store.Op, store.MaxBatch+1)
		for i := range long {
			long[i] = store.Set("br:"+strconv.Itoa(i), []byte("x"), time.Minute)
		}
		for name, ops := range map[string][]store.Op{
			"durable Set":      {store.Set("br:ok", []byte("x"), time.Minute), store.Set("br:d", []byte("x"), 0)},
			"durable SetNX":    {store.SetNX("br:d", []byte("x"), 0)},
			"Incr without TTL": {store.Incr("br:d", 0)},
			"empty key":        {store.Get("")},
			"unknown kind":     {{Kind: 0, Key: "br:x"}},
			"too many":         long,
		} {
			if _, err := kv.Do(ctx, ops...); !errors.Is(err, store.ErrBadBatch) {
				t.Errorf("%s: err = %v, want ErrBadBatch", name, err)
			}
		}
		// Nothing of a refused batch was written.
		for _, k := range []string{"br:ok", "br:d", "br:0"} {
			if _, err := kv.Get(ctx, k); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("refused batch wrote %s: %v", k, err)
			}
		}
		if res, err := kv.Do(ctx); err != nil || len(res) != 0 {
			t.Errorf("empty batch = %v, %v", res, err)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := kv.Do(cctx, store.Set("br:c", []byte("x"), time.Minute)); err == nil {
			t.Error("batch with a cancelled context succeeded")
		}
	})
	t.Run("BatchSetNXRace", func(t *testing.T) {
		// Of concurrent batches claiming one key, exactly one wins.
		kv := newKV(t)
		var wg sync.WaitGroup
		wins := make(chan int, 16)
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := kv.Do(ctx, store.SetNX("race", []byte(fmt.Sprint(i)), time.Minute), store.Incr("race:n", time.Minute))
				if err == nil && res[0].OK {
					wins <- i
				}
			}()
		}
		wg.Wait()
		close(wins)
		if len(wins) != 1 {
			t.Fatalf("%d batches won the SetNX, want 1", len(wins))
		}
		if n, _ := kv.Incr(ctx, "race:n", time.Minute); n != 17 {
			t.Fatalf("counter after 16 batches and one Incr = %d, want 17", n)
		}
	})
}
