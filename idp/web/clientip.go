package web

import (
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP is the address rate limits are keyed on: RemoteAddr, unless
// that is a trusted proxy, in which case ClientIPHeader is read from the
// right, skipping trusted hops; the first untrusted address is the
// client. An unparsable entry stops the walk at the last hop we trust to
// have written it, so a client cannot pick its own rate-limit key by
// sending the header itself.
func (k *Kit) ClientIP(r *http.Request) netip.Addr {
	remote := ParseHostAddr(r.RemoteAddr)
	if !remote.IsValid() || !k.trustedProxy(remote) {
		return remote
	}
	var hops []string
	for _, v := range r.Header.Values(k.ipHeader) {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := remote
	for i := len(hops) - 1; i >= 0; i-- {
		a := ParseHostAddr(strings.TrimSpace(hops[i]))
		if !a.IsValid() {
			return client
		}
		client = a
		if !k.trustedProxy(a) {
			return a
		}
	}
	return client
}

func (k *Kit) trustedProxy(a netip.Addr) bool {
	for _, p := range k.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseHostAddr accepts "ip", "ip:port" and "[ipv6]:port".
func ParseHostAddr(v string) netip.Addr {
	if ap, err := netip.ParseAddrPort(v); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// RateKey is the client as rate limits count it: its IPv4 address, or
// the /64 of its IPv6 address. One IPv6 subscriber is routed a whole /64
// (often more) and can pick any address in it, so counting addresses
// would give one client 2^64 budgets.
func (k *Kit) RateKey(r *http.Request) string {
	a := k.ClientIP(r)
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.String()
		}
	}
	return a.String()
}
