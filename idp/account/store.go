package account

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/internal/metrics"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
)

// Domain errors. Each is wrapped with what went wrong, in terms that name
// no person and no certificate.
var (
	ErrNotFound = fmt.Errorf("account: not found: %w", store.ErrNotFound)
	// ErrNotEnrolled: the authentication certificate is linked to no
	// account; the resident must prove their identity first.
	ErrNotEnrolled = errors.New("account: certificate not enrolled")
	// ErrConflict: the certificates, or the session, point at different
	// accounts.
	ErrConflict = errors.New("account: conflicting accounts")
	// ErrIdentityMismatch: a signature certificate names another person
	// than the account it would refresh.
	ErrIdentityMismatch = errors.New("account: another person")
	// ErrContention: the record changed concurrently too often.
	ErrContention = errors.New("account: record changed concurrently too often")
)

func fail(kind error, detail string) error { return fmt.Errorf("%w: %s", kind, detail) }

// casRetries bounds optimistic updates of one record.
const casRetries = 8

// RevocationChecker asks whether a certificate is still good.
type RevocationChecker interface {
	CheckRevocation(ctx context.Context, leaf, issuer *x509.Certificate) (pkibridge.RevocationInfo, error)
}

// KV is the part of the store accounts use.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, error)
	SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error)
	Delete(ctx context.Context, keys ...string) error
	SetAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error
	SetMembers(ctx context.Context, key string) ([]string, error)
	SetRemove(ctx context.Context, key string, members ...string) error
	Do(ctx context.Context, ops ...store.Op) ([]store.Result, error)
}

// Options configure a Store.
type Options struct {
	// KEK wraps the data keys the records are sealed with (required).
	KEK *seal.Ring
	// Checker re-checks the facts' certificate; nil never re-checks
	// (revocation off).
	Checker RevocationChecker
	// Recheck is how old the last revocation answer may be when facts are
	// about to be released (default 1h).
	Recheck time.Duration
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Now     func() time.Time
}

// Store reads and writes accounts and certificate links.
type Store struct {
	kv      KV
	ring    *seal.Ring
	checker RevocationChecker
	recheck time.Duration
	log     *slog.Logger
	now     func() time.Time
	created prometheus.Counter

	linkMu  sync.Mutex
	linkKey []byte // loaded on first use; see certLink
}

// New returns a Store on kv.
func New(kv KV, o Options) (*Store, error) {
	if o.KEK == nil {
		return nil, errors.New("account: Options.KEK is required: accounts are stored encrypted")
	}
	s := &Store{kv: kv, ring: o.KEK, checker: o.Checker, recheck: o.Recheck, log: o.Logger, now: o.Now}
	if s.recheck == 0 {
		s.recheck = time.Hour
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	reg := o.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var err error
	if s.created, err = metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "watashi_accounts_created_total",
		Help: "Accounts created by identity proofing.",
	})); err != nil {
		return nil, err
	}
	return s, nil
}
