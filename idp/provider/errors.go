package provider

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/web"
)

// An API endpoint's answer to a failure is one of two kinds. An OAuth
// error (invalid_grant, invalid_client, ...) is a statement about the
// request and goes out as it is. Anything else is the provider failing
// to work (the store is down, a record cannot be read): it says nothing
// about the request, so the client hears temporarily_unavailable with a
// 503 and Retry-After, and the cause goes to the log only. Code paths
// that turn a store error into an OAuth error would make an outage look
// like a bad code or a dead token; they must not exist.

// errUnavailable marks a failure to reach the store where the code would
// otherwise read it as an answer (inside the library's verifiers, which
// turn every error into a refusal).
var errUnavailable = errors.New("provider: the store is unavailable")

// retryAfter is the Retry-After of a 503 (seconds): a store that failed
// over is typically back within this.
const retryAfter = 5

// temporarilyUnavailable is RFC 6749 §4.1.2.1's error code for a server
// that cannot serve now; the API endpoints use it with a 503.
const temporarilyUnavailable = "temporarily_unavailable"

// errTemporarilyUnavailable is what a client hears about an outage.
func errTemporarilyUnavailable() *oidc.Error {
	return &oidc.Error{ErrorType: temporarilyUnavailable, Description: "the service is temporarily unavailable; try again shortly"}
}

// apiError is a failure as an API endpoint answers it.
type apiError struct {
	status int
	err    *oidc.Error
}

// classify maps err to its answer and logs what the answer leaves out.
// Only descriptions the provider or the library wrote for the client
// leave: a parent error never does (oidc.Error does not marshal it).
func (e apiErrors) classify(ctx context.Context, err error) apiError {
	var oe *oidc.Error
	if temporary(err) || !errors.As(err, &oe) {
		e.log.ErrorContext(ctx, "request failed; answered temporarily_unavailable", "error", err)
		return apiError{status: http.StatusServiceUnavailable, err: errTemporarilyUnavailable()}
	}
	st := http.StatusBadRequest
	switch oe.ErrorType {
	case oidc.InvalidClient:
		st = http.StatusUnauthorized
	case oidc.ServerError:
		st = http.StatusInternalServerError
		e.log.ErrorContext(ctx, "request failed", "error", err)
	case temporarilyUnavailable:
		st = http.StatusServiceUnavailable
	}
	if st < http.StatusInternalServerError {
		e.log.InfoContext(ctx, "request refused", "error", string(oe.ErrorType), "status", st)
	}
	return apiError{status: st, err: clean(oe)}
}

// temporary reports a failure that says nothing about the request: not
// an OAuth error, or an outage however wrapped.
func temporary(err error) bool {
	var oe *oidc.Error
	return !errors.As(err, &oe) || errors.Is(err, errUnavailable) || errors.Is(err, clients.ErrUnavailable)
}

// clean is a copy of e with only what the client may read.
func clean(e *oidc.Error) *oidc.Error {
	return &oidc.Error{ErrorType: e.ErrorType, Description: e.Description}
}

// writeAPIError answers a back-channel endpoint's failure as RFC 6749
// §5.2 JSON. A 401 names the authentication scheme the endpoint takes
// (challenge, RFC 7235 §3.1); a 503 says when to try again.
func (e apiErrors) write(w http.ResponseWriter, r *http.Request, err error, challenge string) {
	ae := e.classify(r.Context(), err)
	h := w.Header()
	switch ae.status {
	case http.StatusUnauthorized:
		if challenge != "" {
			h.Set("WWW-Authenticate", challenge)
		}
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	web.WriteJSON(w, ae.status, ae.err)
}

// basicChallenge is the token, introspection and revocation endpoints'
// 401 challenge: they take HTTP Basic (RFC 6749 §2.3.1).
func (e apiErrors) basicChallenge() string { return `Basic realm="` + e.realm + `"` }

// apiErrors answers the failures of the endpoints relying parties call
// directly: the status, the challenge and the JSON the RP may read, with
// the cause in the log alone.
type apiErrors struct {
	log *slog.Logger
	// realm names the protection space: the issuer, which is a URL and
	// so never holds a quote.
	realm string
}

func newAPIErrors(log *slog.Logger, issuer string) apiErrors {
	return apiErrors{log: log, realm: strings.ReplaceAll(issuer, `"`, "")}
}
