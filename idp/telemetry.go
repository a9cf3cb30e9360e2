package idp

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readyTimeout bounds one readiness probe: a store that takes longer than
// this to answer a PING is not one to send traffic to.
const readyTimeout = time.Second

// TelemetryHandler serves health and metrics for the operator's private
// listener, never the public one: metrics reveal traffic and readiness
// reveals the topology.
//
//	GET /healthz  200 while the process serves HTTP (liveness)
//	GET /readyz   200 when the store answers within 1 s and a signing key
//	              exists; 503 with the failing checks otherwise
//	GET /metrics  Prometheus exposition of Options.Gatherer (or Metrics
//	              when it is a registry)
func (s *Server) TelemetryHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	if g := s.gatherer(); g != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	} else {
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no metrics gatherer configured", http.StatusNotFound)
		})
	}
	return mux
}

func (s *Server) gatherer() prometheus.Gatherer {
	if s.opts.Gatherer != nil {
		return s.opts.Gatherer
	}
	g, _ := s.opts.Metrics.(prometheus.Gatherer)
	return g
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	checks := []struct {
		name string
		err  error
	}{
		{"store", s.opts.Store.Ping(ctx)},
		{"signing_key", s.keys.Ready(ctx)},
	}
	var b strings.Builder
	status := http.StatusOK
	for _, c := range checks {
		if c.err != nil {
			status = http.StatusServiceUnavailable
			fmt.Fprintf(&b, "%s: %v\n", c.name, c.err)
			s.log.WarnContext(r.Context(), "not ready", "check", c.name, "error", c.err)
		} else {
			fmt.Fprintf(&b, "%s: ok\n", c.name)
		}
	}
	if reg := s.opts.Registry; reg != nil {
		// Informational: without a live subscription the registry falls
		// back to a 1 s cache, which is still correct, so it does not
		// make the node unready.
		if reg.Live() {
			b.WriteString("whitelist: live\n")
		} else {
			b.WriteString("whitelist: fallback (1 s cache)\n")
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}
