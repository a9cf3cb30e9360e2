package notify

import (
	"net/mail"
	"strings"
	"unicode/utf8"
)

// MaxAddressLen is RFC 5321's limit on a forward path.
const MaxAddressLen = 254

// ErrAddress is any address Watashi will not send to.
var ErrAddress error = &refusal{msg: "notify: not a usable mail address", code: "bad_address"}

// refusal is an error the resident caused and can fix. Its code names it
// to pages that do not import this package (the account page), through
// the one-method interface they declare.
type refusal struct{ msg, code string }

func (e *refusal) Error() string { return e.msg }

// NoticeCode is the refusal's name on the account page.
func (e *refusal) NoticeCode() string { return e.code }

// ParseAddress accepts one bare address (local@domain) and returns it as
// it will be written in the To header. Display names, comments, groups,
// several addresses and anything with a control character are refused:
// the address goes into a header and an SMTP command, where a line break
// would let its owner write headers or commands of their own.
func ParseAddress(s string) (string, error) {
	if s == "" || len(s) > MaxAddressLen || !utf8.ValidString(s) {
		return "", ErrAddress
	}
	for _, r := range s {
		if r < 0x21 || r == 0x7f || r == '<' || r == '>' || r == '"' || r == '(' || r == ')' || r == ',' || r == ';' || r == '\\' {
			return "", ErrAddress
		}
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", ErrAddress
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || !strings.Contains(domain, ".") ||
		strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.HasPrefix(domain, "[") {
		return "", ErrAddress
	}
	return s, nil
}
