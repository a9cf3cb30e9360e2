package clients

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/whitelist"
)

// Lookup fails in one of two ways, which callers must keep apart: a
// refusal is an answer about the client, an outage is not.
var (
	// ErrUnknown is every refusal of Lookup: an unknown client, or one the
	// registry does not approve right now. The registry's reason is
	// wrapped.
	ErrUnknown = errors.New("clients: unknown client")
	// ErrUnavailable is Lookup failing to get an answer: the registry's
	// store failed, or its record of the client cannot be read. Nothing
	// is known about the client; the request may succeed when retried.
	// The cause is wrapped, for the log only.
	ErrUnavailable = errors.New("clients: the client registry is unavailable")
)

// Options configure a Resolver.
type Options struct {
	// Static are the clients of the operator's configuration.
	Static []*Client
	// Registry is consulted for every client_id that is not static; nil
	// means static clients only.
	Registry *whitelist.Registry
	// Blocks, when set, is the operators' kill switch: a blocked client,
	// static or registered, is refused everywhere as a suspended one is.
	Blocks Blocks
	// PairwiseKey keys the HMAC that derives pairwise subjects. Changing
	// it changes every sub: it is durable key material (>= 32 bytes).
	PairwiseKey []byte
	// Dev allows http sector and key documents.
	Dev bool
	// Fetcher gets sector documents and jwks_uri key sets (default:
	// whitelist.NewFetcher with Dev).
	Fetcher Fetcher
	Logger  *slog.Logger
	Now     func() time.Time
}

// Blocks says whether the operator blocked a client
// (whitelist.Blocklist).
type Blocks interface {
	ClientBlocked(ctx context.Context, id string) (bool, error)
}

// Entry is a client that may act now, with what is precomputed for it.
type Entry struct {
	Client *Client
	// Keys are the private_key_jwt client's inline public signing keys.
	Keys []jose.JSONWebKey
	// Registry is the registry record of a registered client; nil for a
	// static one. Its tier is enforced at /authorize.
	Registry *whitelist.Client
}

// Approved reports whether the client is vouched for by the operator:
// static clients are the operator's own configuration, registered ones
// are approved in the registry (Lookup returns no other).
func (e *Entry) Approved() bool {
	return e.Registry == nil || e.Registry.Status == whitelist.StatusApproved
}

// Resolver finds clients. It is safe for concurrent use.
type Resolver struct {
	static   map[string]*Entry
	order    []*Client
	registry *whitelist.Registry
	blocks   Blocks
	pairwise []byte
	dev      bool
	fetcher  Fetcher
	log      *slog.Logger
	now      func() time.Time
	secrets  secretVerifier
	jwks     jwksCache

	mu   sync.Mutex
	memo map[string]memo
}

type memo struct {
	updated, changed time.Time
	e                *Entry
}

// maxMemo bounds the memoised registry entries.
const maxMemo = 4096

// New validates the static clients and resolves the sectors of those that
// have none yet (which may fetch a sector_identifier_uri document).
func New(ctx context.Context, o Options) (*Resolver, error) {
	if len(o.PairwiseKey) < 32 {
		return nil, errors.New("clients: the pairwise key must be at least 32 bytes")
	}
	r := &Resolver{
		static: make(map[string]*Entry, len(o.Static)), registry: o.Registry, blocks: o.Blocks,
		pairwise: slices.Clone(o.PairwiseKey), dev: o.Dev, fetcher: o.Fetcher, log: o.Logger, now: o.Now,
		secrets: newSecretVerifier(),
	}
	if r.fetcher == nil {
		r.fetcher = whitelist.NewFetcher(whitelist.FetcherOptions{Dev: o.Dev})
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	for _, c := range o.Static {
		if c == nil || c.ID == "" {
			return nil, errors.New("clients: a client has no client_id")
		}
		if _, dup := r.static[c.ID]; dup {
			return nil, fmt.Errorf("clients: client %q is configured twice", c.ID)
		}
		if strings.ContainsAny(c.ID, ":{}") {
			return nil, fmt.Errorf("clients: client %q: client_id must not contain ':', '{' or '}'", c.ID)
		}
		if c.AuthMethod == AuthPrivateKeyJWT && len(c.JWKS) == 0 {
			// Only a registered client can name a jwks_uri instead.
			return nil, fmt.Errorf("clients: client %q: private_key_jwt needs a JWKS with at least one key", c.ID)
		}
		e, err := newEntry(c)
		if err != nil {
			return nil, fmt.Errorf("clients: client %q: %w", c.ID, err)
		}
		if c.Sector == "" {
			if c.Sector, err = ResolveSector(ctx, c, r.fetcher, o.Dev); err != nil {
				return nil, err
			}
		}
		r.static[c.ID] = e
		r.order = append(r.order, c)
	}
	return r, nil
}

// newEntry checks a client's authentication and token settings and parses
// its inline keys.
func newEntry(c *Client) (*Entry, error) {
	e := &Entry{Client: c}
	switch c.AuthMethod {
	case AuthPrivateKeyJWT:
		if len(c.JWKS) == 0 {
			break // a registered client with a jwks_uri: fetched on use
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(c.JWKS, &set); err != nil || len(set.Keys) == 0 {
			return nil, errors.New("private_key_jwt needs a JWKS with at least one key")
		}
		for _, k := range set.Keys {
			if !k.IsPublic() || !k.Valid() {
				return nil, errors.New("JWKS must hold valid public keys only")
			}
			if k.Use != "" && k.Use != "sig" {
				continue
			}
			e.Keys = append(e.Keys, k)
		}
	case AuthSecretBasic:
		if _, err := whitelist.ParseSecretHash(c.SecretHash); err != nil {
			return nil, err
		}
	case AuthNone:
	default:
		return nil, fmt.Errorf("token_endpoint_auth_method %q is not supported", c.AuthMethod)
	}
	if c.IDTokenAlg != "" && c.IDTokenAlg != string(jose.ES256) && c.IDTokenAlg != string(jose.RS256) {
		return nil, errors.New("id_token_signed_response_alg must be ES256 or RS256")
	}
	return e, nil
}

// Static lists the static clients in configuration order.
func (r *Resolver) Static() []*Client { return slices.Clone(r.order) }

// HasRegistry reports whether registered clients exist at all.
func (r *Resolver) HasRegistry() bool { return r.registry != nil }

// Lookup returns a client that may act now: a static one, or one the
// registry approves. Every refusal wraps ErrUnknown; a registry that could
// not be asked wraps ErrUnavailable.
func (r *Resolver) Lookup(ctx context.Context, id string) (*Entry, error) {
	if r.blocks != nil && id != "" {
		blocked, err := r.blocks.ClientBlocked(ctx, id)
		if err != nil {
			r.log.ErrorContext(ctx, "block list unavailable", "client_id", id, "error", err)
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if blocked {
			r.log.InfoContext(ctx, "client blocked by the operator", "client_id", id)
			return nil, fmt.Errorf("%w: %w", ErrUnknown, whitelist.ErrBlocked)
		}
	}
	if e, ok := r.static[id]; ok {
		return e, nil
	}
	if r.registry == nil || id == "" {
		return nil, ErrUnknown
	}
	wc, err := r.registry.Authorize(ctx, id)
	switch {
	case err == nil:
	case errors.Is(err, whitelist.ErrUnknownClient):
		return nil, fmt.Errorf("%w: %w", ErrUnknown, err)
	case Refused(err):
		r.log.InfoContext(ctx, "whitelist refused a client", "client_id", id, "reason", err.Error())
		return nil, fmt.Errorf("%w: %w", ErrUnknown, err)
	default:
		// The registry answers with the refusals above or not at all: a
		// store failure, or a record it cannot read (which only the
		// operator can mend). Neither says anything about the client.
		r.log.ErrorContext(ctx, "client registry unavailable", "client_id", id, "error", err)
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	r.mu.Lock()
	m, ok := r.memo[id]
	r.mu.Unlock()
	if ok && m.updated.Equal(wc.UpdatedAt) && m.changed.Equal(wc.StatusChangedAt) {
		return m.e, nil
	}
	e, err := entryFromRegistry(wc)
	if err != nil {
		r.log.WarnContext(ctx, "whitelist client record unusable", "client_id", id, "error", err)
		return nil, fmt.Errorf("%w: %w", ErrUnknown, err)
	}
	r.mu.Lock()
	if r.memo == nil || len(r.memo) >= maxMemo {
		r.memo = make(map[string]memo)
	}
	r.memo[id] = memo{updated: wc.UpdatedAt, changed: wc.StatusChangedAt, e: e}
	r.mu.Unlock()
	return e, nil
}

// Get is Lookup's client.
func (r *Resolver) Get(ctx context.Context, id string) (*Client, error) {
	e, err := r.Lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	return e.Client, nil
}

// Display is the client a login page or wallet shows: Get, or the
// provider itself for a resident's own sign-in.
func (r *Resolver) Display(ctx context.Context, id string) (*Entry, error) {
	if id == SelfServiceID {
		return &Entry{Client: selfService}, nil
	}
	return r.Lookup(ctx, id)
}

// Refused reports whether err is the registry refusing a client it knows
// (pending, suspended, revoked, blocked, or without a usable tier), as opposed to
// one nobody registered.
func Refused(err error) bool {
	return errors.Is(err, whitelist.ErrPending) || errors.Is(err, whitelist.ErrSuspended) || errors.Is(err, whitelist.ErrBlocked) ||
		errors.Is(err, whitelist.ErrRevoked) || errors.Is(err, whitelist.ErrTierUnavailable)
}

// FromWhitelist is the provider's view of a registry record: what the
// consent screen shows, what the tier allows (scopes, claims, minimum acr)
// and how the client authenticates.
func FromWhitelist(wc *whitelist.Client) *Client {
	scopes := make([]string, 0, len(wc.AllowedScopes))
	for _, sc := range wc.AllowedScopes {
		if sc != oidc.ScopeOpenID {
			scopes = append(scopes, sc)
		}
	}
	claims := make([]string, 0, len(wc.AllowedClaims))
	for _, cl := range wc.AllowedClaims {
		if cl != consent.ClaimVerifiedClaims {
			claims = append(claims, cl)
		}
	}
	c := &Client{
		ID:                  wc.ID,
		DisplayName:         wc.ClientName,
		Organization:        wc.OrganizationName,
		SecretHash:          wc.SecretHash,
		AuthMethod:          wc.TokenEndpointAuthMethod,
		RedirectURIs:        slices.Clone(wc.RedirectURIs),
		PostLogout:          slices.Clone(wc.PostLogoutRedirectURIs),
		SectorIdentifierURI: wc.SectorIdentifierURI,
		Sector:              wc.Sector,
		JWKS:                slices.Clone([]byte(wc.JWKS)),
		Scopes:              scopes,
		IDTokenAlg:          wc.IDTokenSignedResponseAlg,
		PolicyURI:           wc.PolicyURI,
		LogoURI:             wc.LogoURI,
		VerifiedClaims:      slices.Contains(wc.AllowedClaims, consent.ClaimVerifiedClaims),
		ApplicationType:     wc.ApplicationType,
		TierClaims:          claims,
		MinACR:              wc.MinACR,
	}
	c.BackchannelLogoutURI = wc.BackchannelLogoutURI
	return c
}

func entryFromRegistry(wc *whitelist.Client) (*Entry, error) {
	c := FromWhitelist(wc)
	if c.Sector == "" {
		return nil, errors.New("registry record has no pairwise sector")
	}
	if strings.ContainsAny(c.ID, ":{}") {
		return nil, errors.New("client_id must not contain ':', '{' or '}'")
	}
	e, err := newEntry(c)
	if err != nil {
		return nil, err
	}
	if c.AuthMethod == AuthPrivateKeyJWT {
		// The registry's own reading, which knows a jwks_uri client has
		// no inline keys.
		if e.Keys, err = wc.PublicKeys(); err != nil {
			return nil, err
		}
	}
	e.Registry = wc
	return e, nil
}

// RedirectAllowed is an exact match, except that a native (public)
// client's loopback redirect may use any port (RFC 8252 §7.3).
// Registered clients follow the registry's rule.
func (e *Entry) RedirectAllowed(uri string) bool {
	if e.Registry != nil {
		return e.Registry.RedirectAllowed(uri)
	}
	c := e.Client
	if slices.Contains(c.RedirectURIs, uri) {
		return true
	}
	if c.AuthMethod != AuthNone {
		return false
	}
	u, ok := op.HTTPLoopbackOrLocalhost(uri)
	if !ok || u.Scheme != "http" {
		return false
	}
	for _, reg := range c.RedirectURIs {
		if ru, ok := op.HTTPLoopbackOrLocalhost(reg); ok && ru.Scheme == "http" &&
			ru.Hostname() == u.Hostname() && ru.Path == u.Path && ru.RawQuery == u.RawQuery {
			return true
		}
	}
	return false
}

// IsNative reports a client whose loopback redirects may use any port.
func (e *Entry) IsNative() bool {
	return e.Client.AuthMethod == AuthNone || e.Client.ApplicationType == whitelist.AppNative
}
