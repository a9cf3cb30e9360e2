package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
	"github.com/watashi-id/watashi/templates"
)

// The resident of the browser test, typed into the phone simulator as a
// person would. The demo joins family and given name with U+3000, as on
// the card.
const (
	browserFamily    = "山田"
	browserGiven     = "太郎"
	browserName      = browserFamily + "\u3000" + browserGiven
	browserBirthdate = "1980-12-31"
	browserAddress   = "東京都千代田区霞が関一丁目1番1号"
	// browserUntick is the claim the resident unticks although the
	// screen offers it ticked, and browserLeave the one left unticked
	// although the RP asks for it. The demo client asks for every claim
	// by scope only, which makes them voluntary (OIDC Core §5.4), so the
	// resident may refuse any of them.
	browserUntick = "given_name"
	browserLeave  = "gender"
)

// browserLang is one pass of the test in one UI language.
type browserLang struct {
	lang, other string // the page language and the one whose texts must not show
	acceptLang  string // what the browser sends
}

// TestBrowserSignInConsent drives Debian's Chromium through `watashi demo`
// as a resident would, once in Japanese and once in English, each with a
// fresh demo and a fresh browser profile: the RP's button, the login page,
// "first time" (identity proofing), the phone simulator in a second tab
// (enrol with typed facts, compare the confirmation code, approve), the
// login tab advancing by itself, the consent screen (language switch there
// and back; one offered claim unticked, one left unticked, the rest ticked,
// all with the keyboard), and the RP showing what it verified. It checks
// that the RP received the name and not the refused claims, in the ID
// token and in userinfo, that no claim value reached the demo's logs and
// that no page hit a CSP violation or a script error. Screenshots of the
// login and consent screens go to $WATASHI_SCREENSHOT_DIR.
//
// Only form posts made by a real browser show some failures: Chromium
// sends "Origin: null" from a page under Referrer-Policy: no-referrer,
// which the Go client tests never do.
func TestBrowserSignInConsent(t *testing.T) {
	chrome := findChromium(t)
	shots := screenshotDir(t)
	msgs, err := templates.New("")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(browserBudget)
	for _, l := range []browserLang{
		// A browser preferring a language Watashi lacks gets the default.
		{lang: "ja", other: "en", acceptLang: "fr-FR,fr"},
		{lang: "en", other: "ja", acceptLang: "en-US,en"},
	} {
		t.Run(l.lang, func(t *testing.T) {
			browserFlow(t, chrome, shots, deadline, l, msgs)
		})
	}
}

// textCheck lists problems with a page's language: the expected message
// must show in the element, the other language's must not show anywhere.
func textCheck(msgs *templates.Set, l browserLang, key, got, body string) []string {
	var problems []string
	want := msgs.Message(l.lang, key)
	if want == key {
		problems = append(problems, fmt.Sprintf("message %q missing from the %s catalogue", key, l.lang))
	}
	if !strings.Contains(got, want) {
		problems = append(problems, fmt.Sprintf("%s: got %q, want %q", key, got, want))
	}
	if other := msgs.Message(l.other, key); other != want && strings.Contains(body, other) {
		problems = append(problems, fmt.Sprintf("the %s text of %s (%q) shows on the %s page", l.other, key, other, l.lang))
	}
	return problems
}

// pageState is what the test reads from a page in one evaluation.
type pageState struct {
	Path string `json:"path"`
	Lang string `json:"lang"`
	H1   string `json:"h1"`
	Body string `json:"body"`
}

// probeSerial issues a throwaway certificate and returns its serial.
func probeSerial(t *testing.T, ca *jpkisim.CA) int64 {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(jpkisim.LeafOptions{Key: k, OmitFacts: true})
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Cert.SerialNumber.Int64()
}

var (
	reLogNumber = regexp.MustCompile(`("(?:bytes|status|duration)":)?[0-9]+`)
	reHex256    = regexp.MustCompile(`(?i)[0-9a-f]{64}`)
)

// linkingIdentifiers returns a function naming the identifier a demo log
// line holds, or "". The account IDs come from the demo's store; the
// serials after the probes were issued during the run.
func linkingIdentifiers(t *testing.T, d *demo, sigFrom, authFrom int64) func(line string) string {
	t.Helper()
	accounts, err := account.New(d.store, account.Options{KEK: d.kek})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := accounts.IDs(context.Background())
	if err != nil || len(ids) == 0 {
		t.Fatalf("no account after the run: %v", err)
	}
	serials := map[string]bool{}
	for _, r := range []struct {
		ca   *jpkisim.CA
		from int64
	}{{d.sigCA, sigFrom}, {d.authCA, authFrom}} {
		to := probeSerial(t, r.ca)
		for n := r.from + 1; n < to; n++ {
			serials[strconv.FormatInt(n, 10)] = true
		}
	}
	return func(line string) string {
		for _, id := range ids {
			if strings.Contains(line, id) {
				return "an account ID"
			}
		}
		if reHex256.MatchString(line) {
			return "a SHA-256 fingerprint"
		}
		for _, m := range reLogNumber.FindAllStringSubmatch(line, -1) {
			if m[1] == "" && serials[m[0]] {
				return "a certificate serial"
			}
		}
		return ""
	}
}

const readPage = `({path: location.pathname, lang: document.documentElement.lang,
	h1: (document.querySelector("h1") || {}).innerText || "", body: document.body.innerText})`

func browserFlow(t *testing.T, chrome, shots string, deadline time.Time, l browserLang, msgs *templates.Set) {
	logs := &syncBuffer{}
	d := startLoggedDemo(t, logs)
	// The serial numbers the simulator CAs give the phone's certificates
	// lie between these probes and the ones after the run.
	sigFrom, authFrom := probeSerial(t, d.sigCA), probeSerial(t, d.authCA)
	b, main := startBrowser(t, t.Context(), chrome, l.acceptLang, l.lang, shots, deadline)
	started := time.Now()

	// 1. The RP's home page and its button.
	signIn := chromedp.CSS(`a[href="/rp/login"]`)
	b.arrive(main, "open the RP", `a[href="/rp/login"]`, chromedp.Navigate(d.issuer+"/rp/"))
	b.arrive(main, "press sign in", `#signin #code`, chromedp.Click(signIn))

	// 2. The provider's login page, in the browser's language.
	p := browserRun(b, main, "read the login page", chromedp.Evaluate[pageState](readPage))
	var problems []string
	if p.Path != "/login" || p.Lang != l.lang {
		problems = append(problems, fmt.Sprintf("login page at %s in %q, want /login in %q", p.Path, p.Lang, l.lang))
	}
	problems = append(problems, textCheck(msgs, l, "login.title", p.H1, p.Body)...)
	b.check(main, "login page", problems)
	b.screenshot(main, "login-"+l.lang+".png")

	// 3. No account yet: "first time" switches to identity proofing.
	// The proofing page links back to the sign-in: only it has this.
	b.arrive(main, "follow the first-time link", `p.switch a[href*="purpose=signin"]`,
		chromedp.Click(chromedp.CSS(`p.switch a[href*="purpose=proofing"]`)))
	b.do(main, "find the app link", chromedp.WaitVisible(chromedp.CSS(`#applink`)))
	p = browserRun(b, main, "read the proofing page", chromedp.Evaluate[pageState](readPage))
	b.check(main, "proofing page", textCheck(msgs, l, "login.title_proofing", p.H1, p.Body))
	code := strings.TrimSpace(browserRun(b, main, "read the confirmation code", chromedp.Text(chromedp.CSS(`#code`))))
	app := browserRun(b, main, "read the app link", chromedp.AttributeValue(chromedp.CSS(`#applink`), "href"))
	if code == "" || !strings.HasPrefix(app.Value, "/phone/?tx=") && !strings.HasPrefix(app.Value, d.issuer+"/phone/?tx=") {
		b.fail(main, "proofing page", fmt.Errorf("confirmation code %q, app link %q: want a code and a link to the phone simulator", code, app.Value))
	}
	phoneURL, err := url.Parse(d.issuer + "/")
	if err == nil {
		phoneURL, err = phoneURL.Parse(app.Value)
	}
	if err != nil {
		b.fail(main, "proofing page", err)
	}

	// 4. The phone simulator in a second tab: enrol with typed facts.
	phone := b.newTab("phone")
	b.arrive(phone, "open the phone simulator", `#family`, chromedp.Navigate(phoneURL.String()))
	b.do(phone, "type the basic four facts",
		chromedp.SendKeys(chromedp.CSS(`#family`), browserFamily),
		chromedp.SendKeys(chromedp.CSS(`#given`), browserGiven),
		// A date input's keyboard format follows the browser's locale
		// (YYYY/MM/DD in ja, MM/DD/YYYY in en); its value is ISO either way.
		chromedp.SetValue(chromedp.CSS(`#birthdate`), browserBirthdate),
		chromedp.Click(chromedp.CSS(`input[name="gender"][value="male"]`)),
		chromedp.SendKeys(chromedp.CSS(`#address`), browserAddress))
	problems = nil
	for id, want := range map[string]string{"family": browserFamily, "given": browserGiven, "birthdate": browserBirthdate, "address": browserAddress} {
		if got := browserRun(b, phone, "read back "+id, chromedp.Value(chromedp.CSS("#"+id))); got != want {
			problems = append(problems, fmt.Sprintf("#%s holds %q after typing %q", id, got, want))
		}
	}
	b.check(phone, "enrolment form", problems)
	approve := `form[action="approve"] button[type="submit"]:not([formaction])`
	b.arrive(phone, "enrol", approve, chromedp.Click(chromedp.CSS(`form[action="enroll"] button[type="submit"]`)))
	// The resident approves only when both screens show the same code.
	if got := strings.TrimSpace(browserRun(b, phone, "read the phone's code", chromedp.Text(chromedp.CSS(`dd.code`)))); got != code {
		b.fail(phone, "compare confirmation codes", fmt.Errorf("phone shows %q, login page %q", got, code))
	}
	b.screenshot(phone, "phone-"+l.lang+".png")
	b.arrive(phone, "approve", `p.ok[role="status"]`, chromedp.Click(chromedp.CSS(approve)))

	// 5. The login tab learns the outcome by itself (SSE, or polling) and
	// continues to the consent screen.
	allow := chromedp.CSS(`form#consent button[name="action"][value="allow"]`)
	b.arrive(main, "reach the consent screen", `form#consent`)
	b.do(main, "find the allow button", chromedp.WaitVisible(allow))
	p = browserRun(b, main, "read the consent page", chromedp.Evaluate[pageState](readPage))
	problems = textCheck(msgs, l, "consent.title", p.H1, p.Body)
	if p.Path != "/consent" || p.Lang != l.lang {
		problems = append(problems, fmt.Sprintf("consent page at %s in %q, want /consent in %q", p.Path, p.Lang, l.lang))
	}
	for _, key := range []string{"consent.allow", "consent.deny"} {
		problems = append(problems, textCheck(msgs, l, key, p.Body, p.Body)...)
	}
	// Claim labels only need to be there: some Japanese ones are a single
	// character (名) that a value could contain.
	for _, key := range []string{"claim.name", "claim." + browserUntick, "claim." + browserLeave} {
		if want := msgs.Message(l.lang, key); !strings.Contains(p.Body, want) {
			problems = append(problems, fmt.Sprintf("the consent screen lacks the label %q (%s)", want, key))
		}
	}
	// The screen shows the values the RP would receive.
	for _, v := range []string{browserName, browserBirthdate, browserAddress} {
		if !strings.Contains(p.Body, v) {
			problems = append(problems, fmt.Sprintf("the consent screen does not show the value %q", v))
		}
	}
	// The resident's choice: everything the RP asks for except
	// browserUntick and browserLeave. Every box must be labelled and,
	// the demo asking for nothing essential, enabled.
	boxes := browserRun(b, main, "read the claim checkboxes", chromedp.Evaluate[[]claimBox](readClaimBoxes))
	want := map[string]bool{}
	var toggle []string
	for _, box := range boxes {
		want[box.Value] = box.Value != browserUntick && box.Value != browserLeave
		if !box.Labelled {
			problems = append(problems, fmt.Sprintf("checkbox %q has no label", box.Value))
		}
		if box.Disabled || !box.Named {
			problems = append(problems, fmt.Sprintf("checkbox %q is locked (disabled=%v), but the demo RP asks for it only by scope", box.Value, box.Disabled))
		}
		if box.Checked != want[box.Value] {
			toggle = append(toggle, box.Value)
		}
	}
	for _, c := range []string{"name", "family_name", browserUntick, "birthdate", browserLeave, "address"} {
		if _, ok := want[c]; !ok {
			problems = append(problems, fmt.Sprintf("no checkbox for %s among %+v", c, boxes))
		}
	}
	if !slices.Contains(toggle, browserUntick) {
		problems = append(problems, fmt.Sprintf("%s is not ticked on arrival, so the test would not untick anything: %+v", browserUntick, boxes))
	}
	b.check(main, "consent page", problems)
	b.screenshot(main, "consent-"+l.lang+".png")
	// The language switch reloads the same step in the other language and
	// back, keeping the resident's place in the flow.
	for _, hop := range []browserLang{{lang: l.other, other: l.lang}, l} {
		b.arrive(main, "switch the consent screen to "+hop.lang, fmt.Sprintf(`html[lang=%q] form#consent`, hop.lang),
			chromedp.Click(chromedp.CSS(`#lang-`+hop.lang)))
		p = browserRun(b, main, "read the consent page in "+hop.lang, chromedp.Evaluate[pageState](readPage))
		b.check(main, "consent page in "+hop.lang, textCheck(msgs, hop, "consent.title", p.H1, p.Body))
	}
	t.Logf("%s: consent screen offers %+v; toggling %v", l.lang, boxes, toggle)

	// 6. Choose with the keyboard (a real checkbox toggles with Space on
	// focus), check the form says what was chosen, then allow (Enter on
	// the focused button).
	for _, c := range toggle {
		box := chromedp.CSS(fmt.Sprintf(`form#consent input[type="checkbox"][name="claim"][value=%q]`, c))
		b.do(main, "toggle "+c, chromedp.Focus(box), chromedp.KeyEvent(" "))
	}
	boxes = browserRun(b, main, "read the choices", chromedp.Evaluate[[]claimBox](readClaimBoxes))
	problems = nil
	for _, box := range boxes {
		if box.Checked != want[box.Value] {
			problems = append(problems, fmt.Sprintf("%s: checked=%v after Space, want %v", box.Value, box.Checked, want[box.Value]))
		}
	}
	b.check(main, "choose claims", problems)
	b.arrive(main, "allow", `a[href="/rp/logout"]`, chromedp.Focus(allow), chromedp.KeyEvent("\r"))

	// 7. Back at the RP: what it verified and what userinfo said.
	rp := browserRun(b, main, "read the RP page", chromedp.Evaluate[rpState](readRP))
	b.check(main, "RP result", rpProblems(rp))
	b.screenshot(main, "rp-"+l.lang+".png")

	// Nothing the resident typed reached a log line, nor any identifier
	// that links them: the account ID, the certificates' serial numbers
	// (the phone's are those the CAs issued during the run) and
	// fingerprints (a SHA-256 in hex: no log line has one).
	all := logs.String()
	linking := linkingIdentifiers(t, d, sigFrom, authFrom)
	for _, line := range strings.Split(all, "\n") {
		if what := linking(line); what != "" {
			t.Errorf("a demo log line holds %s: %.300s", what, line)
		}
	}
	for _, v := range []string{browserFamily, browserGiven, browserBirthdate, browserAddress} {
		if strings.Contains(all, v) {
			for _, line := range strings.Split(all, "\n") {
				if strings.Contains(line, v) {
					t.Errorf("a demo log line holds a claim value: %.300s", line)
					break
				}
			}
		}
	}
	for _, tab := range b.tabs {
		for _, line := range tab.consoleLines() {
			if strings.Contains(line, "Content Security Policy") || strings.Contains(line, "exception") {
				t.Errorf("tab %s console: %s", tab.name, line)
			}
		}
	}
	t.Logf("%s: demo → RP in %s", l.lang, time.Since(started).Round(10*time.Millisecond))
}

// claimBox is one claim checkbox of the consent form.
type claimBox struct {
	Value    string `json:"value"`
	Checked  bool   `json:"checked"`
	Disabled bool   `json:"disabled"`
	Named    bool   `json:"named"` // the box itself is the form field
	Labelled bool   `json:"labelled"`
}

const readClaimBoxes = `Array.from(document.querySelectorAll('form#consent input[type="checkbox"]')).map(function (el) {
	return {value: el.value, checked: el.checked, disabled: el.disabled, named: el.name === "claim",
		labelled: el.labels.length > 0 && el.labels[0].innerText.trim() !== ""};
})`

// rpState is the RP's signed-in page.
type rpState struct {
	Path     string   `json:"path"`
	Heading  string   `json:"heading"`
	Sections []string `json:"sections"` // the <pre> blocks: ID token claims, then userinfo
	Body     string   `json:"body"`
}

const readRP = `({path: location.pathname, heading: (document.querySelector(".card h2") || {}).innerText || "",
	sections: Array.from(document.querySelectorAll("pre")).map(function (p) { return p.textContent; }),
	body: document.body.innerText})`

// rpProblems checks what the RP received against what the resident
// granted: the name and sub present, the refused claims absent from both
// the ID token and userinfo, and the other granted claims there.
func rpProblems(rp rpState) []string {
	var problems []string
	if rp.Path != "/rp/" {
		problems = append(problems, fmt.Sprintf("ended at %s, want /rp/", rp.Path))
	}
	if !strings.Contains(rp.Heading, browserName) {
		problems = append(problems, fmt.Sprintf("heading %q does not name %q", rp.Heading, browserName))
	}
	if len(rp.Sections) != 2 {
		return append(problems, fmt.Sprintf("want ID token claims and userinfo, got %d blocks (userinfo failed?):\n%s", len(rp.Sections), rp.Body))
	}
	var idt, ui map[string]any
	if err := json.Unmarshal([]byte(rp.Sections[0]), &idt); err != nil {
		problems = append(problems, "ID token claims: "+err.Error())
	}
	if err := json.Unmarshal([]byte(rp.Sections[1]), &ui); err != nil {
		problems = append(problems, "userinfo: "+err.Error())
	}
	sub, _ := idt["sub"].(string)
	if sub == "" || ui["sub"] != sub {
		problems = append(problems, fmt.Sprintf("sub: ID token %v, userinfo %v", idt["sub"], ui["sub"]))
	}
	if idt["acr"] != "aal3" {
		problems = append(problems, fmt.Sprintf("acr %v, want aal3", idt["acr"]))
	}
	for where, claims := range map[string]map[string]any{"ID token": idt, "userinfo": ui} {
		for _, c := range []string{browserUntick, browserLeave} {
			if v, ok := claims[c]; ok {
				problems = append(problems, fmt.Sprintf("%s carries the refused claim %s = %v", where, c, v))
			}
		}
	}
	// The granted claims arrive where the provider puts them (for scope
	// claims with an access token, userinfo); each at least once.
	either := func(name string) any {
		if v, ok := ui[name]; ok {
			return v
		}
		return idt[name]
	}
	if got := either("name"); got != browserName {
		problems = append(problems, fmt.Sprintf("name %v, want %q", got, browserName))
	}
	if got := either("family_name"); got != browserFamily {
		problems = append(problems, fmt.Sprintf("family_name %v, want %q", got, browserFamily))
	}
	if got := either("birthdate"); got != browserBirthdate {
		problems = append(problems, fmt.Sprintf("birthdate %v, want %q", got, browserBirthdate))
	}
	if addr, _ := either("address").(map[string]any); addr == nil || !strings.Contains(fmt.Sprint(addr["formatted"]), browserAddress) {
		problems = append(problems, fmt.Sprintf("address %v, want formatted %q", either("address"), browserAddress))
	}
	keys := func(m map[string]any) []string {
		var k []string
		for n := range m {
			k = append(k, n)
		}
		slices.Sort(k)
		return k
	}
	if len(problems) > 0 {
		problems = append(problems, fmt.Sprintf("ID token claims %v; userinfo claims %v", keys(idt), keys(ui)))
	}
	return problems
}
