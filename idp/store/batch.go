package store

import (
	"errors"
	"fmt"
	"time"
)

// A batch (KV.Do) sends several independent operations in one round trip:
// a login's hot path reads an account's record and its data key together,
// and writes a grant with its first tokens together. The operations run
// in order, each as its own operation would, but the batch is not a
// transaction: another client may act between two of them, and one may
// fail while the others take effect. Where atomicity matters the caller
// keeps one of the single operations (SetNX, Take, CompareAndSwap).
//
// Writes in a batch carry a TTL: a durable record is written alone, with
// the wait for replicas that durable writes need.

// OpKind names what an Op does.
type OpKind uint8

// The operations a batch may hold.
const (
	OpGet OpKind = iota + 1
	OpSet
	OpSetNX
	OpDelete
	OpIncr
)

// MaxBatch bounds the operations of one batch.
const MaxBatch = 64

// Op is one operation of a batch.
type Op struct {
	Kind OpKind
	Key  string
	Val  []byte
	TTL  time.Duration
}

// Get reads key (Result.Val, or Result.Err ErrNotFound).
func Get(key string) Op { return Op{Kind: OpGet, Key: key} }

// Set writes val under key for ttl (> 0).
func Set(key string, val []byte, ttl time.Duration) Op {
	return Op{Kind: OpSet, Key: key, Val: val, TTL: ttl}
}

// SetNX writes val under key for ttl (> 0) only if key is absent
// (Result.OK).
func SetNX(key string, val []byte, ttl time.Duration) Op {
	return Op{Kind: OpSetNX, Key: key, Val: val, TTL: ttl}
}

// Delete removes a key that has a TTL; a durable record is deleted with
// KV.Delete, which waits for replicas.
func Delete(key string) Op { return Op{Kind: OpDelete, Key: key} }

// Incr increments a counter (Result.N), which gets ttl (> 0) when it is
// created.
func Incr(key string, ttl time.Duration) Op { return Op{Kind: OpIncr, Key: key, TTL: ttl} }

// Result is one operation's outcome.
type Result struct {
	// Val is what a Get read.
	Val []byte
	// OK reports whether a SetNX wrote.
	OK bool
	// N is a counter's value after Incr.
	N int64
	// Err is this operation's failure; ErrNotFound for a missing Get.
	Err error
}

// ErrBadBatch reports a batch the store refuses before sending anything.
var ErrBadBatch = errors.New("store: invalid batch")

// checkBatch refuses, before anything is sent, batches the contract does
// not allow.
func checkBatch(ops []Op) error {
	if len(ops) > MaxBatch {
		return fmt.Errorf("%w: %d operations, at most %d", ErrBadBatch, len(ops), MaxBatch)
	}
	for i, op := range ops {
		switch op.Kind {
		case OpGet, OpDelete:
		case OpSet, OpSetNX, OpIncr:
			if op.TTL <= 0 {
				return fmt.Errorf("%w: operation %d writes %q without a TTL", ErrBadBatch, i, op.Key)
			}
		default:
			return fmt.Errorf("%w: operation %d has unknown kind %d", ErrBadBatch, i, op.Kind)
		}
		if op.Key == "" {
			return fmt.Errorf("%w: operation %d has no key", ErrBadBatch, i)
		}
	}
	return nil
}

// FirstErr is the first failure among results other than a missing key,
// or nil.
func FirstErr(res []Result) error {
	for _, r := range res {
		if r.Err != nil && !errors.Is(r.Err, ErrNotFound) {
			return r.Err
		}
	}
	return nil
}
