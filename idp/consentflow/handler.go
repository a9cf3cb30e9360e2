package consentflow

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
)

// Clients is what the consent step needs of relying parties.
type Clients interface {
	Lookup(ctx context.Context, id string) (*clients.Entry, error)
	Get(ctx context.Context, id string) (*clients.Client, error)
	Subject(c *clients.Client, accountID string) string
}

// Accounts give the facts the screen shows, re-checked before they are
// released. ReadOps and ForReleaseFrom read an account in a batch with
// the remembered grant (account.Store).
type Accounts interface {
	Get(ctx context.Context, id string) (*account.Account, error)
	RecheckFacts(ctx context.Context, a *account.Account) (*account.Account, error)
	ReadOps(id string) []store.Op
	ForReleaseFrom(id string, res []store.Result) (*account.Account, error)
}

// Batcher runs independent store reads in one round trip (store.KV).
type Batcher interface {
	Do(ctx context.Context, ops ...store.Op) ([]store.Result, error)
}

// Options are the consent step's dependencies.
type Options struct {
	Web      *web.Kit
	Requests *authreq.Repo
	Clients  Clients
	Accounts Accounts
	Sessions *session.Manager
	Grants   *consent.Store
	// Store reads the request with the session, and the grant with the
	// account, in one round trip each.
	Store Batcher
}

// Handler serves /consent.
type Handler struct {
	web      *web.Kit
	requests *authreq.Repo
	clients  Clients
	accounts Accounts
	sessions *session.Manager
	grants   *consent.Store
	kv       Batcher
	log      *slog.Logger
}

// New checks the options.
func New(o Options) (*Handler, error) {
	if o.Web == nil || o.Requests == nil || o.Clients == nil || o.Accounts == nil || o.Sessions == nil || o.Grants == nil || o.Store == nil {
		return nil, errors.New("consentflow: a dependency is missing")
	}
	return &Handler{web: o.Web, requests: o.Requests, clients: o.Clients, accounts: o.Accounts,
		sessions: o.Sessions, grants: o.Grants, kv: o.Store, log: o.Web.Logger()}, nil
}

// Mount registers the routes.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+authreq.ConsentPath, h.handleConsent)
	mux.HandleFunc("POST "+authreq.ConsentPath, h.handleConsentPost)
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

// completeAndReturn records the sign-in and what this request may release
// on the auth request, and sends the browser to the provider's callback,
// which mints the code. consent.Effective re-checks the granted claims
// against the request (scopes, the claims parameter, age checks,
// verified_claims), so that no caller can widen what is released.
func (h *Handler) completeAndReturn(w http.ResponseWriter, r *http.Request, st *consentState, granted []string) {
	ctx := r.Context()
	_, err := h.requests.CompleteLoaded(ctx, st.ar, authreq.Completion{
		Authentication: st.sess.Authentication(),
		Subject:        h.clients.Subject(st.client, st.sess.AccountID),
		Granted:        consent.Effective(&consent.Grant{Claims: granted}, st.req),
	})
	switch {
	case errors.Is(err, authreq.ErrDone):
		h.web.ErrorPage(w, r, st.lang, http.StatusBadRequest, "already_completed")
		return
	case errors.Is(err, authreq.ErrNotFound):
		h.web.ErrorPage(w, r, st.lang, http.StatusBadRequest, "unknown_request")
		return
	case err != nil:
		h.log.ErrorContext(ctx, "complete auth request", "error", err)
		h.web.ErrorPage(w, r, st.lang, http.StatusInternalServerError, "server_error")
		return
	}
	http.Redirect(w, r, authreq.CallbackURL(h.web.Issuer(), st.ar.ID), http.StatusSeeOther)
}
