package idp

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
)

// field finds a form field by id.
func fieldByID(fields []formField, id string) (formField, bool) {
	for _, f := range fields {
		if f.ID == id {
			return f, true
		}
	}
	return formField{}, false
}

func hiddenClaims(fields []formField) []string {
	var out []string
	for _, f := range fields {
		if f.Type == "hidden" && f.Name == consent.FormClaim {
			out = append(out, f.Value)
		}
	}
	return out
}

// The screen: who asks, each claim with its value, essential claims
// locked (a checked, disabled box and a hidden input), optional ones
// ticked, sensitive optional ones unticked, the age alternative as radio
// buttons, labels and descriptions for every control, in Japanese unless
// the RP or the browser asks for English, with a language switch that
// keeps the flow.
func TestConsentScreen(t *testing.T) {
	o := newConsentOP(t, store.NewMemory(), nil)
	b := o.proofed(o.pki.wallet(t, factsTaro))
	claims := `{"id_token":{"name":{"essential":true}},"userinfo":{"birthdate":null,"age_over_20":null,` +
		`"address":{"purpose":"配送先の確認のため"}}}`
	ar, _, _ := b.request("ida", []string{"gender"}, claims)
	code, _, page := b.get(authreq.ConsentURL(ar))
	if code != http.StatusOK {
		t.Fatalf("consent page %d\n%s", code, page)
	}
	for _, want := range []string{
		`<html lang="ja">`, `id="rp-name" class="rp-name">Example Bank<`, `id="rp-organization">株式会社エグザンプル銀行<`,
		`id="rp-verified"`, `id="rp-purpose">口座開設の本人確認<`, `id="rp-policy" href="https://bank.example/privacy"`,
		`山田　太郎`, `1980-12-31`, `東京都千代田区霞が関一丁目1番1号`, `男性`, `配送先の確認のため`,
		`<fieldset class="claims">`, `<legend>`, `id="lang-en" href="/consent?id=` + url.QueryEscape(ar) + `&amp;lang=en"`,
		`aria-current="page">日本語`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	action, fields := pageForm(t, page, "consent")
	if action != "/consent?id="+url.QueryEscape(ar)+"&lang=ja" {
		t.Errorf("form action %q", action)
	}
	// Every checkbox and radio has a label and a description.
	for _, f := range fields {
		if f.Type != "checkbox" && f.Type != "radio" {
			continue
		}
		if !strings.Contains(page, `<label for="`+f.ID+`">`) {
			t.Errorf("%s has no label", f.ID)
		}
	}
	for _, c := range []string{"name", "birthdate", "gender", "address"} {
		if !regexp.MustCompile(`id="claim-` + c + `"[^>]*aria-describedby="[^"]*claim-` + c + `-value"`).MatchString(page) {
			t.Errorf("claim %s: checkbox not described by its value", c)
		}
	}
	for _, c := range []struct {
		id                string
		checked, disabled bool
	}{
		{"claim-name", true, true},        // essential: locked
		{"claim-birthdate", false, false}, // sensitive and optional: opt in
		{"claim-gender", false, false},
		{"claim-address", false, false},
		{"as-birthdate-birthdate", true, false}, // the full date preselected
		{"as-birthdate-age_over_20", false, false},
		{"as-birthdate-age_over_18", false, false}, // the client's policy offers both ages
	} {
		f, ok := fieldByID(fields, c.id)
		if !ok || f.Checked != c.checked || f.Disabled != c.disabled {
			t.Errorf("%s: %+v (found %v), want checked=%v disabled=%v", c.id, f, ok, c.checked, c.disabled)
		}
	}
	if got := hiddenClaims(fields); !slices.Equal(got, []string{"name"}) {
		t.Errorf("hidden claims %v, want the essential name only", got)
	}
	if !strings.Contains(page, `id="claim-name-req">必須<`) {
		t.Error("the locked claim is not marked required for screen readers")
	}
	// Optional claims that are not sensitive start ticked.
	ar2, _, _ := b.request("web", []string{"name"}, "", oauth2.SetAuthURLParam("prompt", "consent"))
	_, _, page2 := b.get(authreq.ConsentURL(ar2))
	_, f2 := pageForm(t, page2, "consent")
	if f, _ := fieldByID(f2, "claim-name"); !f.Checked || f.Disabled {
		t.Errorf("optional name: %+v", f)
	}
	// The name is one choice: its parts have no boxes of their own.
	for _, part := range []string{"claim-family_name", "claim-given_name"} {
		if f, ok := fieldByID(f2, part); ok {
			t.Errorf("the name's part has a box of its own: %+v", f)
		}
	}

	// English: by ui_locales, by Accept-Language, and by the switch.
	arEN, _, _ := b.request("ida", []string{"name"}, "", oauth2.SetAuthURLParam("ui_locales", "en-GB ja"))
	for _, c := range []struct {
		name, url string
		hdr       []string
		want      string
	}{
		{"ui_locales", authreq.ConsentURL(arEN), nil, "en"},
		{"Accept-Language", authreq.ConsentURL(ar), []string{"Accept-Language", "en-US,en;q=0.9"}, "en"},
		{"switch to English", authreq.ConsentURL(ar) + "&lang=en", nil, "en"},
		{"switch back", authreq.ConsentURL(arEN) + "&lang=ja", nil, "ja"},
	} {
		code, _, page := b.get(c.url, c.hdr...)
		if code != http.StatusOK || !strings.Contains(page, `<html lang="`+c.want+`">`) {
			t.Errorf("%s: %d, want lang %s", c.name, code, c.want)
		}
		if c.want == "en" && !strings.Contains(page, "is asking for your information") {
			t.Errorf("%s: not in English", c.name)
		}
	}
	// The switch keeps the flow: submitting the English form completes
	// the same request.
	_, _, pageEN := b.get(authreq.ConsentURL(ar) + "&lang=en")
	actionEN, fieldsEN := pageForm(t, pageEN, "consent")
	if !strings.Contains(actionEN, "lang=en") {
		t.Errorf("English form posts to %q", actionEN)
	}
	v := submission(fieldsEN)
	v.Set("action", "allow")
	if code, loc, _ := b.post(actionEN, v); code != http.StatusSeeOther || !strings.HasPrefix(loc, o.issuer+callbackPath) && !strings.HasPrefix(loc, callbackPath) {
		t.Fatalf("English consent: %d %q", code, loc)
	}
}

// What the resident picks is what the RP gets: unticked claims stay
// home, the age check replaces the birth date, and the essential claims
// go.
func TestConsentChoicesRelease(t *testing.T) {
	o := newConsentOP(t, store.NewMemory(), nil)
	b := o.proofed(o.pki.wallet(t, factsTaro))
	claims := `{"userinfo":{"name":{"essential":true},"birthdate":null,"gender":null,"address":null}}`
	ar, conf, verifier := b.request("ida", nil, claims)
	_, loc := b.consentWith(ar, "allow", func(fs []formField) []formField {
		for i := range fs {
			switch fs[i].ID {
			case "claim-birthdate", "claim-address":
				fs[i].Checked = true
			case "claim-gender":
				fs[i].Checked = false
			case "as-birthdate-birthdate":
				fs[i].Checked = false
			case "as-birthdate-age_over_20":
				fs[i].Checked = true
			}
		}
		return fs
	})
	tok := o.tokens(conf, verifier, b.callback(loc))
	st, ui := o.userinfo(tok.AccessToken)
	if st != http.StatusOK {
		t.Fatalf("userinfo %d", st)
	}
	got := personalOf(ui)
	want := map[string]any{"name": "山田\u3000太郎", "age_over_20": true,
		"address": map[string]any{"formatted": factsTaro.Address, "country": "JP"}}
	if !sameJSON(got, want) {
		t.Fatalf("userinfo %v, want %v", got, want)
	}
	if p := personal(idClaims(t, tok)); len(p) != 0 {
		t.Errorf("ID token carries %v; everything was asked for userinfo", p)
	}
	g := o.grantOf(b.sessionAccount(), "ida")
	if !slices.Equal(g.Claims, []string{"name", "age_over_20", "address"}) || g.Narrowed["birthdate"] != "age_over_20" ||
		!slices.Contains(g.Declined, "gender") {
		t.Fatalf("grant %+v", g)
	}
}

// Remembered grants: the same request skips the screen, a request for
// more asks only the difference (showing the rest as already shared),
// prompt=consent asks everything again with the last answers preset,
// and prompt=none cannot show a screen (consent_required).
func TestConsentRemembered(t *testing.T) {
	o := newConsentOP(t, store.NewMemory(), nil)
	b := o.proofed(o.pki.wallet(t, factsTaro))

	ar, _, _ := b.request("ida", []string{"name"}, "")
	if code, loc := b.consent(ar, "allow"); code != http.StatusSeeOther || !strings.Contains(loc, callbackPath) {
		t.Fatalf("first consent: %d %q", code, loc)
	}
	ar, _, _ = b.request("ida", []string{"name"}, "")
	if code, loc, _ := b.get(authreq.ConsentURL(ar)); code != http.StatusSeeOther || !strings.Contains(loc, callbackPath) {
		t.Fatalf("same request again: %d %q, want no screen", code, loc)
	}

	// More: the address is new; the name is listed as already shared.
	ar, _, _ = b.request("ida", []string{"name", "address"}, "")
	code, _, page := b.get(authreq.ConsentURL(ar))
	if code != http.StatusOK {
		t.Fatalf("more: %d", code)
	}
	_, fields := pageForm(t, page, "consent")
	var boxes []string
	for _, f := range fields {
		if f.Type == "checkbox" {
			boxes = append(boxes, f.Value)
		}
	}
	if !slices.Equal(boxes, []string{"address"}) || !strings.Contains(page, `id="consent-kept"`) ||
		!regexp.MustCompile(`(?s)id="consent-kept".*<li>氏名</li>`).MatchString(page) {
		t.Fatalf("more: boxes %v, kept section missing or wrong\n%s", boxes, page)
	}

	// prompt=none while the address is unanswered: consent_required.
	arNone, _, _ := b.request("ida", []string{"name", "address"}, "", oauth2.SetAuthURLParam("prompt", "none"))
	_, loc, _ := b.get(authreq.ConsentURL(arNone))
	if u, _ := url.Parse(loc); u.Query().Get("error") != "consent_required" || u.Query().Get("state") != "st-1" {
		t.Fatalf("prompt=none: %q", loc)
	}
	// The resident declines the address; the "no" is remembered.
	if code, _ := b.consent(ar, "allow"); code != http.StatusSeeOther {
		t.Fatalf("decline address: %d", code)
	}
	arNone, _, _ = b.request("ida", []string{"name", "address"}, "", oauth2.SetAuthURLParam("prompt", "none"))
	if _, loc, _ := b.get(authreq.ConsentURL(arNone)); !strings.Contains(loc, callbackPath) {
		t.Fatalf("prompt=none after the answer: %q", loc)
	}

	// prompt=consent: everything, preset from the grant (name ticked,
	// address unticked as declined).
	ar, _, _ = b.request("ida", []string{"name", "address"}, "", oauth2.SetAuthURLParam("prompt", "consent"))
	_, _, page = b.get(authreq.ConsentURL(ar))
	_, fields = pageForm(t, page, "consent")
	if f, _ := fieldByID(fields, "claim-name"); !f.Checked {
		t.Errorf("prompt=consent: name not preset: %+v", f)
	}
	if f, ok := fieldByID(fields, "claim-address"); !ok || f.Checked {
		t.Errorf("prompt=consent: address %+v (found %v)", f, ok)
	}
	if strings.Contains(page, `id="consent-kept"`) {
		t.Error("prompt=consent lists kept claims instead of asking")
	}
}

// Refusals change nothing: a forged or stale form is answered with the
// form again (400), a missing CSRF token with 403; deny ends the request
// with access_denied at the RP.
func TestConsentRefusals(t *testing.T) {
	o := newConsentOP(t, store.NewMemory(), nil)
	b := o.proofed(o.pki.wallet(t, factsTaro))
	acct := b.sessionAccount()
	claims := `{"userinfo":{"name":{"essential":true},"birthdate":null,"age_over_20":null}}`
	ar, _, _ := b.request("ida", nil, claims)
	_, _, page := b.get(authreq.ConsentURL(ar))
	action, fields := pageForm(t, page, "consent")
	base := submission(fields)
	before := o.grantOf(acct, "ida")

	for _, c := range []struct {
		name   string
		form   func(url.Values)
		status int
		errID  bool
	}{
		{"no CSRF token", func(v url.Values) { v.Del(web.CSRFField) }, http.StatusForbidden, false},
		{"unknown action", func(v url.Values) { v.Set("action", "maybe") }, http.StatusBadRequest, false},
		{"claim not requested", func(v url.Values) { v.Add("claim", "gender") }, http.StatusBadRequest, true},
		{"essential left out", func(v url.Values) { v.Del("claim") }, http.StatusBadRequest, true},
		{"alternative not offered", func(v url.Values) { v.Set("as.birthdate", "gender") }, http.StatusBadRequest, true},
		{"two alternatives", func(v url.Values) { v["as.birthdate"] = []string{"birthdate", "age_over_20"} }, http.StatusBadRequest, true},
		{"alternative for a claim not asked", func(v url.Values) { v.Set("as.gender", "gender") }, http.StatusBadRequest, true},
		{"too many fields", func(v url.Values) {
			for i := range 70 {
				v.Set("x"+string(rune('a'+i%26))+strings.Repeat("y", i), "1")
			}
		}, http.StatusBadRequest, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := url.Values{}
			for k, vs := range base {
				v[k] = slices.Clone(vs)
			}
			v.Set("action", "allow")
			c.form(v)
			code, loc, body := b.post(action, v)
			if code != c.status || loc != "" {
				t.Fatalf("%d %q, want %d", code, loc, c.status)
			}
			if c.errID && (!strings.Contains(body, `id="consent-error"`) || !strings.Contains(body, `id="consent"`)) {
				t.Errorf("the form is not shown again with the error:\n%.400s", body)
			}
			if g := o.grantOf(acct, "ida"); !sameJSON(g, before) {
				t.Errorf("grant changed: %+v", g)
			}
			if a, err := o.s.requests.Load(context.Background(), ar); err != nil || a.Completed {
				t.Errorf("auth request completed or gone: %v", err)
			}
		})
	}

	// Another browser cannot see or answer this consent.
	thief := o.browser()
	if code, _, _ := thief.get(authreq.ConsentURL(ar)); code != http.StatusForbidden {
		t.Errorf("foreign browser: %d", code)
	}

	// Deny: access_denied at the RP, nothing remembered.
	v := base
	v.Set("action", "deny")
	code, loc, _ := b.post(action, v)
	u, _ := url.Parse(loc)
	if code != http.StatusFound || u.Query().Get("error") != "access_denied" || u.Query().Get("state") != "st-1" ||
		!strings.HasPrefix(loc, "https://bank.example/cb") {
		t.Fatalf("deny: %d %q", code, loc)
	}
	if g := o.grantOf(acct, "ida"); !sameJSON(g, before) {
		t.Errorf("deny changed the grant: %+v", g)
	}
	// Back to the screen after answering: the resident, still signed
	// in, is told the request is over; the request stays closed.
	if code, _, page := b.get(authreq.ConsentURL(ar)); code != http.StatusOK || !strings.Contains(page, `id="done"`) || strings.Contains(page, `id="consent"`) {
		t.Errorf("the denied request, seen again: %d\n%s", code, page)
	}
	v.Set("action", "allow")
	if code, _, page := b.post(action, v); code != http.StatusOK || !strings.Contains(page, `id="done"`) {
		t.Errorf("the denied request, answered again: %d\n%s", code, page)
	}
	// Without a session it is an error, as any unknown request is.
	if code, _, _ := o.browser().get(authreq.ConsentURL(ar)); code != http.StatusBadRequest {
		t.Errorf("the denied request in another browser: %d", code)
	}
}

// The claims parameter is checked at /authorize: a malformed one is an
// invalid_request at the RP; a sub the RP insists on must be the
// resident's.
func TestAuthorizeClaimsParameter(t *testing.T) {
	o := newConsentOP(t, store.NewMemory(), nil)
	for _, c := range []struct{ name, claims string }{
		{"purpose too short", `{"userinfo":{"name":{"purpose":"x"}}}`},
		{"essential not boolean", `{"userinfo":{"name":{"essential":"yes"}}}`},
		{"verified_claims without verification", `{"userinfo":{"verified_claims":{"claims":{"name":null}}}}`},
		{"verified_claims with empty claims", `{"userinfo":{"verified_claims":{"verification":{"trust_framework":null},"claims":{}}}}`},
		{"duplicate member", `{"userinfo":{"name":null},"userinfo":{}}`},
		{"too large", `{"userinfo":{"name":{"values":["` + strings.Repeat("a", consent.MaxClaimsRequestSize) + `"]}}}`},
		{"empty", ` `},
	} {
		t.Run(c.name, func(t *testing.T) {
			conf := o.oauth("ida", "name")
			res := o.get(conf.AuthCodeURL("st-9", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
				oauth2.SetAuthURLParam("claims", c.claims)))
			u, _ := url.Parse(res.Header.Get("Location"))
			if res.StatusCode != http.StatusFound || u.Host != "bank.example" || u.Query().Get("error") != "invalid_request" ||
				u.Query().Get("state") != "st-9" {
				t.Fatalf("%d %q", res.StatusCode, res.Header.Get("Location"))
			}
		})
	}

	// sub: the session must be that subject's.
	b := o.proofed(o.pki.wallet(t, factsTaro))
	c, _ := o.s.clients.Get(context.Background(), "ida")
	mine := o.s.clients.Subject(c, b.sessionAccount())
	ar, _, _ := o.authorizeClaims("ida", []string{"name"}, `{"id_token":{"sub":{"value":"`+mine+`"}}}`)
	if code, loc, _ := b.get(authreq.LoginURL(ar)); code != http.StatusSeeOther || loc != authreq.ConsentURL(ar) {
		t.Errorf("own sub: %d %q", code, loc)
	}
	ar, _, _ = o.authorizeClaims("ida", []string{"name"}, `{"id_token":{"sub":{"value":"someone-else"}}}`)
	if code, loc, _ := b.get(authreq.LoginURL(ar)); code != http.StatusSeeOther || !strings.Contains(loc, "tx=") {
		t.Errorf("another sub was answered by the session: %d %q", code, loc)
	}
}

// verified_claims (OIDC4IDA): requested through the claims parameter,
// shown as their own line, released only when granted, with the
// evidence members the RP asked for; a client without the right sees no
// line and gets nothing.
func TestVerifiedClaimsRelease(t *testing.T) {
	o := newConsentOP(t, store.NewMemory(), nil)
	w := o.pki.wallet(t, factsTaro)
	b := o.proofed(w)
	claims := `{"userinfo":{"verified_claims":{"verification":{"trust_framework":null,"time":null,` +
		`"evidence":[{"type":{"value":"electronic_signature"},"issuer":null,"serial_number":null}]},` +
		`"claims":{"name":null,"birthdate":null}}}}`

	ar, conf, verifier := b.request("ida", nil, claims)
	_, _, page := b.get(authreq.ConsentURL(ar))
	if !strings.Contains(page, `id="claim-verified_claims"`) || !strings.Contains(page, w.SigCert.SerialNumber.String()) {
		t.Fatalf("no verified_claims line showing the serial:\n%s", page)
	}
	_, loc := b.consentAll(ar)
	tok := o.tokens(conf, verifier, b.callback(loc))
	_, ui := o.userinfo(tok.AccessToken)
	vc, _ := ui["verified_claims"].(map[string]any)
	ver, _ := vc["verification"].(map[string]any)
	ev, _ := ver["evidence"].([]any)
	cl, _ := vc["claims"].(map[string]any)
	if ver["trust_framework"] != consent.TrustFrameworkJPKI || ver["time"] == nil || len(ev) != 1 ||
		cl["name"] != "山田\u3000太郎" || cl["birthdate"] != "1980-12-31" {
		t.Fatalf("verified_claims %v", ui["verified_claims"])
	}
	e, _ := ev[0].(map[string]any)
	if e["type"] != "electronic_signature" || e["serial_number"] != w.SigCert.SerialNumber.String() ||
		e["issuer"] != w.SigCert.Issuer.String() || e["created_at"] != nil {
		t.Fatalf("evidence %v", e)
	}
	if _, ok := ui["name"]; ok {
		t.Error("name released outside verified_claims although asked only inside")
	}
	if in := o.introspect(tok.AccessToken, "ida"); !sameJSON(in["verified_claims"], ui["verified_claims"]) {
		t.Errorf("introspection verified_claims %v", in["verified_claims"])
	}

	// Without ticking the verified_claims line: nothing verified leaves.
	ar, conf, verifier = b.request("ida", nil, claims, oauth2.SetAuthURLParam("prompt", "consent"))
	_, loc = b.consentWith(ar, "allow", func(fs []formField) []formField {
		fs = tickAll(fs)
		for i := range fs {
			if fs[i].ID == "claim-verified_claims" {
				fs[i].Checked = false
			}
		}
		return fs
	})
	tok = o.tokens(conf, verifier, b.callback(loc))
	if _, ui := o.userinfo(tok.AccessToken); len(personal(ui)) != 0 {
		t.Errorf("released %v without the verified_claims tick", personal(ui))
	}

	// A client not allowed verified claims: no line, no release.
	ar, _, _ = b.request("web", nil, claims)
	code, loc, page := b.get(authreq.ConsentURL(ar))
	if code == http.StatusOK && strings.Contains(page, "claim-verified_claims") {
		t.Fatalf("web is offered verified_claims")
	}
	if code != http.StatusSeeOther || !strings.Contains(loc, callbackPath) {
		t.Fatalf("web with only disallowed claims: %d %q, want no screen", code, loc)
	}
}
