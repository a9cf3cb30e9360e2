package consenttest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/consent"
)

// RunStore runs the suite. newKV must return an empty store (or one whose
// keys cannot collide with another test's); notFound is the error its Get
// wraps for a missing key.
func RunStore(t *testing.T, newKV func(t *testing.T) consent.KV, notFound error) {
	ctx := context.Background()
	now := time.Date(2025, 4, 1, 9, 0, 0, 0, time.UTC)
	req := consent.Resolve([]string{"openid", "name", "birthdate"}, nil, consent.ClientPolicy{
		Claims:          []string{consent.ClaimName, consent.ClaimFamilyName, consent.ClaimGivenName, consent.ClaimBirthdate, consent.ClaimGender},
		AgeAlternatives: []string{consent.ClaimAgeOver20},
	})
	grantAll := func(cur *consent.Grant) (*consent.Grant, error) {
		d := consent.Decide(cur, req, false)
		var allow []string
		for _, it := range d.Items {
			allow = append(allow, it.Claim)
		}
		return consent.Apply(cur, req, d, consent.Choice{Allow: allow}, now)
	}
	newStore := func(t *testing.T) (*consent.Store, consent.KV) {
		kv := newKV(t)
		return consent.NewStore(kv, notFound), kv
	}

	t.Run("GetMissing", func(t *testing.T) {
		s, _ := newStore(t)
		g, err := s.Get(ctx, "acct1", "rp1")
		if err != nil || g != nil {
			t.Fatalf("Get missing = %v, %v; want nil, nil", g, err)
		}
	})

	t.Run("UpdateGetRoundTrip", func(t *testing.T) {
		s, kv := newStore(t)
		g, err := s.Update(ctx, "acct1", "rp1", grantAll)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, "acct1", "rp1")
		if err != nil || got == nil {
			t.Fatalf("Get = %v, %v", got, err)
		}
		want := []string{consent.ClaimName, consent.ClaimFamilyName, consent.ClaimGivenName, consent.ClaimBirthdate}
		if !slices.Equal(got.Claims, want) || !slices.Equal(g.Claims, want) {
			t.Fatalf("claims = %v (returned %v), want %v", got.Claims, g.Claims, want)
		}
		if got.Account != "acct1" || got.Client != "rp1" || !got.At.Equal(now) || !got.GrantedAt[consent.ClaimName].Equal(now) {
			t.Fatalf("grant metadata = %+v", got)
		}
		members, err := kv.SetMembers(ctx, consent.IndexKey("acct1"))
		if err != nil || !slices.Equal(members, []string{"rp1"}) {
			t.Fatalf("index = %v, %v", members, err)
		}
		// The next identical request needs no screen.
		if d := consent.Decide(got, req, false); d.Ask() {
			t.Fatalf("Decide after grant = %+v, want skip", d)
		}
	})

	t.Run("FailedUpdateWritesNothing", func(t *testing.T) {
		s, kv := newStore(t)
		boom := errors.New("refused")
		if _, err := s.Update(ctx, "acct1", "rp1", func(*consent.Grant) (*consent.Grant, error) { return nil, boom }); !errors.Is(err, boom) {
			t.Fatalf("Update = %v, want the callback's error", err)
		}
		if g, _ := s.Get(ctx, "acct1", "rp1"); g != nil {
			t.Fatalf("grant written: %+v", g)
		}
		if m, _ := kv.SetMembers(ctx, consent.IndexKey("acct1")); len(m) != 0 {
			t.Fatalf("index written: %v", m)
		}
		// An essential claim left out is refused the same way.
		ess := consent.Resolve(nil, mustParse(t, `{"userinfo":{"name":{"essential":true}}}`), consent.PolicyForScopes([]string{"name"}))
		_, err := s.Consent(ctx, "acct1", "rp1", ess, false, consent.Choice{}, now)
		if consent.CodeOf(err) != consent.CodeEssentialRefused {
			t.Fatalf("Consent without essential = %v", err)
		}
		if g, _ := s.Get(ctx, "acct1", "rp1"); g != nil {
			t.Fatalf("grant written after refusal: %+v", g)
		}
	})

	t.Run("ConcurrentUpdatesKeepEveryClaim", func(t *testing.T) {
		s, _ := newStore(t)
		claims := []string{consent.ClaimName, consent.ClaimFamilyName, consent.ClaimGivenName, consent.ClaimBirthdate, consent.ClaimGender, consent.ClaimAddress}
		var wg sync.WaitGroup
		errs := make(chan error, len(claims))
		start := make(chan struct{})
		for _, c := range claims {
			one := consent.Resolve(nil, mustParse(t, fmt.Sprintf(`{"userinfo":{%q:null}}`, c)), consent.ClientPolicy{Claims: claims})
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := s.Consent(ctx, "acct1", "rp1", one, false, consent.Choice{Allow: []string{c}}, now)
				errs <- err
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			// Each failed swap means another writer succeeded, so six
			// writers need at most six tries each: no contention error.
			if err != nil {
				t.Fatal(err)
			}
		}
		g, err := s.Get(ctx, "acct1", "rp1")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range claims {
			if !g.Has(c) {
				t.Errorf("claim %s lost by a concurrent update; grant = %v", c, g.Claims)
			}
		}
	})

	t.Run("RevokeDeletesAndReturns", func(t *testing.T) {
		s, kv := newStore(t)
		if _, err := s.Update(ctx, "acct1", "rp1", grantAll); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Update(ctx, "acct1", "rp2", grantAll); err != nil {
			t.Fatal(err)
		}
		g, err := s.Revoke(ctx, "acct1", "rp1")
		if err != nil || g == nil || g.Client != "rp1" || !g.Has(consent.ClaimName) {
			t.Fatalf("Revoke = %+v, %v", g, err)
		}
		if got, _ := s.Get(ctx, "acct1", "rp1"); got != nil {
			t.Fatalf("grant survives revoke: %+v", got)
		}
		list, err := s.List(ctx, "acct1")
		if err != nil || len(list) != 1 || list[0].Client != "rp2" {
			t.Fatalf("List after revoke = %v, %v", list, err)
		}
		if m, _ := kv.SetMembers(ctx, consent.IndexKey("acct1")); !slices.Equal(m, []string{"rp2"}) {
			t.Fatalf("index after revoke = %v", m)
		}
		// Revoking again is not an error and reports nothing revoked.
		if g, err := s.Revoke(ctx, "acct1", "rp1"); err != nil || g != nil {
			t.Fatalf("second Revoke = %+v, %v", g, err)
		}
		// After a revoke the same request asks again.
		if d := consent.Decide(nil, req, false); !d.Ask() {
			t.Fatal("request after revoke skips the screen")
		}
	})

	t.Run("ListOrderedIsolatedAndRepaired", func(t *testing.T) {
		s, kv := newStore(t)
		for _, c := range []string{"rp-b", "rp-a", "rp:with:colons"} {
			if _, err := s.Update(ctx, "acct1", c, grantAll); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Update(ctx, "acct2", "rp-z", grantAll); err != nil {
			t.Fatal(err)
		}
		// A crash between index and grant writes leaves a dangling member.
		if err := kv.SetAdd(ctx, consent.IndexKey("acct1"), 0, "rp-gone"); err != nil {
			t.Fatal(err)
		}
		list, err := s.List(ctx, "acct1")
		if err != nil {
			t.Fatal(err)
		}
		var clients []string
		for _, g := range list {
			clients = append(clients, g.Client)
			if g.Account != "acct1" {
				t.Errorf("grant of %s lists account %q", g.Client, g.Account)
			}
		}
		if !slices.Equal(clients, []string{"rp-a", "rp-b", "rp:with:colons"}) {
			t.Fatalf("List = %v", clients)
		}
		if m, _ := kv.SetMembers(ctx, consent.IndexKey("acct1")); slices.Contains(m, "rp-gone") {
			t.Fatalf("dangling index entry not repaired: %v", m)
		}
		if l, _ := s.List(ctx, "nobody"); len(l) != 0 {
			t.Fatalf("List of an unknown account = %v", l)
		}
	})

	t.Run("CorruptRecord", func(t *testing.T) {
		s, kv := newStore(t)
		if err := kv.SetAdd(ctx, consent.IndexKey("acct1"), 0, "rp1"); err != nil {
			t.Fatal(err)
		}
		if ok, err := kv.SetNX(ctx, consent.GrantKey("acct1", "rp1"), []byte("{not json"), 0); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if _, err := s.Get(ctx, "acct1", "rp1"); consent.CodeOf(err) != consent.CodeCorrupt {
			t.Fatalf("Get corrupt = %v, want %s", err, consent.CodeCorrupt)
		}
		list, err := s.List(ctx, "acct1")
		if err != nil || len(list) != 1 || list[0].Client != "rp1" || len(list[0].Claims) != 0 {
			t.Fatalf("List with corrupt record = %+v, %v", list, err)
		}
		if g, err := s.Revoke(ctx, "acct1", "rp1"); err != nil || g == nil {
			t.Fatalf("Revoke corrupt = %+v, %v", g, err)
		}
		if _, err := kv.Get(ctx, consent.GrantKey("acct1", "rp1")); !errors.Is(err, notFound) {
			t.Fatalf("corrupt grant not deleted: %v", err)
		}
	})

	t.Run("ReadsFirstRecordFormat", func(t *testing.T) {
		s, kv := newStore(t)
		old := `{"claims":["name","family_name","given_name"],"at":"2025-01-02T03:04:05Z"}`
		if ok, err := kv.SetNX(ctx, consent.GrantKey("acct1", "rp1"), []byte(old), 0); !ok || err != nil {
			t.Fatal(ok, err)
		}
		g, err := s.Get(ctx, "acct1", "rp1")
		if err != nil || !g.Has(consent.ClaimGivenName) || g.Client != "rp1" {
			t.Fatalf("Get old record = %+v, %v", g, err)
		}
	})

	t.Run("InvalidIDsChangeNothing", func(t *testing.T) {
		s, _ := newStore(t)
		for _, ids := range [][2]string{{"", "rp"}, {"acct", ""}, {"a:b", "rp"}, {"acct", "rp\n"}, {string(make([]byte, 300)), "rp"}} {
			if _, err := s.Update(ctx, ids[0], ids[1], grantAll); consent.CodeOf(err) != consent.CodeInvalidKey {
				t.Errorf("Update(%q, %q) = %v", ids[0], ids[1], err)
			}
			if _, err := s.Get(ctx, ids[0], ids[1]); consent.CodeOf(err) != consent.CodeInvalidKey {
				t.Errorf("Get(%q, %q) = %v", ids[0], ids[1], err)
			}
			if _, err := s.Revoke(ctx, ids[0], ids[1]); consent.CodeOf(err) != consent.CodeInvalidKey {
				t.Errorf("Revoke(%q, %q) = %v", ids[0], ids[1], err)
			}
		}
		if _, err := s.List(ctx, ""); consent.CodeOf(err) != consent.CodeInvalidKey {
			t.Errorf("List(\"\") = %v", err)
		}
	})

	t.Run("DeleteAccount", func(t *testing.T) {
		s, kv := newStore(t)
		for _, c := range []string{"rp1", "rp2"} {
			if _, err := s.Update(ctx, "acct1", c, grantAll); err != nil {
				t.Fatal(err)
			}
		}
		gs, err := s.DeleteAccount(ctx, "acct1")
		if err != nil || len(gs) != 2 {
			t.Fatalf("DeleteAccount = %v, %v", gs, err)
		}
		for _, c := range []string{"rp1", "rp2"} {
			if g, _ := s.Get(ctx, "acct1", c); g != nil {
				t.Errorf("grant %s survives", c)
			}
		}
		if m, _ := kv.SetMembers(ctx, consent.IndexKey("acct1")); len(m) != 0 {
			t.Errorf("index survives: %v", m)
		}
	})
}

func mustParse(t *testing.T, s string) *consent.ClaimsRequest {
	t.Helper()
	cr, err := consent.ParseClaimsRequest([]byte(s))
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return cr
}
