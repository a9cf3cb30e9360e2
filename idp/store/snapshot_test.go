package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

// What Redis's snapshot must notice: any write to a durable record it has
// read, and a durable record that appears before it ends. Unrelated
// traffic (ephemeral records, other prefixes) must not disturb it.
func TestRedisSnapshotSeesWrites(t *testing.T) {
	addr := storetest.StartRedis(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		write   func(kv, other store.KV) error
		changed bool
	}{
		{"value overwritten", func(kv, _ store.KV) error { return kv.Set(ctx, "s:value", []byte("2"), 0) }, true},
		{"value overwritten with itself", func(kv, _ store.KV) error { return kv.Set(ctx, "s:value", []byte("1"), 0) }, true},
		{"record deleted", func(kv, _ store.KV) error { return kv.Delete(ctx, "s:value") }, true},
		{"member added", func(kv, _ store.KV) error { return kv.SetAdd(ctx, "s:set", 0, "new") }, true},
		{"member removed", func(kv, _ store.KV) error { return kv.SetRemove(ctx, "s:set", "a") }, true},
		{"log appended", func(kv, _ store.KV) error { _, err := kv.StreamAdd(ctx, "s:log", []byte("e2")); return err }, true},
		{"durable record created", func(kv, _ store.KV) error { return kv.Set(ctx, "s:new", []byte("n"), 0) }, true},
		{"durable record given a TTL", func(kv, _ store.KV) error { return kv.Set(ctx, "s:value", []byte("1"), time.Hour) }, true},
		{"ephemeral record written", func(kv, _ store.KV) error { return kv.Set(ctx, "s:session", []byte("x"), time.Minute) }, false},
		{"another prefix written", func(_, other store.KV) error { return other.Set(ctx, "s:value", []byte("x"), 0) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "snap" + strings.ReplaceAll(tc.name, " ", "-") + ":"
			kv := newRedis(t, addr, prefix)
			other := newRedis(t, addr, "other-"+prefix)
			must(t, kv.Set(ctx, "s:value", []byte("1"), 0))
			must(t, kv.SetAdd(ctx, "s:set", 0, "a", "b"))
			if _, err := kv.StreamAdd(ctx, "s:log", []byte("e1")); err != nil {
				t.Fatal(err)
			}
			// A keyspace this small is scanned in one round, so every
			// record has been read by the first call of fn.
			calls := 0
			err := kv.Snapshot(ctx, "", func(store.Record) error {
				if calls++; calls == 1 {
					must(t, tc.write(kv, other))
				}
				return nil
			})
			if tc.changed && !errors.Is(err, store.ErrSnapshotChanged) {
				t.Fatalf("Snapshot = %v, want ErrSnapshotChanged", err)
			}
			if !tc.changed && err != nil {
				t.Fatalf("Snapshot = %v, want success", err)
			}
			if calls != 3 {
				t.Fatalf("fn called %d times, want 3", calls)
			}
			// The probe is gone, and nothing of the snapshot's connection
			// is left in the pool: it spoke RESP3 with tracking on.
			n := 0
			must(t, kv.Scan(ctx, "", func(k string) error {
				if strings.Contains(k, "probe") {
					t.Errorf("probe key %q left behind", k)
				}
				n++
				return nil
			}))
			for range 30 {
				must(t, kv.SetAdd(ctx, "s:eph", time.Minute, "x"))
				if _, err := kv.Get(ctx, "s:value"); err != nil && !errors.Is(err, store.ErrNotFound) {
					t.Fatal(err)
				}
			}
		})
	}
}

// Redis holds types the store never writes only if someone else wrote
// them; a backup that skipped them would be incomplete without a word.
// The error names the family, never the key: keys carry account IDs.
func TestRedisSnapshotRefusesForeignTypes(t *testing.T) {
	addr := storetest.StartRedis(t)
	ctx := context.Background()
	kv := newRedis(t, addr, "foreign:")
	must(t, kv.Set(ctx, "acct:fine", []byte("1"), 0))
	if err := kv.Client().HSet(ctx, "foreign:acct:secret-id-42", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	err := kv.Snapshot(ctx, "", func(store.Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), `"acct"`) || strings.Contains(err.Error(), "secret-id-42") {
		t.Fatalf("Snapshot over a hash = %v", err)
	}
	// An entry with fields of its own is not StreamAdd's either.
	must(t, kv.Client().Del(ctx, "foreign:acct:secret-id-42").Err())
	if err := kv.Client().XAdd(ctx, &redis.XAddArgs{Stream: "foreign:wl:log:secret-id-42", Values: []any{"a", "1", "b", "2"}}).Err(); err != nil {
		t.Fatal(err)
	}
	err = kv.Snapshot(ctx, "", func(store.Record) error { return nil })
	if err == nil || strings.Contains(err.Error(), "secret-id-42") {
		t.Fatalf("Snapshot over a foreign stream entry = %v", err)
	}
}

func newRedis(t *testing.T, addr, prefix string) *store.Redis {
	t.Helper()
	r, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
