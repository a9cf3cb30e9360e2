package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/internal/metrics"
	"github.com/watashi-id/watashi/idp/store"
)

// KV is the part of the store a queue uses.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	Delete(ctx context.Context, keys ...string) error
	SetAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error
	SetMembers(ctx context.Context, key string) ([]string, error)
	SetRemove(ctx context.Context, key string, members ...string) error
	Publish(ctx context.Context, channel string, msg []byte) error
	Subscribe(ctx context.Context, channel string) (<-chan []byte, error)
}

// Job is one message for one destination.
type Job struct {
	ID       string          `json:"id"`
	Dest     string          `json:"dest"`
	Payload  json.RawMessage `json:"payload"`
	Created  time.Time       `json:"created"`
	Attempts int             `json:"attempts,omitempty"`
	Next     time.Time       `json:"next,omitzero"`
	// LastError is the class of the last failure (never a receiver's
	// answer body), for operators' inspection.
	LastError string `json:"last_error,omitempty"`
}

// Errors of Enqueue.
var (
	// ErrFull: the destination already holds MaxPerDest jobs.
	ErrFull = errors.New("delivery: destination queue full")
	// ErrBadID: an ID or destination that cannot be a key part.
	ErrBadID = errors.New("delivery: bad job or destination ID")
)

// Options configure a queue. Zero values take the defaults.
type Options struct {
	// Name keeps queues apart in the store and in the metrics.
	Name string
	// MaxAttempts before a job is dropped (default 10).
	MaxAttempts int
	// MaxPerDest bounds the jobs waiting for one destination (default 1000).
	MaxPerDest int
	// Retention is the TTL of every record (default 24h): a job older
	// than that is gone whatever its attempts.
	Retention time.Duration
	// Backoff is the first retry delay (default 2s), doubled per attempt
	// up to MaxBackoff (default 10m), with ±20% jitter.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Tick is how often Run looks for due retries without a wake-up
	// (default 1s).
	Tick time.Duration
	// PerRound bounds the jobs sent to one destination before the
	// destination's lease is given back (default 20).
	PerRound int
	Logger   *slog.Logger
	Metrics  prometheus.Registerer
	Now      func() time.Time
}

// Queue is a set of per-destination queues in the store.
type Queue struct {
	kv  KV
	o   Options
	log *slog.Logger

	sent    *prometheus.CounterVec
	dropped *prometheus.CounterVec
}

// maxIDLen bounds a job or destination ID (they become key parts).
const maxIDLen = 200

// leaseTTL bounds how long a destination stays taken by a node that died
// while delivering: a round takes at most PerRound fetcher timeouts.
const leaseTTL = 5 * time.Minute

// New returns a queue.
func New(kv KV, o Options) (*Queue, error) {
	if o.Name == "" || strings.ContainsAny(o.Name, ":{} ") {
		return nil, errors.New("delivery: a queue needs a name without ':', '{', '}' or spaces")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Retention, 24*time.Hour)
	def(&o.Backoff, 2*time.Second)
	def(&o.MaxBackoff, 10*time.Minute)
	def(&o.Tick, time.Second)
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.MaxPerDest <= 0 {
		o.MaxPerDest = 1000
	}
	if o.PerRound <= 0 {
		o.PerRound = 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	q := &Queue{kv: kv, o: o, log: o.Logger.With("queue", o.Name)}
	var err error
	if q.sent, err = metrics.Register(o.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_delivery_attempts_total",
		Help: "Deliveries to relying parties' endpoints by queue and outcome (ok, retry, failed).",
	}, []string{"queue", "outcome"})); err != nil {
		return nil, err
	}
	if q.dropped, err = metrics.Register(o.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_delivery_dropped_total",
		Help: "Messages given up by queue and reason (refused, attempts, full).",
	}, []string{"queue", "reason"})); err != nil {
		return nil, err
	}
	return q, nil
}

func (q *Queue) prefix() string          { return "dq:" + q.o.Name + ":" }
func (q *Queue) destsKey() string        { return q.prefix() + "dests" }
func (q *Queue) destKey(d string) string { return q.prefix() + "d:" + d }
func (q *Queue) jobKey(d, id string) string {
	return q.prefix() + "j:" + ids.Hash(d) + ":" + ids.Hash(id)
}
func (q *Queue) leaseKey(d string) string { return q.prefix() + "lease:" + ids.Hash(d) }
func (q *Queue) channel() string          { return q.prefix() + "wake" }

func checkID(s string) bool {
	if s == "" || len(s) > maxIDLen {
		return false
	}
	for _, r := range s {
		if r < 0x21 || r == 0x7f {
			return false
		}
	}
	return true
}

// Enqueue adds a job for dest unless one with the same ID is already
// there (an event handled twice). It wakes the senders on every node.
func (q *Queue) Enqueue(ctx context.Context, dest, id string, payload []byte) error {
	if !checkID(dest) || !checkID(id) {
		return ErrBadID
	}
	members, err := q.kv.SetMembers(ctx, q.destKey(dest))
	if err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	if slices.Contains(members, id) {
		return nil
	}
	if len(members) >= q.o.MaxPerDest {
		// The set may hold IDs of jobs already expired: prune before
		// refusing.
		if n, err := q.prune(ctx, dest, members); err != nil || n >= q.o.MaxPerDest {
			q.dropped.WithLabelValues(q.o.Name, "full").Inc()
			return ErrFull
		}
	}
	j := Job{ID: id, Dest: dest, Payload: payload, Created: q.o.Now()}
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	ok, err := q.kv.SetNX(ctx, q.jobKey(dest, id), b, q.o.Retention)
	if err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	if !ok {
		return nil // queued meanwhile by another node
	}
	if err := q.kv.SetAdd(ctx, q.destKey(dest), q.o.Retention, id); err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	if err := q.kv.SetAdd(ctx, q.destsKey(), q.o.Retention, dest); err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	_ = q.kv.Publish(ctx, q.channel(), []byte(dest)) // the tick catches a lost wake-up
	return nil
}

// prune removes the IDs of expired jobs from dest's set and returns how
// many remain.
func (q *Queue) prune(ctx context.Context, dest string, members []string) (int, error) {
	jobs, err := q.load(ctx, dest, members)
	return len(jobs), err
}

// load reads the jobs of members, oldest first, removing IDs whose job
// expired.
func (q *Queue) load(ctx context.Context, dest string, members []string) ([]Job, error) {
	var jobs []Job
	var gone []string
	for _, id := range members {
		b, err := q.kv.Get(ctx, q.jobKey(dest, id))
		if errors.Is(err, store.ErrNotFound) {
			gone = append(gone, id)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("delivery: %w", err)
		}
		var j Job
		if err := json.Unmarshal(b, &j); err != nil || j.ID != id {
			gone = append(gone, id)
			_ = q.kv.Delete(ctx, q.jobKey(dest, id))
			continue
		}
		jobs = append(jobs, j)
	}
	if len(gone) > 0 {
		if err := q.kv.SetRemove(ctx, q.destKey(dest), gone...); err != nil {
			return nil, fmt.Errorf("delivery: %w", err)
		}
	}
	slices.SortFunc(jobs, func(a, b Job) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return jobs, nil
}

// Pending returns up to max of dest's jobs, oldest first (SSF poll
// delivery).
func (q *Queue) Pending(ctx context.Context, dest string, max int) ([]Job, error) {
	if !checkID(dest) {
		return nil, ErrBadID
	}
	members, err := q.kv.SetMembers(ctx, q.destKey(dest))
	if err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	jobs, err := q.load(ctx, dest, members)
	if err != nil {
		return nil, err
	}
	if max > 0 && len(jobs) > max {
		jobs = jobs[:max]
	}
	return jobs, nil
}

// Ack deletes dest's jobs ids (unknown IDs are ignored) and reports how
// many it found.
func (q *Queue) Ack(ctx context.Context, dest string, idList ...string) (int, error) {
	if !checkID(dest) {
		return 0, ErrBadID
	}
	members, err := q.kv.SetMembers(ctx, q.destKey(dest))
	if err != nil {
		return 0, fmt.Errorf("delivery: %w", err)
	}
	var keys, found []string
	for _, id := range idList {
		if slices.Contains(members, id) && !slices.Contains(found, id) {
			found = append(found, id)
			keys = append(keys, q.jobKey(dest, id))
		}
	}
	if len(found) == 0 {
		return 0, nil
	}
	if err := q.kv.Delete(ctx, keys...); err != nil {
		return 0, fmt.Errorf("delivery: %w", err)
	}
	if err := q.kv.SetRemove(ctx, q.destKey(dest), found...); err != nil {
		return 0, fmt.Errorf("delivery: %w", err)
	}
	return len(found), nil
}

// Purge deletes every job of dest (a stream deleted, a client gone).
func (q *Queue) Purge(ctx context.Context, dest string) error {
	if !checkID(dest) {
		return ErrBadID
	}
	members, err := q.kv.SetMembers(ctx, q.destKey(dest))
	if err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	keys := []string{q.destKey(dest)}
	for _, id := range members {
		keys = append(keys, q.jobKey(dest, id))
	}
	if err := q.kv.Delete(ctx, keys...); err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	return q.kv.SetRemove(ctx, q.destsKey(), dest)
}

// Sender delivers one job. An error wrapped by Permanent drops the job;
// any other error is temporary and the job is retried.
type Sender func(ctx context.Context, j Job) error

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as a failure retrying cannot mend (the receiver
// refused the message, the destination is gone).
func Permanent(err error) error { return permanent{err} }

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

type later struct{ d time.Duration }

func (l later) Error() string { return "delivery: held for " + l.d.String() }

// Later asks for the job to be tried again after d without counting an
// attempt (a paused receiver). Retention still bounds how long it waits.
func Later(d time.Duration) error { return later{d} }

// Run delivers due jobs with send until ctx ends.
func (q *Queue) Run(ctx context.Context, send Sender) {
	wake, err := q.kv.Subscribe(ctx, q.channel())
	if err != nil {
		q.log.Warn("delivery: no wake-ups, polling only", "err", err)
	}
	t := time.NewTicker(q.o.Tick)
	defer t.Stop()
	for {
		q.Round(ctx, send)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
	}
}

// Round works every destination once: the jobs due now, in order,
// stopping at a destination's first temporary failure. Destinations are
// worked concurrently (a slow receiver does not hold up the others), at
// most eight at a time.
func (q *Queue) Round(ctx context.Context, send Sender) {
	dests, err := q.kv.SetMembers(ctx, q.destsKey())
	if err != nil {
		q.log.Warn("delivery: list destinations", "err", err)
		return
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, d := range dests {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			q.work(ctx, d, send)
		}()
	}
	wg.Wait()
}

func (q *Queue) work(ctx context.Context, dest string, send Sender) {
	members, err := q.kv.SetMembers(ctx, q.destKey(dest))
	if err != nil || len(members) == 0 {
		return
	}
	ok, err := q.kv.SetNX(ctx, q.leaseKey(dest), []byte("1"), leaseTTL)
	if err != nil || !ok {
		return // another node works it
	}
	defer func() { _ = q.kv.Delete(context.WithoutCancel(ctx), q.leaseKey(dest)) }()
	jobs, err := q.load(ctx, dest, members)
	if err != nil {
		q.log.Warn("delivery: load jobs", "err", err)
		return
	}
	done := 0
	for _, j := range jobs {
		if done >= q.o.PerRound || ctx.Err() != nil {
			return
		}
		if j.Next.After(q.o.Now()) {
			return // the oldest waits: later ones wait behind it
		}
		done++
		err := send(ctx, j)
		switch {
		case err == nil:
			q.sent.WithLabelValues(q.o.Name, "ok").Inc()
			q.remove(ctx, j)
			continue
		case IsPermanent(err):
			q.sent.WithLabelValues(q.o.Name, "failed").Inc()
			q.dropped.WithLabelValues(q.o.Name, "refused").Inc()
			q.log.Warn("delivery: refused, dropped", "err", err, "attempts", j.Attempts+1)
			q.remove(ctx, j)
			continue
		}
		var hold later
		if errors.As(err, &hold) {
			j.Next = q.o.Now().Add(hold.d)
			if b, err := json.Marshal(j); err == nil {
				_ = q.kv.Set(ctx, q.jobKey(dest, j.ID), b, q.o.Retention)
			}
			return
		}
		q.sent.WithLabelValues(q.o.Name, "retry").Inc()
		j.Attempts++
		if j.Attempts >= q.o.MaxAttempts {
			q.dropped.WithLabelValues(q.o.Name, "attempts").Inc()
			q.log.Warn("delivery: given up", "err", err, "attempts", j.Attempts)
			q.remove(ctx, j)
			return
		}
		j.Next = q.o.Now().Add(q.backoff(j.Attempts))
		j.LastError = errClass(err)
		q.log.Info("delivery: will retry", "err", err, "attempts", j.Attempts, "in", j.Next.Sub(q.o.Now()).Round(time.Millisecond))
		if b, err := json.Marshal(j); err == nil {
			// The job lives at most Retention past its last attempt, and
			// MaxAttempts bounds the attempts.
			_ = q.kv.Set(ctx, q.jobKey(dest, j.ID), b, q.o.Retention)
		}
		return
	}
}

func (q *Queue) remove(ctx context.Context, j Job) {
	ctx = context.WithoutCancel(ctx)
	_ = q.kv.Delete(ctx, q.jobKey(j.Dest, j.ID))
	_ = q.kv.SetRemove(ctx, q.destKey(j.Dest), j.ID)
}

// backoff is the delay before attempt n+1: Backoff·2^(n-1), capped,
// ±20% jitter so that receivers back from an outage are not hit by every
// queue at once.
func (q *Queue) backoff(n int) time.Duration {
	d := q.o.Backoff
	for i := 1; i < n && d < q.o.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, q.o.MaxBackoff)
	jitter := time.Duration(rand.Int64N(int64(d)/5*2+1)) - d/5
	return d + jitter
}

// errClass is a short name of a failure, free of receivers' text.
func errClass(err error) string {
	var c interface{ Class() string }
	if errors.As(err, &c) {
		return c.Class()
	}
	return "error"
}
