package authreq

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
)

// Errors of the repository. ErrNotFound wraps store.ErrNotFound.
var (
	ErrNotFound   = fmt.Errorf("authreq: auth request not found or expired: %w", store.ErrNotFound)
	ErrBound      = errors.New("authreq: auth request is bound to another browser")
	ErrDone       = errors.New("authreq: auth request already completed")
	ErrContention = errors.New("authreq: record changed concurrently too often")
	// ErrUnchanged is returned by an Update function that found nothing
	// to change: the record as read already answers, and a
	// compare-and-swap of a value with itself would only cost a round
	// trip.
	ErrUnchanged = errors.New("authreq: auth request unchanged")
)

// casRetries bounds optimistic-update retries on one record.
const casRetries = 8

// KV is the part of the store the repository uses.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error)
	Delete(ctx context.Context, keys ...string) error
	Do(ctx context.Context, ops ...store.Op) ([]store.Result, error)
}

// Repo stores auth requests under "ar:<id>" with a TTL.
type Repo struct {
	kv     KV
	ttl    time.Duration
	now    func() time.Time
	issuer string
}

// New returns a repository whose records live for ttl. issuer goes into
// the error responses Fail sends (RFC 9207).
func New(kv KV, ttl time.Duration, now func() time.Time, issuer string) *Repo {
	if now == nil {
		now = time.Now
	}
	return &Repo{kv: kv, ttl: ttl, now: now, issuer: issuer}
}

func key(id string) string { return "ar:" + id }

// TTL is how long a new request lives.
func (r *Repo) TTL() time.Duration { return r.ttl }

// Create stores a new request, giving it an ID and creation time when it
// has none.
func (r *Repo) Create(ctx context.Context, ar *AuthRequest) error {
	op, err := r.CreateOp(ar)
	if err != nil {
		return err
	}
	if err := r.kv.Set(ctx, op.Key, op.Val, op.TTL); err != nil {
		return fmt.Errorf("authreq: store: %w", err)
	}
	return nil
}

// CreateOp is Create as a batch operation (store.KV.Do), for a caller
// that stores the request in one round trip with its rate limit: it gives
// ar its ID and creation time and checks its size, and writes nothing.
func (r *Repo) CreateOp(ar *AuthRequest) (store.Op, error) {
	if ar.ID == "" {
		ar.ID = ids.Long()
	}
	if ar.CreatedAt.IsZero() {
		ar.CreatedAt = r.now().UTC()
	}
	b, err := json.Marshal(ar)
	if err != nil {
		return store.Op{}, err
	}
	if err := checkNew(b); err != nil {
		return store.Op{}, err
	}
	ar.raw = b
	return store.Set(key(ar.ID), b, r.ttl), nil
}

// Load returns a request; the error wraps store.ErrNotFound when it is
// missing or expired.
func (r *Repo) Load(ctx context.Context, id string) (*AuthRequest, error) {
	ar, _, err := r.load(ctx, id)
	return ar, err
}

func (r *Repo) load(ctx context.Context, id string) (*AuthRequest, []byte, error) {
	if id == "" || len(id) > 64 {
		return nil, nil, ErrNotFound
	}
	b, err := r.kv.Get(ctx, key(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("authreq: load: %w", err)
	}
	ar, err := decode(b)
	return ar, b, err
}

// ReadOp is the batch operation (store.KV.Do) that reads request id, for
// a caller that reads it in one round trip with other records.
func (r *Repo) ReadOp(id string) store.Op { return store.Get(key(id)) }

// DeleteOp is the batch operation that deletes request id.
func (r *Repo) DeleteOp(id string) store.Op { return store.Delete(key(id)) }

// FromResult is Load's answer from the result of ReadOp(id).
func (r *Repo) FromResult(id string, res store.Result) (*AuthRequest, error) {
	if id == "" || len(id) > 64 || errors.Is(res.Err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if res.Err != nil {
		return nil, fmt.Errorf("authreq: load: %w", res.Err)
	}
	return decode(res.Val)
}

func decode(b []byte) (*AuthRequest, error) {
	ar := new(AuthRequest)
	if err := json.Unmarshal(b, ar); err != nil {
		return nil, fmt.Errorf("authreq: record: %w", err)
	}
	ar.raw = b
	return ar, nil
}

// Update applies fn with compare-and-swap, so that of two concurrent
// transitions exactly one wins and the other sees the winner's state. fn
// returning ErrUnchanged ends without a write.
func (r *Repo) Update(ctx context.Context, id string, fn func(*AuthRequest) error) (*AuthRequest, error) {
	return r.update(ctx, id, nil, 0, fn)
}

// UpdateLoaded is Update of a request the caller loaded in this very
// request: its first attempt starts from that record as read, which
// saves a round trip; when the record changed since, the
// compare-and-swap fails and Update reads it again. fn never sees the
// caller's copy.
func (r *Repo) UpdateLoaded(ctx context.Context, loaded *AuthRequest, fn func(*AuthRequest) error) (*AuthRequest, error) {
	return r.update(ctx, loaded.ID, loaded.raw, 0, fn)
}

// UpdateLoadedTTL is UpdateLoaded that also gives the record a new
// lifetime, in the same compare-and-swap: once its code is minted, a
// request only has to live as long as the code it carries.
func (r *Repo) UpdateLoadedTTL(ctx context.Context, loaded *AuthRequest, ttl time.Duration, fn func(*AuthRequest) error) (*AuthRequest, error) {
	if ttl <= 0 {
		return nil, errors.New("authreq: a new lifetime must be positive")
	}
	return r.update(ctx, loaded.ID, loaded.raw, ttl, fn)
}

// update is Update from first (the record as read, or nil to read it)
// and, with ttl > 0, a new lifetime set by the swap that wins.
func (r *Repo) update(ctx context.Context, id string, first []byte, ttl time.Duration, fn func(*AuthRequest) error) (*AuthRequest, error) {
	for range casRetries {
		var (
			ar  *AuthRequest
			old []byte
			err error
		)
		if first != nil {
			old, first = first, nil
			ar, err = decode(old)
		} else {
			ar, old, err = r.load(ctx, id)
		}
		if err != nil {
			return nil, err
		}
		if err := fn(ar); errors.Is(err, ErrUnchanged) {
			return ar, nil
		} else if err != nil {
			return nil, err
		}
		b, err := json.Marshal(ar)
		if err != nil {
			return nil, err
		}
		if err := checkRecord(b); err != nil {
			return nil, err
		}
		ok, err := r.swap(ctx, key(id), old, b, ttl)
		if err != nil {
			return nil, fmt.Errorf("authreq: update: %w", err)
		}
		if ok {
			ar.raw = b
			return ar, nil
		}
	}
	return nil, ErrContention
}

// swap is one compare-and-swap, with a new lifetime when ttl > 0.
func (r *Repo) swap(ctx context.Context, k string, old, new []byte, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return r.kv.CompareAndSwap(ctx, k, old, new)
	}
	res, err := r.kv.Do(ctx, store.CAS(k, old, new, ttl))
	if err != nil {
		return false, err
	}
	return res[0].OK, res[0].Err
}

// Bind ties the request to one browser: bindingHash is the SHA-256 (hex)
// of that browser's binding cookie. The first binding wins; binding again
// with the same value changes nothing.
func (r *Repo) Bind(ctx context.Context, id, bindingHash string) error {
	return r.bind(ctx, id, nil, bindingHash)
}

// BindLoaded is Bind of a request the caller loaded in this very request
// (see UpdateLoaded). A binding never changes once set, so a request read
// bound to this browser needs no further round trip.
func (r *Repo) BindLoaded(ctx context.Context, loaded *AuthRequest, bindingHash string) error {
	return r.bind(ctx, loaded.ID, loaded.raw, bindingHash)
}

func (r *Repo) bind(ctx context.Context, id string, first []byte, bindingHash string) error {
	if len(bindingHash) != sha256.Size*2 {
		return errors.New("authreq: binding must be a hex SHA-256")
	}
	if _, err := hex.DecodeString(bindingHash); err != nil {
		return errors.New("authreq: binding must be a hex SHA-256")
	}
	_, err := r.update(ctx, id, first, 0, func(ar *AuthRequest) error {
		switch {
		case ar.Binding == "":
			ar.Binding = bindingHash
			return nil
		case subtle.ConstantTimeCompare([]byte(ar.Binding), []byte(bindingHash)) == 1:
			return ErrUnchanged // a binding never changes once set
		}
		return ErrBound
	})
	return err
}

// Complete records a finished sign-in and the consent given, once.
func (r *Repo) Complete(ctx context.Context, id string, c Completion) (*AuthRequest, error) {
	return r.complete(ctx, id, nil, c)
}

// CompleteLoaded is Complete of a request the caller loaded in this very
// request (see UpdateLoaded).
func (r *Repo) CompleteLoaded(ctx context.Context, loaded *AuthRequest, c Completion) (*AuthRequest, error) {
	return r.complete(ctx, loaded.ID, loaded.raw, c)
}

func (r *Repo) complete(ctx context.Context, id string, first []byte, c Completion) (*AuthRequest, error) {
	if c.AccountID == "" {
		return nil, errors.New("authreq: completion without an account")
	}
	return r.update(ctx, id, first, 0, func(ar *AuthRequest) error {
		if ar.Completed {
			return ErrDone
		}
		now := r.now().UTC()
		ar.AccountID = c.AccountID
		ar.Subject = c.Subject
		ar.ACR = c.ACR
		ar.AMR = slices.Clone(c.AMR)
		ar.AuthTime = c.Time.UTC()
		ar.SessionID = c.SessionID
		ar.Authenticator = c.Authenticator
		ar.Method = c.Method
		if c.Time.IsZero() {
			ar.AuthTime = now
		}
		ar.Granted = slices.Clone(c.Granted)
		ar.Completed = true
		ar.DoneAt = now
		return nil
	})
}

// RestoreOp is the batch operation that writes ar back as it was read,
// to live for ttl: a code exchange that deleted the request with its
// code and then failed for a passing reason gives both back for a retry.
func (r *Repo) RestoreOp(ar *AuthRequest, ttl time.Duration) (store.Op, error) {
	if len(ar.raw) == 0 || ttl <= 0 {
		return store.Op{}, errors.New("authreq: only a request as read may be restored, for a positive lifetime")
	}
	return store.Set(key(ar.ID), ar.raw, ttl), nil
}

// Delete removes a request; a missing one is not an error.
func (r *Repo) Delete(ctx context.Context, id string) error {
	return r.kv.Delete(ctx, key(id))
}
