package store

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/internal/metrics"
)

// Operation names, the values of the op label.
var ops = []string{
	"get", "set", "setnx", "take", "delete", "cas", "incr", "set_add", "set_members", "set_remove",
	"publish", "subscribe", "stream_add", "stream_range", "ping",
	"scan", "snapshot", "restore", "batch",
}

// Instrumented is a KV that times every operation of the KV it wraps:
//
//	watashi_store_operation_duration_seconds{op}  histogram
//	watashi_store_errors_total{op,kind}           counter; kind is timeout,
//	                                              not_replicated or error
//	watashi_store_round_trips_total{origin}       counter; origin is request
//	                                              or background (ServingRequest)
//
// A missing key (ErrNotFound) is an answer, not an error. Every op label
// is created at zero so that dashboards and alerts see the series before
// the first failure.
type Instrumented struct {
	kv       KV
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	// The round-trip counters of the two origins, resolved once: every
	// store operation counts in one.
	reqTrips, bgTrips prometheus.Counter
}

type originKey struct{}

// ServingRequest marks ctx as an HTTP request's, so that the round trips
// made with it count under origin="request": what a login costs the
// store is then read apart from what the background consumers spend at
// the same time.
func ServingRequest(ctx context.Context) context.Context {
	return context.WithValue(ctx, originKey{}, true)
}

func (m *Instrumented) trip(ctx context.Context) {
	if ctx.Value(originKey{}) != nil {
		m.reqTrips.Inc()
	} else {
		m.bgTrips.Inc()
	}
}

// Instrument wraps kv; reg is the provider's registry (never the global
// one). Wrapping twice on one registry shares the collectors.
func Instrument(kv KV, reg prometheus.Registerer) (*Instrumented, error) {
	d, err := metrics.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "watashi_store_operation_duration_seconds",
		Help: "Latency of storage operations, by operation, including the wait for replicas on durable writes.",
		// From a loopback Redis (~100 µs) to the default command timeout.
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"op"}))
	if err != nil {
		return nil, err
	}
	e, err := metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_store_errors_total",
		Help: "Storage operations that failed, by operation and kind (timeout, not_replicated, error).",
	}, []string{"op", "kind"}))
	if err != nil {
		return nil, err
	}
	rt, err := metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_store_round_trips_total",
		Help: "Round trips to the store (a batch is one), by origin: request (an HTTP request's handler) or background (consumers, sweeps, start-up).",
	}, []string{"origin"}))
	if err != nil {
		return nil, err
	}
	for _, op := range ops {
		d.WithLabelValues(op)
		for _, kind := range []string{"timeout", "not_replicated", "error"} {
			e.WithLabelValues(op, kind)
		}
	}
	return &Instrumented{kv: kv, duration: d, errors: e, reqTrips: rt.WithLabelValues("request"), bgTrips: rt.WithLabelValues("background")}, nil
}

// Unwrap returns the wrapped store.
func (m *Instrumented) Unwrap() KV { return m.kv }

func (m *Instrumented) observe(ctx context.Context, op string, start time.Time, err error) {
	m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	m.trip(ctx)
	switch {
	case err == nil, errors.Is(err, ErrNotFound), errors.Is(err, context.Canceled), errors.Is(err, ErrSnapshotChanged):
		// A caller that went away is not the store failing, nor are
		// writers that kept a snapshot from holding still.
	case errors.Is(err, ErrNotReplicated):
		m.errors.WithLabelValues(op, "not_replicated").Inc()
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		m.errors.WithLabelValues(op, "timeout").Inc()
	default:
		m.errors.WithLabelValues(op, "error").Inc()
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func (m *Instrumented) Get(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	v, err := m.kv.Get(ctx, key)
	m.observe(ctx, "get", start, err)
	return v, err
}

func (m *Instrumented) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	start := time.Now()
	err := m.kv.Set(ctx, key, val, ttl)
	m.observe(ctx, "set", start, err)
	return err
}

func (m *Instrumented) SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	start := time.Now()
	ok, err := m.kv.SetNX(ctx, key, val, ttl)
	m.observe(ctx, "setnx", start, err)
	return ok, err
}

func (m *Instrumented) Take(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	v, err := m.kv.Take(ctx, key)
	m.observe(ctx, "take", start, err)
	return v, err
}

func (m *Instrumented) Delete(ctx context.Context, keys ...string) error {
	start := time.Now()
	err := m.kv.Delete(ctx, keys...)
	m.observe(ctx, "delete", start, err)
	return err
}

func (m *Instrumented) CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error) {
	start := time.Now()
	ok, err := m.kv.CompareAndSwap(ctx, key, old, new)
	m.observe(ctx, "cas", start, err)
	return ok, err
}

func (m *Instrumented) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	start := time.Now()
	n, err := m.kv.Incr(ctx, key, ttl)
	m.observe(ctx, "incr", start, err)
	return n, err
}

func (m *Instrumented) SetAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error {
	start := time.Now()
	err := m.kv.SetAdd(ctx, key, ttl, members...)
	m.observe(ctx, "set_add", start, err)
	return err
}

func (m *Instrumented) SetMembers(ctx context.Context, key string) ([]string, error) {
	start := time.Now()
	v, err := m.kv.SetMembers(ctx, key)
	m.observe(ctx, "set_members", start, err)
	return v, err
}

func (m *Instrumented) SetRemove(ctx context.Context, key string, members ...string) error {
	start := time.Now()
	err := m.kv.SetRemove(ctx, key, members...)
	m.observe(ctx, "set_remove", start, err)
	return err
}

func (m *Instrumented) Publish(ctx context.Context, channel string, msg []byte) error {
	start := time.Now()
	err := m.kv.Publish(ctx, channel, msg)
	m.observe(ctx, "publish", start, err)
	return err
}

// Subscribe times the subscription's set-up, not its lifetime.
func (m *Instrumented) Subscribe(ctx context.Context, channel string) (<-chan []byte, error) {
	start := time.Now()
	ch, err := m.kv.Subscribe(ctx, channel)
	m.observe(ctx, "subscribe", start, err)
	return ch, err
}

func (m *Instrumented) StreamAdd(ctx context.Context, key string, value []byte) (string, error) {
	start := time.Now()
	id, err := m.kv.StreamAdd(ctx, key, value)
	m.observe(ctx, "stream_add", start, err)
	return id, err
}

func (m *Instrumented) StreamRange(ctx context.Context, key, after string, count int) ([]StreamEntry, error) {
	start := time.Now()
	v, err := m.kv.StreamRange(ctx, key, after, count)
	m.observe(ctx, "stream_range", start, err)
	return v, err
}

func (m *Instrumented) StreamTrim(ctx context.Context, key, minID string) (int64, error) {
	start := time.Now()
	n, err := m.kv.StreamTrim(ctx, key, minID)
	m.observe(ctx, "stream_trim", start, err)
	return n, err
}

func (m *Instrumented) Ping(ctx context.Context) error {
	start := time.Now()
	err := m.kv.Ping(ctx)
	m.observe(ctx, "ping", start, err)
	return err
}

func (m *Instrumented) Close() error  { return m.kv.Close() }
func (m *Instrumented) Durable() bool { return m.kv.Durable() }

// Do times the batch as one operation: one round trip.
func (m *Instrumented) Do(ctx context.Context, ops ...Op) ([]Result, error) {
	start := time.Now()
	res, err := m.kv.Do(ctx, ops...)
	if seen := err; seen == nil {
		m.observe(ctx, "batch", start, FirstErr(res))
	} else {
		m.observe(ctx, "batch", start, seen)
	}
	return res, err
}

// Scan times the whole scan, fn included.
func (m *Instrumented) Scan(ctx context.Context, prefix string, fn func(key string) error) error {
	start := time.Now()
	err := m.kv.Scan(ctx, prefix, fn)
	m.observe(ctx, "scan", start, err)
	return err
}

// Snapshot times the whole snapshot, fn included.
func (m *Instrumented) Snapshot(ctx context.Context, prefix string, fn func(Record) error) error {
	start := time.Now()
	err := m.kv.Snapshot(ctx, prefix, fn)
	m.observe(ctx, "snapshot", start, err)
	return err
}

func (m *Instrumented) Restore(ctx context.Context, rec Record) error {
	start := time.Now()
	err := m.kv.Restore(ctx, rec)
	m.observe(ctx, "restore", start, err)
	return err
}
