package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

// BenchmarkBatch compares three reads sent one by one with the same three
// in one batch, on the memory store and on a loopback Redis: what a
// batch saves is the round trips.
func BenchmarkBatch(b *testing.B) {
	ctx := context.Background()
	for _, be := range []struct {
		name string
		kv   func(b *testing.B) store.KV
	}{
		{"memory", func(*testing.B) store.KV { return store.NewMemory() }},
		{"redis", func(b *testing.B) store.KV {
			r, err := store.NewRedis(store.RedisOptions{Addrs: []string{storetest.StartRedis(b)}, Prefix: "bench:"})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { r.Close() })
			return r
		}},
	} {
		kv := be.kv(b)
		keys := []string{"grant:{g}", "acct:a", "acctkey:a"}
		for _, k := range keys {
			if err := kv.Set(ctx, k, make([]byte, 600), time.Hour); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("sequential/"+be.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				for _, k := range keys {
					if _, err := kv.Get(ctx, k); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run("batch/"+be.name, func(b *testing.B) {
			b.ReportAllocs()
			ops := []store.Op{store.Get(keys[0]), store.Get(keys[1]), store.Get(keys[2])}
			for range b.N {
				res, err := kv.Do(ctx, ops...)
				if err != nil || store.FirstErr(res) != nil {
					b.Fatal(err, store.FirstErr(res))
				}
			}
		})
	}
}
