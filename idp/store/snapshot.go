package store

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrSnapshotChanged reports that records changed while a Snapshot read
// them: what its callback received is not one instant's state and must
// be discarded. Trying again later is the remedy; it is not a failure of
// the store.
var ErrSnapshotChanged = errors.New("store: records changed while the snapshot was read")

// Kind is the shape of a stored record: the three the KV contract makes.
type Kind uint8

const (
	// KindValue is a plain value (Set, SetNX, CompareAndSwap, Incr).
	KindValue Kind = 1
	// KindSet is a set of strings (SetAdd).
	KindSet Kind = 2
	// KindStream is an append-only log (StreamAdd).
	KindStream Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindValue:
		return "value"
	case KindSet:
		return "set"
	case KindStream:
		return "stream"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Record is one durable record whole, as Snapshot reads it and Restore
// writes it: the unit of a backup.
type Record struct {
	// Key is the record's key without the store's prefix.
	Key  string
	Kind Kind
	// Value is a KindValue record's bytes.
	Value []byte
	// Members are a KindSet record's members, in no order.
	Members []string
	// Entries are a KindStream record's entries, oldest first, with the
	// IDs they were given.
	Entries []StreamEntry
}

// Validate checks that r is a record Restore can write exactly: a key,
// a known kind with only its own fields, a set with members, stream IDs
// that StreamAdd could have made ("ms-seq", above 0-0) in strictly
// increasing order. A Redis transaction applies the commands before a
// failing one, so a record is checked whole before anything is sent.
func (r Record) Validate() error {
	if r.Key == "" {
		return errors.New("store: record without a key")
	}
	switch r.Kind {
	case KindValue:
		if len(r.Members) > 0 || len(r.Entries) > 0 {
			return errors.New("store: a value record carries set members or stream entries")
		}
	case KindSet:
		if len(r.Value) > 0 || len(r.Entries) > 0 {
			return errors.New("store: a set record carries a value or stream entries")
		}
		if len(r.Members) == 0 {
			return errors.New("store: a set record without members")
		}
	case KindStream:
		if len(r.Value) > 0 || len(r.Members) > 0 {
			return errors.New("store: a stream record carries a value or set members")
		}
		var lastMS, lastSeq uint64
		for i, e := range r.Entries {
			ms, seq, ok := ParseStreamID(e.ID)
			if !ok {
				return fmt.Errorf("store: stream entry %d: malformed ID", i)
			}
			if ms < lastMS || (ms == lastMS && seq <= lastSeq) {
				return fmt.Errorf("store: stream entry %d: IDs must increase strictly and exceed 0-0", i)
			}
			lastMS, lastSeq = ms, seq
		}
	default:
		return fmt.Errorf("store: record of unknown kind %d", r.Kind)
	}
	return nil
}

// ParseStreamID splits a stream entry ID "ms-seq" into its two numbers.
// Both must be plain decimal (no sign, no leading zero but for 0).
func ParseStreamID(id string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	ms, err1 := parseDecimal(a)
	seq, err2 := parseDecimal(b)
	return ms, seq, err1 == nil && err2 == nil
}

func parseDecimal(s string) (uint64, error) {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return 0, errors.New("not a decimal")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errors.New("not a decimal")
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

// Family names the kind of record a key holds without the identifiers
// in it: the key up to its first ':' or '{' ("acct" for "acct:<id>"). It
// is what errors and reports may show: keys carry account IDs.
func Family(key string) string {
	if i := strings.IndexAny(key, ":{"); i >= 0 {
		return key[:i]
	}
	return key
}
