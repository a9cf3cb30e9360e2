package whitelist

import (
	"context"
	"errors"
	"time"
)

// Store is the part of Watashi's KV contract (idp/store.KV) the registry
// needs, in plain types only, so that store.Memory and store.Redis
// satisfy it without this package importing them: the provider composes
// the registry, never the other way round.
type Store interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	Delete(ctx context.Context, keys ...string) error
	CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error)
	Incr(ctx context.Context, key string, ttl time.Duration) (int64, error)
	SetAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error
	SetMembers(ctx context.Context, key string) ([]string, error)
	SetRemove(ctx context.Context, key string, members ...string) error
	Publish(ctx context.Context, channel string, msg []byte) error
	Subscribe(ctx context.Context, channel string) (<-chan []byte, error)
}

// LogEntry is one entry of an append-only log. Its shape is that of
// store.StreamEntry, so that KVBackend converts one into the other.
type LogEntry struct {
	ID    string
	Value []byte
}

// AuditLog is an append-only log per key (Redis Streams in the Redis
// backend). It is a separate interface because the store's range method
// returns the store's own entry type, which this package must not import;
// KVBackend adapts any store with StreamAdd/StreamRange, and another
// backend (say SQL) can implement it directly.
type AuditLog interface {
	// Append adds an entry and returns its ID; IDs increase strictly.
	Append(ctx context.Context, key string, value []byte) (string, error)
	// Range returns up to count entries (all when count <= 0) with IDs
	// greater than after ("" for the beginning), oldest first.
	Range(ctx context.Context, key, after string, count int) ([]LogEntry, error)
}

// Backend is what a Registry runs on.
type Backend struct {
	Store Store
	Audit AuditLog
	// ErrNotFound is the error the Store returns for a missing key
	// (store.ErrNotFound); it is matched with errors.Is.
	ErrNotFound error
}

func (b Backend) validate() error {
	if b.Store == nil || b.Audit == nil || b.ErrNotFound == nil {
		return errors.New("whitelist: backend needs a Store, an AuditLog and its ErrNotFound")
	}
	return nil
}

// StreamKV is a Store that also keeps append-only streams, whatever its
// entry type E is called, as long as it has LogEntry's shape.
type StreamKV[E ~struct {
	ID    string
	Value []byte
}] interface {
	Store
	StreamAdd(ctx context.Context, key string, value []byte) (string, error)
	StreamRange(ctx context.Context, key, after string, count int) ([]E, error)
}

// KVBackend builds a Backend from one of Watashi's KV stores:
//
//	whitelist.KVBackend(kv, store.ErrNotFound)
//
// E is inferred from kv's StreamRange.
func KVBackend[E ~struct {
	ID    string
	Value []byte
}](kv StreamKV[E], notFound error) Backend {
	return Backend{Store: kv, Audit: streamAudit[E]{kv}, ErrNotFound: notFound}
}

type streamAudit[E ~struct {
	ID    string
	Value []byte
}] struct{ kv StreamKV[E] }

func (a streamAudit[E]) Append(ctx context.Context, key string, value []byte) (string, error) {
	return a.kv.StreamAdd(ctx, key, value)
}

func (a streamAudit[E]) Range(ctx context.Context, key, after string, count int) ([]LogEntry, error) {
	es, err := a.kv.StreamRange(ctx, key, after, count)
	if err != nil {
		return nil, err
	}
	out := make([]LogEntry, len(es))
	for i, e := range es {
		out[i] = LogEntry(e)
	}
	return out, nil
}

// Keys and channels. Records are durable (TTL 0); Redis must persist
// them (appendonly yes).
const (
	// ChangedChannel carries the ID of a client whose record changed, or
	// "*" for all, so that every node drops its cached copy.
	ChangedChannel = "whitelist:changed"
	// genKey counts changes; nodes poll it so that a lost pub/sub message
	// delays a suspension by one poll interval at most.
	genKey       = "wl:gen"
	clientsKey   = "wl:clients"
	tokensKey    = "wl:iats"
	tokenLogKey  = "wl:log:iat"
	allFlushMsg  = "*"
	clientPrefix = "wl:client:"
	logPrefix    = "wl:log:client:"
	tokenPrefix  = "wl:iat:"
)

func clientKey(id string) string    { return clientPrefix + id }
func clientLogKey(id string) string { return logPrefix + id }
func tokenKey(id string) string     { return tokenPrefix + id }
