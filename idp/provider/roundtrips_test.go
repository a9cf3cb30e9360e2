package provider

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

// countedStore wraps kv in the store's own instrumentation and returns a
// function reading how many round trips (a batch is one) went through it
// so far.
func countedStore(t testing.TB, kv store.KV) (store.KV, func() int) {
	t.Helper()
	reg := prometheus.NewRegistry()
	in, err := store.Instrument(kv, reg)
	if err != nil {
		t.Fatal(err)
	}
	return in, func() int {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, mf := range mfs {
			if mf.GetName() != "watashi_store_operation_duration_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				n += int(m.GetHistogram().GetSampleCount())
			}
		}
		return n
	}
}

// roundTripOP is the provider on a counted store, with its routes and
// the session index's share of a code exchange counted apart (it belongs
// to package session).
type roundTripOP struct {
	t      *testing.T
	s      *Server
	h      http.Handler
	ops    func() int
	issued int // round trips of session.Manager.TokensIssued
	calls  int // its calls
	// account signs in; "" is "acct-1".
	account string
}

func newRoundTripOP(t *testing.T, kv store.KV) *roundTripOP {
	counted, ops := countedStore(t, kv)
	o := &roundTripOP{t: t, s: newTestServerOn(t, counted), ops: ops}
	if err := o.s.keys.(interface{ Ensure(context.Context) error }).Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	inner := o.s.grants.issued
	o.s.grants.issued = func(ctx context.Context, sessionID, accountID, authenticator, clientID, grantID string, exp time.Time) error {
		before := o.ops()
		err := inner(ctx, sessionID, accountID, authenticator, clientID, grantID, exp)
		o.issued += o.ops() - before
		o.calls++
		return err
	}
	mux := http.NewServeMux()
	o.s.Mount(mux)
	o.h = mux
	return o
}

// step runs fn and returns the round trips it made, less the session
// index's.
func (o *roundTripOP) step(fn func()) int {
	o.t.Helper()
	before, issued := o.ops(), o.issued
	fn()
	return o.ops() - before - (o.issued - issued)
}

func (o *roundTripOP) serve(r *http.Request) *httptest.ResponseRecorder {
	r.RemoteAddr = "192.0.2.7:1234"
	w := httptest.NewRecorder()
	o.h.ServeHTTP(w, r)
	return w
}

func (o *roundTripOP) token(form url.Values) map[string]any {
	o.t.Helper()
	code, out := o.tokenCall(form)
	if code != http.StatusOK {
		o.t.Fatalf("token %s: %d %v", form.Get("grant_type"), code, out)
	}
	return out
}

// tokenCall posts form to the token endpoint as the public client "web".
func (o *roundTripOP) tokenCall(form url.Values) (int, map[string]any) {
	o.t.Helper()
	form.Set("client_id", "web")
	r := httptest.NewRequest(http.MethodPost, testIssuer+tokenPath, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := o.serve(r)
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		o.t.Fatalf("token answer %d: %v %s", w.Code, err, w.Body)
	}
	return w.Code, out
}

// exchange is the code exchange of code with verifier v.
func (o *roundTripOP) exchange(code, v string) (int, map[string]any) {
	return o.tokenCall(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {v}, "redirect_uri": {testRedirect}})
}

// login runs a whole login through the provider's steps (the sign-in and
// consent done directly on the request) and returns each step's round
// trips.
func (o *roundTripOP) login() map[string]int {
	got, code, v := o.toCode()
	return o.afterCode(got, code, v)
}

// toCode runs a login up to the code and returns the round trips of its
// steps, the code and the PKCE verifier.
func (o *roundTripOP) toCode() (got map[string]int, code, v string) {
	t := o.t
	t.Helper()
	ctx := context.Background()
	got = map[string]int{}
	v = oauth2.GenerateVerifier()
	q := url.Values{"client_id": {"web"}, "response_type": {"code"}, "scope": {"openid offline_access name"},
		"redirect_uri": {testRedirect}, "state": {"s"}, "nonce": {"n"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(v)}, "code_challenge_method": {"S256"}}
	var w *httptest.ResponseRecorder
	got["authorize"] = o.step(func() {
		w = o.serve(httptest.NewRequest(http.MethodGet, testIssuer+authorizePath+"?"+q.Encode(), nil))
	})
	loc, _ := url.Parse(w.Header().Get("Location"))
	id := loc.Query().Get("id")
	var bind *http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == o.s.web.CookieName("bind") {
			bind = c
		}
	}
	if w.Code != http.StatusFound || loc.Path != authreq.LoginPath || id == "" || bind == nil {
		t.Fatalf("authorize: %d %q, binding cookie %v", w.Code, w.Header().Get("Location"), bind)
	}
	// The login page finds the request bound to its browser already.
	ar, err := o.s.requests.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	got["login binding"] = o.step(func() {
		if err := o.s.requests.BindLoaded(ctx, ar, ids.Hash(bind.Value)); err != nil {
			t.Fatal(err)
		}
	})
	acct := o.account
	if acct == "" {
		acct = "acct-1"
	}
	if _, err := o.s.requests.Complete(ctx, id, authreq.Completion{
		Authentication: authreq.Authentication{AccountID: acct, ACR: "aal3", AMR: []string{"hwk", "pin"}, Time: time.Now()},
		Subject:        "sub-1", Granted: []string{"name"},
	}); err != nil {
		t.Fatal(err)
	}
	got["callback"] = o.step(func() {
		r := httptest.NewRequest(http.MethodGet, authreq.CallbackURL(testIssuer, id), nil)
		r.AddCookie(bind)
		w = o.serve(r)
	})
	cb, _ := url.Parse(w.Header().Get("Location"))
	code = cb.Query().Get("code")
	if w.Code != http.StatusFound || code == "" {
		t.Fatalf("callback: %d %q", w.Code, w.Header().Get("Location"))
	}
	return got, code, v
}

// afterCode runs the exchange of code, userinfo and a refresh, adding
// their round trips to got.
func (o *roundTripOP) afterCode(got map[string]int, code, v string) map[string]int {
	t := o.t
	t.Helper()
	calls := o.calls
	var tok map[string]any
	got["code exchange"] = o.step(func() {
		tok = o.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {v}, "redirect_uri": {testRedirect}})
	})
	if o.calls != calls+1 {
		t.Fatalf("the session index heard of %d families, want 1", o.calls-calls)
	}
	got["userinfo"] = o.step(func() {
		r := httptest.NewRequest(http.MethodGet, testIssuer+userinfoPath, nil)
		r.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
		if w := o.serve(r); w.Code != http.StatusOK {
			t.Fatalf("userinfo: %d %s", w.Code, w.Body)
		}
	})
	got["refresh"] = o.step(func() {
		o.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}})
	})
	return got
}

// TestLoginRoundTrips pins the store round trips of the provider's steps
// of a login, so that a regression fails: /authorize stores the request
// with its rate limit and binding in one; the login page has nothing left
// to bind; the callback reads the request and records the code with the
// code's lifetime in one swap; the exchange reads the request and the
// grant that would be its tombstone, then writes the grant, its index,
// the refresh token, deletes the request and reads the account for the
// ID token in one batch (the session index's round trips are its own,
// counted apart); userinfo reads grant, revocation marker and account in
// one; the refresh grant reads the token and its grant, then consumes the
// token, writes the next, reads the grant again and the account in one.
func TestLoginRoundTrips(t *testing.T) {
	want := map[string]int{"authorize": 1, "login binding": 0, "callback": 2, "code exchange": 2, "userinfo": 1, "refresh": 2}
	for _, be := range []struct {
		name string
		kv   func(t *testing.T) store.KV
	}{
		{"memory", func(*testing.T) store.KV { return store.NewMemory() }},
		{"redis", func(t *testing.T) store.KV {
			kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{storetest.StartRedis(t)}, Prefix: "test:"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { kv.Close() })
			return kv
		}},
	} {
		t.Run(be.name, func(t *testing.T) {
			o := newRoundTripOP(t, be.kv(t))
			o.login() // the first one makes the signing keys
			for i := range maxLiveGrants + indexSlack - 2 {
				got := o.login()
				for step, n := range want {
					if got[step] != n {
						t.Errorf("login %d, %s: %d round trips, want %d", i+2, step, got[step], n)
					}
				}
			}
			// The grant that fills the account's index for the client
			// prunes it: one round trip lists it, two revoke the oldest
			// families beyond the bound, one removes them from the index.
			if got := o.login()["code exchange"]; got != want["code exchange"]+4 {
				t.Errorf("pruning exchange: %d round trips, want %d", got, want["code exchange"]+4)
			}
			if got := o.login()["code exchange"]; got != want["code exchange"] {
				t.Errorf("the exchange after the pruning: %d round trips, want %d", got, want["code exchange"])
			}
		})
	}
}
