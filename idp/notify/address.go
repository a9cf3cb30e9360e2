package notify

import (
	"errors"
	"net/mail"
	"strings"
	"unicode/utf8"
)

// MaxAddressLen is RFC 5321's limit on a forward path.
const MaxAddressLen = 254

// ErrAddress is any address Watashi will not send to.
var ErrAddress = errors.New("notify: not a usable mail address")

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
