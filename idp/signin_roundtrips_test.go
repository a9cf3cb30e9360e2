package idp

import (
	"context"
	"encoding/json"
	"errors"
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
		name, ok := opNames[op.Kind]
		if !ok {
			name = fmt.Sprint(op.Kind)
		}
		parts[i] = name + " " + op.Key
	}
	k.note("batch [" + strings.Join(parts, ", ") + "]")
	return k.KV.Do(ctx, ops...)
}

var opNames = map[store.OpKind]string{
	store.OpGet: "get", store.OpSet: "set", store.OpSetNX: "setnx", store.OpDelete: "delete", store.OpIncr: "incr",
	store.OpTake: "take", store.OpCAS: "cas", store.OpSetAdd: "set_add", store.OpSetRemove: "set_remove",
	store.OpSetMembers: "set_members", store.OpPublish: "publish", store.OpHashIncr: "hash_incr",
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
		size := func(key string) int {
			t.Helper()
			b, err := kv.KV.Get(ctx, key)
			if errors.Is(err, store.ErrNotFound) {
				return 0
			}
			if err != nil {
				t.Fatal(err)
			}
			return len(b)
		}
		pending := size("tx:" + txID)
		if raw, err := kv.KV.Get(ctx, "tx:"+txID); err == nil {
			t.Logf("pending: %s", raw)
		}

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
		verified := size("tx:" + txID)
		if raw, err := kv.KV.Get(ctx, "tx:"+txID); err == nil {
			t.Logf("verified: %s", raw)
		}

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

		// What the transaction leaves: a tombstone, and none of its
		// counters.
		tomb := size("tx:" + txID)
		t.Logf("transaction record: %d bytes pending, %d verified, %d finished", pending, verified, tomb)
		if raw, err := kv.KV.Get(ctx, "tx:"+txID); err == nil {
			t.Logf("tombstone: %s", raw)
		}
		if pending == 0 || pending > 900 || verified > pending+200 || tomb == 0 || tomb > 160 {
			t.Errorf("transaction record of %d bytes pending, %d verified, %d finished", pending, verified, tomb)
		}
		if res, err := kv.KV.Do(ctx, store.HashIncr("txn:"+txID, "signin_status", time.Second)); err != nil {
			t.Fatal(err)
		} else if res[0].N != 1 {
			t.Errorf("the transaction's counters outlive the finish: %d polls", res[0].N-1)
		}
		// The tombstone still answers: a second Continue goes on, the
		// wallet hears the transaction was used.
		if code, loc, _ := b.post(action, url.Values{web.CSRFField: {csrfFrom(t, page)}}); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/consent?") {
			t.Errorf("second finish: %d %q", code, loc)
		}
		if err := w.Submit(ctx, o.ts.Client(), tx, walletsim.FormatJWS); walletsim.ErrorCode(err) != "already_used" {
			t.Errorf("a wallet's retry after the finish: %v", err)
		}
	})
}

// writes lists the round trips that may write: anything but a plain read
// or a batch of reads and counts.
func writes(trips []string) []string {
	var out []string
	for _, tr := range trips {
		if strings.HasPrefix(tr, "get ") {
			continue
		}
		out = append(out, tr)
	}
	return out
}

// TestSigninRefusalsWriteNothing: what the sign-in refuses, it refuses
// without writing, and what it counts in the round trip that reads is
// only ever counted for the party the count limits: an unknown request
// or one over the address's limit at /login (the count of the address
// aside), another browser's status poll or finish, a made-up
// transaction, a wallet's submission without a QR token the provider
// issued for the transaction.
func TestSigninRefusalsWriteNothing(t *testing.T) {
	kv := &tripKV{KV: store.NewMemory()}
	o := newSigninOP(t, kv)
	ctx := context.Background()
	owner, stranger := o.browser(), o.browser()
	ar := o.authorize("web")
	txID, _ := owner.openTx(ar, "")
	tx, err := walletsim.Fetch(ctx, o.ts.Client(), owner.walletURL(txID))
	if err != nil {
		t.Fatal(err)
	}
	madeUp := strings.Repeat("A", len(txID))
	_, strangerPage := stranger.openTx(o.authorize("web"), "")
	strangerCSRF := csrfFrom(t, strangerPage)
	page := func(b *browser, u string) func() (int, string) {
		return func() (int, string) { code, _, _ := b.get(u); return code, "" }
	}
	for _, c := range []struct {
		name   string
		do     func() (int, string)
		status int
		code   string
	}{
		{"unknown request", page(stranger, authreq.LoginURL("nope")), http.StatusBadRequest, ""},
		{"another browser's status poll", page(stranger, "/login/tx/"+txID+"/status"), http.StatusForbidden, ""},
		{"a made-up transaction's status", page(stranger, "/login/tx/"+madeUp+"/status"), http.StatusNotFound, ""},
		{"the owner polls a made-up transaction", page(owner, "/login/tx/"+madeUp+"/status"), http.StatusNotFound, ""},
		{"another browser's finish", func() (int, string) {
			code, _, _ := stranger.post("/login/tx/"+txID+"/finish?ar="+ar, url.Values{web.CSRFField: {strangerCSRF}})
			return code, ""
		}, http.StatusForbidden, ""},
		{"a forged QR token", func() (int, string) {
			body := `{"signatures":[{"format":"jws","jws":"a.b.c"}],"comparison_code":"` + tx.ComparisonCode + `","qr_token":"1.AAAAAAAAAAAAAAAAAAAAAA"}`
			return submitRaw(t, o, tx, []byte(body), "application/json")
		}, http.StatusBadRequest, codeInvalidQRToken},
		{"another transaction's QR token, at a made-up one", func() (int, string) {
			body := `{"signatures":[{"format":"jws","jws":"a.b.c"}],"comparison_code":"` + tx.ComparisonCode + `","qr_token":"` + tx.QRToken + `"}`
			target := *tx
			target.URL = o.issuer + "/wallet/v1/transactions/" + madeUp
			return submitRaw(t, o, &target, []byte(body), "application/json")
		}, http.StatusNotFound, codeUnknownTransaction},
	} {
		t.Run(c.name, func(t *testing.T) {
			kv.take()
			status, code := c.do()
			if status != c.status || code != c.code {
				t.Fatalf("%d %q, want %d %q", status, code, c.status, c.code)
			}
			for _, tr := range kv.take() {
				if strings.Contains(tr, "txn:") || strings.Contains(tr, "setnx ") ||
					strings.Contains(tr, "cas ") || strings.Contains(tr, "set ") {
					t.Errorf("wrote: %s", tr)
				}
			}
		})
	}
	if code, st := owner.status(txID); code != http.StatusOK || st.State != txPending {
		t.Fatalf("the owner's transaction after the refusals: %d %+v", code, st)
	}

	// Over the address's limit, /login opens no transaction and binds
	// nothing: its one round trip is the read with the count.
	var limited []string
	for range 40 {
		u := authreq.LoginURL(o.authorize("web"))
		kv.take()
		code, _, _ := o.browser().get(u)
		if code == http.StatusTooManyRequests {
			limited = kv.take()
			break
		}
	}
	if limited == nil {
		t.Fatal("no /login was refused over the address's limit")
	}
	if len(limited) != 1 || !strings.HasPrefix(limited[0], "batch [") {
		t.Fatalf("a refused /login made these round trips:\n  %s", strings.Join(limited, "\n  "))
	}
}

// TestSigninTransactionOfOldID: a transaction made before IDs named
// their browser (an ID without the MAC, the binding in the record) still
// works for its browser, and only for it.
func TestSigninTransactionOfOldID(t *testing.T) {
	kv := store.NewMemory()
	o := newSigninOP(t, kv)
	ctx := context.Background()
	owner := o.browser()
	ar := o.authorize("web")
	txID, _ := owner.openTx(ar, "")
	raw, err := kv.Get(ctx, "tx:"+txID)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	old := "oldFormatID0123456789A" // ids.Short's length
	rec["id"] = old
	b, _ := json.Marshal(rec)
	if err := kv.Set(ctx, "tx:"+old, b, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if code, st := owner.status(old); code != http.StatusOK || st.State != txPending {
		t.Fatalf("the owner's status: %d %+v", code, st)
	}
	if res, _ := kv.Do(ctx, store.HashIncr("txn:"+old, "signin_status", time.Minute)); res[0].N != 2 {
		t.Fatalf("the owner's poll was not counted: %+v", res[0])
	}
	if code, _, page := owner.get(authreq.LoginURL(ar, "tx", old)); code != http.StatusOK || !strings.Contains(page, `id="signin"`) {
		t.Fatalf("the owner's login page: %d", code)
	}
	if code, _ := o.browser().status(old); code != http.StatusForbidden {
		t.Fatalf("another browser's status: %d", code)
	}
}
