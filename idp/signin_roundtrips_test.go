package idp

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/idp/web"
)

// tripKV records every round trip to the store it wraps: one line per
// single operation or batch, naming the operations and their keys.
type tripKV struct {
	store.KV
	mu    sync.Mutex
	trips []string
}

func (k *tripKV) note(s string) { k.mu.Lock(); k.trips = append(k.trips, s); k.mu.Unlock() }

// take returns the round trips since the last take.
func (k *tripKV) take() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	t := k.trips
	k.trips = nil
	return t
}

func (k *tripKV) Get(ctx context.Context, key string) ([]byte, error) {
	k.note("get " + key)
	return k.KV.Get(ctx, key)
}
func (k *tripKV) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	k.note("set " + key)
	return k.KV.Set(ctx, key, v, ttl)
}
func (k *tripKV) SetNX(ctx context.Context, key string, v []byte, ttl time.Duration) (bool, error) {
	k.note("setnx " + key)
	return k.KV.SetNX(ctx, key, v, ttl)
}
func (k *tripKV) Take(ctx context.Context, key string) ([]byte, error) {
	k.note("take " + key)
	return k.KV.Take(ctx, key)
}
func (k *tripKV) Delete(ctx context.Context, keys ...string) error {
	k.note("delete " + strings.Join(keys, " "))
	return k.KV.Delete(ctx, keys...)
}
func (k *tripKV) CompareAndSwap(ctx context.Context, key string, old, v []byte) (bool, error) {
	k.note("cas " + key)
	return k.KV.CompareAndSwap(ctx, key, old, v)
}
func (k *tripKV) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	k.note("incr " + key)
	return k.KV.Incr(ctx, key, ttl)
}
func (k *tripKV) SetAdd(ctx context.Context, key string, ttl time.Duration, m ...string) error {
	k.note("set_add " + key)
	return k.KV.SetAdd(ctx, key, ttl, m...)
}
func (k *tripKV) SetMembers(ctx context.Context, key string) ([]string, error) {
	k.note("set_members " + key)
	return k.KV.SetMembers(ctx, key)
}
func (k *tripKV) SetRemove(ctx context.Context, key string, m ...string) error {
	k.note("set_remove " + key)
	return k.KV.SetRemove(ctx, key, m...)
}
func (k *tripKV) Publish(ctx context.Context, ch string, m []byte) error {
	k.note("publish " + ch)
	return k.KV.Publish(ctx, ch, m)
}
func (k *tripKV) StreamAdd(ctx context.Context, key string, v []byte) (string, error) {
	k.note("stream_add " + key)
	return k.KV.StreamAdd(ctx, key, v)
}
func (k *tripKV) StreamRange(ctx context.Context, key, after string, n int) ([]store.StreamEntry, error) {
	k.note("stream_range " + key)
	return k.KV.StreamRange(ctx, key, after, n)
}
func (k *tripKV) StreamTrim(ctx context.Context, key, min string) (int64, error) {
	k.note("stream_trim " + key)
	return k.KV.StreamTrim(ctx, key, min)
}
func (k *tripKV) Do(ctx context.Context, ops ...store.Op) ([]store.Result, error) {
	parts := make([]string, len(ops))
	for i, op := range ops {
		parts[i] = fmt.Sprintf("%d %s", op.Kind, op.Key)
	}
	k.note("batch [" + strings.Join(parts, ", ") + "]")
	return k.KV.Do(ctx, ops...)
}

// sessionTrip reports whether a round trip is the SSO session's own
// (session.Manager.Begin: its records, its index and its SignedIn
// event), which the sign-in does not decide. The sign-in itself writes
// to the event outbox only for a proofing that links a card, which the
// measured sign-in is not.
func sessionTrip(trip string) bool {
	for _, p := range []string{"sess:", "sessref:", "acctsess:", "sessrp:", "acctfam:", "acctfamn:", "events:"} {
		if strings.Contains(trip, " "+p) {
			return true
		}
	}
	return false
}

// TestSigninRoundTrips pins the store round trips of each step of a
// JPKI sign-in in a new browser, so that a change that adds one fails
// here: /login, the login page, the wallet's fetch and submission, a
// status poll, and the finish (the SSO session's own round trips
// apart).
func TestSigninRoundTrips(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		kv := &tripKV{KV: newKV(t)}
		o := newSigninOP(t, kv)
		ctx := context.Background()
		w := o.pki.wallet(t, factsTaro)
		// Enroll first (a proofing), then warm up one sign-in: keys and
		// caches loaded once per node are not a login's cost.
		o.browser().signIn(w, "web", authreq.PurposeProofing, walletsim.FormatJWS)
		o.browser().signIn(w, "web", "", walletsim.FormatJWS)

		b := o.browser()
		ar := o.authorize("web")
		loaded, err := o.s.requests.Load(ctx, ar)
		if err != nil {
			t.Fatal(err)
		}
		kv.take()
		steps := map[string][]string{}
		step := func(name string, want int) {
			t.Helper()
			trips := kv.take()
			var own []string
			for _, tr := range trips {
				if !sessionTrip(tr) {
					own = append(own, tr)
				}
			}
			steps[name] = own
			if len(own) > want {
				t.Errorf("%s: %d round trips, want at most %d:\n  %s", name, len(own), want, strings.Join(own, "\n  "))
			} else {
				t.Logf("%s: %d round trips:\n  %s", name, len(own), strings.Join(own, "\n  "))
			}
		}

		code, loc, body := b.get(authreq.LoginURL(ar))
		if code != http.StatusSeeOther || !strings.Contains(loc, "tx=") {
			t.Fatalf("login: %d %q\n%s", code, loc, body)
		}
		// The binding costs its compare-and-swap only when the request
		// was not bound to the browser when it was made.
		bind := 0
		if loaded.Binding == "" {
			bind = 1
		}
		step("/login", 2+bind)
		lu, _ := url.Parse(loc)
		txID := lu.Query().Get("tx")

		if code, _, page := b.get(loc); code != http.StatusOK {
			t.Fatalf("login page: %d\n%s", code, page)
		}
		step("login page", 1)

		st, s := b.status(txID)
		if st != http.StatusOK || s.QR == nil {
			t.Fatalf("status: %d %+v", st, s)
		}
		step("status poll", 1)

		tx, err := walletsim.Fetch(ctx, o.ts.Client(), s.QR.TxURL)
		if err != nil {
			t.Fatal(err)
		}
		step("wallet fetch", 1)

		if err := w.Submit(ctx, o.ts.Client(), tx, walletsim.FormatJWS); err != nil {
			t.Fatal(err)
		}
		step("wallet submission", 4)

		if st, s := b.status(txID); st != http.StatusOK || s.State != "verified" {
			t.Fatalf("status after the wallet: %d %+v", st, s)
		}
		step("status poll (verified)", 1)

		code, _, page := b.get(authreq.LoginURL(ar, "tx", txID))
		if code != http.StatusOK {
			t.Fatalf("verified page: %d\n%s", code, page)
		}
		step("login page (verified)", 1)

		action, _ := pageForm(t, page, "finish-now")
		code, loc, body = b.post(action, url.Values{web.CSRFField: {csrfFrom(t, page)}})
		if code != http.StatusSeeOther || !strings.HasPrefix(loc, "/consent?") {
			t.Fatalf("finish: %d %q\n%s", code, loc, body)
		}
		step("finish", 2)
	})
}
