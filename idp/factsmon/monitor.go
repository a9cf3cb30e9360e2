package factsmon

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/internal/logref"
	"github.com/watashi-id/watashi/idp/internal/metrics"
	"github.com/watashi-id/watashi/idp/store"
)

// Accounts is what the monitor needs of the account store.
type Accounts interface {
	IDs(ctx context.Context) ([]string, error)
	CheckFacts(ctx context.Context, id string, c account.RevocationChecker) (account.FactsCheck, error)
	AnnounceStale(ctx context.Context, id string) error
}

// Publisher stores events on the outbox.
type Publisher interface {
	Publish(ctx context.Context, e events.Event) error
}

// KV is the part of the store the leases and cursors use.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	Delete(ctx context.Context, keys ...string) error
}

// Options configure the monitor.
type Options struct {
	Store    KV
	Accounts Accounts
	Events   Publisher
	// CRL answers from the CRLs in memory (free); nil when none are
	// configured.
	CRL account.RevocationChecker
	// OCSP is asked for what the CRLs leave undecided; nil never asks.
	OCSP account.RevocationChecker
	// Interval is the round length: every account is checked once per
	// round (default 24h).
	Interval time.Duration
	// Partitions split the accounts between nodes (default 64).
	Partitions int
	// Tick is how often a node looks for work (default 1m, at most
	// Interval/4).
	Tick    time.Duration
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Now     func() time.Time
}

// Monitor is the scheduled facts re-check.
type Monitor struct {
	o   Options
	log *slog.Logger

	checked prometheus.Counter
	stale   prometheus.Counter
	spent   *prometheus.CounterVec
	rounds  prometheus.Counter
}

// leaseTTL is how long a partition stays taken by a node that stopped
// renewing it.
const leaseTTL = 2 * time.Minute

// saveEvery is how many accounts pass between saves of a cursor (and
// renewals of the lease).
const saveEvery = 50

// New returns a monitor.
func New(o Options) (*Monitor, error) {
	if o.Store == nil || o.Accounts == nil || o.Events == nil {
		return nil, errors.New("factsmon: Store, Accounts and Events are required")
	}
	if o.Interval <= 0 {
		o.Interval = 24 * time.Hour
	}
	if o.Partitions <= 0 {
		o.Partitions = 64
	}
	if o.Tick <= 0 {
		o.Tick = time.Minute
	}
	o.Tick = min(o.Tick, o.Interval/4)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Monitor{o: o, log: o.Logger}
	var err error
	if m.checked, err = metrics.Register(o.Metrics, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "watashi_facts_monitor_accounts_checked_total",
		Help: "Accounts whose facts' signature certificate the monitor re-checked.",
	})); err != nil {
		return nil, err
	}
	if m.stale, err = metrics.Register(o.Metrics, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "watashi_facts_monitor_stale_found_total",
		Help: "Accounts whose facts the monitor found stale (signature certificate revoked) and announced.",
	})); err != nil {
		return nil, err
	}
	if m.spent, err = metrics.Register(o.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_facts_monitor_checks_total",
		Help: "Revocation checks the monitor made, by source: crl (free, in memory) and ocsp (may cost a fee per query).",
	}, []string{"source"})); err != nil {
		return nil, err
	}
	if m.rounds, err = metrics.Register(o.Metrics, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "watashi_facts_monitor_partitions_done_total",
		Help: "Partitions of accounts the monitor finished, on this node.",
	})); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Monitor) round(now time.Time) string {
	return strconv.FormatInt(now.UnixNano()/int64(m.o.Interval), 10)
}

func leaseKey(round string, p int) string  { return "factsmon:lease:" + round + ":" + strconv.Itoa(p) }
func cursorKey(round string, p int) string { return "factsmon:cursor:" + round + ":" + strconv.Itoa(p) }
func doneKey(round string, p int) string   { return "factsmon:done:" + round + ":" + strconv.Itoa(p) }

func (m *Monitor) partition(id string) int {
	h := fnv.New64a()
	h.Write([]byte(id))
	return int(h.Sum64() % uint64(m.o.Partitions))
}

// Run works until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTicker(m.o.Tick)
	defer t.Stop()
	for {
		if _, err := m.Sweep(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("facts monitor: sweep", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stats is what one Sweep did on this node.
type Stats struct {
	Partitions int // partitions finished
	Checked    int // accounts checked
	Stale      int // stale facts announced
	OCSP       int // OCSP checks (may cost a fee)
}

// Sweep takes and finishes every partition of the current round that no
// node has finished or holds, and returns what it did.
func (m *Monitor) Sweep(ctx context.Context) (Stats, error) {
	var st Stats
	round := m.round(m.o.Now())
	var all []string
	listed := false
	// Partitions in a random order, so that nodes starting together
	// spread out.
	for _, p := range rand.Perm(m.o.Partitions) {
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		if _, err := m.o.Store.Get(ctx, doneKey(round, p)); err == nil {
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return st, err
		}
		token := ids.Short()
		ok, err := m.o.Store.SetNX(ctx, leaseKey(round, p), []byte(token), leaseTTL)
		if err != nil {
			return st, err
		}
		if !ok {
			continue
		}
		// Another node may have finished the partition between the
		// check above and the lease, and let its lease go: look again.
		if _, err := m.o.Store.Get(ctx, doneKey(round, p)); err == nil {
			_ = m.o.Store.Delete(ctx, leaseKey(round, p))
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			_ = m.o.Store.Delete(ctx, leaseKey(round, p))
			return st, err
		}
		if !listed {
			if all, err = m.o.Accounts.IDs(ctx); err != nil {
				_ = m.o.Store.Delete(ctx, leaseKey(round, p))
				return st, fmt.Errorf("factsmon: list accounts: %w", err)
			}
			listed = true
		}
		err = m.work(ctx, round, p, token, all, &st)
		_ = m.o.Store.Delete(context.WithoutCancel(ctx), leaseKey(round, p))
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

// work walks partition p from its cursor.
func (m *Monitor) work(ctx context.Context, round string, p int, token string, all []string, st *Stats) error {
	var part []string
	for _, id := range all {
		if m.partition(id) == p {
			part = append(part, id)
		}
	}
	slices.Sort(part)
	cursor := ""
	if b, err := m.o.Store.Get(ctx, cursorKey(round, p)); err == nil {
		cursor = string(b)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	keep := 2 * m.o.Interval
	n := 0
	for _, id := range part {
		if id <= cursor {
			continue
		}
		if err := m.checkOne(ctx, id, st); err != nil {
			return err
		}
		n++
		if n%saveEvery == 0 {
			if err := m.save(ctx, round, p, token, id, keep); err != nil {
				return err
			}
		}
	}
	if err := m.o.Store.Set(ctx, doneKey(round, p), []byte("1"), keep); err != nil {
		return err
	}
	m.rounds.Inc()
	st.Partitions++
	return nil
}

// save stores the cursor and renews the lease, unless another node took
// the partition over (this node was too slow): then it stops.
func (m *Monitor) save(ctx context.Context, round string, p int, token, id string, keep time.Duration) error {
	b, err := m.o.Store.Get(ctx, leaseKey(round, p))
	if err != nil || string(b) != token {
		return fmt.Errorf("factsmon: partition %d taken over", p)
	}
	if err := m.o.Store.Set(ctx, cursorKey(round, p), []byte(id), keep); err != nil {
		return err
	}
	return m.o.Store.Set(ctx, leaseKey(round, p), []byte(token), leaseTTL)
}

// checkOne re-checks one account: CRL first, OCSP for what stays
// undecided, then announces stale facts.
func (m *Monitor) checkOne(ctx context.Context, id string, st *Stats) error {
	res := account.FactsSkipped
	var err error
	if m.o.CRL != nil {
		if res, err = m.o.Accounts.CheckFacts(ctx, id, m.o.CRL); err != nil {
			return err
		}
		if res.Asked() {
			m.spent.WithLabelValues("crl").Inc()
		}
	}
	if (m.o.CRL == nil || res == account.FactsUndecided) && m.o.OCSP != nil {
		if res, err = m.o.Accounts.CheckFacts(ctx, id, m.o.OCSP); err != nil {
			return err
		}
		if res.Asked() {
			m.spent.WithLabelValues("ocsp").Inc()
			st.OCSP++
		}
	}
	if res.Asked() {
		m.checked.Inc()
		st.Checked++
	}
	if !res.Announce() {
		return nil
	}
	if err := m.o.Events.Publish(ctx, events.Event{Kind: events.FactsStale, AccountID: id, Time: m.o.Now()}); err != nil {
		return fmt.Errorf("factsmon: publish: %w", err)
	}
	if err := m.o.Accounts.AnnounceStale(ctx, id); err != nil {
		return err
	}
	m.stale.Inc()
	st.Stale++
	m.log.InfoContext(ctx, "facts monitor: stale facts announced", logref.Account(id))
	return nil
}

// Metric returns one of the monitor's counters by name ("checked",
// "stale", "crl", "ocsp"), for tests and operators' tools.
func (m *Monitor) Metric(name string) prometheus.Collector {
	switch name {
	case "checked":
		return m.checked
	case "stale":
		return m.stale
	case "crl", "ocsp":
		return m.spent.WithLabelValues(name)
	}
	return nil
}
