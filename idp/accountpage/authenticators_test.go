package accountpage

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/pkibridge"
)

// revoked records the token families the session manager revoked.
type revoked struct {
	mu  sync.Mutex
	ids []string
}

func (r *revoked) RevokeGrant(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, id)
	return nil
}

func (r *revoked) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.ids)
	slices.Sort(out)
	return out
}

var markers int

// published reads everything published so far, up to a marker event.
func (p *page) published() []events.Event {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	markers++
	marker := fmt.Sprintf("marker%d", markers)
	if err := p.out.Publish(ctx, events.Event{Kind: events.FactsStale, AccountID: marker}); err != nil {
		p.t.Fatal(err)
	}
	var got []events.Event
	_ = p.out.Consume(ctx, marker, func(_ context.Context, e events.Event) error {
		if e.AccountID == marker {
			cancel()
		} else if e.Kind != events.FactsStale {
			got = append(got, e)
		}
		return nil
	})
	if ctx.Err() != context.Canceled {
		p.t.Fatal("the marker event never came")
	}
	return got
}

// linked stores an account with JPKI links (link -> token label) and
// passkeys.
func (p *page) linked(id string, links map[string]string, passkeys ...string) [][]byte {
	p.t.Helper()
	creds := p.resident(id, passkeys...)
	ctx := context.Background()
	a, err := p.accounts.Get(ctx, id)
	if err != nil {
		p.t.Fatal(err)
	}
	for _, l := range slices.Sorted(maps.Keys(links)) {
		a.AuthCerts = append(a.AuthCerts, account.CertRef{Kind: pkibridge.KindAuthentication, Link: l, Label: links[l],
			NotAfter: time.Now().AddDate(4, 0, 0), LinkedAt: time.Now()})
	}
	if err := p.accounts.Put(ctx, a); err != nil {
		p.t.Fatal(err)
	}
	return creds
}

func (c *client) signedIn() bool {
	return strings.Contains(c.do("GET", "/account?lang=en", nil).Body.String(), `id="account-who"`)
}

// issue records a token family minted in the client's session.
func (c *client) issue(grant, clientID string) {
	c.p.t.Helper()
	r, _ := http.NewRequest("GET", "/", nil)
	for _, ck := range c.cookies {
		r.AddCookie(ck)
	}
	s, ok := c.p.sessions.Current(r)
	if !ok {
		c.p.t.Fatal("no session")
	}
	if err := c.p.sessions.TokensIssued(context.Background(), s.ID, s.AccountID, s.Authenticator, clientID, grant, time.Now().Add(time.Hour)); err != nil {
		c.p.t.Fatal(err)
	}
}

func (c *client) removeLink(form url.Values) int {
	if form.Get(web.CSRFField) == "" {
		form.Set(web.CSRFField, c.csrf)
	}
	return c.do("POST", authenticatorsPath+"?lang=en", form).Code
}

func TestAccountAuthenticatorsListed(t *testing.T) {
	p := newPage(t)
	p.linked("taro", map[string]string{"CARD": account.TokenCard, "PHONE": account.TokenAndroid, "OLD": ""}, "iPhone")
	c := p.clientWith("taro", session.ACRJPKI, "jpki:PHONE")
	for lang, want := range map[string][]string{
		"en": {"My Number Card", "Smartphone certificate (Android)", "JPKI certificate (device not reported)",
			"This browser signed in with it.", `id="everywhere-do"`, `id="everywhere-confirm"`, "Sign out everywhere"},
		"ja": {"マイナンバーカード", "スマホ用電子証明書（Android）", "すべての端末からサインアウト"},
	} {
		body := c.do("GET", "/account?lang="+lang, nil).Body.String()
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s page lacks %q", lang, w)
			}
		}
		if strings.Contains(body, "authn.last_warning") || strings.Contains(body, `id="jpki-0-last"`) {
			t.Errorf("%s: a last-way warning with four ways to sign in", lang)
		}
	}
	// One way left: its removal warns and asks for a second tick.
	p.linked("hanako", map[string]string{"ONLY": account.TokenIOS})
	body := p.clientWith("hanako", session.ACRJPKI, "jpki:ONLY").do("GET", "/account?lang=en", nil).Body.String()
	for _, w := range []string{`id="jpki-0-last"`, `id="jpki-0-confirm-last"`, "This is your last way to sign in", "Smartphone certificate (iPhone)"} {
		if !strings.Contains(body, w) {
			t.Errorf("last way: page lacks %q", w)
		}
	}
}

// Requests that fail a check change nothing: no link goes, no session
// ends, no token is revoked, no event is published.
func TestAccountRemoveAuthenticatorRefused(t *testing.T) {
	p := newPage(t)
	p.linked("taro", map[string]string{"CARD": account.TokenCard, "PHONE": account.TokenAndroid})
	p.linked("jiro", map[string]string{"JIRO": account.TokenCard})
	p.linked("hanako", map[string]string{"ONLY": account.TokenIOS})
	c := p.clientWith("taro", session.ACRJPKI, "jpki:CARD")
	phone := p.clientWith("taro", session.ACRJPKI, "jpki:PHONE")
	phone.issue("gphone", "rp1")
	jiro := p.clientWith("jiro", session.ACRJPKI, "jpki:JIRO")
	hanako := p.clientWith("hanako", session.ACRJPKI, "jpki:ONLY")
	for _, tc := range []struct {
		name string
		c    *client
		form url.Values
		want int
	}{
		{"no CSRF token", c, url.Values{web.CSRFField: {"forged"}, "action": {"remove"}, "link": {"PHONE"}}, http.StatusForbidden},
		{"another account's link", c, url.Values{"action": {"remove"}, "link": {"JIRO"}}, http.StatusBadRequest},
		{"unknown link", c, url.Values{"action": {"remove"}, "link": {"NOPE"}}, http.StatusBadRequest},
		{"no link", c, url.Values{"action": {"remove"}}, http.StatusBadRequest},
		{"long link", c, url.Values{"action": {"remove"}, "link": {strings.Repeat("P", 65)}}, http.StatusBadRequest},
		{"other action", c, url.Values{"action": {"rename"}, "link": {"PHONE"}}, http.StatusBadRequest},
		{"last way unconfirmed", hanako, url.Values{"action": {"remove"}, "link": {"ONLY"}}, http.StatusBadRequest},
		{"signed out", p.client("", ""), url.Values{"action": {"remove"}, "link": {"PHONE"}}, http.StatusSeeOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.removeLink(tc.form); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		form url.Values
		want int
	}{
		{"no CSRF token", url.Values{web.CSRFField: {"forged"}, "confirm": {"1"}}, http.StatusForbidden},
		{"unconfirmed", url.Values{web.CSRFField: {c.csrf}}, http.StatusBadRequest},
		// A body past the forms' bound is not parsed at all, so its
		// CSRF token is never seen and nothing happens.
		{"oversized body", url.Values{"confirm": {"1"}, "pad": {strings.Repeat("x", maxFormBytes)}, web.CSRFField: {c.csrf}}, http.StatusForbidden},
	} {
		t.Run("everywhere "+tc.name, func(t *testing.T) {
			if w := c.do("POST", everywherePath, tc.form); w.Code != tc.want {
				t.Fatalf("status %d, want %d", w.Code, tc.want)
			}
		})
	}
	for name, who := range map[string]*client{"card": c, "phone": phone, "jiro": jiro, "hanako": hanako} {
		if !who.signedIn() {
			t.Errorf("%s's session ended", name)
		}
	}
	for id, n := range map[string]int{"taro": 2, "jiro": 1, "hanako": 1} {
		if a, _ := p.accounts.Get(context.Background(), id); len(a.AuthCerts) != n {
			t.Errorf("%s has %d links, want %d", id, len(a.AuthCerts), n)
		}
	}
	if got := p.tokens.list(); len(got) != 0 {
		t.Errorf("revoked %v", got)
	}
	for _, e := range p.published() {
		if e.Kind != events.SignedIn {
			t.Errorf("published %+v", e)
		}
	}
}

// A lost phone: removed from the card's session, the phone's sessions
// end and their tokens are revoked; the card's session stays.
func TestAccountRemovePhone(t *testing.T) {
	p := newPage(t)
	creds := p.linked("taro", map[string]string{"CARD": account.TokenCard, "PHONE": account.TokenAndroid}, "Pixel")
	card := p.clientWith("taro", session.ACRJPKI, "jpki:CARD")
	phone := p.clientWith("taro", session.ACRJPKI, "jpki:PHONE")
	phone2 := p.clientWith("taro", session.ACRJPKI, "jpki:PHONE")
	pk := p.clientWith("taro", session.ACRPasskey, "passkey:"+base64.RawURLEncoding.EncodeToString(creds[0]))
	card.issue("gcard", "rp1")
	phone.issue("gphone", "rp1")
	phone2.issue("gphone2", "rp2")
	pk.issue("gpk", "rp2")

	w := card.do("POST", authenticatorsPath+"?lang=en", url.Values{web.CSRFField: {card.csrf}, "action": {"remove"}, "link": {"PHONE"}})
	if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Location"), authRemovedParam) {
		t.Fatalf("remove: %d %s", w.Code, w.Header().Get("Location"))
	}
	if phone.signedIn() || phone2.signedIn() {
		t.Fatal("the phone's sessions survived")
	}
	if !card.signedIn() || !pk.signedIn() {
		t.Fatal("another authenticator's session ended")
	}
	if got := p.tokens.list(); !slices.Equal(got, []string{"gphone", "gphone2"}) {
		t.Fatalf("revoked %v", got)
	}
	a, _ := p.accounts.Get(context.Background(), "taro")
	if _, ok := a.AuthCert("PHONE"); ok || len(a.AuthCerts) != 1 {
		t.Fatalf("links after removal: %+v", a.AuthCerts)
	}
	body := card.do("GET", "/account?lang=en&"+authRemovedParam+"=1", nil).Body.String()
	if !strings.Contains(body, `id="authn-notice"`) || strings.Contains(body, "Smartphone certificate (Android)") {
		t.Error("the page still lists the phone, or says nothing")
	}

	// The passkey goes the same way, from the passkey's own session: that
	// session ends and the browser's cookie is cleared.
	w = pk.change("remove", creds[0], "")
	if w.Code != http.StatusSeeOther {
		t.Fatalf("remove passkey: %d", w.Code)
	}
	if !slices.ContainsFunc(w.Result().Cookies(), func(c *http.Cookie) bool { return c.MaxAge < 0 }) {
		t.Error("the removed passkey's own session kept its cookie")
	}
	if pk.signedIn() || !card.signedIn() {
		t.Fatal("removing the passkey ended the wrong sessions")
	}
	if got := p.tokens.list(); !slices.Equal(got, []string{"gphone", "gphone2", "gpk"}) {
		t.Fatalf("revoked %v", got)
	}

	var changed []string
	var endedFor []string
	for _, e := range p.published() {
		switch e.Kind {
		case events.CredentialChanged:
			changed = append(changed, e.Credential.Type+":"+e.Credential.Change+":"+e.Credential.Label)
			if e.AccountID != "taro" || e.Credential.Ref == "" {
				t.Errorf("credential event %+v", e)
			}
		case events.SessionEnded:
			if e.Reason != events.ReasonAuthenticatorRemoved {
				t.Errorf("session ended for %q", e.Reason)
			}
			endedFor = append(endedFor, strings.Join(e.ClientIDs, ","))
		}
	}
	if want := []string{"jpki:delete:JPKIAPGPSETOKEN", "passkey:delete:"}; !slices.Equal(changed, want) {
		t.Errorf("CredentialChanged %v, want %v", changed, want)
	}
	slices.Sort(endedFor)
	if want := []string{"rp1", "rp2", "rp2"}; !slices.Equal(endedFor, want) {
		t.Errorf("SessionEnded clients %v, want %v", endedFor, want)
	}
}

func TestAccountSignOutEverywhere(t *testing.T) {
	p := newPage(t)
	p.linked("taro", map[string]string{"CARD": account.TokenCard, "PHONE": account.TokenAndroid})
	p.linked("jiro", map[string]string{"JIRO": account.TokenCard})
	card := p.clientWith("taro", session.ACRJPKI, "jpki:CARD")
	phone := p.clientWith("taro", session.ACRJPKI, "jpki:PHONE")
	jiro := p.clientWith("jiro", session.ACRJPKI, "jpki:JIRO")
	card.issue("g1", "rp1")
	phone.issue("g2", "rp2")
	jiro.issue("g3", "rp1")
	// A consent from before the session index: its RP's tokens are
	// revoked RP by RP.
	if _, err := p.grants.Update(context.Background(), "taro", "old-rp", func(*consent.Grant) (*consent.Grant, error) {
		return &consent.Grant{Claims: []string{"name"}, At: time.Now()}, nil
	}); err != nil {
		t.Fatal(err)
	}
	w := card.do("POST", everywherePath+"?lang=ja", url.Values{web.CSRFField: {card.csrf}, "confirm": {"1"}})
	if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Location"), everywhereParam) {
		t.Fatalf("sign out everywhere: %d %s", w.Code, w.Header().Get("Location"))
	}
	if card.signedIn() || phone.signedIn() || !jiro.signedIn() {
		t.Fatal("wrong sessions ended")
	}
	if got := p.tokens.list(); !slices.Equal(got, []string{"g1", "g2"}) {
		t.Fatalf("revoked %v", got)
	}
	if !slices.Equal(p.rpRevoked, []string{"taro/old-rp"}) {
		t.Fatalf("revoked RP by RP: %v", p.rpRevoked)
	}
	body := card.do("GET", w.Header().Get("Location"), nil).Body.String()
	if !strings.Contains(body, `id="everywhere-done"`) || !strings.Contains(body, "すべての端末でサインアウトし") {
		t.Error("no notice after signing out everywhere")
	}
	n := 0
	for _, e := range p.published() {
		if e.Kind == events.SessionEnded {
			n++
			if e.Reason != events.ReasonEverywhere || e.AccountID != "taro" {
				t.Errorf("event %+v", e)
			}
		}
	}
	if n != 2 {
		t.Errorf("%d SessionEnded events, want 2", n)
	}
}

// The last passkey of an account without a card or phone is removed
// only with the second tick; a disabled passkey never counts.
func TestAccountRemoveLastPasskey(t *testing.T) {
	p := newPage(t)
	creds := p.linked("taro", nil, "Only")
	c := p.clientWith("taro", session.ACRPasskey, "passkey:"+base64.RawURLEncoding.EncodeToString(creds[0]))
	body := c.do("GET", "/account?lang=en", nil).Body.String()
	if !strings.Contains(body, `id="pk-0-last"`) || !strings.Contains(body, `id="jpki-none"`) {
		t.Fatal("no last-way warning on the only passkey")
	}
	if w := c.change("remove", creds[0], ""); w.Code != http.StatusBadRequest {
		t.Fatalf("unconfirmed removal of the last passkey: %d", w.Code)
	}
	if a, _ := p.accounts.Get(context.Background(), "taro"); len(a.Passkeys) != 1 || !c.signedIn() {
		t.Fatal("an unconfirmed removal changed something")
	}
	w := c.do("POST", passkeysPath, url.Values{web.CSRFField: {c.csrf}, "action": {"remove"}, "confirm_last": {"1"},
		"passkey": {base64.RawURLEncoding.EncodeToString(creds[0])}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("confirmed removal: %d", w.Code)
	}
	if a, _ := p.accounts.Get(context.Background(), "taro"); len(a.Passkeys) != 0 || c.signedIn() {
		t.Fatal("the confirmed removal did not remove the passkey and end its session")
	}
}
