package authreq

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/templates"
)

// stores runs f on the memory store and a real Redis.
func stores(t *testing.T, f func(t *testing.T, kv store.KV)) {
	t.Run("memory", func(t *testing.T) { f(t, store.NewMemory()) })
	t.Run("redis", func(t *testing.T) {
		addr := storetest.StartRedis(t)
		kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: "ar-" + ids.Short() + ":"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { kv.Close() })
		f(t, kv)
	})
}

func TestRepoLifecycle(t *testing.T) {
	stores(t, func(t *testing.T, kv store.KV) {
		ctx := context.Background()
		r := New(kv, time.Minute, nil, "https://id.example")
		ar := &AuthRequest{ClientID: "web", RedirectURI: "https://rp.example/cb", Scopes: []string{"openid"}, Challenge: strings.Repeat("a", 43)}
		if err := r.Create(ctx, ar); err != nil {
			t.Fatal(err)
		}
		if len(ar.ID) != 43 || ar.CreatedAt.IsZero() {
			t.Fatalf("ID %q, created %v", ar.ID, ar.CreatedAt)
		}
		got, err := r.Load(ctx, ar.ID)
		if err != nil || got.ClientID != "web" || got.Challenge != ar.Challenge {
			t.Fatalf("load: %+v %v", got, err)
		}
		// Bind: the first binding wins, the same one again is a no-op,
		// another or a malformed one is refused.
		bind := ids.Hash("cookie")
		if err := r.Bind(ctx, ar.ID, bind); err != nil {
			t.Fatal(err)
		}
		if err := r.Bind(ctx, ar.ID, bind); err != nil {
			t.Fatalf("same binding again: %v", err)
		}
		for _, bad := range []string{ids.Hash("other"), "not-hex", strings.Repeat("z", 64), ""} {
			if err := r.Bind(ctx, ar.ID, bad); err == nil {
				t.Errorf("binding %q accepted", bad)
			}
		}
		if err := r.Bind(ctx, ar.ID, ids.Hash("other")); !errors.Is(err, ErrBound) {
			t.Errorf("foreign binding: %v, want ErrBound", err)
		}
		got, _ = r.Load(ctx, ar.ID)
		if !got.BoundTo(bind) || got.BoundTo(ids.Hash("other")) || got.BoundTo("") {
			t.Fatal("BoundTo disagrees with the binding")
		}
		// Complete once.
		c := Completion{Authentication: Authentication{AccountID: "acct", ACR: "aal3", AMR: []string{"hwk"}}, Subject: "sub", Granted: []string{"name"}}
		if _, err := r.Complete(ctx, ar.ID, Completion{}); err == nil {
			t.Fatal("completion without an account accepted")
		}
		done, err := r.Complete(ctx, ar.ID, c)
		if err != nil || !done.Completed || done.Subject != "sub" || done.AuthTime.IsZero() {
			t.Fatalf("complete: %+v %v", done, err)
		}
		if _, err := r.Complete(ctx, ar.ID, c); !errors.Is(err, ErrDone) {
			t.Fatalf("second completion: %v", err)
		}
		// Delete removes.
		if err := r.Delete(ctx, ar.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Load(ctx, ar.ID); !errors.Is(err, ErrNotFound) || !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}
	})
}

func TestRepoLoadRefuses(t *testing.T) {
	kv := store.NewMemory()
	r := New(kv, time.Minute, nil, "https://id.example")
	ctx := context.Background()
	for _, id := range []string{"", strings.Repeat("x", 65), "missing"} {
		if _, err := r.Load(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Load(%q): %v", id, err)
		}
	}
	if err := kv.Set(ctx, "ar:broken", []byte("{not json"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Load(ctx, "broken"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("a broken record: %v", err)
	}
	if err := kv.Set(ctx, "ar:badclaims", []byte(`{"id":"badclaims","claims":{"userinfo":[]}}`), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Load(ctx, "badclaims"); err == nil {
		t.Fatal("a stored claims request that no longer validates was accepted")
	}
}

// Of concurrent completions exactly one wins.
func TestRepoConcurrentComplete(t *testing.T) {
	stores(t, func(t *testing.T, kv store.KV) {
		ctx := context.Background()
		r := New(kv, time.Minute, nil, "https://id.example")
		ar := &AuthRequest{ClientID: "web"}
		if err := r.Create(ctx, ar); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wins := make(chan string, 8)
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				acct := "acct-" + string(rune('a'+i))
				if _, err := r.Complete(ctx, ar.ID, Completion{Authentication: Authentication{AccountID: acct}}); err == nil {
					wins <- acct
				} else if !errors.Is(err, ErrDone) && !errors.Is(err, ErrContention) {
					t.Errorf("complete: %v", err)
				}
			}()
		}
		wg.Wait()
		close(wins)
		var n int
		var winner string
		for w := range wins {
			n++
			winner = w
		}
		got, _ := r.Load(ctx, ar.ID)
		if n != 1 || got.AccountID != winner {
			t.Fatalf("%d winners; stored %q, winner %q", n, got.AccountID, winner)
		}
	})
}

func TestURLs(t *testing.T) {
	if got := LoginURL("a b", "tx", "t&1"); got != "/login?id=a+b&tx=t%261" {
		t.Errorf("LoginURL: %s", got)
	}
	if got := ConsentURL("x/y"); got != "/consent?id=x%2Fy" {
		t.Errorf("ConsentURL: %s", got)
	}
	if got := CallbackURL("https://id.example/", "i"); got != "https://id.example/authorize/callback?id=i" {
		t.Errorf("CallbackURL: %s", got)
	}
	if got := (&AuthRequest{ID: "i"}).AfterSignIn(); got != "/consent?id=i" {
		t.Errorf("AfterSignIn of an RP request: %s", got)
	}
	if got := (&AuthRequest{ID: "i", Return: "/account"}).AfterSignIn(); got != "/account" {
		t.Errorf("AfterSignIn of an own request: %s", got)
	}
	for _, c := range []struct {
		redirect, state string
		err             *oidc.Error
		want            url.Values
	}{
		{"https://rp.example/cb", "s", oidc.ErrAccessDenied().WithDescription("no"), url.Values{"error": {"access_denied"}, "error_description": {"no"}, "state": {"s"}, "iss": {"https://id.example"}}},
		{"https://rp.example/cb?keep=1", "", oidc.ErrLoginRequired(), url.Values{"error": {"login_required"}, "keep": {"1"}, "iss": {"https://id.example"}}},
		// The RP's query cannot forge the issuer or the state.
		{"https://rp.example/cb?iss=https://evil.example&state=x", "s", oidc.ErrLoginRequired(), url.Values{"error": {"login_required"}, "state": {"s"}, "iss": {"https://id.example"}}},
	} {
		u, err := url.Parse(ErrorURL("https://id.example", c.redirect, c.state, c.err))
		if err != nil {
			t.Fatal(err)
		}
		if u.Query().Encode() != c.want.Encode() {
			t.Errorf("ErrorURL(%s): %s, want %s", c.redirect, u.Query().Encode(), c.want.Encode())
		}
	}
}

func testKit(t *testing.T) *web.Kit {
	t.Helper()
	set, err := templates.New("")
	if err != nil {
		t.Fatal(err)
	}
	k, err := web.New(web.Options{Issuer: "https://id.example", CookieKey: []byte(strings.Repeat("k", 32)), Counter: store.NewMemory(), Templates: set})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Fail tells the RP, deletes the request, and sends a request of the
// provider's own pages back where it came from.
func TestFail(t *testing.T) {
	ctx := context.Background()
	k := testKit(t)
	r := New(store.NewMemory(), time.Minute, nil, "https://id.example")
	rp := &AuthRequest{ClientID: "web", RedirectURI: "https://rp.example/cb", State: "st"}
	own := &AuthRequest{ClientID: "watashi:account", Return: "/account"}
	for _, ar := range []*AuthRequest{rp, own} {
		if err := r.Create(ctx, ar); err != nil {
			t.Fatal(err)
		}
	}
	w := httptest.NewRecorder()
	r.Fail(w, httptest.NewRequest(http.MethodGet, "/login", nil), rp, oidc.ErrLoginRequired(), k.Logger())
	if loc := w.Header().Get("Location"); w.Code != http.StatusFound || !strings.HasPrefix(loc, "https://rp.example/cb?") || !strings.Contains(loc, "error=login_required") || !strings.Contains(loc, "state=st") {
		t.Fatalf("RP error: %d %q", w.Code, loc)
	}
	w = httptest.NewRecorder()
	r.Fail(w, httptest.NewRequest(http.MethodGet, "/login", nil), own, oidc.ErrLoginRequired(), k.Logger())
	if w.Header().Get("Location") != "/account" {
		t.Fatalf("own request: %q", w.Header().Get("Location"))
	}
	for _, ar := range []*AuthRequest{rp, own} {
		if _, err := r.Load(ctx, ar.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("request %s outlived its failure", ar.ClientID)
		}
	}
}

func TestLoadForPage(t *testing.T) {
	ctx := context.Background()
	k := testKit(t)
	kv := store.NewMemory()
	r := New(kv, time.Minute, nil, "https://id.example")
	open := &AuthRequest{ClientID: "web"}
	done := &AuthRequest{ClientID: "web", Completed: true}
	for _, ar := range []*AuthRequest{open, done} {
		if err := r.Create(ctx, ar); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		id     string
		ok     bool
		status int
	}{{open.ID, true, 200}, {done.ID, false, 400}, {"missing", false, 400}, {"", false, 400}} {
		w := httptest.NewRecorder()
		_, ok := r.LoadForPage(w, httptest.NewRequest(http.MethodGet, "/consent", nil), k, c.id)
		if ok != c.ok || w.Code != c.status {
			t.Errorf("%q: ok=%v status %d", c.id, ok, w.Code)
		}
	}
}

// A browser's binding is its cookie's hash; no cookie, no binding.
func TestBrowserBinding(t *testing.T) {
	k := testKit(t)
	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/login", nil)
	if BrowserBinding(k, req) != "" {
		t.Fatal("a binding without a cookie")
	}
	h := EnsureBinding(k, w, req)
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != "__Host-watashi-bind" || !cookies[0].HttpOnly || !cookies[0].Secure {
		t.Fatalf("cookie %+v", cookies)
	}
	req.AddCookie(cookies[0])
	if BrowserBinding(k, req) != h || EnsureBinding(k, httptest.NewRecorder(), req) != h {
		t.Fatal("the cookie does not give its binding back")
	}
	short := httptest.NewRequest(http.MethodGet, "/login", nil)
	short.AddCookie(&http.Cookie{Name: "__Host-watashi-bind", Value: "short"})
	if BrowserBinding(k, short) != "" {
		t.Fatal("a malformed cookie gave a binding")
	}
}

// countingKV counts the store operations the repository sends.
type countingKV struct {
	store.KV
	gets, cas, batches int
}

func (c *countingKV) Get(ctx context.Context, key string) ([]byte, error) {
	c.gets++
	return c.KV.Get(ctx, key)
}

func (c *countingKV) CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error) {
	c.cas++
	return c.KV.CompareAndSwap(ctx, key, old, new)
}

func (c *countingKV) Do(ctx context.Context, ops ...store.Op) ([]store.Result, error) {
	c.batches++
	return c.KV.Do(ctx, ops...)
}

// UpdateLoadedTTL changes the record and its lifetime in one
// compare-and-swap; from a stale copy it reads again and still sets the
// lifetime; a lifetime that is not positive is refused before anything
// is sent.
func TestRepoUpdateLoadedTTL(t *testing.T) {
	stores(t, func(t *testing.T, kv store.KV) {
		ctx := context.Background()
		c := &countingKV{KV: kv}
		r := New(c, time.Hour, nil, "https://id.example")
		ar := &AuthRequest{ClientID: "web", RedirectURI: "https://rp.example/cb", Scopes: []string{"openid"}, Challenge: strings.Repeat("a", 43)}
		if err := r.Create(ctx, ar); err != nil {
			t.Fatal(err)
		}
		loaded, err := r.Load(ctx, ar.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, ttl := range []time.Duration{0, -time.Second} {
			if _, err := r.UpdateLoadedTTL(ctx, loaded, ttl, func(*AuthRequest) error { return nil }); err == nil {
				t.Errorf("lifetime %v accepted", ttl)
			}
		}
		c.gets, c.cas, c.batches = 0, 0, 0
		got, err := r.UpdateLoadedTTL(ctx, loaded, 300*time.Millisecond, func(ar *AuthRequest) error { ar.CodeHash = "h1"; return nil })
		if err != nil || got.CodeHash != "h1" || c.gets+c.cas != 0 || c.batches != 1 {
			t.Fatalf("update of a current copy: %v, %d reads, %d swaps, %d batches; want one batch", err, c.gets, c.cas, c.batches)
		}
		// A stale copy (as two callbacks of one request): its swap fails,
		// the record is read again and the function, seeing the winner's
		// change, refuses.
		c.gets, c.cas, c.batches = 0, 0, 0
		again, err := r.UpdateLoadedTTL(ctx, loaded, 300*time.Millisecond, func(ar *AuthRequest) error {
			if ar.CodeHash != "" {
				return ErrDone
			}
			ar.CodeHash = "h2"
			return nil
		})
		if !errors.Is(err, ErrDone) || again != nil || c.batches != 1 || c.gets != 1 {
			t.Fatalf("stale copy: %v %v, %d swaps, %d reads", again, err, c.batches, c.gets)
		}
		if cur, err := r.Load(ctx, ar.ID); err != nil || cur.CodeHash != "h1" {
			t.Fatalf("stored %+v %v", cur, err)
		}
		time.Sleep(400 * time.Millisecond)
		if _, err := r.Load(ctx, ar.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the record outlived its new lifetime: %v", err)
		}
	})
}

// CreateOp writes nothing and refuses what Create refuses; RestoreOp
// writes back only a record as read.
func TestRepoCreateAndRestoreOps(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	r := New(kv, time.Minute, nil, "https://id.example")
	ar := &AuthRequest{ClientID: "web", RedirectURI: "https://rp.example/cb", Scopes: []string{"openid"}, Challenge: strings.Repeat("a", 43)}
	op, err := r.CreateOp(ar)
	if err != nil || ar.ID == "" || ar.CreatedAt.IsZero() || op.Kind != store.OpSet || op.TTL != time.Minute {
		t.Fatalf("CreateOp: %+v %v", op, err)
	}
	if _, err := r.Load(ctx, ar.ID); !errors.Is(err, ErrNotFound) {
		t.Fatal("CreateOp wrote the record")
	}
	if _, err := r.CreateOp(&AuthRequest{ClientID: "web", State: strings.Repeat("<", MaxRecordBytes)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("CreateOp of a request too large: %v", err)
	}
	if _, err := kv.Do(ctx, op); err != nil {
		t.Fatal(err)
	}
	loaded, err := r.Load(ctx, ar.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.RestoreOp(&AuthRequest{ID: ar.ID}, time.Minute); err == nil {
		t.Fatal("RestoreOp of a request never read")
	}
	if _, err := r.RestoreOp(loaded, 0); err == nil {
		t.Fatal("RestoreOp without a lifetime")
	}
	if err := r.Delete(ctx, ar.ID); err != nil {
		t.Fatal(err)
	}
	restore, err := r.RestoreOp(loaded, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Do(ctx, restore); err != nil {
		t.Fatal(err)
	}
	if back, err := r.Load(ctx, ar.ID); err != nil || back.ClientID != "web" {
		t.Fatalf("restored: %+v %v", back, err)
	}
}

// The Loaded variants start from the caller's copy: one round trip fewer
// when it is current, the same outcome as the plain ones when another
// request changed the record since.
func TestRepoLoadedVariants(t *testing.T) {
	stores(t, func(t *testing.T, kv store.KV) {
		ctx := context.Background()
		c := &countingKV{KV: kv}
		r := New(c, time.Minute, nil, "https://id.example")
		ar := &AuthRequest{ClientID: "web", RedirectURI: "https://rp.example/cb", Scopes: []string{"openid"}, Challenge: strings.Repeat("a", 43)}
		if err := r.Create(ctx, ar); err != nil {
			t.Fatal(err)
		}
		loaded, err := r.Load(ctx, ar.ID)
		if err != nil {
			t.Fatal(err)
		}
		bind := ids.Hash("cookie")
		c.gets, c.cas = 0, 0
		if err := r.BindLoaded(ctx, loaded, bind); err != nil {
			t.Fatal(err)
		}
		if c.gets != 0 || c.cas != 1 {
			t.Errorf("binding a current copy: %d reads, %d swaps; want 0, 1", c.gets, c.cas)
		}
		// Read bound to this browser: nothing to send at all.
		bound, _ := r.Load(ctx, ar.ID)
		c.gets, c.cas = 0, 0
		if err := r.BindLoaded(ctx, bound, bind); err != nil || c.gets+c.cas != 0 {
			t.Errorf("binding a copy already bound: %v, %d operations", err, c.gets+c.cas)
		}
		// The stale copy (read before the binding) still refuses another
		// browser: its swap fails, the record is read again.
		if err := r.BindLoaded(ctx, loaded, ids.Hash("other")); !errors.Is(err, ErrBound) {
			t.Errorf("another browser with a stale copy: %v, want ErrBound", err)
		}

		// Complete from a stale copy: the swap fails, the fresh record
		// is completed; completing again from any copy is ErrDone.
		done, err := r.CompleteLoaded(ctx, loaded, Completion{Authentication: Authentication{AccountID: "acct"}})
		if err != nil || !done.Completed || done.Binding != bind {
			t.Fatalf("complete from a stale copy: %+v %v (the binding must survive)", done, err)
		}
		if _, err := r.CompleteLoaded(ctx, done, Completion{Authentication: Authentication{AccountID: "acct"}}); !errors.Is(err, ErrDone) {
			t.Errorf("completing twice: %v, want ErrDone", err)
		}
		if _, err := r.CompleteLoaded(ctx, bound, Completion{Authentication: Authentication{AccountID: "acct"}}); !errors.Is(err, ErrDone) {
			t.Errorf("completing twice from a stale copy: %v, want ErrDone", err)
		}
		// UpdateLoaded from the current copy: one swap, no read.
		c.gets, c.cas = 0, 0
		got, err := r.UpdateLoaded(ctx, done, func(ar *AuthRequest) error { ar.CodeHash = "h"; return nil })
		if err != nil || got.CodeHash != "h" || c.gets != 0 || c.cas != 1 {
			t.Errorf("update of a current copy: %v, %d reads, %d swaps", err, c.gets, c.cas)
		}
		if done.CodeHash != "" {
			t.Error("UpdateLoaded changed the caller's copy")
		}
		if final, _ := r.Load(ctx, ar.ID); final.CodeHash != "h" || !final.Completed || final.Binding != bind {
			t.Errorf("stored record %+v", final)
		}
	})
}
