package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/watashi-id/watashi/idp/store"
)

const (
	requestIDHeader = "X-Request-ID"
	hstsValue       = "max-age=63072000; includeSubDomains"
	maxLoggedPath   = 256
)

type ctxKey int

const ctxRequestID ctxKey = 0

// RequestID returns the ID of the request ctx belongs to ("" outside
// one), so that code in other packages, the pkibridge verifier's logger
// for one, can tie its lines to the access log and to the ID shown on an
// error page.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxRequestID).(string)
	return id
}

// WithRequestID returns ctx carrying id, for work done outside an HTTP
// request that should still be traceable (background jobs, tests).
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxRequestID, id)
}

// ValidRequestID accepts an upstream proxy's ID only when it cannot
// smuggle anything into logs or headers.
func ValidRequestID(id string) bool {
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

// LogHandler adds request_id to every record logged with a request's
// context, whichever layer writes it.
type LogHandler struct{ slog.Handler }

// NewLogger wraps l so that its records carry the request ID.
func NewLogger(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(LogHandler); ok {
		return l
	}
	return slog.New(LogHandler{l.Handler()})
}

func (h LogHandler) Handle(ctx context.Context, rec slog.Record) error {
	if id := RequestID(ctx); id != "" {
		rec = rec.Clone()
		rec.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, rec)
}

func (h LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return LogHandler{h.Handler.WithAttrs(attrs)}
}

func (h LogHandler) WithGroup(name string) slog.Handler { return LogHandler{h.Handler.WithGroup(name)} }

// Wrap is the middleware chain of the public listener: request ID,
// security headers, panic recovery, access log and metrics. routes names
// the patterns whose metric label is not the pattern itself (the OIDC
// endpoints keep their short names).
func (k *Kit) Wrap(h http.Handler, routes map[string]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(requestIDHeader)
		if !ValidRequestID(id) {
			id = newRequestID()
		}
		sw := &statusWriter{ResponseWriter: w}
		r = r.WithContext(store.ServingRequest(WithRequestID(r.Context(), id)))
		k.securityHeaders(sw.Header())
		sw.Header().Set(requestIDHeader, id)
		defer func() {
			p := recover()
			if p != nil {
				k.recovered(sw, r, id, p)
			}
			k.observe(r, sw, time.Since(start), routes)
			if p == http.ErrAbortHandler {
				panic(p) // let net/http abort the connection as asked
			}
		}()
		h.ServeHTTP(sw, r)
	})
}

func (k *Kit) securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", k.csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if !k.dev {
		h.Set("Strict-Transport-Security", hstsValue)
	}
}

// recovered turns a panic into a 500 that names the request ID, so that a
// resident's screenshot leads an operator to the log line. The panic
// value is logged only when it is a runtime error: other values may be
// anything a handler held, personal data included.
func (k *Kit) recovered(w *statusWriter, r *http.Request, id string, p any) {
	if p == http.ErrAbortHandler {
		return
	}
	k.panics.Inc()
	desc := fmt.Sprintf("%T", p)
	if re, ok := p.(runtime.Error); ok {
		desc = re.Error()
	}
	k.log.ErrorContext(r.Context(), "handler panic", "panic", desc, "stack", string(debug.Stack()))
	if w.wroteHeader {
		return // too late for a status; the client sees a truncated body
	}
	h := w.Header()
	for _, name := range []string{"Content-Length", "Content-Encoding", "Content-Disposition", "Location", "Set-Cookie", "ETag", "Last-Modified"} {
		h.Del(name)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, "Internal error. Request ID: %s\n", id)
}

func (k *Kit) observe(r *http.Request, w *statusWriter, d time.Duration, routes map[string]string) {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	route := routeName(r, routes)
	k.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	k.duration.WithLabelValues(route).Observe(d.Seconds())
	path := r.URL.Path
	if len(path) > maxLoggedPath {
		path = path[:maxLoggedPath] + "..."
	}
	k.log.LogAttrs(r.Context(), slog.LevelInfo, "http request",
		slog.String("method", r.Method),
		slog.String("path", path),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Int64("bytes", w.bytes),
		slog.Duration("duration", d))
}

// routeName is the ServeMux pattern that matched (the mux records it in
// the request it was given), or its name in routes; "other" for anything
// no pattern but the catch-all matched, so that metrics get a bounded
// label set whatever paths clients and scanners send.
func routeName(r *http.Request, routes map[string]string) string {
	p := r.Pattern
	if name, ok := routes[p]; ok {
		return name
	}
	if p == "" || p == "/" {
		return "other"
	}
	return p
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
