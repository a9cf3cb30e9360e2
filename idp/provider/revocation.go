package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
)

// handleRevoke is token revocation (RFC 7009). A refresh token revokes
// its whole family (§2.1 asks that the grant's access tokens go too); an
// access token goes alone. Only the client the token was issued to may
// revoke it; unknown tokens are a success (§2.2). Errors are RFC 6749
// §5.2 JSON, and a store that cannot answer is 503: a client must never
// believe a token revoked that is not.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if oerr := checkForm(r.PostForm); oerr != nil {
		s.errs.write(w, r, oerr, s.errs.basicChallenge())
		return
	}
	cc, oerr := parseCredentials(r.PostForm, r.Header.Get("Authorization"))
	if oerr != nil {
		s.errs.write(w, r, oerr, s.errs.basicChallenge())
		return
	}
	e, err := s.authenticate(ctx, cc)
	if err != nil {
		s.errs.write(w, r, err, s.errs.basicChallenge())
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		s.errs.write(w, r, oidc.ErrInvalidRequest().WithDescription("token is missing"), "")
		return
	}
	if err := s.revoke(ctx, e.Client.ID, token); err != nil {
		s.errs.write(w, r, err, s.errs.basicChallenge())
		return
	}
	w.WriteHeader(http.StatusOK)
}

// notYours refuses to revoke another client's token (RFC 7009 §2.1).
func notYours() *oidc.Error {
	return oidc.ErrInvalidClient().WithDescription("the token was not issued to this client")
}

// revoke revokes a refresh token's family or one access token of
// clientID. token_type_hint is not needed: a refresh token is looked up
// first, and anything else is tried as an access token.
func (s *Server) revoke(ctx context.Context, clientID, token string) error {
	if grant, _, ok := splitToken(token); ok {
		_, err := s.kv.Get(ctx, refreshKey(grant, ids.Hash(token)))
		switch {
		case err == nil:
			b, err := s.kv.Get(ctx, grantKey(grant))
			if errors.Is(err, store.ErrNotFound) {
				return nil // the family expired already
			}
			if err != nil {
				return fmt.Errorf("provider: load grant: %w", err)
			}
			var g grantRecord
			if err := json.Unmarshal(b, &g); err != nil {
				return fmt.Errorf("provider: grant record: %w", err)
			}
			if g.ClientID != clientID {
				return notYours()
			}
			return s.grants.revoke(ctx, grant)
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("provider: load refresh token: %w", err)
		}
	}
	tokenID, _, ok := s.accessTokenID(token)
	if !ok {
		return nil
	}
	return s.grants.revokeAccess(ctx, clientID, tokenID)
}

// GetRefreshTokenInfo and RevokeToken are never called: revocation is
// Watashi's own.
func (st *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", errOwnEndpoint
}

func (st *storage) RevokeToken(context.Context, string, string, string) *oidc.Error {
	return oidc.ErrServerError().WithDescription("revocation is served elsewhere")
}
