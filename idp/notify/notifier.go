package notify

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/internal/metrics"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
)

// Names turns the IDs an event carries into what a resident recognises.
type Names interface {
	// ClientName is the relying party's display name; "" with no error
	// for a client that is gone (deleted, revoked), an error only when
	// it cannot be told now, which delays the mail.
	ClientName(ctx context.Context, clientID string) (string, error)
	// PasskeyName is the resident's own name for one of their passkeys.
	PasskeyName(ctx context.Context, accountID, passkeyID string) (string, error)
}

// Mailer sends one rendered message (*Sender).
type Mailer interface {
	Send(ctx context.Context, to string, msg []byte) error
	From() string
}

// Options configure a Notifier.
type Options struct {
	Store  KV
	Ring   *seal.Ring
	Mailer Mailer
	Names  Names
	Subs   *Subscriptions
	// Issuer is the provider's URL; links in the mails point below it.
	Issuer string
	// LinkKey signs the "this wasn't me" links (>= 32 bytes).
	LinkKey []byte
	Logger  *slog.Logger
	Now     func() time.Time
	// PollInterval is how often the queue is read (default 1 s);
	// Enqueue also wakes it.
	PollInterval time.Duration
	// Metrics receives watashi_notify_mails_total (default: a private
	// registry).
	Metrics prometheus.Registerer
}

// Delivery bounds. A mail is retried with exponential backoff from
// MinBackoff to MaxBackoff and dropped after MaxAge; an account gets at
// most MaxPerHour mails an hour, so that the queue stays bounded by the
// number of residents who opted in.
const (
	MinBackoff = time.Second
	MaxBackoff = 10 * time.Minute
	MaxAge     = 48 * time.Hour
	MaxPerHour = 30
	// NotMeTTL is how long a "this wasn't me" link works.
	NotMeTTL = 7 * 24 * time.Hour
	jobTTL   = MaxAge + time.Hour
	// seenTTL outlives the events outbox's retention, so that no
	// redelivered event can queue its mail twice.
	seenTTL = 8 * 24 * time.Hour
)

// ConsumerName is the notifier's name as a consumer of the events
// outbox.
const ConsumerName = "notify-mail"

// Job kinds.
const (
	kindSignedIn   = "signed_in"
	kindFactsStale = "facts_stale"
	kindConfirm    = "confirm"
)

const (
	jobsKey     = "notify:jobs"
	wakeChannel = "notify:wake"
)

func jobKey(id string) string     { return "notify:job:" + id }
func lockKey(id string) string    { return "notify:lock:" + id }
func usedKey(nonce string) string { return "notify:used:" + nonce }

// payload is a job's content, sealed at rest: it can hold an address
// not yet confirmed and a confirmation token.
type payload struct {
	Kind    string    `json:"kind"`
	Account string    `json:"account"`
	Client  string    `json:"client,omitempty"`
	Method  string    `json:"method,omitempty"`
	Time    time.Time `json:"time"`
	To      string    `json:"to,omitempty"`    // confirm only
	Token   string    `json:"token,omitempty"` // confirm only
}

// job is the stored record: delivery state in the clear, content sealed.
type job struct {
	Created  time.Time `json:"created"`
	Next     time.Time `json:"next"`
	Attempts int       `json:"attempts"`
	DK       []byte    `json:"dk"`
	Payload  []byte    `json:"payload"`
}

// Notifier queues and sends the residents' notification mails.
type Notifier struct {
	o       Options
	log     *slog.Logger
	sent    atomic.Int64
	dropped atomic.Int64
	mails   *prometheus.CounterVec
}

// New checks the options.
func New(o Options) (*Notifier, error) {
	if o.Store == nil || o.Ring == nil || o.Mailer == nil || o.Names == nil || o.Subs == nil {
		return nil, errors.New("notify: a dependency is missing")
	}
	if len(o.LinkKey) < 32 {
		return nil, errors.New("notify: the link key must be at least 32 bytes")
	}
	if o.Issuer == "" {
		return nil, errors.New("notify: the issuer is required for links")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.Metrics == nil {
		o.Metrics = prometheus.NewRegistry()
	}
	mails, err := metrics.Register(o.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_notify_mails_total",
		Help: "Notification mails by kind (signed_in, facts_stale, confirm) and outcome (queued, sent, retry, dropped).",
	}, []string{"kind", "outcome"}))
	if err != nil {
		return nil, err
	}
	return &Notifier{o: o, log: o.Logger, mails: mails}, nil
}

// Subscription returns the account's confirmed address, if any.
func (n *Notifier) Subscription(ctx context.Context, accountID string) (string, bool, error) {
	s, err := n.o.Subs.Get(ctx, accountID)
	if errors.Is(err, ErrNotSubscribed) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return s.Address, true, nil
}

// Cancel stops the account's notices; mails already queued are dropped
// when their turn comes.
func (n *Notifier) Cancel(ctx context.Context, accountID string) error {
	return n.o.Subs.Cancel(ctx, accountID)
}

// Sent and Dropped count this node's deliveries and the mails it gave up.
func (n *Notifier) Sent() int64    { return n.sent.Load() }
func (n *Notifier) Dropped() int64 { return n.dropped.Load() }

// HandleEvent is the outbox consumer: a sign-in or stale facts of an
// account with a confirmed address queues one mail, named after the
// event so that a redelivered event queues nothing more. It touches only
// the store, never the mail relay, so a relay outage cannot hold up the
// outbox, let alone a sign-in.
func (n *Notifier) HandleEvent(ctx context.Context, e events.Event) error {
	var kind string
	switch e.Kind {
	case events.SignedIn:
		kind = kindSignedIn
	case events.FactsStale:
		kind = kindFactsStale
	default:
		return nil
	}
	sub, err := n.o.Subs.Get(ctx, e.AccountID)
	if errors.Is(err, ErrNotSubscribed) {
		return nil
	} else if err != nil {
		return err
	}
	if e.Time.Before(sub.ConfirmedAt.Truncate(time.Millisecond)) {
		// What happened before the address was confirmed is not told
		// to it, however late the outbox hands it over.
		return nil
	}
	p := payload{Kind: kind, Account: e.AccountID, Method: e.Method, Time: e.Time}
	if len(e.ClientIDs) > 0 {
		p.Client = e.ClientIDs[0]
	}
	return n.enqueue(ctx, "ev-"+e.ID, p)
}

// RequestConfirmation checks the address, records the pending
// confirmation and queues the mail with its link.
func (n *Notifier) RequestConfirmation(ctx context.Context, accountID, address string) error {
	tok, err := n.o.Subs.Request(ctx, accountID, address)
	if err != nil {
		return err
	}
	return n.enqueue(ctx, "cf-"+tokenHash(tok)[:32], payload{Kind: kindConfirm, Account: accountID, Time: n.o.Now().UTC(), To: address, Token: tok})
}

func (n *Notifier) enqueue(ctx context.Context, id string, p payload) error {
	// The outbox delivers at least once: an event seen before, whether
	// its mail is still queued or long sent, queues nothing.
	fresh, err := n.o.Store.SetNX(ctx, "notify:seen:"+id, []byte{1}, seenTTL)
	if err != nil {
		return err
	}
	if !fresh {
		return nil
	}
	count, err := n.o.Store.Incr(ctx, "notify:rate:"+p.Account, time.Hour)
	if err != nil {
		return err
	}
	if count > MaxPerHour {
		n.dropped.Add(1)
		n.mails.WithLabelValues(p.Kind, "dropped").Inc()
		n.log.WarnContext(ctx, "notify: mail not queued: the account's hourly bound is reached", "kind", p.Kind)
		return nil
	}
	key := jobKey(id)
	sealer, dk, err := n.o.Ring.NewSealer([]byte(key))
	if err != nil {
		return err
	}
	pb, err := json.Marshal(p)
	if err != nil {
		return err
	}
	now := n.o.Now().UTC()
	rec, err := json.Marshal(job{Created: now, Next: now, DK: dk, Payload: sealer.Seal(pb, []byte(key))})
	if err != nil {
		return err
	}
	if _, err := n.o.Store.SetNX(ctx, key, rec, jobTTL); err != nil {
		return err
	}
	if err := n.o.Store.SetAdd(ctx, jobsKey, 0, id); err != nil {
		return err
	}
	n.mails.WithLabelValues(p.Kind, "queued").Inc()
	_ = n.o.Store.Publish(ctx, wakeChannel, nil)
	return nil
}

// Run sends what is queued until ctx ends: every PollInterval, and at
// once when a node queues a mail. Any number of nodes may run it; a
// short lock per mail keeps two from sending the same one.
func (n *Notifier) Run(ctx context.Context) error {
	wake, err := n.o.Store.Subscribe(ctx, wakeChannel)
	if err != nil {
		wake = nil
	}
	t := time.NewTicker(n.o.PollInterval)
	defer t.Stop()
	for {
		n.Drain(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case _, ok := <-wake:
			if !ok {
				wake = nil
			}
		}
	}
}

// Drain makes one pass over the queue: every mail that is due is tried
// once.
func (n *Notifier) Drain(ctx context.Context) {
	ids, err := n.o.Store.SetMembers(ctx, jobsKey)
	if err != nil {
		n.log.WarnContext(ctx, "notify: queue unreadable", "error", err)
		return
	}
	slices.Sort(ids) // events' IDs grow with time: oldest first
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		n.attempt(ctx, id)
	}
}

func (n *Notifier) attempt(ctx context.Context, id string) {
	key := jobKey(id)
	raw, err := n.o.Store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		_ = n.o.Store.SetRemove(ctx, jobsKey, id) // sent by another node, or expired
		return
	}
	if err != nil {
		return
	}
	var j job
	if err := json.Unmarshal(raw, &j); err != nil {
		n.drop(ctx, id, "corrupt record")
		return
	}
	now := n.o.Now()
	if now.Before(j.Next) {
		return
	}
	if now.Sub(j.Created) > MaxAge {
		n.drop(ctx, id, "too old")
		return
	}
	lock := make([]byte, 16)
	_, _ = rand.Read(lock)
	if ok, err := n.o.Store.SetNX(ctx, lockKey(id), lock, 2*time.Minute); err != nil || !ok {
		return
	}
	defer func() { _ = n.o.Store.Delete(context.WithoutCancel(ctx), lockKey(id)) }()
	kind, err := n.deliver(ctx, key, &j)
	var perm *PermanentError
	switch {
	case err == nil:
		_ = n.o.Store.Delete(ctx, key)
		_ = n.o.Store.SetRemove(ctx, jobsKey, id)
		n.sent.Add(1)
		n.mails.WithLabelValues(kind, "sent").Inc()
	case errors.As(err, &perm):
		n.log.WarnContext(ctx, "notify: mail refused for good", "kind", kind, "error", err)
		n.drop(ctx, id, "refused")
		n.mails.WithLabelValues(kind, "dropped").Inc()
	default:
		n.mails.WithLabelValues(kind, "retry").Inc()
		j.Attempts++
		backoff := MinBackoff << min(j.Attempts-1, 20)
		j.Next = now.Add(min(backoff, MaxBackoff))
		nb, _ := json.Marshal(j)
		_, _ = n.o.Store.CompareAndSwap(ctx, key, raw, nb)
		n.log.InfoContext(ctx, "notify: mail not sent; will retry", "attempts", j.Attempts, "next", j.Next, "error", err)
	}
}

func (n *Notifier) drop(ctx context.Context, id, why string) {
	_ = n.o.Store.Delete(ctx, jobKey(id))
	_ = n.o.Store.SetRemove(ctx, jobsKey, id)
	n.dropped.Add(1)
	n.log.WarnContext(ctx, "notify: mail dropped", "why", why)
}

func (n *Notifier) deliver(ctx context.Context, key string, j *job) (string, error) {
	sealer, err := n.o.Ring.OpenSealer(j.DK, []byte(key))
	if err != nil {
		return "unknown", &PermanentError{Err: err}
	}
	pb, err := sealer.Open(j.Payload, []byte(key))
	if err != nil {
		return "unknown", &PermanentError{Err: err}
	}
	var p payload
	if err := json.Unmarshal(pb, &p); err != nil {
		return "unknown", &PermanentError{Err: err}
	}
	return p.Kind, n.send(ctx, &p)
}

func (n *Notifier) send(ctx context.Context, p *payload) error {
	to := p.To
	if p.Kind != kindConfirm {
		sub, err := n.o.Subs.Get(ctx, p.Account)
		if errors.Is(err, ErrNotSubscribed) {
			return &PermanentError{Err: err} // opted out since
		}
		if err != nil {
			return err
		}
		to = sub.Address
	}
	m, err := n.render(ctx, p)
	if err != nil {
		return err
	}
	m.From, m.To, m.Date = n.o.Mailer.From(), to, n.o.Now()
	msg, err := m.Bytes()
	if err != nil {
		return &PermanentError{Err: err}
	}
	return n.o.Mailer.Send(ctx, to, msg)
}

// ---- links ----

func (n *Notifier) link(path, token string) string {
	return strings.TrimSuffix(n.o.Issuer, "/") + path + "?t=" + token
}

type notMeClaims struct {
	Account string `json:"a"`
	Exp     int64  `json:"e"`
	Nonce   string `json:"n"`
}

// notMeToken signs a "this wasn't me" link for an account.
func (n *Notifier) notMeToken(account string) string {
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	b, _ := json.Marshal(notMeClaims{Account: account, Exp: n.o.Now().Add(NotMeTTL).Unix(), Nonce: base64.RawURLEncoding.EncodeToString(nonce)})
	body := base64.RawURLEncoding.EncodeToString(b)
	return body + "." + base64.RawURLEncoding.EncodeToString(n.mac(body))
}

func (n *Notifier) mac(body string) []byte {
	m := hmac.New(sha256.New, n.o.LinkKey)
	m.Write([]byte("watashi-notify-not-me\x00" + body))
	return m.Sum(nil)
}

// checkNotMe verifies a link without spending it.
func (n *Notifier) checkNotMe(token string) (*notMeClaims, error) {
	if len(token) > 512 {
		return nil, ErrToken
	}
	body, sig, ok := strings.Cut(token, ".")
	if !ok {
		return nil, ErrToken
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, n.mac(body)) {
		return nil, ErrToken
	}
	b, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return nil, ErrToken
	}
	var c notMeClaims
	if err := json.Unmarshal(b, &c); err != nil || c.Account == "" || c.Nonce == "" {
		return nil, ErrToken
	}
	if n.o.Now().Unix() > c.Exp {
		return nil, ErrToken
	}
	return &c, nil
}

// spendNotMe verifies a link and marks it used, on every node at once.
func (n *Notifier) spendNotMe(ctx context.Context, token string) (*notMeClaims, error) {
	c, err := n.checkNotMe(token)
	if err != nil {
		return nil, err
	}
	ok, err := n.o.Store.SetNX(ctx, usedKey(c.Nonce), []byte{1}, time.Duration(c.Exp-n.o.Now().Unix())*time.Second+time.Minute)
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	if !ok {
		return nil, ErrToken
	}
	return c, nil
}
