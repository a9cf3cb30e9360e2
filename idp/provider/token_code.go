package provider

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
)

// CodeExchange is the authorization_code grant (RFC 6749 §4.1.3): the
// client was authenticated by VerifyClient; the code is taken once, and
// must belong to that client, its redirect_uri and its PKCE challenge.
func (s *Server) CodeExchange(ctx context.Context, r *op.ClientRequest[oidc.AccessTokenRequest]) (*op.Response, error) {
	ar, err := s.takeCode(ctx, r.Data.Code)
	if err != nil {
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid code").WithParent(err)
	}
	if err := op.AuthorizeCodeChallenge(r.Data.CodeVerifier, ar.GetCodeChallenge()); err != nil {
		return nil, err
	}
	if r.Client.GetID() != ar.ClientID {
		return nil, oidc.ErrInvalidGrant()
	}
	if r.Data.RedirectURI != ar.RedirectURI {
		return nil, oidc.ErrInvalidGrant().WithDescription("redirect_uri does not correspond")
	}
	resp, err := op.CreateTokenResponse(ctx, ar, r.Client, s.creatorFor(r.Client), true, r.Data.Code, "")
	if err != nil {
		return nil, err
	}
	return op.NewResponse(resp), nil
}

// takeCode is the single-use point of a code. Take (GETDEL) lets exactly
// one exchange through; a tombstone remembers the code for as long as
// what it minted may live, so that a replay revokes all of it (RFC 6749
// §4.1.2).
func (s *Server) takeCode(ctx context.Context, code string) (*authreq.AuthRequest, error) {
	h := ids.Hash(code)
	v, err := s.kv.Take(ctx, codeKey(h))
	if errors.Is(err, store.ErrNotFound) {
		if grant, err := s.kv.Get(ctx, usedCodeKey(h)); err == nil {
			s.metrics.reuse.WithLabelValues("code").Inc()
			s.log.WarnContext(ctx, "authorization code replayed; revoking its grant")
			if err := s.grants.revoke(ctx, string(grant)); err != nil {
				s.log.ErrorContext(ctx, "revoking a replayed code's grant failed", "error", err)
			}
			return nil, errors.New("authorization code already used; its tokens are revoked")
		}
		return nil, errors.New("unknown or expired authorization code")
	}
	if err != nil {
		return nil, fmt.Errorf("provider: take code: %w", err)
	}
	ar, err := s.requests.Load(ctx, string(v))
	if err != nil {
		return nil, err
	}
	if !ar.Completed || subtle.ConstantTimeCompare([]byte(ar.CodeHash), []byte(h)) != 1 {
		return nil, errors.New("authorization code does not match its request")
	}
	if err := s.kv.Set(ctx, usedCodeKey(h), []byte(ar.ID), s.grantTTL(ar)); err != nil {
		return nil, fmt.Errorf("provider: code tombstone: %w", err)
	}
	return ar, nil
}

// AuthRequestByCode is never called: the code exchange is Watashi's own.
func (st *storage) AuthRequestByCode(context.Context, string) (op.AuthRequest, error) {
	return nil, errOwnEndpoint
}

// grantTTL is how long what a request mints may live: the refresh family
// when offline_access was granted, else the access token.
func (s *Server) grantTTL(ar *authreq.AuthRequest) time.Duration {
	if slices.Contains(ar.Scopes, oidc.ScopeOfflineAccess) {
		return max(s.ttl.RefreshToken, s.ttl.AccessToken)
	}
	return s.ttl.AccessToken
}
