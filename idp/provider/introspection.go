package provider

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/web"
)

// handleIntrospect is token introspection (RFC 7662) for authenticated
// clients only (§2.1: a secret or an assertion, never a client_id alone),
// and only about their own tokens: anything else is {"active":false}.
// Errors are RFC 6749 §5.2 JSON; a store that cannot answer is 503, never
// "inactive" for a good token.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
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
	if cc.secret == "" && cc.assertion == "" {
		s.errs.write(w, r, invalidClient("client must be authenticated"), s.errs.basicChallenge())
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
	resp, err := s.introspect(ctx, e.Client.ID, token)
	if err != nil {
		s.errs.write(w, r, err, "")
		return
	}
	web.WriteJSON(w, http.StatusOK, resp)
}

// introspect describes token to clientID. It carries the claims the
// resident granted for userinfo (every response carries exactly the
// granted claims): the answer goes only to the client that already holds
// them, and its resource servers then need no userinfo call.
func (s *Server) introspect(ctx context.Context, clientID, token string) (*oidc.IntrospectionResponse, error) {
	inactive := new(oidc.IntrospectionResponse)
	tokenID, subject, ok := s.accessTokenID(token)
	if !ok {
		return inactive, nil
	}
	at, g, acct, err := s.grants.liveAccess(ctx, tokenID, s.accounts.ReadOps)
	if errors.Is(err, errTokenInactive) || errors.Is(err, errGrantRevoked) {
		return inactive, nil
	}
	if err != nil {
		return nil, err
	}
	if at.Subject != subject || at.ClientID != clientID {
		return inactive, nil
	}
	if _, err := s.clients.Lookup(ctx, g.ClientID); err != nil {
		if errors.Is(err, clients.ErrUnavailable) {
			return nil, err
		}
		return inactive, nil
	}
	claims, err := s.releaseClaimsFrom(ctx, g.ClientID, g.AccountID, acct, at.Scopes, g.Claims, g.Granted, consent.TargetIntrospection)
	if err != nil {
		return nil, err
	}
	r := &oidc.IntrospectionResponse{
		Active:                          true,
		Subject:                         at.Subject,
		ClientID:                        at.ClientID,
		Scope:                           tokenScopes(at.Scopes, g.Granted),
		TokenType:                       oidc.BearerToken,
		Expiration:                      oidc.FromTime(at.Exp),
		IssuedAt:                        oidc.FromTime(at.Issued),
		AuthTime:                        oidc.FromTime(g.AuthTime),
		AuthenticationMethodsReferences: g.AMR,
		Audience:                        []string{at.ClientID},
		Issuer:                          s.web.Issuer(),
	}
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
	return r, nil
}

// accessTokenID opens an opaque access token: tokenCrypto("tokenID:sub").
func (s *Server) accessTokenID(token string) (tokenID, subject string, ok bool) {
	plain, err := s.Provider().Crypto().Decrypt(token)
	if err != nil {
		return "", "", false
	}
	return cutToken(plain)
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

// SetIntrospectionFromToken is never called: introspection is Watashi's
// own.
func (st *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errOwnEndpoint
}
