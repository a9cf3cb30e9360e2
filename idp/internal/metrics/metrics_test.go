package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A second provider on one registry shares the first one's collector; a
// different collector under the same name is an error.
func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "watashi_test_total", Help: "test"}
	a, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil || b != a {
		t.Fatalf("second registration: %v, same collector %v", err, b == a)
	}
	b.Inc()
	if _, err := Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "watashi_test_total", Help: "other"})); err == nil {
		t.Fatal("conflicting collector registered")
	}
	if _, err := Register(reg, prometheus.NewCounterVec(opts, []string{"x"})); err == nil {
		t.Fatal("collector of another type under the same name registered")
	}
}
