package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions select and tune the Redis deployment. One address is
// standalone; several are a Cluster seed list; MasterName selects Sentinel.
type RedisOptions struct {
	Addrs      []string
	MasterName string
	Username   string
	Password   string
	DB         int
	TLS        *tls.Config
	// Prefix namespaces every key and channel so that several deployments
	// can share one Redis.
	Prefix string
	// Timeout bounds each command when the caller's context has no
	// earlier deadline. Default 2s.
	Timeout time.Duration
	// Logger receives go-redis's own messages (SetRedisLogger); nil
	// leaves the library's logger as it is.
	Logger *slog.Logger
	// WaitReplicas is how many replicas must acknowledge a durable write
	// (a record written without TTL, a durable record changed or deleted,
	// an audit log entry) before it is reported done: Redis WAIT on the
	// connection that wrote. 0 chooses by topology: 1 with Sentinel or
	// Cluster (whose point is a replica to fail over to), none for a
	// standalone server. Negative: never wait.
	WaitReplicas int
	// WaitTimeout bounds that wait (default 500ms, or half of Timeout
	// when that is shorter). It must stay below Timeout.
	WaitTimeout time.Duration
}

// ErrNotReplicated reports a durable write that the master applied but
// fewer replicas than RedisOptions.WaitReplicas acknowledged in time: it
// may or may not survive a failover, so callers treat it as a temporary
// failure and the resident retries.
var ErrNotReplicated = errors.New("store: durable write not acknowledged by enough replicas")

// Redis is the production backend.
type Redis struct {
	c       redis.UniversalClient
	prefix  string
	timeout time.Duration
	waitN   int
	waitT   time.Duration
}

// NewRedis connects lazily; call Ping to check reachability.
func NewRedis(o RedisOptions) (*Redis, error) {
	if len(o.Addrs) == 0 {
		return nil, errors.New("store: redis needs at least one address")
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	SetRedisLogger(o.Logger)
	if o.Timeout < 0 || o.WaitTimeout < 0 {
		return nil, errors.New("store: redis timeouts must not be negative")
	}
	if o.WaitTimeout == 0 {
		// The wait and the write share the command's deadline.
		o.WaitTimeout = min(500*time.Millisecond, o.Timeout/2)
	}
	if o.WaitReplicas == 0 && (o.MasterName != "" || len(o.Addrs) > 1) {
		o.WaitReplicas = 1
	}
	if o.WaitReplicas < 0 {
		o.WaitReplicas = 0
	}
	if o.WaitReplicas > 0 && o.WaitTimeout >= o.Timeout {
		return nil, fmt.Errorf("store: redis wait timeout %v must be below the command timeout %v", o.WaitTimeout, o.Timeout)
	}
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:      o.Addrs,
		MasterName: o.MasterName,
		Username:   o.Username,
		Password:   o.Password,
		DB:         o.DB,
		TLSConfig:  o.TLS,
		// Without this go-redis ignores context deadlines.
		ContextTimeoutEnabled: true,
		ReadTimeout:           o.Timeout,
		WriteTimeout:          o.Timeout,
		DialTimeout:           o.Timeout,
	})
	return &Redis{c: c, prefix: o.Prefix, timeout: o.Timeout, waitN: o.WaitReplicas, waitT: o.WaitTimeout}, nil
}

// WaitReplicas is the number of replicas each durable write waits for
// (0: none).
func (r *Redis) WaitReplicas() int { return r.waitN }

// Client exposes the underlying client for operators' tooling and tests.
func (r *Redis) Client() redis.UniversalClient { return r.c }

func (r *Redis) k(key string) string { return r.prefix + key }

func (r *Redis) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, r.timeout)
}

func notFound(err error) error {
	if errors.Is(err, redis.Nil) {
		return ErrNotFound
	}
	return err
}

func (r *Redis) Get(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	v, err := r.c.Get(ctx, r.k(key)).Bytes()
	return v, notFound(err)
}

func (r *Redis) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	if ttl == 0 && r.waitN > 0 {
		return r.durable(ctx, key, func(c redis.Cmdable) (bool, error) {
			return true, c.Set(ctx, r.k(key), val, 0).Err()
		})
	}
	return r.c.Set(ctx, r.k(key), val, ttl).Err()
}

func (r *Redis) SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	setNX := func(c redis.Cmdable) (bool, error) {
		res, err := c.SetArgs(ctx, r.k(key), val, redis.SetArgs{Mode: "NX", TTL: ttl}).Result()
		if errors.Is(err, redis.Nil) {
			return false, nil
		}
		return err == nil && res == "OK", err
	}
	if ttl == 0 && r.waitN > 0 {
		var wrote bool
		err := r.durable(ctx, key, func(c redis.Cmdable) (bool, error) {
			var err error
			wrote, err = setNX(c)
			return wrote, err
		})
		return wrote && err == nil, err
	}
	return setNX(r.c)
}

func (r *Redis) Take(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	v, err := r.c.GetDel(ctx, r.k(key)).Bytes()
	return v, notFound(err)
}

func (r *Redis) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	if r.waitN > 0 {
		// A deleted consent or link that a failover brings back is a
		// revocation undone, so deleting a durable record waits too.
		for _, k := range keys {
			if err := r.durable(ctx, k, func(c redis.Cmdable) (bool, error) {
				ttl, err := delScript.Run(ctx, c, []string{r.k(k)}).Int64()
				return ttl == -1, err
			}); err != nil {
				return err
			}
		}
		return nil
	}
	// One DEL per key: in Cluster the keys may live on different slots.
	pipe := r.c.Pipeline()
	for _, k := range keys {
		pipe.Del(ctx, r.k(k))
	}
	_, err := pipe.Exec(ctx)
	return err
}

// delScript deletes a key and returns its PTTL from before (-1: it was
// durable, -2: it did not exist), so that only durable deletions wait.
var delScript = redis.NewScript(`
local t = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
return t`)

// casScript returns 0 when nothing was swapped, 1 when a record with a
// TTL was, 2 when a durable one was.
var casScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local t = redis.call('PTTL', KEYS[1])
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  if t == -1 then return 2 end
  return 1
end
return 0`)

func (r *Redis) CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	if r.waitN > 0 {
		var n int
		err := r.durable(ctx, key, func(c redis.Cmdable) (bool, error) {
			var err error
			n, err = casScript.Run(ctx, c, []string{r.k(key)}, old, new).Int()
			return n == 2, err
		})
		return n > 0 && err == nil, err
	}
	n, err := casScript.Run(ctx, r.c, []string{r.k(key)}, old, new).Int()
	return n > 0, err
}

var incrScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 and tonumber(ARGV[1]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n`)

func (r *Redis) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	return incrScript.Run(ctx, r.c, []string{r.k(key)}, ttl.Milliseconds()).Int64()
}

func (r *Redis) SetAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error {
	if len(members) == 0 {
		return nil
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	args := make([]any, len(members))
	for i, m := range members {
		args[i] = m
	}
	if ttl <= 0 && r.waitN > 0 {
		return r.durable(ctx, key, func(c redis.Cmdable) (bool, error) {
			return true, c.SAdd(ctx, r.k(key), args...).Err()
		})
	}
	pipe := r.c.TxPipeline()
	pipe.SAdd(ctx, r.k(key), args...)
	if ttl > 0 {
		pipe.PExpire(ctx, r.k(key), ttl)
	}
	_, err := pipe.Exec(ctx)
	return err
}

func (r *Redis) SetMembers(ctx context.Context, key string) ([]string, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	return r.c.SMembers(ctx, r.k(key)).Result()
}

func (r *Redis) SetRemove(ctx context.Context, key string, members ...string) error {
	if len(members) == 0 {
		return nil
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	args := make([]any, len(members))
	for i, m := range members {
		args[i] = m
	}
	if r.waitN > 0 {
		return r.durable(ctx, key, func(c redis.Cmdable) (bool, error) {
			ttl, err := sremScript.Run(ctx, c, []string{r.k(key)}, args...).Int64()
			return ttl == -1, err
		})
	}
	return r.c.SRem(ctx, r.k(key), args...).Err()
}

// sremScript removes members and returns the set's PTTL (-1: durable).
var sremScript = redis.NewScript(`
local t = redis.call('PTTL', KEYS[1])
redis.call('SREM', KEYS[1], unpack(ARGV))
return t`)

func (r *Redis) Publish(ctx context.Context, channel string, msg []byte) error {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	return r.c.Publish(ctx, r.k(channel), msg).Err()
}

func (r *Redis) Subscribe(ctx context.Context, channel string) (<-chan []byte, error) {
	ps := r.c.Subscribe(ctx, r.k(channel))
	// Wait for the subscription to be confirmed so that messages published
	// after Subscribe returns are delivered.
	rctx, cancel := r.ctx(ctx)
	_, err := ps.Receive(rctx)
	cancel()
	if err != nil {
		ps.Close()
		return nil, fmt.Errorf("store: subscribe %s: %w", channel, err)
	}
	out := make(chan []byte, 64)
	go func() {
		defer close(out)
		defer ps.Close()
		in := ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- []byte(m.Payload):
				default:
				}
			}
		}
	}()
	return out, nil
}

func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	return r.c.Ping(ctx).Err()
}

func (r *Redis) Close() error  { return r.c.Close() }
func (r *Redis) Durable() bool { return true }

func (r *Redis) StreamAdd(ctx context.Context, key string, value []byte) (string, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	args := &redis.XAddArgs{Stream: r.k(key), Values: []any{"v", value}}
	if r.waitN > 0 {
		// Streams are append-only logs (the registry's audit log): durable.
		var id string
		err := r.durable(ctx, key, func(c redis.Cmdable) (bool, error) {
			var err error
			id, err = c.XAdd(ctx, args).Result()
			return true, err
		})
		return id, err
	}
	return r.c.XAdd(ctx, args).Result()
}

func (r *Redis) StreamRange(ctx context.Context, key, after string, count int) ([]StreamEntry, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	start := "-"
	if after != "" {
		start = "(" + after
	}
	var msgs []redis.XMessage
	var err error
	if count > 0 {
		msgs, err = r.c.XRangeN(ctx, r.k(key), start, "+", int64(count)).Result()
	} else {
		msgs, err = r.c.XRange(ctx, r.k(key), start, "+").Result()
	}
	if err != nil {
		return nil, err
	}
	out := make([]StreamEntry, 0, len(msgs))
	for _, m := range msgs {
		v, _ := m.Values["v"].(string)
		out = append(out, StreamEntry{ID: m.ID, Value: []byte(v)})
	}
	return out, nil
}

// Do sends the batch as one pipeline (not MULTI: in Cluster its keys may
// live on several nodes, and go-redis splits the pipeline by node). A
// counter is created by SET NX with its TTL and then INCRed, so that no
// script needs to be loaded inside a pipeline.
func (r *Redis) Do(ctx context.Context, ops ...Op) ([]Result, error) {
	if err := checkBatch(ops); err != nil {
		return nil, err
	}
	if len(ops) == 0 {
		return nil, nil
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	pipe := r.c.Pipeline()
	cmds := make([]redis.Cmder, len(ops))
	cards := map[int]*redis.IntCmd{} // a SetAdd's size after the add
	var later []int                  // stream appends that wait for replicas, after the pipeline
	for i, op := range ops {
		k := r.k(op.Key)
		switch op.Kind {
		case OpStreamAdd:
			if r.waitN > 0 {
				later = append(later, i)
				continue
			}
			cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: k, Values: []any{"v", op.Val}})
		case OpGet:
			cmds[i] = pipe.Get(ctx, k)
		case OpSet:
			cmds[i] = pipe.Set(ctx, k, op.Val, op.TTL)
		case OpSetNX:
			cmds[i] = pipe.SetArgs(ctx, k, op.Val, redis.SetArgs{Mode: "NX", TTL: op.TTL})
		case OpDelete:
			cmds[i] = pipe.Del(ctx, k)
		case OpIncr:
			pipe.SetArgs(ctx, k, 0, redis.SetArgs{Mode: "NX", TTL: op.TTL})
			cmds[i] = pipe.Incr(ctx, k)
		case OpTake:
			cmds[i] = pipe.GetDel(ctx, k)
		case OpCAS:
			// EVAL, not EVALSHA: a pipeline cannot fall back when the
			// script cache was flushed; the body is short.
			cmds[i] = pipe.Eval(ctx, casTTLScript, []string{k}, op.Old, op.Val, op.TTL.Milliseconds())
		case OpSetAdd:
			cmds[i] = pipe.SAdd(ctx, k, members(op.Members)...)
			pipe.PExpire(ctx, k, op.TTL)
			cards[i] = pipe.SCard(ctx, k)
		case OpSetRemove:
			cmds[i] = pipe.SRem(ctx, k, members(op.Members)...)
		case OpSetMembers:
			cmds[i] = pipe.SMembers(ctx, k)
		case OpPublish:
			cmds[i] = pipe.Publish(ctx, k, op.Val)
		case OpHashIncr:
			cmds[i] = pipe.Eval(ctx, hashIncrScript, []string{k}, op.Field, op.TTL.Milliseconds())
		}
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) && allFailed(cmds) {
			return nil, err
		}
	}
	out := make([]Result, len(ops))
	for _, i := range later {
		id, err := r.StreamAdd(ctx, ops[i].Key, ops[i].Val)
		out[i] = Result{Val: []byte(id), Err: err}
	}
	for i, c := range cmds {
		res := &out[i]
		switch c := c.(type) {
		case nil: // sent after the pipeline
		case *redis.StringCmd:
			res.Val, res.Err = c.Bytes()
			res.Err = notFound(res.Err)
		case *redis.StatusCmd:
			if errors.Is(c.Err(), redis.Nil) {
				break // SET NX that did not write
			}
			res.Err = c.Err()
			res.OK = res.Err == nil && c.Val() == "OK"
		case *redis.IntCmd:
			res.N, res.Err = c.Result()
			if card, ok := cards[i]; ok && res.Err == nil {
				res.N, res.Err = card.Result()
			}
		case *redis.StringSliceCmd:
			res.Members, res.Err = c.Result()
		case *redis.Cmd:
			n, err := c.Int64()
			if ops[i].Kind == OpHashIncr {
				res.N, res.Err = n, err
			} else { // a CAS script: 1 when it swapped
				res.OK, res.Err = n == 1, err
			}
		}
	}
	return out, nil
}

// casTTLScript is the batch's CAS: swap and set the TTL (ms) when the
// key holds ARGV[1].
const casTTLScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`

// hashIncrScript is the batch's HashIncr: the increment and, for a new
// hash, its TTL (ms) in one step, so that no hash is ever seen without
// one.
const hashIncrScript = `
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return n`

func members(ms []string) []any {
	out := make([]any, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

// allFailed reports whether no command of a pipeline got an answer: the
// connection failed, and the batch as a whole with it.
func allFailed(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if c != nil && (c.Err() == nil || errors.Is(c.Err(), redis.Nil)) {
			return false
		}
	}
	return true
}

func (r *Redis) StreamTrim(ctx context.Context, key, minID string) (int64, error) {
	if _, _, ok := ParseStreamID(minID); !ok {
		return 0, fmt.Errorf("store: stream trim: bad ID %q", minID)
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	trim := func(c redis.Cmdable) (int64, error) {
		// Exact trimming (no "~"): what the caller keeps is what it reads.
		return c.XTrimMinID(ctx, r.k(key), minID).Result()
	}
	if r.waitN > 0 {
		// A trimmed entry that a failover brings back is read twice;
		// harmless for an at-least-once log, but trims are rare, so wait.
		var n int64
		err := r.durable(ctx, key, func(c redis.Cmdable) (bool, error) {
			var err error
			n, err = trim(c)
			return n > 0, err
		})
		return n, err
	}
	return trim(r.c)
}
