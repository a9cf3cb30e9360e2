package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
)

var (
	errTokenInactive = errors.New("provider: token is not active")
	errGrantRevoked  = errors.New("provider: grant revoked")
)

// refreshRequest is op.RefreshTokenRequest for one refresh call. Scopes
// narrowed by the RP (SetCurrentScopes) apply to this call only; the
// family keeps the grant's scopes.
type refreshRequest struct {
	token  string
	grant  *grantRecord
	scopes []string
}

func (r *refreshRequest) GetAMR() []string { return r.grant.AMR }

func (r *refreshRequest) GetAudience() []string { return []string{r.grant.ClientID} }

func (r *refreshRequest) GetAuthTime() time.Time { return r.grant.AuthTime }

func (r *refreshRequest) GetClientID() string { return r.grant.ClientID }

func (r *refreshRequest) GetScopes() []string { return r.scopes }

func (r *refreshRequest) GetSubject() string { return r.grant.Subject }

func (r *refreshRequest) SetCurrentScopes(s []string) { r.scopes = s }

// CreateAccessToken serves a code exchange without offline_access.
func (st *storage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	ar, ok := req.(*authreq.AuthRequest)
	if !ok {
		return "", time.Time{}, oidc.ErrUnsupportedGrantType()
	}
	g, err := st.s.grants.create(ctx, ar, false)
	if err != nil {
		return "", time.Time{}, err
	}
	return st.s.grants.mintAccess(ctx, g, ar.Scopes)
}

// CreateAccessAndRefreshTokens serves a code exchange with offline_access
// (a new family) and every refresh (the next token of the family).
func (st *storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	s := st.s
	var g *grantRecord
	scopes := req.GetScopes()
	switch r := req.(type) {
	case *authreq.AuthRequest:
		var err error
		if g, err = s.grants.create(ctx, r, true); err != nil {
			return "", "", time.Time{}, err
		}
	case *refreshRequest:
		if r.token != current {
			return "", "", time.Time{}, oidc.ErrInvalidGrant()
		}
		var err error
		// Re-read: a concurrent reuse may have revoked the family since
		// TokenRequestByRefreshToken.
		if g, err = s.grants.load(ctx, r.grant.ID); err != nil {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token is not active")
		}
	default:
		return "", "", time.Time{}, oidc.ErrUnsupportedGrantType()
	}
	rt, err := s.grants.mintRefresh(ctx, g)
	if err != nil {
		return "", "", time.Time{}, err
	}
	at, exp, err := s.grants.mintAccess(ctx, g, scopes)
	if err != nil {
		return "", "", time.Time{}, err
	}
	return at, rt, exp, nil
}

// TokenRequestByRefreshToken consumes a refresh token with
// compare-and-swap (the used mark keeps the record's TTL). Presenting a
// token that was already used means two parties hold the family: revoke
// all of it (RFC 9700 §4.14.2).
func (st *storage) TokenRequestByRefreshToken(ctx context.Context, token string) (op.RefreshTokenRequest, error) {
	s := st.s
	grant, _, ok := splitToken(token)
	if !ok {
		return nil, errTokenInactive
	}
	key := refreshKey(grant, ids.Hash(token))
	old, err := s.kv.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errTokenInactive
	}
	if err != nil {
		return nil, fmt.Errorf("provider: load refresh token: %w", err)
	}
	var rec refreshRecord
	if err := json.Unmarshal(old, &rec); err != nil {
		return nil, fmt.Errorf("provider: refresh record: %w", err)
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
			return nil, fmt.Errorf("provider: consume refresh token: %w", err)
		}
		reused = !swapped // another request consumed it first
	}
	if reused {
		s.metrics.reuse.WithLabelValues("refresh").Inc()
		s.log.WarnContext(ctx, "refresh token reused; revoking its family")
		if err := s.grants.revoke(ctx, grant); err != nil {
			s.log.ErrorContext(ctx, "revoking a reused refresh token's family failed", "error", err)
		}
		return nil, errors.New("refresh token already used; its family is revoked")
	}
	g, err := s.grants.load(ctx, grant)
	if err != nil {
		return nil, err
	}
	return &refreshRequest{token: token, grant: g, scopes: slices.Clone(g.Scopes)}, nil
}

// invalidToken is what userinfo answers (403 with this JSON) for a token
// that is not active; the reason stays in our logs.
func invalidToken() *oidc.Error {
	return &oidc.Error{ErrorType: "invalid_token", Description: "the access token is not active"}
}

// SetUserinfoFromToken answers /userinfo: live token, live grant, the
// same pairwise sub, and the claims released for userinfo under the
// token's scopes.
func (st *storage) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, _ string) error {
	at, g, err := st.s.grants.liveAccess(ctx, tokenID)
	if err != nil || at.Subject != subject {
		return invalidToken()
	}
	// A client the registry no longer approves gets nothing, although its
	// token would otherwise stay good until it expires.
	if _, err := st.s.clients.Lookup(ctx, g.ClientID); err != nil {
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
// to, and only while the registry approves it; anyone else learns
// {"active":false}. It carries the claims the resident granted for
// userinfo (every response carries exactly the granted claims): the
// answer goes only to the client that already holds them, and its
// resource servers then need no userinfo call.
func (st *storage) SetIntrospectionFromToken(ctx context.Context, r *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	at, g, err := st.s.grants.liveAccess(ctx, tokenID)
	if err != nil || at.Subject != subject || at.ClientID != clientID {
		return errTokenInactive
	}
	if _, err := st.s.clients.Lookup(ctx, g.ClientID); err != nil {
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
func (st *storage) GetRefreshTokenInfo(ctx context.Context, _ string, token string) (string, string, error) {
	grant, _, ok := splitToken(token)
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	if _, err := st.s.kv.Get(ctx, refreshKey(grant, ids.Hash(token))); err != nil {
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
func (st *storage) RevokeToken(ctx context.Context, tokenOrID, _, clientID string) *oidc.Error {
	s := st.s
	grant, rnd, ok := splitToken(tokenOrID)
	if !ok {
		return nil
	}
	notYours := oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
	if _, err := s.kv.Get(ctx, refreshKey(grant, ids.Hash(tokenOrID))); err == nil {
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
		if err := s.grants.revoke(ctx, grant); err != nil {
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

// cutToken splits the plaintext of an opaque access token,
// "tokenID:subject"; neither part can contain ':' (base64url).
func cutToken(plain string) (tokenID, subject string, ok bool) {
	tokenID, subject, ok = strings.Cut(plain, ":")
	if !ok || tokenID == "" || subject == "" || strings.Contains(subject, ":") {
		return "", "", false
	}
	return tokenID, subject, true
}
