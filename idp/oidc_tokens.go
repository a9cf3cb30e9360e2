package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// A grant is everything one authorization code minted: its access tokens
// and, with offline_access, a family of rotating refresh tokens. The grant
// ID is the auth request's ID. Every token key carries it as a Redis
// Cluster hash tag, and every token use reads the grant record, so that
// revoking a whole family is a single write of that record.
func grantKey(grant string) string                { return "grant:{" + grant + "}" }
func accessKey(grant, id string) string           { return "tok:{" + grant + "}:" + id }
func refreshKey(grant, hash string) string        { return "rt:{" + grant + "}:" + hash }
func accountGrantsKey(acct, client string) string { return "acctgrants:" + acct + ":" + client }

// tokenSep joins the grant ID and the random part of access token IDs
// and refresh token values; neither part can contain it (base64url).
const tokenSep = "."

var (
	errTokenInactive = errors.New("idp: token is not active")
	errGrantRevoked  = errors.New("idp: grant revoked")
)

type grantRecord struct {
	ID        string   `json:"id"`
	ClientID  string   `json:"client_id"`
	AccountID string   `json:"account_id"`
	Subject   string   `json:"sub"`
	Scopes    []string `json:"scopes"`
	// Claims is the raw `claims` request parameter of the authorization
	// and Granted what the resident let it release: with Scopes, what
	// every later release recomputes the request from.
	Claims   []byte    `json:"claims,omitempty"`
	Granted  []string  `json:"granted,omitempty"`
	ACR      string    `json:"acr,omitempty"`
	AMR      []string  `json:"amr,omitempty"`
	AuthTime time.Time `json:"auth_time,omitzero"`
	Offline  bool      `json:"offline,omitempty"`
	Revoked  bool      `json:"revoked,omitempty"`
	Created  time.Time `json:"created"`
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

// refreshRequest is op.RefreshTokenRequest for one refresh call. Scopes
// narrowed by the RP (SetCurrentScopes) apply to this call only; the
// family keeps the grant's scopes.
type refreshRequest struct {
	token  string
	grant  *grantRecord
	scopes []string
}

func (r *refreshRequest) GetAMR() []string            { return r.grant.AMR }
func (r *refreshRequest) GetAudience() []string       { return []string{r.grant.ClientID} }
func (r *refreshRequest) GetAuthTime() time.Time      { return r.grant.AuthTime }
func (r *refreshRequest) GetClientID() string         { return r.grant.ClientID }
func (r *refreshRequest) GetScopes() []string         { return r.scopes }
func (r *refreshRequest) GetSubject() string          { return r.grant.Subject }
func (r *refreshRequest) SetCurrentScopes(s []string) { r.scopes = s }

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
func (s *Server) newGrant(ctx context.Context, ar *AuthRequest, offline bool) (*grantRecord, error) {
	now := s.now().UTC()
	ttl := s.opts.AccessTokenTTL
	if offline {
		ttl = max(s.opts.RefreshTokenTTL, s.opts.AccessTokenTTL)
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
	ok, err := s.kv.SetNX(ctx, grantKey(g.ID), b, ttl)
	if err != nil {
		return nil, fmt.Errorf("idp: store grant: %w", err)
	}
	if !ok {
		return nil, oidc.ErrInvalidGrant().WithDescription("grant revoked")
	}
	if err := s.kv.SetAdd(ctx, accountGrantsKey(g.AccountID, g.ClientID), max(s.opts.RefreshTokenTTL, s.opts.AccessTokenTTL), g.ID); err != nil {
		return nil, fmt.Errorf("idp: index grant: %w", err)
	}
	return g, nil
}

// loadGrant returns a live grant: present, not revoked, not expired.
func (s *Server) loadGrant(ctx context.Context, id string) (*grantRecord, error) {
	b, err := s.kv.Get(ctx, grantKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errTokenInactive
	}
	if err != nil {
		return nil, fmt.Errorf("idp: load grant: %w", err)
	}
	g := new(grantRecord)
	if err := json.Unmarshal(b, g); err != nil {
		return nil, fmt.Errorf("idp: grant record: %w", err)
	}
	if g.Revoked {
		return nil, errGrantRevoked
	}
	if !s.now().Before(g.Exp) {
		return nil, errTokenInactive
	}
	return g, nil
}

// revokeGrant marks a grant revoked: one write kills every access and
// refresh token it minted. A grant not written yet (its code exchange is
// still running) gets a revoked record, which makes the exchange fail.
func (s *Server) revokeGrant(ctx context.Context, id string) error {
	now := s.now().UTC()
	g := &grantRecord{ID: id, Created: now, Exp: now.Add(s.opts.CodeTTL + s.opts.AccessTokenTTL)}
	if b, err := s.kv.Get(ctx, grantKey(id)); err == nil {
		if err := json.Unmarshal(b, g); err != nil {
			return fmt.Errorf("idp: grant record: %w", err)
		}
		if g.Revoked {
			return nil
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("idp: load grant: %w", err)
	}
	g.Revoked = true
	b, err := json.Marshal(g)
	if err != nil {
		return err
	}
	if err := s.kv.Set(ctx, grantKey(id), b, ttlUntil(now, g.Exp)); err != nil {
		return fmt.Errorf("idp: revoke grant: %w", err)
	}
	s.oidc.metrics.revoked.Inc()
	return nil
}

// revokeAccountClientTokens revokes every grant an account gave a client,
// e.g. when the resident withdraws consent for that RP.
func (s *Server) revokeAccountClientTokens(ctx context.Context, accountID, clientID string) error {
	key := accountGrantsKey(accountID, clientID)
	grants, err := s.kv.SetMembers(ctx, key)
	if err != nil {
		return fmt.Errorf("idp: list grants: %w", err)
	}
	for _, g := range grants {
		if err := s.revokeGrant(ctx, g); err != nil {
			return err
		}
	}
	return s.kv.SetRemove(ctx, key, grants...)
}

func (s *Server) mintAccess(ctx context.Context, g *grantRecord, scopes []string) (string, time.Time, error) {
	now := s.now().UTC()
	exp := now.Add(s.opts.AccessTokenTTL)
	if g.Exp.Before(exp) {
		exp = g.Exp
	}
	rnd := newShortID()
	rec := accessRecord{Grant: g.ID, ClientID: g.ClientID, Subject: g.Subject, Scopes: scopes, Issued: now, Exp: exp}
	b, err := json.Marshal(rec)
	if err != nil {
		return "", time.Time{}, err
	}
	if err := s.kv.Set(ctx, accessKey(g.ID, rnd), b, ttlUntil(now, exp)); err != nil {
		return "", time.Time{}, fmt.Errorf("idp: store access token: %w", err)
	}
	s.oidc.metrics.tokens.WithLabelValues("access").Inc()
	return g.ID + tokenSep + rnd, exp, nil
}

func (s *Server) mintRefresh(ctx context.Context, g *grantRecord) (string, error) {
	now := s.now().UTC()
	value := g.ID + tokenSep + newID()
	b, err := json.Marshal(refreshRecord{Grant: g.ID, Issued: now})
	if err != nil {
		return "", err
	}
	if err := s.kv.Set(ctx, refreshKey(g.ID, sha256Hex(value)), b, ttlUntil(now, g.Exp)); err != nil {
		return "", fmt.Errorf("idp: store refresh token: %w", err)
	}
	s.oidc.metrics.tokens.WithLabelValues("refresh").Inc()
	return value, nil
}

// CreateAccessToken serves a code exchange without offline_access.
func (st *opStorage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	ar, ok := req.(*AuthRequest)
	if !ok {
		return "", time.Time{}, oidc.ErrUnsupportedGrantType()
	}
	g, err := st.s.newGrant(ctx, ar, false)
	if err != nil {
		return "", time.Time{}, err
	}
	return st.s.mintAccess(ctx, g, ar.Scopes)
}

// CreateAccessAndRefreshTokens serves a code exchange with offline_access
// (a new family) and every refresh (the next token of the family).
func (st *opStorage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	s := st.s
	var g *grantRecord
	scopes := req.GetScopes()
	switch r := req.(type) {
	case *AuthRequest:
		var err error
		if g, err = s.newGrant(ctx, r, true); err != nil {
			return "", "", time.Time{}, err
		}
	case *refreshRequest:
		if r.token != current {
			return "", "", time.Time{}, oidc.ErrInvalidGrant()
		}
		var err error
		// Re-read: a concurrent reuse may have revoked the family since
		// TokenRequestByRefreshToken.
		if g, err = s.loadGrant(ctx, r.grant.ID); err != nil {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token is not active")
		}
	default:
		return "", "", time.Time{}, oidc.ErrUnsupportedGrantType()
	}
	rt, err := s.mintRefresh(ctx, g)
	if err != nil {
		return "", "", time.Time{}, err
	}
	at, exp, err := s.mintAccess(ctx, g, scopes)
	if err != nil {
		return "", "", time.Time{}, err
	}
	return at, rt, exp, nil
}

// TokenRequestByRefreshToken consumes a refresh token with
// compare-and-swap (the used mark keeps the record's TTL). Presenting a
// token that was already used means two parties hold the family: revoke
// all of it (RFC 9700 §4.14.2).
func (st *opStorage) TokenRequestByRefreshToken(ctx context.Context, token string) (op.RefreshTokenRequest, error) {
	s := st.s
	grant, _, ok := splitToken(token)
	if !ok {
		return nil, errTokenInactive
	}
	key := refreshKey(grant, sha256Hex(token))
	old, err := s.kv.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errTokenInactive
	}
	if err != nil {
		return nil, fmt.Errorf("idp: load refresh token: %w", err)
	}
	var rec refreshRecord
	if err := json.Unmarshal(old, &rec); err != nil {
		return nil, fmt.Errorf("idp: refresh record: %w", err)
	}
	reused := rec.Used
	if !reused {
		rec.Used = true
		b, err := json.Marshal(rec)
		if err != nil {
			return nil, err
		}
		swapped, err := s.kv.CompareAndSwap(ctx, key, old, b)
		if err != nil {
			return nil, fmt.Errorf("idp: consume refresh token: %w", err)
		}
		reused = !swapped // another request consumed it first
	}
	if reused {
		s.oidc.metrics.reuse.WithLabelValues("refresh").Inc()
		s.log.WarnContext(ctx, "refresh token reused; revoking its family")
		if err := s.revokeGrant(ctx, grant); err != nil {
			s.log.ErrorContext(ctx, "revoking a reused refresh token's family failed", "error", err)
		}
		return nil, errors.New("refresh token already used; its family is revoked")
	}
	g, err := s.loadGrant(ctx, grant)
	if err != nil {
		return nil, err
	}
	noteClient(ctx, g.ClientID)
	return &refreshRequest{token: token, grant: g, scopes: slices.Clone(g.Scopes)}, nil
}

// liveAccess resolves an access token ID to its record and live grant.
func (s *Server) liveAccess(ctx context.Context, tokenID string) (*accessRecord, *grantRecord, error) {
	grant, rnd, ok := splitToken(tokenID)
	if !ok {
		return nil, nil, errTokenInactive
	}
	b, err := s.kv.Get(ctx, accessKey(grant, rnd))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, errTokenInactive
	}
	if err != nil {
		return nil, nil, fmt.Errorf("idp: load access token: %w", err)
	}
	at := new(accessRecord)
	if err := json.Unmarshal(b, at); err != nil {
		return nil, nil, fmt.Errorf("idp: access record: %w", err)
	}
	if !s.now().Before(at.Exp) || at.Grant != grant {
		return nil, nil, errTokenInactive
	}
	g, err := s.loadGrant(ctx, grant)
	if err != nil {
		return nil, nil, err
	}
	return at, g, nil
}

// invalidToken is what userinfo answers (403 with this JSON) for a token
// that is not active; the reason stays in our logs.
func invalidToken() *oidc.Error {
	return &oidc.Error{ErrorType: "invalid_token", Description: "the access token is not active"}
}

// SetUserinfoFromToken answers /userinfo: live token, live grant, the
// same pairwise sub, and the claims released for userinfo under the
// token's scopes.
func (st *opStorage) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, _ string) error {
	at, g, err := st.s.liveAccess(ctx, tokenID)
	if err != nil || at.Subject != subject {
		return invalidToken()
	}
	ui.Subject = at.Subject
	claims, err := st.s.releaseClaims(ctx, g.ClientID, g.AccountID, at.Scopes, g.Claims, g.Granted, consent.TargetUserinfo)
	if err != nil {
		st.s.log.ErrorContext(ctx, "userinfo claims", "error", err)
		return oidc.ErrServerError()
	}
	putClaims(ui, claims)
	return nil
}

// SetIntrospectionFromToken answers only the client the token was issued
// to; anyone else learns {"active":false}. It carries the claims the
// resident granted for userinfo (issue 5: every response carries exactly
// the granted claims): the answer goes only to the client that already
// holds them, and its resource servers then need no userinfo call.
func (st *opStorage) SetIntrospectionFromToken(ctx context.Context, r *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	at, g, err := st.s.liveAccess(ctx, tokenID)
	if err != nil || at.Subject != subject || at.ClientID != clientID {
		return errTokenInactive
	}
	claims, err := st.s.releaseClaims(ctx, g.ClientID, g.AccountID, at.Scopes, g.Claims, g.Granted, consent.TargetIntrospection)
	if err != nil {
		st.s.log.ErrorContext(ctx, "introspection claims", "error", err)
		return oidc.ErrServerError()
	}
	r.Subject = at.Subject
	r.ClientID = at.ClientID
	r.Scope = at.Scopes
	r.TokenType = oidc.BearerToken
	r.Expiration = oidc.FromTime(at.Exp)
	r.IssuedAt = oidc.FromTime(at.Issued)
	r.AuthTime = oidc.FromTime(g.AuthTime)
	r.AuthenticationMethodsReferences = g.AMR
	r.Audience = []string{at.ClientID}
	r.Issuer = op.IssuerFromContext(ctx)
	if g.ACR != "" {
		claims = maps.Clone(claims)
		if claims == nil {
			claims = map[string]any{}
		}
		claims["acr"] = g.ACR
	}
	if len(claims) > 0 {
		r.Claims = claims
	}
	return nil
}

// GetRefreshTokenInfo lets /revoke recognise a refresh token. The token
// value itself is returned as its ID.
func (st *opStorage) GetRefreshTokenInfo(ctx context.Context, _ string, token string) (string, string, error) {
	grant, _, ok := splitToken(token)
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	if _, err := st.s.kv.Get(ctx, refreshKey(grant, sha256Hex(token))); err != nil {
		return "", "", op.ErrInvalidRefreshToken
	}
	b, err := st.s.kv.Get(ctx, grantKey(grant))
	if err != nil {
		return "", "", op.ErrInvalidRefreshToken
	}
	var g grantRecord
	if err := json.Unmarshal(b, &g); err != nil {
		return "", "", op.ErrInvalidRefreshToken
	}
	return g.Subject, token, nil
}

// RevokeToken (RFC 7009): a refresh token revokes its whole family (§2.1
// asks that the grant's access tokens go too); an access token goes alone.
// Only the client the token was issued to may revoke it; unknown tokens
// are a success.
func (st *opStorage) RevokeToken(ctx context.Context, tokenOrID, _, clientID string) *oidc.Error {
	s := st.s
	grant, rnd, ok := splitToken(tokenOrID)
	if !ok {
		return nil
	}
	notYours := oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
	if _, err := s.kv.Get(ctx, refreshKey(grant, sha256Hex(tokenOrID))); err == nil {
		b, err := s.kv.Get(ctx, grantKey(grant))
		if err != nil {
			return nil // the family expired already
		}
		var g grantRecord
		if err := json.Unmarshal(b, &g); err != nil {
			return oidc.ErrServerError()
		}
		if g.ClientID != clientID {
			return notYours
		}
		if err := s.revokeGrant(ctx, grant); err != nil {
			s.log.ErrorContext(ctx, "revocation failed", "error", err)
			return oidc.ErrServerError()
		}
		return nil
	}
	b, err := s.kv.Get(ctx, accessKey(grant, rnd))
	if err != nil {
		return nil
	}
	var at accessRecord
	if err := json.Unmarshal(b, &at); err != nil {
		return oidc.ErrServerError()
	}
	if at.ClientID != clientID {
		return notYours
	}
	if err := s.kv.Delete(ctx, accessKey(grant, rnd)); err != nil {
		return oidc.ErrServerError()
	}
	return nil
}
