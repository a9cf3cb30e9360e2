package whitelist_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/whitelist"
)

const aaguidYubiKey = "cb69481e-8ff7-4039-93ec-0a2729a154a8"

func TestParseBlock(t *testing.T) {
	for _, tc := range []struct {
		kind, value string
		want        string // canonical value; "" when refused
		msg         string // part of the refusal
	}{
		{"label", "JPKIAPGPSETOKEN", "JPKIAPGPSETOKEN", ""},
		{"label", "JPKIAPIOSTOKEN", "JPKIAPIOSTOKEN", ""},
		{"label", "JPKIAPICCTOKEN2", "JPKIAPICCTOKEN2", ""},
		{"label", "NEWAPPLET_3", "NEWAPPLET_3", ""},
		{"aaguid", aaguidYubiKey, aaguidYubiKey, ""},
		{"aaguid", strings.ToUpper(aaguidYubiKey), aaguidYubiKey, ""},
		{"aaguid", "00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000", ""},
		{"client", "rp-one.example", "rp-one.example", ""},
		{"client", "A", "A", ""},

		{"label", "", "", "label is required"},
		{"label", "jpkiapgpsetoken", "", "capital letters"},
		{"label", "JPKI APGPSETOKEN", "", "capital letters"},
		{"label", strings.Repeat("A", 65), "", "capital letters"},
		{"label", "JPKI\nX", "", "capital letters"},
		{"aaguid", "", "", "UUID"},
		{"aaguid", "cb69481e8ff7403993ec0a2729a154a8", "", "UUID"},
		{"aaguid", "urn:uuid:cb69481e-8ff7-4039-93ec-0a2729a154a8", "", "UUID"},
		{"aaguid", "{cb69481e-8ff7-4039-93ec-0a2729a154a8}", "", "UUID"},
		{"aaguid", "zb69481e-8ff7-4039-93ec-0a2729a154a8", "", "UUID"},
		{"client", "", "", "client_id"},
		{"client", "a:b", "", "client_id"},
		{"client", "a b", "", "client_id"},
		{"client", "a{b}", "", "client_id"},
		{"client", strings.Repeat("c", 256), "", "client_id"},
		{"model", "x", "", "unknown kind"},
		{"", "x", "", "unknown kind"},
		{"LABEL", "JPKIAPGPSETOKEN", "", "unknown kind"},
	} {
		k, v, err := whitelist.ParseBlock(tc.kind, tc.value)
		if tc.want == "" {
			var we *whitelist.Error
			if !errors.As(err, &we) || we.Code != whitelist.CodeInvalidRequest || !strings.Contains(we.Description, tc.msg) {
				t.Errorf("ParseBlock(%q, %q) = %q, %q, %v; want an invalid_request mentioning %q", tc.kind, tc.value, k, v, err, tc.msg)
			}
			continue
		}
		if err != nil || string(k) != tc.kind || v != tc.want {
			t.Errorf("ParseBlock(%q, %q) = %q, %q, %v; want %q", tc.kind, tc.value, k, v, err, tc.want)
		}
	}
}

func FuzzParseBlock(f *testing.F) {
	f.Add("label", "JPKIAPGPSETOKEN")
	f.Add("aaguid", aaguidYubiKey)
	f.Add("client", "rp.example")
	f.Add("aaguid", "{"+aaguidYubiKey+"}")
	f.Fuzz(func(t *testing.T, kind, value string) {
		k, v, err := whitelist.ParseBlock(kind, value)
		if err != nil {
			return
		}
		// The canonical form parses to itself and never holds the
		// separators of store keys or log lines.
		k2, v2, err := whitelist.ParseBlock(string(k), v)
		if err != nil || k2 != k || v2 != v {
			t.Fatalf("canonical %q %q does not round-trip: %q %q %v", k, v, k2, v2, err)
		}
		if strings.ContainsAny(v, ":{} \n\r\t") {
			t.Fatalf("canonical value %q holds a separator", v)
		}
	})
}

func newBlocklist(t testing.TB, b whitelist.Backend, o whitelist.BlocklistOptions) *whitelist.Blocklist {
	t.Helper()
	o.Backend = b
	l, err := whitelist.NewBlocklist(o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func runBlocklist(t testing.TB, l *whitelist.Blocklist) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for !l.Live() {
		if time.Now().After(deadline) {
			t.Fatal("block list subscription never became live")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBlocklistMemory(t *testing.T) { testBlocklist(t, memoryBackend(t)) }

func TestBlocklistRedis(t *testing.T) {
	testBlocklist(t, redisNode(t, storetest.StartRedis(t), "bl:"))
}

func testBlocklist(t *testing.T, b whitelist.Backend) {
	ctx := context.Background()
	l := newBlocklist(t, b, whitelist.BlocklistOptions{})
	yk, _ := uuid.Parse(aaguidYubiKey)

	check := func(label string, aaguid []byte, client string, want bool) {
		t.Helper()
		var got bool
		var err error
		switch {
		case label != "":
			got, err = l.LabelBlocked(ctx, label)
		case aaguid != nil:
			got, err = l.AAGUIDBlocked(ctx, aaguid)
		default:
			got, err = l.ClientBlocked(ctx, client)
		}
		if err != nil || got != want {
			t.Fatalf("blocked(%q, %x, %q) = %v, %v; want %v", label, aaguid, client, got, err, want)
		}
	}
	check("JPKIAPGPSETOKEN", nil, "", false)
	check("", yk[:], "", false)
	check("", nil, "rp.example", false)

	for _, add := range [][2]string{{"label", "JPKIAPGPSETOKEN"}, {"aaguid", strings.ToUpper(aaguidYubiKey)}, {"client", "rp.example"}} {
		blk, err := l.Add(ctx, add[0], add[1], operator)
		if err != nil {
			t.Fatalf("Add %v: %v", add, err)
		}
		if blk.Actor != operator.Actor || blk.Reason != operator.Reason || blk.At.IsZero() {
			t.Fatalf("block record %+v", blk)
		}
	}
	check("JPKIAPGPSETOKEN", nil, "", true)
	check("JPKIAPIOSTOKEN", nil, "", false)
	check("", yk[:], "", true)
	check("", make([]byte, 16), "", false)
	check("", nil, "rp.example", true)
	check("", nil, "rp2.example", false)
	if _, err := l.AAGUIDBlocked(ctx, []byte{1, 2, 3}); err == nil {
		t.Fatal("a malformed AAGUID from an authenticator was answered")
	}

	list, err := l.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, blk := range list {
		got = append(got, string(blk.Kind)+" "+blk.Value+" "+blk.Actor)
	}
	want := []string{"label JPKIAPGPSETOKEN test-operator", "aaguid " + aaguidYubiKey + " test-operator", "client rp.example test-operator"}
	if !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	hist, err := l.History(ctx)
	if err != nil || len(hist) != 3 {
		t.Fatalf("History = %+v, %v", hist, err)
	}

	// Refusals change nothing: neither the list nor the audit log.
	for _, bad := range []struct {
		kind, value string
		ch          whitelist.Change
		want        error
	}{
		{"label", "JPKIAPGPSETOKEN", operator, whitelist.ErrAlreadyBlocked},
		{"aaguid", aaguidYubiKey, operator, whitelist.ErrAlreadyBlocked},
		{"model", "x", operator, nil},
		{"aaguid", "not-a-uuid", operator, nil},
		{"label", "", operator, nil},
		{"client", "a:b", operator, nil},
		{"label", "JPKIAPIOSTOKEN", whitelist.Change{}, nil},
		{"label", "JPKIAPIOSTOKEN", whitelist.Change{Actor: "x\ny"}, nil},
	} {
		_, err := l.Add(ctx, bad.kind, bad.value, bad.ch)
		var we *whitelist.Error
		if bad.want != nil && !errors.Is(err, bad.want) || bad.want == nil && !errors.As(err, &we) {
			t.Errorf("Add(%q, %q) = %v, want %v or an invalid request", bad.kind, bad.value, err, bad.want)
		}
	}
	for _, bad := range []struct{ kind, value string }{{"label", "JPKIAPIOSTOKEN"}, {"model", "x"}, {"aaguid", "x"}, {"label", ""}} {
		if err := l.Remove(ctx, bad.kind, bad.value, operator); err == nil {
			t.Errorf("Remove(%q, %q) succeeded", bad.kind, bad.value)
		}
	}
	if l2, _ := l.List(ctx); len(l2) != 3 {
		t.Fatalf("refusals changed the list: %d entries", len(l2))
	}
	if h2, _ := l.History(ctx); len(h2) != 3 {
		t.Fatalf("refusals wrote the audit log: %d entries", len(h2))
	}

	if err := l.Remove(ctx, "aaguid", aaguidYubiKey, whitelist.Change{Actor: "ops", Via: "cli", Reason: "firmware fixed"}); err != nil {
		t.Fatal(err)
	}
	check("", yk[:], "", false)
	check("JPKIAPGPSETOKEN", nil, "", true)
	hist, _ = l.History(ctx)
	last := hist[len(hist)-1]
	if last.Action != whitelist.ActionUnblock || last.Block != "aaguid:"+aaguidYubiKey || last.Actor != "ops" || last.Reason != "firmware fixed" || last.At.IsZero() {
		t.Fatalf("last audit entry %+v", last)
	}
}

// The list is bounded: every node holds it in memory.
func TestBlocklistBound(t *testing.T) {
	ctx := context.Background()
	l := newBlocklist(t, memoryBackend(t), whitelist.BlocklistOptions{})
	for i := range whitelist.MaxBlocks {
		if _, err := l.Add(ctx, "client", "c"+strings.Repeat("x", i%3)+uuid.NewString(), operator); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Add(ctx, "label", "JPKIAPGPSETOKEN", operator); !errors.Is(err, whitelist.ErrTooManyBlocks) {
		t.Fatalf("block past the bound: %v", err)
	}
	if blocked, _ := l.LabelBlocked(ctx, "JPKIAPGPSETOKEN"); blocked {
		t.Fatal("the refused block is enforced")
	}
}

// Two nodes, each with its own connection to one real Redis: a block
// made on one is enforced by the other, which had the old list in
// memory, within one second. The delays are logged; their median goes
// into the report.
func TestBlockTwoNodesOneRedis(t *testing.T) {
	addr := storetest.StartRedis(t)
	a := newBlocklist(t, redisNode(t, addr, "bl2:"), whitelist.BlocklistOptions{})
	b := newBlocklist(t, redisNode(t, addr, "bl2:"), whitelist.BlocklistOptions{})
	runBlocklist(t, b)
	ctx := context.Background()
	var ds []time.Duration
	for range 25 {
		if blocked, err := b.LabelBlocked(ctx, "JPKIAPGPSETOKEN"); err != nil || blocked {
			t.Fatalf("before the block: %v %v", blocked, err)
		}
		start := time.Now()
		if _, err := a.Add(ctx, "label", "JPKIAPGPSETOKEN", operator); err != nil {
			t.Fatal(err)
		}
		for {
			blocked, err := b.LabelBlocked(ctx, "JPKIAPGPSETOKEN")
			if err != nil {
				t.Fatal(err)
			}
			if blocked {
				break
			}
			if time.Since(start) > time.Second {
				t.Fatal("node b still signs in with the blocked label after 1 s")
			}
			time.Sleep(50 * time.Microsecond)
		}
		ds = append(ds, time.Since(start))
		if err := a.Remove(ctx, "label", "JPKIAPGPSETOKEN", operator); err != nil {
			t.Fatal(err)
		}
		for start := time.Now(); ; time.Sleep(time.Millisecond) {
			if blocked, _ := b.LabelBlocked(ctx, "JPKIAPGPSETOKEN"); !blocked {
				break
			}
			if time.Since(start) > time.Second {
				t.Fatal("node b kept the lifted block for 1 s")
			}
		}
	}
	slices.Sort(ds)
	t.Logf("block propagation over Redis, %d runs: min %v, median %v, p90 %v, max %v",
		len(ds), ds[0], ds[len(ds)/2], ds[len(ds)*9/10], ds[len(ds)-1])
}

// A node without a subscription (Run not running) rereads the list
// after FallbackTTL: a block still reaches it within that time.
func TestBlockWithoutSubscription(t *testing.T) {
	addr := storetest.StartRedis(t)
	a := newBlocklist(t, redisNode(t, addr, "bl3:"), whitelist.BlocklistOptions{})
	b := newBlocklist(t, redisNode(t, addr, "bl3:"), whitelist.BlocklistOptions{FallbackTTL: 200 * time.Millisecond})
	ctx := context.Background()
	if blocked, err := b.ClientBlocked(ctx, "rp.example"); err != nil || blocked {
		t.Fatal(blocked, err)
	}
	start := time.Now()
	if _, err := a.Add(ctx, "client", "rp.example", operator); err != nil {
		t.Fatal(err)
	}
	for {
		if blocked, _ := b.ClientBlocked(ctx, "rp.example"); blocked {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("the block did not reach a node without subscription within 1 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkLabelBlocked is the cost a sign-in pays with a live
// subscription: a map lookup under a lock.
func BenchmarkLabelBlocked(bm *testing.B) {
	l := newBlocklist(bm, memoryBackend(nil), whitelist.BlocklistOptions{})
	ctx := context.Background()
	if _, err := l.Add(ctx, "label", "JPKIAPIOSTOKEN", operator); err != nil {
		bm.Fatal(err)
	}
	runBlocklist(bm, l)
	for bm.Loop() {
		if blocked, err := l.LabelBlocked(ctx, "JPKIAPGPSETOKEN"); err != nil || blocked {
			bm.Fatal(blocked, err)
		}
	}
}

// failingReads makes SetMembers fail on demand: a store outage as the
// block list sees it, which a real store cannot be made to show on cue.
type failingReads struct {
	whitelist.Store
	fail *atomic.Bool
}

func (f failingReads) SetMembers(ctx context.Context, key string) ([]string, error) {
	if f.fail.Load() {
		return nil, errors.New("store down")
	}
	return f.Store.SetMembers(ctx, key)
}

// While the store cannot be read, a copy that merely aged answers for
// MaxAge; one that an announced change made stale, or none at all, is
// an error (a refusal that may pass on a retry), never "not blocked".
func TestBlocklistStoreOutage(t *testing.T) {
	ctx := context.Background()
	shared := memoryBackend(t)
	var fail atomic.Bool
	faulty := shared
	faulty.Store = failingReads{Store: shared.Store, fail: &fail}
	a := newBlocklist(t, shared, whitelist.BlocklistOptions{})
	b := newBlocklist(t, faulty, whitelist.BlocklistOptions{FallbackTTL: time.Millisecond, MaxAge: time.Minute})

	fail.Store(true)
	if _, err := b.LabelBlocked(ctx, "JPKIAPGPSETOKEN"); err == nil {
		t.Fatal("a node that never read the list answered during an outage")
	}
	fail.Store(false)
	if _, err := a.Add(ctx, "label", "JPKIAPIOSTOKEN", operator); err != nil {
		t.Fatal(err)
	}
	if blocked, err := b.LabelBlocked(ctx, "JPKIAPIOSTOKEN"); err != nil || !blocked {
		t.Fatal(blocked, err)
	}
	time.Sleep(5 * time.Millisecond) // past FallbackTTL: the copy has aged
	fail.Store(true)
	if blocked, err := b.LabelBlocked(ctx, "JPKIAPIOSTOKEN"); err != nil || !blocked {
		t.Fatalf("aged copy during an outage: %v %v", blocked, err)
	}
	if blocked, err := b.LabelBlocked(ctx, "JPKIAPGPSETOKEN"); err != nil || blocked {
		t.Fatalf("aged copy during an outage: %v %v", blocked, err)
	}

	// A change announced to b (its subscription delivers it) makes the
	// copy unusable until it is read again.
	fail.Store(false)
	runBlocklist(t, b)
	if _, err := b.LabelBlocked(ctx, "JPKIAPGPSETOKEN"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Add(ctx, "label", "JPKIAPGPSETOKEN", operator); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	deadline := time.Now().Add(time.Second)
	for {
		blocked, err := b.LabelBlocked(ctx, "JPKIAPGPSETOKEN")
		if err != nil {
			break // the announced change reached b: no stale answer
		}
		if blocked {
			t.Fatal("b read the list although the store is down")
		}
		if time.Now().After(deadline) {
			t.Fatal("the announced change never made b's copy unusable")
		}
		time.Sleep(time.Millisecond)
	}
	fail.Store(false)
	if blocked, err := b.LabelBlocked(ctx, "JPKIAPGPSETOKEN"); err != nil || !blocked {
		t.Fatal(blocked, err)
	}
}

// BenchmarkBlockPropagation: from Add on node a to node b (its own
// connection to one real Redis, subscribed) refusing the label, per op;
// the median and the maximum are reported as well.
func BenchmarkBlockPropagation(bm *testing.B) {
	addr := storetest.StartRedis(bm)
	a := newBlocklist(bm, redisNode(bm, addr, "blb:"), whitelist.BlocklistOptions{})
	b := newBlocklist(bm, redisNode(bm, addr, "blb:"), whitelist.BlocklistOptions{})
	runBlocklist(bm, b)
	ctx := context.Background()
	var ds []time.Duration
	for bm.Loop() {
		start := time.Now()
		if _, err := a.Add(ctx, "label", "JPKIAPGPSETOKEN", operator); err != nil {
			bm.Fatal(err)
		}
		for {
			if blocked, err := b.LabelBlocked(ctx, "JPKIAPGPSETOKEN"); err != nil {
				bm.Fatal(err)
			} else if blocked {
				break
			}
			if time.Since(start) > time.Second {
				bm.Fatal("not propagated within 1 s")
			}
			time.Sleep(20 * time.Microsecond) // leave the 2 cores to the subscription
		}
		ds = append(ds, time.Since(start))
		bm.StopTimer()
		if err := a.Remove(ctx, "label", "JPKIAPGPSETOKEN", operator); err != nil {
			bm.Fatal(err)
		}
		for {
			if blocked, _ := b.LabelBlocked(ctx, "JPKIAPGPSETOKEN"); !blocked {
				break
			}
			time.Sleep(20 * time.Microsecond)
		}
		bm.StartTimer()
	}
	slices.Sort(ds)
	bm.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "µs-median")
	bm.ReportMetric(float64(ds[len(ds)-1].Microseconds()), "µs-max")
}
