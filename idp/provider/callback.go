package provider

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/internal/ids"
)

// codeExchangeMargin keeps an auth request a little longer than its code,
// for the exchange in flight when the code expires.
const codeExchangeMargin = 30 * time.Second

// Store keys of codes and of the pairwise index.
func codeKey(hash string) string            { return "code:" + hash }
func usedCodeKey(hash string) string        { return "usedcode:" + hash }
func subIndexKey(client, sub string) string { return "subidx:" + client + ":" + sub }

// handleCallback is where a completed request comes back from the consent
// step: it mints the one code of the request and sends the browser to the
// RP with it. Only the browser that signed in may pick it up: the binding
// cookie whose hash the login recorded is required.
func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx := r.Context()
	ar, err := s.requests.Load(ctx, r.FormValue("id"))
	if err != nil {
		if !errors.Is(err, authreq.ErrNotFound) {
			s.log.ErrorContext(ctx, "load auth request", "error", err)
		}
		s.errorPage(w, r, http.StatusBadRequest, "unknown_request")
		return
	}
	if ar.RedirectURI == "" || !ar.BoundTo(authreq.BrowserBinding(s.web, r)) {
		s.errorPage(w, r, http.StatusForbidden, "foreign_browser")
		return
	}
	toRP := func(q url.Values) {
		u, err := url.Parse(ar.RedirectURI)
		if err != nil {
			s.errorPage(w, r, http.StatusBadRequest, "invalid_redirect_uri")
			return
		}
		rq := u.Query()
		for k, v := range q {
			rq[k] = v
		}
		if ar.State != "" {
			rq.Set("state", ar.State)
		}
		u.RawQuery = rq.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	fail := func(e *oidc.Error) {
		q := url.Values{"error": {string(e.ErrorType)}}
		if e.Description != "" {
			q.Set("error_description", e.Description)
		}
		toRP(q)
	}
	if !ar.Completed {
		fail(oidc.ErrInteractionRequired().WithDescription("the sign-in has not been completed"))
		return
	}
	code := ids.Long()
	h := ids.Hash(code)
	minted, err := s.requests.Update(ctx, ar.ID, func(ar *authreq.AuthRequest) error {
		if ar.CodeHash != "" {
			return errCodeMinted
		}
		ar.CodeHash = h
		return nil
	})
	switch {
	case errors.Is(err, errCodeMinted):
		fail(oidc.ErrInvalidRequest().WithDescription("authorization already completed"))
		return
	case errors.Is(err, authreq.ErrNotFound):
		s.errorPage(w, r, http.StatusBadRequest, "unknown_request")
		return
	case err != nil:
		s.log.ErrorContext(ctx, "record code", "error", err)
		fail(oidc.ErrServerError().WithDescription("the code could not be issued; try again"))
		return
	}
	ar = minted
	ok, err := s.kv.SetNX(ctx, codeKey(h), []byte(ar.ID), s.ttl.Code)
	if err != nil || !ok {
		s.log.ErrorContext(ctx, "store code", "error", err, "collision", err == nil)
		fail(oidc.ErrServerError().WithDescription("the code could not be issued; try again"))
		return
	}
	// From now on the request only has to outlive its code.
	if err := s.requests.Keep(ctx, ar, s.ttl.Code+codeExchangeMargin); err != nil {
		s.log.WarnContext(ctx, "auth request lifetime not shortened", "error", err)
	}
	// end_session maps the pairwise sub of an id_token_hint back to the
	// account through this index.
	if err := s.kv.Set(ctx, subIndexKey(ar.ClientID, ar.Subject), []byte(ar.AccountID), s.ttl.RefreshToken); err != nil {
		s.log.WarnContext(ctx, "pairwise index not written; end_session cannot map this sub", "error", err)
	}
	toRP(url.Values{"code": {code}})
}

var errCodeMinted = errors.New("provider: the request already has its code")
