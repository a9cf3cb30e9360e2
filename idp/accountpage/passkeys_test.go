package accountpage

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/templates"
)

type noClients struct{}

func (noClients) Get(context.Context, string) (*clients.Client, error) { return nil, store.ErrNotFound }

type noTokens struct{}

func (noTokens) RevokeAccountClient(context.Context, string, string) error { return nil }

type page struct {
	t        *testing.T
	kit      *web.Kit
	sessions *session.Manager
	accounts *account.Store
	requests *authreq.Repo
	mux      *http.ServeMux
	kv       store.KV
	tokens   *revoked
	out      *events.Outbox
}

func newPage(t *testing.T) *page {
	t.Helper()
	set, err := templates.New("")
	if err != nil {
		t.Fatal(err)
	}
	kv := store.NewMemory()
	p := &page{t: t, mux: http.NewServeMux(), kv: kv}
	if p.kit, err = web.New(web.Options{Issuer: "https://id.example.jp", CookieKey: bytes.Repeat([]byte{7}, 32), Counter: kv, Templates: set}); err != nil {
		t.Fatal(err)
	}
	p.sessions = session.New(kv, p.kit, time.Hour, bytes.Repeat([]byte{9}, 32))
	p.tokens, p.out = &revoked{}, events.NewOutbox(kv, nil)
	p.sessions.SetTokens(p.tokens, 24*time.Hour)
	p.sessions.SetEvents(p.out)
	p.requests = authreq.New(kv, 10*time.Minute, time.Now, "https://id.example.jp")
	if p.accounts, err = account.New(kv, account.Options{KEK: seal.GenerateRing()}); err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Web: p.kit, Requests: p.requests, Clients: noClients{}, Sessions: p.sessions,
		Grants: consent.NewStore(kv, store.ErrNotFound), Tokens: noTokens{}, Accounts: p.accounts,
		Passkeys: &PasskeyOptions{Store: p.accounts, Begin: "/b", Finish: "/f", RecentProofing: 5 * time.Minute},
		Events:   p.out})
	if err != nil {
		t.Fatal(err)
	}
	h.Mount(p.mux)
	return p
}

// resident stores an account with passkeys named names.
func (p *page) resident(id string, names ...string) [][]byte {
	p.t.Helper()
	ctx := context.Background()
	if err := p.accounts.Put(ctx, &account.Account{ID: id}); err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.accounts.PasskeyHandle(ctx, id); err != nil {
		p.t.Fatal(err)
	}
	var ids [][]byte
	for i, n := range names {
		cred := []byte(id + "-credential-" + n)
		pk := account.Passkey{ID: cred, PublicKey: []byte("key"), Name: n, CreatedAt: time.Now(), BackupEligible: i == 0}
		if _, err := p.accounts.AddPasskey(ctx, id, pk); err != nil {
			p.t.Fatal(err)
		}
		ids = append(ids, cred)
	}
	return ids
}

// client is a browser with a session of acr.
type client struct {
	p       *page
	cookies []*http.Cookie
	csrf    string
}

func (p *page) client(accountID, acr string) *client {
	return p.clientWith(accountID, acr, "")
}

// clientWith is a browser whose session authenticator started.
func (p *page) clientWith(accountID, acr, authenticator string) *client {
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil)
	c := &client{p: p, csrf: p.kit.CSRFToken(w, r)}
	if accountID != "" {
		if _, err := p.sessions.Start(context.Background(), w, authreq.Authentication{AccountID: accountID, ACR: acr, Time: time.Now(),
			Authenticator: authenticator}); err != nil {
			p.t.Fatal(err)
		}
	}
	c.cookies = w.Result().Cookies()
	return c
}

func (c *client) do(method, path string, form url.Values) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "https://id.example.jp"+path, strings.NewReader(form.Encode()))
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, ck := range c.cookies {
		r.AddCookie(ck)
	}
	w := httptest.NewRecorder()
	c.p.mux.ServeHTTP(w, r)
	return w
}

func (c *client) change(action string, cred []byte, name string) *httptest.ResponseRecorder {
	return c.do("POST", passkeysPath, url.Values{web.CSRFField: {c.csrf}, "action": {action},
		"passkey": {base64.RawURLEncoding.EncodeToString(cred)}, "name": {name}})
}

func TestAccountPasskeys(t *testing.T) {
	p := newPage(t)
	taro := p.resident("taro", "iPhone", "YubiKey")
	jiro := p.resident("jiro", "Pixel")
	ctx := context.Background()
	if _, err := p.accounts.UpdatePasskey(ctx, "taro", taro[1], func(pk *account.Passkey) error {
		pk.Disabled, pk.DisabledAt = account.PasskeyCounterRegressed, time.Now()
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The list, after a JPKI sign-in: names, kinds, the disabled one, the
	// add button; never another resident's.
	c := p.client("taro", session.ACRJPKI)
	body := c.do("GET", "/account?lang=en", nil).Body.String()
	for _, want := range []string{"iPhone", "YubiKey", `id="passkey-disabled-notice"`, `id="pk-1-disabled"`, `id="passkey-add"`,
		"Synced passkey", "Kept on one device only", "/static/passkey.js"} {
		if !strings.Contains(body, want) {
			t.Errorf("account page lacks %q", want)
		}
	}
	if strings.Contains(body, "Pixel") {
		t.Error("another resident's passkey is listed")
	}
	// A passkey session may not add one: it is offered a JPKI sign-in.
	pc := p.client("taro", session.ACRPasskey)
	body = pc.do("GET", "/account?lang=en", nil).Body.String()
	if strings.Contains(body, `id="passkey-add"`) || !strings.Contains(body, `id="passkey-prove"`) || strings.Contains(body, "/static/passkey.js") {
		t.Errorf("passkey session offered to add a passkey")
	}
	// That sign-in asks for aal3 and a fresh sign-in, even with a session.
	w := pc.do("GET", "/account/login?lang=en&reauth=1", nil)
	loc, _ := url.Parse(w.Header().Get("Location"))
	if w.Code != http.StatusSeeOther || loc.Path != authreq.LoginPath {
		t.Fatalf("reauth: %d %s", w.Code, loc)
	}
	ar, err := p.requests.Load(ctx, loc.Query().Get("id"))
	if err != nil || !session.NeedsJPKI(ar) || !ar.HasPrompt("login") || ar.Return != pagePath {
		t.Fatalf("reauth request %+v %v", ar, err)
	}

	// Rename and remove, own passkeys only.
	if w := c.change("rename", taro[0], "  My phone "); w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Location"), renamedParam) {
		t.Fatalf("rename: %d %s", w.Code, w.Header().Get("Location"))
	}
	for _, bad := range []struct {
		action string
		cred   []byte
		name   string
	}{
		{"rename", taro[0], ""},
		{"rename", taro[0], strings.Repeat("x", 65)},
		{"rename", jiro[0], "mine"},
		{"remove", jiro[0], ""},
		{"explode", taro[0], ""},
		{"remove", nil, ""},
	} {
		if w := c.change(bad.action, bad.cred, bad.name); w.Code != http.StatusBadRequest {
			t.Errorf("%s %q: %d", bad.action, bad.name, w.Code)
		}
	}
	// Without the CSRF token, nothing happens.
	forged := *c
	forged.csrf = "x"
	if w := forged.change("remove", taro[0], ""); w.Code != http.StatusForbidden {
		t.Errorf("without CSRF: %d", w.Code)
	}
	// Signed out: back to the page.
	if w := p.client("", "").change("remove", taro[0], ""); w.Code != http.StatusSeeOther {
		t.Errorf("signed out: %d", w.Code)
	}
	if w := c.change("remove", taro[1], ""); w.Code != http.StatusSeeOther {
		t.Fatalf("remove: %d", w.Code)
	}
	a, _ := p.accounts.Get(ctx, "taro")
	if len(a.Passkeys) != 1 || a.Passkeys[0].Name != "My phone" {
		t.Fatalf("after the changes: %+v", a.Passkeys)
	}
	if j, _ := p.accounts.Get(ctx, "jiro"); len(j.Passkeys) != 1 || j.Passkeys[0].Name != "Pixel" {
		t.Fatalf("the other resident's passkeys changed: %+v", j.Passkeys)
	}
	body = c.do("GET", "/account?lang=ja&"+removedParam+"=1", nil).Body.String()
	if !strings.Contains(body, `id="passkey-notice"`) || strings.Contains(body, `id="passkey-disabled-notice"`) {
		t.Error("the removal notice is missing, or the disabled notice outlived the passkey")
	}
}
