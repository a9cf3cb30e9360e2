package consentflow

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/templates"
)

// plainAccounts keeps accounts as plain JSON in the store, read as the
// real store reads them: the record and its data key in one batch.
type plainAccounts struct{ kv store.KV }

func accountKey(id string) string { return "acct:" + id }
func dataKeyKey(id string) string { return "dk:" + id }

func (p plainAccounts) put(t *testing.T, a *account.Account) {
	b, _ := json.Marshal(a)
	ctx := context.Background()
	if err := p.kv.Set(ctx, accountKey(a.ID), b, 0); err != nil {
		t.Fatal(err)
	}
	if err := p.kv.Set(ctx, dataKeyKey(a.ID), []byte("k"), 0); err != nil {
		t.Fatal(err)
	}
}

func (p plainAccounts) Get(ctx context.Context, id string) (*account.Account, error) {
	res, err := p.kv.Do(ctx, p.ReadOps(id)...)
	if err != nil {
		return nil, err
	}
	for _, r := range res {
		if r.Err != nil {
			return nil, r.Err
		}
	}
	return p.ForReleaseFrom(id, res)
}

func (p plainAccounts) RecheckFacts(_ context.Context, a *account.Account) (*account.Account, error) {
	return a, nil
}

func (p plainAccounts) ReadOps(id string) []store.Op {
	return []store.Op{store.Get(accountKey(id)), store.Get(dataKeyKey(id))}
}

func (p plainAccounts) ForReleaseFrom(id string, res []store.Result) (*account.Account, error) {
	if res[0].Err != nil {
		return &account.Account{ID: id}, nil
	}
	a := new(account.Account)
	return a, json.Unmarshal(res[0].Val, a)
}

type env struct {
	h        *Handler
	kit      *web.Kit
	kv       store.KV
	trips    func() uint64
	requests *authreq.Repo
	sessions *session.Manager
	grants   *consent.Store
	accounts plainAccounts
	now      time.Time
}

// newEnv builds the consent step on a memory store whose round trips
// the store's own instrumentation counts (a batch is one).
func newEnv(t *testing.T) *env {
	t.Helper()
	set, err := templates.New("")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	reg := prometheus.NewRegistry()
	kv, err := store.Instrument(store.NewMemory(), reg)
	if err != nil {
		t.Fatal(err)
	}
	key := bytes.Repeat([]byte{7}, 32)
	k, err := web.New(web.Options{Issuer: "https://id.example.jp", CookieKey: key, Counter: store.NewMemory(), Templates: set,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := clients.New(context.Background(), clients.Options{PairwiseKey: key, Static: []*clients.Client{{
		ID: "rp", DisplayName: "RP", AuthMethod: clients.AuthNone, RedirectURIs: []string{"https://rp.example/cb"},
		Scopes: []string{"openid", "name"}}}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{kit: k, kv: kv, now: now, accounts: plainAccounts{kv},
		requests: authreq.New(kv, 10*time.Minute, func() time.Time { return now }, "https://id.example.jp"),
		sessions: session.New(kv, k, time.Hour, key), grants: consent.NewStore(kv, store.ErrNotFound)}
	e.trips = func() uint64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, mf := range mfs {
			if mf.GetName() == "watashi_store_operation_duration_seconds" {
				for _, m := range mf.GetMetric() {
					n += m.GetHistogram().GetSampleCount()
				}
			}
		}
		return n
	}
	e.h, err = New(Options{Web: k, Requests: e.requests, Clients: cl, Accounts: e.accounts, Sessions: e.sessions,
		Grants: e.grants, Store: kv})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// browser is a signed-in browser's cookies and the request it started.
type browser struct {
	cookies []*http.Cookie
	ar      *authreq.AuthRequest
}

// signIn makes a bound request for scopes and a session of acct signed
// in at the request's client.
func (e *env) signIn(t *testing.T, acct string, scopes ...string) *browser {
	t.Helper()
	return e.signInFor(t, acct, "rp", scopes...)
}

// signInFor is signIn with a session signed in at client's request (""
// for none, as the account pages' sign-in).
func (e *env) signInFor(t *testing.T, acct, client string, scopes ...string) *browser {
	t.Helper()
	ctx := context.Background()
	w := httptest.NewRecorder()
	bind := authreq.EnsureBinding(e.kit, w, httptest.NewRequest(http.MethodGet, "/", nil))
	if acct != "" {
		if _, err := e.sessions.Begin(ctx, w, authreq.Authentication{AccountID: acct, ACR: session.ACRJPKI, Time: e.now}, client); err != nil {
			t.Fatal(err)
		}
	}
	ar := &authreq.AuthRequest{ID: ids.Long(), ClientID: "rp", RedirectURI: "https://rp.example/cb", Scopes: append([]string{"openid"}, scopes...),
		Challenge: "c", CreatedAt: e.now.Add(-time.Minute), Binding: bind}
	ar.Requested = consent.Resolve(ar.Scopes, nil, consent.ClientPolicy{Claims: []string{consent.ClaimName}})
	if err := e.requests.Create(ctx, ar); err != nil {
		t.Fatal(err)
	}
	return &browser{cookies: w.Result().Cookies(), ar: ar}
}

func (e *env) get(b *browser, id string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, authreq.ConsentPath+"?id="+id, nil)
	for _, c := range b.cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	mux := http.NewServeMux()
	e.h.Mount(mux)
	mux.ServeHTTP(w, r)
	return w
}

// TestConsentRoundTrips pins the store round trips of the consent step,
// so that one more shows as a failure: the request, the session, and
// the remembered grant and the account that the session cookie's hint
// names in one batch, then the completion's compare-and-swap. Without a
// hint, or with one for another client, the grant and the account take
// a batch of their own.
func TestConsentRoundTrips(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.accounts.put(t, &account.Account{ID: "alice", Facts: &pkibridge.Attributes{Name: "山田 花子"},
		FactsSource: &account.FactsSource{VerifiedAt: e.now.Add(-time.Hour), CheckedAt: e.now}})
	remember := func(t *testing.T, acct string, b *browser, allow ...string) {
		t.Helper()
		if _, err := e.grants.Consent(ctx, acct, "rp", b.ar.Requested, false, consent.Choice{Allow: allow}, e.now); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name   string
		setup  func(t *testing.T) (*browser, string)
		status int
		where  string // the redirect's path, or a text of the page
		trips  uint64
	}{
		{"remembered consent", func(t *testing.T) (*browser, string) {
			b := e.signIn(t, "alice", "name")
			remember(t, "alice", b, consent.ClaimName)
			return b, b.ar.ID
		}, http.StatusSeeOther, "/callback", 2},
		{"remembered consent, the session made for another client", func(t *testing.T) (*browser, string) {
			b := e.signInFor(t, "alice", "other", "name")
			remember(t, "alice", b, consent.ClaimName)
			return b, b.ar.ID
		}, http.StatusSeeOther, "/callback", 3},
		{"remembered consent, the session made for no client", func(t *testing.T) (*browser, string) {
			b := e.signInFor(t, "alice", "", "name")
			remember(t, "alice", b, consent.ClaimName)
			return b, b.ar.ID
		}, http.StatusSeeOther, "/callback", 3},
		{"nothing requested, connection remembered", func(t *testing.T) (*browser, string) {
			b := e.signIn(t, "alice")
			remember(t, "alice", b)
			return b, b.ar.ID
		}, http.StatusSeeOther, "/callback", 2},
		{"consent due: the screen", func(t *testing.T) (*browser, string) {
			b := e.signIn(t, "bob", "name")
			e.accounts.put(t, &account.Account{ID: "bob", Facts: &pkibridge.Attributes{Name: "山田 太郎"},
				FactsSource: &account.FactsSource{VerifiedAt: e.now.Add(-time.Hour), CheckedAt: e.now}})
			return b, b.ar.ID
		}, http.StatusOK, `id="consent"`, 1},
		{"no session", func(t *testing.T) (*browser, string) {
			b := e.signIn(t, "", "name")
			return b, b.ar.ID
		}, http.StatusSeeOther, "/login", 1},
		{"another browser", func(t *testing.T) (*browser, string) {
			b := e.signIn(t, "alice", "name")
			other := e.signIn(t, "alice", "name")
			return other, b.ar.ID
		}, http.StatusForbidden, "", 1},
		{"finished request, signed in", func(t *testing.T) (*browser, string) {
			b := e.signIn(t, "alice", "name")
			return b, ids.Long()
		}, http.StatusOK, `id="done"`, 1},
		{"unknown request without a session", func(t *testing.T) (*browser, string) {
			return &browser{}, ids.Long()
		}, http.StatusBadRequest, "", 1},
		{"an ID no request has, without a session", func(t *testing.T) (*browser, string) {
			return &browser{}, strings.Repeat("a", 65)
		}, http.StatusBadRequest, "", 0},
		{"account gone", func(t *testing.T) (*browser, string) {
			b := e.signIn(t, "carol", "name")
			remember(t, "carol", b, consent.ClaimName)
			return b, b.ar.ID
		}, http.StatusInternalServerError, "", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, id := c.setup(t)
			before := e.trips()
			w := e.get(b, id)
			got := e.trips() - before
			if w.Code != c.status {
				t.Fatalf("status %d, want %d\n%s", w.Code, c.status, w.Body)
			}
			if c.status == http.StatusSeeOther && !strings.HasPrefix(w.Header().Get("Location"), c.where) &&
				!strings.Contains(w.Header().Get("Location"), c.where) {
				t.Fatalf("sent to %q, want %q", w.Header().Get("Location"), c.where)
			}
			if c.status == http.StatusOK && !strings.Contains(w.Body.String(), c.where) {
				t.Fatalf("page lacks %q:\n%s", c.where, w.Body)
			}
			if got != c.trips {
				t.Errorf("%d round trips, want %d", got, c.trips)
			}
			if c.where == "/callback" {
				ar, err := e.requests.Load(ctx, id)
				if err != nil || !ar.Completed || ar.AccountID != "alice" || ar.SessionID == "" {
					t.Fatalf("request after the step: %+v %v", ar, err)
				}
			}
		})
	}
}
