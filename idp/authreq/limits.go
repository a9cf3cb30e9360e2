package authreq

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/watashi-id/watashi/idp/internal/ids"
)

// idLen is the length of the IDs Create gives.
var idLen = len(ids.Long())

// Anyone may call /authorize, and an accepted request is kept in the
// store until it expires. These limits bound what one request can make
// the store hold: a request over a limit is refused and stores nothing.
// docs/operator-guide.md turns them into the most bytes one client
// address can make the store hold.
const (
	// MaxRequestBytes bounds a whole /authorize request: the query
	// string of a GET, the form body of a POST. It is checked before the
	// parameters are parsed and bounds the parsing; what is kept is
	// bounded by the caps below.
	MaxRequestBytes = 32 << 10
	// MaxRecordBytes bounds a stored request as encoded, whatever it
	// holds; Create and Update refuse a larger one. Every
	// parameter that is kept is capped below, but JSON escaping can
	// make a value grow up to sixfold ("<" is written \u003c), so the
	// record is checked as it will be written.
	MaxRecordBytes = 8 << 10
	// growthBytes is kept free at creation for what the flow adds later
	// (the binding, the account, subject, acr, amr, times, the granted
	// claims, the code's hash), so that a request accepted at /authorize
	// never fails its sign-in for want of room.
	growthBytes = 1 << 10

	// CreatePerAddress auth requests may be created per client address
	// (an IPv6 /64) and CreateWindow. A resident's sign-in takes one; an
	// RP's silent re-authentication (prompt=none) one more every few
	// minutes. The margin is for residents sharing an address (a
	// carrier's NAT, an office).
	CreatePerAddress = 60
	CreateWindow     = time.Minute
)

// paramLimits are the longest value, in bytes, each /authorize parameter
// Watashi reads may have. Parameters it does not read are bounded by
// MaxRequestBytes and never stored.
var paramLimits = map[string]int{
	"client_id":             256,
	"redirect_uri":          2048,
	"response_type":         64,
	"response_mode":         32,
	"scope":                 1024,
	"state":                 2048,
	"nonce":                 512,
	"code_challenge":        128, // an S256 challenge is 43
	"code_challenge_method": 16,
	"prompt":                64,
	"max_age":               16,
	"display":               32,
	"ui_locales":            256,
	"claims_locales":        256,
	"acr_values":            512,
	"login_hint":            256,
	"id_token_hint":         4096,
	"claims":                4096,
	// Refused whatever they hold, but only after parsing: cap them so
	// that the refusal stays cheap.
	"request":     4096,
	"request_uri": 2048,
}

// ParamLimits lists the length cap of every parameter /authorize reads.
func ParamLimits() map[string]int {
	m := make(map[string]int, len(paramLimits))
	for k, v := range paramLimits {
		m[k] = v
	}
	return m
}

// LimitError is a request over one of the limits. Param is "" when the
// request as a whole is too large.
type LimitError struct {
	Param    string
	Max      int
	Repeated bool
}

func (e *LimitError) Error() string {
	switch {
	case e.Repeated:
		return fmt.Sprintf("the parameter %s is given more than once", e.Param)
	case e.Param == "":
		return fmt.Sprintf("the request is larger than %d bytes", e.Max)
	}
	return fmt.Sprintf("the parameter %s is longer than %d bytes", e.Param, e.Max)
}

// BeforeClient reports whether the error concerns what decides where
// errors may be sent (client_id, redirect_uri, the request as a whole):
// such a refusal is a page of the provider's, never a redirect.
func (e *LimitError) BeforeClient() bool {
	return e.Param == "" || e.Param == "client_id" || e.Param == "redirect_uri"
}

// CheckParams checks an /authorize request's parameters against the
// caps: each one Watashi reads at most once (RFC 6749 §3.1) and no
// longer than its limit. client_id and redirect_uri are checked first,
// so that the caller can tell whether it may redirect the error.
func CheckParams(form url.Values) *LimitError {
	names := []string{"client_id", "redirect_uri"}
	var rest []string
	for name := range form {
		if _, ok := paramLimits[name]; ok && !slices.Contains(names, name) {
			rest = append(rest, name)
		}
	}
	slices.Sort(rest)
	for _, name := range append(names, rest...) {
		vs, max := form[name], paramLimits[name]
		if len(vs) > 1 {
			return &LimitError{Param: name, Max: max, Repeated: true}
		}
		if len(vs) == 1 && len(vs[0]) > max {
			return &LimitError{Param: name, Max: max}
		}
	}
	return nil
}

// CheckRequestSize refuses a query string or form body over
// MaxRequestBytes.
func CheckRequestSize(n int) *LimitError {
	if n > MaxRequestBytes {
		return &LimitError{Max: MaxRequestBytes}
	}
	return nil
}

// ErrTooLarge is returned when a record would exceed MaxRecordBytes.
var ErrTooLarge = errors.New("authreq: the request is too large to keep")

// CheckSize reports ErrTooLarge when a new request ar would not leave
// room in MaxRecordBytes for what its sign-in adds, so that a caller can
// refuse it before it charges a rate limit; Create checks again.
func CheckSize(ar *AuthRequest) error {
	// As Create will write it: with an ID, a creation time and, when
	// /authorize binds the browser, a binding.
	cp := *ar
	if cp.ID == "" {
		cp.ID = strings.Repeat("x", idLen)
	}
	if cp.Binding == "" {
		cp.Binding = strings.Repeat("x", sha256.Size*2)
	}
	if cp.CreatedAt.IsZero() {
		cp.CreatedAt = time.Date(2000, 1, 1, 0, 0, 0, 123456789, time.UTC) // the longest form
	}
	b, err := json.Marshal(&cp)
	if err != nil {
		return err
	}
	return checkNew(b)
}

// checkNew refuses a new record that leaves less than growthBytes free.
func checkNew(b []byte) error {
	if len(b) > MaxRecordBytes-growthBytes {
		return fmt.Errorf("%w (%d bytes, at most %d for a new request)", ErrTooLarge, len(b), MaxRecordBytes-growthBytes)
	}
	return nil
}

// checkRecord refuses an encoded record over MaxRecordBytes.
func checkRecord(b []byte) error {
	if len(b) > MaxRecordBytes {
		return fmt.Errorf("%w (%d bytes, at most %d)", ErrTooLarge, len(b), MaxRecordBytes)
	}
	return nil
}
