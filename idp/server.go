package idp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/accountpage"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/backchannel"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/consentflow"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/factsmon"
	"github.com/watashi-id/watashi/idp/internal/logref"
	"github.com/watashi-id/watashi/idp/keys"
	"github.com/watashi-id/watashi/idp/notify"
	"github.com/watashi-id/watashi/idp/passkey"
	"github.com/watashi-id/watashi/idp/provider"
	"github.com/watashi-id/watashi/idp/rplogo"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/signin"
	"github.com/watashi-id/watashi/idp/ssf"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/templates"
	"github.com/watashi-id/watashi/whitelist"
)

// Options is everything the provider needs, already validated and loaded
// (config.Config.Options builds it from YAML and environment). Zero
// durations take the documented defaults.
type Options struct {
	// Issuer is the exact issuer URL; https unless Dev.
	Issuer string
	// Dev relaxes production rules: http issuer, memory store, no
	// __Host- cookie prefix, no HSTS, generated secrets. Only `--dev` and
	// `watashi demo` set it.
	Dev bool

	Store    store.KV
	Verifier *pkibridge.Verifier
	// Clients are the static relying parties from the config file.
	Clients []*clients.Client
	// Registry is the relying-party whitelist consulted for every
	// client_id that is not a static client; it also serves dynamic
	// registration at /register. Nil: static clients only. Run keeps it
	// in step with the other nodes.
	Registry *whitelist.Registry
	// Blocks is the operators' kill switch (token labels, passkey models,
	// clients). Nil: one on Store. Run keeps it in step with the other
	// nodes.
	Blocks *whitelist.Blocklist
	// TrustedSoftwareStatementIssuers may sign software statements for
	// dynamic registration (RFC 7591 §2.3).
	TrustedSoftwareStatementIssuers []whitelist.TrustedIssuer
	// RequireSoftwareStatement refuses registrations without one.
	RequireSoftwareStatement bool

	// PairwiseKey keys the HMAC that derives pairwise subjects. Changing
	// it changes every sub: it is durable key material (>= 32 bytes).
	PairwiseKey []byte
	// TokenKey encrypts opaque access tokens (AES-256-GCM).
	TokenKey [32]byte
	// CookieKey authenticates cookies, CSRF and QR tokens (>= 32 bytes).
	// The keyed references that stand for account IDs in the logs are
	// derived from it.
	CookieKey []byte
	// KEK wraps the data keys that encrypt accounts and signing keys at
	// rest. Required, except under Dev with a store that is not durable,
	// where one is generated for the process.
	KEK *seal.Ring

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
	// FactsRecheck is how old the last revocation check of the facts
	// source certificate may be when facts are about to be released
	// (default 1h). A JPKI signature certificate is revoked when the
	// resident moves or changes name, so an old check may hide facts that
	// are no longer true; the OCSP/CRL layer caches answers, so a short
	// period costs little.
	FactsRecheck time.Duration

	// Passkeys are the passkey sign-in after identity proofing.
	Passkeys PasskeyOptions
	// FactsMonitor re-checks every account's proofing certificate on a
	// schedule.
	FactsMonitor FactsMonitorOptions

	// Notify is the residents' notification mail.
	Notify NotifyOptions

	// AllowedOrigins are the browser origins allowed to call the token,
	// userinfo and revocation endpoints cross-origin (SPAs). Empty: none.
	AllowedOrigins []string
	// TemplateDir overrides embedded templates (operators' themes).
	TemplateDir string
	// DemoWalletURL, when set, replaces the wallet app in the login page's
	// same-device links (the demo's phone simulator).
	DemoWalletURL string

	// TrustedProxies are the reverse proxies whose ClientIPHeader is
	// believed. A request from any other address is attributed to its
	// RemoteAddr, so that a client cannot pick its own rate-limit key by
	// sending the header itself.
	TrustedProxies []netip.Prefix
	// ClientIPHeader names the header trusted proxies append the client
	// address to (default X-Forwarded-For).
	ClientIPHeader string

	// Fetcher makes the provider's requests to URLs integrators control
	// (sector documents, relying parties' jwks_uri): https only, no
	// redirects, bounded size and time, no internal address. Default:
	// whitelist.NewFetcher with Dev.
	Fetcher *whitelist.Fetcher

	Logger  *slog.Logger
	Metrics prometheus.Registerer
	// Gatherer serves /metrics on the telemetry listener. Nil: Metrics is
	// used when it is also a Gatherer, as a *prometheus.Registry is.
	Gatherer prometheus.Gatherer
	Now      func() time.Time
}

// NotifyOptions configure the notification mail (package notify): off
// unless Enabled, and then the relay is required.
type NotifyOptions struct {
	Enabled bool
	SMTP    notify.SMTPConfig
	// Mailer replaces the SMTP sender (tests that inject a fault).
	Mailer notify.Mailer
}

// PasskeyOptions configure passkeys (package passkey).
type PasskeyOptions struct {
	// Enabled offers passkeys; the issuer's host must then be a domain
	// name.
	Enabled bool
	// RecentProofing: how recent the JPKI sign-in of a session that adds
	// a passkey must be (default 5m).
	RecentProofing time.Duration
	// Attestation is "none" (default) or "direct".
	Attestation string
	Policy      passkey.AAGUIDPolicy
	// Metadata is a verified FIDO metadata blob, or nil.
	Metadata *passkey.Metadata
}

// FactsMonitorOptions configure the scheduled re-check of the facts
// certificates (package factsmon).
type FactsMonitorOptions struct {
	Enabled bool
	// Interval: every account once per interval (default 24h).
	Interval time.Duration
	// OCSP asks the verifier's OCSP responders for what its CRLs leave
	// undecided; each query may cost a fee.
	OCSP bool
	// Partitions and Tick tune the sharing between nodes (defaults 64
	// and 1m); tests shorten them.
	Partitions int
	Tick       time.Duration
}

// SetDefaults fills every zero duration, the logger, the metrics registry,
// the clock and the fetcher with their documented defaults.
func (o *Options) SetDefaults() {
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
	if o.Fetcher == nil {
		o.Fetcher = whitelist.NewFetcher(whitelist.FetcherOptions{Dev: o.Dev})
	}
}

// Server is the assembled provider: the parts, wired once, behind one
// public handler and one telemetry handler.
type Server struct {
	opts     Options
	log      *slog.Logger
	web      *web.Kit
	clients  *clients.Resolver
	requests *authreq.Repo
	accounts *account.Store
	keys     *keys.Manager
	sessions *session.Manager
	events   *events.Outbox
	grants   *consent.Store
	provider *provider.Server
	notifier *notify.Notifier
	handler  http.Handler

	backchannel *backchannel.Sender
	ssf         *ssf.Transmitter
	monitor     *factsmon.Monitor
}

// New builds the provider from its options. It fails when they are
// inconsistent; config validation should have caught those earlier with
// friendlier messages.
func New(ctx context.Context, o Options) (*Server, error) {
	o.SetDefaults()
	if o.Store == nil {
		return nil, errors.New("idp: Options.Store is required")
	}
	// Every part below talks to the store through this one wrapper, so
	// its latency and errors are measured in one place.
	kv, err := store.Instrument(o.Store, o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("idp: %w", err)
	}
	o.Store = kv
	if o.Verifier == nil {
		return nil, errors.New("idp: Options.Verifier is required")
	}
	if err := secrets(&o, web.NewLogger(o.Logger)); err != nil {
		return nil, err
	}
	log := web.NewLogger(slog.New(logref.Wrap(unwrapLog(o.Logger.Handler()), logref.Key(o.CookieKey))))
	if o.Blocks == nil {
		if o.Blocks, err = whitelist.NewBlocklist(whitelist.BlocklistOptions{
			Backend: whitelist.KVBackend(o.Store, store.ErrNotFound), Logger: log, Now: o.Now,
		}); err != nil {
			return nil, fmt.Errorf("idp: %w", err)
		}
	}
	s := &Server{opts: o, log: log}
	if s.clients, err = clients.New(ctx, clients.Options{
		Static: o.Clients, Registry: o.Registry, Blocks: o.Blocks, PairwiseKey: o.PairwiseKey,
		Dev: o.Dev, Fetcher: o.Fetcher, Logger: log, Now: o.Now,
	}); err != nil {
		return nil, fmt.Errorf("idp: %w", err)
	}
	tmpl, err := templates.New(o.TemplateDir)
	if err != nil {
		return nil, fmt.Errorf("idp: %w", err)
	}
	var formTargets []string
	for _, c := range o.Clients {
		formTargets = append(formTargets, c.RedirectURIs...)
		formTargets = append(formTargets, c.PostLogout...)
	}
	if s.web, err = web.New(web.Options{
		Issuer: o.Issuer, Dev: o.Dev, CookieKey: o.CookieKey, TrustedProxies: o.TrustedProxies,
		ClientIPHeader: o.ClientIPHeader, FormTargets: web.FormActionSources(formTargets),
		Counter: o.Store, Templates: tmpl, Logger: log, Metrics: o.Metrics, Now: o.Now,
	}); err != nil {
		return nil, fmt.Errorf("idp: %w", err)
	}
	s.requests = authreq.New(o.Store, o.AuthRequestTTL, o.Now, s.web.Issuer())
	var checker account.RevocationChecker
	if v := o.Verifier; v.Revocation != nil && v.Mode != pkibridge.RevocationOff {
		checker = v.Revocation
	}
	if s.accounts, err = account.New(o.Store, account.Options{
		KEK: o.KEK, Checker: checker, Recheck: o.FactsRecheck, Logger: log, Metrics: o.Metrics, Now: o.Now,
	}); err != nil {
		return nil, fmt.Errorf("idp: %w", err)
	}
	if s.keys, err = keys.New(o.Store, keys.Options{KEK: o.KEK, Now: o.Now, Logger: log, Metrics: o.Metrics}); err != nil {
		return nil, fmt.Errorf("idp: %w", err)
	}
	if err := s.keys.Ensure(ctx); err != nil {
		return nil, fmt.Errorf("idp: %w", err)
	}
	s.sessions = session.New(o.Store, s.web, o.SessionTTL, o.CookieKey)
	s.events = events.NewOutbox(o.Store, log)
	s.sessions.SetEvents(s.events)
	s.sessions.SetBlocks(sessionBlocks{blocks: o.Blocks, accounts: s.accounts})
	s.grants = consent.NewStore(o.Store, store.ErrNotFound)
	registration, err := s.registration()
	if err != nil {
		return nil, err
	}
	if s.provider, err = provider.New(provider.Options{
		Web: s.web, Requests: s.requests, Clients: s.clients, Accounts: s.accounts, Keys: s.keys,
		Sessions: s.sessions, Store: o.Store, Registration: registration, TokenKey: o.TokenKey,
		TTLs:           provider.TTLs{Code: o.CodeTTL, AccessToken: o.AccessTokenTTL, RefreshToken: o.RefreshTokenTTL, IDToken: o.IDTokenTTL},
		AllowedOrigins: slices.Clone(o.AllowedOrigins), Metrics: o.Metrics, Blocks: o.Blocks,
	}); err != nil {
		return nil, err
	}
	s.sessions.SetTokens(s.provider, max(o.RefreshTokenTTL, o.AccessTokenTTL))
	if err := s.relyingPartyEvents(); err != nil {
		return nil, err
	}
	var passkeys *passkey.Handler
	var loginPasskeys *signin.PasskeyRoutes
	var accountPasskeys *accountpage.PasskeyOptions
	if o.Passkeys.Enabled {
		if passkeys, err = passkey.New(passkey.Options{
			Web: s.web, Requests: s.requests, Sessions: s.sessions, Accounts: s.accounts, Store: o.Store,
			RecentProofing: o.Passkeys.RecentProofing, Attestation: o.Passkeys.Attestation,
			Policy: o.Passkeys.Policy, Metadata: o.Passkeys.Metadata, Metrics: o.Metrics, Events: s.events, Blocks: o.Blocks,
		}); err != nil {
			return nil, fmt.Errorf("idp: %w", err)
		}
		p := passkey.Paths()
		loginPasskeys = &signin.PasskeyRoutes{LoginBegin: p.LoginBegin, LoginFinish: p.LoginFinish, Offer: passkey.OfferURL}
		accountPasskeys = &accountpage.PasskeyOptions{Store: s.accounts, Begin: p.RegisterBegin, Finish: p.RegisterFinish,
			RecentProofing: o.Passkeys.RecentProofing}
		if accountPasskeys.RecentProofing == 0 {
			accountPasskeys.RecentProofing = passkey.DefaultRecentProofing
		}
	}
	login, err := signin.New(signin.Options{
		Web: s.web, Requests: s.requests, Clients: s.clients, Accounts: s.accounts, Sessions: s.sessions,
		Verifier: o.Verifier, Store: o.Store, TransactionTTL: o.TransactionTTL, CookieKey: o.CookieKey,
		DemoWalletURL: o.DemoWalletURL, Metrics: o.Metrics, Passkeys: loginPasskeys, Events: s.events, Blocks: o.Blocks,
	})
	if err != nil {
		return nil, err
	}
	consentPage, err := consentflow.New(consentflow.Options{
		Web: s.web, Requests: s.requests, Clients: s.clients, Accounts: s.accounts, Sessions: s.sessions, Grants: s.grants, Store: o.Store,
	})
	if err != nil {
		return nil, err
	}
	var notices *notify.Handler
	if o.Notify.Enabled {
		if s.notifier, notices, err = s.newNotifier(log); err != nil {
			return nil, fmt.Errorf("idp: %w", err)
		}
	}
	var accountNotices accountpage.Notices
	if s.notifier != nil {
		accountNotices = s.notifier
	}
	accountPage, err := accountpage.New(accountpage.Options{
		Web: s.web, Requests: s.requests, Clients: s.clients, Sessions: s.sessions, Grants: s.grants, Tokens: s.provider,
		Accounts: s.accounts, Passkeys: accountPasskeys, Events: s.events, Notices: accountNotices,
	})
	if err != nil {
		return nil, err
	}
	logos, err := rplogo.New(rplogo.Options{Clients: s.clients, Fetcher: o.Fetcher, Logger: log, Now: o.Now})
	if err != nil {
		return nil, err
	}
	// The one place that wires the routes. Handler packages register
	// their own, method-qualified where they can be.
	mux := http.NewServeMux()
	logos.Mount(mux)
	login.Mount(mux)
	consentPage.Mount(mux)
	accountPage.Mount(mux)
	if passkeys != nil {
		passkeys.Mount(mux)
	}
	if notices != nil {
		notices.Mount(mux)
	}
	s.provider.Mount(mux)
	s.ssf.Mount(mux)
	mux.Handle("GET /static/", http.StripPrefix("/static/", s.web.Static()))
	// Browsers ask for /favicon.ico whatever a page links to.
	mux.Handle("GET /favicon.ico", s.web.Static())
	s.handler = s.web.Wrap(mux, routeNames())
	return s, nil
}

// secrets fills missing keys in development only: the demo forgets
// everything on exit anyway. Production refuses to start without them.
func secrets(o *Options, log *slog.Logger) error {
	gen := func(name string, b []byte) error {
		if !o.Dev {
			return fmt.Errorf("idp: Options.%s must be set (at least 32 bytes)", name)
		}
		if _, err := rand.Read(b); err != nil {
			return err
		}
		log.Warn("generated a random secret for this process (dev only)", "option", name)
		return nil
	}
	switch {
	case len(o.PairwiseKey) == 0:
		o.PairwiseKey = make([]byte, 32)
		if err := gen("PairwiseKey", o.PairwiseKey); err != nil {
			return err
		}
	case len(o.PairwiseKey) < 32:
		return errors.New("idp: Options.PairwiseKey must be at least 32 bytes")
	}
	if o.TokenKey == ([32]byte{}) {
		if err := gen("TokenKey", o.TokenKey[:]); err != nil {
			return err
		}
	}
	switch {
	case len(o.CookieKey) == 0 && o.Dev:
		o.CookieKey = make([]byte, 32)
		if err := gen("CookieKey", o.CookieKey); err != nil {
			return err
		}
	case len(o.CookieKey) < 32:
		return errors.New("idp: Options.CookieKey must be at least 32 bytes")
	}
	if o.KEK == nil {
		if !o.Dev || o.Store.Durable() {
			return errors.New("idp: Options.KEK must be set: accounts and signing keys are stored encrypted")
		}
		o.KEK = seal.GenerateRing()
		log.Warn("generated a random secret for this process (dev only)", "option", "KEK")
	}
	return nil
}

// unwrapLog strips the request-ID layer from a handler, so that it is
// added once, outside the references.
func unwrapLog(h slog.Handler) slog.Handler {
	if lh, ok := h.(web.LogHandler); ok {
		return lh.Handler
	}
	return h
}

// Handler is the public HTTP handler: the OIDC endpoints, login, consent,
// the account page and the wallet protocol.
func (s *Server) Handler() http.Handler { return s.handler }

// RotateKeys rotates every algorithm's signing keys now (operator action
// or a suspected compromise of the current key).
func (s *Server) RotateKeys(ctx context.Context) error {
	_, err := s.keys.Rotate(ctx)
	return err
}

// Run does the provider's background work until ctx ends: scheduled key
// rotation and reloading keys rotated by another node, and keeping the
// whitelist cache and the block list in step with the other nodes,
// trimming the event outbox to its retention, mailing residents' notices,
// telling relying parties what happened (back-channel logout, SSF) and,
// when enabled, the facts monitor. It blocks; run it in its own goroutine
// next to the HTTP servers.
func (s *Server) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if s.opts.Registry != nil {
			_ = s.opts.Registry.Run(ctx)
		}
	}()
	blocks := make(chan struct{})
	go func() {
		defer close(blocks)
		_ = s.opts.Blocks.Run(ctx)
	}()
	trimmed := make(chan struct{})
	go func() {
		defer close(trimmed)
		s.events.Maintain(ctx)
	}()
	if s.notifier != nil {
		mailed := make(chan struct{}, 2)
		go func() { _ = s.events.Consume(ctx, notify.ConsumerName, s.notifier.HandleEvent); mailed <- struct{}{} }()
		go func() { _ = s.notifier.Run(ctx); mailed <- struct{}{} }()
		defer func() { <-mailed; <-mailed }()
	}
	rpDone := make(chan struct{})
	go func() {
		defer close(rpDone)
		s.runRelyingPartyEvents(ctx)
	}()
	s.keys.Run(ctx, s.opts.KeyRotation)
	<-done
	<-blocks
	<-trimmed
	<-rpDone
	return nil
}

// Blocks is the server's kill switch, for the admin API.
func (s *Server) Blocks() *whitelist.Blocklist { return s.opts.Blocks }

// sessionBlocks answers the session manager's question with the block
// list: a JPKI session by the token label it signed in with, a passkey
// session by its key's model, which only needs the account read while
// some model is blocked.
type sessionBlocks struct {
	blocks   *whitelist.Blocklist
	accounts *account.Store
}

func (b sessionBlocks) SessionBlocked(ctx context.Context, s *session.Session) (bool, error) {
	kind, ref, _ := strings.Cut(s.Method, ":")
	switch kind {
	case "jpki":
		return b.blocks.LabelBlocked(ctx, ref)
	case "passkey":
		if some, err := b.blocks.HasKind(ctx, whitelist.BlockAAGUID); err != nil || !some {
			return false, err
		}
		id, err := base64.RawURLEncoding.DecodeString(ref)
		if err != nil {
			return false, nil
		}
		a, err := b.accounts.Get(ctx, s.AccountID)
		if err != nil {
			return false, err
		}
		p, ok := a.Passkey(id)
		if !ok {
			return false, nil
		}
		return b.blocks.AAGUIDBlocked(ctx, p.AAGUID)
	}
	return false, nil
}

// newNotifier builds the notification mail: the relay, the sealed
// subscriptions, the queue, and the pages of the mails' links.
func (s *Server) newNotifier(log *slog.Logger) (*notify.Notifier, *notify.Handler, error) {
	o := s.opts
	mailer := o.Notify.Mailer
	if mailer == nil {
		sender, err := notify.NewSender(o.Notify.SMTP, !o.Dev)
		if err != nil {
			return nil, nil, err
		}
		mailer = sender
	}
	subs, err := notify.NewSubscriptions(o.Store, o.KEK, o.Now)
	if err != nil {
		return nil, nil, err
	}
	mac := hmac.New(sha256.New, o.CookieKey)
	mac.Write([]byte("watashi notify link key"))
	n, err := notify.New(notify.Options{Store: o.Store, Ring: o.KEK, Mailer: mailer, Names: notifyNames{clients: s.clients, accounts: s.accounts},
		Subs: subs, Issuer: o.Issuer, LinkKey: mac.Sum(nil), Logger: log, Now: o.Now, Metrics: o.Metrics})
	if err != nil {
		return nil, nil, err
	}
	h, err := notify.NewHandler(n, s.sessions, "/account")
	if err != nil {
		return nil, nil, err
	}
	return n, h, nil
}

// notifyNames tells the mail what residents recognise: the relying
// party's display name and the resident's own name for a passkey.
type notifyNames struct {
	clients  *clients.Resolver
	accounts *account.Store
}

func (n notifyNames) ClientName(ctx context.Context, id string) (string, error) {
	e, err := n.clients.Display(ctx, id)
	if errors.Is(err, clients.ErrUnknown) {
		return "", nil // gone since the sign-in: the mail says so
	}
	if err != nil {
		return "", err
	}
	return e.Client.Name(), nil
}

func (n notifyNames) PasskeyName(ctx context.Context, accountID, ref string) (string, error) {
	id, err := base64.RawURLEncoding.DecodeString(ref)
	if err != nil {
		return "", err
	}
	a, err := n.accounts.Get(ctx, accountID)
	if err != nil {
		return "", err
	}
	if p, ok := a.Passkey(id); ok {
		return p.Name, nil
	}
	return "", nil
}
