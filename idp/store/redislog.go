package store

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// redisLogger hands go-redis's own messages (a pool that cannot dial, a
// Sentinel or Cluster that changed its mind) to slog, so that they come
// out in the process's format, JSON lines by default, instead of as the
// library's "redis: 2006/01/02 ..." text lines on standard error. They
// are warnings: each one is about the connection, and the command that
// suffered reports its own error to its caller.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	r.l.WarnContext(ctx, "redis client", "detail", msg)
}

// SetRedisLogger routes go-redis's messages to l. go-redis keeps one
// logger for the whole process, so the last call wins; a process runs
// one deployment, and NewRedis calls this with RedisOptions.Logger.
func SetRedisLogger(l *slog.Logger) {
	if l == nil {
		return
	}
	redis.SetLogger(redisLogger{l: l})
}
