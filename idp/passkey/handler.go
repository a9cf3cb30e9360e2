package passkey

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/internal/metrics"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/web"
)

// Accounts keep the residents' passkeys (account.Store).
type Accounts interface {
	Get(ctx context.Context, id string) (*account.Account, error)
	PasskeyHandle(ctx context.Context, id string) ([]byte, error)
	ByPasskeyHandle(ctx context.Context, handle []byte) (*account.Account, error)
	AddPasskey(ctx context.Context, id string, p account.Passkey) (*account.Account, error)
	UpdatePasskey(ctx context.Context, id string, cred []byte, fn func(*account.Passkey) error) (*account.Account, error)
}

// Attestation conveyance settings.
const (
	AttestationNone   = "none"
	AttestationDirect = "direct"
)

// DefaultRecentProofing is how recent the JPKI sign-in of a session that
// adds a passkey must be, by default.
const DefaultRecentProofing = 5 * time.Minute

// Options are the passkey handler's dependencies and policy.
type Options struct {
	Web      *web.Kit
	Requests *authreq.Repo
	Sessions *session.Manager
	Accounts Accounts
	Store    KV
	// RecentProofing: only a session whose JPKI sign-in is at most this
	// old may add a passkey (default DefaultRecentProofing).
	RecentProofing time.Duration
	// Attestation is AttestationNone (default) or AttestationDirect.
	Attestation string
	Policy      AAGUIDPolicy
	// Metadata, when set, is the FIDO metadata the registration checks
	// authenticators against.
	Metadata *Metadata
	Metrics  prometheus.Registerer
	// Events, when set, hears of every passkey added (events.Outbox).
	Events interface {
		Publish(ctx context.Context, e events.Event) error
	}
}

// Handler serves the passkey ceremonies and the offer after a JPKI
// sign-in.
type Handler struct {
	events interface {
		Publish(ctx context.Context, e events.Event) error
	}
	web      *web.Kit
	requests *authreq.Repo
	sessions *session.Manager
	accounts Accounts
	cer      ceremonies
	wa       *webauthn.WebAuthn
	recent   time.Duration
	attest   protocol.ConveyancePreference
	policy   AAGUIDPolicy
	log      *slog.Logger
	outcomes *prometheus.CounterVec
}

// RPID is the WebAuthn relying party ID of an issuer: its host, which must
// be a domain name (browsers refuse IP addresses as RP IDs).
func RPID(issuer string) (string, error) {
	u, err := url.Parse(issuer)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("passkey: issuer %q has no host", issuer)
	}
	host := u.Hostname()
	if net.ParseIP(host) != nil {
		return "", fmt.Errorf("passkey: the issuer's host %s is an IP address; passkeys need a domain name (localhost will do for development)", host)
	}
	return host, nil
}

// New checks the options.
func New(o Options) (*Handler, error) {
	if o.Web == nil || o.Requests == nil || o.Sessions == nil || o.Accounts == nil || o.Store == nil {
		return nil, errors.New("passkey: a dependency is missing")
	}
	rpID, err := RPID(o.Web.Issuer())
	if err != nil {
		return nil, err
	}
	origin, err := web.Origin(o.Web.Issuer())
	if err != nil {
		return nil, err
	}
	h := &Handler{web: o.Web, requests: o.Requests, sessions: o.Sessions, accounts: o.Accounts,
		cer: ceremonies{kv: o.Store}, recent: o.RecentProofing, policy: o.Policy, events: o.Events, log: o.Web.Logger()}
	if h.recent == 0 {
		h.recent = DefaultRecentProofing
	}
	switch o.Attestation {
	case "", AttestationNone:
		h.attest = protocol.PreferNoAttestation
	case AttestationDirect:
		h.attest = protocol.PreferDirectAttestation
	default:
		return nil, fmt.Errorf("passkey: attestation %q is not none or direct", o.Attestation)
	}
	requireRK := true
	cfg := &webauthn.Config{
		RPID:          rpID,
		RPDisplayName: "Watashi",
		// Exactly the issuer's origin: no subdomain, no other port, no
		// cross-origin iframe.
		RPOrigins:             []string{origin},
		AttestationPreference: h.attest,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			RequireResidentKey: &requireRK,
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			UserVerification:   protocol.VerificationRequired,
		},
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: ceremonyTTL - 30*time.Second, TimeoutUVD: ceremonyTTL - 30*time.Second},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: ceremonyTTL - 30*time.Second, TimeoutUVD: ceremonyTTL - 30*time.Second},
		},
	}
	if o.Metadata != nil {
		cfg.MDS = o.Metadata.Provider
	}
	if h.wa, err = webauthn.New(cfg); err != nil {
		return nil, fmt.Errorf("passkey: %w", err)
	}
	reg := o.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if h.outcomes, err = metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_passkey_ceremonies_total",
		Help: "Passkey ceremonies finished, by kind (login, register) and outcome (ok or the error code).",
	}, []string{"kind", "outcome"})); err != nil {
		return nil, err
	}
	return h, nil
}

// The routes.
const (
	OfferPath      = "/passkey/offer"
	loginBegin     = "/passkey/login/begin"
	loginFinish    = "/passkey/login/finish"
	registerBegin  = "/passkey/register/begin"
	registerFinish = "/passkey/register/finish"
)

// Endpoints the pages' script calls, for the templates.
type Endpoints struct {
	LoginBegin, LoginFinish, RegisterBegin, RegisterFinish string
}

// Paths returns the ceremony endpoints.
func Paths() Endpoints {
	return Endpoints{LoginBegin: loginBegin, LoginFinish: loginFinish, RegisterBegin: registerBegin, RegisterFinish: registerFinish}
}

// Mount registers the routes.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+OfferPath, h.handleOffer)
	mux.HandleFunc("POST "+loginBegin, h.handleLoginBegin)
	mux.HandleFunc("POST "+loginFinish, h.handleLoginFinish)
	mux.HandleFunc("POST "+registerBegin, h.handleRegisterBegin)
	mux.HandleFunc("POST "+registerFinish, h.handleRegisterFinish)
}
