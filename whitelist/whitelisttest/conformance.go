package whitelisttest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/watashi-id/watashi/whitelist"
)

// NewBackend returns an empty backend (or one whose keys cannot collide
// with another test's). Two calls in one test must return backends that
// share state, as two nodes on one deployment do, when shared is true.
type NewBackend func(t *testing.T) whitelist.Backend

// Clock is a settable clock for expiry tests.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock starts at the current time, so that backends that stamp their
// own entries agree roughly.
func NewClock() *Clock { return &Clock{now: time.Now()} }

// Now is the clock's reading.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// JWKS makes a one-key public JWKS for private_key_jwt clients.
func JWKS(t testing.TB) json.RawMessage {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// WebMetadata is a valid private_key_jwt web client on host.
func WebMetadata(t testing.TB, host string) whitelist.Metadata {
	return whitelist.Metadata{
		ClientName:              "Test RP " + host,
		OrganizationName:        "Test Org",
		RedirectURIs:            []string{"https://" + host + "/cb"},
		TokenEndpointAuthMethod: whitelist.AuthPrivateKeyJWT,
		JWKS:                    JWKS(t),
	}
}

var op = whitelist.Change{Actor: "conformance", Via: "test", Reason: "conformance suite"}

func newRegistry(t *testing.T, b whitelist.Backend, clock *Clock) *whitelist.Registry {
	t.Helper()
	o := whitelist.Options{Backend: b}
	if clock != nil {
		o.Now = clock.Now
	}
	r, err := whitelist.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func add(t *testing.T, r *whitelist.Registry, host string, approve bool) *whitelist.Client {
	t.Helper()
	reg, err := r.Add(context.Background(), whitelist.AddRequest{
		Metadata: WebMetadata(t, host), Tier: whitelist.TierStandard, Approve: approve, Change: op,
	})
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	return reg.Client
}

// Run runs the suite. newBackend is called once per subtest, except
// where a subtest models two nodes: it then builds two registries on
// the one backend it got.
func Run(t *testing.T, newBackend NewBackend) {
	ctx := context.Background()

	t.Run("AddGetList", func(t *testing.T) {
		r := newRegistry(t, newBackend(t), nil)
		c := add(t, r, "a.example", false)
		if c.Status != whitelist.StatusPending || c.Sector != "a.example" || c.Tier != whitelist.TierStandard {
			t.Fatalf("new client = %+v", c)
		}
		got, err := r.Get(ctx, c.ID)
		if err != nil || got.ClientName != "Test RP a.example" || got.Status != whitelist.StatusPending {
			t.Fatalf("Get = %+v, %v", got, err)
		}
		if !got.AllowsScope("birthdate") || got.AllowsScope("address") || got.MinACR != "aal3" {
			t.Fatalf("standard tier not resolved: %v %v", got.AllowedScopes, got.MinACR)
		}
		c2 := add(t, r, "b.example", true)
		list, err := r.List(ctx)
		if err != nil || len(list) != 2 {
			t.Fatalf("List = %d, %v", len(list), err)
		}
		ids := []string{list[0].ID, list[1].ID}
		if !slices.Contains(ids, c.ID) || !slices.Contains(ids, c2.ID) {
			t.Fatalf("List ids %v", ids)
		}
		if _, err := r.Get(ctx, "does-not-exist"); !errors.Is(err, whitelist.ErrUnknownClient) {
			t.Fatalf("Get unknown = %v", err)
		}
	})

	t.Run("Transitions", func(t *testing.T) {
		r := newRegistry(t, newBackend(t), nil)
		// Reach each starting status, then try every action.
		reach := map[whitelist.Status][]string{
			whitelist.StatusPending:   nil,
			whitelist.StatusApproved:  {"approve"},
			whitelist.StatusSuspended: {"approve", "suspend"},
			whitelist.StatusRevoked:   {"revoke"},
		}
		want := map[whitelist.Status]map[string]whitelist.Status{
			whitelist.StatusPending:   {"approve": whitelist.StatusApproved, "revoke": whitelist.StatusRevoked},
			whitelist.StatusApproved:  {"suspend": whitelist.StatusSuspended, "revoke": whitelist.StatusRevoked},
			whitelist.StatusSuspended: {"resume": whitelist.StatusApproved, "revoke": whitelist.StatusRevoked},
			whitelist.StatusRevoked:   {},
		}
		n := 0
		for from, path := range reach {
			for _, action := range []string{"approve", "suspend", "resume", "revoke"} {
				n++
				c := add(t, r, fmt.Sprintf("t%d.example", n), false)
				for _, a := range path {
					if _, err := r.Transition(ctx, c.ID, a, op); err != nil {
						t.Fatalf("setup %s: %v", a, err)
					}
				}
				before, _ := r.History(ctx, c.ID)
				got, err := r.Transition(ctx, c.ID, action, whitelist.Change{Actor: "alice", Reason: "because"})
				after, _ := r.History(ctx, c.ID)
				stored, gerr := r.Get(ctx, c.ID)
				if gerr != nil {
					t.Fatal(gerr)
				}
				to, ok := want[from][action]
				if !ok {
					if !errors.Is(err, whitelist.ErrInvalidTransition) {
						t.Errorf("%s from %s: err = %v, want ErrInvalidTransition", action, from, err)
					}
					if stored.Status != from || len(after) != len(before) {
						t.Errorf("%s from %s: refused change altered state: %s, %d→%d log entries", action, from, stored.Status, len(before), len(after))
					}
					continue
				}
				if err != nil || got.Status != to || stored.Status != to {
					t.Errorf("%s from %s: got %v/%v, %v; want %s", action, from, got, stored.Status, err, to)
					continue
				}
				last := after[len(after)-1]
				if len(after) != len(before)+1 || last.Action != action || last.From != from || last.To != to ||
					last.Actor != "alice" || last.Reason != "because" || stored.StatusChangedBy != "alice" {
					t.Errorf("%s from %s: audit %+v", action, from, last)
				}
			}
		}
	})

	t.Run("AuditLog", func(t *testing.T) {
		r := newRegistry(t, newBackend(t), nil)
		c := add(t, r, "audit.example", false)
		steps := []struct {
			action string
			actor  string
			reason string
		}{
			{"approve", "alice", "contract signed"},
			{"suspend", "bob", "incident 42"},
			{"resume", "alice", "incident closed"},
			{"revoke", "carol", "contract ended"},
		}
		for _, s := range steps {
			if _, err := r.Transition(ctx, c.ID, s.action, whitelist.Change{Actor: s.actor, Via: "cli", Reason: s.reason}); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Delete(ctx, c.ID, whitelist.Change{Actor: "dave", Reason: "cleanup"}); err != nil {
			t.Fatal(err)
		}
		h, err := r.History(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantActions := []string{"register", "approve", "suspend", "resume", "revoke", "delete"}
		if len(h) != len(wantActions) {
			t.Fatalf("history has %d entries: %+v", len(h), h)
		}
		chain := []whitelist.Status{"", "pending", "approved", "suspended", "approved", "revoked"}
		for i, ev := range h {
			if ev.Action != wantActions[i] || ev.ClientID != c.ID || ev.ID == "" || ev.At.IsZero() {
				t.Errorf("entry %d = %+v", i, ev)
			}
			if i > 0 && (ev.From != chain[i] || ev.At.Before(h[i-1].At) || ev.ID == h[i-1].ID) {
				t.Errorf("entry %d out of order or wrong from: %+v", i, ev)
			}
			if i >= 1 && i <= 4 {
				s := steps[i-1]
				if ev.Actor != s.actor || ev.Reason != s.reason || ev.Via != "cli" || ev.To != chain[i+1] {
					t.Errorf("entry %d = %+v, want %+v", i, ev, s)
				}
			}
		}
		if h[5].Actor != "dave" || h[5].From != whitelist.StatusRevoked {
			t.Errorf("delete entry %+v", h[5])
		}
		if _, err := r.Get(ctx, c.ID); !errors.Is(err, whitelist.ErrUnknownClient) {
			t.Fatalf("deleted client still there: %v", err)
		}
		// The ID of a deleted client is never reused.
		_, err = r.Add(ctx, whitelist.AddRequest{Metadata: WebMetadata(t, "audit.example"), Tier: whitelist.TierBasic, ID: c.ID, Change: op})
		if !errors.Is(err, whitelist.ErrExists) {
			t.Fatalf("reusing a deleted client's ID: %v", err)
		}
		if err := r.Delete(ctx, c.ID, op); !errors.Is(err, whitelist.ErrUnknownClient) {
			t.Fatalf("second delete: %v", err)
		}
		if _, err := r.Approve(ctx, c.ID, whitelist.Change{}); err == nil {
			t.Fatal("a change without an actor was accepted")
		}
	})

	t.Run("Authorize", func(t *testing.T) {
		r := newRegistry(t, newBackend(t), nil)
		if _, err := r.Authorize(ctx, "nobody"); !errors.Is(err, whitelist.ErrUnknownClient) {
			t.Fatalf("unknown: %v", err)
		}
		c := add(t, r, "authz.example", false)
		cases := []struct {
			action string
			want   error
		}{
			{"", whitelist.ErrPending},
			{"approve", nil},
			{"suspend", whitelist.ErrSuspended},
			{"resume", nil},
			{"revoke", whitelist.ErrRevoked},
		}
		for _, tc := range cases {
			if tc.action != "" {
				if _, err := r.Transition(ctx, c.ID, tc.action, op); err != nil {
					t.Fatal(err)
				}
			}
			got, err := r.Authorize(ctx, c.ID)
			if tc.want == nil {
				if err != nil || got.ID != c.ID || !got.AllowsScope("openid") || !got.MeetsACR("aal3") || got.MeetsACR("aal2") {
					t.Fatalf("after %q: %+v, %v", tc.action, got, err)
				}
				got.RedirectURIs[0] = "https://evil.example/" // a copy: must not reach the cache
				again, _ := r.Authorize(ctx, c.ID)
				if again.RedirectURIs[0] != "https://authz.example/cb" {
					t.Fatal("Authorize returned the cached record itself")
				}
			} else if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("after %q: %v, want %v", tc.action, err, tc.want)
			}
		}
	})

	t.Run("FallbackTTLWithoutSubscriber", func(t *testing.T) {
		b := newBackend(t)
		clock := NewClock()
		a := newRegistry(t, b, nil)
		node := newRegistry(t, b, clock) // no Run: fallback TTL only
		c := add(t, a, "fallback.example", true)
		if _, err := node.Authorize(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Suspend(ctx, c.ID, op); err != nil {
			t.Fatal(err)
		}
		clock.Advance(1100 * time.Millisecond)
		if _, err := node.Authorize(ctx, c.ID); !errors.Is(err, whitelist.ErrSuspended) {
			t.Fatalf("after the fallback TTL: %v, want ErrSuspended", err)
		}
	})

	t.Run("PropagationWithinOneSecond", func(t *testing.T) {
		b := newBackend(t)
		a := newRegistry(t, b, nil)
		node := newRegistry(t, b, nil)
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan struct{})
		go func() { defer close(done); _ = node.Run(rctx) }()
		defer func() { cancel(); <-done }()
		c := add(t, a, "prop.example", true)
		for range 3 {
			WaitLive(t, node, c.ID)
			d, err := MeasureSuspension(ctx, a, node, c.ID, time.Second)
			if err != nil {
				t.Fatalf("suspension did not reach the other node: %v", err)
			}
			t.Logf("propagation %v", d)
			if _, err := a.Resume(ctx, c.ID, op); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("InitialAccessTokens", func(t *testing.T) {
		clock := NewClock()
		r := newRegistry(t, newBackend(t), clock)
		tok, rec, err := r.IssueToken(ctx, whitelist.TokenRequest{Tier: whitelist.TierBasic, TTL: time.Hour, OneTime: true, Change: op})
		if err != nil || tok == "" || rec.Hash == "" || rec.Hash == tok {
			t.Fatalf("IssueToken: %q %+v %v", tok, rec, err)
		}
		if _, _, err := r.IssueToken(ctx, whitelist.TokenRequest{Tier: "platinum", Change: op}); err == nil {
			t.Fatal("token for an unknown tier issued")
		}
		tok2, rec2, err := r.IssueToken(ctx, whitelist.TokenRequest{Tier: whitelist.TierFull, TTL: 2 * time.Hour, AutoApprove: true, Change: op})
		if err != nil {
			t.Fatal(err)
		}
		_ = tok2
		list, err := r.ListTokens(ctx)
		if err != nil || len(list) != 2 {
			t.Fatalf("ListTokens: %d %v", len(list), err)
		}
		for _, l := range list {
			if l.State(clock.Now()) != "active" {
				t.Fatalf("fresh token %s is %s", l.ID, l.State(clock.Now()))
			}
		}
		if _, err := r.RevokeToken(ctx, rec2.ID, op); err != nil {
			t.Fatal(err)
		}
		if _, err := r.RevokeToken(ctx, rec2.ID, op); !errors.Is(err, whitelist.ErrTokenRevoked) {
			t.Fatalf("second revoke: %v", err)
		}
		if _, err := r.RevokeToken(ctx, "iat_0000000000000000", op); !errors.Is(err, whitelist.ErrUnknownToken) {
			t.Fatalf("revoke unknown: %v", err)
		}
		clock.Advance(61 * time.Minute)
		list, _ = r.ListTokens(ctx)
		states := map[string]string{}
		for _, l := range list {
			states[l.ID] = l.State(clock.Now())
		}
		if states[rec.ID] != "expired" || states[rec2.ID] != "revoked" {
			t.Fatalf("states %v", states)
		}
		h, err := r.TokenHistory(ctx)
		if err != nil || len(h) != 3 || h[0].Action != whitelist.ActionTokenIssue || h[2].Action != whitelist.ActionTokenRevoke || h[2].TokenID != rec2.ID {
			t.Fatalf("token history %+v %v", h, err)
		}
	})

	t.Run("ConcurrentTransitions", func(t *testing.T) {
		r := newRegistry(t, newBackend(t), nil)
		c := add(t, r, "race.example", true)
		var wg sync.WaitGroup
		var ok, refused atomic.Int32
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := r.Suspend(ctx, c.ID, op)
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, whitelist.ErrInvalidTransition):
					refused.Add(1)
				default:
					t.Errorf("suspend: %v", err)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 1 || refused.Load() != 7 {
			t.Fatalf("%d suspensions succeeded, %d refused; want exactly one", ok.Load(), refused.Load())
		}
		h, _ := r.History(ctx, c.ID)
		n := 0
		for _, ev := range h {
			if ev.Action == "suspend" {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d suspend entries in the audit log", n)
		}
	})

	t.Run("RotateSecret", func(t *testing.T) {
		r := newRegistry(t, newBackend(t), nil)
		m := WebMetadata(t, "secret.example")
		m.TokenEndpointAuthMethod, m.JWKS = whitelist.AuthClientSecretBasic, nil
		reg, err := r.Add(ctx, whitelist.AddRequest{Metadata: m, Tier: whitelist.TierBasic, Approve: true, Change: op})
		if err != nil || reg.ClientSecret == "" {
			t.Fatalf("Add: %v", err)
		}
		if reg.Client.SecretHash == "" || reg.Client.SecretHash == reg.ClientSecret || !reg.Client.VerifySecret(reg.ClientSecret) {
			t.Fatal("secret not stored hashed")
		}
		s2, err := r.RotateSecret(ctx, reg.Client.ID, op)
		if err != nil || s2 == reg.ClientSecret {
			t.Fatalf("RotateSecret: %v", err)
		}
		c, _ := r.Authorize(ctx, reg.Client.ID)
		if c.VerifySecret(reg.ClientSecret) || !c.VerifySecret(s2) {
			t.Fatal("rotation did not replace the secret")
		}
		pk := add(t, r, "pk.example", true)
		if _, err := r.RotateSecret(ctx, pk.ID, op); !errors.Is(err, whitelist.ErrNoSecret) {
			t.Fatalf("rotate on private_key_jwt: %v", err)
		}
	})
}

// WaitLive waits until node serves id from a live subscription, i.e. its
// Run has subscribed. It polls Authorize, which is cheap.
func WaitLive(t testing.TB, node *whitelist.Registry, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !node.Live() {
		if time.Now().After(deadline) {
			t.Fatal("the node's Run never subscribed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := node.Authorize(context.Background(), id); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
}

// MeasureSuspension suspends id on a and polls Authorize on node until it
// refuses, returning the delay; it fails after limit.
func MeasureSuspension(ctx context.Context, a, node *whitelist.Registry, id string, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	if _, err := a.Suspend(ctx, id, op); err != nil {
		return 0, err
	}
	for {
		_, err := node.Authorize(ctx, id)
		if errors.Is(err, whitelist.ErrSuspended) {
			return time.Since(start), nil
		}
		if err != nil {
			return 0, err
		}
		if time.Since(start) > limit {
			return 0, fmt.Errorf("still authorised after %v", limit)
		}
		time.Sleep(100 * time.Microsecond)
	}
}
