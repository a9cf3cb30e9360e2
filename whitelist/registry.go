package whitelist

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
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
	"unicode/utf8"
)

// Options configures a Registry.
type Options struct {
	Backend Backend
	// Tiers is the catalogue; nil means DefaultTiers.
	Tiers []Tier
	// Dev relaxes the https rules (http redirect URIs, http sector
	// documents) and lets the sector fetch reach loopback and private
	// addresses.
	Dev bool
	// Fetcher gets sector_identifier_uri documents and checks the URLs
	// Watashi will fetch later (jwks_uri, logo_uri). Default:
	// NewFetcher with Dev.
	Fetcher *Fetcher
	Logger  *slog.Logger
	// Now is the clock (tests move it to expire tokens).
	Now func() time.Time
	// CacheTTL bounds how long an approved client is served from memory
	// while Run holds a live subscription (default 1 minute); every
	// change also invalidates it through pub/sub and the change counter.
	CacheTTL time.Duration
	// FallbackTTL is the cache lifetime when there is no live
	// subscription (Run not running or its subscription broken): a
	// suspension then still takes effect within this time (default 1 s).
	FallbackTTL time.Duration
	// PollInterval is how often Run reads the change counter, which
	// catches pub/sub messages the backend dropped (default 500 ms).
	PollInterval time.Duration
}

// Registry is the relying-party whitelist: the client records, their
// status and audit history, initial access tokens, and the enforcement
// check the provider runs on every request. It is safe for concurrent
// use; several nodes share one through the backend.
type Registry struct {
	b       Backend
	cat     *catalogue
	dev     bool
	fetcher *Fetcher
	log     *slog.Logger
	now     func() time.Time

	cacheTTL, fallbackTTL, pollInterval time.Duration

	mu    sync.RWMutex
	cache map[string]cacheEntry
	epoch uint64 // bumped by every invalidation; a fill started before one is dropped

	live atomic.Bool // Run holds a working subscription and the last poll succeeded
}

type cacheEntry struct {
	c   *Client
	exp time.Time
}

const maxCacheEntries = 10000

// New validates the options and the tier catalogue.
func New(o Options) (*Registry, error) {
	if err := o.Backend.validate(); err != nil {
		return nil, err
	}
	cat, err := newCatalogue(o.Tiers)
	if err != nil {
		return nil, err
	}
	r := &Registry{
		b: o.Backend, cat: cat, dev: o.Dev, fetcher: o.Fetcher, log: o.Logger, now: o.Now,
		cacheTTL: o.CacheTTL, fallbackTTL: o.FallbackTTL, pollInterval: o.PollInterval,
		cache: map[string]cacheEntry{},
	}
	if r.fetcher == nil {
		r.fetcher = NewFetcher(FetcherOptions{Dev: o.Dev})
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.cacheTTL <= 0 {
		r.cacheTTL = time.Minute
	}
	if r.fallbackTTL <= 0 {
		r.fallbackTTL = time.Second
	}
	if r.pollInterval <= 0 {
		r.pollInterval = 500 * time.Millisecond
	}
	return r, nil
}

// Tiers returns the catalogue in its configured order.
func (r *Registry) Tiers() []Tier { return r.cat.list() }

// Dev reports whether the registry accepts development metadata.
func (r *Registry) Dev() bool { return r.dev }

// Change says who makes a change, through which channel and why; it goes
// into the audit log.
type Change struct {
	Actor  string `json:"actor"`
	Via    string `json:"via,omitempty"` // cli, admin-api, registration, ...
	Reason string `json:"reason,omitempty"`
}

const (
	maxActorRunes  = 200
	maxReasonRunes = 1000
)

func (c Change) validate() error {
	if c.Actor == "" {
		return inputErr("a change needs an actor")
	}
	if utf8.RuneCountInString(c.Actor) > maxActorRunes || hasControl(c.Actor) {
		return inputErr("actor must be at most %d characters without control characters", maxActorRunes)
	}
	if utf8.RuneCountInString(c.Reason) > maxReasonRunes || hasControl(c.Reason) {
		return inputErr("reason must be at most %d characters without control characters", maxReasonRunes)
	}
	if utf8.RuneCountInString(c.Via) > 50 || hasControl(c.Via) {
		return inputErr("via must be short")
	}
	return nil
}

// AuditEvent is one entry of a client's (or the token catalogue's)
// append-only history.
type AuditEvent struct {
	ID       string    `json:"id"`
	At       time.Time `json:"at"`
	Action   string    `json:"action"`
	ClientID string    `json:"client_id,omitempty"`
	TokenID  string    `json:"token_id,omitempty"`
	Block    string    `json:"block,omitempty"` // kind:value of a block-list change
	From     Status    `json:"from,omitempty"`
	To       Status    `json:"to,omitempty"`
	Actor    string    `json:"actor"`
	Via      string    `json:"via,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

// Audit actions.
const (
	ActionRegister     = "register"
	ActionApprove      = "approve"
	ActionSuspend      = "suspend"
	ActionResume       = "resume"
	ActionRevoke       = "revoke"
	ActionUpdate       = "update"
	ActionRotateSecret = "rotate-secret"
	ActionDelete       = "delete"
	ActionTokenIssue   = "token-issue"
	ActionTokenUse     = "token-use"
	ActionTokenRevoke  = "token-revoke"
)

func (r *Registry) appendAudit(ctx context.Context, key string, ev AuditEvent) error {
	if ev.At.IsZero() {
		ev.At = r.now().UTC()
	}
	return appendAudit(ctx, r.b.Audit, key, ev)
}

func (r *Registry) readAudit(ctx context.Context, key string) ([]AuditEvent, error) {
	return readAudit(ctx, r.b.Audit, key)
}

// appendAudit writes ev to the audit log key: the one encoding of every
// audit log of the whitelist (clients, initial access tokens, blocks).
func appendAudit(ctx context.Context, log AuditLog, key string, ev AuditEvent) error {
	ev.ID = ""
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if _, err := log.Append(ctx, key, b); err != nil {
		return fmt.Errorf("whitelist: audit log: %w", err)
	}
	return nil
}

// readAudit reads the audit log key, oldest first, in pages.
func readAudit(ctx context.Context, log AuditLog, key string) ([]AuditEvent, error) {
	var out []AuditEvent
	after := ""
	for {
		es, err := log.Range(ctx, key, after, 500)
		if err != nil {
			return nil, fmt.Errorf("whitelist: audit log: %w", err)
		}
		for _, e := range es {
			var ev AuditEvent
			if err := json.Unmarshal(e.Value, &ev); err != nil {
				return nil, fmt.Errorf("whitelist: audit entry %s does not decode", e.ID)
			}
			ev.ID = e.ID
			out = append(out, ev)
		}
		if len(es) < 500 {
			return out, nil
		}
		after = es[len(es)-1].ID
	}
}

// History returns the client's audit log, oldest first. It outlives the
// client: a deleted client's history stays.
func (r *Registry) History(ctx context.Context, id string) ([]AuditEvent, error) {
	if !clientIDRE.MatchString(id) {
		return nil, ErrUnknownClient
	}
	return r.readAudit(ctx, clientLogKey(id))
}

// ---- records ----

// clientIDRE keeps IDs safe in store keys, URLs and command lines (no
// leading dash) and free of the ':{}' the provider's keys reserve.
var clientIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$`)

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newClientID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("whitelist: crypto/rand failed: " + err.Error())
	}
	return strings.ToLower(idEncoding.EncodeToString(b))
}

func (r *Registry) load(ctx context.Context, id string) (*Client, []byte, error) {
	if !clientIDRE.MatchString(id) {
		return nil, nil, ErrUnknownClient
	}
	raw, err := r.b.Store.Get(ctx, clientKey(id))
	if errors.Is(err, r.b.ErrNotFound) {
		return nil, nil, ErrUnknownClient
	}
	if err != nil {
		return nil, nil, fmt.Errorf("whitelist: load client: %w", err)
	}
	c := new(Client)
	if err := json.Unmarshal(raw, c); err != nil || c.ID != id {
		return nil, nil, fmt.Errorf("whitelist: client record %q is corrupt", id)
	}
	return c, raw, nil
}

// resolve fills the access fields from the current catalogue.
func (r *Registry) resolve(c *Client) error {
	t, ok := r.cat.tiers[c.Tier]
	if !ok {
		c.AllowedScopes, c.AllowedClaims, c.MinACR = nil, nil, ""
		return ErrTierUnavailable
	}
	resolveAccess(c, t)
	return nil
}

// Get returns a client whatever its status, for operators and RFC 7592
// management. Enforcement uses Authorize.
func (r *Registry) Get(ctx context.Context, id string) (*Client, error) {
	c, _, err := r.load(ctx, id)
	if err != nil {
		return nil, err
	}
	_ = r.resolve(c)
	return c, nil
}

// List returns every client, oldest first.
func (r *Registry) List(ctx context.Context) ([]*Client, error) {
	ids, err := r.b.Store.SetMembers(ctx, clientsKey)
	if err != nil {
		return nil, fmt.Errorf("whitelist: list clients: %w", err)
	}
	out := make([]*Client, 0, len(ids))
	for _, id := range ids {
		c, err := r.Get(ctx, id)
		if errors.Is(err, ErrUnknownClient) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *Client) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// mutate applies fn to the stored record with compare-and-swap, retrying
// when another writer got there first. fn's error aborts with nothing
// written.
func (r *Registry) mutate(ctx context.Context, id string, fn func(c *Client) error) (*Client, error) {
	for range 8 {
		c, raw, err := r.load(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := fn(c); err != nil {
			return nil, err
		}
		c.AllowedScopes, c.AllowedClaims, c.MinACR = nil, nil, "" // derived, not stored
		nb, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		ok, err := r.b.Store.CompareAndSwap(ctx, clientKey(id), raw, nb)
		if err != nil {
			return nil, fmt.Errorf("whitelist: save client: %w", err)
		}
		if ok {
			_ = r.resolve(c)
			return c, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return nil, ErrConflict
}

// transitions is the status lifecycle.
var transitions = map[string]struct {
	from []Status
	to   Status
}{
	ActionApprove: {[]Status{StatusPending}, StatusApproved},
	ActionSuspend: {[]Status{StatusApproved}, StatusSuspended},
	ActionResume:  {[]Status{StatusSuspended}, StatusApproved},
	ActionRevoke:  {[]Status{StatusPending, StatusApproved, StatusSuspended}, StatusRevoked},
}

// Approve lets a pending client sign residents in.
func (r *Registry) Approve(ctx context.Context, id string, ch Change) (*Client, error) {
	return r.transition(ctx, id, ActionApprove, ch)
}

// Suspend stops an approved client at once on every node; Resume undoes
// it.
func (r *Registry) Suspend(ctx context.Context, id string, ch Change) (*Client, error) {
	return r.transition(ctx, id, ActionSuspend, ch)
}

// Resume re-approves a suspended client.
func (r *Registry) Resume(ctx context.Context, id string, ch Change) (*Client, error) {
	return r.transition(ctx, id, ActionResume, ch)
}

// Revoke ends a client for good: a revoked client can never be approved
// again, it must register anew (and so gets a new client_id).
func (r *Registry) Revoke(ctx context.Context, id string, ch Change) (*Client, error) {
	return r.transition(ctx, id, ActionRevoke, ch)
}

// Transition applies a lifecycle action by name (approve, suspend,
// resume, revoke), for the CLI and the admin API.
func (r *Registry) Transition(ctx context.Context, id, action string, ch Change) (*Client, error) {
	if _, ok := transitions[action]; !ok {
		return nil, inputErr("unknown action %q", action)
	}
	return r.transition(ctx, id, action, ch)
}

func (r *Registry) transition(ctx context.Context, id, action string, ch Change) (*Client, error) {
	if err := ch.validate(); err != nil {
		return nil, err
	}
	t := transitions[action]
	var from Status
	c, err := r.mutate(ctx, id, func(c *Client) error {
		from = c.Status
		if !slices.Contains(t.from, c.Status) {
			return fmt.Errorf("%w: cannot %s a client that is %s", ErrInvalidTransition, action, c.Status)
		}
		now := r.now().UTC()
		c.Status, c.StatusReason, c.StatusChangedAt, c.StatusChangedBy, c.UpdatedAt = t.to, ch.Reason, now, ch.Actor, now
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, r.finish(ctx, c.ID, AuditEvent{Action: action, ClientID: c.ID, From: from, To: t.to,
		Actor: ch.Actor, Via: ch.Via, Reason: ch.Reason})
}

// finish records a change that is already saved and tells every node.
// An error here means the change stands but its record or its
// propagation failed, which the caller must report.
func (r *Registry) finish(ctx context.Context, id string, ev AuditEvent) error {
	aerr := r.appendAudit(ctx, clientLogKey(id), ev)
	nerr := r.notify(ctx, id)
	if aerr != nil || nerr != nil {
		return fmt.Errorf("%w (client %s): %w", ErrPartial, id, errors.Join(aerr, nerr))
	}
	return nil
}

// notify drops the client from this node's cache at once, bumps the
// change counter and publishes the change for the other nodes.
func (r *Registry) notify(ctx context.Context, id string) error {
	r.invalidate(id)
	_, ierr := r.b.Store.Incr(ctx, genKey, 0)
	perr := r.b.Store.Publish(ctx, ChangedChannel, []byte(id))
	if ierr != nil || perr != nil {
		r.log.Warn("whitelist: change notification failed; other nodes catch up within their cache TTL",
			"client_id", id, "incr_error", ierr, "publish_error", perr)
		return errors.Join(ierr, perr)
	}
	return nil
}

// Delete removes a client record (RFC 7592 §2.3, or an operator). Its
// audit history stays, and its ID is never reused.
func (r *Registry) Delete(ctx context.Context, id string, ch Change) error {
	if err := ch.validate(); err != nil {
		return err
	}
	c, _, err := r.load(ctx, id)
	if err != nil {
		return err
	}
	if err := r.b.Store.Delete(ctx, clientKey(id)); err != nil {
		return fmt.Errorf("whitelist: delete client: %w", err)
	}
	if err := r.b.Store.SetRemove(ctx, clientsKey, id); err != nil {
		return fmt.Errorf("whitelist: delete client: %w", err)
	}
	return r.finish(ctx, id, AuditEvent{Action: ActionDelete, ClientID: id, From: c.Status,
		Actor: ch.Actor, Via: ch.Via, Reason: ch.Reason})
}

// RotateSecret issues a new client secret (client_secret_basic only) and
// returns it; it is not stored, so this is the only time it is seen.
// The old secret stops working at once.
func (r *Registry) RotateSecret(ctx context.Context, id string, ch Change) (string, error) {
	if err := ch.validate(); err != nil {
		return "", err
	}
	secret := randomToken(32)
	hash, err := HashSecret(secret)
	if err != nil {
		return "", err
	}
	c, err := r.mutate(ctx, id, func(c *Client) error {
		if c.TokenEndpointAuthMethod != AuthClientSecretBasic {
			return ErrNoSecret
		}
		if c.Status == StatusRevoked {
			return fmt.Errorf("%w: the client is revoked", ErrInvalidTransition)
		}
		c.SecretHash, c.UpdatedAt = hash, r.now().UTC()
		return nil
	})
	if err != nil {
		return "", err
	}
	return secret, r.finish(ctx, id, AuditEvent{Action: ActionRotateSecret, ClientID: id, From: c.Status, To: c.Status,
		Actor: ch.Actor, Via: ch.Via, Reason: ch.Reason})
}

// ---- creation ----

// AddRequest is an operator's registration (CLI, admin API).
type AddRequest struct {
	Metadata Metadata
	Tier     string
	// ID is an operator-chosen client_id (random when empty); it must
	// never have been used.
	ID string
	// Approve registers the client as approved rather than pending.
	Approve bool
	Change  Change
}

// Registration is a newly created client with its credentials, which are
// shown once and never stored in the clear.
type Registration struct {
	Client       *Client
	ClientSecret string // client_secret_basic only
	// RegistrationAccessToken authorises RFC 7592 management.
	RegistrationAccessToken string
}

// Add registers a client for an operator, with the same validation as
// dynamic registration.
func (r *Registry) Add(ctx context.Context, req AddRequest) (*Registration, error) {
	if err := req.Change.validate(); err != nil {
		return nil, err
	}
	if req.ID != "" && !clientIDRE.MatchString(req.ID) {
		return nil, inputErr("client_id %q must be 3-64 letters, digits, dots, dashes or underscores, starting with a letter or digit", req.ID)
	}
	return r.create(ctx, req.Metadata, createParams{
		tier: req.Tier, id: req.ID, approve: req.Approve, change: req.Change, registeredWith: "operator",
	})
}

type createParams struct {
	tier           string
	id             string
	approve        bool
	change         Change
	registeredWith string
	ssIssuer       string
	// commit runs after validation and just before the record is
	// written; registration consumes its initial access token here, so
	// that a rejected request does not burn a one-time token.
	commit func(ctx context.Context) error
}

func (r *Registry) create(ctx context.Context, m Metadata, p createParams) (*Registration, error) {
	tier, ok := r.cat.tiers[p.tier]
	if !ok {
		return nil, inputErr("tier %q is not configured (configured: %s)", p.tier, strings.Join(r.cat.order, ", "))
	}
	if e := validateMetadata(&m, tier, r.cat, r.dev); e != nil {
		return nil, e
	}
	if e := checkFetchTargets(ctx, r.fetcher, &m); e != nil {
		return nil, e
	}
	id := p.id
	if id == "" {
		id = newClientID()
	} else {
		prior, err := r.b.Audit.Range(ctx, clientLogKey(id), "", 1)
		if err != nil {
			return nil, fmt.Errorf("whitelist: audit log: %w", err)
		}
		if len(prior) > 0 {
			return nil, ErrExists
		}
	}
	sector, e := resolveSector(ctx, r.fetcher, &m, id)
	if e != nil {
		return nil, e
	}
	now := r.now().UTC()
	c := &Client{
		ID: id, Metadata: m, Sector: sector, SoftwareStatementIssuer: p.ssIssuer, Tier: tier.Name,
		Status: StatusPending, StatusChangedAt: now, StatusChangedBy: p.change.Actor, StatusReason: p.change.Reason,
		CreatedAt: now, UpdatedAt: now, RegisteredWith: p.registeredWith,
	}
	if p.approve {
		c.Status = StatusApproved
	}
	reg := &Registration{Client: c, RegistrationAccessToken: randomToken(32)}
	c.RegistrationTokenHash = tokenHash(reg.RegistrationAccessToken)
	if m.TokenEndpointAuthMethod == AuthClientSecretBasic {
		reg.ClientSecret = randomToken(32)
		h, err := HashSecret(reg.ClientSecret)
		if err != nil {
			return nil, err
		}
		c.SecretHash = h
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	if p.commit != nil {
		if err := p.commit(ctx); err != nil {
			return nil, err
		}
	}
	created, err := r.b.Store.SetNX(ctx, clientKey(id), b, 0)
	if err != nil {
		return nil, fmt.Errorf("whitelist: save client: %w", err)
	}
	if !created {
		return nil, ErrExists
	}
	if err := r.b.Store.SetAdd(ctx, clientsKey, 0, id); err != nil {
		return nil, fmt.Errorf("whitelist: index client: %w", err)
	}
	_ = r.resolve(c)
	return reg, r.finish(ctx, id, AuditEvent{Action: ActionRegister, ClientID: id, To: c.Status,
		Actor: p.change.Actor, Via: p.change.Via, Reason: p.change.Reason})
}

// update replaces a client's metadata (RFC 7592 §2.2) after full
// validation. The sector must not change: every pairwise subject the
// client has seen would change with it.
func (r *Registry) update(ctx context.Context, id string, m Metadata, ch Change) (*Client, string, error) {
	cur, _, err := r.load(ctx, id)
	if err != nil {
		return nil, "", err
	}
	if cur.Status == StatusRevoked {
		return nil, "", &Error{Code: CodeInvalidClientMetadata, Description: "the client is revoked and can no longer be updated; register a new client"}
	}
	tier, ok := r.cat.tiers[cur.Tier]
	if !ok {
		return nil, "", &Error{Code: CodeInvalidClientMetadata, Description: "the client's tier is no longer offered; contact the operator", Err: ErrTierUnavailable}
	}
	if e := validateMetadata(&m, tier, r.cat, r.dev); e != nil {
		return nil, "", e
	}
	if e := checkFetchTargets(ctx, r.fetcher, &m); e != nil {
		return nil, "", e
	}
	sector := cur.Sector
	if !slices.Equal(m.RedirectURIs, cur.RedirectURIs) || m.SectorIdentifierURI != cur.SectorIdentifierURI ||
		m.ApplicationType != cur.ApplicationType {
		s, e := resolveSector(ctx, r.fetcher, &m, id)
		if e != nil {
			return nil, "", e
		}
		if s != cur.Sector {
			return nil, "", redirectErr("redirect_uris", "this change would move the client's pairwise sector from %q to %q, which would change every subject identifier it has seen; keep the redirect URIs on %q or register a sector_identifier_uri on that host listing all of them", cur.Sector, s, cur.Sector)
		}
		sector = s
	}
	var secret, hash string
	if m.TokenEndpointAuthMethod == AuthClientSecretBasic && cur.TokenEndpointAuthMethod != AuthClientSecretBasic {
		secret = randomToken(32)
		if hash, err = HashSecret(secret); err != nil {
			return nil, "", err
		}
	}
	c, err := r.mutate(ctx, id, func(c *Client) error {
		if c.Status == StatusRevoked {
			return &Error{Code: CodeInvalidClientMetadata, Description: "the client is revoked"}
		}
		if c.Sector != sector {
			return ErrConflict
		}
		if m.TokenEndpointAuthMethod != AuthClientSecretBasic {
			c.SecretHash = ""
		} else if hash != "" {
			c.SecretHash = hash
		}
		if m.TokenEndpointAuthMethod == AuthClientSecretBasic && c.SecretHash == "" {
			return ErrConflict
		}
		c.Metadata, c.UpdatedAt = m, r.now().UTC()
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return c, secret, r.finish(ctx, id, AuditEvent{Action: ActionUpdate, ClientID: id, From: c.Status, To: c.Status,
		Actor: ch.Actor, Via: ch.Via, Reason: ch.Reason})
}

// ---- enforcement ----

// Authorize is the provider's gate, called at authorize, token, userinfo
// and introspection: it returns the client when it is approved, with its
// tier's scopes, claims and minimum acr resolved, and otherwise one of
// ErrUnknownClient, ErrPending, ErrSuspended, ErrRevoked (or a store
// error, which must also be treated as a refusal). Approved clients are
// served from memory; see Run for how that cache stays correct.
func (r *Registry) Authorize(ctx context.Context, id string) (*Client, error) {
	now := r.now()
	r.mu.RLock()
	e, hit := r.cache[id]
	epoch := r.epoch
	r.mu.RUnlock()
	if hit && now.Before(e.exp) {
		return e.c.clone(), nil
	}
	ttl := r.fallbackTTL
	if r.live.Load() {
		ttl = r.cacheTTL
	}
	c, _, err := r.load(ctx, id)
	if err != nil {
		return nil, err
	}
	switch c.Status {
	case StatusApproved:
	case StatusPending:
		return nil, ErrPending
	case StatusSuspended:
		return nil, ErrSuspended
	case StatusRevoked:
		return nil, ErrRevoked
	default:
		return nil, fmt.Errorf("whitelist: client %q has unknown status %q", id, c.Status)
	}
	if err := r.resolve(c); err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.epoch == epoch {
		if len(r.cache) >= maxCacheEntries {
			clear(r.cache)
		}
		r.cache[id] = cacheEntry{c: c, exp: now.Add(ttl)}
	}
	r.mu.Unlock()
	return c.clone(), nil
}

func (r *Registry) invalidate(id string) {
	r.mu.Lock()
	r.epoch++
	if id == allFlushMsg {
		clear(r.cache)
	} else {
		delete(r.cache, id)
	}
	r.mu.Unlock()
}

// Run keeps this node's cache in step with the others until ctx ends:
// it subscribes to ChangedChannel and drops a client's cached copy when
// its record changes anywhere, and it polls a change counter so that a
// message the backend drops costs at most one PollInterval. While the
// subscription or the poll is failing, cached clients live FallbackTTL
// only, so correctness never rests on pub/sub alone. Without Run at all
// the registry works the same, with the FallbackTTL.
func (r *Registry) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := r.follow(ctx)
		r.setLive(false)
		if ctx.Err() != nil {
			break
		}
		r.log.Warn("whitelist: change subscription lost; caching for the fallback TTL until it is back", "error", err)
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

// Live reports whether Run holds a working subscription, so that cached
// clients may live CacheTTL; a readiness check can surface it.
func (r *Registry) Live() bool { return r.live.Load() }

func (r *Registry) setLive(v bool) {
	if r.live.Swap(v) != v {
		// Entries cached under the other regime may have the wrong
		// lifetime, and messages may have been missed: start over.
		r.invalidate(allFlushMsg)
	}
}

func (r *Registry) readGen(ctx context.Context) ([]byte, error) {
	v, err := r.b.Store.Get(ctx, genKey)
	if errors.Is(err, r.b.ErrNotFound) {
		return nil, nil
	}
	return v, err
}

func (r *Registry) follow(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, err := r.b.Store.Subscribe(sctx, ChangedChannel)
	if err != nil {
		return err
	}
	gen, err := r.readGen(ctx)
	if err != nil {
		return err
	}
	r.setLive(true)
	r.invalidate(allFlushMsg)
	tick := time.NewTicker(r.pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-msgs:
			if !ok {
				return errors.New("subscription closed")
			}
			r.invalidate(string(m))
		case <-tick.C:
			g, err := r.readGen(ctx)
			if err != nil {
				return fmt.Errorf("poll change counter: %w", err)
			}
			if !bytes.Equal(g, gen) {
				gen = g
				r.invalidate(allFlushMsg)
			}
		}
	}
}
