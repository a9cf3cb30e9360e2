package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
			"CAS without TTL":  {store.CAS("br:d", []byte("a"), []byte("b"), 0)},
			"SetAdd no TTL":    {store.SetAdd("br:set", 0, "m")},
			"SetAdd nothing":   {store.SetAdd("br:set", time.Minute)},
			"SetRemove none":   {store.SetRemove("br:set")},
			"HashIncr no TTL":  {store.HashIncr("br:h", "f", 0)},
			"HashIncr field":   {store.HashIncr("br:h", "", time.Minute)},
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
	t.Run("BatchStateOperations", func(t *testing.T) {
		kv := newKV(t)
		sub, err := kv.Subscribe(ctx, "bs:ch")
		if err != nil {
			t.Fatal(err)
		}
		must(t, kv.Set(ctx, "bs:cas", []byte("v1"), time.Hour))
		must(t, kv.Set(ctx, "bs:take", []byte("t"), time.Minute))
		must(t, kv.SetAdd(ctx, "bs:set", time.Hour, "a", "b"))
		res, err := kv.Do(ctx,
			store.CAS("bs:cas", []byte("other"), []byte("no"), time.Minute),
			store.CAS("bs:cas", []byte("v1"), []byte("v2"), 80*time.Millisecond),
			store.CAS("bs:missing", []byte(""), []byte("x"), time.Minute),
			store.Take("bs:take"),
			store.Take("bs:take"),
			store.SetAdd("bs:set", 80*time.Millisecond, "c"),
			store.SetRemove("bs:set", "a"),
			store.SetMembers("bs:set"),
			store.SetMembers("bs:noset"),
			store.Publish("bs:ch", []byte("hello")),
			store.StreamAdd("bs:log", []byte("first")),
			store.StreamAdd("bs:log", []byte("second")),
		)
		if err != nil {
			t.Fatal(err)
		}
		members := res[7].Members
		slices.Sort(members)
		checks := []struct {
			ok   bool
			what string
		}{
			{!res[0].OK && res[0].Err == nil, "CAS with the wrong old value"},
			{res[1].OK && res[1].Err == nil, "CAS with the right old value"},
			{!res[2].OK && res[2].Err == nil, "CAS of a missing key"},
			{string(res[3].Val) == "t" && res[3].Err == nil, "Take of a present key"},
			{errors.Is(res[4].Err, store.ErrNotFound), "Take of a taken key"},
			{res[5].Err == nil && res[6].Err == nil, "SetAdd, SetRemove"},
			{res[5].N == 3, "SetAdd's size of the set after the add"},
			{slices.Equal(members, []string{"b", "c"}), "SetMembers after add and remove"},
			{len(res[8].Members) == 0 && res[8].Err == nil, "SetMembers of a missing set"},
			{res[9].Err == nil, "Publish"},
			{res[10].Err == nil && res[11].Err == nil && len(res[10].Val) > 0 && len(res[11].Val) > 0, "StreamAdd"},
		}
		for _, c := range checks {
			if !c.ok {
				t.Errorf("%s: results %+v", c.what, res)
			}
		}
		select {
		case msg := <-sub:
			if string(msg) != "hello" {
				t.Errorf("published %q", msg)
			}
		case <-time.After(5 * time.Second):
			t.Error("the batch's Publish reached no subscriber")
		}
		if entries, err := kv.StreamRange(ctx, "bs:log", "", 10); err != nil || len(entries) != 2 ||
			entries[0].ID != string(res[10].Val) || string(entries[1].Value) != "second" {
			t.Errorf("the batch's appends: %+v, %v", entries, err)
		}
		if v, err := kv.Get(ctx, "bs:cas"); err != nil || string(v) != "v2" {
			t.Errorf("after CAS: %q, %v", v, err)
		}
		// The CAS and SetAdd set the new, shorter lifetimes.
		waitGone(t, kv, "bs:cas")
		deadline := time.Now().Add(5 * time.Second)
		for {
			m, err := kv.SetMembers(ctx, "bs:set")
			if err == nil && len(m) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("set still holds %v after its batch TTL", m)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("BatchHashIncr", func(t *testing.T) {
		// Counters of one hash count apart, share the hash's first TTL,
		// and the hash is one key: listed by Scan, gone with Delete.
		kv := newKV(t)
		var got []int64
		for _, f := range []string{"a", "b", "a", "a"} {
			res, err := kv.Do(ctx, store.HashIncr("bh:1", f, 150*time.Millisecond))
			if err != nil || res[0].Err != nil {
				t.Fatalf("HashIncr: %v %+v", err, res)
			}
			got = append(got, res[0].N)
		}
		if !slices.Equal(got, []int64{1, 1, 2, 3}) {
			t.Fatalf("counts %v, want [1 1 2 3]", got)
		}
		var keys []string
		must(t, kv.Scan(ctx, "bh:", func(k string) error { keys = append(keys, k); return nil }))
		if !slices.Equal(keys, []string{"bh:1"}) {
			t.Errorf("Scan lists %v, want [bh:1]", keys)
		}
		res, err := kv.Do(ctx, store.HashIncr("bh:2", "x", time.Minute))
		if err != nil || res[0].N != 1 {
			t.Fatalf("second hash: %v %+v", err, res)
		}
		must(t, kv.Delete(ctx, "bh:2"))
		if res, err := kv.Do(ctx, store.HashIncr("bh:2", "x", time.Minute)); err != nil || res[0].N != 1 {
			t.Errorf("after Delete the count went on: %v %+v", err, res)
		}
		// The first TTL holds: the hash is gone once it passes, and
		// counting starts again.
		deadline := time.Now().Add(5 * time.Second)
		for {
			res, err := kv.Do(ctx, store.HashIncr("bh:1", "b", 150*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if res[0].N == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the hash outlived its TTL")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("BatchCASRace", func(t *testing.T) {
		// Of concurrent batches swapping one value, exactly one wins; of
		// concurrent takers exactly one gets the value.
		kv := newKV(t)
		must(t, kv.Set(ctx, "rc", []byte("start"), time.Minute))
		must(t, kv.Set(ctx, "rt", []byte("once"), time.Minute))
		var wg sync.WaitGroup
		var mu sync.Mutex
		swaps, takes := 0, 0
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := kv.Do(ctx, store.CAS("rc", []byte("start"), []byte(fmt.Sprint(i)), time.Minute), store.Take("rt"))
				if err != nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if res[0].OK {
					swaps++
				}
				if res[1].Err == nil {
					takes++
				}
			}()
		}
		wg.Wait()
		if swaps != 1 || takes != 1 {
			t.Fatalf("%d swaps and %d takes won, want 1 and 1", swaps, takes)
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
