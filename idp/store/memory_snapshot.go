package store

import (
	"context"
	"slices"
	"strings"
)

// Scan lists the live keys under the lock and calls fn outside it, so
// that fn may use the store.
func (m *Memory) Scan(ctx context.Context, prefix string, fn func(key string) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	var keys []string
	for k, it := range m.items {
		if strings.HasPrefix(k, prefix) && m.live(it.exp) {
			keys = append(keys, k)
		}
	}
	for k, s := range m.sets {
		if strings.HasPrefix(k, prefix) && m.live(s.exp) && len(s.members) > 0 {
			keys = append(keys, k)
		}
	}
	for k := range m.logs {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	for k, h := range m.hashes {
		if strings.HasPrefix(k, prefix) && m.live(h.exp) {
			keys = append(keys, k)
		}
	}
	m.mu.Unlock()
	slices.Sort(keys)
	for _, k := range keys {
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

// Snapshot copies the durable records under the lock, which makes them
// one instant's, and calls fn outside it: it never reports
// ErrSnapshotChanged.
func (m *Memory) Snapshot(ctx context.Context, prefix string, fn func(Record) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	var recs []Record
	for k, it := range m.items {
		if strings.HasPrefix(k, prefix) && it.exp.IsZero() {
			recs = append(recs, Record{Key: k, Kind: KindValue, Value: clone(it.val)})
		}
	}
	for k, s := range m.sets {
		if strings.HasPrefix(k, prefix) && s.exp.IsZero() && len(s.members) > 0 {
			r := Record{Key: k, Kind: KindSet}
			for x := range s.members {
				r.Members = append(r.Members, x)
			}
			recs = append(recs, r)
		}
	}
	for k, log := range m.logs {
		if strings.HasPrefix(k, prefix) {
			r := Record{Key: k, Kind: KindStream, Entries: make([]StreamEntry, len(log))}
			for i, e := range log {
				r.Entries[i] = StreamEntry{ID: e.ID, Value: clone(e.Value)}
			}
			recs = append(recs, r)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(recs, func(a, b Record) int { return strings.Compare(a.Key, b.Key) })
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (m *Memory) Restore(ctx context.Context, rec Record) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.items, rec.Key)
	delete(m.sets, rec.Key)
	delete(m.logs, rec.Key)
	switch rec.Kind {
	case KindValue:
		m.items[rec.Key] = memItem{val: clone(rec.Value)}
	case KindSet:
		s := memSet{members: make(map[string]struct{}, len(rec.Members))}
		for _, x := range rec.Members {
			s.members[x] = struct{}{}
		}
		m.sets[rec.Key] = s
	case KindStream:
		if len(rec.Entries) == 0 {
			return nil
		}
		log := make([]StreamEntry, len(rec.Entries))
		for i, e := range rec.Entries {
			log[i] = StreamEntry{ID: e.ID, Value: clone(e.Value)}
		}
		m.logs[rec.Key] = log
	}
	return nil
}
