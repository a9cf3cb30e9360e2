package idp

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/whitelist"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Options is everything the provider needs, already validated and loaded
// (Config.Options builds it from YAML and environment). Zero durations
// take the documented defaults.
type Options struct {
	// Issuer is the exact issuer URL; https unless Dev.
	Issuer string
	// Dev relaxes production rules: http issuer, memory store, no
	// __Host- cookie prefix, no HSTS. Only `--dev` and `watashi demo` set it.
	Dev bool

	Store    store.KV
	Verifier *pkibridge.Verifier
	// Clients are the static relying parties from the config file.
	Clients []*Client
	// Registry is the relying-party whitelist consulted for every
	// client_id that is not a static client; it also serves dynamic
	// registration at /register. Nil: static clients only. The caller
	// runs Registry.Run next to Server.Run.
	Registry *whitelist.Registry
	// TrustedSoftwareStatementIssuers may sign software statements for
	// dynamic registration (RFC 7591 §2.3).
	TrustedSoftwareStatementIssuers []whitelist.TrustedIssuer
	// RequireSoftwareStatement refuses registrations without one.
	RequireSoftwareStatement bool

	// PairwiseKey keys the HMAC that derives pairwise subjects. Changing
	// it changes every sub: it is durable key material (>= 32 bytes).
	PairwiseKey []byte
	// TokenKey encrypts codes and opaque access tokens (AES-256-GCM).
	TokenKey [32]byte
	// CookieKey authenticates cookies and CSRF tokens (>= 32 bytes).
	CookieKey []byte

	AuthRequestTTL  time.Duration // default 10m
	TransactionTTL  time.Duration // default 5m
	CodeTTL         time.Duration // default 60s
	AccessTokenTTL  time.Duration // default 10m
	RefreshTokenTTL time.Duration // default 30 days
	IDTokenTTL      time.Duration // default 5m
	SessionTTL      time.Duration // default 12h
	// KeyRotation is the signing key rotation period (default 30 days;
	// negative disables scheduled rotation).
	KeyRotation time.Duration
	// FactsRecheck is how old the last revocation check of the facts'
	// source certificate may be when facts are about to be released at
	// consent; older ones are checked again (default 1h; added by the
	// consent integration). A JPKI signature certificate is revoked when
	// the resident moves or changes name, so an old check may hide facts
	// that are no longer true. The OCSP/CRL layer caches answers, so a
	// short period costs little.
	FactsRecheck time.Duration

	// AllowedOrigins are the browser origins allowed to call the token,
	// userinfo and revocation endpoints cross-origin (SPAs). Empty: none.
	AllowedOrigins []string
	// TemplateDir overrides embedded templates (operators' themes).
	TemplateDir string
	// DemoWalletURL, when set, replaces the wallet app in the login page's
	// same-device links: they point to DemoWalletURL + "?tx=" + the
	// transaction URL. `watashi demo` sets it to its phone-simulator page
	// (<issuer>/phone/) so the flow can be clicked through in one browser
	// (added by the sign-in layer).
	DemoWalletURL string

	// TrustedProxies are the reverse proxies whose ClientIPHeader is
	// believed (added by the web layer). A request from any other address
	// is attributed to its RemoteAddr, so that a client cannot pick its
	// own rate-limit key by sending the header itself.
	TrustedProxies []netip.Prefix
	// ClientIPHeader names the header trusted proxies append the client
	// address to (default X-Forwarded-For; added by the web layer).
	ClientIPHeader string

	// HTTPClient makes the provider's outbound requests (relying parties'
	// jwks_uri). Default: http.DefaultClient with a 10 s timeout.
	HTTPClient *http.Client

	Logger  *slog.Logger
	Metrics prometheus.Registerer
	// Gatherer serves /metrics on the telemetry listener (added by the web
	// layer). Nil: Metrics is used when it is also a Gatherer, as a
	// *prometheus.Registry is.
	Gatherer prometheus.Gatherer
	Now      func() time.Time
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.AuthRequestTTL, 10*time.Minute)
	def(&o.TransactionTTL, 5*time.Minute)
	def(&o.CodeTTL, time.Minute)
	def(&o.AccessTokenTTL, 10*time.Minute)
	def(&o.RefreshTokenTTL, 30*24*time.Hour)
	def(&o.IDTokenTTL, 5*time.Minute)
	def(&o.SessionTTL, 12*time.Hour)
	def(&o.KeyRotation, 30*24*time.Hour)
	def(&o.FactsRecheck, time.Hour)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Server is the OpenID provider: the zitadel op.Provider, Watashi's
// storage behind it, and the sign-in flows in front of it.
type Server struct {
	opts     Options
	log      *slog.Logger
	kv       store.KV
	provider *op.Provider
	now      func() time.Time

	oidc   *oidcState   // provider-side state (oidc_*.go)
	signin *signinState // login, transactions, wallet (signin_*.go)
	web    *webState    // middleware, telemetry (web_*.go)
}

// New builds a Server. It fails when options are inconsistent; Config
// validation should have caught those earlier with friendlier messages.
func New(ctx context.Context, o Options) (*Server, error) {
	o.defaults()
	if o.Store == nil {
		return nil, errors.New("idp: Options.Store is required")
	}
	if o.Verifier == nil {
		return nil, errors.New("idp: Options.Verifier is required")
	}
	s := &Server{opts: o, log: o.Logger, kv: o.Store, now: o.Now}
	for _, step := range []func(context.Context) error{s.initWeb, s.initOIDC, s.initSignin} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Handler is the public HTTP handler (OIDC endpoints, login, wallet).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.mountSignin(mux)
	s.mountOIDC(mux) // last: owns "/" for the provider's routes
	return s.wrapPublic(mux)
}
