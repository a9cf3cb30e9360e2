package idp

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/store"
)

// manualClock stands still unless the test moves it.
type manualClock struct{ t atomic.Int64 }

func (c *manualClock) set(t time.Time)         { c.t.Store(t.UnixNano()) }
func (c *manualClock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *manualClock) Advance(d time.Duration) { c.t.Add(int64(d)) }

// liveGrantsBound is the provider's bound on the live grants an account
// gives one client (docs/rp-integration.md).
const liveGrantsBound = 32

// grantsIndexSlack is how far past the bound an account's index for a
// client grows before the grant that fills it prunes it: up to
// grantsIndexSlack-1 more live grants are indexed between prunings.
const grantsIndexSlack = 8

// The index of an account's grants for a client holds only live ones:
// expired grants leave it at the next sign-in, the oldest go beyond the
// bound (revoked), and withdrawing the client revokes the live ones
// without rewriting the records of those long gone.
func TestGrantIndexHoldsLiveOnly(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		ctx := context.Background()
		clock := &manualClock{}
		clock.set(time.Now())
		// Hundreds of sign-ins of one test browser would hit the per-address
		// limit on /authorize: each comes from its own address, as from
		// residents behind the test's trusted proxy.
		o := newTestOP(t, newKV(t), func(o *Options) {
			o.Now = clock.Now
			o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		})
		o.hc.Transport = &spreadAddrs{next: http.DefaultTransport}
		key := "acctgrants:" + testAccount + ":web"
		grantsIn := func() []string {
			t.Helper()
			members, err := o.kv.SetMembers(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, m := range members {
				ids = append(ids, m[strings.LastIndex(m, ":")+1:]) // "<exp>:<grant>"
			}
			slices.Sort(ids)
			return ids
		}

		// Without offline_access a grant lives as long as its access token.
		for range 3 {
			o.loginTokens(o.oauth("web"), testAccount, nil)
		}
		short := grantsIn()
		if len(short) != 3 {
			t.Fatalf("index after 3 sign-ins: %v", short)
		}
		records := map[string][]byte{}
		for _, id := range short {
			b, err := o.kv.Get(ctx, "grant:{"+id+"}")
			if err != nil {
				t.Fatal(err)
			}
			records[id] = b
		}
		clock.Advance(11 * time.Minute)

		// 3 + n grants: the last one fills the index and prunes it.
		const n = liveGrantsBound + 5
		if 3+n != liveGrantsBound+grantsIndexSlack {
			t.Fatal("the test's sign-ins must end on a pruning")
		}
		var long []*oauth2.Token
		for range n {
			long = append(long, o.loginTokens(o.oauth("web", "offline_access"), testAccount, nil))
			clock.Advance(time.Second) // the families age in order
		}
		live := grantsIn()
		if len(live) != liveGrantsBound {
			t.Fatalf("index after %d more sign-ins holds %d grants, want the %d newest", n, len(live), liveGrantsBound)
		}
		for _, id := range short {
			if slices.Contains(live, id) {
				t.Fatalf("expired grant %s still indexed", id)
			}
		}
		for i, tok := range long {
			want := i >= n-liveGrantsBound
			if in := o.introspect(tok.AccessToken, "web"); in["active"] != want {
				t.Fatalf("family %d of %d: active=%v, want %v", i, n, in["active"], want)
			}
		}

		// The next grant does not prune: it joins the bound ones until
		// the next pruning.
		long = append(long, o.loginTokens(o.oauth("web", "offline_access"), testAccount, nil))
		if got := len(grantsIn()); got != liveGrantsBound+1 {
			t.Fatalf("index between prunings holds %d grants, want %d", got, liveGrantsBound+1)
		}

		if err := o.s.provider.RevokeAccountClient(ctx, testAccount, "web"); err != nil {
			t.Fatal(err)
		}
		if left := grantsIn(); len(left) != 0 {
			t.Fatalf("index after withdrawal: %v", left)
		}
		for _, tok := range long {
			if in := o.introspect(tok.AccessToken, "web"); in["active"] != false {
				t.Fatalf("a family survived the withdrawal: %v", in)
			}
		}
		for id, before := range records {
			after, err := o.kv.Get(ctx, "grant:{"+id+"}")
			if err != nil || string(after) != string(before) {
				t.Fatalf("expired grant %s rewritten by the withdrawal: %s", id, after)
			}
		}

		// Many sign-ins at the very same instant (the clock stands
		// still, so every family expires together): the grant being made
		// is never the one the bound removes, whatever its ID.
		for i := range 200 {
			tok := o.loginTokens(o.oauth("web", "offline_access"), testAccount2, nil)
			if in := o.introspect(tok.AccessToken, "web"); in["active"] != true {
				t.Fatalf("sign-in %d: the new family was revoked by its own sign-in: %v", i, in)
			}
		}
	})
}

// spreadAddrs gives every request its own client address behind a trusted
// proxy.
type spreadAddrs struct {
	next http.RoundTripper
	n    atomic.Uint32
}

func (t *spreadAddrs) RoundTrip(r *http.Request) (*http.Response, error) {
	n := t.n.Add(1)
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", fmt.Sprintf("198.18.%d.%d", n>>8&0xff, n&0xff))
	return t.next.RoundTrip(r)
}
