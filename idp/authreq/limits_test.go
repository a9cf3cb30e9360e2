package authreq

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
)

func TestCheckParams(t *testing.T) {
	ok := url.Values{"client_id": {"web"}, "state": {"s"}, "nonce": {strings.Repeat("n", paramLimits["nonce"])}, "unknown": {"x", "y"}}
	if e := CheckParams(ok); e != nil {
		t.Fatalf("a request within the caps: %v", e)
	}
	for name, max := range paramLimits {
		q := url.Values{name: {strings.Repeat("a", max)}}
		if e := CheckParams(q); e != nil {
			t.Errorf("%s at its cap: %v", name, e)
		}
		q.Set(name, strings.Repeat("a", max+1))
		e := CheckParams(q)
		if e == nil || e.Param != name || e.Max != max || e.Repeated || !strings.Contains(e.Error(), name) {
			t.Errorf("%s over its cap: %+v", name, e)
		}
		if e != nil && e.BeforeClient() != (name == "client_id" || name == "redirect_uri") {
			t.Errorf("%s: BeforeClient %v", name, e.BeforeClient())
		}
		q[name] = []string{"a", "b"}
		if e := CheckParams(q); e == nil || !e.Repeated || e.Param != name {
			t.Errorf("%s twice: %+v", name, e)
		}
	}
	// What decides where errors may go is reported first, so that the
	// provider shows a page instead of redirecting.
	both := url.Values{"state": {strings.Repeat("s", 5000)}, "redirect_uri": {strings.Repeat("r", 5000)}}
	if e := CheckParams(both); e == nil || e.Param != "redirect_uri" || !e.BeforeClient() {
		t.Fatalf("redirect_uri and state over their caps: %+v", e)
	}
	if e := CheckRequestSize(MaxRequestBytes); e != nil {
		t.Fatal("a request at the size limit refused")
	}
	if e := CheckRequestSize(MaxRequestBytes + 1); e == nil || e.Param != "" || !e.BeforeClient() {
		t.Fatalf("a request over the size limit: %+v", e)
	}
	// Every parameter a stored record keeps is capped.
	for _, name := range []string{"state", "nonce", "scope", "prompt", "max_age", "acr_values", "ui_locales", "login_hint", "claims", "redirect_uri", "code_challenge", "response_mode"} {
		if _, ok := ParamLimits()[name]; !ok {
			t.Errorf("%s has no cap", name)
		}
	}
}

// A record over MaxRecordBytes is never written, by any path.
func TestRecordCap(t *testing.T) {
	stores(t, func(t *testing.T, kv store.KV) {
		ctx := context.Background()
		r := New(kv, time.Minute, nil, "https://id.example")
		big := &AuthRequest{ClientID: "web", State: strings.Repeat("<", MaxRecordBytes/6+1)}
		if err := CheckSize(big); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("CheckSize: %v", err)
		}
		if err := r.Create(ctx, big); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Create: %v", err)
		}
		if _, err := r.Load(ctx, big.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the refused record was stored: %v", err)
		}
		small := &AuthRequest{ClientID: "web", State: "s"}
		if err := CheckSize(small); err != nil {
			t.Fatal(err)
		}
		if err := r.Create(ctx, small); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Update(ctx, small.ID, func(ar *AuthRequest) error {
			ar.LoginHint = strings.Repeat("x", MaxRecordBytes)
			return nil
		}); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Update: %v", err)
		}
		loaded, err := r.Load(ctx, small.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.UpdateLoadedTTL(ctx, loaded, time.Minute, func(ar *AuthRequest) error {
			ar.Nonce = strings.Repeat("x", MaxRecordBytes)
			return nil
		}); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("UpdateLoadedTTL: %v", err)
		}
		got, err := r.Load(ctx, small.ID)
		if err != nil || got.LoginHint != "" || got.Nonce != "" {
			t.Fatalf("the record changed: %+v %v", got, err)
		}
	})
}

// FuzzCheckParams: whatever the query, CheckParams never panics, and
// what it lets through is within every cap and given once.
func FuzzCheckParams(f *testing.F) {
	f.Add("client_id=web&state=abc&nonce=n")
	f.Add("state=a&state=b")
	f.Add("nonce=" + strings.Repeat("n", 600))
	f.Add("redirect_uri=%zz&claims={}")
	f.Add("=&&;=x")
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		e := CheckParams(q)
		if e != nil {
			if e.Error() == "" || (e.Param != "" && e.Max != paramLimits[e.Param]) {
				t.Fatalf("bad refusal %+v", e)
			}
			return
		}
		for name, vs := range q {
			max, known := paramLimits[name]
			if known && (len(vs) > 1 || (len(vs) == 1 && len(vs[0]) > max)) {
				t.Fatalf("%s let through: %d values, %d bytes", name, len(vs), len(vs[0]))
			}
		}
	})
}

// A request accepted at the largest size a new one may have still takes
// everything its sign-in writes into it: the binding, the completion
// with every claim of the catalogue granted, and the code's hash.
func TestRecordRoomForTheFlow(t *testing.T) {
	stores(t, func(t *testing.T, kv store.KV) {
		ctx := context.Background()
		r := New(kv, time.Minute, nil, "https://id.example")
		// Bound at creation, as /authorize binds a GET's browser.
		ar := &AuthRequest{ClientID: "web", RedirectURI: "https://rp.example/cb", Scopes: []string{"openid"}, Challenge: strings.Repeat("c", 43), Binding: ids.Hash("cookie")}
		for CheckSize(ar) == nil {
			ar.State += strings.Repeat("s", 16)
		}
		for CheckSize(ar) != nil {
			ar.State = ar.State[1:]
		}
		if err := r.Create(ctx, ar); err != nil {
			t.Fatalf("create at the limit: %v", err)
		}
		if raw, _ := kv.Get(ctx, "ar:"+ar.ID); len(raw) < MaxRecordBytes-growthBytes-8 {
			t.Fatalf("created %d bytes, not at the limit of %d", len(raw), MaxRecordBytes-growthBytes)
		}
		if err := r.Bind(ctx, ar.ID, ids.Hash("cookie")); err != nil {
			t.Fatalf("bind: %v", err)
		}
		var all []string
		for _, c := range consent.Catalogue() {
			all = append(all, c.Name)
		}
		done, err := r.Complete(ctx, ar.ID, Completion{
			Authentication: Authentication{AccountID: ids.Long(), ACR: "aal3", AMR: []string{"hwk", "pin", "user", "sc"}, Time: time.Now()},
			Subject:        ids.Long(), Granted: all,
		})
		if err != nil {
			t.Fatalf("complete: %v", err)
		}
		if _, err := r.UpdateLoadedTTL(ctx, done, time.Minute, func(ar *AuthRequest) error {
			ar.CodeHash = ids.Hash("code")
			return nil
		}); err != nil {
			t.Fatalf("record the code: %v", err)
		}
		raw, _ := kv.Get(ctx, "ar:"+ar.ID)
		t.Logf("%d bytes at creation's limit, %d at the end of the flow (cap %d)", MaxRecordBytes-growthBytes, len(raw), MaxRecordBytes)
	})
}
