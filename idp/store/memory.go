package store

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Memory is the in-process backend. It is correct under concurrency and
// honours TTLs, but forgets everything on restart.
type Memory struct {
	mu     sync.Mutex
	items  map[string]memItem
	sets   map[string]memSet
	subs   map[string]map[chan []byte]struct{}
	logs   map[string][]StreamEntry
	hashes map[string]memHash
	seq    uint64
	now    func() time.Time
	writes int
}

type memItem struct {
	val []byte
	exp time.Time
}

type memSet struct {
	members map[string]struct{}
	exp     time.Time
}

// memHash is a hash of counters (HashIncr); it always has a TTL.
type memHash struct {
	fields map[string]int64
	exp    time.Time
}

// NewMemory returns an empty memory store.
func NewMemory() *Memory {
	return &Memory{
		items:  map[string]memItem{},
		sets:   map[string]memSet{},
		subs:   map[string]map[chan []byte]struct{}{},
		logs:   map[string][]StreamEntry{},
		hashes: map[string]memHash{},
		now:    time.Now,
	}
}

func (m *Memory) expiry(ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return m.now().Add(ttl)
}

func (m *Memory) live(exp time.Time) bool { return exp.IsZero() || m.now().Before(exp) }

// sweep drops expired entries every 1024 writes so that an abandoned login
// does not pin memory; callers hold mu.
func (m *Memory) sweep() {
	m.writes++
	if m.writes%1024 != 0 {
		return
	}
	for k, it := range m.items {
		if !m.live(it.exp) {
			delete(m.items, k)
		}
	}
	for k, s := range m.sets {
		if !m.live(s.exp) {
			delete(m.sets, k)
		}
	}
	for k, h := range m.hashes {
		if !m.live(h.exp) {
			delete(m.hashes, k)
		}
	}
}

func (m *Memory) hashIncr(key, field string, ttl time.Duration) int64 {
	h, ok := m.hashes[key]
	if !ok || !m.live(h.exp) {
		m.sweep()
		h = memHash{fields: map[string]int64{}, exp: m.expiry(ttl)}
		m.hashes[key] = h
	}
	h.fields[field]++
	return h.fields[field]
}

func (m *Memory) get(key string) ([]byte, bool) {
	it, ok := m.items[key]
	if !ok {
		return nil, false
	}
	if !m.live(it.exp) {
		delete(m.items, key)
		return nil, false
	}
	return it.val, true
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func (m *Memory) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.get(key)
	if !ok {
		return nil, ErrNotFound
	}
	return clone(v), nil
}

func (m *Memory) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep()
	m.items[key] = memItem{val: clone(val), exp: m.expiry(ttl)}
	return nil
}

func (m *Memory) SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.get(key); ok {
		return false, nil
	}
	m.sweep()
	m.items[key] = memItem{val: clone(val), exp: m.expiry(ttl)}
	return true, nil
}

func (m *Memory) Take(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.take(key)
	if !ok {
		return nil, ErrNotFound
	}
	return v, nil
}

func (m *Memory) take(key string) ([]byte, bool) {
	v, ok := m.get(key)
	if ok {
		delete(m.items, key)
	}
	return v, ok
}

func (m *Memory) Delete(ctx context.Context, keys ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.items, k)
		delete(m.sets, k)
		delete(m.logs, k)
		delete(m.hashes, k)
	}
	return nil
}

func (m *Memory) CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.items[key]
	if !ok || !m.live(it.exp) || !bytes.Equal(it.val, old) {
		return false, nil
	}
	m.items[key] = memItem{val: clone(new), exp: it.exp}
	return true, nil
}

func (m *Memory) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.incr(key, ttl)
}

func (m *Memory) incr(key string, ttl time.Duration) (int64, error) {
	it, ok := m.items[key]
	if !ok || !m.live(it.exp) {
		m.sweep()
		m.items[key] = memItem{val: []byte("1"), exp: m.expiry(ttl)}
		return 1, nil
	}
	n, err := strconv.ParseInt(string(it.val), 10, 64)
	if err != nil {
		return 0, err
	}
	n++
	m.items[key] = memItem{val: []byte(strconv.FormatInt(n, 10)), exp: it.exp}
	return n, nil
}

func (m *Memory) SetAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setAdd(key, ttl, members)
	return nil
}

func (m *Memory) setAdd(key string, ttl time.Duration, members []string) {
	s, ok := m.sets[key]
	if !ok || !m.live(s.exp) {
		m.sweep()
		s = memSet{members: map[string]struct{}{}}
	}
	for _, x := range members {
		s.members[x] = struct{}{}
	}
	if ttl > 0 {
		s.exp = m.expiry(ttl)
	}
	m.sets[key] = s
}

func (m *Memory) SetMembers(ctx context.Context, key string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.setMembers(key), nil
}

func (m *Memory) setMembers(key string) []string {
	s, ok := m.sets[key]
	if !ok || !m.live(s.exp) {
		return nil
	}
	out := make([]string, 0, len(s.members))
	for x := range s.members {
		out = append(out, x)
	}
	return out
}

func (m *Memory) SetRemove(ctx context.Context, key string, members ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setRemove(key, members)
	return nil
}

func (m *Memory) setRemove(key string, members []string) {
	if s, ok := m.sets[key]; ok {
		for _, x := range members {
			delete(s.members, x)
		}
	}
}

func (m *Memory) Publish(ctx context.Context, channel string, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.publish(channel, msg)
	return nil
}

func (m *Memory) publish(channel string, msg []byte) {
	for ch := range m.subs[channel] {
		select {
		case ch <- clone(msg):
		default: // a slow subscriber drops messages rather than blocking publishers
		}
	}
}

func (m *Memory) Subscribe(ctx context.Context, channel string) (<-chan []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch := make(chan []byte, 64)
	m.mu.Lock()
	if m.subs[channel] == nil {
		m.subs[channel] = map[chan []byte]struct{}{}
	}
	m.subs[channel][ch] = struct{}{}
	m.mu.Unlock()
	go func() {
		<-ctx.Done()
		m.mu.Lock()
		delete(m.subs[channel], ch)
		close(ch)
		m.mu.Unlock()
	}()
	return ch, nil
}

func (m *Memory) Ping(ctx context.Context) error { return ctx.Err() }
func (m *Memory) Close() error                   { return nil }
func (m *Memory) Durable() bool                  { return false }

func (m *Memory) StreamAdd(ctx context.Context, key string, value []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.streamAdd(key, value), nil
}

func (m *Memory) streamAdd(key string, value []byte) string {
	m.seq++
	// Same shape as Redis stream IDs (ms-seq) and ordered the same way:
	// after the stream's last entry even when that came from a Restore
	// or a clock that has since gone back.
	ms := uint64(m.now().UnixMilli())
	if log := m.logs[key]; len(log) > 0 {
		lms, lseq, _ := ParseStreamID(log[len(log)-1].ID)
		if ms <= lms {
			ms, m.seq = lms, max(m.seq, lseq+1)
		}
	}
	id := fmt.Sprintf("%d-%d", ms, m.seq)
	m.logs[key] = append(m.logs[key], StreamEntry{ID: id, Value: clone(value)})
	return id
}

func (m *Memory) StreamRange(ctx context.Context, key, after string, count int) ([]StreamEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []StreamEntry
	for _, e := range m.logs[key] {
		if after != "" && !streamIDAfter(e.ID, after) {
			continue
		}
		out = append(out, StreamEntry{ID: e.ID, Value: clone(e.Value)})
		if count > 0 && len(out) == count {
			break
		}
	}
	return out, nil
}

func (m *Memory) StreamTrim(ctx context.Context, key, minID string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if _, _, ok := ParseStreamID(minID); !ok {
		return 0, fmt.Errorf("store: stream trim: bad ID %q", minID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	log := m.logs[key]
	i := 0
	for i < len(log) && streamIDAfter(minID, log[i].ID) {
		i++
	}
	if i == 0 {
		return 0, nil
	}
	if i == len(log) {
		delete(m.logs, key)
	} else {
		m.logs[key] = append([]StreamEntry(nil), log[i:]...)
	}
	return int64(i), nil
}

// streamIDAfter compares "ms-seq" IDs numerically.
func streamIDAfter(id, after string) bool {
	a1, a2 := splitStreamID(id)
	b1, b2 := splitStreamID(after)
	return a1 > b1 || (a1 == b1 && a2 > b2)
}

func splitStreamID(id string) (uint64, uint64) {
	var ms, seq uint64
	fmt.Sscanf(id, "%d-%d", &ms, &seq)
	return ms, seq
}

// Do runs ops in order under one lock: in memory a batch is even atomic,
// which callers must not rely on (Redis does not give that).
func (m *Memory) Do(ctx context.Context, ops ...Op) ([]Result, error) {
	if err := checkBatch(ops); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Result, len(ops))
	for i, op := range ops {
		r := &out[i]
		switch op.Kind {
		case OpGet:
			if v, ok := m.get(op.Key); ok {
				r.Val = clone(v)
			} else {
				r.Err = ErrNotFound
			}
		case OpSet:
			m.sweep()
			m.items[op.Key] = memItem{val: clone(op.Val), exp: m.expiry(op.TTL)}
		case OpSetNX:
			if _, ok := m.get(op.Key); !ok {
				m.sweep()
				m.items[op.Key] = memItem{val: clone(op.Val), exp: m.expiry(op.TTL)}
				r.OK = true
			}
		case OpDelete:
			delete(m.items, op.Key)
			delete(m.sets, op.Key)
			delete(m.logs, op.Key)
			delete(m.hashes, op.Key)
		case OpIncr:
			r.N, r.Err = m.incr(op.Key, op.TTL)
		case OpTake:
			if v, ok := m.take(op.Key); ok {
				r.Val = v
			} else {
				r.Err = ErrNotFound
			}
		case OpCAS:
			if it, ok := m.items[op.Key]; ok && m.live(it.exp) && bytes.Equal(it.val, op.Old) {
				m.items[op.Key] = memItem{val: clone(op.Val), exp: m.expiry(op.TTL)}
				r.OK = true
			}
		case OpSetAdd:
			m.setAdd(op.Key, op.TTL, op.Members)
			r.N = int64(len(m.sets[op.Key].members))
		case OpSetRemove:
			m.setRemove(op.Key, op.Members)
		case OpSetMembers:
			r.Members = m.setMembers(op.Key)
		case OpPublish:
			m.publish(op.Key, op.Val)
		case OpHashIncr:
			r.N = m.hashIncr(op.Key, op.Field, op.TTL)
		case OpStreamAdd:
			r.Val = []byte(m.streamAdd(op.Key, op.Val))
		}
	}
	return out, nil
}
