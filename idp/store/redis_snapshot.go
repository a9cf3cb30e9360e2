package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// scanBatch is the COUNT hint of SCAN and the number of keys read per
// pipeline: large enough to amortise round trips, small enough that no
// reply holds up Redis.
const scanBatch = 1000

// matchPrefix is a SCAN MATCH pattern for keys beginning with prefix,
// its glob characters escaped.
func matchPrefix(prefix string) string {
	var b strings.Builder
	for _, c := range prefix {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	b.WriteByte('*')
	return b.String()
}

// masters returns a client for every master: the one server (standalone,
// or Sentinel's current master), or each master of the Cluster as the
// cluster's own slot table names them. For a Cluster, layout is that
// table reduced to who serves which slots, so that a caller can tell
// whether it changed.
func (r *Redis) masters(ctx context.Context) (nodes []*redis.Client, layout string, err error) {
	switch c := r.c.(type) {
	case *redis.Client:
		return []*redis.Client{c}, "", nil
	case *redis.ClusterClient:
		layout, addrs, err := clusterLayout(ctx, c)
		if err != nil {
			return nil, "", err
		}
		for _, a := range addrs {
			n, err := masterByAddr(ctx, c, a)
			if err != nil {
				// The client's view lags the cluster's: learn it once.
				c.ReloadState(ctx)
				if n, err = masterByAddr(ctx, c, a); err != nil {
					return nil, "", err
				}
			}
			nodes = append(nodes, n)
		}
		return nodes, layout, nil
	}
	return nil, "", fmt.Errorf("store: no snapshot for %T", r.c)
}

// clusterLayout reads CLUSTER SLOTS: the masters serving slots, and a
// text of the slot ranges and their masters.
func clusterLayout(ctx context.Context, c *redis.ClusterClient) (string, []string, error) {
	slots, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		return "", nil, err
	}
	slices.SortFunc(slots, func(a, b redis.ClusterSlot) int { return a.Start - b.Start })
	var b strings.Builder
	var addrs []string
	for _, s := range slots {
		if len(s.Nodes) == 0 {
			return "", nil, fmt.Errorf("store: cluster slots %d-%d have no master", s.Start, s.End)
		}
		fmt.Fprintf(&b, "%d-%d=%s;", s.Start, s.End, s.Nodes[0].Addr)
		if !slices.Contains(addrs, s.Nodes[0].Addr) {
			addrs = append(addrs, s.Nodes[0].Addr)
		}
	}
	return b.String(), addrs, nil
}

// Scan runs SCAN on every master.
func (r *Redis) Scan(ctx context.Context, prefix string, fn func(key string) error) error {
	nodes, _, err := r.masters(ctx)
	if err != nil {
		return err
	}
	match := matchPrefix(r.prefix + prefix)
	for _, n := range nodes {
		it := n.Scan(ctx, 0, match, scanBatch).Iterator()
		for it.Next(ctx) {
			if err := fn(strings.TrimPrefix(it.Val(), r.prefix)); err != nil {
				return err
			}
		}
		if err := it.Err(); err != nil {
			return err
		}
	}
	return nil
}

// Snapshot reads with Redis's optimistic locking, on one connection of
// its own per master:
//
//  1. SCAN the master's keys; keep those without TTL (PTTL -1);
//  2. WATCH each of them, then read it (and its type and TTL again);
//  3. once every master is read, SCAN again: a durable key that was not
//     there before is a change;
//  4. on each master an empty MULTI/EXEC, which Redis refuses when a
//     watched key was written, deleted or expired since its WATCH.
//
// Every WATCH precedes every EXEC, so if all EXECs pass, every record
// read held its value over one common interval, which contains the
// second scans: the snapshot is the state of the store at that instant.
// (A record created and deleted again during the snapshot may be missing
// from it: it was never there while the others held still.) In a
// Cluster a moving slot or a failover shows as a redirect, a dead
// connection or a changed slot table, each of which ends the snapshot
// as changed or failed.
//
// The cost is on the Redis side: a watched key takes about a hundred
// bytes until EXEC, and each batch of reads is a pipeline, so writers
// never wait.
func (r *Redis) Snapshot(ctx context.Context, prefix string, fn func(Record) error) error {
	nodes, layout, err := r.masters(ctx)
	if err != nil {
		return err
	}
	sessions := make([]*snapSession, 0, len(nodes))
	defer func() {
		for _, s := range sessions {
			// Ephemeral: the connection, and with it any WATCH, is
			// discarded, never returned to the pool.
			s.conn.Close()
		}
	}()
	match := matchPrefix(r.prefix + prefix)
	for _, n := range nodes {
		s := &snapSession{r: r, conn: n.EphemeralConn(), match: match, durable: map[string]struct{}{}}
		sessions = append(sessions, s)
		if err := s.read(ctx, fn); err != nil {
			return r.snapshotErr(ctx, err)
		}
	}
	for _, s := range sessions {
		if err := s.rescan(ctx); err != nil {
			return r.snapshotErr(ctx, err)
		}
	}
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		now, _, err := clusterLayout(ctx, cc)
		if err != nil {
			return err
		}
		if now != layout {
			return ErrSnapshotChanged
		}
	}
	for _, s := range sessions {
		_, err := s.conn.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Ping(ctx) // an empty transaction would not be sent at all
			return nil
		})
		if errors.Is(err, redis.TxFailedErr) {
			return ErrSnapshotChanged
		}
		if err != nil {
			return r.snapshotErr(ctx, err)
		}
	}
	return nil
}

// snapshotErr turns a redirect into a change: the slot the key was read
// from is moving, and the cluster client should learn where.
func (r *Redis) snapshotErr(ctx context.Context, err error) error {
	if kind, _ := redirect(err); kind != "" {
		if cc, ok := r.c.(*redis.ClusterClient); ok {
			cc.ReloadState(ctx)
		}
		return fmt.Errorf("%w (%s)", ErrSnapshotChanged, kind)
	}
	return err
}

// snapSession is one master's part of a snapshot.
type snapSession struct {
	r       *Redis
	conn    *redis.Conn
	match   string
	durable map[string]struct{} // the prefixed keys watched and read
}

func (s *snapSession) read(ctx context.Context, fn func(Record) error) error {
	var cursor uint64
	for {
		keys, next, err := s.conn.Scan(ctx, cursor, s.match, scanBatch).Result()
		if err != nil {
			return err
		}
		var fresh []string
		for _, k := range keys {
			if _, seen := s.durable[k]; !seen && !slices.Contains(fresh, k) {
				fresh = append(fresh, k)
			}
		}
		durable, err := s.durableKinds(ctx, fresh)
		if err != nil {
			return err
		}
		recs, err := s.watchAndRead(ctx, durable)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if err := fn(rec); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// typed is a key with its Redis type.
type typed struct {
	key, typ string
}

// durableKinds returns those of keys that have no TTL, with their type,
// refusing a type the KV contract never makes.
func (s *snapSession) durableKinds(ctx context.Context, keys []string) ([]typed, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	types := make([]*redis.StatusCmd, len(keys))
	ttls := make([]*redis.DurationCmd, len(keys))
	if _, err := s.conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			types[i] = p.Type(ctx, k)
			ttls[i] = p.PTTL(ctx, k)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var out []typed
	for i, k := range keys {
		if ttls[i].Val() != -1 { // -2: gone meanwhile; >= 0: ephemeral
			continue
		}
		switch t := types[i].Val(); t {
		case "string", "set", "stream":
			out = append(out, typed{k, t})
		case "none":
		default:
			return nil, fmt.Errorf("store: a %s record of family %q: the store never writes that type", t, Family(strings.TrimPrefix(k, s.r.prefix)))
		}
	}
	return out, nil
}

// watchAndRead watches keys and then reads them, on the session's
// connection, in one pipeline.
func (s *snapSession) watchAndRead(ctx context.Context, keys []typed) ([]Record, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	types := make([]*redis.StatusCmd, len(keys))
	ttls := make([]*redis.DurationCmd, len(keys))
	vals := make([]redis.Cmder, len(keys))
	cmds, _ := s.conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Do(ctx, "watch", k.key)
		}
		for i, k := range keys {
			types[i] = p.Type(ctx, k.key)
			ttls[i] = p.PTTL(ctx, k.key)
			switch k.typ {
			case "string":
				vals[i] = p.Get(ctx, k.key)
			case "set":
				vals[i] = p.SMembers(ctx, k.key)
			case "stream":
				vals[i] = p.XRangeN(ctx, k.key, "-", "+", scanBatch)
			}
		}
		return nil
	})
	// A missing value (redis.Nil) is a change, seen below; any other
	// failure ends the snapshot.
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
	}
	out := make([]Record, 0, len(keys))
	for i, k := range keys {
		if types[i].Val() != k.typ || ttls[i].Val() != -1 {
			// Changed between the look and the WATCH: the EXEC would pass,
			// as the change came first, but the look is stale.
			return nil, ErrSnapshotChanged
		}
		s.durable[k.key] = struct{}{}
		rec := Record{Key: strings.TrimPrefix(k.key, s.r.prefix)}
		switch v := vals[i].(type) {
		case *redis.StringCmd:
			b, err := v.Bytes()
			if err != nil {
				return nil, ErrSnapshotChanged // gone since the WATCH
			}
			rec.Kind, rec.Value = KindValue, b
		case *redis.StringSliceCmd:
			rec.Kind, rec.Members = KindSet, v.Val()
			if len(rec.Members) == 0 {
				return nil, ErrSnapshotChanged
			}
		case *redis.XMessageSliceCmd:
			rec.Kind = KindStream
			msgs := v.Val()
			for {
				for _, m := range msgs {
					e, err := streamEntry(m, rec.Key)
					if err != nil {
						return nil, err
					}
					rec.Entries = append(rec.Entries, e)
				}
				if len(msgs) < scanBatch {
					break
				}
				var err error
				// Still under the WATCH: a longer log is read in pages.
				if msgs, err = s.conn.XRangeN(ctx, k.key, "("+msgs[len(msgs)-1].ID, "+", scanBatch).Result(); err != nil {
					return nil, err
				}
			}
		}
		out = append(out, rec)
	}
	return out, nil
}

// streamEntry converts an entry StreamAdd made: one field, "v".
func streamEntry(m redis.XMessage, key string) (StreamEntry, error) {
	v, ok := m.Values["v"].(string)
	if !ok || len(m.Values) != 1 {
		return StreamEntry{}, fmt.Errorf("store: a stream entry of family %q not written by StreamAdd", Family(key))
	}
	return StreamEntry{ID: m.ID, Value: []byte(v)}, nil
}

// rescan finds a durable key that appeared after the first scan.
func (s *snapSession) rescan(ctx context.Context) error {
	var cursor uint64
	for {
		keys, next, err := s.conn.Scan(ctx, cursor, s.match, scanBatch).Result()
		if err != nil {
			return err
		}
		var fresh []string
		for _, k := range keys {
			if _, seen := s.durable[k]; !seen {
				fresh = append(fresh, k)
			}
		}
		if len(fresh) > 0 {
			ttls := make([]*redis.DurationCmd, len(fresh))
			if _, err := s.conn.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i, k := range fresh {
					ttls[i] = p.PTTL(ctx, k)
				}
				return nil
			}); err != nil {
				return err
			}
			for _, t := range ttls {
				if t.Val() == -1 {
					return ErrSnapshotChanged
				}
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// restoreTimeout bounds one Restore: the command timeout, and more for a
// record of many members or entries, which is one transaction.
func (r *Redis) restoreTimeout(rec Record) time.Duration {
	n := len(rec.Members) + len(rec.Entries)
	return r.timeout * time.Duration(1+n/10000)
}

func (r *Redis) Restore(ctx context.Context, rec Record) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.restoreTimeout(rec))
		defer cancel()
	}
	key := r.k(rec.Key)
	write := func(c redis.Cmdable) (bool, error) {
		// One key, one slot: a transaction even in a Cluster.
		_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, key)
			switch rec.Kind {
			case KindValue:
				p.Set(ctx, key, rec.Value, 0)
			case KindSet:
				for ms := range slices.Chunk(rec.Members, scanBatch) {
					args := make([]any, len(ms))
					for i, m := range ms {
						args[i] = m
					}
					p.SAdd(ctx, key, args...)
				}
			case KindStream:
				for _, e := range rec.Entries {
					p.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: e.ID, Values: []any{"v", e.Value}})
				}
			}
			return nil
		})
		return true, err
	}
	if r.waitN > 0 {
		return r.durable(ctx, rec.Key, write)
	}
	_, err := write(r.c)
	return err
}
