package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/cors"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/internal/metrics"
	"github.com/watashi-id/watashi/idp/keys"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
)

// The provider's routes.
const (
	authorizePath  = "/authorize"
	tokenPath      = "/oauth/token"
	introspectPath = "/oauth/introspect"
	userinfoPath   = "/userinfo"
	revokePath     = "/revoke"
	endSessionPath = "/end_session"
	keysPath       = "/keys"
	// RegistrationPath is where integrators register (RFC 7591) and
	// manage their registration (RFC 7592, below it).
	RegistrationPath = "/register"
)

// routeNames keep the endpoints' short metric labels.
var routeNames = map[string]string{
	oidc.DiscoveryEndpoint: "discovery",
	keysPath:               "jwks",
	authorizePath:          "authorize",
	authreq.CallbackPath:   "authorize_callback",
	tokenPath:              "token",
	introspectPath:         "introspect",
	userinfoPath:           "userinfo",
	revokePath:             "revoke",
	endSessionPath:         "end_session",
}

// Clients is what the provider needs to know of relying parties.
type Clients interface {
	Lookup(ctx context.Context, id string) (*clients.Entry, error)
	Get(ctx context.Context, id string) (*clients.Client, error)
	Subject(c *clients.Client, accountID string) string
	VerifySecret(ctx context.Context, e *clients.Entry, secret string) bool
	AssertionKeys(ctx context.Context, e *clients.Entry, kid string) ([]jose.JSONWebKey, error)
}

// Accounts give the facts a release is built from.
type Accounts interface {
	ForRelease(ctx context.Context, id string) (*account.Account, error)
	// ReadOps and ForReleaseFrom are ForRelease split around a batch
	// (store.KV.Do) that also reads the caller's own records.
	ReadOps(id string) []store.Op
	ForReleaseFrom(id string, res []store.Result) (*account.Account, error)
}

// Keys sign ID tokens and publish the JWKS.
type Keys interface {
	Current(ctx context.Context, alg jose.SignatureAlgorithm) (*keys.SigningKey, error)
	Published(ctx context.Context) ([]op.Key, error)
}

// TTLs are the lifetimes of what the provider issues.
type TTLs struct {
	Code         time.Duration // default 60s
	AccessToken  time.Duration // default 10m
	RefreshToken time.Duration // default 30 days
	IDToken      time.Duration // default 5m
}

// Options are the provider's dependencies.
type Options struct {
	Web      *web.Kit
	Requests *authreq.Repo
	Clients  Clients
	Accounts Accounts
	Keys     Keys
	Sessions *session.Manager
	// Store holds codes, grants and tokens.
	Store store.KV
	// Registration serves /register (RFC 7591/7592); nil turns it off.
	Registration http.Handler
	// TokenKey encrypts opaque access tokens (AES-256-GCM).
	TokenKey [32]byte
	TTLs     TTLs
	// AllowedOrigins may call the token, userinfo and revocation
	// endpoints from a browser.
	AllowedOrigins []string
	Metrics        prometheus.Registerer
	// Blocks, when set, refuses refreshing a family that a blocked JPKI
	// token label signed in.
	Blocks Blocks
}

// Blocks is the part of the operators' kill switch the refresh grant
// asks.
type Blocks interface {
	LabelBlocked(ctx context.Context, label string) (bool, error)
}

// Server is the OpenID provider on zitadel/oidc's op.Server. The
// library's LegacyServer does what it does well (userinfo, revocation,
// end_session, the JWKS); every endpoint whose library behaviour falls
// short is overridden here, one file each, with no state passed through
// the request context.
type Server struct {
	*op.LegacyServer
	web          *web.Kit
	requests     *authreq.Repo
	clients      Clients
	accounts     Accounts
	keys         Keys
	sessions     *session.Manager
	kv           store.KV
	registration http.Handler
	ttl          TTLs
	origins      []string
	storage      *storage
	grants       *grants
	handler      http.Handler
	cors         func(http.Handler) http.Handler
	log          *slog.Logger
	metrics      providerMetrics
	blocks       Blocks
	errs         apiErrors
	spends       *spends
}

// spends keeps codes and refresh tokens single-use: it reads a code
// without spending it, gives back what an exchange that failed for a
// passing reason spent, and revokes the grant of a code or refresh token
// presented again.
type spends struct {
	kv       store.KV
	requests *authreq.Repo
	grants   *grants
	log      *slog.Logger
	codeTTL  time.Duration
	reuse    *prometheus.CounterVec
}

type providerMetrics struct {
	authRequests prometheus.Counter
	tokens       *prometheus.CounterVec
	reuse        *prometheus.CounterVec
	revoked      prometheus.Counter
}

// SupportedScopes are the scopes Watashi understands: openid, the claim
// scopes of the consent catalogue, and offline_access.
func SupportedScopes() []string {
	return append(append([]string{oidc.ScopeOpenID}, consent.ScopesSupported()...), oidc.ScopeOfflineAccess)
}

// New builds the provider.
func New(o Options) (*Server, error) {
	if o.Web == nil || o.Requests == nil || o.Clients == nil || o.Accounts == nil || o.Keys == nil || o.Sessions == nil || o.Store == nil {
		return nil, errors.New("provider: a dependency is missing")
	}
	if o.TokenKey == ([32]byte{}) {
		return nil, errors.New("provider: the token key is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.TTLs.Code, time.Minute)
	def(&o.TTLs.AccessToken, 10*time.Minute)
	def(&o.TTLs.RefreshToken, 30*24*time.Hour)
	def(&o.TTLs.IDToken, 5*time.Minute)
	s := &Server{
		web: o.Web, requests: o.Requests, clients: o.Clients, accounts: o.Accounts, keys: o.Keys,
		sessions: o.Sessions, kv: o.Store, registration: o.Registration, ttl: o.TTLs,
		origins: o.AllowedOrigins, blocks: o.Blocks, log: o.Web.Logger(),
	}
	if err := s.registerMetrics(o.Metrics); err != nil {
		return nil, err
	}
	s.storage = &storage{s: s}
	s.grants = &grants{issued: o.Sessions.TokensIssued, kv: o.Store, ttl: o.TTLs, clock: o.Web.Now, log: s.log, metrics: &s.metrics}
	s.errs = newAPIErrors(s.log, o.Web.Issuer())
	s.spends = &spends{kv: o.Store, requests: o.Requests, grants: s.grants, log: s.log, codeTTL: o.TTLs.Code, reuse: s.metrics.reuse}
	cfg := &op.Config{
		CryptoKey:                o.TokenKey,
		DefaultLogoutRedirectURI: session.LogoutPath,
		CodeMethodS256:           true,
		AuthMethodPrivateKeyJWT:  true,
		GrantTypeRefreshToken:    true,
		SupportedUILocales:       []language.Tag{language.Japanese, language.English},
		SupportedScopes:          SupportedScopes(),
		SupportedClaims:          claimsSupported,
	}
	// The key ID names the token key, so that a later rotation can keep
	// the old one as a decrypter.
	tk := ids.Hash(string(o.TokenKey[:]))[:8]
	tc, err := newTokenCrypto(o.TokenKey, tk)
	if err != nil {
		return nil, err
	}
	opts := []op.Option{
		op.WithCrypto(tc),
		// Our access tokens are opaque: never accept a JWT (an ID token,
		// say) where an access token is expected.
		op.WithAccessTokenKeySet(refuseKeySet{}),
		op.WithIDTokenHintVerifierOpts(op.WithSupportedIDTokenHintSigningAlgorithms(string(jose.ES256), string(jose.RS256))),
	}
	if o.Web.Dev() {
		opts = append(opts, op.WithAllowInsecure())
	}
	p, err := op.NewProvider(cfg, s.storage, op.StaticIssuer(o.Web.Issuer()), opts...)
	if err != nil {
		return nil, fmt.Errorf("provider: %w", err)
	}
	// The token, userinfo, introspection and revocation endpoints are
	// Watashi's own (token.go, userinfo.go, introspection.go,
	// revocation.go): the library's cannot answer with the challenges and
	// Retry-After their errors need. It routes the rest.
	s.LegacyServer = op.NewLegacyServer(p, op.Endpoints{
		EndSession: op.NewEndpoint(endSessionPath),
		JwksURI:    op.NewEndpoint(keysPath),
	})
	issuer := o.Web.Issuer()
	s.cors = cors.New(*s.corsOptions()).Handler
	s.handler = op.RegisterServer(s, s.Endpoints(),
		op.WithServerCORSOptions(s.corsOptions()),
		op.WithHTTPMiddleware(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				next.ServeHTTP(w, r.WithContext(op.ContextWithIssuer(r.Context(), issuer)))
			})
		}))
	return s, nil
}

func (s *Server) registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var err error
	if s.metrics.authRequests, err = metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "watashi_oidc_auth_requests_total",
		Help: "Authorization requests accepted and stored.",
	})); err != nil {
		return err
	}
	if s.metrics.tokens, err = metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_oidc_tokens_issued_total",
		Help: "Access and refresh tokens issued, by kind.",
	}, []string{"kind"})); err != nil {
		return err
	}
	if s.metrics.reuse, err = metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_oidc_token_reuse_total",
		Help: "Replayed authorization codes and reused refresh tokens (each revokes a grant), by kind.",
	}, []string{"kind"})); err != nil {
		return err
	}
	if s.metrics.revoked, err = metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "watashi_oidc_grants_revoked_total",
		Help: "Grants (token families) revoked.",
	})); err != nil {
		return err
	}
	return nil
}

// Mount registers the provider's endpoints. The authorization endpoint
// and its callback are Watashi's own; the rest go to the library's router
// with this Server's overrides.
func (s *Server) Mount(mux *http.ServeMux) {
	mux.HandleFunc(authorizePath, s.handleAuthorize)
	mux.HandleFunc(authreq.CallbackPath, s.handleCallback)
	mux.Handle(oidc.DiscoveryEndpoint, s.handler)
	mux.Handle(keysPath, s.handler)
	mux.Handle(userinfoPath, s.cors(http.HandlerFunc(s.handleUserinfo)))
	mux.Handle(endSessionPath, s.handler)
	mux.Handle(tokenPath, backChannel(s.cors(http.HandlerFunc(s.handleToken))))
	mux.Handle(introspectPath, backChannel(s.cors(http.HandlerFunc(s.handleIntrospect))))
	mux.Handle(revokePath, backChannel(s.cors(http.HandlerFunc(s.handleRevoke))))
	if s.registration != nil {
		mux.Handle(RegistrationPath, s.registration)
		mux.Handle(RegistrationPath+"/", s.registration)
	}
}

// RouteNames are the metric labels of the provider's routes.
func RouteNames() map[string]string { return routeNames }

// Ready reports whether the store answers (readiness).
func (s *Server) Ready(ctx context.Context, _ *op.Request[struct{}]) (*op.Response, error) {
	return nil, op.NewStatusError(oidc.ErrServerError().WithDescription("readiness is served on the telemetry listener"), http.StatusNotFound)
}

// Health is served on the telemetry listener, never on the public one.
func (s *Server) Health(ctx context.Context, _ *op.Request[struct{}]) (*op.Response, error) {
	return nil, op.NewStatusError(oidc.ErrServerError().WithDescription("health is served on the telemetry listener"), http.StatusNotFound)
}

// Keys is the JWKS, cacheable for five minutes: keys are published a
// rotation period before they sign anything.
func (s *Server) Keys(ctx context.Context, r *op.Request[struct{}]) (*op.Response, error) {
	resp, err := s.LegacyServer.Keys(ctx, r)
	if err != nil {
		s.log.ErrorContext(ctx, "JWKS unavailable", "error", err)
		return nil, op.NewStatusError(errTemporarilyUnavailable(), http.StatusServiceUnavailable)
	}
	resp.Header.Set("Cache-Control", "public, max-age=300")
	return resp, nil
}

func (s *Server) now() time.Time { return s.web.Now() }

// RevokeAccountClient revokes every token an account gave a client, when
// the resident withdraws that relying party.
func (s *Server) RevokeAccountClient(ctx context.Context, accountID, clientID string) error {
	return s.grants.revokeAccountClient(ctx, accountID, clientID)
}

// RevokeGrant revokes one token family, every access and refresh token
// an authorization code minted, by its grant ID: what ending a session
// or signing out everywhere does to the tokens (session.Tokens).
func (s *Server) RevokeGrant(ctx context.Context, grantID string) error {
	if grantID == "" || strings.ContainsAny(grantID, ":{}") {
		return errors.New("provider: bad grant ID")
	}
	return s.grants.revoke(ctx, grantID)
}

type refuseKeySet struct{}

func (refuseKeySet) VerifySignature(context.Context, *jose.JSONWebSignature) ([]byte, error) {
	return nil, errors.New("JWT access tokens are not accepted")
}
