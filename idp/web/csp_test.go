package web

import (
	"strings"
	"testing"
)

func TestFormActionSources(t *testing.T) {
	tests := []struct {
		name string
		uris []string
		want []string
	}{
		{"none", nil, nil},
		{"https origin, path dropped", []string{"https://RP.example.com/cb?x=1"}, []string{"https://rp.example.com"}},
		{"port kept", []string{"https://rp.example.com:8443/cb"}, []string{"https://rp.example.com:8443"}},
		{"dedup", []string{"https://a.example/1", "https://a.example/2"}, []string{"https://a.example"}},
		{"sorted", []string{"https://b.example/", "https://a.example/", "app.example:/cb"}, []string{"app.example:", "https://a.example", "https://b.example"}},
		{"loopback any port", []string{"http://localhost:1234/cb"}, []string{"http://localhost:*"}},
		{"ipv4 loopback", []string{"http://127.0.0.1/cb"}, []string{"http://127.0.0.1:*"}},
		{"ipv6 loopback", []string{"http://[::1]:5000/cb"}, []string{"http://[::1]:*"}},
		{"https loopback kept exact", []string{"https://localhost:8443/cb"}, []string{"https://localhost:8443"}},
		{"http non-loopback kept exact", []string{"http://rp.example.com/cb"}, []string{"http://rp.example.com"}},
		{"private-use scheme", []string{"jp.example.app:/cb"}, []string{"jp.example.app:"}},
		{"private-use scheme lower-cased", []string{"JP.Example.App:/cb"}, []string{"jp.example.app:"}},
		{"quote injection", []string{"https://a.example'unsafe-inline'/cb"}, nil},
		{"semicolon injection", []string{"https://a.example;script-src*/cb"}, nil},
		{"comma in host", []string{"https://a.example,b.example/cb"}, nil},
		{"userinfo", []string{"https://user@a.example/cb"}, []string{"https://a.example"}},
		{"no host", []string{"https:///cb"}, nil},
		{"relative", []string{"/cb"}, nil},
		{"garbage", []string{"%zz"}, nil},
		{"bad entries do not hide good ones", []string{"%zz", "https://a.example/cb", "/cb"}, []string{"https://a.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FormActionSources(tt.uris)
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for _, src := range got {
				if strings.ContainsAny(src, " ;,'\"") {
					t.Fatalf("source %q could change the policy", src)
				}
			}
		})
	}
}

func TestIsLoopbackHost(t *testing.T) {
	for _, tt := range []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"LocalHost", true},
		{"127.0.0.1", true},
		{"127.9.9.9", true},
		{"::1", true},
		{"[::1]", false}, // a host name, not a bracketed literal
		{"localhost.example", false},
		{"10.0.0.1", false},
		{"", false},
	} {
		if got := IsLoopbackHost(tt.host); got != tt.want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}
