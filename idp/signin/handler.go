package signin

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/internal/metrics"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/pkibridge"
)

// Clients is what the sign-in needs to know of relying parties: whom to
// show (the provider itself for a resident's own sign-in) and the subject
// an RP insisting on one would see.
type Clients interface {
	Display(ctx context.Context, id string) (*clients.Entry, error)
	Get(ctx context.Context, id string) (*clients.Client, error)
	Subject(c *clients.Client, accountID string) string
}

// Accounts resolve verified certificates to residents.
type Accounts interface {
	// SignInNoting resolves a verified authentication certificate to its
	// account and records the token label the wallet reports
	// (NoteAuthLabel) from the same reading of the account.
	SignInNoting(ctx context.Context, auth *pkibridge.Result, label string) (account.SignedIn, error)
	Proof(ctx context.Context, sig, auth *pkibridge.Result, sessionAccount string) (id string, created bool, err error)
	// CertLink names the authentication certificate inside the account,
	// so that removing it ends the sessions it started.
	CertLink(ctx context.Context, c *x509.Certificate) (string, error)
	// NoteAuthLabel remembers which JPKI token the certificate was used
	// from, for the account page.
	NoteAuthLabel(ctx context.Context, id, link, label string) error
	// LinkedTo says which account a certificate is linked to, "" for
	// none: a proofing that links a new one announces it.
	LinkedTo(ctx context.Context, c *x509.Certificate) (string, error)
}

// Publisher appends events to the outbox (events.Outbox).
type Publisher interface {
	Publish(ctx context.Context, e events.Event) error
}

// Verifier checks wallet signatures (pkibridge.Verifier).
type Verifier interface {
	VerifyJWS(ctx context.Context, compact, want []byte) (*pkibridge.Result, error)
	VerifyCMS(ctx context.Context, der, detached, want []byte) (*pkibridge.Result, error)
	VerifyRaw(ctx context.Context, sig []byte, cert *x509.Certificate, want []byte, hash crypto.Hash) (*pkibridge.Result, error)
}

// Blocks is the operators' kill switch as the sign-in sees it: whether a
// JPKI token label is blocked (whitelist.Blocklist). An error is a
// refusal that may pass on a retry.
type Blocks interface {
	LabelBlocked(ctx context.Context, label string) (bool, error)
}

// Options are the sign-in's dependencies.
type Options struct {
	Web      *web.Kit
	Requests *authreq.Repo
	Clients  Clients
	Accounts Accounts
	Sessions *session.Manager
	Verifier Verifier
	// Store holds transactions and carries their state changes to every
	// node's event streams.
	Store store.KV
	// TransactionTTL is how long a wallet has to answer (default 5m).
	TransactionTTL time.Duration
	// CookieKey authenticates the rotating QR tokens.
	CookieKey []byte
	// DemoWalletURL, when set, replaces the wallet app in the same-device
	// links: they point to DemoWalletURL + "?tx=" + the transaction URL, so
	// that the demo can be clicked through in one browser.
	DemoWalletURL string
	Metrics       prometheus.Registerer
	// Passkeys, when set, adds the passkey sign-in to the login page and
	// the passkey offer after a JPKI sign-in.
	Passkeys *PasskeyRoutes
	// Events, when set, hears of every card or phone a proofing links.
	Events Publisher
	// Blocks, when set, refuses sign-ins from wallets reporting a
	// blocked token label.
	Blocks Blocks
}

// PasskeyRoutes are the passkey endpoints the login page links to (the
// passkey package serves them).
type PasskeyRoutes struct {
	LoginBegin, LoginFinish string
	// Offer is the page shown right after a JPKI sign-in for a request.
	Offer func(requestID string) string
}

// Handler serves the resident's sign-in: the login page, its transaction
// endpoints, the wallet protocol and sign-out.
type Handler struct {
	events     Publisher
	web        *web.Kit
	requests   *authreq.Repo
	clients    Clients
	accounts   Accounts
	sessions   *session.Manager
	verifier   Verifier
	kv         store.KV
	txs        *transactions
	txTTL      time.Duration
	streams    streamLimiter
	demoWallet string
	passkeys   *PasskeyRoutes
	blocks     Blocks
	log        *slog.Logger
	metrics    signinMetrics
}

type signinMetrics struct {
	transactions *prometheus.CounterVec
	submissions  *prometheus.CounterVec
	verify       prometheus.Histogram
}

// New checks the options and registers the sign-in metrics.
func New(o Options) (*Handler, error) {
	if o.Web == nil || o.Requests == nil || o.Clients == nil || o.Accounts == nil || o.Sessions == nil || o.Verifier == nil || o.Store == nil {
		return nil, errors.New("signin: a dependency is missing")
	}
	if len(o.CookieKey) < 32 {
		return nil, errors.New("signin: the cookie key must be at least 32 bytes")
	}
	h := &Handler{
		web: o.Web, requests: o.Requests, clients: o.Clients, accounts: o.Accounts, sessions: o.Sessions,
		verifier: o.Verifier, kv: o.Store, txTTL: o.TransactionTTL,
		demoWallet: o.DemoWalletURL, passkeys: o.Passkeys, events: o.Events, blocks: o.Blocks, log: o.Web.Logger(),
		txs: &transactions{kv: o.Store, issuer: o.Web.Issuer(), key: o.CookieKey, now: o.Web.Now, log: o.Web.Logger()},
	}
	if h.txTTL == 0 {
		h.txTTL = 5 * time.Minute
	}
	reg := o.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var err error
	if h.metrics.transactions, err = metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_signin_transactions_total",
		Help: "Sign-in transactions opened, by purpose (signin, proofing).",
	}, []string{"purpose"})); err != nil {
		return nil, err
	}
	if h.metrics.submissions, err = metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_wallet_submissions_total",
		Help: "Wallet submissions by outcome: verified or the error code.",
	}, []string{"outcome"})); err != nil {
		return nil, err
	}
	if h.metrics.verify, err = metrics.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "watashi_wallet_verify_seconds",
		Help:    "Time to verify a submission's signatures (chain, revocation).",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})); err != nil {
		return nil, err
	}
	return h, nil
}

// Mount registers the routes. Patterns are method-qualified, so other
// methods get 405 from the mux.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+authreq.LoginPath, h.handleLogin)
	mux.HandleFunc("GET /login/tx/{id}/status", h.handleTxStatus)
	mux.HandleFunc("GET /login/tx/{id}/events", h.handleTxEvents)
	mux.HandleFunc("GET /login/tx/{id}/qr.png", h.handleTxQR)
	mux.HandleFunc("POST /login/tx/{id}/finish", h.handleTxFinish)
	mux.HandleFunc("GET "+session.LogoutPath, h.handleLogout)
	mux.HandleFunc("POST "+session.LogoutPath, h.handleLogoutConfirm)
	mux.HandleFunc("GET /wallet/open", h.handleWalletOpen)
	mux.HandleFunc("GET "+WalletTxPath+"{id}", h.handleWalletGet)
	mux.HandleFunc("POST "+WalletTxPath+"{id}", h.handleWalletPost)
	mux.HandleFunc("POST "+WalletTxPath+"{id}"+walletDeclineSuffix, h.handleWalletDecline)
	mux.HandleFunc("GET /login/tx/{id}/return", h.handleTxReturn)
}

// satisfies is session.Satisfies with the request's client's subject.
func (h *Handler) satisfies(ctx context.Context, ar *authreq.AuthRequest, sess *session.Session) bool {
	return session.Satisfies(ar, sess, h.web.Now(), func(account string) (string, error) {
		c, err := h.clients.Get(ctx, ar.ClientID)
		if err != nil {
			return "", err
		}
		return h.clients.Subject(c, account), nil
	})
}

// signedIn sends a signed-in browser on: to consent, or back to the
// provider's own page that asked for the sign-in, whose request is then
// spent.
func (h *Handler) signedIn(w http.ResponseWriter, r *http.Request, ar *authreq.AuthRequest) {
	if ar.Return != "" {
		if err := h.requests.Delete(r.Context(), ar.ID); err != nil {
			h.log.WarnContext(r.Context(), "account sign-in request not deleted", "error", err)
		}
	}
	http.Redirect(w, r, ar.AfterSignIn(), http.StatusSeeOther)
}
