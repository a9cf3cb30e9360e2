package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/delivery"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func backends(t *testing.T) map[string]func(t *testing.T) store.KV {
	return map[string]func(t *testing.T) store.KV{
		"memory": func(t *testing.T) store.KV { return store.NewMemory() },
		"redis": func(t *testing.T) store.KV {
			kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{storetest.StartRedis(t)}, Prefix: "dq:"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { kv.Close() })
			return kv
		},
	}
}

func TestQueue(t *testing.T) {
	for name, newKV := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kv := newKV(t)
			clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			q, err := delivery.New(kv, delivery.Options{Name: "test", MaxAttempts: 3, MaxPerDest: 3, Backoff: time.Second, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			for i, id := range []string{"e1", "e2", "e1"} { // e1 twice: queued once
				clk.Add(time.Millisecond)
				if err := q.Enqueue(ctx, "rp-a", id, []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
					t.Fatal(err)
				}
			}
			if err := q.Enqueue(ctx, "rp-b", "e1", []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			// The receiver rp-a is down: its first job is retried, the second
			// waits behind it; rp-b is unaffected.
			var got []string
			down := true
			send := func(_ context.Context, j delivery.Job) error {
				if j.Dest == "rp-a" && down {
					return errors.New("503")
				}
				got = append(got, j.Dest+"/"+j.ID)
				return nil
			}
			q.Round(ctx, send)
			if fmt.Sprint(got) != "[rp-b/e1]" {
				t.Fatalf("round 1: %v", got)
			}
			q.Round(ctx, send) // not due yet: nothing attempted
			pend, _ := q.Pending(ctx, "rp-a", 10)
			if len(pend) != 2 || pend[0].ID != "e1" || pend[0].Attempts != 1 || pend[1].Attempts != 0 {
				t.Fatalf("pending after a failure: %+v", pend)
			}
			down = false
			clk.Add(2 * time.Second)
			q.Round(ctx, send)
			if fmt.Sprint(got) != "[rp-b/e1 rp-a/e1 rp-a/e2]" {
				t.Fatalf("after recovery: %v", got)
			}
			if pend, _ := q.Pending(ctx, "rp-a", 10); len(pend) != 0 {
				t.Fatalf("delivered jobs still pending: %+v", pend)
			}

			// A permanent refusal drops at once; attempts run out.
			_ = q.Enqueue(ctx, "rp-c", "x", []byte(`{}`))
			_ = q.Enqueue(ctx, "rp-d", "y", []byte(`{}`))
			calls := 0
			failing := func(_ context.Context, j delivery.Job) error {
				calls++
				if j.Dest == "rp-c" {
					return delivery.Permanent(errors.New("400"))
				}
				return errors.New("timeout")
			}
			for range 5 {
				q.Round(ctx, failing)
				clk.Add(time.Hour)
			}
			if calls != 4 { // rp-c once, rp-d MaxAttempts times
				t.Fatalf("%d attempts, want 4", calls)
			}
			for _, d := range []string{"rp-c", "rp-d"} {
				if pend, _ := q.Pending(ctx, d, 10); len(pend) != 0 {
					t.Fatalf("%s: %+v", d, pend)
				}
			}

			// The bound: a destination holds MaxPerDest jobs.
			for i := range 3 {
				if err := q.Enqueue(ctx, "rp-e", fmt.Sprint(i), []byte(`{}`)); err != nil {
					t.Fatal(err)
				}
			}
			if err := q.Enqueue(ctx, "rp-e", "3", []byte(`{}`)); !errors.Is(err, delivery.ErrFull) {
				t.Fatalf("over the bound: %v", err)
			}
			// Poll-style: Pending and Ack.
			pend, _ = q.Pending(ctx, "rp-e", 2)
			if len(pend) != 2 || pend[0].ID != "0" || pend[1].ID != "1" {
				t.Fatalf("pending: %+v", pend)
			}
			if n, err := q.Ack(ctx, "rp-e", "0", "nope", "0"); err != nil || n != 1 {
				t.Fatalf("ack: %d %v", n, err)
			}
			if err := q.Enqueue(ctx, "rp-e", "3", []byte(`{}`)); err != nil {
				t.Fatalf("room after ack: %v", err)
			}
			if err := q.Purge(ctx, "rp-e"); err != nil {
				t.Fatal(err)
			}
			if pend, _ := q.Pending(ctx, "rp-e", 10); len(pend) != 0 {
				t.Fatalf("purged: %+v", pend)
			}
			// Bad IDs change nothing.
			for _, bad := range []string{"", "a b", string(make([]byte, 201))} {
				if err := q.Enqueue(ctx, bad, "x", nil); !errors.Is(err, delivery.ErrBadID) {
					t.Errorf("dest %q: %v", bad, err)
				}
				if err := q.Enqueue(ctx, "rp", bad, nil); !errors.Is(err, delivery.ErrBadID) {
					t.Errorf("id %q: %v", bad, err)
				}
			}
		})
	}
}

// TestQueueOneNodePerDestination: two nodes running the same queue
// deliver each job once.
func TestQueueOneNodePerDestination(t *testing.T) {
	kv := backends(t)["redis"](t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seen := map[string]int{}
	send := func(_ context.Context, j delivery.Job) error {
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		seen[j.Dest+"/"+j.ID]++
		mu.Unlock()
		return nil
	}
	for range 2 {
		q, err := delivery.New(kv, delivery.Options{Name: "ha", Tick: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		go q.Run(ctx, send)
	}
	q, _ := delivery.New(kv, delivery.Options{Name: "ha"})
	for i := range 40 {
		if err := q.Enqueue(ctx, fmt.Sprint("rp", i%4), fmt.Sprint(i), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == 40 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Let a duplicate, if any, happen.
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 40 {
		t.Fatalf("%d of 40 delivered", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times", k, n)
		}
	}
}
