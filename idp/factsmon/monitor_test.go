package factsmon_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/factsmon"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/pkibridge"
)

// accounts stands in for the account store: the monitor's concern is
// who is checked how often by which source, which the real store's tests
// (CheckFacts) do not decide. revoked accounts answer revoked to any
// checker; undecided ones only to OCSP.
type accounts struct {
	mu        sync.Mutex
	ids       []string
	calls     map[string][]string // id → sources asked
	revoked   map[string]bool
	undecided map[string]bool
	announced map[string]bool
	failAfter int // fail CheckFacts after this many calls (0: never)
	n         int
}

func (a *accounts) IDs(context.Context) ([]string, error) { return a.ids, nil }

func (a *accounts) CheckFacts(_ context.Context, id string, c account.RevocationChecker) (account.FactsCheck, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	if a.failAfter > 0 && a.n > a.failAfter {
		return account.FactsSkipped, errors.New("store down")
	}
	src := string(c.(named))
	a.calls[id] = append(a.calls[id], src)
	switch {
	case a.announced[id]:
		return account.FactsSkipped, nil
	case a.revoked[id]:
		return account.FactsRevoked, nil
	case a.undecided[id] && src == "crl":
		return account.FactsUndecided, nil
	}
	return account.FactsGood, nil
}

func (a *accounts) AnnounceStale(_ context.Context, id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.announced[id] = true
	return nil
}

// named is a checker that only names itself: accounts decides.
type named string

func (named) CheckRevocation(context.Context, *x509.Certificate, *x509.Certificate) (pkibridge.RevocationInfo, error) {
	panic("not called")
}

type publisher struct {
	mu  sync.Mutex
	evs []events.Event
}

func (p *publisher) Publish(_ context.Context, e events.Event) error {
	p.mu.Lock()
	p.evs = append(p.evs, e)
	p.mu.Unlock()
	return nil
}

func newAccounts(n int) *accounts {
	a := &accounts{calls: map[string][]string{}, revoked: map[string]bool{}, undecided: map[string]bool{}, announced: map[string]bool{}}
	for i := range n {
		a.ids = append(a.ids, fmt.Sprintf("acct-%04d", i))
	}
	return a
}

func redis(t *testing.T) store.KV {
	kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{storetest.StartRedis(t)}, Prefix: "fm:"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	return kv
}

// TestSweepSharedBetweenNodes: three nodes sweep one round together on
// Redis; every account is checked exactly once, CRL first, OCSP only for
// the undecided, and each stale account is announced once.
func TestSweepSharedBetweenNodes(t *testing.T) {
	kv := redis(t)
	acc := newAccounts(500)
	acc.revoked["acct-0007"], acc.revoked["acct-0300"] = true, true
	acc.undecided["acct-0042"] = true
	pub := &publisher{}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mons []*factsmon.Monitor
	for range 3 {
		m, err := factsmon.New(factsmon.Options{Store: kv, Accounts: acc, Events: pub, CRL: named("crl"), OCSP: named("ocsp"),
			Interval: time.Hour, Partitions: 16, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		mons = append(mons, m)
	}
	var wg sync.WaitGroup
	total := make([]factsmon.Stats, 3)
	for i, m := range mons {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := m.Sweep(context.Background())
			if err != nil {
				t.Error(err)
			}
			total[i] = st
		}()
	}
	wg.Wait()
	sum := factsmon.Stats{}
	for _, st := range total {
		sum.Partitions += st.Partitions
		sum.Checked += st.Checked
		sum.Stale += st.Stale
		sum.OCSP += st.OCSP
	}
	if sum.Partitions != 16 || sum.Checked != 500 || sum.Stale != 2 || sum.OCSP != 1 {
		t.Fatalf("sum of the nodes' work: %+v", sum)
	}
	for _, id := range acc.ids {
		want := "[crl]"
		if id == "acct-0042" {
			want = "[crl ocsp]"
		}
		if got := fmt.Sprint(acc.calls[id]); got != want {
			t.Errorf("%s asked %s, want %s", id, got, want)
		}
	}
	if len(pub.evs) != 2 || pub.evs[0].Kind != events.FactsStale {
		t.Fatalf("events %+v", pub.evs)
	}
	// The same round again: nothing to do.
	st, err := mons[0].Sweep(context.Background())
	if err != nil || st.Checked != 0 {
		t.Fatalf("second sweep of a finished round: %+v %v", st, err)
	}
	// The next round checks everyone again; the announced are not
	// announced again.
	now = now.Add(time.Hour)
	st, err = mons[1].Sweep(context.Background())
	if err != nil || st.Partitions != 16 || st.Checked != 498 || st.Stale != 0 {
		t.Fatalf("next round: %+v %v", st, err)
	}
}

// TestSweepResumesFromCursor: a node that fails mid-partition leaves its
// cursor; the next node resumes there, re-checking at most the accounts
// since the last save.
func TestSweepResumesFromCursor(t *testing.T) {
	kv := store.NewMemory()
	acc := newAccounts(200)
	acc.failAfter = 120
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	opts := factsmon.Options{Store: kv, Accounts: acc, Events: &publisher{}, CRL: named("crl"), Interval: time.Hour, Partitions: 1,
		Now: func() time.Time { return now }}
	m, _ := factsmon.New(opts)
	if _, err := m.Sweep(context.Background()); err == nil {
		t.Fatal("the failure was not reported")
	}
	acc.failAfter = 0
	m2, _ := factsmon.New(opts)
	st, err := m2.Sweep(context.Background())
	if err != nil || st.Partitions != 1 {
		t.Fatalf("resume: %+v %v", st, err)
	}
	twice := 0
	for _, id := range acc.ids {
		switch n := len(acc.calls[id]); {
		case n == 0:
			t.Fatalf("%s never checked", id)
		case n > 1:
			twice++
		}
	}
	// The cursor is saved every 50 accounts: the first node got 120 in,
	// saved at 100, so 20 are checked twice.
	if twice != 20 {
		t.Fatalf("%d accounts checked twice, want 20", twice)
	}
}

func TestNewRefusesMissingParts(t *testing.T) {
	if _, err := factsmon.New(factsmon.Options{}); err == nil {
		t.Fatal("New without parts")
	}
}
