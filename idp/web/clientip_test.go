package web

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		name   string
		remote string
		header []string
		hdr    string
		want   string
	}{
		{"direct", "203.0.113.5:4444", nil, "", "203.0.113.5"},
		{"direct ignores header", "203.0.113.5:4444", []string{"1.2.3.4"}, "", "203.0.113.5"},
		{"trusted proxy", "10.1.1.1:80", []string{"198.51.100.7"}, "", "198.51.100.7"},
		{"client-supplied prefix ignored", "10.1.1.1:80", []string{"1.1.1.1, 198.51.100.7"}, "", "198.51.100.7"},
		{"chain of proxies", "10.1.1.1:80", []string{"198.51.100.7, 10.2.2.2"}, "", "198.51.100.7"},
		{"several header lines", "10.1.1.1:80", []string{"1.1.1.1", "198.51.100.7"}, "", "198.51.100.7"},
		{"all trusted", "10.1.1.1:80", []string{"10.3.3.3, 10.2.2.2"}, "", "10.3.3.3"},
		{"garbage stops walk", "10.1.1.1:80", []string{"198.51.100.7, junk, 10.2.2.2"}, "", "10.2.2.2"},
		{"garbage only", "10.1.1.1:80", []string{"junk"}, "", "10.1.1.1"},
		{"empty entry stops walk", "10.1.1.1:80", []string{"198.51.100.7,,"}, "", "10.1.1.1"},
		{"no header", "10.1.1.1:80", nil, "", "10.1.1.1"},
		{"entry with port", "10.1.1.1:80", []string{"198.51.100.7:5555"}, "", "198.51.100.7"},
		{"ipv6 entry", "[fd00::1]:80", []string{"[2001:db8::9]:443"}, "", "2001:db8::9"},
		{"bare ipv6 entry", "[fd00::1]:80", []string{"2001:db8::9"}, "", "2001:db8::9"},
		{"mapped ipv4 remote", "[::ffff:10.1.1.1]:80", []string{"198.51.100.7"}, "", "198.51.100.7"},
		{"mapped ipv4 entry", "10.1.1.1:80", []string{"::ffff:198.51.100.7"}, "", "198.51.100.7"},
		{"custom header", "10.1.1.1:80", []string{"198.51.100.9"}, "X-Real-IP", "198.51.100.9"},
		{"custom header: X-Forwarded-For ignored", "10.1.1.1:80", nil, "X-Real-IP", "10.1.1.1"},
		{"unparsable remote", "pipe", []string{"198.51.100.7"}, "", "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, _, _ := newKit(t, Options{TrustedProxies: trusted, ClientIPHeader: tt.hdr})
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = tt.remote
			name := tt.hdr
			if name == "" {
				name = "X-Forwarded-For"
			}
			for _, v := range tt.header {
				req.Header.Add(name, v)
			}
			if tt.hdr != "" {
				req.Header.Set("X-Forwarded-For", "1.2.3.4")
			}
			if got := k.ClientIP(req).String(); got != tt.want {
				t.Fatalf("ClientIP = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestParseHostAddr(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"198.51.100.7", "198.51.100.7"},
		{"198.51.100.7:80", "198.51.100.7"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"2001:db8::1", "2001:db8::1"},
		{"[::ffff:10.0.0.1]:1", "10.0.0.1"},
		{"", "invalid IP"},
		{"host.example:80", "invalid IP"},
		{"198.51.100.7:http", "invalid IP"},
	} {
		if got := ParseHostAddr(tt.in).String(); got != tt.want {
			t.Errorf("ParseHostAddr(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func FuzzClientIP(f *testing.F) {
	f.Add("10.1.1.1:80", "198.51.100.7, 10.2.2.2")
	f.Add("[fd00::1]:1", "[2001:db8::1]:443,,, ,")
	f.Add("x", "[")
	k, _, _ := newKit(f, Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}})
	f.Fuzz(func(t *testing.T, remote, header string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = remote
		req.Header.Set("X-Forwarded-For", header)
		a := k.ClientIP(req)
		if !a.IsValid() {
			if ParseHostAddr(remote).IsValid() {
				t.Fatalf("no address although RemoteAddr %q parses", remote)
			}
			return
		}
		if a.Is4In6() {
			t.Fatalf("ClientIP %s not unmapped: one client, two rate-limit keys", a)
		}
		// An address we return must come from the input.
		if a == ParseHostAddr(remote) {
			return
		}
		for _, hop := range strings.Split(header, ",") {
			if a == ParseHostAddr(strings.TrimSpace(hop)) {
				return
			}
		}
		t.Fatalf("ClientIP %s is neither RemoteAddr nor a header hop", a)
	})
}

// TestRateKey: an IPv6 client is counted by its /64, so that it cannot
// multiply its rate limits by picking addresses; IPv4 by the address.
func TestRateKey(t *testing.T) {
	k, _, _ := newKit(t, Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	for _, tt := range []struct{ remote, xff, want string }{
		{"203.0.113.5:1", "", "203.0.113.5"},
		{"[2001:db8:1:2:aaaa::1]:443", "", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff:ffff:ffff:ffff]:443", "", "2001:db8:1:2::/64"},
		{"[2001:db8:1:3::1]:443", "", "2001:db8:1:3::/64"},
		{"[::ffff:198.51.100.7]:80", "", "198.51.100.7"},
		{"10.1.1.1:80", "2001:db8:9:9:1::7", "2001:db8:9:9::/64"},
		{"pipe", "", "invalid IP"},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = tt.remote
		if tt.xff != "" {
			req.Header.Set("X-Forwarded-For", tt.xff)
		}
		if got := k.RateKey(req); got != tt.want {
			t.Errorf("%s (%s): RateKey = %s, want %s", tt.remote, tt.xff, got, tt.want)
		}
	}
}
