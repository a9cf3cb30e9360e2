package accountpage

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/web"
)

// Clients name the relying parties the page lists.
type Clients interface {
	Get(ctx context.Context, id string) (*clients.Client, error)
}

// Tokens revoke what an account gave a client.
type Tokens interface {
	RevokeAccountClient(ctx context.Context, accountID, clientID string) error
}

// Options are the page's dependencies.
type Options struct {
	Web      *web.Kit
	Requests *authreq.Repo
	Clients  Clients
	Sessions *session.Manager
	Grants   *consent.Store
	Tokens   Tokens
}

// Handler serves the account page.
type Handler struct {
	web      *web.Kit
	requests *authreq.Repo
	clients  Clients
	sessions *session.Manager
	grants   *consent.Store
	tokens   Tokens
	log      *slog.Logger
}

// New checks the options.
func New(o Options) (*Handler, error) {
	if o.Web == nil || o.Requests == nil || o.Clients == nil || o.Sessions == nil || o.Grants == nil || o.Tokens == nil {
		return nil, errors.New("accountpage: a dependency is missing")
	}
	return &Handler{web: o.Web, requests: o.Requests, clients: o.Clients, sessions: o.Sessions,
		grants: o.Grants, tokens: o.Tokens, log: o.Web.Logger()}, nil
}

// Mount registers the routes.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+pagePath, h.handleAccount)
	mux.HandleFunc("GET "+loginPath, h.handleAccountLogin)
	mux.HandleFunc("POST "+revokePath, h.handleAccountRevoke)
}
