package authreq

import (
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
)

// The flow's pages. Each handler package serves its own; these are the
// addresses they send the browser to.
const (
	LoginPath    = "/login"
	ConsentPath  = "/consent"
	CallbackPath = "/authorize/callback"
)

// The login page's query contract: another page that sends the resident
// to prove their identity says so, and why.
const (
	PurposeProofing  = "proofing"
	NoticeStaleFacts = "stale_facts" // the facts' certificate was revoked: prove again
	NoticeNoFacts    = "no_facts"    // the account has no verified facts yet
)

// LoginURL is the login page of request id, with extra query pairs.
func LoginURL(id string, extra ...string) string {
	q := url.Values{"id": {id}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return LoginPath + "?" + q.Encode()
}

// ConsentURL is the consent step of request id.
func ConsentURL(id string) string { return ConsentPath + "?" + url.Values{"id": {id}}.Encode() }

// CallbackURL is where a completed request goes: the provider's callback,
// which mints the code.
func CallbackURL(issuer, id string) string {
	return strings.TrimSuffix(issuer, "/") + CallbackPath + "?" + url.Values{"id": {id}}.Encode()
}

// AfterSignIn is where the browser goes once signed in: the consent step,
// or the provider's own page that asked for the sign-in.
func (a *AuthRequest) AfterSignIn() string {
	if a.Return != "" {
		return a.Return
	}
	return ConsentURL(a.ID)
}

// bindingCookieLen is the length of binding cookie values (32 random
// bytes, base64url).
const bindingCookieLen = 43

// BrowserBinding returns the hash of the browser's binding cookie, or "".
func BrowserBinding(k *web.Kit, r *http.Request) string {
	c, err := r.Cookie(k.CookieName("bind"))
	if err != nil || len(c.Value) != bindingCookieLen {
		return ""
	}
	return ids.Hash(c.Value)
}

// EnsureBinding returns the hash of the browser's binding cookie, setting
// a new cookie when the browser has none.
func EnsureBinding(k *web.Kit, w http.ResponseWriter, r *http.Request) string {
	if h := BrowserBinding(k, r); h != "" {
		return h
	}
	v := ids.Long()
	k.SetCookie(w, k.CookieName("bind"), v, 0)
	return ids.Hash(v)
}

// BoundTo reports whether the request is bound to the browser whose
// binding hash is h.
func (a *AuthRequest) BoundTo(h string) bool {
	return h != "" && a.Binding != "" && subtle.ConstantTimeCompare([]byte(a.Binding), []byte(h)) == 1
}

// Fail ends the request with an OAuth error sent to the RP
// (login_required, access_denied, ...) and deletes it: it cannot be
// resumed after the RP was told it failed. A request of the provider's
// own pages has no RP: its browser goes back to the page that asked.
func (r *Repo) Fail(w http.ResponseWriter, req *http.Request, ar *AuthRequest, e *oidc.Error, log *slog.Logger) {
	log.InfoContext(req.Context(), "authorization ended with an error to the relying party", "client", ar.ClientID, "error", string(e.ErrorType))
	if err := r.Delete(req.Context(), ar.ID); err != nil {
		log.WarnContext(req.Context(), "auth request not deleted after error", "error", err)
	}
	if ar.RedirectURI == "" {
		http.Redirect(w, req, ar.AfterSignIn(), http.StatusSeeOther)
		return
	}
	http.Redirect(w, req, ErrorURL(r.issuer, ar.RedirectURI, ar.State, e), http.StatusFound)
}

// ResponseURL is an authorization response (RFC 6749 §4.1.2, §4.1.2.1)
// at a registered redirect URI: params, the RP's state, and iss, which
// names the issuer in every response, success or error (RFC 9207), so that
// an RP talking to several providers cannot be sent another's code. The
// redirect URI's own query is kept.
func ResponseURL(issuer, redirectURI, state string, params url.Values) (string, error) {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return "", err
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if state != "" {
		q.Set("state", state)
	}
	q.Set("iss", issuer)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// ErrorURL is the authorization error response (RFC 6749 §4.1.2.1) at a
// registered redirect URI. A description goes as written: callers pass
// texts meant for the RP, never an internal error's.
func ErrorURL(issuer, redirectURI, state string, e *oidc.Error) string {
	q := url.Values{"error": {string(e.ErrorType)}}
	if e.Description != "" {
		q.Set("error_description", e.Description)
	}
	u, err := ResponseURL(issuer, redirectURI, state, q)
	if err != nil {
		return redirectURI
	}
	return u
}

// LoadForPage loads the request a page works on and shows the error page
// when it cannot be used: missing or expired, or already completed.
func (r *Repo) LoadForPage(w http.ResponseWriter, req *http.Request, k *web.Kit, id string) (*AuthRequest, bool) {
	ar, err := r.Load(req.Context(), id)
	if err != nil {
		lang := k.Lang(w, req, nil)
		if errors.Is(err, store.ErrNotFound) {
			k.ErrorPage(w, req, lang, http.StatusBadRequest, "unknown_request")
		} else {
			k.Logger().ErrorContext(req.Context(), "load auth request", "error", err)
			k.ErrorPage(w, req, lang, http.StatusInternalServerError, "server_error")
		}
		return nil, false
	}
	if ar.Completed {
		k.ErrorPage(w, req, k.Lang(w, req, ar.UILocales), http.StatusBadRequest, "already_completed")
		return nil, false
	}
	return ar, true
}
