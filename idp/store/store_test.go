package store_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.RunKV(t, func(t *testing.T) store.KV { return store.NewMemory() })
}

var prefixSeq atomic.Int64

func TestRedisConformance(t *testing.T) {
	addr := storetest.StartRedis(t)
	storetest.RunKV(t, func(t *testing.T) store.KV {
		r, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: fmt.Sprintf("t%d:", prefixSeq.Add(1))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	})
}

func TestRedisPrefixIsolates(t *testing.T) {
	addr := storetest.StartRedis(t)
	ctx := context.Background()
	a, _ := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: "a:"})
	b, _ := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: "b:"})
	defer a.Close()
	defer b.Close()
	if err := a.Set(ctx, "k", []byte("from-a"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "k"); err != store.ErrNotFound {
		t.Fatalf("prefix b sees a's key: %v", err)
	}
	raw, err := a.Client().Get(ctx, "a:k").Result()
	if err != nil || raw != "from-a" {
		t.Fatalf("raw key a:k = %q, %v", raw, err)
	}
}

// A Redis that accepts and never answers must not hang a request past the
// caller's deadline: this is what ContextTimeoutEnabled buys.
func TestRedisHonoursDeadline(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold the connection open, answer nothing
		}
	}()
	r, err := store.NewRedis(store.RedisOptions{Addrs: []string{l.Addr().String()}, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Ping(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Ping = %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Ping ignored the context deadline")
	}
}

func TestNewRedisNeedsAddress(t *testing.T) {
	if _, err := store.NewRedis(store.RedisOptions{}); err == nil {
		t.Fatal("NewRedis without address succeeded")
	}
}
