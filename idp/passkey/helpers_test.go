package passkey

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/templates"
)

const (
	testIssuer = "https://id.example.jp"
	testOrigin = "https://id.example.jp"
	testRPID   = "id.example.jp"
)

var testTemplates = sync.OnceValues(func() (*templates.Set, error) { return templates.New("") })

// clock is the test's time, shared by every part.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a provider's worth of parts around one passkey Handler, on a
// memory store.
type env struct {
	t        *testing.T
	kv       store.KV
	kit      *web.Kit
	requests *authreq.Repo
	sessions *session.Manager
	accounts *account.Store
	h        *Handler
	mux      *http.ServeMux
	clock    *clock
}

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	set, err := testTemplates()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, kv: store.NewMemory(), clock: &clock{t: time.Now()}}
	if e.kit, err = web.New(web.Options{Issuer: testIssuer, CookieKey: bytes.Repeat([]byte{7}, 32), Counter: e.kv, Templates: set, Now: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	e.requests = authreq.New(e.kv, 10*time.Minute, e.clock.Now, testIssuer)
	e.sessions = session.New(e.kv, e.kit, 12*time.Hour, bytes.Repeat([]byte{9}, 32))
	if e.accounts, err = account.New(e.kv, account.Options{KEK: seal.GenerateRing(), Now: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	o := Options{Web: e.kit, Requests: e.requests, Sessions: e.sessions, Accounts: e.accounts, Store: e.kv}
	if mod != nil {
		mod(&o)
	}
	if e.h, err = New(o); err != nil {
		t.Fatal(err)
	}
	e.mux = http.NewServeMux()
	e.h.Mount(e.mux)
	return e
}

// newAccount stores a proven resident.
func (e *env) newAccount(id string) {
	e.t.Helper()
	if err := e.accounts.Put(context.Background(), &account.Account{ID: id, CreatedAt: e.clock.Now()}); err != nil {
		e.t.Fatal(err)
	}
}

// browser keeps one browser's cookies.
type browser struct {
	e       *env
	cookies map[string]*http.Cookie
	csrf    string
}

func (e *env) browser() *browser {
	b := &browser{e: e, cookies: map[string]*http.Cookie{}}
	// A CSRF token and a binding cookie, as any of our pages would set.
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil)
	b.csrf = e.kit.CSRFToken(w, r)
	authreq.EnsureBinding(e.kit, w, r)
	b.keep(w.Result())
	return b
}

func (b *browser) keep(res *http.Response) {
	for _, c := range res.Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
			continue
		}
		b.cookies[c.Name] = c
	}
}

func (b *browser) request(method, path string, body []byte) *http.Request {
	r := httptest.NewRequest(method, testIssuer+path, bytes.NewReader(body))
	for _, c := range b.cookies {
		r.AddCookie(c)
	}
	return r
}

// signIn gives the browser a session, as a finished JPKI (acr aal3) or
// passkey sign-in would.
func (b *browser) signIn(accountID, acr string) {
	w := httptest.NewRecorder()
	if _, err := b.e.sessions.Start(context.Background(), w, authreq.Authentication{AccountID: accountID, ACR: acr, Time: b.e.clock.Now()}); err != nil {
		b.e.t.Fatal(err)
	}
	b.keep(w.Result())
}

// post calls a ceremony endpoint as the page's script does.
func (b *browser) post(path string, body any) (int, map[string]any) {
	b.e.t.Helper()
	raw, _ := json.Marshal(body)
	r := b.request("POST", path, raw)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(web.CSRFHeader, b.csrf)
	r.Header.Set("Origin", testOrigin)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	w := httptest.NewRecorder()
	b.e.mux.ServeHTTP(w, r)
	b.keep(w.Result())
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

// begin starts a ceremony and returns its options.
func (b *browser) begin(path string, body any) options {
	b.e.t.Helper()
	code, out := b.post(path, body)
	if code != http.StatusOK {
		b.e.t.Fatalf("begin %s: %d %v", path, code, out)
	}
	raw, _ := json.Marshal(out)
	var o options
	if err := json.Unmarshal(raw, &o); err != nil {
		b.e.t.Fatal(err)
	}
	return o
}

// authRequest stores an authorization request bound to the browser.
func (b *browser) authRequest(mod func(*authreq.AuthRequest)) *authreq.AuthRequest {
	b.e.t.Helper()
	r := b.request("GET", "/", nil)
	ar := &authreq.AuthRequest{ClientID: "rp", RedirectURI: "https://rp.example/cb", Scopes: []string{"openid"},
		Challenge: strings.Repeat("a", 43), Binding: authreq.BrowserBinding(b.e.kit, r)}
	if mod != nil {
		mod(ar)
	}
	if err := b.e.requests.Create(context.Background(), ar); err != nil {
		b.e.t.Fatal(err)
	}
	return ar
}

// session is the browser's current session, if any.
func (b *browser) session() (*session.Session, bool) {
	return b.e.sessions.Current(b.request("GET", "/", nil))
}

// register adds key to the account the browser is signed in to, through
// the ceremony endpoints.
func (b *browser) register(key *softKey) (int, map[string]any) {
	b.e.t.Helper()
	o := b.begin(registerBegin, map[string]any{})
	return b.post(registerFinish, map[string]any{"ceremony": o.Ceremony, "credential": key.create(b.e.t, o)})
}

// login signs in with key for a new authorization request.
func (b *browser) login(key *softKey, ar *authreq.AuthRequest) (int, map[string]any) {
	b.e.t.Helper()
	o := b.begin(loginBegin, map[string]any{"request": ar.ID})
	return b.post(loginFinish, map[string]any{"ceremony": o.Ceremony, "credential": key.get(b.e.t, o)})
}
