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
//
// The buckets of one key and window length are the fields of one hash:
// a login counts a client address in four buckets, and four counters of
// one window in one key cost the store a quarter of the keys.
func (k *Kit) Allow(ctx context.Context, bucket, key string, limit int, window time.Duration) bool {
	if limit <= 0 || window <= 0 {
		k.limited.WithLabelValues(bucket).Inc()
		return false
	}
	res, err := k.counter.Do(ctx, k.LimitOp(bucket, key, window))
	if err == nil {
		return k.judge(ctx, bucket, limit, res[0].N, res[0].Err)
	}
	return k.judge(ctx, bucket, limit, 0, err)
}

// LimitOp is Allow's count as a batch operation (store.KV.Do), for a
// handler that sends it in one round trip with its first read; Allowed
// then judges its result. window must be positive.
func (k *Kit) LimitOp(bucket, key string, window time.Duration) store.Op {
	ckey, ttl := k.window(key, window)
	return store.HashIncr(ckey, bucket, ttl)
}

// Allowed judges the result of LimitOp as Allow would.
func (k *Kit) Allowed(ctx context.Context, bucket string, limit int, res store.Result) bool {
	if limit <= 0 {
		k.limited.WithLabelValues(bucket).Inc()
		return false
	}
	return k.judge(ctx, bucket, limit, res.N, res.Err)
}

// window is the counters' hash of key for the current window and the
// TTL that outlives the window.
func (k *Kit) window(key string, window time.Duration) (string, time.Duration) {
	now := k.now().UnixNano()
	idx := now / int64(window)
	ttl := time.Duration(int64(window)*(idx+1)-now) + time.Second
	return k.rateLimitKey(key, window, idx), ttl
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

// rateLimitKey is "rl:<mac of key>:<window ms>:<window index>": the
// window's length is part of it, so that buckets of other lengths never
// share a hash whose TTL is not theirs.
func (k *Kit) rateLimitKey(key string, window time.Duration, idx int64) string {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte("watashi-ratelimit\x00"))
	m.Write([]byte(key))
	return "rl:" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16]) + ":" +
		strconv.FormatInt(window.Milliseconds(), 10) + ":" + strconv.FormatInt(idx, 10)
}
