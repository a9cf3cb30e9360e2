package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
)

// A grant is everything one authorization code minted: its access tokens
// and, with offline_access, a family of rotating refresh tokens. The grant
// ID is the auth request's ID. Every token key carries it as a Redis
// Cluster hash tag, and every token use reads the grant record, so that
// revoking a whole family is a single write of that record.

// grants stores grants and their tokens.
type grants struct {
	kv      store.KV
	ttl     TTLs
	clock   func() time.Time
	log     *slog.Logger
	metrics *providerMetrics
}

func (gr *grants) now() time.Time { return gr.clock() }

func grantKey(grant string) string { return "grant:{" + grant + "}" }

func accessKey(grant, id string) string { return "tok:{" + grant + "}:" + id }

func refreshKey(grant, hash string) string { return "rt:{" + grant + "}:" + hash }

func accountGrantsKey(acct, client string) string { return "acctgrants:" + acct + ":" + client }

// tokenSep joins the grant ID and the random part of access token IDs
// and refresh token values; neither part can contain it (base64url).
const tokenSep = "."

type grantRecord struct {
	ID        string   `json:"id"`
	ClientID  string   `json:"client_id"`
	AccountID string   `json:"account_id"`
	Subject   string   `json:"sub"`
	Scopes    []string `json:"scopes"`
	// Claims is the `claims` request parameter of the authorization and
	// Granted what the resident let it release: with the scopes of the
	// token at hand, what every later release resolves the request from.
	Claims   *consent.ClaimsRequest `json:"claims,omitempty"`
	Granted  []string               `json:"granted,omitempty"`
	ACR      string                 `json:"acr,omitempty"`
	AMR      []string               `json:"amr,omitempty"`
	AuthTime time.Time              `json:"auth_time,omitzero"`
	Offline  bool                   `json:"offline,omitempty"`
	Revoked  bool                   `json:"revoked,omitempty"`
	Created  time.Time              `json:"created"`
	// Exp ends the family: refresh tokens do not slide it, so a resident
	// signs in with the card again at least once per RefreshTokenTTL.
	Exp time.Time `json:"exp"`
}

type accessRecord struct {
	Grant    string    `json:"grant"`
	ClientID string    `json:"client_id"`
	Subject  string    `json:"sub"`
	Scopes   []string  `json:"scopes"`
	Issued   time.Time `json:"iat"`
	Exp      time.Time `json:"exp"`
}

type refreshRecord struct {
	Grant  string    `json:"grant"`
	Used   bool      `json:"used,omitempty"`
	Issued time.Time `json:"iat"`
}

// splitToken returns the grant of an access token ID or refresh token.
func splitToken(v string) (grant, rest string, ok bool) {
	grant, rest, ok = strings.Cut(v, tokenSep)
	if !ok || grant == "" || rest == "" || len(v) > 256 || strings.ContainsAny(v, ":{}") {
		return "", "", false
	}
	return grant, rest, true
}

func ttlUntil(now, exp time.Time) time.Duration {
	return max(exp.Sub(now), time.Second)
}

// newGrant creates the grant record of a code exchange. SetNX: if a
// replay of the code already wrote a revoked record, minting stops here.
func (gr *grants) create(ctx context.Context, ar *authreq.AuthRequest, offline bool) (*grantRecord, error) {
	now := gr.now().UTC()
	ttl := gr.ttl.AccessToken
	if offline {
		ttl = max(gr.ttl.RefreshToken, gr.ttl.AccessToken)
	}
	g := &grantRecord{
		ID: ar.ID, ClientID: ar.ClientID, AccountID: ar.AccountID, Subject: ar.Subject,
		Scopes: ar.Scopes, Claims: ar.Claims, Granted: ar.Granted, ACR: ar.ACR, AMR: ar.AMR, AuthTime: ar.AuthTime,
		Offline: offline, Created: now, Exp: now.Add(ttl),
	}
	b, err := json.Marshal(g)
	if err != nil {
		return nil, err
	}
	ok, err := gr.kv.SetNX(ctx, grantKey(g.ID), b, ttl)
	if err != nil {
		return nil, fmt.Errorf("provider: store grant: %w", err)
	}
	if !ok {
		return nil, oidc.ErrInvalidGrant().WithDescription("grant revoked")
	}
	if err := gr.kv.SetAdd(ctx, accountGrantsKey(g.AccountID, g.ClientID), max(gr.ttl.RefreshToken, gr.ttl.AccessToken), g.ID); err != nil {
		return nil, fmt.Errorf("provider: index grant: %w", err)
	}
	return g, nil
}

// loadGrant returns a live grant: present, not revoked, not expired.
func (gr *grants) load(ctx context.Context, id string) (*grantRecord, error) {
	b, err := gr.kv.Get(ctx, grantKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errTokenInactive
	}
	if err != nil {
		return nil, fmt.Errorf("provider: load grant: %w", err)
	}
	g := new(grantRecord)
	if err := json.Unmarshal(b, g); err != nil {
		return nil, fmt.Errorf("provider: grant record: %w", err)
	}
	if g.Revoked {
		return nil, errGrantRevoked
	}
	if !gr.now().Before(g.Exp) {
		return nil, errTokenInactive
	}
	return g, nil
}

// revokeGrant marks a grant revoked: one write kills every access and
// refresh token it minted. A grant not written yet (its code exchange is
// still running) gets a revoked record, which makes the exchange fail.
func (gr *grants) revoke(ctx context.Context, id string) error {
	now := gr.now().UTC()
	g := &grantRecord{ID: id, Created: now, Exp: now.Add(gr.ttl.Code + gr.ttl.AccessToken)}
	if b, err := gr.kv.Get(ctx, grantKey(id)); err == nil {
		if err := json.Unmarshal(b, g); err != nil {
			return fmt.Errorf("provider: grant record: %w", err)
		}
		if g.Revoked {
			return nil
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("provider: load grant: %w", err)
	}
	g.Revoked = true
	b, err := json.Marshal(g)
	if err != nil {
		return err
	}
	if err := gr.kv.Set(ctx, grantKey(id), b, ttlUntil(now, g.Exp)); err != nil {
		return fmt.Errorf("provider: revoke grant: %w", err)
	}
	gr.metrics.revoked.Inc()
	return nil
}

// revokeAccountClient revokes every grant an account gave a client,
// e.g. when the resident withdraws consent for that RP.
func (gr *grants) revokeAccountClient(ctx context.Context, accountID, clientID string) error {
	key := accountGrantsKey(accountID, clientID)
	grants, err := gr.kv.SetMembers(ctx, key)
	if err != nil {
		return fmt.Errorf("provider: list grants: %w", err)
	}
	for _, g := range grants {
		if err := gr.revoke(ctx, g); err != nil {
			return err
		}
	}
	return gr.kv.SetRemove(ctx, key, grants...)
}

func (gr *grants) mintAccess(ctx context.Context, g *grantRecord, scopes []string) (string, time.Time, error) {
	now := gr.now().UTC()
	exp := now.Add(gr.ttl.AccessToken)
	if g.Exp.Before(exp) {
		exp = g.Exp
	}
	rnd := ids.Short()
	rec := accessRecord{Grant: g.ID, ClientID: g.ClientID, Subject: g.Subject, Scopes: scopes, Issued: now, Exp: exp}
	b, err := json.Marshal(rec)
	if err != nil {
		return "", time.Time{}, err
	}
	if err := gr.kv.Set(ctx, accessKey(g.ID, rnd), b, ttlUntil(now, exp)); err != nil {
		return "", time.Time{}, fmt.Errorf("provider: store access token: %w", err)
	}
	gr.metrics.tokens.WithLabelValues("access").Inc()
	return g.ID + tokenSep + rnd, exp, nil
}

func (gr *grants) mintRefresh(ctx context.Context, g *grantRecord) (string, error) {
	now := gr.now().UTC()
	value := g.ID + tokenSep + ids.Long()
	b, err := json.Marshal(refreshRecord{Grant: g.ID, Issued: now})
	if err != nil {
		return "", err
	}
	if err := gr.kv.Set(ctx, refreshKey(g.ID, ids.Hash(value)), b, ttlUntil(now, g.Exp)); err != nil {
		return "", fmt.Errorf("provider: store refresh token: %w", err)
	}
	gr.metrics.tokens.WithLabelValues("refresh").Inc()
	return value, nil
}

// liveAccess resolves an access token ID to its record and live grant.
func (gr *grants) liveAccess(ctx context.Context, tokenID string) (*accessRecord, *grantRecord, error) {
	grant, rnd, ok := splitToken(tokenID)
	if !ok {
		return nil, nil, errTokenInactive
	}
	b, err := gr.kv.Get(ctx, accessKey(grant, rnd))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, errTokenInactive
	}
	if err != nil {
		return nil, nil, fmt.Errorf("provider: load access token: %w", err)
	}
	at := new(accessRecord)
	if err := json.Unmarshal(b, at); err != nil {
		return nil, nil, fmt.Errorf("provider: access record: %w", err)
	}
	if !gr.now().Before(at.Exp) || at.Grant != grant {
		return nil, nil, errTokenInactive
	}
	g, err := gr.load(ctx, grant)
	if err != nil {
		return nil, nil, err
	}
	return at, g, nil
}
