package whitelist

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// InitialAccessToken lets an integrator register a client (RFC 7591
// §1.2). Operators issue them, one per integrator or per onboarding
// campaign; the token decides the tier its clients get and whether they
// start approved. Only its SHA-256 is stored.
type InitialAccessToken struct {
	ID          string    `json:"id"`
	Hash        string    `json:"hash"`
	Tier        string    `json:"tier"`
	AutoApprove bool      `json:"auto_approve"`
	OneTime     bool      `json:"one_time"`
	ExpiresAt   time.Time `json:"expires_at"`
	Note        string    `json:"note,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	CreatedBy   string    `json:"created_by"`
	Uses        int       `json:"uses"`
	LastUsedAt  time.Time `json:"last_used_at,omitzero"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
	RevokedBy   string    `json:"revoked_by,omitempty"`
}

// State is a token's standing at the registry's clock: active, expired,
// used (one-time tokens) or revoked.
func (t *InitialAccessToken) State(now time.Time) string {
	switch {
	case !t.RevokedAt.IsZero():
		return "revoked"
	case t.OneTime && t.Uses > 0:
		return "used"
	case !now.Before(t.ExpiresAt):
		return "expired"
	default:
		return "active"
	}
}

// TokenRequest is an operator's order for an initial access token.
type TokenRequest struct {
	Tier string
	// TTL is the token's lifetime (default 7 days, at most a year).
	TTL         time.Duration
	OneTime     bool
	AutoApprove bool
	Note        string
	Change      Change
}

const (
	defaultTokenTTL = 7 * 24 * time.Hour
	maxTokenTTL     = 366 * 24 * time.Hour
	tokenIDPrefix   = "iat_"
)

// IssueToken creates an initial access token and returns it in the clear
// (the only time it exists so) with its record.
func (r *Registry) IssueToken(ctx context.Context, req TokenRequest) (string, *InitialAccessToken, error) {
	if err := req.Change.validate(); err != nil {
		return "", nil, err
	}
	if _, ok := r.cat.tiers[req.Tier]; !ok {
		return "", nil, inputErr("tier %q is not configured (configured: %s)", req.Tier, strings.Join(r.cat.order, ", "))
	}
	if req.TTL == 0 {
		req.TTL = defaultTokenTTL
	}
	if req.TTL < 0 || req.TTL > maxTokenTTL {
		return "", nil, inputErr("token lifetime must be positive and at most %s", maxTokenTTL)
	}
	if len([]rune(req.Note)) > maxTokenFieldRune || hasControl(req.Note) {
		return "", nil, inputErr("note must be at most %d characters without control characters", maxTokenFieldRune)
	}
	idb := make([]byte, 8)
	if _, err := rand.Read(idb); err != nil {
		return "", nil, err
	}
	id := tokenIDPrefix + hex.EncodeToString(idb)
	secret := randomToken(32)
	token := id + "." + secret
	now := r.now().UTC()
	t := &InitialAccessToken{
		ID: id, Hash: tokenHash(secret), Tier: req.Tier, AutoApprove: req.AutoApprove, OneTime: req.OneTime,
		ExpiresAt: now.Add(req.TTL), Note: req.Note, CreatedAt: now, CreatedBy: req.Change.Actor,
	}
	b, err := json.Marshal(t)
	if err != nil {
		return "", nil, err
	}
	ok, err := r.b.Store.SetNX(ctx, tokenKey(id), b, 0)
	if err != nil {
		return "", nil, fmt.Errorf("whitelist: save token: %w", err)
	}
	if !ok {
		return "", nil, ErrConflict
	}
	if err := r.b.Store.SetAdd(ctx, tokensKey, 0, id); err != nil {
		return "", nil, fmt.Errorf("whitelist: index token: %w", err)
	}
	if err := r.appendAudit(ctx, tokenLogKey, AuditEvent{Action: ActionTokenIssue, TokenID: id,
		Actor: req.Change.Actor, Via: req.Change.Via, Reason: req.Change.Reason}); err != nil {
		return token, t, err
	}
	return token, t, nil
}

func (r *Registry) loadToken(ctx context.Context, id string) (*InitialAccessToken, []byte, error) {
	if !strings.HasPrefix(id, tokenIDPrefix) || len(id) != len(tokenIDPrefix)+16 {
		return nil, nil, ErrUnknownToken
	}
	raw, err := r.b.Store.Get(ctx, tokenKey(id))
	if errors.Is(err, r.b.ErrNotFound) {
		return nil, nil, ErrUnknownToken
	}
	if err != nil {
		return nil, nil, fmt.Errorf("whitelist: load token: %w", err)
	}
	t := new(InitialAccessToken)
	if err := json.Unmarshal(raw, t); err != nil || t.ID != id {
		return nil, nil, fmt.Errorf("whitelist: token record %q is corrupt", id)
	}
	return t, raw, nil
}

// ListTokens returns every token record (never the tokens), newest
// first.
func (r *Registry) ListTokens(ctx context.Context) ([]*InitialAccessToken, error) {
	ids, err := r.b.Store.SetMembers(ctx, tokensKey)
	if err != nil {
		return nil, fmt.Errorf("whitelist: list tokens: %w", err)
	}
	var out []*InitialAccessToken
	for _, id := range ids {
		t, _, err := r.loadToken(ctx, id)
		if errors.Is(err, ErrUnknownToken) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *InitialAccessToken) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// TokenHistory returns the token catalogue's audit log.
func (r *Registry) TokenHistory(ctx context.Context) ([]AuditEvent, error) {
	return r.readAudit(ctx, tokenLogKey)
}

// RevokeToken stops a token from registering more clients. Clients it
// already registered are not affected.
func (r *Registry) RevokeToken(ctx context.Context, id string, ch Change) (*InitialAccessToken, error) {
	if err := ch.validate(); err != nil {
		return nil, err
	}
	for range 8 {
		t, raw, err := r.loadToken(ctx, id)
		if err != nil {
			return nil, err
		}
		if !t.RevokedAt.IsZero() {
			return nil, ErrTokenRevoked
		}
		t.RevokedAt, t.RevokedBy = r.now().UTC(), ch.Actor
		nb, err := json.Marshal(t)
		if err != nil {
			return nil, err
		}
		ok, err := r.b.Store.CompareAndSwap(ctx, tokenKey(id), raw, nb)
		if err != nil {
			return nil, fmt.Errorf("whitelist: save token: %w", err)
		}
		if ok {
			return t, r.appendAudit(ctx, tokenLogKey, AuditEvent{Action: ActionTokenRevoke, TokenID: id,
				Actor: ch.Actor, Via: ch.Via, Reason: ch.Reason})
		}
	}
	return nil, ErrConflict
}

// checkToken finds the record of a presented token and checks that it
// may be used now, without using it.
func (r *Registry) checkToken(ctx context.Context, token string) (*InitialAccessToken, error) {
	id, secret, ok := strings.Cut(token, ".")
	if !ok || secret == "" {
		return nil, ErrUnknownToken
	}
	t, _, err := r.loadToken(ctx, id)
	if err != nil {
		return nil, err
	}
	if !tokenMatches(secret, t.Hash) {
		return nil, ErrUnknownToken
	}
	switch t.State(r.now()) {
	case "revoked":
		return nil, ErrTokenRevoked
	case "used":
		return nil, ErrTokenUsed
	case "expired":
		return nil, ErrTokenExpired
	}
	return t, nil
}

// useToken records one use, atomically: of two registrations racing on a
// one-time token exactly one succeeds.
func (r *Registry) useToken(ctx context.Context, id string) error {
	for range 8 {
		t, raw, err := r.loadToken(ctx, id)
		if err != nil {
			return err
		}
		switch t.State(r.now()) {
		case "revoked":
			return ErrTokenRevoked
		case "used":
			return ErrTokenUsed
		case "expired":
			return ErrTokenExpired
		}
		t.Uses++
		t.LastUsedAt = r.now().UTC()
		nb, err := json.Marshal(t)
		if err != nil {
			return err
		}
		ok, err := r.b.Store.CompareAndSwap(ctx, tokenKey(id), raw, nb)
		if err != nil {
			return fmt.Errorf("whitelist: save token: %w", err)
		}
		if ok {
			return nil
		}
	}
	return ErrConflict
}
