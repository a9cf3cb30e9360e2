package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"time"
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
	now := k.now().UnixNano()
	idx := now / int64(window)
	ttl := time.Duration(int64(window)*(idx+1)-now) + time.Second
	n, err := k.counter.Incr(ctx, k.rateLimitKey(bucket, key, idx), ttl)
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
