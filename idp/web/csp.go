package web

import (
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// contentSecurityPolicy builds the one policy every public page gets. No
// inline script or style is allowed anywhere, so an injected tag does
// nothing; frame-ancestors 'none' stops clickjacking of the consent page.
//
// form-action cannot be just 'self': Chromium applies it to every
// redirect that follows a form submission, and the consent (and deny)
// POST ends in a redirect to the relying party's redirect_uri through
// /authorize/callback. The registered redirect origins are therefore
// listed too; they are the only places our forms may lead.
func contentSecurityPolicy(formTargets []string) string {
	formAction := "form-action 'self'"
	if len(formTargets) > 0 {
		formAction += " " + strings.Join(formTargets, " ")
	}
	return strings.Join([]string{
		"default-src 'self'",
		"img-src 'self' data:",
		"style-src 'self'",
		"script-src 'self'",
		"connect-src 'self'",
		"object-src 'none'",
		"base-uri 'none'",
		"frame-ancestors 'none'",
		formAction,
	}, "; ")
}

// FormActionSources lists the CSP sources for redirect and post-logout
// URIs: exact origins for web clients, any port on loopback for native
// clients (RFC 8252 §7.3 lets them pick a port at run time), and the bare
// scheme for private-use URI schemes. Anything that could not be written
// safely into a header is left out.
func FormActionSources(uris []string) []string {
	var out []string
	for _, raw := range uris {
		if src := cspSource(raw); src != "" && !slices.Contains(out, src) {
			out = append(out, src)
		}
	}
	slices.Sort(out)
	return out
}

func cspSource(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || !cspSafe(u.Scheme) {
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "http", "https":
		host := u.Hostname()
		if host == "" || !cspSafe(u.Host) {
			return ""
		}
		if scheme == "http" && IsLoopbackHost(host) {
			if strings.Contains(host, ":") {
				host = "[" + host + "]"
			}
			return "http://" + host + ":*"
		}
		return scheme + "://" + strings.ToLower(u.Host)
	default:
		return scheme + ":"
	}
}

// cspSafe admits the characters of schemes and hosts; anything else
// (spaces, quotes, semicolons, commas) could change the policy's meaning.
func cspSafe(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune(".-+:[]", r):
		default:
			return false
		}
	}
	return s != ""
}

// IsLoopbackHost reports localhost and loopback addresses.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
