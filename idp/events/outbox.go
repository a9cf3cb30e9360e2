package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/watashi-id/watashi/idp/store"
)

// KV is the part of the store the outbox uses.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error)
	Delete(ctx context.Context, keys ...string) error
	SetAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error
	SetMembers(ctx context.Context, key string) ([]string, error)
	Publish(ctx context.Context, channel string, msg []byte) error
	Subscribe(ctx context.Context, channel string) (<-chan []byte, error)
	StreamAdd(ctx context.Context, key string, value []byte) (string, error)
	StreamRange(ctx context.Context, key, after string, count int) ([]store.StreamEntry, error)
	StreamTrim(ctx context.Context, key, minID string) (int64, error)
}

// Store keys. The stream, the cursors and the consumer set are durable;
// a lease lives as long as its holder renews it.
const (
	streamKey    = "events:log"
	wakeChannel  = "events:wake"
	consumersKey = "events:consumers"
	cursorPrefix = "events:cursor:"
	leasePrefix  = "events:lease:"
	// startCursor is below every ID StreamAdd makes.
	startCursor = "0-0"
)

// Defaults of the Outbox's settings.
const (
	DefaultRetention  = 7 * 24 * time.Hour
	DefaultMaxAge     = 30 * 24 * time.Hour
	DefaultLeaseTTL   = 15 * time.Second
	DefaultPoll       = 5 * time.Second
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 5 * time.Minute
	DefaultTrimEvery  = time.Hour
	DefaultWakeDelay  = 100 * time.Millisecond
	batch             = 100
)

var consumerName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// Outbox is the durable, ordered log of what happened to accounts, and
// its consumers' cursors. Settings may be changed before first use.
type Outbox struct {
	kv  KV
	log *slog.Logger

	// Retention is how long an event that every consumer has handled is
	// kept (for a consumer added later, and for operators).
	Retention time.Duration
	// MaxAge bounds the log even when a consumer stopped for good: older
	// entries go whether handled or not.
	MaxAge time.Duration
	// LeaseTTL is how long a consumer's lease outlives a node that died
	// holding it; the holder renews it every third of that.
	LeaseTTL time.Duration
	// Poll is how often an idle consumer looks at the log without a
	// wake-up (pub/sub messages can be lost).
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the wait before a failed handle is
	// retried; it doubles between them.
	MinBackoff, MaxBackoff time.Duration
	// TrimEvery is how often a consumer trims the log.
	TrimEvery time.Duration
	// WakeDelay is how long a node gathers the events it appends before
	// it wakes the consumers once for all of them: a wake-up per event
	// would cost each sign-in a round trip, and every consumer a read
	// per event, for deliveries that a tenth of a second does not harm.
	WakeDelay time.Duration

	now func() time.Time

	mu       sync.Mutex
	lastTrim time.Time
	// waking is set while a wake-up is scheduled.
	waking bool
}

// NewOutbox returns an outbox over kv with the default settings.
func NewOutbox(kv KV, log *slog.Logger) *Outbox {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Outbox{
		kv: kv, log: log,
		Retention: DefaultRetention, MaxAge: DefaultMaxAge, LeaseTTL: DefaultLeaseTTL,
		Poll: DefaultPoll, MinBackoff: DefaultMinBackoff, MaxBackoff: DefaultMaxBackoff,
		TrimEvery: DefaultTrimEvery, WakeDelay: DefaultWakeDelay,
		now: time.Now,
	}
}

// AppendOp is Publish as a batch operation (store.KV.Do), for a change
// whose event is best appended in the change's own round trip; once the
// batch has run, Appended wakes the consumers.
func (o *Outbox) AppendOp(e Event) (store.Op, error) {
	b, err := o.encode(e)
	if err != nil {
		return store.Op{}, err
	}
	return store.StreamAdd(streamKey, b), nil
}

// Appended wakes the consumers for an event AppendOp's operation added
// (res, its result); a failed append is returned.
func (o *Outbox) Appended(res store.Result) error {
	if res.Err != nil {
		return fmt.Errorf("events: append: %w", res.Err)
	}
	o.wakeSoon(string(res.Val))
	return nil
}

func (o *Outbox) encode(e Event) ([]byte, error) {
	if err := e.validate(); err != nil {
		return nil, err
	}
	if e.Time.IsZero() {
		e.Time = o.now()
	}
	e.Time = e.Time.UTC().Truncate(time.Millisecond)
	e.ID = ""
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("events: encode: %w", err)
	}
	return b, nil
}

// Publish appends e durably (setting its ID and, if zero, its Time) and
// wakes the consumers on every node. An error means the event may not be
// stored; the caller decides whether its own action fails with it.
func (o *Outbox) Publish(ctx context.Context, e Event) error {
	b, err := o.encode(e)
	if err != nil {
		return err
	}
	id, err := o.kv.StreamAdd(ctx, streamKey, b)
	if err != nil {
		return fmt.Errorf("events: append: %w", err)
	}
	o.wakeSoon(id)
	return nil
}

// wakeSoon publishes one wake-up WakeDelay after the first of a burst of
// appends, on its own context: the entry is stored, and a lost wake-up
// only delays consumers until their next poll.
func (o *Outbox) wakeSoon(id string) {
	o.mu.Lock()
	if o.waking {
		o.mu.Unlock()
		return
	}
	o.waking = true
	o.mu.Unlock()
	time.AfterFunc(o.WakeDelay, func() {
		o.mu.Lock()
		o.waking = false
		o.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := o.kv.Publish(ctx, wakeChannel, []byte(id)); err != nil {
			o.log.Warn("events: wake-up not published", "err", err)
		}
	})
}

// Consume calls handle for every event after the consumer's cursor, in
// order, until ctx ends, and then returns ctx's error. A consumer seen
// for the first time starts at the oldest event kept. One node at a time
// holds the consumer's lease; the others wait and take over when it
// lapses. A handle error is retried with backoff and the cursor does not
// pass the event (at least once), so handle must be idempotent or queue
// its own retries. An event that cannot be decoded is logged and passed.
func (o *Outbox) Consume(ctx context.Context, name string, handle func(context.Context, Event) error) error {
	if !consumerName.MatchString(name) {
		return fmt.Errorf("events: consumer name %q: lowercase letters, digits, '_', '.', '-', at most 63", name)
	}
	if handle == nil {
		return errors.New("events: consumer without a handler")
	}
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return err
	}
	token := []byte(hex.EncodeToString(tok[:]))
	wake := o.subscribe(ctx)
	log := o.log.With("consumer", name)
	for {
		held, err := o.acquire(ctx, name, token)
		if err != nil && ctx.Err() == nil {
			log.Warn("events: lease", "err", err)
		}
		if held {
			o.hold(ctx, name, token, log, func(lctx context.Context) {
				o.run(lctx, name, handle, &wake, log)
			})
		}
		if !sleep(ctx, o.LeaseTTL/3, nil) {
			return ctx.Err()
		}
	}
}

// subscribe returns the wake-up channel, or nil (poll only) when the
// store refuses the subscription.
func (o *Outbox) subscribe(ctx context.Context) <-chan []byte {
	ch, err := o.kv.Subscribe(ctx, wakeChannel)
	if err != nil {
		o.log.Warn("events: no wake-ups, polling only", "err", err)
		return nil
	}
	return ch
}

func (o *Outbox) acquire(ctx context.Context, name string, token []byte) (bool, error) {
	ok, err := o.kv.SetNX(ctx, leasePrefix+name, token, o.LeaseTTL)
	if err != nil || ok {
		return ok, err
	}
	cur, err := o.kv.Get(ctx, leasePrefix+name)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil && string(cur) == string(token), err
}

// hold runs fn with a context that ends when ctx does or when the lease
// is lost (another holder, or no renewal for two thirds of its TTL), and
// renews the lease meanwhile. On the way out it gives the lease back so
// that another node need not wait for it to lapse.
func (o *Outbox) hold(ctx context.Context, name string, token []byte, log *slog.Logger, fn func(context.Context)) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(lctx)
	}()
	key := leasePrefix + name
	renewed := o.now()
	t := time.NewTicker(o.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-done:
			o.release(key, token)
			return
		case <-t.C:
			cur, err := o.kv.Get(lctx, key)
			switch {
			case err == nil && string(cur) == string(token):
				// Between this Get and Set the lease could lapse and be
				// taken; the cursor's compare-and-swap keeps that from
				// costing more than one event handled twice.
				if err := o.kv.Set(lctx, key, token, o.LeaseTTL); err == nil {
					renewed = o.now()
					continue
				} else if lctx.Err() == nil {
					log.Warn("events: lease renewal", "err", err)
				}
			case err == nil || errors.Is(err, store.ErrNotFound):
				log.Info("events: lease lost")
				cancel()
			default:
				if lctx.Err() == nil {
					log.Warn("events: lease renewal", "err", err)
				}
			}
			if o.now().Sub(renewed) > 2*o.LeaseTTL/3 {
				cancel()
			}
		}
	}
}

func (o *Outbox) release(key string, token []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if cur, err := o.kv.Get(ctx, key); err == nil && string(cur) == string(token) {
		_ = o.kv.Delete(ctx, key)
	}
}

// run hands events to handle while ctx (the lease) lasts.
func (o *Outbox) run(ctx context.Context, name string, handle func(context.Context, Event) error, wake *<-chan []byte, log *slog.Logger) {
	key := cursorPrefix + name
	backoff := o.MinBackoff
	fail := func(what string, err error) bool {
		if ctx.Err() == nil {
			log.Warn("events: "+what, "err", err)
		}
		ok := sleep(ctx, backoff, nil)
		backoff = min(2*backoff, o.MaxBackoff)
		return ok
	}
	var cursor string
	for cursor == "" {
		c, err := o.cursor(ctx, name)
		if err != nil {
			if !fail("cursor", err) {
				return
			}
			continue
		}
		cursor = c
	}
	backoff = o.MinBackoff
	for ctx.Err() == nil {
		entries, err := o.kv.StreamRange(ctx, streamKey, cursor, batch)
		if err != nil {
			if !fail("read", err) {
				return
			}
			continue
		}
		backoff = o.MinBackoff
		if len(entries) == 0 {
			o.maybeTrim(ctx, log)
			if !sleep(ctx, o.Poll, wake) {
				return
			}
			continue
		}
		// The cursor moves once per batch, not once per event: a round
		// trip per event and consumer was most of what consuming cost.
		// A handler that is slow or failing must not hold back what was
		// handled before it, so its progress is also saved when a
		// delivery takes longer than commitAfter; and what was handled
		// is saved before run returns, so that the next holder of the
		// lease does not handle it again.
		p := &progress{o: o, key: key, committed: cursor, log: log}
		for _, ent := range entries {
			var e Event
			if err := json.Unmarshal(ent.Value, &e); err != nil {
				log.Error("events: undecodable entry passed", "id", ent.ID, "err", err)
				p.handled(ent.ID)
				continue
			}
			e.ID = ent.ID
			t := time.AfterFunc(commitAfter, func() { p.save(ctx) })
			ok := o.deliver(ctx, e, handle, log)
			t.Stop()
			if !ok {
				p.save(ctx)
				return
			}
			p.handled(ent.ID)
		}
		for {
			last, moved, err := p.save(ctx)
			if moved {
				return
			}
			if err == nil {
				cursor = last
				break
			}
			if !fail("cursor", err) {
				return
			}
		}
		backoff = o.MinBackoff
	}
}

// commitAfter is how long a delivery may take before the progress made
// before it is saved.
const commitAfter = 50 * time.Millisecond

// progress is a consumer's position in one batch: what it handled, and
// what the store's cursor says.
type progress struct {
	o         *Outbox
	key       string
	log       *slog.Logger
	mu        sync.Mutex
	committed string // the cursor as stored
	delivered string // the last entry handled ("" for none yet)
}

func (p *progress) handled(id string) {
	p.mu.Lock()
	p.delivered = id
	p.mu.Unlock()
}

// save moves the stored cursor to the last entry handled. It runs on a
// context of its own: a lease that just ended does not make handled
// events unhandled, and the compare-and-swap refuses when another node
// moved the cursor meanwhile (moved).
func (p *progress) save(ctx context.Context) (cursor string, moved bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.delivered == "" || p.delivered == p.committed {
		return p.committed, false, nil
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	ok, err := p.o.kv.CompareAndSwap(sctx, p.key, []byte(p.committed), []byte(p.delivered))
	switch {
	case err != nil:
		return p.committed, false, err
	case !ok:
		p.log.Info("events: cursor moved elsewhere")
		return p.committed, true, nil
	}
	p.committed = p.delivered
	return p.committed, false, nil
}

// deliver calls handle until it succeeds or ctx ends.
func (o *Outbox) deliver(ctx context.Context, e Event, handle func(context.Context, Event) error, log *slog.Logger) bool {
	backoff := o.MinBackoff
	for attempt := 1; ; attempt++ {
		err := handle(ctx, e)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		log.Warn("events: handler failed, retrying", "id", e.ID, "kind", string(e.Kind), "attempt", attempt, "in", backoff, "err", err)
		if !sleep(ctx, backoff, nil) {
			return false
		}
		backoff = min(2*backoff, o.MaxBackoff)
	}
}

// cursor reads the consumer's cursor, creating it at the start of the
// log for a consumer seen for the first time, and registers the consumer
// so that trimming waits for it.
func (o *Outbox) cursor(ctx context.Context, name string) (string, error) {
	if err := o.kv.SetAdd(ctx, consumersKey, 0, name); err != nil {
		return "", err
	}
	if _, err := o.kv.SetNX(ctx, cursorPrefix+name, []byte(startCursor), 0); err != nil {
		return "", err
	}
	b, err := o.kv.Get(ctx, cursorPrefix+name)
	if err != nil {
		return "", err
	}
	if _, _, ok := store.ParseStreamID(string(b)); !ok {
		return "", fmt.Errorf("events: malformed cursor %q", b)
	}
	return string(b), nil
}

// maybeTrim drops, at most once per TrimEvery on this node, the entries
// older than Retention that every registered consumer has passed, and
// those older than MaxAge regardless.
func (o *Outbox) maybeTrim(ctx context.Context, log *slog.Logger) {
	o.mu.Lock()
	now := o.now()
	if !o.lastTrim.IsZero() && now.Sub(o.lastTrim) < o.TrimEvery {
		o.mu.Unlock()
		return
	}
	o.lastTrim = now
	o.mu.Unlock()
	n, err := o.Trim(ctx)
	if err != nil {
		log.Warn("events: trim", "err", err)
		return
	}
	if n > 0 {
		log.Info("events: trimmed", "entries", n)
	}
}

// Maintain trims the log every TrimEvery until ctx ends, so that it
// stays bounded on a node that runs no consumer (or before any consumer
// exists). Every node may run it; trims are idempotent.
func (o *Outbox) Maintain(ctx context.Context) {
	for {
		o.maybeTrim(ctx, o.log)
		if !sleep(ctx, o.TrimEvery, nil) {
			return
		}
	}
}

// Trim applies the retention now and reports how many entries it
// dropped. Consumers call it on their own; operators' tools may too.
func (o *Outbox) Trim(ctx context.Context) (int64, error) {
	now := o.now()
	minID := idAt(now.Add(-o.Retention))
	names, err := o.kv.SetMembers(ctx, consumersKey)
	if err != nil {
		return 0, err
	}
	for _, name := range names {
		b, err := o.kv.Get(ctx, cursorPrefix+name)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		ms, seq, ok := store.ParseStreamID(string(b))
		if !ok {
			continue
		}
		next := fmt.Sprintf("%d-%d", ms, seq+1)
		if idLess(next, minID) {
			minID = next
		}
	}
	if floor := idAt(now.Add(-o.MaxAge)); idLess(minID, floor) {
		minID = floor
	}
	return o.kv.StreamTrim(ctx, streamKey, minID)
}

// idAt is the lowest stream ID of the millisecond t.
func idAt(t time.Time) string {
	ms := max(t.UnixMilli(), 0)
	return fmt.Sprintf("%d-0", ms)
}

func idLess(a, b string) bool {
	am, as, _ := store.ParseStreamID(a)
	bm, bs, _ := store.ParseStreamID(b)
	return am < bm || (am == bm && as < bs)
}

// sleep waits d, or until a wake-up arrives, and reports false when ctx
// ended first. A closed wake-up channel is dropped (polling goes on).
func sleep(ctx context.Context, d time.Duration, wake *<-chan []byte) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	var w <-chan []byte
	if wake != nil {
		w = *wake
	}
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case _, ok := <-w:
		if !ok {
			*wake = nil
		}
	}
	return ctx.Err() == nil
}
