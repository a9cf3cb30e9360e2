package provider

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/watashi-id/watashi/idp/web"
)

// pageCodes are the protocol errors that must not be redirected to the
// RP, because the client or its redirect URI cannot be trusted with the
// answer; each has an error.<code> text in the catalogues.
var pageCodes = map[string]bool{
	"bad_request": true, "unknown_client": true, "client_not_allowed": true,
	"client_blocked": true, "invalid_redirect_uri": true, "unknown_request": true, "request_too_large": true,
	"rate_limited": true, "foreign_browser": true, "temporarily_unavailable": true,
}

// maxUILocales bounds the ui_locales read for the error page's language:
// the request it answers may be the one refused for its size.
const maxUILocales = 64

// unavailablePage says that the provider cannot answer now, as a 503
// with Retry-After: it knows nothing of the client or request (its store
// is down), so it may neither refuse it nor redirect.
func (s *Server) unavailablePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	s.errorPage(w, r, http.StatusServiceUnavailable, "temporarily_unavailable")
}

// errorPage shows a protocol error that must not be redirected to the RP,
// in the pages' frame and the resident's language (their pick, else the
// request's ui_locales, else the browser's), with the language switch and
// a way on to the account page. It never has a Location header.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, code string) {
	if !pageCodes[code] {
		code = "bad_request"
	}
	var locales []string
	if v := r.URL.Query().Get("ui_locales"); len(v) <= maxUILocales {
		locales = strings.Fields(v)
	}
	w.Header().Del("Location")
	web.NoStore(w.Header())
	s.web.ErrorPage(w, r, s.web.Lang(w, r, locales), status, code)
	s.log.InfoContext(r.Context(), "authorization error page", "code", code, "status", status)
}
