package accountpage

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/web"
)

// Clients name the relying parties the page lists.
type Clients interface {
	Get(ctx context.Context, id string) (*clients.Client, error)
}

// Accounts name the signed-in resident and remove a linked card or
// phone (account.Store).
type Accounts interface {
	Get(ctx context.Context, id string) (*account.Account, error)
	AuthCerts
}

// Tokens revoke what an account gave a client.
type Tokens interface {
	RevokeAccountClient(ctx context.Context, accountID, clientID string) error
}

// PasskeyStore lists, renames and removes a resident's passkeys
// (account.Store).
type PasskeyStore interface {
	Get(ctx context.Context, id string) (*account.Account, error)
	RenamePasskey(ctx context.Context, id string, cred []byte, name string) error
	RemovePasskey(ctx context.Context, id string, cred []byte) error
}

// PasskeyOptions turn on the page's passkey section.
type PasskeyOptions struct {
	Store PasskeyStore
	// Begin and Finish are the registration endpoints (package passkey).
	Begin, Finish string
	// RecentProofing is how recent the JPKI sign-in of a session that
	// adds a passkey must be.
	RecentProofing time.Duration
}

// Options are the page's dependencies.
type Options struct {
	Web      *web.Kit
	Requests *authreq.Repo
	Clients  Clients
	Sessions *session.Manager
	Grants   *consent.Store
	Tokens   Tokens
	// Accounts say who is signed in.
	Accounts Accounts
	// Passkeys, when set, lists the resident's passkeys and adds one.
	Passkeys *PasskeyOptions
	// Ender ends sessions when an authenticator goes or the resident
	// signs out everywhere; Sessions when nil.
	Ender Ender
	// Events, when set, hears of removed authenticators.
	Events Publisher
	// Notices, when set, offers the notification mail.
	Notices Notices
}

// Handler serves the account page.
type Handler struct {
	web       *web.Kit
	requests  *authreq.Repo
	clients   Clients
	sessions  *session.Manager
	grants    *consent.Store
	tokens    Tokens
	accounts  Accounts
	passkeys  *PasskeyOptions
	ender     Ender
	events    Publisher
	authCerts AuthCerts
	notices   Notices
	log       *slog.Logger
}

// New checks the options.
func New(o Options) (*Handler, error) {
	if o.Web == nil || o.Requests == nil || o.Clients == nil || o.Sessions == nil || o.Grants == nil || o.Tokens == nil || o.Accounts == nil {
		return nil, errors.New("accountpage: a dependency is missing")
	}
	if o.Ender == nil {
		o.Ender = o.Sessions
	}
	return &Handler{web: o.Web, requests: o.Requests, clients: o.Clients, sessions: o.Sessions,
		grants: o.Grants, tokens: o.Tokens, accounts: o.Accounts, passkeys: o.Passkeys,
		ender: o.Ender, events: o.Events, authCerts: o.Accounts, notices: o.Notices, log: o.Web.Logger()}, nil
}

// Mount registers the routes.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+pagePath, h.handleAccount)
	mux.HandleFunc("GET "+loginPath, h.handleAccountLogin)
	mux.HandleFunc("POST "+revokePath, h.handleAccountRevoke)
	mux.HandleFunc("POST "+authenticatorsPath, h.handleAuthenticators)
	mux.HandleFunc("POST "+everywherePath, h.handleEverywhere)
	if h.notices != nil {
		mux.HandleFunc("POST "+noticesPath, h.handleNotices)
	}
	if h.passkeys != nil {
		mux.HandleFunc("POST "+passkeysPath, h.handlePasskeys)
	}
}

// maxFormBytes bounds the body of the account page's forms: the longest
// field is a passkey's credential ID (maxCredentialIDField).
const maxFormBytes = 16 << 10

// postForm is what every form of the account page checks first: a
// bounded body, the CSRF token, then the session whose account the form
// acts on (never an account the form names). Without a session it sends
// the browser to sign in; ok false means the answer is written.
func (h *Handler) postForm(w http.ResponseWriter, r *http.Request) (sess *session.Session, lang string, ok bool) {
	lang = h.web.Lang(w, r, nil)
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if !h.web.CheckCSRF(r) {
		h.web.ErrorPage(w, r, lang, http.StatusForbidden, "csrf")
		return nil, lang, false
	}
	sess, ok = h.sessions.Current(r)
	if !ok {
		http.Redirect(w, r, accountURL(lang, ""), http.StatusSeeOther)
		return nil, lang, false
	}
	return sess, lang, true
}
