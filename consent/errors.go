package consent

import (
	"errors"
	"fmt"
)

// Code is the stable class of a consent failure. Callers map it to a
// protocol answer (invalid_request to the RP, a 400 page to the resident,
// a re-proofing prompt), so values are never renamed, only added.
type Code string

// Codes a consent operation can fail with.
const (
	// CodeInvalidRequest: the RP's `claims` parameter is malformed. The
	// provider answers invalid_request (OIDC Core §5.5, IDA §6).
	CodeInvalidRequest Code = "invalid_request"
	// CodeInvalidChoice: a consent-form submission names a claim or an
	// alternative the screen did not offer. The screen never produces
	// one, so it is a stale or forged form: refuse it and change nothing.
	CodeInvalidChoice Code = "invalid_choice"
	// CodeEssentialRefused: a submission leaves out an essential claim.
	// The screen locks essential claims, so this is also a forged or stale
	// form; it is an error rather than a silent "deny" so that a replayed
	// form cannot end someone's sign-in with access_denied. Declining is
	// the screen's explicit deny button.
	CodeEssentialRefused Code = "essential_refused"
	// CodeStaleFacts: the certificate the facts came from has since been
	// revoked (address or name change, renewal); the resident must prove
	// again before anything is released.
	CodeStaleFacts Code = "stale_facts"
	// CodeNoFacts: claims were granted but the account holds no verified
	// facts (never proofed); the resident must prove first.
	CodeNoFacts Code = "no_facts"
	// CodeInvalidKey: an empty or malformed account or client ID reached
	// the store, which would otherwise write an ambiguous key.
	CodeInvalidKey Code = "invalid_key"
	// CodeCorrupt: a stored grant does not decode.
	CodeCorrupt Code = "corrupt_record"
	// CodeContention: a grant kept changing under concurrent updates.
	CodeContention Code = "contention"
)

// Error carries a Code for callers and a detail for operators. Details
// name claims and structure, never claim values: they end up in logs.
type Error struct {
	Code   Code
	Detail string
	Err    error
}

func (e *Error) Error() string {
	msg := "consent: " + string(e.Code)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrStaleFacts) (or any detail-free *Error) match
// every *Error of the same Code, whatever its detail.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Detail == "" && t.Err == nil && t.Code == e.Code
}

// Sentinels for errors.Is. ErrStaleFacts and ErrNoFacts mean "ask the
// resident to prove their identity again", not "fail the RP".
var (
	ErrStaleFacts       = &Error{Code: CodeStaleFacts}
	ErrNoFacts          = &Error{Code: CodeNoFacts}
	ErrInvalidRequest   = &Error{Code: CodeInvalidRequest}
	ErrInvalidChoice    = &Error{Code: CodeInvalidChoice}
	ErrEssentialRefused = &Error{Code: CodeEssentialRefused}
)

func fail(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Detail: fmt.Sprintf(format, args...)}
}

// CodeOf maps any error to a Code: "" for nil, the Code of the first
// *Error in the chain, and "" for errors this package did not make
// (storage failures), which callers treat as server errors.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
