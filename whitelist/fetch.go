package whitelist

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Fetcher gets the documents integrators point Watashi at: sector
// identifier documents, jwks_uri key sets, and whatever else an
// integrator registers a URL for. Such a URL is chosen by someone outside
// the operator's network, so every request follows the same rules:
//
//   - https only (http in development);
//   - no redirects: one could leave https or the registered host;
//   - a size limit and a timeout for the whole exchange;
//   - the address is checked where the connection is made, after DNS
//     resolution, against a deny list of loopback, private, link-local,
//     carrier-grade NAT, multicast, reserved and documentation networks
//     (IPv4-mapped, NAT64 and other IPv6 forms of them included), so that
//     a name that resolves, or later re-resolves, to an internal address
//     is refused as a literal one is;
//   - no proxy from the environment: the connection goes where the check
//     says.
//
// CheckURL applies the same rules at registration, so that an integrator
// hears about a bad URL at once rather than at the first token request.
type Fetcher struct {
	dev      bool
	allow    []netip.Prefix
	timeout  time.Duration
	resolver Resolver
	client   *http.Client
}

// Resolver looks names up; net.DefaultResolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// FetcherOptions configure a Fetcher.
type FetcherOptions struct {
	// Dev also allows http URLs and loopback and private addresses, for
	// the demo and a developer's machine. Link-local addresses (cloud
	// metadata services), multicast and reserved ranges stay refused.
	Dev bool
	// Allow exempts networks from the deny list: an operator's own
	// integrators on an internal network. Empty by default.
	Allow []netip.Prefix
	// Timeout bounds one fetch from dialling to the last byte (default
	// and maximum 10 s).
	Timeout time.Duration
	// TLS configures the client side of TLS (a private CA's roots); nil
	// uses the system roots.
	TLS *tls.Config
	// Resolver looks up host names (default net.DefaultResolver).
	Resolver Resolver
}

// Limits of every fetch.
const (
	// MaxFetchTimeout is the longest a fetch may take.
	MaxFetchTimeout = 10 * time.Second
	// DefaultMaxFetchBytes is the size limit when the caller sets none.
	DefaultMaxFetchBytes = 64 << 10
	// maxFetchURLLen bounds a URL Watashi will fetch.
	maxFetchURLLen = maxURILen
)

// NewFetcher returns a Fetcher with its own transport.
func NewFetcher(o FetcherOptions) *Fetcher {
	f := &Fetcher{dev: o.Dev, allow: append([]netip.Prefix(nil), o.Allow...), timeout: o.Timeout, resolver: o.Resolver}
	if f.timeout <= 0 || f.timeout > MaxFetchTimeout {
		f.timeout = MaxFetchTimeout
	}
	if f.resolver == nil {
		f.resolver = net.DefaultResolver
	}
	var tc *tls.Config
	if o.TLS != nil {
		tc = o.TLS.Clone()
	}
	tr := &http.Transport{
		Proxy:                  nil, // never through a proxy the checks do not see
		DialContext:            f.dial,
		TLSClientConfig:        tc,
		TLSHandshakeTimeout:    5 * time.Second,
		ResponseHeaderTimeout:  5 * time.Second,
		MaxResponseHeaderBytes: 16 << 10,
		MaxIdleConns:           16,
		IdleConnTimeout:        30 * time.Second,
		ForceAttemptHTTP2:      true,
	}
	f.client = &http.Client{
		Transport:     tr,
		Timeout:       f.timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return f
}

// FetchOptions describe one fetch.
type FetchOptions struct {
	// Accept is the Accept header (default application/json).
	Accept string
	// MaxBytes bounds the body (default DefaultMaxFetchBytes).
	MaxBytes int64
}

// Problems a fetch can have, for errors.Is.
var (
	ErrFetchURL       = errors.New("whitelist: URL not allowed")
	ErrFetchAddress   = errors.New("whitelist: address not allowed")
	ErrFetchRedirect  = errors.New("whitelist: redirect not followed")
	ErrFetchStatus    = errors.New("whitelist: unexpected HTTP status")
	ErrFetchTooLarge  = errors.New("whitelist: document too large")
	ErrFetchTimeout   = errors.New("whitelist: timeout")
	ErrFetchTLS       = errors.New("whitelist: TLS failure")
	ErrFetchTransport = errors.New("whitelist: connection failed")
)

// FetchError is a failed fetch. Reason is written for the integrator
// whose URL it was: it names the class of failure and never an internal
// address or a resolver's detail. Err keeps the cause for the log.
type FetchError struct {
	Kind   error // one of the ErrFetch* values
	Reason string
	Status int // the HTTP status, for ErrFetchStatus and ErrFetchRedirect
	Err    error
}

func (e *FetchError) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Err.Error()
	}
	return e.Reason
}

func (e *FetchError) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}

// Fetch GETs rawURL under the rules and returns the body of a 200 answer.
func (f *Fetcher) Fetch(ctx context.Context, rawURL string, o FetchOptions) ([]byte, error) {
	u, err := f.checkURL(rawURL)
	if err != nil {
		return nil, err
	}
	if o.Accept == "" {
		o.Accept = "application/json"
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxFetchBytes
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &FetchError{Kind: ErrFetchURL, Reason: "is not a URL that can be fetched", Err: err}
	}
	req.Header.Set("Accept", o.Accept)
	req.Header.Set("User-Agent", "watashi")
	res, err := f.client.Do(req)
	if err != nil {
		return nil, transportError(err)
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode >= 300 && res.StatusCode < 400:
		return nil, &FetchError{Kind: ErrFetchRedirect, Status: res.StatusCode,
			Reason: fmt.Sprintf("answered HTTP %d; redirects are not followed: register the final URL", res.StatusCode)}
	case res.StatusCode != http.StatusOK:
		return nil, &FetchError{Kind: ErrFetchStatus, Status: res.StatusCode, Reason: fmt.Sprintf("answered HTTP %d, not 200", res.StatusCode)}
	}
	if res.ContentLength > o.MaxBytes {
		return nil, &FetchError{Kind: ErrFetchTooLarge, Reason: fmt.Sprintf("the document is larger than %d bytes", o.MaxBytes)}
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, o.MaxBytes+1))
	if err == nil && ctx.Err() != nil {
		// A stream cut by the deadline can read as a clean end: the
		// document would be truncated, not complete.
		err = ctx.Err()
	}
	if err != nil {
		return nil, transportError(err)
	}
	if int64(len(body)) > o.MaxBytes {
		return nil, &FetchError{Kind: ErrFetchTooLarge, Reason: fmt.Sprintf("the document is larger than %d bytes", o.MaxBytes)}
	}
	return body, nil
}

func transportError(err error) error {
	var fe *FetchError
	if errors.As(err, &fe) {
		return fe
	}
	var ne net.Error
	switch {
	case errors.Is(err, ErrFetchAddress):
		return &FetchError{Kind: ErrFetchAddress, Reason: "its host resolves to a loopback, private or otherwise internal address; Watashi fetches only from public addresses", Err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &FetchError{Kind: ErrFetchTimeout, Reason: "timed out", Err: err}
	case isTLSError(err):
		return &FetchError{Kind: ErrFetchTLS, Reason: "TLS failed (is the certificate valid for the host and issued by a public CA?)", Err: err}
	}
	return &FetchError{Kind: ErrFetchTransport, Reason: "could not be fetched (connection failed)", Err: err}
}

func isTLSError(err error) bool {
	var rec tls.RecordHeaderError
	var cv *tls.CertificateVerificationError
	var ae tls.AlertError
	return errors.As(err, &rec) || errors.As(err, &cv) || errors.As(err, &ae) || strings.Contains(err.Error(), "tls:") ||
		strings.Contains(err.Error(), "x509:")
}

// CheckURL tells whether rawURL may be fetched: the URL rules, and, when
// its host is a name that resolves now, every address it resolves to.
// A name that does not resolve is let through (it is checked again when
// it is fetched); an address that is refused is refused here already.
func (f *Fetcher) CheckURL(ctx context.Context, rawURL string) error {
	u, err := f.checkURL(rawURL)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if _, err := netip.ParseAddr(host); err == nil {
		return nil // checked by checkURL
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := f.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if !f.allowed(a) {
			return transportError(fmt.Errorf("%w: %s resolves to %s", ErrFetchAddress, host, a))
		}
	}
	return nil
}

// checkURL applies the URL rules: an absolute https URL (http in
// development) with a host, no user information, no fragment, and a
// literal address that is allowed.
func (f *Fetcher) checkURL(rawURL string) (*url.URL, error) {
	bad := func(reason string) error { return &FetchError{Kind: ErrFetchURL, Reason: reason} }
	if len(rawURL) > maxFetchURLLen {
		return nil, bad(fmt.Sprintf("is longer than %d characters", maxFetchURLLen))
	}
	if hasControlOrSpace(rawURL) {
		return nil, bad("contains spaces or control characters")
	}
	u, err := url.Parse(rawURL)
	if err != nil || !u.IsAbs() || u.Opaque != "" {
		return nil, bad("is not an absolute URL")
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !f.dev {
			return nil, bad("uses http; only https is fetched (http only in development)")
		}
	default:
		return nil, bad("must be an https URL")
	}
	if u.User != nil {
		return nil, bad("contains user information (user@host)")
	}
	if u.Fragment != "" || strings.Contains(rawURL, "#") {
		return nil, bad("must not have a fragment")
	}
	host := u.Hostname()
	if host == "" {
		return nil, bad("has no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, bad("has an invalid port")
		}
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return nil, bad("names an address with a zone")
		}
		if !f.allowed(a) {
			return nil, bad("names a loopback, private or otherwise internal address; Watashi fetches only from public addresses")
		}
		return u, nil
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if looksNumeric(name) {
		// 127.1, 0x7f.0.0.1, 2130706433: resolvers read these as IPv4
		// addresses, but no DNS name has a numeric last label.
		return nil, bad("names an address in a non-standard form; use a public host name (or a dotted quad)")
	}
	if !f.dev && len(f.allow) == 0 {
		// With exemptions the operator runs integrators on an internal
		// network, whose hosts may have short names.
		if name == "localhost" || strings.HasSuffix(name, ".localhost") {
			return nil, bad("names localhost; Watashi fetches only from public addresses")
		}
		if !strings.Contains(name, ".") {
			return nil, bad("names a host without a domain; use a fully qualified public host name")
		}
	}
	return u, nil
}

// looksNumeric reports a host whose last label is a number, decimal,
// octal or hex: a legacy IPv4 form, never a DNS name.
func looksNumeric(host string) bool {
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if strings.HasPrefix(last, "0x") {
		last = last[2:]
		if last == "" {
			return true
		}
		for _, c := range last {
			if !strings.ContainsRune("0123456789abcdef", c) {
				return false
			}
		}
		return true
	}
	for _, c := range last {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// dial resolves the host, refuses the connection when any of its
// addresses is not allowed (a name with one internal address among
// public ones is a rebinding attempt, not an accident), and connects to
// the addresses it checked. The dialer's Control checks the connected
// address once more.
func (f *Fetcher) dial(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrFetchAddress, address)
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = f.resolver.LookupNetIP(ctx, "ip", host); err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("whitelist: %s has no address", host)
	}
	for _, a := range addrs {
		if !f.allowed(a) {
			return nil, fmt.Errorf("%w: %s resolves to %s", ErrFetchAddress, host, a)
		}
	}
	d := &net.Dialer{Timeout: 5 * time.Second, Control: f.control}
	var last error
	for _, a := range addrs {
		c, err := d.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		last = err
	}
	return nil, last
}

// control runs on the socket about to connect: the address it names is
// the one the kernel will use.
func (f *Fetcher) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !f.allowed(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrFetchAddress, address)
	}
	return nil
}

// allowed applies the exemptions, the development rules and the deny
// list to one address.
func (f *Fetcher) allowed(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range f.allow {
		if p.Contains(a) {
			return true
		}
	}
	if f.dev && (a.IsLoopback() || a.IsPrivate()) {
		return true
	}
	return !Denied(a)
}

// deniedPrefixes are the networks no integrator's document may be
// fetched from: everything in the IANA special-purpose address registries
// that is not globally reachable, and the ranges that embed an IPv4
// address under another name.
var deniedPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		// IPv4
		"0.0.0.0/8",       // "this network", 0.0.0.0 connects to the host itself
		"10.0.0.0/8",      // private
		"100.64.0.0/10",   // carrier-grade NAT, shared address space
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local, cloud metadata services
		"172.16.0.0/12",   // private
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"192.31.196.0/24", // AS112
		"192.52.193.0/24", // AMT
		"192.88.99.0/24",  // 6to4 relay anycast
		"192.168.0.0/16",  // private
		"192.175.48.0/24", // AS112 direct delegation
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, and the limited broadcast address
		// IPv6
		"::/96",           // unspecified, loopback, IPv4-compatible
		"::ffff:0:0/96",   // IPv4-mapped (checked unmapped too)
		"::ffff:0:0:0/96", // IPv4-translated
		"64:ff9b::/96",    // NAT64 well-known prefix: checked by its IPv4 part
		"64:ff9b:1::/48",  // NAT64 local use
		"100::/64",        // discard-only
		"2001::/23",       // IETF protocol assignments: Teredo, benchmarking, ORCHID
		"2001:db8::/32",   // documentation
		"2002::/16",       // 6to4: an IPv4 address in disguise
		"3fff::/20",       // documentation
		"5f00::/16",       // segment routing SIDs
		"fc00::/7",        // unique local
		"fe80::/10",       // link-local
		"fec0::/10",       // site-local, deprecated
		"ff00::/8",        // multicast
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// nat64 is the well-known prefix whose low 32 bits are an IPv4 address.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Denied reports whether a is in the deny list: an address Watashi never
// fetches an integrator's document from, whatever the name that led to
// it. An IPv4-mapped address is judged as the IPv4 address it maps; a
// NAT64 address is public only when its IPv4 part is.
func Denied(a netip.Addr) bool {
	if !a.IsValid() {
		return true
	}
	a = a.Unmap().WithZone("")
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		return Denied(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return true
	}
	for _, p := range deniedPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// PostOptions describe one POST.
type PostOptions struct {
	// ContentType of the body (required).
	ContentType string
	// Accept is the Accept header (default application/json).
	Accept string
	// Authorization, when set, is sent as the Authorization header (a
	// receiver's own bearer token, for SSF push delivery).
	Authorization string
	// MaxBytes bounds the answer's body (default 4 KiB): a receiver
	// answers with a status and at most a short error object.
	MaxBytes int64
}

// Post sends body to rawURL under the same rules as Fetch: https, a
// public address checked where the connection is made, no redirect, no
// proxy, the timeout. It is how Watashi delivers logout tokens and
// security events to URLs relying parties registered. A 2xx answer
// returns its (bounded) body; any other status is a FetchError with
// Kind ErrFetchStatus and the status, with the body as far as read,
// so that the caller can tell a receiver's refusal (4xx) from its
// outage (5xx).
func (f *Fetcher) Post(ctx context.Context, rawURL string, body []byte, o PostOptions) ([]byte, error) {
	u, err := f.checkURL(rawURL)
	if err != nil {
		return nil, err
	}
	if o.ContentType == "" {
		return nil, errors.New("whitelist: Post needs a content type")
	}
	if o.Accept == "" {
		o.Accept = "application/json"
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 4 << 10
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, &FetchError{Kind: ErrFetchURL, Reason: "is not a URL that can be posted to", Err: err}
	}
	req.Header.Set("Content-Type", o.ContentType)
	req.Header.Set("Accept", o.Accept)
	req.Header.Set("User-Agent", "watashi")
	if o.Authorization != "" {
		req.Header.Set("Authorization", o.Authorization)
	}
	res, err := f.client.Do(req)
	if err != nil {
		return nil, transportError(err)
	}
	defer res.Body.Close()
	answer, rerr := io.ReadAll(io.LimitReader(res.Body, o.MaxBytes))
	switch {
	case res.StatusCode >= 300 && res.StatusCode < 400:
		return nil, &FetchError{Kind: ErrFetchRedirect, Status: res.StatusCode,
			Reason: fmt.Sprintf("answered HTTP %d; redirects are not followed: register the final URL", res.StatusCode)}
	case res.StatusCode < 200 || res.StatusCode > 299:
		return answer, &FetchError{Kind: ErrFetchStatus, Status: res.StatusCode, Reason: fmt.Sprintf("answered HTTP %d", res.StatusCode)}
	}
	// The receiver took the request (2xx): an answer body cut short (rerr)
	// does not undo that.
	_ = rerr
	return answer, nil
}
