package pkibridge

import (
	"errors"
	"fmt"
)

// Reason is the stable, machine-readable class of a verification failure.
// It is part of the CLI contract (`watashi pki verify` prints it) and of the
// wallet protocol, so values are never renamed, only added.
type Reason string

// Reasons a signature or certificate can be refused for.
const (
	ReasonBadSignature      Reason = "bad_signature"      // signature does not verify, or covers other bytes
	ReasonUntrusted         Reason = "untrusted"          // no chain to a configured anchor
	ReasonExpired           Reason = "expired"            // a certificate in the chain is past notAfter
	ReasonNotYetValid       Reason = "not_yet_valid"      // a certificate in the chain is before notBefore
	ReasonRevoked           Reason = "revoked"            // CRL or OCSP says revoked
	ReasonRevocationUnknown Reason = "revocation_unknown" // no usable revocation answer in require mode
	ReasonKeyUsage          Reason = "key_usage"          // wrong certificate profile: usage, policy, CA as leaf
	ReasonMalformed         Reason = "malformed"          // cannot be parsed, or violates the envelope rules
	ReasonWeakKey           Reason = "weak_key"           // RSA below the configured minimum, unsupported key type
	ReasonWeakAlgorithm     Reason = "weak_algorithm"     // SHA-1 (unless allowed), `none`, HMAC, unknown algorithms
	ReasonAttributes        Reason = "attributes"         // the basic four facts are missing or malformed
)

// Error carries a Reason for callers and a detail for operators. The detail
// never contains personal attributes: it describes structure, not values.
type Error struct {
	Reason Reason
	Detail string
	Err    error
}

func (e *Error) Error() string {
	msg := string(e.Reason)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Fail builds an *Error with a formatted detail.
func Fail(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Wrap builds an *Error around a cause.
func Wrap(r Reason, err error, format string, args ...any) *Error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...), Err: err}
}

// ReasonOf maps any error to a Reason: "" for nil, the Reason of the first
// *Error in the chain, and ReasonMalformed for anything else, because an
// error we did not classify came from parsing untrusted input.
func ReasonOf(err error) Reason {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonMalformed
}
