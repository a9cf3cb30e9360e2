package provider

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
)

var errFault = errors.New("injected store failure")

// faultKV fails one operation of a later batch: the first whose kind and
// key prefix match, as a store failing for that operation alone.
type faultKV struct {
	store.KV
	mu     sync.Mutex
	prefix string
	kind   store.OpKind
}

func (f *faultKV) failNext(kind store.OpKind, prefix string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kind, f.prefix = kind, prefix
}

func (f *faultKV) Do(ctx context.Context, ops ...store.Op) ([]store.Result, error) {
	f.mu.Lock()
	at := slices.IndexFunc(ops, func(op store.Op) bool {
		return f.prefix != "" && op.Kind == f.kind && strings.HasPrefix(op.Key, f.prefix)
	})
	if at >= 0 {
		f.prefix = ""
	}
	f.mu.Unlock()
	if at < 0 {
		return f.KV.Do(ctx, ops...)
	}
	res, err := f.KV.Do(ctx, slices.Delete(slices.Clone(ops), at, at+1)...)
	if err != nil {
		return nil, err
	}
	return slices.Insert(res, at, store.Result{Err: errFault}), nil
}

func (o *roundTripOP) userinfoStatus(at string) int {
	r := httptest.NewRequest(http.MethodGet, testIssuer+userinfoPath, nil)
	r.Header.Set("Authorization", "Bearer "+at)
	return o.serve(r).Code
}

// A store failing for one write of the exchange's batch, or for the
// account read with it, is temporary: the RP hears 503 and its retry of
// the same code works, once; a later presentation is a replay that
// revokes. A request that was not deleted changes nothing of that.
func TestExchangeFailuresGiveTheCodeBack(t *testing.T) {
	for _, c := range []struct {
		name   string
		kind   store.OpKind
		prefix string
		fails  bool
	}{
		{"the grant record", store.OpSetNX, "grant:", true},
		{"the grant index", store.OpSetAdd, "acctgrants:", true},
		{"the refresh token", store.OpSet, "rt:", true},
		{"the account for the ID token", store.OpGet, "acct:", true},
		{"the request's deletion", store.OpDelete, "ar:", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &faultKV{KV: store.NewMemory()}
			o := newRoundTripOP(t, f)
			_, code, v := o.toCode()
			f.failNext(c.kind, c.prefix)
			st, out := o.exchange(code, v)
			if c.fails {
				if st != http.StatusServiceUnavailable || out["error"] != "temporarily_unavailable" {
					t.Fatalf("exchange with %s failing: %d %v", c.name, st, out)
				}
				if st, out = o.exchange(code, v); st != http.StatusOK {
					t.Fatalf("the retry: %d %v", st, out)
				}
			} else if st != http.StatusOK {
				t.Fatalf("exchange with %s failing: %d %v", c.name, st, out)
			}
			at := out["access_token"].(string)
			if st := o.userinfoStatus(at); st != http.StatusOK {
				t.Fatalf("userinfo: %d", st)
			}
			if st, out := o.exchange(code, v); st != http.StatusBadRequest || out["error"] != "invalid_grant" {
				t.Fatalf("the code presented again: %d %v", st, out)
			}
			if st := o.userinfoStatus(at); st != http.StatusUnauthorized {
				t.Fatalf("userinfo after the replay: %d, want 401", st)
			}
		})
	}
}

// A spent code presented again by anyone but its own client with its
// redirect URI and verifier changes nothing; by its own client it
// revokes what it minted. Codes spent by the previous version (a
// usedcode tombstone, a grant without the code's digest) still are.
func TestSpentCodePresentedAgain(t *testing.T) {
	other := oauth2.GenerateVerifier()
	for _, legacy := range []bool{false, true} {
		name := "spent here"
		if legacy {
			name = "spent by the previous version"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			o := newRoundTripOP(t, store.NewMemory())
			_, code, v := o.toCode()
			arID, _, _ := strings.Cut(code, codeSep)
			var at string
			if legacy {
				ar, err := o.s.requests.Load(ctx, arID)
				if err != nil {
					t.Fatal(err)
				}
				g := grantRecord{ID: arID, ClientID: "web", AccountID: ar.AccountID, Subject: ar.Subject, Scopes: ar.Scopes, Exp: time.Now().Add(time.Hour)}
				gb, _ := json.Marshal(g)
				tomb, _ := json.Marshal(spentCode{Grant: arID, codeUse: codeUse{ClientID: "web", RedirectURI: testRedirect, Challenge: ar.Challenge}})
				if _, err := o.s.kv.Do(ctx, store.Set(grantKey(arID), gb, time.Hour), store.Set(usedCodeKey(ids.Hash(code)), tomb, time.Hour), o.s.requests.DeleteOp(arID)); err != nil {
					t.Fatal(err)
				}
			} else {
				st, out := o.exchange(code, v)
				if st != http.StatusOK {
					t.Fatalf("exchange: %d %v", st, out)
				}
				at = out["access_token"].(string)
			}
			live := func() bool {
				_, err := o.s.grants.load(ctx, arID)
				return err == nil
			}
			for _, bad := range []struct {
				name string
				form func() (int, map[string]any)
			}{
				{"another verifier", func() (int, map[string]any) { return o.exchange(code, other) }},
				{"another redirect URI", func() (int, map[string]any) {
					return o.tokenCall(map[string][]string{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {v}, "redirect_uri": {testRedirect + "/x"}})
				}},
				{"the code with another random part", func() (int, map[string]any) { return o.exchange(arID+codeSep+ids.Long(), v) }},
			} {
				if st, out := bad.form(); st != http.StatusBadRequest || out["error"] != "invalid_grant" {
					t.Fatalf("%s: %d %v", bad.name, st, out)
				}
				if !live() {
					t.Fatalf("%s revoked the grant", bad.name)
				}
			}
			if st, out := o.exchange(code, v); st != http.StatusBadRequest || out["error"] != "invalid_grant" || !strings.Contains(out["error_description"].(string), "revoked") {
				t.Fatalf("the own client's replay: %d %v", st, out)
			}
			if live() {
				t.Fatal("the replay left the grant live")
			}
			if at != "" && o.userinfoStatus(at) != http.StatusUnauthorized {
				t.Fatal("the access token survived the replay")
			}
		})
	}
}
