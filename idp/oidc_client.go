package idp

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/whitelist"
)

// Client authentication methods Watashi accepts.
const (
	authPrivateKeyJWT = string(oidc.AuthMethodPrivateKeyJWT)
	authSecretBasic   = string(oidc.AuthMethodBasic)
	authNone          = string(oidc.AuthMethodNone)
)

var errUnknownClient = errors.New("idp: unknown client")

// clientEntry is a registered client with what we precompute for it.
type clientEntry struct {
	c    *Client
	jwks []jose.JSONWebKey // private_key_jwt keys, public only
	op   *opClient
	// wl is the registry record of a whitelisted client (nil for static
	// clients): its tier is enforced at /authorize.
	wl *whitelist.Client
}

// loadClients validates the static clients and resolves their sectors.
func (s *Server) loadClients(ctx context.Context) (map[string]*clientEntry, error) {
	out := make(map[string]*clientEntry, len(s.opts.Clients))
	for _, c := range s.opts.Clients {
		if c == nil || c.ID == "" {
			return nil, errors.New("idp: a client has no client_id")
		}
		if _, dup := out[c.ID]; dup {
			return nil, fmt.Errorf("idp: client %q is configured twice", c.ID)
		}
		if strings.ContainsAny(c.ID, ":{}") {
			return nil, fmt.Errorf("idp: client %q: client_id must not contain ':', '{' or '}'", c.ID)
		}
		e := &clientEntry{c: c}
		switch c.AuthMethod {
		case authPrivateKeyJWT:
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(c.JWKS, &set); err != nil || len(set.Keys) == 0 {
				return nil, fmt.Errorf("idp: client %q: private_key_jwt needs a JWKS with at least one key", c.ID)
			}
			for _, k := range set.Keys {
				if !k.IsPublic() || !k.Valid() {
					return nil, fmt.Errorf("idp: client %q: JWKS must hold valid public keys only", c.ID)
				}
				if k.Use != "" && k.Use != "sig" {
					continue
				}
				e.jwks = append(e.jwks, k)
			}
		case authSecretBasic:
			if _, err := parseSecretHash(c.SecretHash); err != nil {
				return nil, fmt.Errorf("idp: client %q: %w", c.ID, err)
			}
		case authNone:
		default:
			return nil, fmt.Errorf("idp: client %q: token_endpoint_auth_method %q is not supported", c.ID, c.AuthMethod)
		}
		if c.IDTokenAlg != "" && c.IDTokenAlg != string(jose.ES256) && c.IDTokenAlg != string(jose.RS256) {
			return nil, fmt.Errorf("idp: client %q: id_token_signed_response_alg must be ES256 or RS256", c.ID)
		}
		if c.Sector == "" {
			sector, err := ResolveSector(ctx, c, nil, s.opts.Dev)
			if err != nil {
				return nil, err
			}
			c.Sector = sector
		}
		e.op = &opClient{c: c, s: s}
		out[c.ID] = e
	}
	return out, nil
}

func (s *Server) clientEntry(ctx context.Context, id string) (*clientEntry, error) {
	rs := requestScope(ctx)
	if rs != nil && rs.client != nil && rs.client.c.ID == id {
		return rs.client, nil
	}
	e, ok := s.oidc.clients[id]
	if !ok {
		var err error
		if e, err = s.registryEntry(ctx, id); err != nil {
			return nil, err
		}
	}
	if rs != nil {
		rs.client = e
	}
	return e, nil
}

// client returns a registered client: a static one, or one the whitelist
// registry approves right now.
func (s *Server) client(ctx context.Context, id string) (*Client, error) {
	e, err := s.clientEntry(ctx, id)
	if err != nil {
		return nil, err
	}
	return e.c, nil
}

// requestAlg is the ID token algorithm for the client the current token
// request acts for.
func (s *Server) requestAlg(ctx context.Context) jose.SignatureAlgorithm {
	if rs := requestScope(ctx); rs != nil && rs.clientID != "" {
		if e, err := s.clientEntry(ctx, rs.clientID); err == nil && e.c.IDTokenAlg == string(jose.RS256) {
			return jose.RS256
		}
	}
	return jose.ES256
}

// opClient adapts Client to op.Client.
type opClient struct {
	c *Client
	s *Server
}

func (o *opClient) GetID() string                    { return o.c.ID }
func (o *opClient) RedirectURIs() []string           { return o.c.RedirectURIs }
func (o *opClient) PostLogoutRedirectURIs() []string { return o.c.PostLogout }
func (o *opClient) ApplicationType() op.ApplicationType {
	if o.c.AuthMethod == authNone || o.c.ApplicationType == whitelist.AppNative {
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
func (o *opClient) IDTokenLifetime() time.Duration       { return o.s.opts.IDTokenTTL }
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

func (st *opStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	e, err := st.s.clientEntry(ctx, id)
	if err != nil {
		// invalid_client at the token endpoint (the library passes this
		// error through on the refresh grant); /authorize never gets
		// here for such a client, preAuthorize shows its page first.
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client, or one not approved to act now").WithParent(err)
	}
	return e.op, nil
}

// AuthorizeClientIDSecret also refuses clients registered for another
// method: introspection's basic-auth path never looks at the method.
func (st *opStorage) AuthorizeClientIDSecret(ctx context.Context, id, secret string) error {
	e, err := st.s.clientEntry(ctx, id)
	if err != nil || e.c.AuthMethod != authSecretBasic {
		return errors.New("invalid client credentials")
	}
	if !st.s.oidc.secrets.verify(ctx, e.c.SecretHash, secret) {
		return errors.New("invalid client credentials")
	}
	return nil
}

func (st *opStorage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil // deprecated by the library; SetUserinfoFromRequest does the work
}

func (st *opStorage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil // JWT access tokens only; ours are opaque
}

// GetKeyByIDAndClientID serves only private_key_jwt clients' keys.
func (st *opStorage) GetKeyByIDAndClientID(ctx context.Context, kid, clientID string) (*jose.JSONWebKey, error) {
	e, err := st.s.clientEntry(ctx, clientID)
	if err != nil || e.c.AuthMethod != authPrivateKeyJWT {
		return nil, errors.New("no keys for this client")
	}
	for i := range e.jwks {
		if e.jwks[i].KeyID == kid || (kid == "" && len(e.jwks) == 1) {
			k := e.jwks[i]
			return &k, nil
		}
	}
	return nil, errors.New("key not found")
}

// ValidateJWTProfileScopes refuses the jwt-bearer grant, which the
// library routes whether or not we want it.
func (st *opStorage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, oidc.ErrUnauthorizedClient().WithDescription("the jwt-bearer grant is not supported")
}

// ---- client secrets ----

// HashClientSecret produces Client.SecretHash for a client_secret_basic
// client: an Argon2id PHC string (whitelist.HashSecret, the one
// implementation of the format, shared with registered clients). The
// plain secret is never stored; verification costs ~20 ms of CPU.
func HashClientSecret(secret string) (string, error) {
	return whitelist.HashSecret(secret)
}

// parseSecretHash checks a configured or registered hash before use.
func parseSecretHash(v string) (*whitelist.SecretHash, error) {
	return whitelist.ParseSecretHash(v)
}

// secretVerifier checks client secrets and remembers recent successes, so
// that a busy RP pays the Argon2 cost once rather than per token request.
// Only SHA-256(hash, secret) of a correct pair is kept, in memory.
// Argon2 runs are bounded by a semaphore, so that a flood of wrong
// secrets costs CPU and memory at most NumCPU at a time.
type secretVerifier struct {
	mu  sync.Mutex
	ok  map[[32]byte]time.Time
	sem chan struct{}
}

func newSecretVerifier() *secretVerifier {
	return &secretVerifier{sem: make(chan struct{}, runtime.NumCPU())}
}

const (
	secretCacheSize = 1024
	secretCacheTTL  = 10 * time.Minute
)

func (v *secretVerifier) verify(ctx context.Context, stored, secret string) bool {
	memo := sha256.Sum256([]byte(stored + "\x00" + secret))
	v.mu.Lock()
	if t, hit := v.ok[memo]; hit && time.Since(t) < secretCacheTTL {
		v.mu.Unlock()
		return true
	}
	v.mu.Unlock()
	h, err := parseSecretHash(stored)
	if err != nil {
		return false
	}
	if v.sem != nil {
		select {
		case v.sem <- struct{}{}:
			defer func() { <-v.sem }()
		case <-ctx.Done():
			return false
		}
	}
	if !h.Matches(secret) {
		return false
	}
	v.mu.Lock()
	if v.ok == nil || len(v.ok) >= secretCacheSize {
		v.ok = make(map[[32]byte]time.Time)
	}
	v.ok[memo] = time.Now()
	v.mu.Unlock()
	return true
}

// ---- private_key_jwt ----

// Client assertions may be at most this old (iat), with this much clock
// leeway; the jti of each is remembered for that window.
const (
	assertionMaxAge = 5 * time.Minute
	assertionLeeway = 10 * time.Second
)

func jtiKey(client, jti string) string { return "jti:" + sha256Hex(client+"\x00"+jti) }

// opEndpoint is the provider as the token, introspection and revocation
// handlers see it: the library type-asserts JWTProfileVerifier on what it
// is given, so shadowing the method plugs in our assertion checks.
type opEndpoint struct {
	*op.Provider
	s *Server
}

// JWTProfileVerifier accepts the issuer or the token endpoint URL as aud
// (OIDC Core §9 says the latter; the library alone accepts only the
// former) and verifies with our key set, which checks the jti after the
// signature.
func (e opEndpoint) JWTProfileVerifier(ctx context.Context) *op.JWTProfileVerifier {
	issuer := op.IssuerFromContext(ctx)
	aud := issuer
	if rs := requestScope(ctx); rs != nil && !slices.Contains(rs.assertionAud, issuer) {
		if tokenURL := e.TokenEndpoint().Absolute(issuer); slices.Contains(rs.assertionAud, tokenURL) {
			aud = tokenURL
		}
	}
	return op.NewJWTProfileVerifierKeySet(assertionKeySet{s: e.s}, aud, assertionMaxAge, assertionLeeway)
}

// assertionKeySet verifies a client assertion with its client's JWKS and
// then records its jti, so that a captured assertion cannot be replayed
// and a forged one cannot burn a jti.
type assertionKeySet struct{ s *Server }

func (k assertionKeySet) VerifySignature(ctx context.Context, jws *jose.JSONWebSignature) ([]byte, error) {
	var claims struct {
		Issuer string `json:"iss"`
		JTI    string `json:"jti"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &claims); err != nil {
		return nil, errors.New("client assertion payload is not JSON")
	}
	e, err := k.s.clientEntry(ctx, claims.Issuer)
	if err != nil || e.c.AuthMethod != authPrivateKeyJWT {
		return nil, errors.New("client is not registered for private_key_jwt")
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("client assertion must carry one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys := e.jwks
	if len(keys) == 0 && e.wl != nil && e.wl.JWKSURI != "" {
		if keys, err = k.s.clientKeysFromURI(ctx, e.wl.JWKSURI, kid); err != nil {
			return nil, fmt.Errorf("client keys: %w", err)
		}
	}
	var payload []byte
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		if p, err := jws.Verify(&keys[i]); err == nil {
			payload = p
			break
		}
	}
	if payload == nil {
		return nil, errors.New("client assertion signature does not verify")
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.JTI == "" || len(claims.JTI) > 256 {
		return nil, oidc.ErrInvalidClient().WithDescription("client assertion needs a jti")
	}
	fresh, err := k.s.kv.SetNX(ctx, jtiKey(e.c.ID, claims.JTI), []byte("1"), assertionMaxAge+2*assertionLeeway)
	if err != nil {
		return nil, fmt.Errorf("idp: record jti: %w", err)
	}
	if !fresh {
		return nil, oidc.ErrInvalidClient().WithDescription("client assertion jti replayed")
	}
	return payload, nil
}
