package web

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

// failingCounter injects store failures that a live backend cannot be
// made to produce on demand.
type failingCounter struct{}

func (failingCounter) Do(context.Context, ...store.Op) ([]store.Result, error) {
	return nil, errors.New("injected: connection refused")
}

// recordingCounter records what reaches the store.
type recordingCounter struct {
	Counter
	mu     sync.Mutex
	keys   []string
	fields []string
	ttls   []time.Duration
}

func (c *recordingCounter) Do(ctx context.Context, ops ...store.Op) ([]store.Result, error) {
	c.mu.Lock()
	for _, op := range ops {
		c.keys = append(c.keys, op.Key)
		c.fields = append(c.fields, op.Field)
		c.ttls = append(c.ttls, op.TTL)
	}
	c.mu.Unlock()
	return c.Counter.Do(ctx, ops...)
}

func TestRateLimit(t *testing.T) {
	backends := map[string]func(t *testing.T) Counter{
		"memory": func(t *testing.T) Counter { return store.NewMemory() },
		"redis": func(t *testing.T) Counter {
			r, err := store.NewRedis(store.RedisOptions{Addrs: []string{storetest.StartRedis(t)}, Prefix: "rltest:"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Close() })
			return r
		},
	}
	for name, mk := range backends {
		t.Run(name, func(t *testing.T) {
			now := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
			clock := func() time.Time { return now }
			shared := mk(t)
			k, _, reg := newKit(t, Options{Counter: shared, Now: clock})
			ctx := context.Background()
			for i := 1; i <= 3; i++ {
				if !k.Allow(ctx, "tx", "198.51.100.7", 3, time.Minute) {
					t.Fatalf("event %d refused", i)
				}
			}
			if k.Allow(ctx, "tx", "198.51.100.7", 3, time.Minute) {
				t.Fatal("4th event allowed")
			}
			if !k.Allow(ctx, "tx", "198.51.100.8", 3, time.Minute) {
				t.Fatal("another key shares the counter")
			}
			if !k.Allow(ctx, "wallet", "198.51.100.7", 3, time.Minute) {
				t.Fatal("another bucket shares the counter")
			}
			// A second node with the same key and store shares the window.
			node2, _, _ := newKit(t, Options{Counter: shared, Now: clock})
			if node2.Allow(ctx, "tx", "198.51.100.7", 3, time.Minute) {
				t.Fatal("the other node does not see the count")
			}
			// Another deployment's key counts apart.
			other, _, _ := newKit(t, Options{Counter: shared, Now: clock, CookieKey: bytes.Repeat([]byte{9}, 32)})
			if !other.Allow(ctx, "tx", "198.51.100.7", 3, time.Minute) {
				t.Fatal("a deployment with another key shares the counter")
			}
			now = now.Add(59 * time.Second)
			if k.Allow(ctx, "tx", "198.51.100.7", 3, time.Minute) {
				t.Fatal("allowed within the same window")
			}
			now = now.Add(time.Second)
			if !k.Allow(ctx, "tx", "198.51.100.7", 3, time.Minute) {
				t.Fatal("refused in the next window")
			}
			// k refused twice; node2 and other count on their own registries.
			if v := counterValue(t, reg, "watashi_rate_limited_total", map[string]string{"bucket": "tx"}); v != 2 {
				t.Fatalf("rate limited counter %v, want 2", v)
			}
		})
	}
	t.Run("refusing limits", func(t *testing.T) {
		k, _, reg := newKit(t, Options{})
		for _, tt := range []struct {
			name   string
			limit  int
			window time.Duration
		}{
			{"zero limit", 0, time.Minute},
			{"negative limit", -1, time.Minute},
			{"zero window", 1, 0},
			{"negative window", 1, -time.Minute},
		} {
			if k.Allow(context.Background(), "odd", "k", tt.limit, tt.window) {
				t.Errorf("%s allows", tt.name)
			}
		}
		if v := counterValue(t, reg, "watashi_rate_limited_total", map[string]string{"bucket": "odd"}); v != 4 {
			t.Fatalf("rate limited counter %v, want 4", v)
		}
	})
	t.Run("store down allows", func(t *testing.T) {
		k, logs, reg := newKit(t, Options{Counter: failingCounter{}})
		if !k.Allow(context.Background(), "tx", "198.51.100.7", 1, time.Minute) {
			t.Fatal("store failure refused the request")
		}
		m := logLine(t, logs, "rate limit unavailable, allowing")
		if m["level"] != "WARN" || m["bucket"] != "tx" {
			t.Fatalf("store failure log %v", m)
		}
		if strings.Contains(logs.String(), "198.51") {
			t.Fatal("client address logged")
		}
		if v := counterValue(t, reg, "watashi_rate_limited_total", nil); v != 0 {
			t.Fatalf("rate limited counter %v", v)
		}
	})
}

// TestRateLimitKeyHidesClient: what reaches the store is a MAC of the
// client address, never the address itself, with a TTL that ends the
// key soon after its window.
func TestRateLimitKeyHidesClient(t *testing.T) {
	now := time.Date(2026, 4, 1, 12, 0, 42, 0, time.UTC)
	rec := &recordingCounter{Counter: store.NewMemory()}
	k, _, _ := newKit(t, Options{Counter: rec, Now: func() time.Time { return now }})
	for _, ip := range []string{"198.51.100.7", "198.51.100.8", "2001:db8::1"} {
		k.Allow(context.Background(), "tx", ip, 5, time.Minute)
	}
	idx := now.UnixNano() / int64(time.Minute)
	shape := regexp.MustCompile(`^rl:[A-Za-z0-9_-]{22}:60000:` + strconv.FormatInt(idx, 10) + `$`)
	seen := map[string]bool{}
	for i, key := range rec.keys {
		if !shape.MatchString(key) || strings.Contains(key, "198.51") || strings.Contains(key, "2001:db8") {
			t.Fatalf("store key %q", key)
		}
		if seen[key] {
			t.Fatalf("keys collide: %q", key)
		}
		seen[key] = true
		if rec.fields[i] != "tx" {
			t.Fatalf("counted in field %q, want the bucket", rec.fields[i])
		}
		// 18 s left in the window, plus a second of slack.
		if rec.ttls[i] != 19*time.Second {
			t.Fatalf("ttl %v", rec.ttls[i])
		}
	}
	if got := k.rateLimitKey("198.51.100.7", time.Minute, 42); !regexp.MustCompile(`^rl:[A-Za-z0-9_-]{22}:60000:42$`).MatchString(got) {
		t.Fatalf("rateLimitKey %q", got)
	}
	// The buckets of one address and window share a key (its hash's
	// fields); another window length does not.
	if k.rateLimitKey("198.51.100.7", time.Minute, 42) == k.rateLimitKey("198.51.100.7", time.Hour, 42) {
		t.Fatal("windows of different lengths share a key")
	}
	k2, _, _ := newKit(t, Options{CookieKey: bytes.Repeat([]byte{9}, 32)})
	if k.rateLimitKey("198.51.100.7", time.Minute, 42) == k2.rateLimitKey("198.51.100.7", time.Minute, 42) {
		t.Fatal("the key does not depend on the cookie key: addresses could be recovered by guessing")
	}
}

// A count sent in a batch shares Allow's counter and verdict.
func TestRateLimitInBatch(t *testing.T) {
	for name, kv := range map[string]store.KV{"memory": store.NewMemory(), "redis": func() store.KV {
		r, err := store.NewRedis(store.RedisOptions{Addrs: []string{storetest.StartRedis(t)}, Prefix: "rlbatch:"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		return r
	}()} {
		t.Run(name, func(t *testing.T) {
			now := time.Date(2026, 4, 1, 12, 0, 30, 0, time.UTC)
			k, _, _ := newKit(t, Options{Counter: kv, Now: func() time.Time { return now }})
			ctx := context.Background()
			for i := range 3 {
				res, err := kv.Do(ctx, k.LimitOp("b", "addr", time.Minute), store.Get("other"))
				if err != nil {
					t.Fatal(err)
				}
				if got := k.Allowed(ctx, "b", 3, res[0]); !got {
					t.Fatalf("batched count %d refused within the limit", i+1)
				}
			}
			// The batch and Allow count the same window.
			if k.Allow(ctx, "b", "addr", 3, time.Minute) {
				t.Fatal("Allow after three batched counts allowed a fourth")
			}
			res, _ := kv.Do(ctx, k.LimitOp("b", "addr", time.Minute))
			if k.Allowed(ctx, "b", 3, res[0]) || res[0].N != 5 {
				t.Fatalf("fifth count %d allowed", res[0].N)
			}
			// A failed count allows (as Allow does); a limit of 0 refuses.
			if !k.Allowed(ctx, "b", 3, store.Result{Err: errors.New("injected")}) {
				t.Fatal("a store failure refused the request")
			}
			if k.Allowed(ctx, "b", 0, store.Result{N: 1}) {
				t.Fatal("limit 0 allowed")
			}
			// The next window starts again.
			now = now.Add(time.Minute)
			res, _ = kv.Do(ctx, k.LimitOp("b", "addr", time.Minute))
			if !k.Allowed(ctx, "b", 3, res[0]) || res[0].N != 1 {
				t.Fatalf("new window: count %d", res[0].N)
			}
		})
	}
}

// TestRateLimitOneKeyPerAddress: the buckets a login counts for one
// client address in one window are one key in the store.
func TestRateLimitOneKeyPerAddress(t *testing.T) {
	for name, kv := range map[string]store.KV{"memory": store.NewMemory(), "redis": func() store.KV {
		r, err := store.NewRedis(store.RedisOptions{Addrs: []string{storetest.StartRedis(t)}, Prefix: "rlkeys:"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		return r
	}()} {
		t.Run(name, func(t *testing.T) {
			k, _, _ := newKit(t, Options{Counter: kv})
			ctx := context.Background()
			for _, b := range []string{"authorize", "signin_tx", "wallet_fetch", "wallet_submit", "authorize"} {
				if !k.Allow(ctx, b, "198.51.100.7", 10, time.Minute) {
					t.Fatalf("%s refused", b)
				}
			}
			if !k.Allow(ctx, "other_window", "198.51.100.7", 10, time.Hour) {
				t.Fatal("refused")
			}
			var keys []string
			if err := kv.Scan(ctx, "rl:", func(k string) error { keys = append(keys, k); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(keys) != 2 {
				t.Fatalf("keys %v, want one per window length", keys)
			}
		})
	}
}
