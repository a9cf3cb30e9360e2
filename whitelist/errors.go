package whitelist

import (
	"errors"
	"fmt"
	"net/http"
)

// Enforcement errors. The provider turns each into a refusal: an error
// page at authorize (never a redirect, since the redirect URI of such a
// client is not to be trusted) and invalid_client elsewhere. They are
// distinct so that the page and the logs can say why.
var (
	ErrUnknownClient = errors.New("whitelist: unknown client")
	ErrPending       = errors.New("whitelist: client is pending approval")
	ErrSuspended     = errors.New("whitelist: client is suspended")
	ErrRevoked       = errors.New("whitelist: client is revoked")
	// ErrTierUnavailable means the client's tier was removed from the
	// catalogue: the client is refused rather than given a guessed tier.
	ErrTierUnavailable = errors.New("whitelist: client's tier is not configured")
)

// Operator and token errors.
var (
	// ErrInvalidTransition is returned (wrapped, with the states) for a
	// status change the lifecycle does not allow; nothing is changed.
	ErrInvalidTransition = errors.New("whitelist: invalid status transition")
	// ErrConflict means concurrent writers kept changing the record.
	ErrConflict = errors.New("whitelist: concurrent modification, try again")
	// ErrExists refuses to reuse a client ID: pairwise subjects, tokens
	// and the audit log of the old client would otherwise be confused
	// with the new one's.
	ErrExists = errors.New("whitelist: client ID is or was in use")
	// ErrNoSecret is returned by secret rotation for a client that does
	// not authenticate with a secret.
	ErrNoSecret = errors.New("whitelist: client does not use client_secret_basic")
	// ErrPartial means a change was saved but its audit entry or its
	// propagation to other nodes failed; the operator must know, and
	// other nodes catch up within their cache TTL.
	ErrPartial = errors.New("whitelist: change saved, but its audit entry or notification failed")

	ErrUnknownToken = errors.New("whitelist: unknown initial access token")
	ErrTokenExpired = errors.New("whitelist: initial access token expired")
	ErrTokenUsed    = errors.New("whitelist: one-time initial access token already used")
	ErrTokenRevoked = errors.New("whitelist: initial access token revoked")
)

// Error codes of RFC 7591 §3.2.2 and RFC 6750 §3.1 that registration
// answers with.
const (
	CodeInvalidRedirectURI          = "invalid_redirect_uri"
	CodeInvalidClientMetadata       = "invalid_client_metadata"
	CodeInvalidSoftwareStatement    = "invalid_software_statement"
	CodeUnapprovedSoftwareStatement = "unapproved_software_statement"
	CodeInvalidToken                = "invalid_token"
	CodeInvalidRequest              = "invalid_request"
	CodeServerError                 = "server_error"
)

// Error is a registration or validation failure. Description is written
// for the integrator (what to fix); Err is the internal cause, which is
// logged but never sent. Descriptions quote only what the integrator sent
// about its own client, never secrets.
type Error struct {
	Code        string
	Description string
	// Field is the metadata field at fault, when there is one.
	Field string
	// Status is the HTTP status to answer with (400 when zero).
	Status int
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s (%v)", e.Code, e.Description, e.Err)
	}
	return e.Code + ": " + e.Description
}

func (e *Error) Unwrap() error { return e.Err }

func (e *Error) httpStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	return http.StatusBadRequest
}

// CodeOf returns the RFC 7591 code of err, or "" when err is not an
// *Error.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func metaErr(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalidClientMetadata, Field: field, Description: field + ": " + fmt.Sprintf(format, args...)}
}

func redirectErr(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalidRedirectURI, Field: field, Description: field + ": " + fmt.Sprintf(format, args...)}
}

// quote shortens what an integrator sent before it is echoed back, so
// that an error message stays readable and bounded.
func quote(s string) string {
	const max = 100
	if len(s) > max {
		r := []rune(s)
		if len(r) > max {
			s = string(r[:max]) + "…"
		}
	}
	return fmt.Sprintf("%q", s)
}

// inputErr is an operator's mistake (CLI flag, admin API field).
func inputErr(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidRequest, Description: fmt.Sprintf(format, args...)}
}
