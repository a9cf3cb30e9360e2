package idp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/walletsim"
)

// A minimal reader of our HTML forms, so that tests submit what a
// browser without JavaScript would: hidden inputs, checked checkboxes
// and radio buttons that are not disabled, and the pressed button.

type formField struct {
	Type, Name, Value, ID string
	Checked, Disabled     bool
}

var (
	reFormTag = regexp.MustCompile(`(?s)<form\b([^>]*)>(.*?)</form>`)
	reInput   = regexp.MustCompile(`<input\b([^>]*)>`)
	reAttr    = regexp.MustCompile(`([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:="([^"]*)")?`)
)

func attrs(s string) map[string]string {
	out := map[string]string{}
	for _, m := range reAttr.FindAllStringSubmatch(s, -1) {
		out[strings.ToLower(m[1])] = html.UnescapeString(m[2])
	}
	return out
}

// pageForm returns the action and inputs of the form with the given id.
func pageForm(t testing.TB, page, id string) (string, []formField) {
	t.Helper()
	for _, m := range reFormTag.FindAllStringSubmatch(page, -1) {
		fa := attrs(m[1])
		if fa["id"] != id {
			continue
		}
		var fields []formField
		for _, in := range reInput.FindAllStringSubmatch(m[2], -1) {
			a := attrs(in[1])
			_, checked := a["checked"]
			_, disabled := a["disabled"]
			fields = append(fields, formField{Type: a["type"], Name: a["name"], Value: a["value"], ID: a["id"],
				Checked: checked, Disabled: disabled})
		}
		return fa["action"], fields
	}
	t.Fatalf("no form#%s on the page:\n%s", id, page)
	return "", nil
}

// submission is what a browser sends for fields as they are.
func submission(fields []formField) url.Values {
	v := url.Values{}
	for _, f := range fields {
		if f.Name == "" || f.Disabled {
			continue
		}
		switch f.Type {
		case "checkbox", "radio":
			if !f.Checked {
				continue
			}
		}
		v.Add(f.Name, f.Value)
	}
	return v
}

// tickAll ticks every checkbox, as a resident who shares everything.
func tickAll(fields []formField) []formField {
	out := make([]formField, len(fields))
	for i, f := range fields {
		if f.Type == "checkbox" {
			f.Checked = true
		}
		out[i] = f
	}
	return out
}

// consentClients are the clients the consent tests add: an RP allowed
// verified claims with an age-check policy ("ida"), and one that may
// only ask for the birth date, with age checks offered instead
// ("kids").
func consentClients() []*clients.Client {
	all := []string{"name", "birthdate", "gender", "address", "profile", "offline_access"}
	return []*clients.Client{
		{ID: "ida", DisplayName: "Example Bank", Organization: "株式会社エグザンプル銀行", Purpose: "口座開設の本人確認",
			PolicyURI: "https://bank.example/privacy", AuthMethod: clients.AuthSecretBasic, SecretHash: fixtureSecret,
			RedirectURIs: []string{"https://bank.example/cb"}, Scopes: all, VerifiedClaims: true, AgeAlternatives: true},
		{ID: "kids", DisplayName: "Game Shop", AuthMethod: clients.AuthSecretBasic, SecretHash: fixtureSecret,
			RedirectURIs: []string{"https://games.example/cb"}, Scopes: []string{"birthdate", "offline_access"}, AgeAlternatives: true},
	}
}

// newConsentOP is newSigninOP with the consent clients and more options.
func newConsentOP(t testing.TB, kv store.KV, mutate func(*Options)) *signinOP {
	t.Helper()
	pki := simulatorPKI(t)
	clock := &testClock{}
	o := newTestOP(t, kv, func(o *Options) {
		o.Verifier = pki.verifier(t)
		o.Now = clock.Now
		o.Clients = append(o.Clients, consentClients()...)
		if mutate != nil {
			mutate(o)
		}
	})
	return &signinOP{testOP: o, pki: pki, clock: clock}
}

// authorizeClaims starts an RP request with scopes and a claims
// parameter ("" for none) and returns the auth request ID, the RP's
// config and its PKCE verifier.
func (o *signinOP) authorizeClaims(client string, scopes []string, claims string, extra ...oauth2.AuthCodeOption) (string, *oauth2.Config, string) {
	o.t.Helper()
	conf := o.oauth(client, scopes...)
	v := oauth2.GenerateVerifier()
	if claims != "" {
		extra = append(extra, oauth2.SetAuthURLParam("claims", claims))
	}
	return o.startAuth(conf, v, extra...), conf, v
}

// proofed returns a browser with an SSO session of a resident who proved
// their identity (through the "web" RP, sharing nothing but the name).
func (o *signinOP) proofed(w *walletsim.Wallet) *browser {
	o.t.Helper()
	b := o.browser()
	ar, _, _ := o.authorizeClaims("web", []string{"name"}, "")
	tx, _ := b.openTx(ar, authreq.PurposeProofing)
	if err := w.Approve(context.Background(), o.ts.Client(), b.walletURL(tx), "jws"); err != nil {
		o.t.Fatalf("wallet approve: %v", err)
	}
	b.finish(ar, tx)
	_, loc := b.consent(ar, "allow")
	if rp := b.callback(loc); rp.Query().Get("code") == "" {
		o.t.Fatalf("proofing sign-in: %s", rp.Redacted())
	}
	return b
}

// tokens exchanges the code of an RP redirect.
func (o *signinOP) tokens(conf *oauth2.Config, verifier string, rp *url.URL) *oauth2.Token {
	o.t.Helper()
	code := rp.Query().Get("code")
	if code == "" {
		o.t.Fatalf("no code in %s", rp.Redacted())
	}
	tok, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		o.t.Fatalf("exchange: %v", err)
	}
	return tok
}

// idClaims decodes an ID token's payload (its signature is checked by
// the provider tests; here only its content matters).
func idClaims(t testing.TB, tok *oauth2.Token) map[string]any {
	t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	return idTokenClaims(t, raw)
}

func idTokenClaims(t testing.TB, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// personalOf keeps the personal claims of a response.
func personalOf(m map[string]any) map[string]any {
	out := map[string]any{}
	for _, k := range personal(m) {
		out[k] = m[k]
	}
	return out
}

// grantOf reads the remembered grant.
func (o *signinOP) grantOf(account, client string) *consent.Grant {
	o.t.Helper()
	g, err := o.s.grants.Get(context.Background(), account, client)
	if err != nil {
		o.t.Fatal(err)
	}
	return g
}

// sessionAccount is the account of the browser's SSO session.
func (b *browser) sessionAccount() string {
	b.t.Helper()
	u, _ := url.Parse(b.op.issuer)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == b.op.s.web.CookieName("sess") {
			req := httptest.NewRequest(http.MethodGet, b.op.issuer+"/", nil)
			req.AddCookie(c)
			sess, ok := b.op.s.sessions.Current(req)
			if !ok {
				b.t.Fatal("the session cookie names no live session")
			}
			return sess.AccountID
		}
	}
	b.t.Fatal("no session cookie")
	return ""
}

// request starts an RP request in a signed-in browser and follows the
// login route (which binds the request to the browser) to the consent
// route.
func (b *browser) request(client string, scopes []string, claims string, extra ...oauth2.AuthCodeOption) (string, *oauth2.Config, string) {
	b.t.Helper()
	ar, conf, v := b.op.authorizeClaims(client, scopes, claims, extra...)
	if code, loc, body := b.get(authreq.LoginURL(ar)); code != http.StatusSeeOther || loc != authreq.ConsentURL(ar) {
		b.t.Fatalf("login route of a signed-in browser: %d %q\n%.300s", code, loc, body)
	}
	return ar, conf, v
}
