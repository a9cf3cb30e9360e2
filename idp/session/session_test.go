package session

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/templates"
)

var testCookieKey = bytes.Repeat([]byte{7}, 32)

// testTemplates parses the embedded pages once per test binary.
var testTemplates = sync.OnceValues(func() (*templates.Set, error) { return templates.New("") })

// clock is a settable time source shared by the kit and the test.
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

// newManager builds a session Manager on a memory store with a web kit
// whose clock the test controls.
func newManager(t testing.TB, kv KV, ttl time.Duration) (*Manager, *clock) {
	t.Helper()
	set, err := testTemplates()
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now()}
	k, err := web.New(web.Options{
		Issuer:    "https://id.example.jp",
		CookieKey: testCookieKey,
		Counter:   store.NewMemory(),
		Templates: set,
		Now:       c.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return New(kv, k, ttl, testCookieKey), c
}

func TestSessionRules(t *testing.T) {
	maxAge := func(v uint) *uint { return &v }
	created := time.Now().Add(-time.Hour)
	old := &Session{AccountID: "a", AuthTime: created.Add(-time.Hour), ACR: "aal3"}
	fresh := &Session{AccountID: "a", AuthTime: created.Add(time.Minute), ACR: "aal3"}
	low := &Session{AccountID: "a", AuthTime: created.Add(time.Minute), ACR: "aal2"}
	subjects := map[string]string{"a": "sub-of-a"}
	subject := func(account string) (string, error) {
		if s, ok := subjects[account]; ok {
			return s, nil
		}
		return "", errors.New("no such client")
	}
	stranger := &Session{AccountID: "b", AuthTime: created.Add(time.Minute), ACR: "aal3"}
	for _, c := range []struct {
		name string
		ar   authreq.AuthRequest
		sess *Session
		want bool
	}{
		{"no constraints", authreq.AuthRequest{CreatedAt: created}, old, true},
		{"max_age exceeded", authreq.AuthRequest{CreatedAt: created, MaxAge: maxAge(60)}, old, false},
		{"max_age within", authreq.AuthRequest{CreatedAt: created, MaxAge: maxAge(3 * 3600)}, old, true},
		{"max_age 0 but signed in for this request", authreq.AuthRequest{CreatedAt: created, MaxAge: maxAge(0)}, fresh, true},
		{"max_age 0 old session", authreq.AuthRequest{CreatedAt: created, MaxAge: maxAge(0)}, old, false},
		{"prompt=login old session", authreq.AuthRequest{CreatedAt: created, Prompt: []string{"login"}}, old, false},
		{"prompt=login fresh session", authreq.AuthRequest{CreatedAt: created, Prompt: []string{"login"}}, fresh, true},
		{"acr aal3 wanted, aal2 held", authreq.AuthRequest{CreatedAt: created, ACRValues: []string{"aal3"}}, low, false},
		{"acr aal2 or aal3 wanted, aal2 held", authreq.AuthRequest{CreatedAt: created, ACRValues: []string{"aal3", "aal2"}}, low, true},
		{"unknown acr ignored", authreq.AuthRequest{CreatedAt: created, ACRValues: []string{"gold"}}, low, true},
		{"fresh session still needs the acr", authreq.AuthRequest{CreatedAt: created, Prompt: []string{"login"}, ACRValues: []string{"aal3"}}, low, false},
		{"hinted subject is the session's", authreq.AuthRequest{CreatedAt: created, HintSubject: "sub-of-a"}, fresh, true},
		{"hinted subject is another's", authreq.AuthRequest{CreatedAt: created, HintSubject: "sub-of-z"}, fresh, false},
		{"hinted subject, subject unknown", authreq.AuthRequest{CreatedAt: created, HintSubject: "sub-of-a"}, stranger, false},
		{"tier needs aal3, passkey session", authreq.AuthRequest{CreatedAt: created, MinACR: "aal3"}, low, false},
		{"tier needs aal3, JPKI session", authreq.AuthRequest{CreatedAt: created, MinACR: "aal3"}, fresh, true},
		{"tier needs aal2, passkey session", authreq.AuthRequest{CreatedAt: created, MinACR: "aal2"}, low, true},
		{"RP waives nothing of the tier", authreq.AuthRequest{CreatedAt: created, MinACR: "aal3", ACRValues: []string{"aal1"}}, low, false},
	} {
		if got := Satisfies(&c.ar, c.sess, time.Now(), subject); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// The subject is computed only when the RP insists on one.
	calls := 0
	counting := func(string) (string, error) { calls++; return "", nil }
	Satisfies(&authreq.AuthRequest{CreatedAt: created}, fresh, time.Now(), counting)
	if calls != 0 {
		t.Fatal("subject computed without a hint")
	}
}

func TestACRSatisfies(t *testing.T) {
	for _, c := range []struct {
		acr       string
		requested []string
		want      bool
	}{
		{"aal3", nil, true},
		{"", nil, true},
		{"aal1", []string{"aal1"}, true},
		{"aal1", []string{"aal2"}, false},
		{"aal3", []string{"aal2"}, true},
		{"aal2", []string{"aal3", "aal2"}, true},
		{"aal1", []string{"aal3", "aal2"}, false},
		{"", []string{"aal1"}, false},
		{"gold", []string{"aal1"}, false},
		{"aal1", []string{"gold", "urn:x"}, true},
		{"aal2", []string{"gold", "aal3"}, false},
		{ACRJPKI, []string{"aal3"}, true},
	} {
		if got := ACRSatisfies(c.acr, c.requested); got != c.want {
			t.Errorf("ACRSatisfies(%q, %q) = %v, want %v", c.acr, c.requested, got, c.want)
		}
	}
}

func TestVerifyLogout(t *testing.T) {
	m, clk := newManager(t, store.NewMemory(), time.Hour)
	r := httptest.NewRequest(http.MethodGet, "/logout", nil)
	want := Logout{Dest: "https://rp.example/bye", ClientID: "web"}
	good := m.SignLogout(r, want)
	p, mac, _ := strings.Cut(good, ".")
	other, _ := newManager(t, store.NewMemory(), time.Hour)
	other.key = []byte("another-cookie-key-0123456789abcdef")
	tests := []struct {
		name string
		v    string
		ok   bool
	}{
		{"good", good, true},
		{"empty", "", false},
		{"no mac", p, false},
		{"mac of another", p + "." + strings.Split(m.SignLogout(r, Logout{Dest: "https://evil.example/"}), ".")[1], false},
		{"signed with another key", other.SignLogout(r, want), false},
		{"flipped mac", p + "." + flip(mac), false},
		{"flipped payload", flip(p) + "." + mac, false},
		{"not base64", "!!!.???", false},
		{"huge", strings.Repeat("a", 5000) + "." + mac, false},
		{"extra dot", p + "." + mac + ".", false},
	}
	for _, tc := range tests {
		if _, ok := m.VerifyLogout(r, tc.v); ok != tc.ok {
			t.Errorf("%s: ok=%v", tc.name, ok)
		}
	}
	if got, ok := m.VerifyLogout(r, good); !ok || got != want {
		t.Fatalf("VerifyLogout = %+v, %v", got, ok)
	}
	clk.Advance(logoutTTL + time.Second)
	if _, ok := m.VerifyLogout(r, good); ok {
		t.Error("expired value accepted")
	}
}

// A confirmed sign-out holds only for the session it was signed for:
// another browser, a browser without a session, or the same browser after
// a new sign-in is asked again.
func TestLogoutConfirmedBinding(t *testing.T) {
	m, _ := newManager(t, store.NewMemory(), time.Hour)
	mine := withCookie(m.name, ids.Long())
	v := m.SignLogout(mine, Logout{Dest: "https://rp.example/bye", Confirmed: true})
	if l, ok := m.VerifyLogout(mine, v); !ok || !l.Confirmed || l.Dest != "https://rp.example/bye" {
		t.Fatalf("own session: %+v %v", l, ok)
	}
	for name, r := range map[string]*http.Request{
		"another session": withCookie(m.name, ids.Long()),
		"no session":      httptest.NewRequest(http.MethodGet, "/logout", nil),
	} {
		if l, ok := m.VerifyLogout(r, v); !ok || l.Confirmed || l.Dest != "https://rp.example/bye" {
			t.Errorf("%s: %+v %v, want the destination without confirmation", name, l, ok)
		}
	}
	// Signed without a session, it confirms none.
	bare := m.SignLogout(httptest.NewRequest(http.MethodGet, "/", nil), Logout{Confirmed: true})
	if l, ok := m.VerifyLogout(mine, bare); !ok || l.Confirmed {
		t.Fatalf("confirmed without a session: %+v %v", l, ok)
	}
	// An unconfirmed sign-out never becomes one.
	if l, ok := m.VerifyLogout(mine, m.SignLogout(mine, Logout{})); !ok || l.Confirmed {
		t.Fatalf("unconfirmed: %+v %v", l, ok)
	}
}

// A correctly MACed payload that is not a logout record, or has no or a
// past expiry, is refused: the MAC alone does not make a value valid.
func TestVerifyLogoutMalformedPayload(t *testing.T) {
	m, _ := newManager(t, store.NewMemory(), time.Hour)
	r := httptest.NewRequest(http.MethodGet, "/logout", nil)
	sign := func(payload string) string {
		return b64(payload) + "." + b64(string(m.logoutMAC([]byte(payload))))
	}
	for _, payload := range []string{"https://rp.example/bye", `{"d":"https://rp.example/bye"}`, `{"e":"soon"}`, `{"e":1,"d":"x"}`, `[]`, ``} {
		if _, ok := m.VerifyLogout(r, sign(payload)); ok {
			t.Errorf("%q accepted", payload)
		}
	}
}

// Start, Current and End: the cookie is all the browser holds, the store
// keys the record by its hash, and a session lives until its TTL or End.
func TestSessionLifecycle(t *testing.T) {
	kv := store.NewMemory()
	m, clk := newManager(t, kv, time.Hour)
	ctx := context.Background()
	auth := authreq.Authentication{AccountID: "acct-1", ACR: ACRJPKI, AMR: []string{"hwk", "pin"}, Time: clk.Now()}

	rec := httptest.NewRecorder()
	sess, err := m.Start(ctx, rec, auth)
	if err != nil {
		t.Fatal(err)
	}
	cookie := sessionCookie(t, rec, m.name)
	if !cookie.HttpOnly || !cookie.Secure || cookie.MaxAge != 0 || cookie.Path != "/" || !strings.HasPrefix(cookie.Name, "__Host-") {
		t.Fatalf("cookie attributes: %+v", cookie)
	}
	if _, err := kv.Get(ctx, recordKey(cookie.Value)); err == nil {
		t.Fatal("session stored under the cookie value itself")
	}
	if _, err := kv.Get(ctx, recordKey(sessionID(cookie.Value))); err != nil {
		t.Fatalf("session not stored under the cookie's hash: %v", err)
	}
	got, ok := m.Current(withCookie(m.name, cookie.Value))
	if !ok || got.AccountID != "acct-1" || got.ACR != ACRJPKI || !got.ExpiresAt.Equal(sess.ExpiresAt) {
		t.Fatalf("Current = %+v, %v", got, ok)
	}
	if a := got.Authentication(); a.AccountID != "acct-1" || len(a.AMR) != 2 || !a.Time.Equal(auth.Time) {
		t.Fatalf("Authentication = %+v", a)
	}

	// A second sign-in never reuses the value the browser sent.
	rec2 := httptest.NewRecorder()
	if _, err := m.Start(ctx, rec2, auth); err != nil {
		t.Fatal(err)
	}
	if c2 := sessionCookie(t, rec2, m.name); c2.Value == cookie.Value {
		t.Fatal("session cookie value reused")
	}

	for name, r := range map[string]*http.Request{
		"no cookie":      httptest.NewRequest(http.MethodGet, "/", nil),
		"empty cookie":   withCookie(m.name, ""),
		"unknown cookie": withCookie(m.name, ids.Long()),
		"oversized":      withCookie(m.name, strings.Repeat("a", cookieMax+1)),
		"other name":     withCookie("watashi-sess", cookie.Value),
	} {
		if s, ok := m.Current(r); ok {
			t.Errorf("%s: session %+v", name, s)
		}
	}

	// The session ends at its expiry even if the store still has it.
	clk.Advance(time.Hour)
	if _, ok := m.Current(withCookie(m.name, cookie.Value)); ok {
		t.Fatal("expired session still current")
	}
}

func TestSessionEnd(t *testing.T) {
	kv := store.NewMemory()
	m, clk := newManager(t, kv, time.Hour)
	rec := httptest.NewRecorder()
	if _, err := m.Start(context.Background(), rec, authreq.Authentication{AccountID: "acct-1", ACR: ACRJPKI, Time: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	cookie := sessionCookie(t, rec, m.name)
	out := httptest.NewRecorder()
	m.End(out, withCookie(m.name, cookie.Value))
	if _, ok := m.Current(withCookie(m.name, cookie.Value)); ok {
		t.Fatal("session survived End")
	}
	if _, err := kv.Get(context.Background(), recordKey(sessionID(cookie.Value))); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("record left behind: %v", err)
	}
	cleared := sessionCookie(t, out, m.name)
	if cleared.Value != "" || cleared.MaxAge >= 0 {
		t.Fatalf("cookie not cleared: %+v", cleared)
	}
	// Without a session, End still clears the cookie.
	none := httptest.NewRecorder()
	m.End(none, httptest.NewRequest(http.MethodGet, "/", nil))
	if c := sessionCookie(t, none, m.name); c.MaxAge >= 0 {
		t.Fatalf("cookie not cleared: %+v", c)
	}
}

// Damaged records and a failing store read as "no session".
func TestSessionCurrentBadRecords(t *testing.T) {
	kv := store.NewMemory()
	m, _ := newManager(t, kv, time.Hour)
	ctx := context.Background()
	for name, rec := range map[string]string{
		"not JSON":   "{",
		"no account": `{"c":"aal3","x":32503680000000}`,
		"no expiry":  `{"a":"a","c":"aal3"}`,
		"expired":    `{"a":"a","c":"aal3","x":1000}`,
		"old format": `{"account_id":"a","acr":"aal3","expires_at":"2999-01-01T00:00:00Z"}`,
	} {
		v := ids.Long()
		if err := kv.Set(ctx, recordKey(sessionID(v)), []byte(rec), time.Hour); err != nil {
			t.Fatal(err)
		}
		if s, ok := m.Current(withCookie(m.name, v)); ok {
			t.Errorf("%s: session %+v", name, s)
		}
	}
	broken, _ := newManager(t, failingKV{}, time.Hour)
	if _, ok := broken.Current(withCookie(broken.name, ids.Long())); ok {
		t.Fatal("session from a failing store")
	}
	if _, err := broken.Start(ctx, httptest.NewRecorder(), authreq.Authentication{AccountID: "a"}); err == nil {
		t.Fatal("Start succeeded on a failing store")
	}
}

type failingKV struct{}

var errDown = errors.New("store down")

func (failingKV) Get(context.Context, string) ([]byte, error)              { return nil, errDown }
func (failingKV) Set(context.Context, string, []byte, time.Duration) error { return errDown }
func (failingKV) Delete(context.Context, ...string) error                  { return errDown }

func withCookie(name, value string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: name, Value: value})
	return r
}

func sessionCookie(t *testing.T, rec *httptest.ResponseRecorder, name string) *http.Cookie {
	t.Helper()
	for _, c := range rec.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s cookie in %q", name, rec.Header().Values("Set-Cookie"))
	return nil
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func flip(s string) string {
	if s == "" {
		return "A"
	}
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func TestNeedsJPKI(t *testing.T) {
	for _, c := range []struct {
		name string
		ar   authreq.AuthRequest
		want bool
	}{
		{"nothing asked", authreq.AuthRequest{}, false},
		{"aal2 asked", authreq.AuthRequest{ACRValues: []string{"aal2"}}, false},
		{"aal3 asked", authreq.AuthRequest{ACRValues: []string{"aal3"}}, true},
		{"aal3 or aal2 asked", authreq.AuthRequest{ACRValues: []string{"aal3", "aal2"}}, false},
		{"unknown asked", authreq.AuthRequest{ACRValues: []string{"urn:gold"}}, false},
		{"tier aal3", authreq.AuthRequest{MinACR: "aal3"}, true},
		{"tier aal2", authreq.AuthRequest{MinACR: "aal2"}, false},
		{"tier aal3, RP asks aal2", authreq.AuthRequest{MinACR: "aal3", ACRValues: []string{"aal2"}}, true},
	} {
		if got := NeedsJPKI(&c.ar); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestJPKIRecent(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name string
		at   time.Time
		want bool
	}{
		{"never", time.Time{}, false},
		{"just now", now.Add(-10 * time.Second), true},
		{"at the edge", now.Add(-5 * time.Minute), true},
		{"too long ago", now.Add(-6 * time.Minute), false},
		{"in the future", now.Add(time.Hour), false},
	} {
		s := &Session{JPKIAt: c.at}
		if got := s.JPKIRecent(now, 5*time.Minute); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// A JPKI sign-in records its time; a passkey sign-in records none.
func TestStartRecordsJPKI(t *testing.T) {
	m, _ := newManager(t, store.NewMemory(), time.Hour)
	at := time.Now().UTC().Truncate(time.Second)
	for _, c := range []struct {
		acr  string
		want time.Time
	}{{ACRJPKI, at}, {ACRPasskey, time.Time{}}} {
		w := httptest.NewRecorder()
		sess, err := m.Start(context.Background(), w, authreq.Authentication{AccountID: "a", ACR: c.acr, Time: at})
		if err != nil {
			t.Fatal(err)
		}
		if !sess.JPKIAt.Equal(c.want) {
			t.Errorf("%s: JPKIAt %v", c.acr, sess.JPKIAt)
		}
		r := httptest.NewRequest("GET", "/", nil)
		for _, ck := range w.Result().Cookies() {
			r.AddCookie(ck)
		}
		got, ok := m.Current(r)
		if !ok || !got.JPKIAt.Equal(c.want) {
			t.Errorf("%s: stored JPKIAt %v %v", c.acr, got, ok)
		}
	}
}
func (failingKV) SetAdd(context.Context, string, time.Duration, ...string) error { return errDown }
func (failingKV) SetMembers(context.Context, string) ([]string, error)           { return nil, errDown }
func (failingKV) SetRemove(context.Context, string, ...string) error             { return errDown }
func (failingKV) Incr(context.Context, string, time.Duration) (int64, error)     { return 0, errDown }
func (failingKV) Do(context.Context, ...store.Op) ([]store.Result, error)        { return nil, errDown }

// The record keeps what Current gives back, in few bytes.
func TestRecordCodec(t *testing.T) {
	at := time.Date(2026, 12, 5, 4, 57, 42, 123456789, time.UTC)
	exp := at.Add(12 * time.Hour).Truncate(time.Millisecond)
	link := "jpki:" + ids.Long() // an HMAC-SHA-256, as account.Store.CertLink makes
	for _, c := range []struct {
		name string
		s    Session
		max  int
	}{
		{"JPKI", Session{AccountID: ids.Short(), AuthTime: at, ACR: ACRJPKI, AMR: []string{"hwk", "pin"}, ExpiresAt: exp, JPKIAt: at,
			Method: "jpki:JPKIAPGPSETOKEN", Authenticator: link}, 185},
		{"passkey: the method is the authenticator", Session{AccountID: ids.Short(), AuthTime: at, ACR: ACRPasskey, AMR: []string{"user", "swk"},
			ExpiresAt: exp, Method: "passkey:" + ids.Long(), Authenticator: "passkey:" + ids.Long()}, 220},
		{"passkey", Session{AccountID: ids.Short(), AuthTime: at, ACR: ACRPasskey, ExpiresAt: exp, Method: "passkey:AAAA", Authenticator: "passkey:AAAA"}, 120},
		{"method without authenticator", Session{AccountID: "a", AuthTime: at, ExpiresAt: exp, Method: "jpki:X"}, 80},
		{"authenticator without method", Session{AccountID: "a", AuthTime: at, ExpiresAt: exp, Authenticator: "jpki:X"}, 80},
		{"no sign-in time", Session{AccountID: "a", ExpiresAt: exp}, 40},
	} {
		b, err := encodeRecord(&c.s)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > c.max {
			t.Errorf("%s: %d bytes, want at most %d: %s", c.name, len(b), c.max, b)
		}
		got, ok := decodeRecord(b, "sid", time.Hour)
		want := c.s
		want.ID, want.CreatedAt = "sid", exp.Add(-time.Hour)
		if !ok || !reflect.DeepEqual(*got, want) {
			t.Errorf("%s: decoded\n%+v, want\n%+v", c.name, got, &want)
		}
	}
}
