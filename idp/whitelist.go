package idp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/whitelist"
)

// The relying-party whitelist (package whitelist) sits behind the static
// clients: a client_id that is not in the configuration is looked up in
// the registry with Registry.Authorize at every endpoint that acts for a
// client (authorize, token, userinfo, introspection, revocation,
// end_session). Authorize answers only for approved clients, so an
// unknown, pending, suspended or revoked client is refused everywhere
// exactly as an unknown client is, and a suspension reaches every node
// within the registry's propagation time (pub/sub, a polled change
// counter, and a 1 s cache without them).

// registrationPath is where integrators register (RFC 7591) and manage
// their registration (RFC 7592, below it).
const registrationPath = "/register"

// Registration rate limit per client address: registration is cheap to
// call and does argon2 hashing and sector document fetches.
const (
	registrationPerIP  = 30
	registrationWindow = time.Minute
)

// provided acr: every Watashi sign-in is a JPKI certificate signature.
const signinACR = "aal3"

// registryClients memoises the conversion of registry records to client
// entries (JWKS parsing, op adapter). Every lookup still goes through
// Registry.Authorize first: the memo is keyed by the record's last
// update, so it never outlives a change.
type registryClients struct {
	mu sync.Mutex
	m  map[string]registryMemo
}

type registryMemo struct {
	updated time.Time
	changed time.Time
	e       *clientEntry
}

const maxRegistryMemo = 4096

// registryEntry asks the registry whether id may act now and returns its
// entry. Any error is a refusal; it wraps errUnknownClient so that every
// caller treats it as an unknown client.
func (s *Server) registryEntry(ctx context.Context, id string) (*clientEntry, error) {
	reg := s.opts.Registry
	if reg == nil || id == "" {
		return nil, errUnknownClient
	}
	wc, err := reg.Authorize(ctx, id)
	if err != nil {
		if !errors.Is(err, whitelist.ErrUnknownClient) {
			s.log.InfoContext(ctx, "whitelist refused a client", "client_id", id, "reason", err.Error())
		}
		return nil, fmt.Errorf("%w: %w", errUnknownClient, err)
	}
	rc := &s.oidc.registry
	rc.mu.Lock()
	m, ok := rc.m[id]
	rc.mu.Unlock()
	if ok && m.updated.Equal(wc.UpdatedAt) && m.changed.Equal(wc.StatusChangedAt) {
		return m.e, nil
	}
	e, err := s.entryFromRegistry(wc)
	if err != nil {
		s.log.WarnContext(ctx, "whitelist client record unusable", "client_id", id, "error", err)
		return nil, fmt.Errorf("%w: %w", errUnknownClient, err)
	}
	rc.mu.Lock()
	if rc.m == nil || len(rc.m) >= maxRegistryMemo {
		rc.m = make(map[string]registryMemo)
	}
	rc.m[id] = registryMemo{updated: wc.UpdatedAt, changed: wc.StatusChangedAt, e: e}
	rc.mu.Unlock()
	return e, nil
}

// ClientFromWhitelist is the provider's view of a registry record: what
// the consent screen shows, what the tier allows (scopes, claims,
// minimum acr) and how the client authenticates.
func ClientFromWhitelist(wc *whitelist.Client) *Client {
	scopes := make([]string, 0, len(wc.AllowedScopes))
	for _, sc := range wc.AllowedScopes {
		if sc != oidc.ScopeOpenID {
			scopes = append(scopes, sc)
		}
	}
	claims := make([]string, 0, len(wc.AllowedClaims))
	for _, cl := range wc.AllowedClaims {
		if cl != consent.ClaimVerifiedClaims {
			claims = append(claims, cl)
		}
	}
	return &Client{
		ID:                  wc.ID,
		DisplayName:         wc.ClientName,
		Organization:        wc.OrganizationName,
		SecretHash:          wc.SecretHash,
		AuthMethod:          wc.TokenEndpointAuthMethod,
		RedirectURIs:        slices.Clone(wc.RedirectURIs),
		PostLogout:          slices.Clone(wc.PostLogoutRedirectURIs),
		SectorIdentifierURI: wc.SectorIdentifierURI,
		Sector:              wc.Sector,
		JWKS:                slices.Clone([]byte(wc.JWKS)),
		Scopes:              scopes,
		IDTokenAlg:          wc.IDTokenSignedResponseAlg,
		PolicyURI:           wc.PolicyURI,
		VerifiedClaims:      slices.Contains(wc.AllowedClaims, consent.ClaimVerifiedClaims),
		Whitelisted:         wc.Status == whitelist.StatusApproved,
		ApplicationType:     wc.ApplicationType,
		TierClaims:          claims,
		MinACR:              wc.MinACR,
	}
}

func (s *Server) entryFromRegistry(wc *whitelist.Client) (*clientEntry, error) {
	c := ClientFromWhitelist(wc)
	if c.Sector == "" {
		return nil, errors.New("registry record has no pairwise sector")
	}
	if strings.ContainsAny(c.ID, ":{}") {
		return nil, errors.New("client_id must not contain ':', '{' or '}'")
	}
	e := &clientEntry{c: c, wl: wc}
	switch c.AuthMethod {
	case authPrivateKeyJWT:
		keys, err := wc.PublicKeys()
		if err != nil {
			return nil, err
		}
		// A jwks_uri client has no inline keys: they are fetched at its
		// first client assertion (jwks_uri.go).
		e.jwks = keys
	case authSecretBasic:
		if _, err := parseSecretHash(c.SecretHash); err != nil {
			return nil, err
		}
	case authNone:
	default:
		return nil, fmt.Errorf("token_endpoint_auth_method %q is not supported", c.AuthMethod)
	}
	if c.IDTokenAlg != "" && c.IDTokenAlg != string(jose.ES256) && c.IDTokenAlg != string(jose.RS256) {
		return nil, fmt.Errorf("id_token_signed_response_alg %q is not supported", c.IDTokenAlg)
	}
	e.op = &opClient{c: c, s: s}
	return e, nil
}

// clientActive reports whether a client may still act: configured, or
// approved in the registry right now.
func (s *Server) clientActive(ctx context.Context, id string) error {
	_, err := s.clientEntry(ctx, id)
	return err
}

// checkTier enforces a registry client's tier at /authorize, once the
// client and its redirect URI are known to be good, so that errors go
// back to the RP (RFC 6749 §4.1.2.1): a scope outside the tier is
// invalid_scope rather than silently dropped, so that the integrator
// notices; a tier whose minimum acr the sign-in cannot meet is
// unmet_authentication_requirements (OIDC Core §3.1.2.6 / the
// acr_values error of OpenID Connect Core errata). Static clients keep
// the configured behaviour (unknown scopes are dropped).
func (s *Server) checkTier(w http.ResponseWriter, r *http.Request, e *clientEntry, redirectURI string) bool {
	if e.wl == nil {
		return true
	}
	var bad []string
	for _, sc := range strings.Fields(r.Form.Get("scope")) {
		if !e.wl.AllowsScope(sc) && !slices.Contains(bad, sc) {
			bad = append(bad, sc)
		}
	}
	var oerr *oidc.Error
	switch {
	case len(bad) > 0:
		oerr = oidc.ErrInvalidScope().WithDescription("scope %s is not part of this client's tier %q (allowed: %s)",
			strings.Join(bad, " "), e.wl.Tier, strings.Join(e.wl.AllowedScopes, " "))
	case !e.wl.MeetsACR(signinACR):
		oerr = &oidc.Error{ErrorType: "unmet_authentication_requirements",
			Description: fmt.Sprintf("this client's tier requires acr %s, which the sign-in cannot provide", e.wl.MinACR)}
	default:
		return true
	}
	ar := &oidc.AuthRequest{RedirectURI: redirectURI, ResponseType: oidc.ResponseTypeCode, State: r.Form.Get("state")}
	op.AuthRequestError(w, r, ar, oerr, s.oidc.provider)
	return false
}

// whitelistStorage is the storage the library sees: opStorage, with the
// userinfo and introspection answers refused for a client the registry
// no longer approves (the token itself would otherwise stay good until
// it expires).
type whitelistStorage struct{ *opStorage }

func (st whitelistStorage) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, origin string) error {
	if _, g, err := st.s.liveAccess(ctx, tokenID); err == nil {
		if st.s.clientActive(ctx, g.ClientID) != nil {
			return invalidToken()
		}
	}
	return st.opStorage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin)
}

func (st whitelistStorage) SetIntrospectionFromToken(ctx context.Context, r *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	if st.s.clientActive(ctx, clientID) != nil {
		return errTokenInactive
	}
	if _, g, err := st.s.liveAccess(ctx, tokenID); err == nil && st.s.clientActive(ctx, g.ClientID) != nil {
		return errTokenInactive
	}
	return st.opStorage.SetIntrospectionFromToken(ctx, r, tokenID, subject, clientID)
}

// registrationHandler builds the RFC 7591/7592 endpoint, or nil without
// a registry.
func (s *Server) registrationHandler() (http.Handler, error) {
	reg := s.opts.Registry
	if reg == nil {
		return nil, nil
	}
	h, err := reg.RegistrationHandler(whitelist.RegistrationOptions{
		Endpoint:                 strings.TrimSuffix(s.opts.Issuer, "/") + registrationPath,
		TrustedIssuers:           s.opts.TrustedSoftwareStatementIssuers,
		RequireSoftwareStatement: s.opts.RequireSoftwareStatement,
	})
	if err != nil {
		return nil, fmt.Errorf("idp: registration endpoint: %w", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.rateLimit(r.Context(), "register", s.clientIP(r).String(), registrationPerIP, registrationWindow) {
			w.Header().Set("Retry-After", fmt.Sprint(int(registrationWindow.Seconds())))
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"error":"invalid_request","error_description":"too many registration requests from this address; try again in a minute"}`))
			return
		}
		h.ServeHTTP(w, r)
	}), nil
}

// registrationEndpoint is advertised in discovery when registration is on.
func (s *Server) registrationEndpoint() string {
	if s.opts.Registry == nil {
		return ""
	}
	u, err := url.JoinPath(s.opts.Issuer, registrationPath)
	if err != nil {
		return ""
	}
	return u
}
