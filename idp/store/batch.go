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
	OpTake
	OpCAS
	OpSetAdd
	OpSetRemove
	OpSetMembers
	OpPublish
	OpHashIncr
	OpStreamAdd
)

// MaxBatch bounds the operations of one batch.
const MaxBatch = 64

// Op is one operation of a batch.
type Op struct {
	Kind OpKind
	Key  string
	Val  []byte
	TTL  time.Duration
	// Old is what a CAS expects; Members what a set operation adds or
	// removes; Field the counter of a HashIncr.
	Old     []byte
	Members []string
	Field   string
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

// Take reads and deletes key (Result.Val, or Result.Err ErrNotFound): of
// two concurrent takers exactly one gets the value.
func Take(key string) Op { return Op{Kind: OpTake, Key: key} }

// CAS replaces old with new under key and gives it ttl (> 0), atomically,
// only if key holds old (Result.OK). Unlike KV.CompareAndSwap it sets the
// lifetime: a record that changes state often changes how long it must
// live too (a request whose code is minted lives only as long as the
// code), and a batch writes nothing durable.
func CAS(key string, old, new []byte, ttl time.Duration) Op {
	return Op{Kind: OpCAS, Key: key, Old: old, Val: new, TTL: ttl}
}

// SetAdd adds members to the set key and (re)sets its ttl (> 0).
// Result.N is the set's size after the add, so that a caller can tell
// when a set it keeps bounded needs pruning without listing it.
func SetAdd(key string, ttl time.Duration, members ...string) Op {
	return Op{Kind: OpSetAdd, Key: key, TTL: ttl, Members: members}
}

// SetRemove removes members from the set key, which must have a TTL: a
// durable set is changed with KV.SetRemove, which waits for replicas.
func SetRemove(key string, members ...string) Op {
	return Op{Kind: OpSetRemove, Key: key, Members: members}
}

// SetMembers lists the set key (Result.Members, unordered; a missing set
// is empty).
func SetMembers(key string) Op { return Op{Kind: OpSetMembers, Key: key} }

// HashIncr increments the counter field of the hash key (Result.N); a
// new hash gets ttl (> 0), which later increments keep. Counters that
// are always read together in one window (a client address's rate
// limits) then cost the store one key, not one each.
func HashIncr(key, field string, ttl time.Duration) Op {
	return Op{Kind: OpHashIncr, Key: key, Field: field, TTL: ttl}
}

// StreamAdd appends value to the log key, as KV.StreamAdd does
// (Result.Val is the entry's ID). It is the one durable write a batch may
// hold: an event is best appended in the round trip of the change it
// tells. Where durable writes wait for replicas, the batch sends it
// after the rest, alone and with that wait, so it costs its own round
// trip there.
func StreamAdd(key string, value []byte) Op { return Op{Kind: OpStreamAdd, Key: key, Val: value} }

// Publish sends msg on channel, as KV.Publish does.
func Publish(channel string, msg []byte) Op { return Op{Kind: OpPublish, Key: channel, Val: msg} }

// Result is one operation's outcome.
type Result struct {
	// Val is what a Get or Take read.
	Val []byte
	// Members is what a SetMembers listed.
	Members []string
	// OK reports whether a SetNX or CAS wrote.
	OK bool
	// N is a counter's value after Incr or HashIncr, a set's size after
	// SetAdd.
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
		case OpGet, OpDelete, OpTake, OpSetMembers, OpPublish, OpStreamAdd:
		case OpHashIncr:
			if op.Field == "" {
				return fmt.Errorf("%w: operation %d increments no field of %q", ErrBadBatch, i, op.Key)
			}
			if op.TTL <= 0 {
				return fmt.Errorf("%w: operation %d writes %q without a TTL", ErrBadBatch, i, op.Key)
			}
		case OpSetRemove:
			if len(op.Members) == 0 {
				return fmt.Errorf("%w: operation %d removes no members from %q", ErrBadBatch, i, op.Key)
			}
		case OpSetAdd:
			if len(op.Members) == 0 {
				return fmt.Errorf("%w: operation %d adds no members to %q", ErrBadBatch, i, op.Key)
			}
			fallthrough
		case OpSet, OpSetNX, OpIncr, OpCAS:
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
