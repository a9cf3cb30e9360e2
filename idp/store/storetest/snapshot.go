package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
)

// runSnapshot is the part of the contract a backup stands on: Scan,
// Snapshot and Restore.
func runSnapshot(t *testing.T, newKV func(t *testing.T) store.KV) {
	ctx := context.Background()
	// fill writes one record of each durable kind under "b:", one
	// ephemeral of each kind, and a durable value outside the prefix.
	fill := func(t *testing.T, kv store.KV) []store.Record {
		t.Helper()
		must(t, kv.Set(ctx, "b:value", []byte("v\x00\xff"), 0))
		ok, err := kv.SetNX(ctx, "b:empty", []byte{}, 0)
		if !ok || err != nil {
			t.Fatalf("SetNX = %v, %v", ok, err)
		}
		if _, err := kv.Incr(ctx, "b:counter", 0); err != nil {
			t.Fatal(err)
		}
		must(t, kv.SetAdd(ctx, "b:set", 0, "x", "y", "z"))
		var entries []store.StreamEntry
		for _, v := range []string{"first", "second", "third"} {
			id, err := kv.StreamAdd(ctx, "b:log", []byte(v))
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, store.StreamEntry{ID: id, Value: []byte(v)})
		}
		must(t, kv.Set(ctx, "b:ephemeral", []byte("e"), time.Minute))
		must(t, kv.SetAdd(ctx, "b:ephemeral-set", time.Minute, "e"))
		must(t, kv.Set(ctx, "other", []byte("o"), 0))
		return []store.Record{
			{Key: "b:counter", Kind: store.KindValue, Value: []byte("1")},
			{Key: "b:empty", Kind: store.KindValue, Value: []byte{}},
			{Key: "b:log", Kind: store.KindStream, Entries: entries},
			{Key: "b:set", Kind: store.KindSet, Members: []string{"x", "y", "z"}},
			{Key: "b:value", Kind: store.KindValue, Value: []byte("v\x00\xff")},
		}
	}

	t.Run("Scan", func(t *testing.T) {
		kv := newKV(t)
		fill(t, kv)
		seen := map[string]bool{}
		must(t, kv.Scan(ctx, "b:", func(k string) error { seen[k] = true; return nil }))
		want := []string{"b:counter", "b:empty", "b:ephemeral", "b:ephemeral-set", "b:log", "b:set", "b:value"}
		if got := sortedKeys(seen); !slices.Equal(got, want) {
			t.Fatalf("Scan(b:) = %v, want %v", got, want)
		}
		stop := errors.New("stop")
		n := 0
		if err := kv.Scan(ctx, "", func(string) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
			t.Fatalf("Scan with a failing fn = %v after %d calls", err, n)
		}
		if err := kv.Scan(ctx, "none:", func(k string) error { return fmt.Errorf("unexpected %q", k) }); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ScanPrefixIsLiteral", func(t *testing.T) {
		kv := newKV(t)
		must(t, kv.Set(ctx, "a*b:1", []byte("1"), 0))
		must(t, kv.Set(ctx, "axb:1", []byte("2"), 0))
		var got []string
		must(t, kv.Scan(ctx, "a*b:", func(k string) error { got = append(got, k); return nil }))
		if !slices.Equal(got, []string{"a*b:1"}) {
			t.Fatalf("Scan(a*b:) = %v: the prefix was read as a pattern", got)
		}
	})
	t.Run("Snapshot", func(t *testing.T) {
		kv := newKV(t)
		want := fill(t, kv)
		got := snapshot(t, kv, "b:")
		if !EqualRecords(got, want) {
			t.Fatalf("Snapshot(b:) =\n%+v\nwant\n%+v", got, want)
		}
		if all := snapshot(t, kv, ""); len(all) != len(want)+1 || all[len(all)-1].Key != "other" {
			t.Fatalf("Snapshot() = %+v", all)
		}
		stop := errors.New("stop")
		if err := kv.Snapshot(ctx, "", func(store.Record) error { return stop }); !errors.Is(err, stop) {
			t.Fatalf("Snapshot with a failing fn = %v", err)
		}
	})
	t.Run("SnapshotLongStream", func(t *testing.T) {
		// Longer than one page of a backend's reads.
		kv := newKV(t)
		var want []store.StreamEntry
		for i := range 2500 {
			v := fmt.Appendf(nil, "%d", i)
			id, err := kv.StreamAdd(ctx, "log", v)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, store.StreamEntry{ID: id, Value: v})
		}
		got := snapshot(t, kv, "")
		if len(got) != 1 || !EqualRecords(got, []store.Record{{Key: "log", Kind: store.KindStream, Entries: want}}) {
			t.Fatalf("snapshot of a 2500-entry stream: %d records", len(got))
		}
	})
	t.Run("SnapshotIsOneInstant", func(t *testing.T) {
		// A write during the snapshot: either the backend tells, or what
		// it delivered is the state before the write (or after it), never
		// a mix.
		kv := newKV(t)
		must(t, kv.Set(ctx, "s:a", []byte("1"), 0))
		must(t, kv.Set(ctx, "s:b", []byte("1"), 0))
		before := snapshot(t, kv, "s:")
		var got []store.Record
		wrote := false
		err := kv.Snapshot(ctx, "s:", func(r store.Record) error {
			got = append(got, r)
			if !wrote {
				wrote = true
				// The contract forbids fn to write; this stands for another
				// writer at this moment.
				must(t, kv.Set(ctx, "s:a", []byte("2"), 0))
				must(t, kv.Set(ctx, "s:b", []byte("2"), 0))
			}
			return nil
		})
		after := snapshot(t, kv, "s:")
		SortRecords(got)
		switch {
		case errors.Is(err, store.ErrSnapshotChanged):
		case err != nil:
			t.Fatal(err)
		case !EqualRecords(got, before) && !EqualRecords(got, after):
			t.Fatalf("snapshot during writes = %+v: neither before %+v nor after %+v", got, before, after)
		}
	})
	t.Run("Restore", func(t *testing.T) {
		src := newKV(t)
		recs := fill(t, src)
		dst := newKV(t)
		must(t, dst.Set(ctx, "b:value", []byte("old"), time.Minute)) // replaced, TTL and all
		must(t, dst.SetAdd(ctx, "b:set", 0, "old"))
		if _, err := dst.StreamAdd(ctx, "b:log", []byte("old")); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			must(t, dst.Restore(ctx, r))
		}
		if got := snapshot(t, dst, "b:"); !EqualRecords(got, recs) {
			t.Fatalf("restored =\n%+v\nwant\n%+v", got, recs)
		}
		v, err := dst.Get(ctx, "b:value")
		if err != nil || string(v) != "v\x00\xff" {
			t.Fatalf("Get restored value = %q, %v", v, err)
		}
		// A restored counter counts on; a restored log grows after its
		// last entry.
		if n, err := dst.Incr(ctx, "b:counter", 0); n != 2 || err != nil {
			t.Fatalf("Incr restored counter = %d, %v", n, err)
		}
		id, err := dst.StreamAdd(ctx, "b:log", []byte("fourth"))
		if err != nil {
			t.Fatal(err)
		}
		log, _ := dst.StreamRange(ctx, "b:log", "", 0)
		if len(log) != 4 || log[3].ID != id || log[2].ID != recs[2].Entries[2].ID {
			t.Fatalf("log after a StreamAdd = %+v", log)
		}
	})
	t.Run("RestoreStreamWithOldAndFutureIDs", func(t *testing.T) {
		kv := newKV(t)
		future := fmt.Sprintf("%d-7", time.Now().Add(24*time.Hour).UnixMilli())
		must(t, kv.Restore(ctx, store.Record{Key: "log", Kind: store.KindStream, Entries: []store.StreamEntry{
			{ID: "1-0", Value: []byte("a")}, {ID: "1-1", Value: []byte("b")}, {ID: future, Value: []byte("c")}}}))
		id, err := kv.StreamAdd(ctx, "log", []byte("d"))
		if err != nil {
			t.Fatal(err)
		}
		all, _ := kv.StreamRange(ctx, "log", "", 0)
		if len(all) != 4 || all[3].ID != id {
			t.Fatalf("after restore and add: %+v", all)
		}
		after, _ := kv.StreamRange(ctx, "log", future, 0)
		if len(after) != 1 || string(after[0].Value) != "d" {
			t.Fatalf("an ID after a restored future ID: %+v", all)
		}
		// An empty log leaves no key.
		must(t, kv.Restore(ctx, store.Record{Key: "log", Kind: store.KindStream}))
		if got := snapshot(t, kv, ""); len(got) != 0 {
			t.Fatalf("after restoring an empty log: %+v", got)
		}
	})
	t.Run("RestoreRefusesBadRecords", func(t *testing.T) {
		kv := newKV(t)
		must(t, kv.Restore(ctx, store.Record{Key: "log", Kind: store.KindStream, Entries: []store.StreamEntry{{ID: "5-5", Value: []byte("keep")}}}))
		must(t, kv.Set(ctx, "v", []byte("keep"), 0))
		for name, r := range map[string]store.Record{
			"no key":          {Kind: store.KindValue, Value: []byte("x")},
			"no kind":         {Key: "v", Value: []byte("x")},
			"unknown kind":    {Key: "v", Kind: 9},
			"value with set":  {Key: "v", Kind: store.KindValue, Value: []byte("x"), Members: []string{"m"}},
			"empty set":       {Key: "v", Kind: store.KindSet},
			"set with value":  {Key: "v", Kind: store.KindSet, Members: []string{"m"}, Value: []byte("x")},
			"IDs decreasing":  {Key: "log", Kind: store.KindStream, Entries: []store.StreamEntry{{ID: "2-0"}, {ID: "1-0"}}},
			"IDs repeated":    {Key: "log", Kind: store.KindStream, Entries: []store.StreamEntry{{ID: "2-0"}, {ID: "2-0"}}},
			"ID 0-0":          {Key: "log", Kind: store.KindStream, Entries: []store.StreamEntry{{ID: "0-0"}}},
			"ID malformed":    {Key: "log", Kind: store.KindStream, Entries: []store.StreamEntry{{ID: "1-0"}, {ID: "x"}}},
			"ID signed":       {Key: "log", Kind: store.KindStream, Entries: []store.StreamEntry{{ID: "+1-0"}}},
			"stream with set": {Key: "log", Kind: store.KindStream, Members: []string{"m"}},
		} {
			if err := kv.Restore(ctx, r); err == nil {
				t.Errorf("%s: Restore accepted %+v", name, r)
			}
		}
		want := []store.Record{
			{Key: "log", Kind: store.KindStream, Entries: []store.StreamEntry{{ID: "5-5", Value: []byte("keep")}}},
			{Key: "v", Kind: store.KindValue, Value: []byte("keep")},
		}
		if got := snapshot(t, kv, ""); !EqualRecords(got, want) {
			t.Fatalf("refused records changed the store: %+v", got)
		}
	})
	t.Run("DeleteRemovesLogs", func(t *testing.T) {
		kv := newKV(t)
		if _, err := kv.StreamAdd(ctx, "log", []byte("x")); err != nil {
			t.Fatal(err)
		}
		must(t, kv.Delete(ctx, "log"))
		if got, _ := kv.StreamRange(ctx, "log", "", 0); len(got) != 0 {
			t.Fatalf("a deleted log still has %+v", got)
		}
	})
}

// snapshot returns kv's durable records under prefix, sorted by key,
// set members sorted.
func snapshot(t *testing.T, kv store.KV, prefix string) []store.Record {
	t.Helper()
	var out []store.Record
	for attempt := 0; ; attempt++ {
		out = out[:0]
		err := kv.Snapshot(context.Background(), prefix, func(r store.Record) error {
			out = append(out, r)
			return nil
		})
		if errors.Is(err, store.ErrSnapshotChanged) && attempt < 5 {
			continue
		}
		if err != nil {
			t.Fatalf("Snapshot(%q): %v", prefix, err)
		}
		break
	}
	SortRecords(out)
	return out
}

// EqualRecords compares two lists of records in order, an empty value,
// member list or entry list equal to a missing one, set members in order
// (SortRecords sorts them).
func EqualRecords(a, b []store.Record) bool {
	return slices.EqualFunc(a, b, func(x, y store.Record) bool {
		return x.Key == y.Key && x.Kind == y.Kind && bytes.Equal(x.Value, y.Value) && slices.Equal(x.Members, y.Members) &&
			slices.EqualFunc(x.Entries, y.Entries, func(e, f store.StreamEntry) bool { return e.ID == f.ID && bytes.Equal(e.Value, f.Value) })
	})
}

// SortRecords orders records by key and each set's members, so that two
// snapshots compare with EqualRecords.
func SortRecords(rs []store.Record) {
	for i := range rs {
		sort.Strings(rs[i].Members)
	}
	slices.SortFunc(rs, func(a, b store.Record) int { return strings.Compare(a.Key, b.Key) })
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
