package idp

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/idp/web"
)

// rpTokens signs b in at clientID (with w, answering a transaction of
// purpose, or with the browser's session when w is nil), consents, and
// exchanges the code as the RP does.
func (b *browser) rpTokens(clientID string, w *walletsim.Wallet, purpose string) *oauth2.Token {
	b.t.Helper()
	conf := b.op.oauth(clientID, "name", "offline_access")
	v := oauth2.GenerateVerifier()
	ar := b.op.startAuth(conf, v)
	if w != nil {
		tx, _ := b.openTx(ar, purpose)
		if err := w.Approve(context.Background(), b.op.ts.Client(), b.walletURL(tx), walletsim.FormatJWS); err != nil {
			b.t.Fatalf("wallet approve: %v", err)
		}
		b.finish(ar, tx)
	} else if code, loc, body := b.get(authreq.LoginURL(ar)); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/consent?") {
		b.t.Fatalf("login with a session: %d %q\n%s", code, loc, body)
	}
	_, loc := b.consentAll(ar)
	u := b.callback(loc)
	tok, err := conf.Exchange(b.op.ctx(), u.Query().Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		b.t.Fatalf("exchange: %v", err)
	}
	if tok.RefreshToken == "" {
		b.t.Fatal("no refresh token")
	}
	return tok
}

// live reports whether an RP's tokens still work: userinfo with the
// access token, and a refresh (which rotates: the new refresh token is
// returned).
func (o *signinOP) live(t *testing.T, clientID string, tok *oauth2.Token) (userinfo int, refreshErr string, next *oauth2.Token) {
	t.Helper()
	userinfo, _ = o.userinfo(tok.AccessToken)
	code, m := o.refresh(clientID, tok.RefreshToken)
	if code != http.StatusOK {
		e, _ := m["error"].(string)
		return userinfo, e, nil
	}
	at, _ := m["access_token"].(string)
	rt, _ := m["refresh_token"].(string)
	return userinfo, "", &oauth2.Token{AccessToken: at, RefreshToken: rt}
}

var reJPKIEntry = regexp.MustCompile(`data-link="([^"]+)" data-token="([^"]+)"`)

func (b *browser) accountPage() string {
	b.t.Helper()
	code, _, page := b.get("/account?lang=en")
	if code != http.StatusOK || !strings.Contains(page, `id="account-who"`) {
		b.t.Fatalf("account page: %d\n%s", code, page)
	}
	return page
}

// outboxEvents reads every event published so far.
func outboxEvents(t *testing.T, kv events.KV, name string) []events.Event {
	t.Helper()
	o := events.NewOutbox(kv, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Publish(ctx, events.Event{Kind: events.FactsStale, AccountID: name}); err != nil {
		t.Fatal(err)
	}
	var got []events.Event
	_ = o.Consume(ctx, name, func(_ context.Context, e events.Event) error {
		if e.AccountID == name {
			cancel()
		} else if e.Kind != events.FactsStale {
			got = append(got, e)
		}
		return nil
	})
	if ctx.Err() != context.Canceled {
		t.Fatal("the marker event never came")
	}
	return got
}

// TestE2ESessionIndex: a resident with a card and a phone signs in at
// two relying parties. Removing the lost phone on the account page ends
// the phone's sessions and revokes the tokens issued in them, and only
// those; signing out everywhere then ends every session and revokes
// every token. Through the provider, on a real Redis.
func TestE2ESessionIndex(t *testing.T) {
	op := newSigninOP(t, redisKV(t))
	card := op.pki.wallet(t, factsTaro)
	card.Token = walletsim.TokenCard
	phone := op.pki.wallet(t, factsTaro)
	phone.Token = walletsim.TokenAndroid

	// At the desk: the card proves the identity for "web", then the same
	// session signs in at "other" (another sector).
	desk := op.browser()
	webTok := desk.rpTokens("web", card, "proofing")
	otherTok := desk.rpTokens("other", nil, "")
	webID, otherID := idClaims(t, webTok), idClaims(t, otherTok)
	sidWeb, _ := webID["sid"].(string)
	sidOther, _ := otherID["sid"].(string)
	if sidWeb == "" || sidOther == "" || sidWeb == sidOther {
		t.Fatalf("sid per sector: web %q, other %q", sidWeb, sidOther)
	}

	// On the phone: the card signs in, then the phone's own certificate
	// is proved in that session, which links it to the same account.
	mobile := op.browser()
	mobile.rpTokens("web", card, "signin")
	phoneTok := mobile.rpTokens("web", phone, "proofing")
	if sid, _ := idClaims(t, phoneTok)["sid"].(string); sid == "" || sid == sidWeb {
		t.Fatalf("the phone session's sid %q (desk's %q)", sid, sidWeb)
	}

	// A refreshed ID token keeps the session's sid.
	_, errc, next := op.live(t, "web", webTok)
	if errc != "" {
		t.Fatalf("refresh: %s", errc)
	}
	webTok = next
	code, m := op.refresh("web", webTok.RefreshToken)
	if code != http.StatusOK {
		t.Fatalf("refresh: %d %v", code, m)
	}
	if sid, _ := idTokenClaims(t, m["id_token"].(string))["sid"].(string); sid != sidWeb {
		t.Fatalf("refreshed sid %q, want %q", sid, sidWeb)
	}
	webTok = &oauth2.Token{AccessToken: m["access_token"].(string), RefreshToken: m["refresh_token"].(string)}

	// The desk's account page lists the card and the phone.
	page := desk.accountPage()
	links := map[string]string{}
	for _, mm := range reJPKIEntry.FindAllStringSubmatch(page, -1) {
		links[mm[2]] = mm[1]
	}
	if links[walletsim.TokenCard] == "" || links[walletsim.TokenAndroid] == "" || len(links) != 2 {
		t.Fatalf("linked: %v\n%s", links, page)
	}
	if !strings.Contains(page, "My Number Card") || !strings.Contains(page, "Smartphone certificate (Android)") {
		t.Fatal("the page does not name the card and the phone")
	}

	// The phone is lost: removed from the desk.
	code, loc, body := desk.post("/account/authenticators?lang=en", url.Values{web.CSRFField: {csrfFrom(t, page)},
		"action": {"remove"}, "link": {links[walletsim.TokenAndroid]}})
	if code != http.StatusSeeOther {
		t.Fatalf("remove the phone: %d %q\n%s", code, loc, body)
	}
	if mobile.signedIn() {
		t.Fatal("the phone's session survived its removal")
	}
	if !desk.signedIn() {
		t.Fatal("the desk's session ended with the phone")
	}
	if ui, errc, _ := op.live(t, "web", phoneTok); ui != http.StatusUnauthorized || errc != "invalid_grant" {
		t.Fatalf("the phone's tokens: userinfo %d, refresh %q", ui, errc)
	}
	ui, errc, next := op.live(t, "web", webTok)
	if ui != http.StatusOK || errc != "" {
		t.Fatalf("the desk's tokens after removing the phone: userinfo %d, refresh %q", ui, errc)
	}
	webTok = next
	// The phone cannot sign in any more.
	if err := phoneApprove(t, mobile, phone); walletsim.ErrorCode(err) != "not_enrolled" {
		t.Fatalf("the removed phone signs in: %v", err)
	}

	// Sign out everywhere, from the desk.
	page = desk.accountPage()
	code, loc, body = desk.post("/account/signout-everywhere?lang=en", url.Values{web.CSRFField: {csrfFrom(t, page)}, "confirm": {"1"}})
	if code != http.StatusSeeOther || !strings.Contains(loc, "signed_out_everywhere") {
		t.Fatalf("sign out everywhere: %d %q\n%s", code, loc, body)
	}
	if desk.signedIn() {
		t.Fatal("the desk is still signed in")
	}
	for name, tc := range map[string]struct {
		client string
		tok    *oauth2.Token
	}{"web": {"web", webTok}, "other": {"other", otherTok}} {
		if ui, errc, _ := op.live(t, tc.client, tc.tok); ui != http.StatusUnauthorized || errc != "invalid_grant" {
			t.Errorf("%s's tokens after signing out everywhere: userinfo %d, refresh %q", name, ui, errc)
		}
	}
	// Every session record is gone, the card's on the phone included.
	ctx := context.Background()
	for _, prefix := range []string{"sess:", "sessref:", "sessrp:"} {
		n := 0
		if err := op.kv.Scan(ctx, prefix, func(string) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d %s records left", n, prefix)
		}
	}

	// What the outbox heard, in order.
	var seen []string
	for _, e := range outboxEvents(t, op.kv, "e2e") {
		s := string(e.Kind)
		switch e.Kind {
		case events.SignedIn:
			s += " " + e.Method + " " + strings.Join(e.ClientIDs, ",")
		case events.SessionEnded:
			s += " " + e.Reason + " " + strings.Join(e.ClientIDs, ",")
		case events.CredentialChanged:
			s += " " + e.Credential.Type + " " + e.Credential.Change + " " + e.Credential.Label
		}
		seen = append(seen, s)
	}
	want := []string{
		"credential_changed jpki create JPKIAPICCTOKEN2",
		"signed_in jpki:JPKIAPICCTOKEN2 web",
		"signed_in jpki:JPKIAPICCTOKEN2 web",
		"credential_changed jpki create JPKIAPGPSETOKEN",
		"signed_in jpki:JPKIAPGPSETOKEN web",
		"session_ended authenticator_removed web",
		"credential_changed jpki delete JPKIAPGPSETOKEN",
	}
	if !slices.Equal(seen[:len(want)], want) {
		t.Fatalf("events:\n%s\nwant first:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
	rest := seen[len(want):]
	slices.Sort(rest)
	if wantRest := []string{"session_ended sign_out_everywhere other,web", "session_ended sign_out_everywhere web"}; !slices.Equal(rest, wantRest) {
		t.Fatalf("events after the removal: %v, want %v", rest, wantRest)
	}
}

// phoneApprove tries a sign-in with w in b.
func phoneApprove(t *testing.T, b *browser, w *walletsim.Wallet) error {
	t.Helper()
	ar := b.op.authorize("web")
	tx, _ := b.openTx(ar, "signin")
	return w.Approve(context.Background(), b.op.ts.Client(), b.walletURL(tx), walletsim.FormatJWS)
}
