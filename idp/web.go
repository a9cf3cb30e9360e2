package idp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// webState is owned by the web files (web_*.go): middleware, security
// headers, CSRF, rate limits, request IDs, telemetry.
type webState struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	panics   prometheus.Counter
	limited  *prometheus.CounterVec

	// csp is the Content-Security-Policy of every public response.
	csp string
	// origin is the issuer's origin (scheme://host[:port]), the only
	// origin a state-changing browser request may come from.
	origin   string
	trusted  []netip.Prefix
	ipHeader string
}

// Header and form field names shared with the sign-in pages.
const (
	requestIDHeader = "X-Request-ID"
	// csrfField is the hidden form field carrying the CSRF token.
	csrfField = "csrf_token"
	// csrfHeader carries the token for fetch() POSTs.
	csrfHeader = "X-CSRF-Token"
	// csrfCookieBase is passed to cookieName for the per-browser secret.
	csrfCookieBase = "csrf"

	hstsValue     = "max-age=63072000; includeSubDomains"
	maxLoggedPath = 256
)

func (s *Server) initWeb(ctx context.Context) error {
	w := &webState{trusted: slices.Clone(s.opts.TrustedProxies), ipHeader: s.opts.ClientIPHeader}
	if w.ipHeader == "" {
		w.ipHeader = "X-Forwarded-For"
	}
	origin, err := issuerOrigin(s.opts.Issuer)
	if err != nil {
		return err
	}
	w.origin = origin
	switch {
	case len(s.opts.CookieKey) >= 32:
	case len(s.opts.CookieKey) == 0 && s.opts.Dev:
		// Development convenience: cookies and CSRF tokens die with the
		// process, which is all a demo needs.
		s.opts.CookieKey = make([]byte, 32)
		if _, err := rand.Read(s.opts.CookieKey); err != nil {
			return err
		}
	default:
		return errors.New("idp: Options.CookieKey must be at least 32 bytes")
	}
	w.csp = contentSecurityPolicy(formActionSources(s.opts.Clients))

	// Every log line written with a request's context carries its ID,
	// whichever layer writes it.
	s.log = slog.New(requestIDHandler{s.log.Handler()})

	reg := s.opts.Metrics
	if w.requests, err = registerMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_http_requests_total",
		Help: "Public HTTP requests by route pattern and status code.",
	}, []string{"route", "code"})); err != nil {
		return err
	}
	if w.duration, err = registerMetric(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "watashi_http_request_duration_seconds",
		Help:    "Public HTTP request latency by route pattern.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route"})); err != nil {
		return err
	}
	if w.panics, err = registerMetric(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "watashi_http_panics_total",
		Help: "Handler panics recovered into a 500 response.",
	})); err != nil {
		return err
	}
	if w.limited, err = registerMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_rate_limited_total",
		Help: "Requests refused by a rate limit, by bucket.",
	}, []string{"bucket"})); err != nil {
		return err
	}
	s.web = w
	return nil
}

// registerMetric registers c, or returns the collector already registered
// under the same description, so that several Servers (tests, a reload)
// can share one registry without a duplicate-registration failure.
func registerMetric[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("idp: register metric: %w", err)
	}
	return c, nil
}

// issuerOrigin is the scheme://host[:port] browsers put in Origin when a
// page of ours submits a form.
func issuerOrigin(issuer string) (string, error) {
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("idp: Options.Issuer %q must be an absolute http(s) URL", issuer)
	}
	return u.Scheme + "://" + u.Host, nil
}

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

// formActionSources lists the CSP sources for the clients' redirect and
// post-logout URIs: exact origins for web clients, any port on loopback
// for native clients (RFC 8252 §7.3 lets them pick a port at run time),
// and the bare scheme for private-use URI schemes. Anything that could
// not be written safely into a header is left out.
func formActionSources(clients []*Client) []string {
	var out []string
	add := func(src string) {
		if src != "" && !slices.Contains(out, src) {
			out = append(out, src)
		}
	}
	for _, c := range clients {
		if c == nil {
			continue
		}
		for _, raw := range slices.Concat(c.RedirectURIs, c.PostLogout) {
			add(cspSource(raw))
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
		if scheme == "http" && isLoopbackHost(host) {
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

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// Request-scoped values put in the context by wrapPublic.
type webCtxKey int

const (
	ctxRequestID webCtxKey = iota
	ctxReqState
)

// reqState lets helpers called deep inside a handler reach the response:
// csrfToken sets the CSRF cookie the first time a browser needs one.
type reqState struct {
	w          *statusWriter
	csrfSecret string
}

// RequestIDFrom returns the ID of the request ctx belongs to ("" outside
// one), so that code outside this package, the pkibridge verifier's
// logger for one, can tie its lines to the access log and to the ID shown
// on an error page.
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(ctxRequestID).(string)
	return id
}

// validRequestID accepts an upstream proxy's ID only when it cannot
// smuggle anything into logs or headers.
func validRequestID(id string) bool {
	if len(id) < 8 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// requestIDHandler adds request_id to every record logged with a request
// context.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, rec slog.Record) error {
	if id := RequestIDFrom(ctx); id != "" {
		rec = rec.Clone()
		rec.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, rec)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// wrapPublic is the middleware chain of the public listener: request ID,
// security headers, panic recovery, access log and metrics. The access
// log records method, path (never the query: it carries codes, tokens
// and login_hint), route, status, size, duration and request ID; never
// cookies, bodies, query values or client addresses.
func (s *Server) wrapPublic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(requestIDHeader)
		if !validRequestID(id) {
			id = newRequestID()
		}
		sw := &statusWriter{ResponseWriter: w}
		ctx := context.WithValue(r.Context(), ctxRequestID, id)
		ctx = context.WithValue(ctx, ctxReqState, &reqState{w: sw})
		// The sign-in pages read the auth request they work on several
		// times (the page check, the binding, the completion): the
		// request scope lets them decode and fetch it once. The
		// provider's routes get their own scope in oidcInterceptor.
		ctx = context.WithValue(ctx, reqScopeKey{}, &reqScope{})
		r = r.WithContext(ctx)
		s.securityHeaders(sw.Header())
		sw.Header().Set(requestIDHeader, id)

		defer func() {
			p := recover()
			if p != nil {
				s.recovered(sw, r, id, p)
			}
			s.observe(r, sw, time.Since(start))
			if p == http.ErrAbortHandler {
				panic(p) // let net/http abort the connection as asked
			}
		}()
		h.ServeHTTP(sw, r)
	})
}

func (s *Server) securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", s.web.csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if !s.opts.Dev {
		h.Set("Strict-Transport-Security", hstsValue)
	}
}

// recovered turns a panic into a 500 that names the request ID, so that a
// resident's screenshot leads an operator to the log line. The panic
// value is logged only when it is a runtime error: other values may be
// anything a handler held, personal data included.
func (s *Server) recovered(w *statusWriter, r *http.Request, id string, p any) {
	if p == http.ErrAbortHandler {
		return
	}
	s.web.panics.Inc()
	desc := fmt.Sprintf("%T", p)
	if re, ok := p.(runtime.Error); ok {
		desc = re.Error()
	}
	s.log.ErrorContext(r.Context(), "handler panic", "panic", desc, "stack", string(debug.Stack()))
	if w.wroteHeader {
		return // too late for a status; the client sees a truncated body
	}
	h := w.Header()
	for _, k := range []string{"Content-Length", "Content-Encoding", "Content-Disposition", "Location", "Set-Cookie", "ETag", "Last-Modified"} {
		h.Del(k)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, "Internal error. Request ID: %s\n", id)
}

func (s *Server) observe(r *http.Request, w *statusWriter, d time.Duration) {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	route := routeName(r)
	s.web.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	s.web.duration.WithLabelValues(route).Observe(d.Seconds())
	path := r.URL.Path
	if len(path) > maxLoggedPath {
		path = path[:maxLoggedPath] + "..."
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "http request",
		slog.String("method", r.Method),
		slog.String("path", path),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Int64("bytes", w.bytes),
		slog.Duration("duration", d))
}

// oidcRoutes names the provider's endpoints, which sit behind one "/"
// pattern, so that metrics get a bounded label set whatever paths
// clients and scanners send.
var oidcRoutes = map[string]string{
	"/.well-known/openid-configuration": "discovery",
	"/keys":                             "jwks",
	"/authorize":                        "authorize",
	"/authorize/callback":               "authorize_callback",
	"/oauth/token":                      "token",
	"/oauth/introspect":                 "introspect",
	"/userinfo":                         "userinfo",
	"/revoke":                           "revoke",
	"/end_session":                      "end_session",
}

// routeName is the ServeMux pattern that matched (the mux records it in
// the request we passed down) or, under the provider's catch-all, the
// endpoint name; "other" for anything else.
func routeName(r *http.Request) string {
	if p := r.Pattern; p != "" && p != "/" {
		return p
	}
	if name, ok := oidcRoutes[r.URL.Path]; ok {
		return name
	}
	return "other"
}

// statusWriter records the status and size for the access log and adds
// Cache-Control: no-store to HTML, whose pages carry per-login state.
type statusWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.wroteHeader {
		w.ResponseWriter.WriteHeader(code) // net/http reports the superfluous call
		return
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.wroteHeader = true
		w.status = code
		h := w.Header()
		if strings.HasPrefix(strings.ToLower(h.Get("Content-Type")), "text/html") && h.Get("Cache-Control") == "" {
			h.Set("Cache-Control", "no-store")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		// Sniff here, as net/http would, so that the HTML rule above also
		// covers handlers that never set a Content-Type.
		if _, set := w.Header()["Content-Type"]; !set && len(b) > 0 {
			w.Header().Set("Content-Type", http.DetectContentType(b))
		}
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush keeps server-sent events working through the wrapper.
func (w *statusWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection's deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// cookieName gives every cookie the __Host- prefix outside dev: the
// browser then refuses it unless it is Secure, host-only and Path=/, so a
// sibling subdomain cannot plant a binding or CSRF cookie.
func (s *Server) cookieName(base string) string {
	if s.opts.Dev {
		return "watashi-" + base
	}
	return "__Host-watashi-" + base
}

// setCookie writes a cookie that scripts cannot read and that follows a
// top-level navigation back from the RP (SameSite=Lax) but no cross-site
// subrequest. maxAge 0 makes a session cookie.
func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		HttpOnly: true,
		Secure:   !s.opts.Dev,
		SameSite: http.SameSiteLaxMode,
	}
	if maxAge > 0 {
		c.MaxAge = int((maxAge + time.Second - 1) / time.Second)
	}
	http.SetCookie(w, c)
}

// clearCookie deletes a cookie set by setCookie (same attributes, or
// browsers keep the original).
func (s *Server) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   !s.opts.Dev,
		SameSite: http.SameSiteLaxMode,
	})
}

// csrfSecretLen is the size of the per-browser CSRF secret.
const csrfSecretLen = 32

func validCSRFSecret(v string) bool {
	b, err := base64.RawURLEncoding.DecodeString(v)
	return err == nil && len(b) == csrfSecretLen
}

// csrfToken returns the token a form must echo in its csrf_token field
// (or a fetch in X-CSRF-Token). It is a MAC of the browser's secret
// cookie, so a page on another site can neither read nor forge it. The
// first call for a browser without the cookie creates it; call it before
// the response's first byte is written, and only on requests that came
// through wrapPublic.
func (s *Server) csrfToken(r *http.Request) string { return s.csrfTokenFor(r, "form") }

// checkCSRF reports whether a state-changing request comes from one of
// our own pages: same-origin by Origin or Sec-Fetch-Site where the
// browser sends them, and always a valid token bound to the secret
// cookie (double submit). Compared in constant time.
func (s *Server) checkCSRF(r *http.Request) bool { return s.checkCSRFFor(r, "form") }

// csrfTokenFor binds the token to a purpose too, for endpoints that want
// tokens that are useless anywhere else.
func (s *Server) csrfTokenFor(r *http.Request, purpose string) string {
	secret := ""
	if c, err := r.Cookie(s.cookieName(csrfCookieBase)); err == nil && validCSRFSecret(c.Value) {
		secret = c.Value
	} else if st, ok := r.Context().Value(ctxReqState).(*reqState); ok {
		if st.csrfSecret == "" {
			var b [csrfSecretLen]byte
			_, _ = rand.Read(b[:])
			st.csrfSecret = base64.RawURLEncoding.EncodeToString(b[:])
			if st.w.wroteHeader {
				s.log.ErrorContext(r.Context(), "csrf cookie needed after the response started; the form will be refused")
			} else {
				s.setCookie(st.w, s.cookieName(csrfCookieBase), st.csrfSecret, 0)
			}
		}
		secret = st.csrfSecret
	} else {
		s.log.ErrorContext(r.Context(), "csrfToken called outside wrapPublic; the form will be refused")
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(s.csrfMAC(secret, purpose))
}

func (s *Server) csrfMAC(secret, purpose string) []byte {
	m := hmac.New(sha256.New, s.opts.CookieKey)
	m.Write([]byte("watashi-csrf\x00"))
	m.Write([]byte(secret))
	m.Write([]byte{0})
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// checkCSRFFor checks a token made by csrfTokenFor with the same purpose.
func (s *Server) checkCSRFFor(r *http.Request, purpose string) bool {
	if !s.sameOrigin(r) {
		return false
	}
	c, err := r.Cookie(s.cookieName(csrfCookieBase))
	if err != nil || !validCSRFSecret(c.Value) {
		return false
	}
	tok := r.Header.Get(csrfHeader)
	if tok == "" {
		tok = r.PostFormValue(csrfField)
	}
	got, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	return hmac.Equal(got, s.csrfMAC(c.Value, purpose))
}

// sameOrigin uses what browsers add to every request: Origin on POSTs and
// fetches, Sec-Fetch-Site on all navigations in current browsers. A
// request with neither (an old browser, a script) is left to the token.
func (s *Server) sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		if o == "null" {
			// Our pages send Referrer-Policy: no-referrer, under which
			// browsers serialise the Origin of their own form posts as
			// "null". Sec-Fetch-Site still says where the post came from;
			// without it a null origin is refused.
			return r.Header.Get("Sec-Fetch-Site") == "same-origin"
		}
		return o == s.web.origin
	}
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" {
		return sfs == "same-origin"
	}
	return true
}

// clientIP is the address rate limits are keyed on: RemoteAddr, unless
// that is a trusted proxy, in which case ClientIPHeader is read from the
// right, skipping trusted hops; the first untrusted address is the
// client. An unparsable entry stops the walk at the last hop we trust to
// have written it.
func (s *Server) clientIP(r *http.Request) netip.Addr {
	remote := parseHostAddr(r.RemoteAddr)
	if !remote.IsValid() || !s.isTrustedProxy(remote) {
		return remote
	}
	var hops []string
	for _, v := range r.Header.Values(s.web.ipHeader) {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := remote
	for i := len(hops) - 1; i >= 0; i-- {
		a := parseHostAddr(strings.TrimSpace(hops[i]))
		if !a.IsValid() {
			return client
		}
		client = a
		if !s.isTrustedProxy(a) {
			return a
		}
	}
	return client
}

func (s *Server) isTrustedProxy(a netip.Addr) bool {
	for _, p := range s.web.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHostAddr accepts "ip", "ip:port" and "[ipv6]:port".
func parseHostAddr(v string) netip.Addr {
	if ap, err := netip.ParseAddrPort(v); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// rateLimit counts one event for key in bucket and reports whether it is
// within limit events per window (true = allowed). Windows are fixed and
// aligned to the clock, counted with the store's Incr so every node
// shares them. Keys are MACed: the store never holds client addresses.
// A store failure allows the request (the flow it guards needs the store
// too and fails on its own) and is logged; limit <= 0 refuses everything.
func (s *Server) rateLimit(ctx context.Context, bucket, key string, limit int, window time.Duration) bool {
	if limit <= 0 || window <= 0 {
		s.web.limited.WithLabelValues(bucket).Inc()
		return false
	}
	now := s.now().UnixNano()
	idx := now / int64(window)
	ttl := time.Duration(int64(window)*(idx+1)-now) + time.Second
	n, err := s.kv.Incr(ctx, s.rateLimitKey(bucket, key, idx), ttl)
	if err != nil {
		s.log.WarnContext(ctx, "rate limit unavailable, allowing", "bucket", bucket, "error", err)
		return true
	}
	if n > int64(limit) {
		s.web.limited.WithLabelValues(bucket).Inc()
		return false
	}
	return true
}

// rateLimitKey is "rl:<bucket>:<mac of key>:<window index>".
func (s *Server) rateLimitKey(bucket, key string, window int64) string {
	m := hmac.New(sha256.New, s.opts.CookieKey)
	m.Write([]byte("watashi-ratelimit\x00"))
	m.Write([]byte(key))
	return "rl:" + bucket + ":" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16]) + ":" + strconv.FormatInt(window, 10)
}
