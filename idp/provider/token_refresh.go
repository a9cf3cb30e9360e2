package provider

import (
	"context"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// RefreshToken is the refresh_token grant: the family rotates, and
// presenting a used token revokes all of it (TokenRequestByRefreshToken).
// The RP may narrow the scopes for this call only.
func (s *Server) RefreshToken(ctx context.Context, r *op.ClientRequest[oidc.RefreshTokenRequest]) (*op.Response, error) {
	req, err := op.RefreshTokenRequestByRefreshToken(ctx, s.storage, r.Data.RefreshToken)
	if err != nil {
		return nil, err
	}
	if r.Client.GetID() != req.GetClientID() {
		return nil, oidc.ErrInvalidGrant()
	}
	if err := op.ValidateRefreshTokenScopes(r.Data.Scopes, req); err != nil {
		return nil, err
	}
	resp, err := op.CreateTokenResponse(ctx, req, r.Client, s.creatorFor(r.Client), true, "", r.Data.RefreshToken)
	if err != nil {
		return nil, err
	}
	return op.NewResponse(resp), nil
}
