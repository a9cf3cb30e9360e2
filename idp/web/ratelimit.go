package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"time"

	"github.com/watashi-id/watashi/idp/store"
)

// Allow counts one event for key in bucket and reports whether it is
// within limit events per window. Windows are fixed and aligned to the
// clock, counted in the store so that every node shares them. Keys are
// MACed: the store never holds client addresses. A store failure allows
// the request (the flow it guards needs the store too and fails on its
// own, with the right error) and is logged; limit <= 0 refuses everything.
func (k *Kit) Allow(ctx context.Context, bucket, key string, limit int, window time.Duration) bool {
	if limit <= 0 || window <= 0 {
		k.limited.WithLabelValues(bucket).Inc()
		return false
	}
	ckey, ttl := k.window(bucket, key, window)
	n, err := k.counter.Incr(ctx, ckey, ttl)
	return k.judge(ctx, bucket, limit, n, err)
}

// LimitOp is Allow's count as a batch operation (store.KV.Do), for a
// handler that sends it in one round trip with its first read; Allowed
// then judges its result. window must be positive.
func (k *Kit) LimitOp(bucket, key string, window time.Duration) store.Op {
	ckey, ttl := k.window(bucket, key, window)
	return store.Incr(ckey, ttl)
}

// Allowed judges the result of LimitOp as Allow would.
func (k *Kit) Allowed(ctx context.Context, bucket string, limit int, res store.Result) bool {
	if limit <= 0 {
		k.limited.WithLabelValues(bucket).Inc()
		return false
	}
	return k.judge(ctx, bucket, limit, res.N, res.Err)
}

// window is the counter of key in bucket for the current window and the
// TTL that outlives the window.
func (k *Kit) window(bucket, key string, window time.Duration) (string, time.Duration) {
	now := k.now().UnixNano()
	idx := now / int64(window)
	ttl := time.Duration(int64(window)*(idx+1)-now) + time.Second
	return k.rateLimitKey(bucket, key, idx), ttl
}

func (k *Kit) judge(ctx context.Context, bucket string, limit int, n int64, err error) bool {
	if err != nil {
		k.log.WarnContext(ctx, "rate limit unavailable, allowing", "bucket", bucket, "error", err)
		return true
	}
	if n > int64(limit) {
		k.limited.WithLabelValues(bucket).Inc()
		return false
	}
	return true
}

// rateLimitKey is "rl:<bucket>:<mac of key>:<window index>".
func (k *Kit) rateLimitKey(bucket, key string, window int64) string {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte("watashi-ratelimit\x00"))
	m.Write([]byte(key))
	return "rl:" + bucket + ":" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16]) + ":" + strconv.FormatInt(window, 10)
}
