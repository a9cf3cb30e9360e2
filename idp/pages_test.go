package idp

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
)

// TestAccountPageSaysWhoWhenAndAsksFirst: the account page names the
// signed-in resident, gives times with their time zone, withdraws only
// after a second, deliberate step, and after the last withdrawal does not
// claim the resident never signed in anywhere.
func TestAccountPageSaysWhoWhenAndAsksFirst(t *testing.T) {
	o := newConsentOP(t, store.NewMemory(), nil)
	b := o.proofed(o.pki.wallet(t, factsTaro))
	for lang, c := range map[string]struct{ who, zone string }{
		"ja": {"山田　太郎 さんとしてサインインしています。", "（日本時間）"},
		"en": {"Signed in as 山田　太郎.", " JST"},
	} {
		code, _, page := b.get("/account?lang=" + lang)
		if code != http.StatusOK || !strings.Contains(page, c.who) || !strings.Contains(page, c.zone) {
			t.Fatalf("%s: %d, the page does not say who is signed in or the time zone:\n%s", lang, code, page)
		}
		for _, id := range []string{`id="account-who"`, `id="account-services"`, `id="account-logout"`} {
			if !strings.Contains(page, id) {
				t.Errorf("%s: no %s", lang, id)
			}
		}
	}
	// The withdrawal is inside a closed disclosure: one click opens it,
	// the button in it acts.
	_, _, page := b.get("/account?lang=en")
	box := regexp.MustCompile(`(?s)<details class="revoke" id="revoke-0-box">.*?</details>`).FindString(page)
	if box == "" || strings.Contains(box, "<details class=\"revoke\" id=\"revoke-0-box\" open") ||
		!strings.Contains(box, `id="revoke-0"`) || !strings.Contains(box, "Withdraw everything Web RP may receive?") {
		t.Fatalf("the withdrawal is not behind a confirmation:\n%s", page)
	}
	csrf := csrfFrom(t, page)
	code, loc, _ := b.post("/account/revoke?lang=en", url.Values{web.CSRFField: {csrf}, "client_id": {"web"}, "action": {"revoke"}})
	if code != http.StatusSeeOther {
		t.Fatalf("revoke: %d", code)
	}
	_, _, page = b.get(loc)
	if !strings.Contains(page, "No service receives your information now.") || strings.Contains(page, "not signed in to any service") {
		t.Fatalf("after withdrawing the last service:\n%s", page)
	}
	// Signed out: no name, a way to sign in.
	if _, _, page := o.browser().get("/account?lang=en"); strings.Contains(page, "山田") || !strings.Contains(page, `id="account-signin"`) {
		t.Fatalf("signed out:\n%s", page)
	}
}

// TestConsentScreenNameAndWording: the name is one box listing its parts
// with their values; unticking it shares none of them; an item's value is
// labelled for both states (CSS shows the one that applies); the RP's
// logo is on the screen; "sensitive" reads naturally.
func TestConsentScreenNameAndWording(t *testing.T) {
	o := newConsentOP(t, store.NewMemory(), nil)
	b := o.proofed(o.pki.wallet(t, factsTaro))
	ar, conf, verifier := b.request("ida", []string{"name", "birthdate"}, "", oauth2.SetAuthURLParam("prompt", "consent"))
	code, _, page := b.get(authreq.ConsentURL(ar))
	if code != http.StatusOK {
		t.Fatalf("consent: %d", code)
	}
	for _, want := range []string{
		`id="claim-name"`, `id="claim-name-parts"`, "姓（山田）", "名（太郎）",
		`<span class="on">提供される内容：</span><span class="off">チェックすると提供される内容：</span>`,
		"慎重に扱う情報", `src="/rp-logo/ida"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the consent screen lacks %q", want)
		}
	}
	for _, not := range []string{`id="claim-family_name"`, `id="claim-given_name"`, "要注意"} {
		if strings.Contains(page, not) {
			t.Errorf("the consent screen shows %q", not)
		}
	}
	// Untick the name: no part of it leaves, anywhere.
	action, fields := pageForm(t, page, "consent")
	var kept []formField
	for _, f := range fields {
		if f.Value == "name" && f.Type == "checkbox" {
			continue
		}
		kept = append(kept, f)
	}
	v := submission(kept)
	v.Set("action", "allow")
	code, loc, body := b.post(action, v)
	if code != http.StatusSeeOther {
		t.Fatalf("consent post: %d\n%s", code, body)
	}
	tok := o.tokens(conf, verifier, b.callback(loc))
	_, ui := o.userinfo(tok.AccessToken)
	for where, claims := range map[string]map[string]any{"ID token": idClaims(t, tok), "userinfo": ui} {
		for _, c := range []string{"name", "family_name", "given_name"} {
			if _, ok := claims[c]; ok {
				t.Errorf("%s carries %s after the name was unticked", where, c)
			}
		}
	}
}

// TestErrorPageHasAWayOn: an error page has the language switch and a
// link on, in both languages.
func TestErrorPageHasAWayOn(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	for lang, want := range map[string]string{"ja": "Watashi のアカウントページへ", "en": "Go to your Watashi account"} {
		code, _, page := o.browser().get(authreq.LoginURL("no-such-request", "lang", lang))
		if code != http.StatusBadRequest || !strings.Contains(page, want) || !strings.Contains(page, `id="lang-ja"`) || !strings.Contains(page, `id="lang-en"`) {
			t.Errorf("%s: %d\n%s", lang, code, page)
		}
	}
}

// TestFaviconAndLogoRoutes: /favicon.ico is the icon, not a 404; the RP
// logo route answers for any client ID, with a mark when there is no logo.
func TestFaviconAndLogoRoutes(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	b := o.browser()
	res, err := b.hc.Get(o.issuer + "/favicon.ico")
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4)
	_, _ = res.Body.Read(head)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || string(head) != "\x00\x00\x01\x00" || !strings.Contains(res.Header.Get("Content-Type"), "icon") {
		t.Errorf("/favicon.ico: %d %q %q", res.StatusCode, res.Header.Get("Content-Type"), head)
	}
	for _, id := range []string{"web", "nobody"} {
		res, err := b.hc.Get(o.issuer + "/rp-logo/" + id)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "image/svg+xml" {
			t.Errorf("/rp-logo/%s: %d %s", id, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
}
