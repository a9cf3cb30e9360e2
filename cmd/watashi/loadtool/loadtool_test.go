package loadtool

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseMetrics(t *testing.T) {
	text := `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_cpu_seconds_total_other 99
watashi_store_operation_duration_seconds_bucket{op="get",le="0.001"} 7
watashi_store_operation_duration_seconds_count{op="get"} 10
watashi_store_operation_duration_seconds_count{op="set"} 5
watashi_store_operation_duration_seconds_count{op="batch"} 2.5e+01
watashi_store_round_trips_total{origin="background"} 3
watashi_store_round_trips_total{origin="request"} 7
`
	got, err := parseMetrics(strings.NewReader(text), "process_cpu_seconds_total", "watashi_store_operation_duration_seconds_count",
		`watashi_store_round_trips_total{origin="request"}`, `watashi_store_round_trips_total{origin="background"}`, "watashi_store_round_trips_total")
	if err != nil {
		t.Fatal(err)
	}
	if want := []float64{12.5, 40, 7, 3, 10}; !slices.Equal(got, want) {
		t.Fatalf("parsed %v, want %v", got, want)
	}
	if _, err := parseMetrics(strings.NewReader("process_cpu_seconds_total abc\n"), "process_cpu_seconds_total"); err == nil {
		t.Fatal("a value that is not a number was accepted")
	}
}

func TestParseInfo(t *testing.T) {
	f := parseInfo("# CPU\r\nused_cpu_sys:1.50\r\nused_cpu_user:2.25\r\nmaxmemory_policy:noeviction\r\nused_memory:1024\r\n")
	if f["used_cpu_sys"] != 1.5 || f["used_cpu_user"] != 2.25 || f["used_memory"] != 1024 {
		t.Fatalf("parsed %v", f)
	}
	if _, ok := f["maxmemory_policy"]; ok {
		t.Fatal("a field that is not a number was kept")
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want float64
	}{{.50, 50}, {.95, 95}, {.99, 99}, {1, 100}} {
		if got := pct(lat, c.q); got != c.want {
			t.Errorf("p%v = %v, want %v", c.q*100, got, c.want)
		}
	}
	if pct(nil, .5) != 0 {
		t.Error("percentile of nothing")
	}
}

func TestErrorKind(t *testing.T) {
	res := &http.Response{StatusCode: http.StatusTooManyRequests}
	for _, c := range []struct {
		err  error
		want string
	}{
		{fail("authorize", res, errors.New("x")), "authorize:429"},
		{fail("token", nil, errors.New("reset")), "token:network"},
		{errors.New("other"), "other"},
	} {
		if got := errorKind(c.err); got != c.want {
			t.Errorf("errorKind(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// TestRunRefusesBadOptions: options that cannot make a run are refused
// before anything is sent.
func TestRunRefusesBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no workers":          {Concurrency: 0, Duration: time.Second},
		"too many workers":    {Concurrency: 1025, Duration: time.Second},
		"no duration":         {Concurrency: 1},
		"fewer residents":     {Concurrency: 4, Residents: 3, Duration: time.Second},
		"too many residents":  {Concurrency: 1, Residents: MaxResidents + 1, Duration: time.Second},
		"unknown phase":       {Concurrency: 1, Duration: time.Second, Phases: []string{"logout"}},
		"no setup in the dir": {Concurrency: 1, Duration: time.Second, Dir: t.TempDir()},
		"negative residents":  {Concurrency: 1, Residents: -1, Duration: time.Second},
	} {
		if _, err := Run(t.Context(), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
