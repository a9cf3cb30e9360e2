package provider

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/keys"
)

// storage is op.Storage for the parts of the library Watashi still uses:
// token minting inside CreateTokenResponse, end_session's checks and the
// JWKS. Calls of endpoints Watashi serves itself answer errOwnEndpoint.
// Every record lives in the store with a TTL, so that nodes share state
// and abandoned flows clean themselves up.
type storage struct{ s *Server }

var _ interface {
	op.Storage
	op.CanSetUserinfoFromRequest
	op.CanTerminateSessionFromRequest
} = (*storage)(nil)

// errOwnEndpoint answers the storage calls of endpoints Watashi serves
// itself (/authorize, its callback, token, userinfo, introspection,
// revocation): the library never makes them.
var errOwnEndpoint = errors.New("provider: served by Watashi's own endpoint")

func (st *storage) CreateAuthRequest(context.Context, *oidc.AuthRequest, string) (op.AuthRequest, error) {
	return nil, errOwnEndpoint
}

func (st *storage) AuthRequestByID(context.Context, string) (op.AuthRequest, error) {
	return nil, errOwnEndpoint
}

func (st *storage) SaveAuthCode(context.Context, string, string) error { return errOwnEndpoint }

// DeleteAuthRequest runs after the tokens are minted. It does nothing:
// exchangeCode deleted the request, and with it the code, in the round
// trip that wrote the grant.
func (st *storage) DeleteAuthRequest(context.Context, string) error { return nil }

func (st *storage) Health(ctx context.Context) error { return st.s.kv.Ping(ctx) }

// AuthorizeClientIDSecret refuses clients registered for another method.
func (st *storage) AuthorizeClientIDSecret(ctx context.Context, id, secret string) error {
	e, err := st.s.clients.Lookup(ctx, id)
	if err != nil || !st.s.clients.VerifySecret(ctx, e, secret) {
		return errors.New("invalid client credentials")
	}
	return nil
}

func (st *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil // deprecated by the library; SetUserinfoFromRequest does the work
}

func (st *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil // JWT access tokens only; ours are opaque
}

// GetKeyByIDAndClientID serves only private_key_jwt clients' keys.
func (st *storage) GetKeyByIDAndClientID(ctx context.Context, kid, clientID string) (*jose.JSONWebKey, error) {
	e, err := st.s.clients.Lookup(ctx, clientID)
	if err != nil {
		return nil, errors.New("no keys for this client")
	}
	keys, err := st.s.clients.AssertionKeys(ctx, e, kid)
	if err != nil {
		return nil, errors.New("no keys for this client")
	}
	for i := range keys {
		if keys[i].KeyID == kid || (kid == "" && len(keys) == 1) {
			k := keys[i]
			return &k, nil
		}
	}
	return nil, errors.New("key not found")
}

// ValidateJWTProfileScopes refuses the jwt-bearer grant.
func (st *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, oidc.ErrUnauthorizedClient().WithDescription("the jwt-bearer grant is not supported")
}

// SigningKey is the default ES256 key; a token request of an RS256 client
// signs through algStorage instead.
func (st *storage) SigningKey(ctx context.Context) (op.SigningKey, error) {
	return st.s.keys.Current(ctx, jose.ES256)
}

// SignatureAlgorithms feeds the library's discovery; ours is separate.
func (st *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return slices.Clone(keys.Algs), nil
}

// KeySet is the JWKS: next, current and previous of every algorithm. It
// also verifies id_token_hint inside the library, which would read a
// failure to load the keys as a bad hint: the failure is marked.
func (st *storage) KeySet(ctx context.Context) ([]op.Key, error) {
	keys, err := st.s.keys.Published(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: signing keys: %w", errUnavailable, err)
	}
	return keys, nil
}

// algStorage is the storage as one token request sees it: ID tokens are
// signed with the algorithm its client registered.
type algStorage struct {
	*storage
	alg jose.SignatureAlgorithm
}

func (a algStorage) SigningKey(ctx context.Context) (op.SigningKey, error) {
	return a.s.keys.Current(ctx, a.alg)
}

// creator is what the library's CreateTokenResponse mints with.
type creator struct {
	st     op.Storage
	crypto op.Crypto
}

func (c creator) Storage() op.Storage { return c.st }
func (c creator) Crypto() op.Crypto   { return c.crypto }

// creatorFor binds token minting to client's ID token algorithm.
func (s *Server) creatorFor(client op.Client) creator {
	alg := jose.ES256
	if oc, ok := client.(*opClient); ok && oc.c.IDTokenAlg == string(jose.RS256) {
		alg = jose.RS256
	}
	return creator{st: algStorage{storage: s.storage, alg: alg}, crypto: s.Provider().Crypto()}
}

// opClient adapts a client to op.Client.
type opClient struct {
	c   *clients.Client
	e   *clients.Entry
	ttl time.Duration
}

func (s *Server) opClient(e *clients.Entry) *opClient {
	return &opClient{c: e.Client, e: e, ttl: s.ttl.IDToken}
}

func (o *opClient) GetID() string                    { return o.c.ID }
func (o *opClient) RedirectURIs() []string           { return o.c.RedirectURIs }
func (o *opClient) PostLogoutRedirectURIs() []string { return o.c.PostLogout }
func (o *opClient) ApplicationType() op.ApplicationType {
	if o.e.IsNative() {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}
func (o *opClient) AuthMethod() oidc.AuthMethod { return oidc.AuthMethod(o.c.AuthMethod) }
func (o *opClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (o *opClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (o *opClient) LoginURL(id string) string            { return "/login?id=" + url.QueryEscape(id) }
func (o *opClient) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (o *opClient) IDTokenLifetime() time.Duration       { return o.ttl }
func (o *opClient) DevMode() bool                        { return false }
func (o *opClient) IsScopeAllowed(scope string) bool     { return slices.Contains(o.c.Scopes, scope) }
func (o *opClient) IDTokenUserinfoClaimsAssertion() bool { return false }
func (o *opClient) ClockSkew() time.Duration             { return 0 }
func (o *opClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (o *opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
