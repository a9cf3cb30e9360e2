package idp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/whitelist"
)

// pingFailKV is a working store whose Ping fails: the state readiness
// must catch, which a live backend cannot be put into on demand while
// the server is being built on it.
type pingFailKV struct{ store.KV }

func (pingFailKV) Ping(context.Context) error { return errOffline }

var errOffline = &offlineError{}

type offlineError struct{}

func (*offlineError) Error() string { return "injected: store offline" }

func telemetryServer(t *testing.T, kv store.KV, metrics prometheus.Registerer, gatherer prometheus.Gatherer) *Server {
	t.Helper()
	s, err := New(context.Background(), Options{
		Issuer:      "http://127.0.0.1:8080",
		Dev:         true,
		Store:       kv,
		Verifier:    &pkibridge.Verifier{},
		PairwiseKey: make([]byte, 32),
		CookieKey:   make([]byte, 32),
		Metrics:     metrics,
		Gatherer:    gatherer,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, h http.Handler, method, path string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body), rec.Header()
}

func TestTelemetry(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := telemetryServer(t, store.NewMemory(), reg, nil)
	tel := s.TelemetryHandler()

	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/healthz", 200, "ok"},
		{"GET", "/readyz", 200, "store: ok\nsigning_key: ok"},
		{"POST", "/healthz", 405, ""},
		{"GET", "/nope", 404, ""},
		{"GET", "/authorize", 404, ""}, // the public routes are not here
	}
	for _, tt := range tests {
		code, body, hdr := get(t, tel, tt.method, tt.path)
		if code != tt.status || !strings.Contains(body, tt.body) {
			t.Errorf("%s %s: %d %q, want %d %q", tt.method, tt.path, code, body, tt.status, tt.body)
		}
		if code == 200 && hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: probes must not be cached", tt.path)
		}
	}

	// Metrics count public traffic, served from the injected registry.
	get(t, s.Handler(), "GET", "/.well-known/openid-configuration")
	code, body, _ := get(t, tel, "GET", "/metrics")
	if code != 200 || !strings.Contains(body, `watashi_http_requests_total{code=`) || !strings.Contains(body, `route="discovery"`) {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	if !strings.Contains(body, "watashi_http_request_duration_seconds_bucket") {
		t.Fatal("/metrics lacks the latency histogram")
	}
}

func TestReadyzStoreDown(t *testing.T) {
	s := telemetryServer(t, pingFailKV{store.NewMemory()}, prometheus.NewRegistry(), nil)
	code, body, _ := get(t, s.TelemetryHandler(), "GET", "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "store: injected: store offline") {
		t.Fatalf("/readyz with the store down: %d %q", code, body)
	}
	// Liveness does not depend on the store: restarting would not help.
	if code, _, _ := get(t, s.TelemetryHandler(), "GET", "/healthz"); code != 200 {
		t.Fatalf("/healthz with the store down: %d", code)
	}
}

func TestMetricsGatherer(t *testing.T) {
	// A Registerer that cannot gather, and no Gatherer: /metrics says so.
	wrapped := prometheus.WrapRegistererWithPrefix("", prometheus.NewRegistry())
	s := telemetryServer(t, store.NewMemory(), wrapped, nil)
	if code, _, _ := get(t, s.TelemetryHandler(), "GET", "/metrics"); code != http.StatusNotFound {
		t.Fatalf("/metrics without a gatherer: %d", code)
	}
	// An explicit Gatherer wins.
	g := prometheus.NewRegistry()
	g.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "watashi_test_marker_total", Help: "marker"}))
	s = telemetryServer(t, store.NewMemory(), prometheus.NewRegistry(), g)
	if code, body, _ := get(t, s.TelemetryHandler(), "GET", "/metrics"); code != 200 || !strings.Contains(body, "watashi_test_marker_total") {
		t.Fatalf("/metrics with a gatherer: %d %q", code, body)
	}
}

// With a registry, /readyz reports whether its change subscription is live;
// the 1 s fallback cache is still correct, so it never makes a node unready.
func TestReadyzWhitelist(t *testing.T) {
	kv := store.NewMemory()
	reg, err := whitelist.New(whitelist.Options{Backend: whitelist.KVBackend(kv, store.ErrNotFound), Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), Options{
		Issuer: "http://127.0.0.1:8080", Dev: true, Store: kv, Verifier: &pkibridge.Verifier{},
		PairwiseKey: make([]byte, 32), CookieKey: make([]byte, 32), Registry: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RotateKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, body, _ := get(t, s.TelemetryHandler(), "GET", "/readyz")
	if code != http.StatusOK || !strings.Contains(body, "whitelist: fallback") {
		t.Fatalf("/readyz before Run: %d %q", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go reg.Run(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body, _ = get(t, s.TelemetryHandler(), "GET", "/readyz")
		if strings.Contains(body, "whitelist: live") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never reported a live subscription: %d %q", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
