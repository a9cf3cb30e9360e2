package notify

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
)

// KV is the part of the store notification mail uses.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	Take(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, keys ...string) error
	CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error)
	Incr(ctx context.Context, key string, ttl time.Duration) (int64, error)
	SetAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error
	SetMembers(ctx context.Context, key string) ([]string, error)
	SetRemove(ctx context.Context, key string, members ...string) error
	Publish(ctx context.Context, channel string, msg []byte) error
	Subscribe(ctx context.Context, channel string) (<-chan []byte, error)
}

// Confirmation bounds: a link lives ConfirmTTL, and an account may have
// at most MaxPending links out within that time, so that nobody can make
// Watashi mail a stranger's address over and over.
const (
	ConfirmTTL = 24 * time.Hour
	MaxPending = 3
)

// Errors of the subscription flow.
var (
	// ErrTooMany: the account asked for MaxPending confirmations within
	// ConfirmTTL.
	ErrTooMany error = &refusal{msg: "notify: too many confirmation mails; try again tomorrow", code: "too_many"}
	// ErrToken: the link is unknown, used or expired.
	ErrToken = errors.New("notify: the link is not valid (used, expired or mistyped)")
	// ErrNotSubscribed: the account has no confirmed address.
	ErrNotSubscribed = errors.New("notify: no confirmed address")
)

// Subscription is an account's confirmed address, opened.
type Subscription struct {
	AccountID   string
	Address     string
	ConfirmedAt time.Time
}

// sealedRecord is what the store holds: the address under the account's
// own data key, wrapped by the key-encryption key ring.
type sealedRecord struct {
	Account   string    `json:"account"`
	WrappedDK []byte    `json:"dk"`
	Address   []byte    `json:"address"`
	At        time.Time `json:"at"`
}

// Subscriptions keeps confirmed addresses and pending confirmations.
type Subscriptions struct {
	kv   KV
	ring *seal.Ring
	now  func() time.Time
}

// NewSubscriptions needs the store and the KEK ring.
func NewSubscriptions(kv KV, ring *seal.Ring, now func() time.Time) (*Subscriptions, error) {
	if kv == nil || ring == nil {
		return nil, errors.New("notify: subscriptions need a store and a KEK ring")
	}
	if now == nil {
		now = time.Now
	}
	return &Subscriptions{kv: kv, ring: ring, now: now}, nil
}

func subKey(account string) string       { return "notify:sub:" + account }
func pendingKey(hash string) string      { return "notify:pending:" + hash }
func pendingCountKey(acct string) string { return "notify:pending-n:" + acct }

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Subscriptions) seal(key, account, address string) ([]byte, error) {
	sealer, w, err := s.ring.NewSealer([]byte(key))
	if err != nil {
		return nil, err
	}
	return json.Marshal(sealedRecord{Account: account, WrappedDK: w, Address: sealer.Seal([]byte(address), []byte(key)), At: s.now().UTC()})
}

func (s *Subscriptions) open(key string, raw []byte) (*sealedRecord, string, error) {
	var r sealedRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, "", fmt.Errorf("notify: record %s does not decode", key)
	}
	sealer, err := s.ring.OpenSealer(r.WrappedDK, []byte(key))
	if err != nil {
		return nil, "", err
	}
	addr, err := sealer.Open(r.Address, []byte(key))
	if err != nil {
		return nil, "", err
	}
	return &r, string(addr), nil
}

// Request checks an address an account wants its notices at and returns
// the single-use token of the confirmation link to mail it. Nothing is
// stored for a bad address or past the bound.
func (s *Subscriptions) Request(ctx context.Context, accountID, address string) (string, error) {
	addr, err := ParseAddress(address)
	if err != nil {
		return "", err
	}
	if accountID == "" {
		return "", errors.New("notify: no account")
	}
	n, err := s.kv.Incr(ctx, pendingCountKey(accountID), ConfirmTTL)
	if err != nil {
		return "", err
	}
	if n > MaxPending {
		return "", ErrTooMany
	}
	tok := newToken()
	key := pendingKey(tokenHash(tok))
	rec, err := s.seal(key, accountID, addr)
	if err != nil {
		return "", err
	}
	if err := s.kv.Set(ctx, key, rec, ConfirmTTL); err != nil {
		return "", err
	}
	return tok, nil
}

// Confirm spends a confirmation token (once, on any node) and makes its
// address the account's: the account's notices go there from now on.
func (s *Subscriptions) Confirm(ctx context.Context, token string) (*Subscription, error) {
	if len(token) != 43 {
		return nil, ErrToken
	}
	key := pendingKey(tokenHash(token))
	raw, err := s.kv.Take(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrToken
	}
	if err != nil {
		return nil, err
	}
	r, addr, err := s.open(key, raw)
	if err != nil {
		return nil, err
	}
	rec, err := s.seal(subKey(r.Account), r.Account, addr)
	if err != nil {
		return nil, err
	}
	if err := s.kv.Set(ctx, subKey(r.Account), rec, 0); err != nil {
		return nil, err
	}
	return &Subscription{AccountID: r.Account, Address: addr, ConfirmedAt: s.now().UTC()}, nil
}

// Get returns the account's confirmed address, or ErrNotSubscribed.
func (s *Subscriptions) Get(ctx context.Context, accountID string) (*Subscription, error) {
	key := subKey(accountID)
	raw, err := s.kv.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotSubscribed
	}
	if err != nil {
		return nil, err
	}
	r, addr, err := s.open(key, raw)
	if err != nil {
		return nil, err
	}
	return &Subscription{AccountID: r.Account, Address: addr, ConfirmedAt: r.At}, nil
}

// Cancel stops the account's notices.
func (s *Subscriptions) Cancel(ctx context.Context, accountID string) error {
	return s.kv.Delete(ctx, subKey(accountID))
}
