package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned for a missing or expired key.
var ErrNotFound = errors.New("store: not found")

// KV is the contract both backends satisfy. A ttl of 0 means durable.
// Values are opaque bytes; callers marshal their own records.
type KV interface {
	// Get returns the value or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set writes unconditionally.
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	// SetNX writes only if the key is absent and reports whether it wrote.
	SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	// Take atomically reads and deletes: of two concurrent callers exactly
	// one gets the value, the other ErrNotFound.
	Take(ctx context.Context, key string) ([]byte, error)
	// Delete removes keys; missing keys are not an error.
	Delete(ctx context.Context, keys ...string) error
	// CompareAndSwap replaces old with new, keeping the key's TTL, and
	// reports whether it did (false when the value differs or is gone).
	CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error)
	// Incr increments a counter, giving it ttl when it is created.
	Incr(ctx context.Context, key string, ttl time.Duration) (int64, error)
	// SetAdd adds members to a set, (re)setting the set's ttl when ttl > 0.
	SetAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error
	// SetMembers lists a set (unordered); a missing set is empty.
	SetMembers(ctx context.Context, key string) ([]string, error)
	// SetRemove removes members from a set.
	SetRemove(ctx context.Context, key string, members ...string) error
	// Publish sends msg to every current subscriber of channel, on every
	// node sharing the backend.
	Publish(ctx context.Context, channel string, msg []byte) error
	// Subscribe delivers messages published after it returns, until ctx ends.
	Subscribe(ctx context.Context, channel string) (<-chan []byte, error)
	// StreamAdd appends an entry to an append-only log (Redis Streams in
	// the Redis backend) and returns its ID. IDs increase strictly.
	StreamAdd(ctx context.Context, key string, value []byte) (string, error)
	// StreamRange returns up to count entries with IDs greater than after
	// ("" for the beginning), oldest first.
	StreamRange(ctx context.Context, key, after string, count int) ([]StreamEntry, error)
	// StreamTrim deletes the entries whose IDs are lower than minID
	// (Redis XTRIM MINID) and returns how many it deleted: how a log that
	// is read once and then kept for a while stays bounded. minID must
	// be a well-formed "ms-seq" ID.
	StreamTrim(ctx context.Context, key, minID string) (int64, error)

	// Scan calls fn with the key of every record, durable or not, whose
	// key begins with prefix: each key present throughout the scan at
	// least once (possibly more), keys written or deleted meanwhile
	// perhaps. An error from fn ends the scan and is returned.
	Scan(ctx context.Context, prefix string, fn func(key string) error) error
	// Snapshot calls fn with every durable record (written without TTL)
	// whose key begins with prefix, in no order, as they all stood at
	// one instant. Readers and writers are never blocked: when a record
	// changes while Snapshot reads, it returns ErrSnapshotChanged, and
	// whatever fn received must be discarded (fn may be called before
	// Snapshot knows). fn must not write to the store.
	Snapshot(ctx context.Context, prefix string, fn func(Record) error) error
	// Restore writes rec (Validate must pass) as a durable record,
	// replacing whatever its key held, atomically and with the wait for
	// replicas of every durable write. Stream entries keep their IDs,
	// and later StreamAdd IDs follow them; a stream without entries
	// leaves the key absent.
	Restore(ctx context.Context, rec Record) error

	// Ping reports whether the backend answers (readiness).
	Ping(ctx context.Context) error
	// Close releases connections.
	Close() error
	// Durable reports whether records survive a restart and are shared
	// between nodes; production refuses a backend that is not.
	Durable() bool
}

// StreamEntry is one append-only log entry.
type StreamEntry struct {
	ID    string
	Value []byte
}
