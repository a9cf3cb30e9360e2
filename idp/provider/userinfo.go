package provider

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/web"
)

// handleUserinfo is the UserInfo endpoint (OIDC Core §5.3), Watashi's own
// so that its errors are RFC 6750 §3's: a missing token is a bare Bearer
// challenge (§3.1 names no error for it), a token that is not active (bad,
// expired, revoked, or its client no longer approved) is 401
// invalid_token, a token without the openid scope is 403
// insufficient_scope. A store that cannot answer is 503, never a verdict
// on the token. The token goes in the Authorization header or a POST
// body, never the URL, where it would reach logs and Referer headers.
func (s *Server) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	web.NoStore(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	token, oerr := bearerToken(r)
	if oerr != nil {
		s.errs.bearer(w, r, http.StatusBadRequest, oerr)
		return
	}
	if token == "" {
		s.errs.bearer(w, r, http.StatusUnauthorized, nil)
		return
	}
	ui, err := s.userinfo(r.Context(), token)
	var oe *oidc.Error
	switch {
	case err == nil:
		web.WriteJSON(w, http.StatusOK, ui)
	case errors.As(err, &oe) && oe.ErrorType == errInvalidToken:
		s.errs.bearer(w, r, http.StatusUnauthorized, oe)
	case errors.As(err, &oe) && oe.ErrorType == errInsufficientScope:
		s.errs.bearer(w, r, http.StatusForbidden, oe)
	default:
		s.errs.write(w, r, err, "")
	}
}

// RFC 6750 §3.1's error codes.
const (
	errInvalidToken      = "invalid_token"
	errInsufficientScope = "insufficient_scope"
)

// invalidToken is every refusal of an access token; the reason stays in
// our logs.
func invalidToken() *oidc.Error {
	return &oidc.Error{ErrorType: errInvalidToken, Description: "the access token is not active"}
}

// bearerToken reads the access token from the Authorization header or a
// form-encoded POST body (RFC 6750 §2.1, §2.2), exactly one of them. ""
// without an error means no token was sent.
func bearerToken(r *http.Request) (string, *oidc.Error) {
	if r.URL.Query().Has("access_token") {
		return "", oidc.ErrInvalidRequest().WithDescription("send the access token in the Authorization header")
	}
	var header, body string
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return "", oidc.ErrInvalidRequest().WithDescription("the Authorization header must be Bearer with the access token")
		}
		header = strings.TrimSpace(tok)
	}
	if r.Method == http.MethodPost {
		if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" {
			if err := r.ParseForm(); err != nil {
				return "", oidc.ErrInvalidRequest().WithDescription("cannot parse the form body")
			}
			if v := r.PostForm["access_token"]; len(v) > 1 {
				return "", oidc.ErrInvalidRequest().WithDescription("access_token is repeated")
			} else if len(v) == 1 {
				body = v[0]
			}
		}
	}
	switch {
	case header != "" && body != "":
		return "", oidc.ErrInvalidRequest().WithDescription("send the access token one way only")
	case len(header) > maxParam || len(body) > maxParam:
		return "", invalidToken()
	case header != "":
		return header, nil
	}
	return body, nil
}

// bearerError answers with a Bearer challenge (RFC 6750 §3) and, when
// there is an error, its JSON as well.
func (ae apiErrors) bearer(w http.ResponseWriter, r *http.Request, status int, e *oidc.Error) {
	ch := `Bearer realm="` + ae.realm + `"`
	if e != nil {
		ch += `, error="` + string(e.ErrorType) + `"`
		if e.Description != "" {
			ch += `, error_description=` + strconv.Quote(e.Description)
		}
		if e.ErrorType == errInsufficientScope {
			ch += `, scope="openid"`
		}
	}
	w.Header().Set("WWW-Authenticate", ch)
	if e == nil {
		w.WriteHeader(status)
		return
	}
	ae.log.InfoContext(r.Context(), "userinfo refused", "error", string(e.ErrorType), "status", status)
	web.WriteJSON(w, status, clean(e))
}

// userinfo answers for an access token: live token, live grant, a client
// the registry still approves, the same pairwise sub, and the claims
// released for userinfo under the token's scopes.
func (s *Server) userinfo(ctx context.Context, token string) (*oidc.UserInfo, error) {
	tokenID, subject, ok := s.accessTokenID(token)
	if !ok {
		return nil, invalidToken()
	}
	at, g, acct, err := s.grants.liveAccess(ctx, tokenID, s.accounts.ReadOps)
	if errors.Is(err, errTokenInactive) || errors.Is(err, errGrantRevoked) {
		return nil, invalidToken()
	}
	if err != nil {
		return nil, err
	}
	if at.Subject != subject {
		return nil, invalidToken()
	}
	// A client the registry no longer approves gets nothing, although its
	// token would otherwise stay good until it expires.
	if _, err := s.clients.Lookup(ctx, g.ClientID); err != nil {
		if errors.Is(err, clients.ErrUnavailable) {
			return nil, err
		}
		return nil, invalidToken()
	}
	if !slices.Contains(at.Scopes, oidc.ScopeOpenID) {
		// A refresh narrowed to claim scopes only mints a plain OAuth
		// access token: UserInfo is for openid (OIDC Core §5.3).
		return nil, &oidc.Error{ErrorType: errInsufficientScope, Description: "the access token lacks the openid scope"}
	}
	claims, err := s.releaseClaimsFrom(ctx, g.ClientID, g.AccountID, acct, at.Scopes, g.Claims, g.Granted, consent.TargetUserinfo)
	if err != nil {
		return nil, err
	}
	ui := &oidc.UserInfo{Subject: at.Subject}
	putClaims(ui, claims)
	return ui, nil
}

// SetUserinfoFromToken is never called: /userinfo is Watashi's own.
func (st *storage) SetUserinfoFromToken(context.Context, *oidc.UserInfo, string, string, string) error {
	return errOwnEndpoint
}
