package web

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/templates"
)

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testTemplates parses the embedded pages once per test binary.
var testTemplates = sync.OnceValues(func() (*templates.Set, error) { return templates.New("") })

func mustTemplates(t testing.TB) *templates.Set {
	t.Helper()
	set, err := testTemplates()
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// newKit builds a Kit from o with test defaults for what o leaves unset:
// issuer https://id.example.jp, a fixed 32-byte key, a memory store, the
// embedded templates. Logs go as JSON into the returned buffer, metrics
// into the returned registry. The logger is deliberately a plain one: New
// must add request IDs itself.
func newKit(t testing.TB, o Options) (*Kit, *syncBuffer, *prometheus.Registry) {
	t.Helper()
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	if o.Issuer == "" {
		o.Issuer = "https://id.example.jp"
	}
	if o.CookieKey == nil {
		o.CookieKey = bytes.Repeat([]byte{7}, 32)
	}
	if o.Counter == nil {
		o.Counter = store.NewMemory()
	}
	if o.Templates == nil {
		o.Templates = mustTemplates(t)
	}
	o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.Metrics = reg
	k, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return k, logs, reg
}

func logLines(t *testing.T, logs *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// logLine returns the first log record with message msg.
func logLine(t *testing.T, logs *syncBuffer, msg string) map[string]any {
	t.Helper()
	for _, m := range logLines(t, logs) {
		if m["msg"] == msg {
			return m
		}
	}
	t.Fatalf("no %q log line in %s", msg, logs.String())
	return nil
}

func accessLog(t *testing.T, logs *syncBuffer) map[string]any {
	t.Helper()
	return logLine(t, logs, "http request")
}

// counterValue is a counter's value, or a histogram's sample count, for
// the series of name that has all of labels; 0 when there is none.
func counterValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == k && lp.GetValue() == v {
			return true
		}
	}
	return false
}

// cookieNamed returns the cookie called name among cs, nil if absent.
func cookieNamed(cs []*http.Cookie, name string) *http.Cookie {
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	return nil
}
