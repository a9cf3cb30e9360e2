package whitelist

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// BlockKind is what an operator's block names.
type BlockKind string

// The kinds of block.
const (
	// BlockLabel is a JPKI token label as a wallet reports it
	// (JPKIAPICCTOKEN2 for the card, JPKIAPGPSETOKEN for an Android
	// phone's secure element, JPKIAPIOSTOKEN for an iPhone).
	BlockLabel BlockKind = "label"
	// BlockAAGUID is a passkey authenticator model.
	BlockAAGUID BlockKind = "aaguid"
	// BlockClient is a relying party, static or registered.
	BlockClient BlockKind = "client"
)

// BlockKinds lists the kinds in the order the tools show them.
var BlockKinds = []BlockKind{BlockLabel, BlockAAGUID, BlockClient}

// Known JPKI token labels. A label outside this list may still be
// blocked (a new applet would have a new one), as long as it has a
// label's shape.
var KnownTokenLabels = []string{"JPKIAPICCTOKEN2", "JPKIAPGPSETOKEN", "JPKIAPIOSTOKEN"}

// Block errors.
var (
	// ErrBlocked is the enforcement answer for a blocked client.
	ErrBlocked = errors.New("whitelist: blocked by the operator")
	// ErrAlreadyBlocked and ErrNotBlocked refuse a block that exists
	// and an unblock of what is not blocked; nothing changes.
	ErrAlreadyBlocked = errors.New("whitelist: already blocked")
	ErrNotBlocked     = errors.New("whitelist: not blocked")
	// ErrTooManyBlocks bounds the list every node holds in memory.
	ErrTooManyBlocks = errors.New("whitelist: too many blocks")
)

// MaxBlocks bounds the block list: every node holds it in memory and
// reads it whole after each change.
const MaxBlocks = 1000

// Audit actions of the block list.
const (
	ActionBlock   = "block"
	ActionUnblock = "unblock"
)

// Keys and channel of the block list, beside the registry's.
const (
	// BlocksChangedChannel tells every node that the block list changed.
	BlocksChangedChannel = "whitelist:blocks:changed"
	blocksKey            = "wl:blocks"
	blocksGenKey         = "wl:blocks:gen"
	blocksLogKey         = "wl:log:blocks"
	blockPrefix          = "wl:block:"
)

var (
	labelRE = regexp.MustCompile(`^[A-Z0-9_]{1,64}$`)
	// blockClientRE is any client_id the provider accepts (static ones
	// are freer than registered ones) without ':{}', spaces or controls.
	blockClientRE = regexp.MustCompile(`^[\x21-\x2e\x30-\x39\x3b-\x7a\x7c\x7e]{1,255}$`)
)

// Block is one entry of the list.
type Block struct {
	Kind   BlockKind `json:"kind"`
	Value  string    `json:"value"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Via    string    `json:"via,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

func (b *Block) member() string { return string(b.Kind) + ":" + b.Value }

// ParseBlock checks a kind and a value as an operator typed them and
// returns the value in its one canonical form (an AAGUID in lower case).
// A bad kind or value is an *Error with CodeInvalidRequest.
func ParseBlock(kind, value string) (BlockKind, string, error) {
	switch k := BlockKind(kind); k {
	case BlockLabel:
		if value == "" {
			return "", "", inputErr("a token label is required (for example %s)", strings.Join(KnownTokenLabels, ", "))
		}
		if !labelRE.MatchString(value) {
			return "", "", inputErr("token label %q must be 1-64 capital letters, digits or underscores (for example %s)", clip(value), strings.Join(KnownTokenLabels, ", "))
		}
		return k, value, nil
	case BlockAAGUID:
		id, err := uuid.Parse(value)
		if err != nil || len(value) != 36 {
			return "", "", inputErr("AAGUID %q must be a UUID: 8-4-4-4-12 hexadecimal digits", clip(value))
		}
		return k, id.String(), nil
	case BlockClient:
		if !blockClientRE.MatchString(value) {
			return "", "", inputErr("client_id %q must be 1-255 printable characters without spaces, '/', ':', '{' or '}'", clip(value))
		}
		return k, value, nil
	}
	return "", "", inputErr("unknown kind %q: use label, aaguid or client", clip(kind))
}

// clip keeps an invalid value short enough to echo in a message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// BlocklistOptions configures a Blocklist.
type BlocklistOptions struct {
	Backend Backend
	Logger  *slog.Logger
	Now     func() time.Time
	// MaxAge bounds how long a node trusts its copy of the list while
	// Run holds a live subscription (default 1 minute); every change
	// also invalidates it through pub/sub and the change counter.
	MaxAge time.Duration
	// FallbackTTL is the copy's lifetime without a live subscription
	// (default 1 s), so that a block takes effect within it even then.
	FallbackTTL time.Duration
	// PollInterval is how often Run reads the change counter (default
	// 500 ms).
	PollInterval time.Duration
}

// Blocklist is the operators' kill switch: token labels, authenticator
// models and clients that sign no one in, on every node, until unblocked.
// Each node keeps the whole list in memory and rereads it when any node
// changes it, exactly as the registry's client cache does.
type Blocklist struct {
	b   Backend
	log *slog.Logger
	now func() time.Time

	maxAge, fallbackTTL, pollInterval time.Duration

	mu     sync.Mutex
	set    map[string]bool
	loaded time.Time
	valid  bool
	dirty  bool // a change was announced since the copy was read
	epoch  uint64

	live atomic.Bool
}

// NewBlocklist checks the options.
func NewBlocklist(o BlocklistOptions) (*Blocklist, error) {
	if err := o.Backend.validate(); err != nil {
		return nil, err
	}
	l := &Blocklist{b: o.Backend, log: o.Logger, now: o.Now, maxAge: o.MaxAge, fallbackTTL: o.FallbackTTL, pollInterval: o.PollInterval}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.maxAge <= 0 {
		l.maxAge = time.Minute
	}
	if l.fallbackTTL <= 0 {
		l.fallbackTTL = time.Second
	}
	if l.pollInterval <= 0 {
		l.pollInterval = 500 * time.Millisecond
	}
	return l, nil
}

func blockKey(member string) string { return blockPrefix + member }

// Add blocks kind:value on every node. The value is checked and made
// canonical first (ParseBlock); an existing block is ErrAlreadyBlocked.
// An error wrapping ErrPartial means the block stands but its audit entry
// or its notification failed.
func (l *Blocklist) Add(ctx context.Context, kind, value string, ch Change) (*Block, error) {
	k, v, err := ParseBlock(kind, value)
	if err != nil {
		return nil, err
	}
	if err := ch.validate(); err != nil {
		return nil, err
	}
	members, err := l.b.Store.SetMembers(ctx, blocksKey)
	if err != nil {
		return nil, fmt.Errorf("whitelist: read block list: %w", err)
	}
	blk := &Block{Kind: k, Value: v, At: l.now().UTC(), Actor: ch.Actor, Via: ch.Via, Reason: ch.Reason}
	if slices.Contains(members, blk.member()) {
		return nil, fmt.Errorf("%w: %s %s", ErrAlreadyBlocked, k, v)
	}
	if len(members) >= MaxBlocks {
		return nil, fmt.Errorf("%w: at most %d; unblock something first", ErrTooManyBlocks, MaxBlocks)
	}
	b, err := json.Marshal(blk)
	if err != nil {
		return nil, err
	}
	ok, err := l.b.Store.SetNX(ctx, blockKey(blk.member()), b, 0)
	if err != nil {
		return nil, fmt.Errorf("whitelist: save block: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s %s", ErrAlreadyBlocked, k, v)
	}
	// The index is what enforcement reads: the block takes effect here.
	if err := l.b.Store.SetAdd(ctx, blocksKey, 0, blk.member()); err != nil {
		_ = l.b.Store.Delete(ctx, blockKey(blk.member()))
		return nil, fmt.Errorf("whitelist: save block: %w", err)
	}
	return blk, l.finish(ctx, AuditEvent{Action: ActionBlock, Block: blk.member(), Actor: ch.Actor, Via: ch.Via, Reason: ch.Reason})
}

// Remove lifts a block; what is not blocked is ErrNotBlocked.
func (l *Blocklist) Remove(ctx context.Context, kind, value string, ch Change) error {
	k, v, err := ParseBlock(kind, value)
	if err != nil {
		return err
	}
	if err := ch.validate(); err != nil {
		return err
	}
	m := string(k) + ":" + v
	members, err := l.b.Store.SetMembers(ctx, blocksKey)
	if err != nil {
		return fmt.Errorf("whitelist: read block list: %w", err)
	}
	if !slices.Contains(members, m) {
		return fmt.Errorf("%w: %s %s", ErrNotBlocked, k, v)
	}
	if err := l.b.Store.SetRemove(ctx, blocksKey, m); err != nil {
		return fmt.Errorf("whitelist: remove block: %w", err)
	}
	if err := l.b.Store.Delete(ctx, blockKey(m)); err != nil {
		l.log.Warn("whitelist: block record left behind", "block", m, "error", err)
	}
	return l.finish(ctx, AuditEvent{Action: ActionUnblock, Block: m, Actor: ch.Actor, Via: ch.Via, Reason: ch.Reason})
}

// finish records a change already in effect and tells every node.
func (l *Blocklist) finish(ctx context.Context, ev AuditEvent) error {
	ev.At = l.now().UTC()
	aerr := appendAudit(ctx, l.b.Audit, blocksLogKey, ev)
	l.invalidate()
	_, ierr := l.b.Store.Incr(ctx, blocksGenKey, 0)
	perr := l.b.Store.Publish(ctx, BlocksChangedChannel, []byte(ev.Block))
	if ierr != nil || perr != nil {
		l.log.Warn("whitelist: block notification failed; other nodes catch up within their fallback TTL",
			"incr_error", ierr, "publish_error", perr)
	}
	if aerr != nil || ierr != nil || perr != nil {
		return fmt.Errorf("%w (%s): %w", ErrPartial, ev.Block, errors.Join(aerr, ierr, perr))
	}
	return nil
}

// List returns every block, by kind and value.
func (l *Blocklist) List(ctx context.Context) ([]*Block, error) {
	members, err := l.b.Store.SetMembers(ctx, blocksKey)
	if err != nil {
		return nil, fmt.Errorf("whitelist: read block list: %w", err)
	}
	out := make([]*Block, 0, len(members))
	for _, m := range members {
		kind, value, _ := strings.Cut(m, ":")
		blk := &Block{Kind: BlockKind(kind), Value: value}
		raw, err := l.b.Store.Get(ctx, blockKey(m))
		switch {
		case errors.Is(err, l.b.ErrNotFound):
			// Enforced all the same; its details were lost.
		case err != nil:
			return nil, fmt.Errorf("whitelist: read block: %w", err)
		default:
			if json.Unmarshal(raw, blk) != nil || blk.member() != m {
				blk = &Block{Kind: BlockKind(kind), Value: value}
			}
		}
		out = append(out, blk)
	}
	slices.SortFunc(out, func(a, b *Block) int {
		if c := slices.Index(BlockKinds, a.Kind) - slices.Index(BlockKinds, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	return out, nil
}

// History returns the block list's audit log, oldest first.
func (l *Blocklist) History(ctx context.Context) ([]AuditEvent, error) {
	return readAudit(ctx, l.b.Audit, blocksLogKey)
}

// ---- enforcement ----

// LabelBlocked reports whether a JPKI token label is blocked. An error
// (the store could not be read) must be treated as a refusal that may
// pass on a retry.
func (l *Blocklist) LabelBlocked(ctx context.Context, label string) (bool, error) {
	if label == "" {
		return false, nil
	}
	return l.blocked(ctx, string(BlockLabel)+":"+label)
}

// AAGUIDBlocked reports whether an authenticator model is blocked; an
// authenticator that reports no AAGUID is the all-zero one.
func (l *Blocklist) AAGUIDBlocked(ctx context.Context, aaguid []byte) (bool, error) {
	id := uuid.Nil
	if len(aaguid) != 0 {
		var err error
		if id, err = uuid.FromBytes(aaguid); err != nil {
			return false, fmt.Errorf("whitelist: malformed AAGUID: %w", err)
		}
	}
	return l.blocked(ctx, string(BlockAAGUID)+":"+id.String())
}

// ClientBlocked reports whether a client is blocked.
func (l *Blocklist) ClientBlocked(ctx context.Context, id string) (bool, error) {
	if id == "" {
		return false, nil
	}
	return l.blocked(ctx, string(BlockClient)+":"+id)
}

func (l *Blocklist) blocked(ctx context.Context, member string) (bool, error) {
	set, err := l.current(ctx)
	if err != nil {
		return false, err
	}
	return set[member], nil
}

// HasKind reports whether anything of kind is blocked, so that a caller
// can skip the work of finding out what to ask (an AAGUID behind a
// session) while nothing of that kind is.
func (l *Blocklist) HasKind(ctx context.Context, kind BlockKind) (bool, error) {
	set, err := l.current(ctx)
	if err != nil {
		return false, err
	}
	prefix := string(kind) + ":"
	for m := range set {
		if strings.HasPrefix(m, prefix) {
			return true, nil
		}
	}
	return false, nil
}

// current returns this node's copy of the list, reread when it is stale.
// The map is never written after it is published.
func (l *Blocklist) current(ctx context.Context) (map[string]bool, error) {
	now := l.now()
	ttl := l.fallbackTTL
	if l.live.Load() {
		ttl = l.maxAge
	}
	l.mu.Lock()
	if l.valid && now.Before(l.loaded.Add(ttl)) {
		set := l.set
		l.mu.Unlock()
		return set, nil
	}
	epoch := l.epoch
	// A copy that merely aged (no change was announced since it was
	// read) may answer while the store cannot, for MaxAge: the outage
	// then shows where the request needs the store for itself, as a
	// temporary failure, rather than here.
	stale, staleOK := l.set, l.set != nil && !l.dirty && now.Before(l.loaded.Add(l.maxAge))
	l.mu.Unlock()
	members, err := l.b.Store.SetMembers(ctx, blocksKey)
	if err != nil {
		if staleOK {
			return stale, nil
		}
		return nil, fmt.Errorf("whitelist: read block list: %w", err)
	}
	set := make(map[string]bool, len(members))
	for _, m := range members {
		set[m] = true
	}
	l.mu.Lock()
	if l.epoch == epoch {
		l.set, l.loaded, l.valid, l.dirty = set, now, true, false
	}
	l.mu.Unlock()
	return set, nil
}

// invalidate drops the copy after an announced change: it must be read
// again before it answers.
func (l *Blocklist) invalidate() {
	l.mu.Lock()
	l.epoch++
	l.valid, l.dirty = false, true
	l.mu.Unlock()
}

// expire drops the copy when the subscription starts or ends: no change
// is known, so while the store cannot be read the copy may still answer.
func (l *Blocklist) expire() {
	l.mu.Lock()
	l.epoch++
	l.valid = false
	l.mu.Unlock()
}

// Live reports whether Run holds a working subscription.
func (l *Blocklist) Live() bool { return l.live.Load() }

// Run keeps this node's copy of the list in step with the others until
// ctx ends, as Registry.Run does for clients: a message on
// BlocksChangedChannel drops the copy, a change counter polled every
// PollInterval catches a lost message, and without a working
// subscription the copy lives FallbackTTL only.
func (l *Blocklist) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := l.follow(ctx)
		l.live.Store(false)
		l.expire()
		if ctx.Err() != nil {
			break
		}
		l.log.Warn("whitelist: block list subscription lost; rereading the list every fallback TTL until it is back", "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

func (l *Blocklist) readGen(ctx context.Context) ([]byte, error) {
	v, err := l.b.Store.Get(ctx, blocksGenKey)
	if errors.Is(err, l.b.ErrNotFound) {
		return nil, nil
	}
	return v, err
}

func (l *Blocklist) follow(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, err := l.b.Store.Subscribe(sctx, BlocksChangedChannel)
	if err != nil {
		return err
	}
	gen, err := l.readGen(ctx)
	if err != nil {
		return err
	}
	l.expire()
	l.live.Store(true)
	tick := time.NewTicker(l.pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-msgs:
			if !ok {
				return errors.New("subscription closed")
			}
			l.invalidate()
		case <-tick.C:
			g, err := l.readGen(ctx)
			if err != nil {
				return fmt.Errorf("poll change counter: %w", err)
			}
			if !bytes.Equal(g, gen) {
				gen = g
				l.invalidate()
			}
		}
	}
}
