package provider

import (
	"context"
	"errors"
	"time"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
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
	// next is the family's next refresh token, written when the
	// presented one was consumed; acct the results of Accounts.ReadOps
	// read then (nil when the grant releases no claims).
	next string
	acct []store.Result
}

func (r *refreshRequest) GetAMR() []string { return r.grant.AMR }

func (r *refreshRequest) GetAudience() []string { return []string{r.grant.ClientID} }

func (r *refreshRequest) GetAuthTime() time.Time { return r.grant.AuthTime }

func (r *refreshRequest) GetClientID() string { return r.grant.ClientID }

func (r *refreshRequest) GetScopes() []string { return r.scopes }

func (r *refreshRequest) GetSubject() string { return r.grant.Subject }

func (r *refreshRequest) SetCurrentScopes(s []string) { r.scopes = s }

// CreateAccessToken serves a code exchange without offline_access: the
// exchange wrote the grant already (exchangeCode).
func (st *storage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	cr, ok := req.(*codeRequest)
	if !ok {
		return "", time.Time{}, oidc.ErrUnsupportedGrantType()
	}
	return st.s.grants.mintAccess(ctx, cr.grant.g, cr.Scopes)
}

// CreateAccessAndRefreshTokens serves a code exchange with offline_access
// (a new family, written by the exchange) and every refresh (the next
// token of the family).
func (st *storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	s := st.s
	var (
		g   *grantRecord
		rt  string
		err error
	)
	scopes := req.GetScopes()
	switch r := req.(type) {
	case *codeRequest:
		if r.grant.rt == "" {
			// The library wants a family the exchange did not make.
			return "", "", time.Time{}, oidc.ErrServerError().WithDescription("no refresh token was made")
		}
		g, rt = r.grant.g, r.grant.rt
	case *refreshRequest:
		if r.token != current {
			return "", "", time.Time{}, oidc.ErrInvalidGrant()
		}
		if r.next == "" {
			return "", "", time.Time{}, oidc.ErrServerError().WithDescription("no refresh token was made")
		}
		g, rt = r.grant, r.next
	default:
		return "", "", time.Time{}, oidc.ErrUnsupportedGrantType()
	}
	at, exp, err := s.grants.mintAccess(ctx, g, scopes)
	if err != nil {
		return "", "", time.Time{}, err
	}
	return at, rt, exp, nil
}
