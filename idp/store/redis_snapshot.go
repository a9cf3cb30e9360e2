package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/push"
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

// master is one master of the deployment and the slot ranges it serves
// (none but a Cluster's).
type master struct {
	c      *redis.Client
	ranges [][2]int64
}

// masters returns every master: the one server (standalone, or
// Sentinel's current master), or each master of the Cluster as the
// cluster's own slot table names them. For a Cluster, layout is that
// table as text, so that a caller can tell whether it changed.
func (r *Redis) masters(ctx context.Context) (nodes []master, layout string, err error) {
	switch c := r.c.(type) {
	case *redis.Client:
		return []master{{c: c}}, "", nil
	case *redis.ClusterClient:
		layout, ranges, err := clusterLayout(ctx, c)
		if err != nil {
			return nil, "", err
		}
		for _, a := range slices.Sorted(maps.Keys(ranges)) {
			n, err := masterByAddr(ctx, c, a)
			if err != nil {
				// The client's view lags the cluster's: learn it once.
				c.ReloadState(ctx)
				if n, err = masterByAddr(ctx, c, a); err != nil {
					return nil, "", err
				}
			}
			nodes = append(nodes, master{c: n, ranges: ranges[a]})
		}
		return nodes, layout, nil
	}
	return nil, "", fmt.Errorf("store: no snapshot for %T", r.c)
}

// clusterLayout reads CLUSTER SLOTS: the slot ranges of each master, and
// the whole table as text.
func clusterLayout(ctx context.Context, c *redis.ClusterClient) (string, map[string][][2]int64, error) {
	slots, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		return "", nil, err
	}
	slices.SortFunc(slots, func(a, b redis.ClusterSlot) int { return a.Start - b.Start })
	var b strings.Builder
	ranges := map[string][][2]int64{}
	for _, s := range slots {
		if len(s.Nodes) == 0 {
			return "", nil, fmt.Errorf("store: cluster slots %d-%d have no master", s.Start, s.End)
		}
		a := s.Nodes[0].Addr
		fmt.Fprintf(&b, "%d-%d=%s;", s.Start, s.End, a)
		ranges[a] = append(ranges[a], [2]int64{int64(s.Start), int64(s.End)})
	}
	return b.String(), ranges, nil
}

// Scan runs SCAN on every master.
func (r *Redis) Scan(ctx context.Context, prefix string, fn func(key string) error) error {
	nodes, _, err := r.masters(ctx)
	if err != nil {
		return err
	}
	match := matchPrefix(r.prefix + prefix)
	for _, n := range nodes {
		it := n.c.Scan(ctx, 0, match, scanBatch).Iterator()
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

// Snapshot reads each master on a connection of its own that Redis
// tells of every write under the prefix (CLIENT TRACKING in broadcast
// mode, RESP3 pushes):
//
//  1. on every master, tracking is turned on before anything is read;
//  2. each master is scanned, and its keys without TTL (PTTL -1) are
//     read in pipelines, fn getting each record as it is read;
//  3. on each master a probe key is written from another connection and
//     a PING sent on the reading one: Redis sends a write's notice before
//     answering any later command, so once the PING's answer is in, every
//     write made before it has been told, the probe's included (if the
//     probe's is missing, notices are not flowing and the snapshot fails
//     rather than vouch for anything);
//  4. a notice for a record that was read, or for a key that is now
//     durable, is a change: ErrSnapshotChanged.
//
// No durable record under the prefix was written on any master between
// the first step and the last PING, so every record read held its value
// over one common interval: the snapshot is the store at that instant.
// (A record created and deleted again during the snapshot may be missing
// from it: it was never there while the others held still.) Ephemeral
// records are written all the time and are ignored. In a Cluster a moving
// slot or a failover shows as a redirect, a dead connection or a changed
// slot table, each of which ends the snapshot as changed or failed.
//
// Redis keeps nothing per key for broadcast tracking, and each batch of
// reads is one pipeline, so neither memory nor writers suffer from it.
// It needs Redis 6 or later (RESP3).
func (r *Redis) Snapshot(ctx context.Context, prefix string, fn func(Record) error) error {
	nodes, layout, err := r.masters(ctx)
	if err != nil {
		return err
	}
	sessions := make([]*snapSession, 0, len(nodes))
	defer func() {
		for _, s := range sessions {
			// The session's own client: its connection, tracking on, goes
			// with it.
			s.conn.Close()
			s.client.Close()
		}
	}()
	for _, n := range nodes {
		s, err := r.track(ctx, n, r.prefix+prefix)
		if s != nil {
			sessions = append(sessions, s)
		}
		if err != nil {
			return err
		}
	}
	for _, s := range sessions {
		if err := s.read(ctx, fn); err != nil {
			return r.snapshotErr(ctx, err)
		}
	}
	for _, s := range sessions {
		if err := s.settle(ctx); err != nil {
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
	node    master
	client  *redis.Client
	conn    *redis.Conn
	prefix  string // the prefixed prefix tracked and scanned
	notices *notices
	durable map[string]struct{} // the prefixed keys read
}

// notices collects the keys Redis says were written.
type notices struct {
	mu    sync.Mutex
	keys  map[string]struct{}
	flush bool // FLUSHDB or FLUSHALL: every key
}

func (n *notices) HandlePushNotification(_ context.Context, _ push.NotificationHandlerContext, msg []any) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(msg) < 2 || msg[1] == nil {
		n.flush = true
		return nil
	}
	keys, ok := msg[1].([]any)
	if !ok {
		n.flush = true
		return nil
	}
	for _, k := range keys {
		if s, ok := k.(string); ok {
			n.keys[s] = struct{}{}
		}
	}
	return nil
}

func (n *notices) take() (map[string]struct{}, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	keys, flush := n.keys, n.flush
	n.keys = map[string]struct{}{}
	return keys, flush
}

// track opens the session of a master: a connection speaking RESP3 that
// is told of every write under prefix, its own included.
func (r *Redis) track(ctx context.Context, n master, prefix string) (*snapSession, error) {
	// A client of its own, for a processor of push messages of its own:
	// a client's connections share one, and the store's must not route
	// notices to a snapshot (or to two at once).
	o := *n.c.Options()
	o.PushNotificationProcessor = redis.NewPushNotificationProcessor()
	o.Protocol, o.PoolSize, o.MinIdleConns = 3, 1, 0
	c := redis.NewClient(&o)
	s := &snapSession{r: r, node: n, client: c, conn: c.Conn(), prefix: prefix,
		notices: &notices{keys: map[string]struct{}{}}, durable: map[string]struct{}{}}
	if err := s.conn.RegisterPushNotificationHandler("invalidate", s.notices, true); err != nil {
		return s, err
	}
	hello, err := s.conn.Do(ctx, "hello", "3").Result()
	if err != nil {
		return s, fmt.Errorf("store: a snapshot needs Redis 6 or later (RESP3): %w", err)
	}
	if m, ok := hello.(map[any]any); !ok || fmt.Sprint(m["proto"]) != "3" {
		return s, errors.New("store: a snapshot needs RESP3, which the connection does not speak")
	}
	args := []any{"client", "tracking", "on", "bcast"}
	if prefix != "" {
		args = append(args, "prefix", prefix)
	}
	if err := s.conn.Do(ctx, args...).Err(); err != nil {
		return s, fmt.Errorf("store: CLIENT TRACKING: %w", err)
	}
	return s, nil
}

func (s *snapSession) read(ctx context.Context, fn func(Record) error) error {
	match := matchPrefix(s.prefix)
	var cursor uint64
	for {
		keys, next, err := s.conn.Scan(ctx, cursor, match, scanBatch).Result()
		if err != nil {
			return err
		}
		var fresh []string
		for _, k := range keys {
			if _, seen := s.durable[k]; !seen {
				fresh = append(fresh, k)
			}
		}
		slices.Sort(fresh)
		fresh = slices.Compact(fresh)
		durable, err := s.durableKinds(ctx, fresh)
		if err != nil {
			return err
		}
		recs, err := s.readRecords(ctx, durable)
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

// readRecords reads keys in one pipeline. A key that is not what it was
// a moment ago is a change; its notice would say so too.
func (s *snapSession) readRecords(ctx context.Context, keys []typed) ([]Record, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	vals := make([]redis.Cmder, len(keys))
	cmds, _ := s.conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
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
	for _, c := range cmds {
		if err := c.Err(); errors.Is(err, redis.Nil) || isWrongType(err) {
			return nil, ErrSnapshotChanged
		} else if err != nil {
			return nil, err
		}
	}
	out := make([]Record, 0, len(keys))
	for i, k := range keys {
		s.durable[k.key] = struct{}{}
		rec := Record{Key: strings.TrimPrefix(k.key, s.r.prefix)}
		switch v := vals[i].(type) {
		case *redis.StringCmd:
			b, _ := v.Bytes()
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
				if msgs, err = s.conn.XRangeN(ctx, k.key, "("+msgs[len(msgs)-1].ID, "+", scanBatch).Result(); err != nil {
					return nil, err
				}
			}
		}
		out = append(out, rec)
	}
	return out, nil
}

func isWrongType(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "WRONGTYPE")
}

// streamEntry converts an entry StreamAdd made: one field, "v".
func streamEntry(m redis.XMessage, key string) (StreamEntry, error) {
	v, ok := m.Values["v"].(string)
	if !ok || len(m.Values) != 1 {
		return StreamEntry{}, fmt.Errorf("store: a stream entry of family %q not written by StreamAdd", Family(key))
	}
	return StreamEntry{ID: m.ID, Value: []byte(v)}, nil
}

// probeTTL bounds the life of a probe key should the snapshot not get to
// delete it.
const probeTTL = 10 * time.Second

// settle proves that notices arrive, waits for every notice of a write
// made before now, and judges them.
func (s *snapSession) settle(ctx context.Context) error {
	probe, err := s.probeKey(ctx)
	if err != nil {
		return err
	}
	// Another connection writes it: a client is not told of its own
	// reads' keys being written by itself only when it asks for NOLOOP,
	// and the point is to see a write from elsewhere arrive.
	if err := s.node.c.Set(ctx, probe, "1", probeTTL).Err(); err != nil {
		return fmt.Errorf("store: snapshot probe: %w", err)
	}
	defer s.node.c.Del(context.WithoutCancel(ctx), probe)
	if err := s.conn.Ping(ctx).Err(); err != nil {
		return err
	}
	keys, flush := s.notices.take()
	if _, ok := keys[probe]; !ok {
		return errors.New("store: Redis did not report a write during the snapshot (tracking notices are not arriving): the snapshot cannot be trusted")
	}
	delete(keys, probe)
	if flush {
		return ErrSnapshotChanged
	}
	var others []string
	for k := range keys {
		if _, read := s.durable[k]; read {
			return ErrSnapshotChanged
		}
		others = append(others, k)
	}
	// A key not read: a change if it is durable now (created, or given
	// its TTL away, during the snapshot). Ephemeral ones are the traffic
	// of every login.
	for batch := range slices.Chunk(others, scanBatch) {
		ttls := make([]*redis.DurationCmd, len(batch))
		if _, err := s.conn.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range batch {
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
	return nil
}

// probeKey names a key under the tracked prefix that this master serves.
func (s *snapSession) probeKey(ctx context.Context) (string, error) {
	var tag [8]byte
	_, _ = rand.Read(tag[:])
	base := s.prefix + "snapshot-probe:" + hex.EncodeToString(tag[:])
	if s.node.ranges == nil {
		return base, nil
	}
	// A hash tag that falls in one of the master's slots: with three
	// masters, one try in three does.
	for first := 0; first < 16384; first += 64 {
		slots := make([]*redis.IntCmd, 64)
		if _, err := s.conn.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range slots {
				slots[i] = p.ClusterKeySlot(ctx, fmt.Sprintf("%s{%d}", base, first+i))
			}
			return nil
		}); err != nil {
			return "", err
		}
		for i, c := range slots {
			for _, r := range s.node.ranges {
				if slot := c.Val(); r[0] <= slot && slot <= r[1] {
					return fmt.Sprintf("%s{%d}", base, first+i), nil
				}
			}
		}
	}
	return "", errors.New("store: no probe key for a master that serves no slot")
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
