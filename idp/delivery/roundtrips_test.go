package delivery_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/delivery"
	"github.com/watashi-id/watashi/idp/store"
)

// counting counts the store operations a queue makes.
type counting struct {
	store.KV
	mu  sync.Mutex
	ops int
}

func (c *counting) op() { c.mu.Lock(); c.ops++; c.mu.Unlock() }
func (c *counting) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.ops
	c.ops = 0
	return n
}
func (c *counting) Get(ctx context.Context, k string) ([]byte, error) {
	c.op()
	return c.KV.Get(ctx, k)
}
func (c *counting) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	c.op()
	return c.KV.Set(ctx, k, v, ttl)
}
func (c *counting) SetNX(ctx context.Context, k string, v []byte, ttl time.Duration) (bool, error) {
	c.op()
	return c.KV.SetNX(ctx, k, v, ttl)
}
func (c *counting) Delete(ctx context.Context, k ...string) error {
	c.op()
	return c.KV.Delete(ctx, k...)
}
func (c *counting) SetAdd(ctx context.Context, k string, ttl time.Duration, m ...string) error {
	c.op()
	return c.KV.SetAdd(ctx, k, ttl, m...)
}
func (c *counting) SetMembers(ctx context.Context, k string) ([]string, error) {
	c.op()
	return c.KV.SetMembers(ctx, k)
}
func (c *counting) SetRemove(ctx context.Context, k string, m ...string) error {
	c.op()
	return c.KV.SetRemove(ctx, k, m...)
}
func (c *counting) Publish(ctx context.Context, ch string, m []byte) error {
	c.op()
	return c.KV.Publish(ctx, ch, m)
}

// TestRoundTrips pins the store round trips per message: queuing one
// costs 5, delivering one 7 (a round over one destination with one job),
// an idle round 1 plus 1 per destination known.
func TestRoundTrips(t *testing.T) {
	ctx := context.Background()
	kv := &counting{KV: store.NewMemory()}
	q, err := delivery.New(kv, delivery.Options{Name: "rt"})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(ctx, "rp", "e1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if n := kv.take(); n != 5 {
		t.Errorf("enqueue: %d round trips, want 5", n)
	}
	q.Round(ctx, func(context.Context, delivery.Job) error { return nil })
	if n := kv.take(); n != 7 {
		t.Errorf("delivering one job: %d round trips, want 7", n)
	}
	q.Round(ctx, func(context.Context, delivery.Job) error { return nil })
	if n := kv.take(); n != 2 {
		t.Errorf("an idle round over one destination: %d round trips, want 2", n)
	}
}

// BenchmarkEnqueueDeliver is the queue's own cost per message (memory
// store, a sender that does nothing).
func BenchmarkEnqueueDeliver(b *testing.B) {
	ctx := context.Background()
	q, err := delivery.New(store.NewMemory(), delivery.Options{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	ids := []string{"a", "b", "c", "d"}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		if err := q.Enqueue(ctx, ids[i%4], strconv.Itoa(i), []byte(`{"sub":"x"}`)); err != nil {
			b.Fatal(err)
		}
		q.Round(ctx, func(context.Context, delivery.Job) error { return nil })
	}
}
