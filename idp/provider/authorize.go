package provider

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"github.com/zitadel/schema"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/whitelist"
)

// authorizeDecoder reads /authorize's parameters into the library's type,
// as its own authorization endpoint would; unknown parameters (claims,
// request_uri) are read from the form directly.
var authorizeDecoder = func() *schema.Decoder {
	d := schema.NewDecoder()
	d.IgnoreUnknownKeys(true)
	return d
}()

// handleAuthorize is the authorization endpoint (OIDC Core §3.1.2). Until
// the client and its redirect URI are known to be good, every refusal is
// a page of ours and never a redirect: an unknown, pending, suspended or
// revoked client, or an unregistered redirect URI, must not turn the
// provider into an open redirector. After that, errors go back to the RP
// (RFC 6749 §4.1.2.1). What the library does not check is checked here:
// PKCE S256 for every client, the claims parameter, the client's tier.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx := r.Context()
	limit := s.checkAuthorizeLimits(w, r)
	if limit != nil && limit.BeforeClient() && !limit.Repeated {
		s.errorPage(w, r, http.StatusRequestEntityTooLarge, "request_too_large")
		return
	}
	if r.Form == nil || limit != nil && limit.BeforeClient() {
		s.errorPage(w, r, http.StatusBadRequest, "bad_request")
		return
	}
	e, err := s.clients.Lookup(ctx, r.Form.Get("client_id"))
	if err != nil {
		switch {
		case errors.Is(err, clients.ErrUnavailable):
			// Nothing is known of the client: not "unknown", and no
			// redirect to a URI nobody vouched for.
			s.unavailablePage(w, r)
		case errors.Is(err, whitelist.ErrBlocked):
			s.errorPage(w, r, http.StatusForbidden, "client_blocked")
		case clients.Refused(err):
			s.errorPage(w, r, http.StatusBadRequest, "client_not_allowed")
		default:
			s.errorPage(w, r, http.StatusBadRequest, "unknown_client")
		}
		return
	}
	redirectURI := r.Form.Get("redirect_uri")
	if redirectURI == "" || !e.RedirectAllowed(redirectURI) {
		s.errorPage(w, r, http.StatusBadRequest, "invalid_redirect_uri")
		return
	}
	state := r.Form.Get("state")
	if limit != nil {
		if limit.Param == "state" {
			state = "" // not echoed: it is what was refused
		}
		s.log.InfoContext(ctx, "authorization request refused", "client", e.Client.ID, "error", "invalid_request", "limit", limit.Param)
		http.Redirect(w, r, authreq.ErrorURL(s.web.Issuer(), redirectURI, state, oidc.ErrInvalidRequest().WithDescription("%s", limit.Error())), http.StatusFound)
		return
	}
	fail := func(oerr *oidc.Error) {
		s.log.InfoContext(ctx, "authorization request refused", "client", e.Client.ID, "error", string(oerr.ErrorType))
		http.Redirect(w, r, authreq.ErrorURL(s.web.Issuer(), redirectURI, state, oerr), http.StatusFound)
	}
	req := new(oidc.AuthRequest)
	if err := authorizeDecoder.Decode(req, r.Form); err != nil {
		fail(oidc.ErrInvalidRequest().WithDescription("cannot parse the authorization request"))
		return
	}
	ar, oerr := s.newAuthRequest(r, e, req)
	if oerr != nil {
		fail(oerr)
		return
	}
	tooLarge := func() {
		fail(oidc.ErrInvalidRequest().WithDescription("the request is too large to keep; shorten state, nonce, claims or the other parameters"))
	}
	if errors.Is(authreq.CheckSize(ar), authreq.ErrTooLarge) {
		tooLarge()
		return
	}
	if r.Method == http.MethodGet {
		// The request is bound to this browser now, so that the login
		// page finds it bound and a leaked login URL is no use in
		// another browser. Not on a POST: a cross-site form post does not
		// carry the SameSite=Lax cookie, and a new one would replace the
		// cookie of a login in progress in another tab; the login page
		// binds such a request.
		ar.Binding = authreq.EnsureBinding(s.web, w, r)
	}
	create, err := s.requests.CreateOp(ar)
	if errors.Is(err, authreq.ErrTooLarge) {
		// CheckSize counted the binding: not reached, but the right
		// answer if it were.
		tooLarge()
		return
	}
	if err != nil {
		s.log.ErrorContext(ctx, "store auth request", "error", err)
		fail(unavailableToRP())
		return
	}
	// The rate limit and the record go in one round trip; a request over
	// the limit has its record deleted at once.
	res, err := s.kv.Do(ctx, s.web.LimitOp("authorize", s.web.RateKey(r), authreq.CreateWindow), create)
	if err != nil {
		res = []store.Result{{Err: err}, {Err: err}}
	}
	if !s.web.Allowed(ctx, "authorize", authreq.CreatePerAddress, res[0]) {
		if res[1].Err == nil {
			if err := s.requests.Delete(ctx, ar.ID); err != nil {
				s.log.WarnContext(ctx, "auth request over the rate limit not deleted; it expires", "error", err)
			}
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(authreq.CreateWindow/time.Second)))
		s.errorPage(w, r, http.StatusTooManyRequests, "rate_limited")
		return
	}
	if err := res[1].Err; err != nil {
		s.log.ErrorContext(ctx, "store auth request", "error", err)
		fail(unavailableToRP())
		return
	}
	s.metrics.authRequests.Inc()
	http.Redirect(w, r, authreq.LoginURL(ar.ID), http.StatusFound)
}

// checkAuthorizeLimits reads the request's parameters within the size
// limits of an auth request (authreq.CheckParams): the whole request
// first, before anything is parsed, then each parameter. r.Form stays
// nil when the request could not be read.
func (s *Server) checkAuthorizeLimits(w http.ResponseWriter, r *http.Request) *authreq.LimitError {
	if e := authreq.CheckRequestSize(len(r.URL.RawQuery)); e != nil {
		return e
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, authreq.MaxRequestBytes-int64(len(r.URL.RawQuery)))
	}
	if err := r.ParseForm(); err != nil {
		r.Form = nil
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return authreq.CheckRequestSize(authreq.MaxRequestBytes + 1)
		}
		return nil
	}
	return authreq.CheckParams(r.Form)
}

// newAuthRequest validates a request of a known client to a registered
// redirect URI and builds its record.
func (s *Server) newAuthRequest(r *http.Request, e *clients.Entry, req *oidc.AuthRequest) (*authreq.AuthRequest, *oidc.Error) {
	ctx := r.Context()
	c := e.Client
	switch {
	case req.RequestParam != "":
		return nil, oidc.ErrRequestNotSupported()
	case r.Form.Has("request_uri"):
		return nil, &oidc.Error{ErrorType: "request_uri_not_supported", Description: "request_uri is not supported"}
	case req.ResponseType != oidc.ResponseTypeCode:
		if req.ResponseType == "" {
			return nil, oidc.ErrInvalidRequest().WithDescription("response_type is missing")
		}
		return nil, oidc.ErrUnauthorizedClient().WithDescription("only response_type=code is allowed")
	}
	maxAge, err := op.ValidateAuthReqPrompt(req.Prompt, req.MaxAge)
	if err != nil {
		return nil, asOIDC(err)
	}
	if oerr := checkTier(e, r.Form.Get("scope")); oerr != nil {
		return nil, oerr
	}
	if len(req.Scopes) == 0 {
		return nil, oidc.ErrInvalidRequest().WithDescription("scope is missing")
	}
	if !slices.Contains(req.Scopes, oidc.ScopeOpenID) {
		return nil, oidc.ErrInvalidScope().WithDescription("scope must contain openid")
	}
	if req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method=S256 is required")
	}
	if !validChallenge(req.CodeChallenge) {
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge must be 43 base64url characters (S256)")
	}
	if req.ResponseMode != "" && req.ResponseMode != oidc.ResponseModeQuery {
		return nil, oidc.ErrInvalidRequest().WithDescription("only response_mode=query is supported")
	}
	hintSub, err := op.ValidateAuthReqIDTokenHint(ctx, req.IDTokenHint, s.Provider().IDTokenHintVerifier(ctx))
	if err != nil {
		return nil, asOIDC(err)
	}
	ar := &authreq.AuthRequest{
		ClientID:     c.ID,
		RedirectURI:  req.RedirectURI,
		State:        req.State,
		Nonce:        req.Nonce,
		Scopes:       grantedScopes(c, req.Scopes),
		ResponseMode: string(req.ResponseMode),
		Prompt:       []string(req.Prompt),
		MaxAge:       maxAge,
		ACRValues:    []string(req.ACRValues),
		LoginHint:    req.LoginHint,
		HintSubject:  hintSub,
		Challenge:    req.CodeChallenge,
	}
	if e.Registry != nil {
		ar.MinACR = e.Registry.MinACR
	}
	for _, t := range req.UILocales {
		ar.UILocales = append(ar.UILocales, t.String())
	}
	if v, ok := r.Form["claims"]; ok {
		raw := ""
		if len(v) == 1 {
			raw = v[0]
		}
		cr, oerr := parseClaimsParam(raw)
		if oerr != nil {
			return nil, oerr
		}
		ar.Claims = cr
		// A sub the RP insists on (OIDC Core §5.5.1) is a hint that must
		// hold: the session must be that subject's, as for id_token_hint.
		if sub, ok := cr.Subject(); ok {
			if ar.HintSubject != "" && ar.HintSubject != sub {
				return nil, oidc.ErrInvalidRequest().WithDescription("the claims parameter and id_token_hint name different subjects")
			}
			ar.HintSubject = sub
		}
		// acr asked for as an essential claim (§5.5.1.1) is acr_values
		// that must be met.
		if values, essential, ok := cr.ACR(); ok && essential && len(ar.ACRValues) == 0 {
			ar.ACRValues = values
		}
	}
	ar.Requested = consent.Resolve(ar.Scopes, ar.Claims, c.Policy())
	if len(ar.Requested.Dropped) > 0 {
		// Names only: which claims the client's registration does not cover.
		var names []string
		for _, d := range ar.Requested.Dropped {
			names = append(names, d.Claim)
		}
		s.log.InfoContext(ctx, "requested claims not allowed for the client were left out", "client", c.ID, "claims", names)
	}
	return ar, nil
}

// parseClaimsParam validates the claims parameter (OIDC Core §5.5, with
// OIDC4IDA verified_claims) up front, so that a malformed one is an
// invalid_request at /authorize rather than a surprise at consent. The
// consent package's messages name structure, never values, so they are
// safe to send to the RP.
func parseClaimsParam(v string) (*consent.ClaimsRequest, *oidc.Error) {
	if strings.TrimSpace(v) == "" {
		return nil, oidc.ErrInvalidRequest().WithDescription("claims parameter is empty")
	}
	cr, err := consent.ParseClaimsRequest([]byte(v))
	if err != nil {
		desc := "claims parameter is malformed"
		var ce *consent.Error
		if errors.As(err, &ce) {
			desc = strings.TrimPrefix(ce.Error(), "consent: invalid_request: ")
		}
		return nil, oidc.ErrInvalidRequest().WithDescription("%s", desc)
	}
	return cr, nil
}

// grantedScopes keeps openid and whatever this client may ask for; a
// scope the client was not configured for is dropped.
func grantedScopes(c *clients.Client, requested []string) []string {
	supported := SupportedScopes()
	out := make([]string, 0, len(requested))
	for _, sc := range requested {
		if slices.Contains(out, sc) {
			continue
		}
		if sc == oidc.ScopeOpenID || (slices.Contains(supported, sc) && slices.Contains(c.Scopes, sc)) {
			out = append(out, sc)
		}
	}
	return out
}

// validChallenge: an S256 challenge is base64url(SHA-256), 43 characters.
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(c)
	return err == nil
}

// checkTier enforces a registered client's tier, so that errors go back
// to the RP: a scope outside the tier is invalid_scope rather than
// silently dropped, so that the integrator notices; a tier whose minimum
// acr a sign-in cannot meet is unmet_authentication_requirements. Static
// clients keep the configured behaviour (unknown scopes are dropped).
func checkTier(e *clients.Entry, scope string) *oidc.Error {
	wl := e.Registry
	if wl == nil {
		return nil
	}
	var bad []string
	for _, sc := range strings.Fields(scope) {
		if !wl.AllowsScope(sc) && !slices.Contains(bad, sc) {
			bad = append(bad, sc)
		}
	}
	switch {
	case len(bad) > 0:
		return oidc.ErrInvalidScope().WithDescription("scope %s is not part of this client's tier %q (allowed: %s)",
			strings.Join(bad, " "), wl.Tier, strings.Join(wl.AllowedScopes, " "))
	case !wl.MeetsACR(session.ACRJPKI):
		return &oidc.Error{ErrorType: "unmet_authentication_requirements",
			Description: fmt.Sprintf("this client's tier requires acr %s, which the sign-in cannot provide", wl.MinACR)}
	}
	return nil
}

// asOIDC is err as an OAuth error for the RP, with only the description
// the library or we wrote for it. A failure to reach the store, wherever
// the library hid it, is temporarily_unavailable, and so is anything that
// is not an OAuth error: its text stays here.
func asOIDC(err error) *oidc.Error {
	var oerr *oidc.Error
	if errors.As(err, &oerr) && !errors.Is(err, errUnavailable) {
		return clean(oerr)
	}
	return unavailableToRP()
}
