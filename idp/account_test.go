package idp

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
)

// The account page: without a session it offers a sign-in that needs no
// RP; signed in it lists every connected RP with what it received, and
// withdrawing one deletes the grant and kills that RP's refresh and
// access tokens, leaving the other RPs alone.
func TestAccountPage(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		o := newConsentOP(t, newKV(t), nil)
		ctx := context.Background()
		w := o.pki.wallet(t, factsTaro)

		// Signed out: a sign-in link, no list.
		b := o.browser()
		code, _, page := b.get("/account")
		if code != http.StatusOK || !strings.Contains(page, `id="account-signin"`) || strings.Contains(page, `id="account-rps"`) {
			t.Fatalf("signed-out account page: %d\n%s", code, page)
		}
		// Self-service sign-in, bound to no RP: the login page, proofing,
		// and back to the account page.
		code, loc, _ := b.get("/account/login?purpose=proofing")
		lu, _ := url.Parse(loc)
		if code != http.StatusSeeOther || lu.Path != "/login" {
			t.Fatalf("account login: %d %q", code, loc)
		}
		arID := lu.Query().Get("id")
		tx, txPage := b.openTx(arID, authreq.PurposeProofing)
		if !strings.Contains(txPage, "Watashi") {
			t.Errorf("login page does not say who asks:\n%.300s", txPage)
		}
		if err := w.Approve(ctx, o.ts.Client(), b.walletURL(tx), "jws"); err != nil {
			t.Fatal(err)
		}
		if loc := b.finish(arID, tx); !strings.HasPrefix(loc, "/account") {
			t.Fatalf("account sign-in end: %q", loc)
		}
		if _, err := o.s.requests.Load(ctx, arID); err == nil {
			t.Error("the account sign-in request outlived its use")
		}
		// The pseudo client cannot be used at /authorize.
		res := o.get("/authorize?" + url.Values{"client_id": {clients.SelfServiceID}, "redirect_uri": {"https://x.example/"},
			"response_type": {"code"}, "scope": {"openid"}}.Encode())
		if res.StatusCode != http.StatusBadRequest || res.Header.Get("Location") != "" {
			t.Errorf("authorize with the pseudo client: %d %q", res.StatusCode, res.Header.Get("Location"))
		}
		code, _, page = b.get("/account")
		if code != http.StatusOK || !strings.Contains(page, `id="account-rps-empty"`) {
			t.Fatalf("no RP yet: %d\n%s", code, page)
		}

		// Two RPs with tokens: web (name, birth date) and ida (name).
		grant := func(client string, scopes ...string) *oauth2.Token {
			ar, conf, v := b.request(client, append(scopes, "offline_access"), "")
			_, loc := b.consentAll(ar)
			return o.tokens(conf, v, b.callback(loc))
		}
		webTok := grant("web", "name", "birthdate")
		idaTok := grant("ida", "name")
		code, _, page = b.get("/account")
		if code != http.StatusOK {
			t.Fatalf("account page %d", code)
		}
		for _, want := range []string{`data-client="web"`, `data-client="ida"`, "Web RP", "Example Bank", "株式会社エグザンプル銀行",
			`data-claim="birthdate">生年月日<`, `class="revoke" data-client="web"`} {
			if !strings.Contains(page, want) {
				t.Errorf("account page lacks %s", want)
			}
		}
		_, _, pageEN := b.get("/account?lang=en")
		if !strings.Contains(pageEN, `<html lang="en">`) || !strings.Contains(pageEN, `data-claim="birthdate">Date of birth<`) {
			t.Errorf("English account page:\n%s", pageEN)
		}

		// Revoke web.
		action, fields := revokeForm(t, page, "web")
		v := submission(fields)
		v.Set("action", "revoke")
		if code, _, _ := b.post(action, url.Values{"client_id": {"web"}, "action": {"revoke"}}); code != http.StatusForbidden {
			t.Errorf("revoke without CSRF: %d", code)
		}
		if g := o.grantOf(b.sessionAccount(), "web"); g == nil {
			t.Fatal("the CSRF-less revoke deleted the grant")
		}
		code, loc, _ = b.post(action, v)
		if code != http.StatusSeeOther || !strings.Contains(loc, "revoked=web") {
			t.Fatalf("revoke: %d %q", code, loc)
		}
		_, _, page = b.get(loc)
		if !strings.Contains(page, `id="account-status"`) || strings.Contains(page, `data-client="web"`) ||
			!strings.Contains(page, `data-client="ida"`) {
			t.Errorf("after revoking:\n%s", page)
		}
		if g := o.grantOf(b.sessionAccount(), "web"); g != nil {
			t.Errorf("grant survived: %+v", g)
		}
		// web's tokens are dead.
		if st, _ := o.refresh("web", webTok.RefreshToken); st != http.StatusBadRequest {
			t.Errorf("refresh after revoke: %d", st)
		}
		if st, _ := o.userinfo(webTok.AccessToken); st == http.StatusOK {
			t.Error("access token works after revoke")
		}
		if in := o.introspect(webTok.AccessToken, "web"); in["active"] != false {
			t.Errorf("introspection after revoke: %v", in)
		}
		// ida's are not.
		if st, _ := o.userinfo(idaTok.AccessToken); st != http.StatusOK {
			t.Errorf("the other RP's token: %d", st)
		}
		if st, r := o.refresh("ida", idaTok.RefreshToken); st != http.StatusOK {
			t.Errorf("the other RP's refresh: %d %v", st, r)
		}
		// Next time web asks again.
		ar, _, _ := b.request("web", []string{"name", "birthdate"}, "")
		if code, _, _ := b.get(authreq.ConsentURL(ar)); code != http.StatusOK {
			t.Errorf("consent after revoke: %d, want the screen", code)
		}

		// Refusals.
		for _, c := range []struct {
			name   string
			form   url.Values
			status int
		}{
			{"no client", url.Values{"action": {"revoke"}}, http.StatusBadRequest},
			{"wrong action", url.Values{"action": {"delete"}, "client_id": {"ida"}}, http.StatusBadRequest},
			{"pseudo client", url.Values{"action": {"revoke"}, "client_id": {clients.SelfServiceID}}, http.StatusBadRequest},
			{"control characters", url.Values{"action": {"revoke"}, "client_id": {"a\nb"}}, http.StatusBadRequest},
		} {
			c.form.Set(web.CSRFField, v.Get(web.CSRFField))
			if code, _, _ := b.post(action, c.form); code != c.status {
				t.Errorf("%s: %d, want %d", c.name, code, c.status)
			}
		}
		// Signed out: revoke needs the session.
		b.get("/logout")
		if code, loc, _ := b.post(action, v); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/account") {
			t.Errorf("revoke without a session: %d %q", code, loc)
		}
		id, err := o.s.accounts.LinkedTo(ctx, w.AuthCert)
		if err != nil || id == "" {
			t.Fatalf("no account for the wallet: %v", err)
		}
		if g := o.grantOf(id, "ida"); g == nil {
			t.Error("a signed-out revoke deleted a grant")
		}
	})
}

var reRevokeForm = regexp.MustCompile(`(?s)<form method="post" action="([^"]*)" class="revoke" data-client="([^"]*)">(.*?)</form>`)

func revokeForm(t *testing.T, page, client string) (string, []formField) {
	t.Helper()
	for _, m := range reRevokeForm.FindAllStringSubmatch(page, -1) {
		if m[2] == client {
			_, fields := pageForm(t, `<form id="x">`+m[3]+`</form>`, "x")
			return strings.ReplaceAll(m[1], "&amp;", "&"), fields
		}
	}
	t.Fatalf("no revoke form for %s:\n%s", client, page)
	return "", nil
}
