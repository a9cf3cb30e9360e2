package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

func TestInstrumentedConformance(t *testing.T) {
	storetest.RunKV(t, func(t *testing.T) store.KV {
		kv, err := store.Instrument(store.NewMemory(), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		return kv
	})
}

// failing is a store whose every operation fails the way it is told:
// the one fault a real backend cannot be made to produce on demand.
type failing struct {
	store.KV
	err error
}

func (f failing) Get(context.Context, string) ([]byte, error) { return nil, f.err }

func TestInstrumentCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	kv, err := store.Instrument(store.NewMemory(), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	must(t, kv.Set(ctx, "k", []byte("v"), 0))
	if _, err := kv.Get(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	// A second wrapper on the same registry shares the collectors.
	for _, tc := range []struct {
		err  error
		kind string
	}{
		{context.DeadlineExceeded, "timeout"},
		{store.ErrNotReplicated, "not_replicated"},
		{errors.New("connection refused"), "error"},
		{context.Canceled, ""},
		{store.ErrNotFound, ""},
	} {
		bad, err := store.Instrument(failing{store.NewMemory(), tc.err}, reg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bad.Get(ctx, "k"); !errors.Is(err, tc.err) {
			t.Fatalf("Get = %v, want %v passed through", err, tc.err)
		}
	}
	for _, kind := range []string{"timeout", "not_replicated", "error"} {
		if n := errCount(t, reg, "get", kind); n != 1 {
			t.Errorf("errors{op=get,kind=%s} = %v, want 1", kind, n)
		}
	}
	if n := errCount(t, reg, "set", "error"); n != 0 {
		t.Errorf("errors{op=set,kind=error} = %v, want 0", n)
	}
	mfs, _ := reg.Gather()
	counts := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() == "watashi_store_operation_duration_seconds" {
			for _, m := range mf.GetMetric() {
				counts[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	// get: one miss on the real store and five failures.
	if counts["set"] != 1 || counts["get"] != 6 || counts["ping"] != 0 {
		t.Errorf("histogram sample counts = %v", counts)
	}
	if _, ok := counts["stream_range"]; !ok {
		t.Error("op series are not created before first use")
	}
}

// TestRoundTripsByOrigin counts a request's round trips apart from the
// background's, a batch as one.
func TestRoundTripsByOrigin(t *testing.T) {
	reg := prometheus.NewRegistry()
	kv, err := store.Instrument(store.NewMemory(), reg)
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	req := store.ServingRequest(bg)
	must(t, kv.Set(req, "a", []byte("1"), 0))
	if _, err := kv.Do(req, store.Get("a"), store.Get("b"), store.Incr("n", time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(bg, "a"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "watashi_store_round_trips_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	if got["request"] != 2 || got["background"] != 1 {
		t.Errorf("round trips = %v, want request 2 (a set and a batch), background 1", got)
	}
}
