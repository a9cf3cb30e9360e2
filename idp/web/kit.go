package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/internal/metrics"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/templates"
)

// Counter is the store operation a rate limit needs: the store's batch,
// whose HashIncr counts in a hash that every node shares, created with a
// time to live.
type Counter interface {
	Do(ctx context.Context, ops ...store.Op) ([]store.Result, error)
}

// Options configure a Kit. Issuer and CookieKey are required.
type Options struct {
	// Issuer is the provider's issuer URL; its origin is the only origin
	// a state-changing browser request may come from.
	Issuer string
	// Dev drops the __Host- cookie prefix, Secure cookies and HSTS, so
	// that the demo works over plain http on loopback.
	Dev bool
	// CookieKey authenticates CSRF tokens and keys the rate-limit MAC
	// (at least 32 bytes).
	CookieKey []byte
	// TrustedProxies are the reverse proxies whose ClientIPHeader is
	// believed; any other peer is its own client address.
	TrustedProxies []netip.Prefix
	// ClientIPHeader is the header trusted proxies append the client
	// address to (default X-Forwarded-For).
	ClientIPHeader string
	// FormTargets are the extra origins form submissions may lead to (the
	// relying parties' redirect URIs), for the CSP's form-action.
	FormTargets []string
	// Counter backs the rate limits.
	Counter Counter
	// Templates render the pages.
	Templates *templates.Set
	Logger    *slog.Logger
	Metrics   prometheus.Registerer
	Now       func() time.Time
}

// Kit is the shared toolkit of the public handlers. It is immutable after
// New and safe for concurrent use.
type Kit struct {
	issuer   string
	origin   string
	dev      bool
	key      []byte
	trusted  []netip.Prefix
	ipHeader string
	csp      string
	counter  Counter
	tmpl     *templates.Set
	log      *slog.Logger
	now      func() time.Time
	cop      *http.CrossOriginProtection

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	panics   prometheus.Counter
	limited  *prometheus.CounterVec
}

// New checks the options and registers the web metrics.
func New(o Options) (*Kit, error) {
	origin, err := Origin(o.Issuer)
	if err != nil {
		return nil, err
	}
	if len(o.CookieKey) < 32 {
		return nil, errors.New("web: the cookie key must be at least 32 bytes")
	}
	if o.Counter == nil || o.Templates == nil {
		return nil, errors.New("web: Counter and Templates are required")
	}
	k := &Kit{
		issuer: o.Issuer, origin: origin, dev: o.Dev, key: slices.Clone(o.CookieKey),
		trusted: slices.Clone(o.TrustedProxies), ipHeader: o.ClientIPHeader,
		csp: contentSecurityPolicy(o.FormTargets), counter: o.Counter, tmpl: o.Templates,
		log: o.Logger, now: o.Now, cop: http.NewCrossOriginProtection(),
	}
	if k.ipHeader == "" {
		k.ipHeader = "X-Forwarded-For"
	}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	// The access log and panic lines must carry the request ID that the
	// error page shows, whatever logger the caller passed.
	k.log = NewLogger(k.log)
	if k.now == nil {
		k.now = time.Now
	}
	// Behind a proxy that rewrites Host, the issuer's own origin must
	// still pass the cross-origin check.
	if err := k.cop.AddTrustedOrigin(origin); err != nil {
		return nil, fmt.Errorf("web: issuer origin: %w", err)
	}
	reg := o.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if k.requests, err = metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_http_requests_total",
		Help: "Public HTTP requests by route pattern and status code.",
	}, []string{"route", "code"})); err != nil {
		return nil, err
	}
	if k.duration, err = metrics.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "watashi_http_request_duration_seconds",
		Help:    "Public HTTP request latency by route pattern.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route"})); err != nil {
		return nil, err
	}
	if k.panics, err = metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "watashi_http_panics_total",
		Help: "Handler panics recovered into a 500 response.",
	})); err != nil {
		return nil, err
	}
	if k.limited, err = metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_rate_limited_total",
		Help: "Requests refused by a rate limit, by bucket.",
	}, []string{"bucket"})); err != nil {
		return nil, err
	}
	return k, nil
}

// Issuer is the provider's issuer URL.
func (k *Kit) Issuer() string { return k.issuer }

// Dev reports development mode.
func (k *Kit) Dev() bool { return k.dev }

// Logger is the provider's logger.
func (k *Kit) Logger() *slog.Logger { return k.log }

// Now is the provider's clock.
func (k *Kit) Now() time.Time { return k.now() }

// Templates are the pages, for handlers that need a message outside a
// page (a claim value's label).
func (k *Kit) Templates() *templates.Set { return k.tmpl }

// Origin is the scheme://host[:port] browsers put in Origin when a page of
// the issuer submits a form: lowercase, and without the scheme's default
// port, as browsers serialise it.
func Origin(issuer string) (string, error) {
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("web: issuer %q must be an absolute http(s) URL", issuer)
	}
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" && !(scheme == "https" && port == "443") && !(scheme == "http" && port == "80") {
		host += ":" + port
	}
	return scheme + "://" + host, nil
}
