package provider

import (
	"context"
	"errors"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/idp/authreq"
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
	// key and the record before and after it was consumed, to give the
	// token back if the rotation fails for a passing reason.
	key          string
	unused, used []byte
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
	g, _, err := st.s.grants.create(ctx, ar, false)
	if err != nil {
		return "", time.Time{}, err
	}
	return st.s.grants.mintAccess(ctx, g, ar.Scopes)
}

// CreateAccessAndRefreshTokens serves a code exchange with offline_access
// (a new family) and every refresh (the next token of the family).
func (st *storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	s := st.s
	var (
		g   *grantRecord
		rt  string
		err error
	)
	scopes := req.GetScopes()
	switch r := req.(type) {
	case *authreq.AuthRequest:
		if g, rt, err = s.grants.create(ctx, r, true); err != nil {
			return "", "", time.Time{}, err
		}
	case *refreshRequest:
		if r.token != current {
			return "", "", time.Time{}, oidc.ErrInvalidGrant()
		}
		g, rt, err = s.grants.rotate(ctx, r.grant)
		if errors.Is(err, errTokenInactive) || errors.Is(err, errGrantRevoked) {
			return "", "", time.Time{}, invalidRefresh()
		}
		if err != nil {
			return "", "", time.Time{}, err
		}
	default:
		return "", "", time.Time{}, oidc.ErrUnsupportedGrantType()
	}
	at, exp, err := s.grants.mintAccess(ctx, g, scopes)
	if err != nil {
		return "", "", time.Time{}, err
	}
	return at, rt, exp, nil
}
