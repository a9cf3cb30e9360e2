package provider

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/internal/ids"
)

// A code is "<auth request ID>.<random>" and has no record of its own:
// its request carries the SHA-256 of the whole code (CodeHash) and, from
// the moment the code is minted, lives only as long as the code may. The
// request ID in a code is no secret (the login URLs carry it) and gives
// nothing without the random part.
const codeSep = "."

func newCode(arID string) string { return arID + codeSep + ids.Long() }

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
			// Nothing is known of the request, not even where to send
			// an answer: the resident may reload the page.
			s.log.ErrorContext(ctx, "load auth request", "error", err)
			s.unavailablePage(w, r)
			return
		}
		s.errorPage(w, r, http.StatusBadRequest, "unknown_request")
		return
	}
	if ar.RedirectURI == "" || !ar.BoundTo(authreq.BrowserBinding(s.web, r)) {
		s.errorPage(w, r, http.StatusForbidden, "foreign_browser")
		return
	}
	toRP := func(q url.Values) {
		u, err := authreq.ResponseURL(s.web.Issuer(), ar.RedirectURI, ar.State, q)
		if err != nil {
			s.errorPage(w, r, http.StatusBadRequest, "invalid_redirect_uri")
			return
		}
		http.Redirect(w, r, u, http.StatusFound)
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
	code := newCode(ar.ID)
	h := ids.Hash(code)
	// One compare-and-swap records the code and shortens the request's
	// life to the code's: of two callbacks, one mints.
	_, err = s.requests.UpdateLoadedTTL(ctx, ar, s.ttl.Code, func(ar *authreq.AuthRequest) error {
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
		fail(unavailableToRP())
		return
	}
	toRP(url.Values{"code": {code}})
}

var errCodeMinted = errors.New("provider: the request already has its code")

// unavailableToRP is what the RP hears when the provider could not finish
// an authorization for a passing reason (RFC 6749 §4.1.2.1): the resident
// may simply start again.
func unavailableToRP() *oidc.Error {
	return &oidc.Error{ErrorType: temporarilyUnavailable, Description: "the authorization could not be completed now; try again"}
}
