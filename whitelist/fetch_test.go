package whitelist_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/whitelist"
	"github.com/watashi-id/watashi/whitelist/whitelisttest"
)

// TestDenied: every special-purpose range is refused, in each of the
// forms an address can take; public addresses are not.
func TestDenied(t *testing.T) {
	denied := []string{
		"0.0.0.0", "0.1.2.3", // this network
		"10.0.0.1", "10.255.255.255", // private
		"100.64.0.1", "100.127.255.254", // carrier-grade NAT
		"127.0.0.1", "127.255.255.254", // loopback
		"169.254.169.254",              // link-local: cloud metadata
		"172.16.0.1", "172.31.255.255", // private
		"192.0.0.1", "192.0.0.170", // IETF protocol assignments
		"192.0.2.1", "198.51.100.1", "203.0.113.1", // documentation
		"192.88.99.1",                  // 6to4 relay
		"192.168.1.1",                  // private
		"198.18.0.1", "198.19.255.255", // benchmarking
		"224.0.0.1", "239.255.255.250", // multicast
		"240.0.0.1", "255.255.255.255", // reserved, broadcast
		"::", "::1", "::127.0.0.1", // unspecified, loopback, IPv4-compatible
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0", // IPv4-mapped
		"64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe", // NAT64 of internal IPv4
		"64:ff9b:1::1",                   // NAT64 local use
		"100::1",                         // discard
		"2001::1", "2001:0:4136:e378::1", // Teredo
		"2001:db8::1",             // documentation
		"2002:7f00:1::1",          // 6to4 of 127.0.0.1
		"fc00::1", "fd12:3456::1", // unique local
		"fe80::1", "fe80::1%eth0", // link-local
		"fec0::1",            // site-local
		"ff02::1", "ff05::2", // multicast
	}
	for _, s := range denied {
		a, err := netip.ParseAddr(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if !whitelist.Denied(a) {
			t.Errorf("%s is not denied", s)
		}
	}
	public := []string{"93.184.216.34", "8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.1", "172.32.0.1", "192.0.1.1",
		"2606:4700::1111", "2a00:1450:4001::200e", "::ffff:93.184.216.34", "64:ff9b::5db8:d822"}
	for _, s := range public {
		if whitelist.Denied(netip.MustParseAddr(s)) {
			t.Errorf("%s is denied", s)
		}
	}
	if !whitelist.Denied(netip.Addr{}) {
		t.Error("the zero address is not denied")
	}
}

// TestFetcherCheckURL: the URL rules, outside and inside development.
func TestFetcherCheckURL(t *testing.T) {
	prod := whitelist.NewFetcher(whitelist.FetcherOptions{Resolver: staticResolver{}})
	dev := whitelist.NewFetcher(whitelist.FetcherOptions{Dev: true, Resolver: staticResolver{}})
	ctx := context.Background()
	for _, tc := range []struct {
		url       string
		prod, dev bool
	}{
		{"https://rp.example/jwks.json", true, true},
		{"https://rp.example:8443/jwks.json?v=1", true, true},
		{"https://93.184.216.34/jwks.json", true, true},
		{"https://[2606:4700::1111]/jwks.json", true, true},
		{"http://rp.example/jwks.json", false, true},
		{"http://127.0.0.1:8080/rp/jwks.json", false, true}, // the demo's RP
		{"http://localhost:8080/jwks.json", false, true},
		{"https://127.0.0.1:8443/jwks.json", false, true},
		{"https://10.0.0.5/jwks.json", false, true},
		{"https://169.254.169.254/latest/meta-data/", false, false},
		{"https://[fe80::1]/jwks.json", false, false},
		{"https://[fe80::1%25eth0]/jwks.json", false, false},
		{"https://0.0.0.0/jwks.json", false, false},
		{"https://100.64.0.1/jwks.json", false, false},
		{"https://192.0.0.8/jwks.json", false, false},
		{"https://[::ffff:127.0.0.1]/jwks.json", false, true},
		{"https://[::ffff:169.254.169.254]/jwks.json", false, false},
		{"https://[64:ff9b::a9fe:a9fe]/jwks.json", false, false},
		{"https://[::1]/jwks.json", false, true},
		{"https://[::]/jwks.json", false, false},
		{"https://localhost/jwks.json", false, true},
		{"https://api.localhost/jwks.json", false, true},
		{"https://intranet/jwks.json", false, true},
		{"https://127.1/jwks.json", false, false},
		{"https://0x7f.0.0.1/jwks.json", false, false},
		{"https://2130706433/jwks.json", false, false},
		{"https://rp.example/jwks.json#k", false, false},
		{"https://user:pw@rp.example/jwks.json", false, false},
		{"ftp://rp.example/jwks.json", false, false},
		{"file:///etc/passwd", false, false},
		{"gopher://rp.example:70/", false, false},
		{"//rp.example/jwks.json", false, false},
		{"/jwks.json", false, false},
		{"https:///jwks.json", false, false},
		{"https://rp.example:0/jwks.json", false, false},
		{"https://rp.example:99999/jwks.json", false, false},
		{"https://rp.example/ jwks.json", false, false},
		{"https://rp.example/\njwks.json", false, false},
		{"https://rp.example/" + strings.Repeat("a", 2100), false, false},
		{"", false, false},
	} {
		for _, m := range []struct {
			f    *whitelist.Fetcher
			want bool
			name string
		}{{prod, tc.prod, "production"}, {dev, tc.dev, "dev"}} {
			err := m.f.CheckURL(ctx, tc.url)
			if (err == nil) != m.want {
				t.Errorf("%s: %q: %v, want allowed=%v", m.name, tc.url, err, m.want)
			}
			if err != nil && !errors.Is(err, whitelist.ErrFetchURL) && !errors.Is(err, whitelist.ErrFetchAddress) {
				t.Errorf("%s: %q: %v is neither a URL nor an address refusal", m.name, tc.url, err)
			}
		}
	}
}

// staticResolver answers from a map that a test may change, as DNS may
// between registration and fetch.
type staticResolver struct {
	mu *sync.Mutex
	m  map[string][]netip.Addr
}

func newResolver() staticResolver {
	return staticResolver{mu: &sync.Mutex{}, m: map[string][]netip.Addr{}}
}

func (r staticResolver) set(host string, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[host] = nil
	for _, a := range addrs {
		r.m[host] = append(r.m[host], netip.MustParseAddr(a))
	}
}

func (r staticResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if r.mu == nil {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.m[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// integrator is an https server on loopback with the documents the
// fetch tests need.
func integrator(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/doc.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`["https://rp.example/cb"]`))
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/doc.json", http.StatusFound) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(strings.Repeat("x", 70<<10))) })
	mux.HandleFunc("/big-chunked", func(w http.ResponseWriter, r *http.Request) {
		for range 70 {
			w.Write([]byte(strings.Repeat("x", 1<<10)))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	mux.HandleFunc("/trickle", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		for range 50 {
			w.Write([]byte(" "))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("/missing", http.NotFound)
	ts := httptest.NewUnstartedServer(mux)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

// TestFetcherRefusesInternalAddresses: a literal internal address is
// refused before any connection; a name is refused when it resolves to
// one, also when DNS changes after the URL was accepted at registration,
// and when one of its addresses is internal among public ones.
func TestFetcherRefusesInternalAddresses(t *testing.T) {
	ts := integrator(t)
	port := ts.URL[strings.LastIndexByte(ts.URL, ':')+1:]
	tlsConf := ts.Client().Transport.(*http.Transport).TLSClientConfig
	dns := newResolver()
	f := whitelist.NewFetcher(whitelist.FetcherOptions{TLS: tlsConf, Resolver: dns})
	ctx := context.Background()
	var hits int
	ts.Config.ConnState = func(net.Conn, http.ConnState) { hits++ }

	// Literal: refused by the URL rules.
	if _, err := f.Fetch(ctx, "https://127.0.0.1:"+port+"/doc.json", whitelist.FetchOptions{}); !errors.Is(err, whitelist.ErrFetchURL) {
		t.Fatalf("literal loopback: %v", err)
	}
	// A name that resolves to loopback: refused at dial time.
	dns.set("rp.example.com", "127.0.0.1")
	if _, err := f.Fetch(ctx, "https://rp.example.com:"+port+"/doc.json", whitelist.FetchOptions{}); !errors.Is(err, whitelist.ErrFetchAddress) {
		t.Fatalf("name resolving to loopback: %v", err)
	}
	if err := f.CheckURL(ctx, "https://rp.example.com:"+port+"/doc.json"); !errors.Is(err, whitelist.ErrFetchAddress) {
		t.Fatalf("CheckURL of a name resolving to loopback: %v", err)
	}
	// Public at registration, private when fetched (DNS rebinding).
	dns.set("rebind.example.com", "93.184.216.34")
	if err := f.CheckURL(ctx, "https://rebind.example.com:"+port+"/doc.json"); err != nil {
		t.Fatalf("public at registration: %v", err)
	}
	for _, internal := range []string{"10.0.0.7", "169.254.169.254", "::1", "::ffff:127.0.0.1", "fd00::1", "100.64.1.1", "0.0.0.0"} {
		dns.set("rebind.example.com", internal)
		_, err := f.Fetch(ctx, "https://rebind.example.com:"+port+"/doc.json", whitelist.FetchOptions{})
		var fe *whitelist.FetchError
		if !errors.Is(err, whitelist.ErrFetchAddress) || !errors.As(err, &fe) || strings.Contains(fe.Reason, internal) {
			t.Errorf("rebound to %s: %v", internal, err)
		}
	}
	// One internal address among public ones refuses the name.
	dns.set("mixed.example.com", "93.184.216.34", "127.0.0.1")
	if _, err := f.Fetch(ctx, "https://mixed.example.com:"+port+"/doc.json", whitelist.FetchOptions{}); !errors.Is(err, whitelist.ErrFetchAddress) {
		t.Fatalf("mixed addresses: %v", err)
	}
	if hits != 0 {
		t.Fatalf("the refused fetches reached the server %d times", hits)
	}
	// The same server, once its network is exempted, answers: the
	// refusals above were the address rules, nothing else.
	ok := whitelist.NewFetcher(whitelist.FetcherOptions{TLS: tlsConf, Resolver: dns, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	dns.set("rp.example.com", "127.0.0.1")
	if b, err := ok.Fetch(ctx, "https://rp.example.com:"+port+"/doc.json", whitelist.FetchOptions{}); err != nil || !strings.Contains(string(b), "rp.example/cb") {
		t.Fatalf("exempted network: %q %v", b, err)
	}
}

// TestFetcherLimits: redirects, size, time, status and scheme, against a
// real TLS server whose loopback network is exempted.
func TestFetcherLimits(t *testing.T) {
	ts := integrator(t)
	tlsConf := ts.Client().Transport.(*http.Transport).TLSClientConfig
	loop := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	f := whitelist.NewFetcher(whitelist.FetcherOptions{TLS: tlsConf, Allow: loop, Timeout: 500 * time.Millisecond})
	ctx := context.Background()
	// A proxy in the environment is not used: the checked address is
	// the one connected to.
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	t.Setenv("https_proxy", "http://127.0.0.1:1")
	if _, err := f.Fetch(ctx, ts.URL+"/doc.json", whitelist.FetchOptions{}); err != nil {
		t.Fatalf("good document: %v", err)
	}
	for _, tc := range []struct {
		path string
		max  int64
		kind error
	}{
		{"/redirect", 0, whitelist.ErrFetchRedirect},
		{"/big", 0, whitelist.ErrFetchTooLarge},
		{"/big-chunked", 0, whitelist.ErrFetchTooLarge},
		{"/doc.json", 10, whitelist.ErrFetchTooLarge},
		{"/slow", 0, whitelist.ErrFetchTimeout},
		{"/trickle", 0, whitelist.ErrFetchTimeout},
		{"/missing", 0, whitelist.ErrFetchStatus},
	} {
		start := time.Now()
		_, err := f.Fetch(ctx, ts.URL+tc.path, whitelist.FetchOptions{MaxBytes: tc.max})
		if !errors.Is(err, tc.kind) {
			t.Errorf("%s: %v, want %v", tc.path, err, tc.kind)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s took %v despite the 500 ms timeout", tc.path, d)
		}
	}
	// http outside development, and a certificate nobody vouches for.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("[]")) }))
	defer plain.Close()
	if _, err := f.Fetch(ctx, plain.URL, whitelist.FetchOptions{}); !errors.Is(err, whitelist.ErrFetchURL) {
		t.Errorf("http outside dev: %v", err)
	}
	untrusted := whitelist.NewFetcher(whitelist.FetcherOptions{Allow: loop})
	if _, err := untrusted.Fetch(ctx, ts.URL+"/doc.json", whitelist.FetchOptions{}); !errors.Is(err, whitelist.ErrFetchTLS) {
		t.Errorf("untrusted certificate: %v", err)
	}
	// Development: http and loopback, as the demo's RP.
	dev := whitelist.NewFetcher(whitelist.FetcherOptions{Dev: true})
	if b, err := dev.Fetch(ctx, plain.URL, whitelist.FetchOptions{}); err != nil || string(b) != "[]" {
		t.Errorf("dev over http on loopback: %q %v", b, err)
	}
	// Even in development the metadata service is out of reach.
	if _, err := dev.Fetch(ctx, "http://169.254.169.254/latest/meta-data/", whitelist.FetchOptions{}); !errors.Is(err, whitelist.ErrFetchURL) {
		t.Errorf("dev to link-local: %v", err)
	}
}

// TestRegistrationRefusesInternalFetchURLs: the URLs Watashi will fetch
// later are refused at registration when they name an internal address,
// with a message for the integrator, and nothing is stored.
func TestRegistrationRefusesInternalFetchURLs(t *testing.T) {
	r := newNode(t, memoryBackend(t)) // the default, guarded fetcher
	ctx := context.Background()
	for _, tc := range []struct{ field, url string }{
		{"jwks_uri", "https://127.0.0.1:8443/jwks.json"},
		{"jwks_uri", "https://[::1]:8443/jwks.json"},
		{"jwks_uri", "https://169.254.169.254/latest/meta-data/"},
		{"jwks_uri", "https://10.1.2.3/jwks.json"},
		{"jwks_uri", "https://localhost/jwks.json"},
		{"jwks_uri", "https://127.1/jwks.json"},
		{"logo_uri", "https://192.168.0.10/logo.png"},
		{"sector_identifier_uri", "https://100.64.0.1/sector.json"},
	} {
		m := whitelisttest.WebMetadata(t, "rp.example.com")
		switch tc.field {
		case "jwks_uri":
			m.JWKS, m.JWKSURI = nil, tc.url
		case "logo_uri":
			m.LogoURI = tc.url
		case "sector_identifier_uri":
			m.SectorIdentifierURI = tc.url
		}
		_, err := r.Add(ctx, whitelist.AddRequest{Metadata: m, Tier: whitelist.TierBasic, Change: operator})
		var we *whitelist.Error
		if whitelist.CodeOf(err) != whitelist.CodeInvalidClientMetadata || !errors.As(err, &we) || we.Field != tc.field ||
			!strings.Contains(we.Description, "public") {
			t.Errorf("%s %s: %v", tc.field, tc.url, err)
		}
	}
	if list, _ := r.List(ctx); len(list) != 0 {
		t.Fatalf("%d clients created", len(list))
	}
	// A public jwks_uri is accepted (it does not resolve here, which is
	// checked again at every fetch).
	m := whitelisttest.WebMetadata(t, "rp.example.com")
	m.JWKS, m.JWKSURI = nil, "https://keys.rp.example/jwks.json"
	if _, err := r.Add(ctx, whitelist.AddRequest{Metadata: m, Tier: whitelist.TierBasic, Change: operator}); err != nil {
		t.Fatalf("public jwks_uri: %v", err)
	}
}

// FuzzFetcherCheckURL: whatever the string, the URL rules never panic,
// and what they accept is an https URL with a host, no user information
// or fragment, and, when the host is an address, an allowed one.
func FuzzFetcherCheckURL(f *testing.F) {
	for _, s := range []string{"https://rp.example/jwks.json", "https://127.0.0.1/", "https://[::ffff:10.0.0.1]/", "http://x/",
		"https://0x7f.1/", "https://a@b/", "https://[fe80::1%25en0]/", "https://rp.example:443/a#b", "https://xn--r8jz45g.jp/"} {
		f.Add(s)
	}
	fetcher := whitelist.NewFetcher(whitelist.FetcherOptions{Resolver: staticResolver{}})
	f.Fuzz(func(t *testing.T, raw string) {
		if err := fetcher.CheckURL(context.Background(), raw); err != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" && u.Scheme != "HTTPS" && !strings.EqualFold(u.Scheme, "https") {
			t.Fatalf("accepted %q: scheme %q", raw, u.Scheme)
		}
		if u.Hostname() == "" || u.User != nil || strings.Contains(raw, "#") {
			t.Fatalf("accepted %q", raw)
		}
		if a, err := netip.ParseAddr(u.Hostname()); err == nil && whitelist.Denied(a) {
			t.Fatalf("accepted %q with a denied address", raw)
		}
		h := strings.ToLower(u.Hostname())
		if h == "localhost" || strings.HasSuffix(h, ".localhost") || !strings.Contains(h, ".") && !strings.Contains(h, ":") {
			t.Fatalf("accepted %q with a local name", raw)
		}
	})
}

// TestFetcherPost: a POST follows the same rules as a fetch, sends the
// body and headers, and tells a receiver's refusal from its outage.
func TestFetcherPost(t *testing.T) {
	var got struct {
		ctype, auth, body string
	}
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.ctype, got.auth, got.body = r.Header.Get("Content-Type"), r.Header.Get("Authorization"), string(b)
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusAccepted)
		case "/bad":
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"err":"invalid_request"}`))
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusTemporaryRedirect)
		}
	}))
	defer ts.Close()
	tlsConf := ts.Client().Transport.(*http.Transport).TLSClientConfig
	ctx := context.Background()
	f := whitelist.NewFetcher(whitelist.FetcherOptions{TLS: tlsConf, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if _, err := f.Post(ctx, ts.URL+"/ok", []byte("logout_token=x"), whitelist.PostOptions{ContentType: "application/x-www-form-urlencoded", Authorization: "Bearer t"}); err != nil {
		t.Fatal(err)
	}
	if got.ctype != "application/x-www-form-urlencoded" || got.auth != "Bearer t" || got.body != "logout_token=x" {
		t.Fatalf("received %+v", got)
	}
	for path, want := range map[string]int{"/bad": 400, "/down": 503, "/redirect": 307} {
		_, err := f.Post(ctx, ts.URL+path, []byte("x"), whitelist.PostOptions{ContentType: "text/plain"})
		var fe *whitelist.FetchError
		if !errors.As(err, &fe) || fe.Status != want {
			t.Errorf("%s: %v, want status %d", path, err, want)
		}
	}
	// The address rules hold for a POST as for a GET: nothing is sent.
	got.body = ""
	strict := whitelist.NewFetcher(whitelist.FetcherOptions{TLS: tlsConf})
	if _, err := strict.Post(ctx, ts.URL+"/ok", []byte("secret"), whitelist.PostOptions{ContentType: "text/plain"}); !errors.Is(err, whitelist.ErrFetchURL) {
		t.Fatalf("loopback literal: %v", err)
	}
	if _, err := strict.Post(ctx, "http://rp.example/ok", []byte("secret"), whitelist.PostOptions{ContentType: "text/plain"}); !errors.Is(err, whitelist.ErrFetchURL) {
		t.Fatalf("http outside dev: %v", err)
	}
	if got.body != "" {
		t.Fatal("a refused POST reached the server")
	}
}
