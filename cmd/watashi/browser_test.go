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
)

// The resident's choice on the consent screen. The demo client asks for
// every claim by scope only, which makes them voluntary (OIDC Core §5.4):
// the resident withholds the whole name (its parts with it), shares the
// birth date and the address (sensitive, so unticked at first) and leaves
// the gender unticked.
var (
	browserShare    = []string{"birthdate", "address"}
	browserWithhold = []string{"name", "family_name", "given_name", "gender"}
)

// browserLang is one pass of the test in one UI language.
type browserLang struct {
	lang, other string // the page language and the one whose texts must not show
	acceptLang  string // what the browser sends
	// oneDevice approves on the browser's own device: the login tab
	// follows the app link to the wallet and comes back by the return
	// URL. Otherwise a second tab plays another phone that scanned the
	// QR code, and the login tab learns the outcome by itself.
	oneDevice bool
	// decline is the phone's button that ends the first attempt, and
	// declineKey the message the login page then shows.
	decline, declineKey string
}

// TestBrowserSignInConsent drives Debian's Chromium through `watashi demo`
// as a resident would, once in Japanese and once in English, each with a
// fresh demo and a fresh browser profile, on a desktop and at 390×844:
//
//   - the RP's button, the login page (the wallet button and "first time"
//     above the fold on a phone), "first time" (identity proofing);
//   - another phone (a second tab) scans the QR code, enrols with typed
//     facts, and declines ("the codes differ" in Japanese, "decline" in
//     English): the login page says so within 2 s and offers a retry;
//   - the retry is approved: in Japanese on this one device (the app link
//     opens the wallet in the login tab, which comes back by the return
//     URL and carries on), in English on the other phone while the login
//     tab waits;
//   - the consent screen, with the keyboard alone: the whole name
//     unticked, the birth date and the address ticked, the gender left;
//     the language switch there and back;
//   - the RP receives no part of the name, nor the gender, in the ID
//     token or userinfo, and lists the claims it received;
//   - Back to the consent screen says "you're done"; the account page,
//     its withdrawal confirmation, the error, wallet-link, return, sign-out
//     and signed-out pages.
//
// axe-core checks every page at both sizes and must find nothing; every
// page is saved as a screenshot in $WATASHI_SCREENSHOT_DIR. No claim value
// and no linking identifier may reach the demo's logs, and no page may hit
// a CSP violation or a script error.
//
// Only form posts made by a real browser show some failures: Chromium
// sends "Origin: null" from a page under Referrer-Policy: no-referrer,
// which the Go client tests never do.
func TestBrowserSignInConsent(t *testing.T) {
	chrome := findChromium(t)
	axeScript(t)
	shots := screenshotDir(t)
	msgs, err := templates.New("")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(browserBudget)
	for _, l := range []browserLang{
		// A browser preferring a language Watashi lacks gets the default.
		{lang: "ja", other: "en", acceptLang: "fr-FR,fr", oneDevice: true, decline: "phone-differ", declineKey: "reason.comparison_mismatch"},
		{lang: "en", other: "ja", acceptLang: "en-US,en", decline: "phone-deny", declineKey: "reason.declined"},
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

const readPage = `({path: location.pathname, lang: document.documentElement.lang,
	h1: (document.querySelector("h1") || {}).innerText || "", body: document.body.innerText})`

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

// qrURL is what the login page's QR code holds now: the transaction URL
// a phone that scans it opens (read as the page's own script does).
func qrURL(b *browserSession, tab *browserTab) string {
	b.t.Helper()
	u := browserRun(b, tab, "read the QR code's URL", chromedp.Evaluate[string](
		`fetch(document.getElementById("signin").getAttribute("data-status-url"), {headers: {Accept: "application/json"}})
			.then(function (r) { return r.json(); }).then(function (s) { return s.qr.tx_url; })`, chromedp.EvalAwaitPromise))
	if !strings.Contains(u, "/wallet/v1/transactions/") {
		b.fail(tab, "read the QR code's URL", fmt.Errorf("the QR code holds %q", u))
	}
	return u
}

// scan opens the phone simulator in tab as a phone that scanned the QR
// code would: with the transaction URL, not the same-device link.
func scan(b *browserSession, tab *browserTab, issuer, txURL, want string) {
	b.t.Helper()
	b.arrive(tab, "scan the QR code", want, chromedp.Navigate(issuer+"/phone/?tx="+url.QueryEscape(txURL)))
}

// enrol types the resident's facts into the phone simulator.
func enrol(b *browserSession, tab *browserTab) {
	b.t.Helper()
	b.do(tab, "type the basic four facts",
		chromedp.SendKeys(chromedp.CSS(`#family`), browserFamily),
		chromedp.SendKeys(chromedp.CSS(`#given`), browserGiven),
		// A date input's keyboard format follows the browser's locale
		// (YYYY/MM/DD in ja, MM/DD/YYYY in en); its value is ISO either way.
		chromedp.SetValue(chromedp.CSS(`#birthdate`), browserBirthdate),
		chromedp.Click(chromedp.CSS(`input[name="gender"][value="male"]`)),
		chromedp.SendKeys(chromedp.CSS(`#address`), browserAddress))
	var problems []string
	for id, want := range map[string]string{"family": browserFamily, "given": browserGiven, "birthdate": browserBirthdate, "address": browserAddress} {
		if got := browserRun(b, tab, "read back "+id, chromedp.Value(chromedp.CSS("#"+id))); got != want {
			problems = append(problems, fmt.Sprintf("#%s holds %q after typing %q", id, got, want))
		}
	}
	b.check(tab, "enrolment form", problems)
	b.arrive(tab, "enrol", `#phone-approve`, chromedp.Click(chromedp.CSS(`form[action="enroll"] button[type="submit"]`)))
}

// tabTo moves the focus with the Tab key alone until the element of sel
// has it, as a keyboard user does; it fails when the element cannot be
// reached that way.
func tabTo(b *browserSession, tab *browserTab, sel string) {
	b.t.Helper()
	is := fmt.Sprintf(`document.activeElement === document.querySelector(%q)`, sel)
	for range 80 {
		if browserRun(b, tab, "is "+sel+" focused", chromedp.Evaluate[bool](is)) {
			return
		}
		b.do(tab, "press Tab", chromedp.KeyEvent("\t"))
	}
	b.fail(tab, "reach "+sel+" with Tab", fmt.Errorf("80 presses of Tab did not reach it; focus is on %s",
		browserRun(b, tab, "what has focus", chromedp.Evaluate[string](`document.activeElement ? document.activeElement.outerHTML.slice(0, 120) : ""`))))
}

func browserFlow(t *testing.T, chrome, shots string, deadline time.Time, l browserLang, msgs *templates.Set) {
	logs := &syncBuffer{}
	d := startLoggedDemo(t, logs)
	// The serial numbers the simulator CAs give the phone's certificates
	// lie between these probes and the ones after the run.
	sigFrom, authFrom := probeSerial(t, d.sigCA), probeSerial(t, d.authCA)
	b, main := startBrowser(t, t.Context(), chrome, l.acceptLang, l.lang, shots, deadline)
	started := time.Now()
	onPhone := func(step string) func(v viewport) {
		return func(v viewport) {
			if v == phone {
				b.check(main, step+" on a phone", b.aboveTheFold(main, "#applink", "#mode-proofing"))
			}
		}
	}

	// 1. The RP's home page and its button.
	signIn := chromedp.CSS(`a[href="/rp/login"]`)
	b.arrive(main, "open the RP", `a[href="/rp/login"]`, chromedp.Navigate(d.issuer+"/rp/"))
	b.audit(main, "rp-home", `a[href="/rp/login"]`, nil)
	b.arrive(main, "press sign in", `#signin #code`, chromedp.Click(signIn))

	// 2. The provider's login page, in the browser's language; on a
	// phone the wallet button and "first time" are on the first screen.
	p := browserRun(b, main, "read the login page", chromedp.Evaluate[pageState](readPage))
	var problems []string
	if p.Path != "/login" || p.Lang != l.lang {
		problems = append(problems, fmt.Sprintf("login page at %s in %q, want /login in %q", p.Path, p.Lang, l.lang))
	}
	problems = append(problems, textCheck(msgs, l, "login.title", p.H1, p.Body)...)
	b.check(main, "login page", problems)
	b.audit(main, "login", `#applink`, onPhone("login page"))

	// 3. No account yet: "first time" switches to identity proofing.
	b.arrive(main, "choose first time", `#mode-proofing[aria-current="page"]`, chromedp.Click(chromedp.CSS(`#mode-proofing`)))
	p = browserRun(b, main, "read the proofing page", chromedp.Evaluate[pageState](readPage))
	b.check(main, "proofing page", textCheck(msgs, l, "login.title_proofing", p.H1, p.Body))
	b.audit(main, "login-proofing", `#applink`, onPhone("proofing page"))
	code := strings.TrimSpace(browserRun(b, main, "read the confirmation code", chromedp.Text(chromedp.CSS(`#code`))))

	// 4. Another phone (a second tab) scans the QR code and enrols.
	phoneTab := b.newTab("phone")
	scan(b, phoneTab, d.issuer, qrURL(b, main), `#family`)
	b.audit(phoneTab, "phone-enroll", `#family`, nil)
	enrol(b, phoneTab)
	if got := strings.TrimSpace(browserRun(b, phoneTab, "read the phone's code", chromedp.Text(chromedp.CSS(`#phone-tx .code`)))); got != code {
		b.fail(phoneTab, "compare confirmation codes", fmt.Errorf("phone shows %q, login page %q", got, code))
	}
	b.audit(phoneTab, "phone-tx", `#phone-approve`, nil)

	// 5. The phone declines: the login page stops waiting within 2 s,
	// says why and offers to try again.
	clicked := time.Now()
	b.do(phoneTab, "decline on the phone", chromedp.Click(chromedp.CSS("#"+l.decline)))
	b.do(main, "the login page learns the decline", chromedp.WaitVisible(chromedp.CSS(`#login-outcome`)))
	if waited := time.Since(clicked); waited > 2*time.Second {
		b.fail(main, "decline", fmt.Errorf("the login page took %s to show the decline, want at most 2 s", waited.Round(time.Millisecond)))
	} else {
		t.Logf("%s: the decline reached the login page in %s", l.lang, waited.Round(time.Millisecond))
	}
	p = browserRun(b, main, "read the declined page", chromedp.Evaluate[pageState](readPage))
	b.check(main, "declined page", textCheck(msgs, l, l.declineKey, p.Body, p.Body))
	b.audit(main, "login-declined", `#retry`, nil)
	b.audit(phoneTab, "phone-declined", `#phone-done`, nil)

	// 6. Try again, and approve.
	b.arrive(main, "try again", `#applink`, chromedp.Click(chromedp.CSS(`#retry`)))
	if l.oneDevice {
		// One device: the app link opens the wallet in this very tab;
		// after the approval it comes back by the return URL, and the
		// login page carries on to the consent screen by itself.
		b.arrive(main, "open the wallet app on this device", `#phone-approve`, chromedp.Click(chromedp.CSS(`#applink`)))
		b.arrive(main, "approve on this device", `form#consent`, chromedp.Click(chromedp.CSS(`#phone-approve`)))
	} else {
		code = strings.TrimSpace(browserRun(b, main, "read the new confirmation code", chromedp.Text(chromedp.CSS(`#code`))))
		scan(b, phoneTab, d.issuer, qrURL(b, main), `#phone-approve`)
		if got := strings.TrimSpace(browserRun(b, phoneTab, "read the phone's code", chromedp.Text(chromedp.CSS(`#phone-tx .code`)))); got != code {
			b.fail(phoneTab, "compare confirmation codes", fmt.Errorf("phone shows %q, login page %q", got, code))
		}
		b.arrive(phoneTab, "approve on the other phone", `#phone-done`, chromedp.Click(chromedp.CSS(`#phone-approve`)))
		// Another device has no way back to this browser: it says where
		// to look instead.
		if browserRun(b, phoneTab, "no return link", chromedp.Evaluate[bool](`document.getElementById("phone-return") !== null`)) {
			b.fail(phoneTab, "approved on another phone", fmt.Errorf("the other phone offers the return link"))
		}
		b.audit(phoneTab, "phone-approved", `#phone-done`, nil)
		b.arrive(main, "reach the consent screen", `form#consent`)
	}

	// 7. The consent screen.
	allow := `form#consent button[name="action"][value="allow"]`
	b.do(main, "find the allow button", chromedp.WaitVisible(chromedp.CSS(allow)))
	consentURL := browserRun(b, main, "where is the consent screen", chromedp.Location())
	p = browserRun(b, main, "read the consent page", chromedp.Evaluate[pageState](readPage))
	problems = textCheck(msgs, l, "consent.title", p.H1, p.Body)
	if p.Path != "/consent" || p.Lang != l.lang {
		problems = append(problems, fmt.Sprintf("consent page at %s in %q, want /consent in %q", p.Path, p.Lang, l.lang))
	}
	for _, key := range []string{"consent.allow", "consent.deny", "consent.sensitive"} {
		problems = append(problems, textCheck(msgs, l, key, p.Body, p.Body)...)
	}
	// The name is one line that lists its parts; the values shown are
	// those the RP would receive.
	parts := browserRun(b, main, "read the name's parts", chromedp.Evaluate[string](`(document.getElementById("claim-name-parts") || {}).innerText || ""`))
	for _, key := range []string{"claim.family_name", "claim.given_name"} {
		if want := msgs.Message(l.lang, key); !strings.Contains(parts, want) {
			problems = append(problems, fmt.Sprintf("the name's line does not list %q: %q", want, parts))
		}
	}
	for _, v := range []string{browserName, browserBirthdate, browserAddress} {
		if !strings.Contains(p.Body, v) {
			problems = append(problems, fmt.Sprintf("the consent screen does not show the value %q", v))
		}
	}
	boxes := browserRun(b, main, "read the claim checkboxes", chromedp.Evaluate[[]claimBox](readClaimBoxes))
	var offered []string
	for _, box := range boxes {
		offered = append(offered, box.Value)
		if !box.Labelled {
			problems = append(problems, fmt.Sprintf("checkbox %q has no label", box.Value))
		}
		if box.Disabled || !box.Named {
			problems = append(problems, fmt.Sprintf("checkbox %q is locked (disabled=%v), but the demo RP asks for it only by scope", box.Value, box.Disabled))
		}
	}
	if !slices.Equal(offered, []string{"name", "birthdate", "gender", "address"}) {
		problems = append(problems, fmt.Sprintf("the screen offers %v, want one box each for the name, the birth date, the gender and the address", offered))
	}
	b.check(main, "consent page", problems)
	b.audit(main, "consent", allow, nil)
	// The language switch reloads the same step in the other language and
	// back, keeping the resident's place in the flow.
	for _, hop := range []browserLang{{lang: l.other, other: l.lang}, l} {
		b.arrive(main, "switch the consent screen to "+hop.lang, fmt.Sprintf(`html[lang=%q] form#consent`, hop.lang),
			chromedp.Click(chromedp.CSS(`#lang-`+hop.lang)))
		p = browserRun(b, main, "read the consent page in "+hop.lang, chromedp.Evaluate[pageState](readPage))
		b.check(main, "consent page in "+hop.lang, textCheck(msgs, hop, "consent.title", p.H1, p.Body))
	}

	// 8. Choose with the keyboard alone, from the top of the page: Tab to
	// each box and Space to toggle it, then Tab to Allow and Enter.
	browserRun(b, main, "start at the top of the page", chromedp.Evaluate[bool](`window.scrollTo(0, 0); document.activeElement && document.activeElement.blur(); true`))
	boxes = browserRun(b, main, "read the claim checkboxes", chromedp.Evaluate[[]claimBox](readClaimBoxes))
	for _, box := range boxes {
		want := slices.Contains(browserShare, box.Value)
		if box.Checked == want {
			continue
		}
		tabTo(b, main, fmt.Sprintf(`#claim-%s`, box.Value))
		b.do(main, "toggle "+box.Value, chromedp.KeyEvent(" "))
	}
	boxes = browserRun(b, main, "read the choices", chromedp.Evaluate[[]claimBox](readClaimBoxes))
	problems = nil
	for _, box := range boxes {
		if want := slices.Contains(browserShare, box.Value); box.Checked != want {
			problems = append(problems, fmt.Sprintf("%s: checked=%v after the keyboard, want %v", box.Value, box.Checked, want))
		}
	}
	// An unticked line no longer says what "they receive".
	label := browserRun(b, main, "read the name's value label", chromedp.Evaluate[string](`document.querySelector("#claim-name-value .value-label").innerText`))
	if want := msgs.Message(l.lang, "consent.value_if_ticked"); strings.TrimSpace(label) != want {
		problems = append(problems, fmt.Sprintf("the unticked name's value is labelled %q, want %q", label, want))
	}
	label = browserRun(b, main, "read the birth date's value label", chromedp.Evaluate[string](`document.querySelector("#claim-birthdate-value .value-label").innerText`))
	if want := msgs.Message(l.lang, "consent.value"); strings.TrimSpace(label) != want {
		problems = append(problems, fmt.Sprintf("the ticked birth date's value is labelled %q, want %q", label, want))
	}
	b.check(main, "choose claims", problems)
	b.screenshot(main, "consent-chosen-"+l.lang+".png")
	t.Logf("%s: consent screen offers %v; shares %v", l.lang, offered, browserShare)
	tabTo(b, main, `#consent-allow`)
	b.arrive(main, "allow", `a[href="/rp/logout"]`, chromedp.KeyEvent("\r"))

	// 9. Back at the RP: nothing of the name, nor the gender; the birth
	// date and the address; and the list of claims received.
	rp := browserRun(b, main, "read the RP page", chromedp.Evaluate[rpState](readRP))
	b.check(main, "RP result", rpProblems(rp))
	b.audit(main, "rp-result", `#rp-received`, nil)

	// 10. Back to the consent screen after finishing: "you're done".
	b.arrive(main, "the consent screen again", `#done`, chromedp.Navigate(consentURL))
	p = browserRun(b, main, "read the done page", chromedp.Evaluate[pageState](readPage))
	b.check(main, "done page", textCheck(msgs, l, "done.title", p.H1, p.Body))
	b.audit(main, "done", `#done`, nil)

	// 11. The account page: who is signed in, times with their zone, and
	// a withdrawal that asks first.
	b.arrive(main, "open the account page", `#account-who`, chromedp.Navigate(d.issuer+"/account"))
	p = browserRun(b, main, "read the account page", chromedp.Evaluate[pageState](readPage))
	problems = textCheck(msgs, l, "account.title", p.H1, p.Body)
	if who := fmt.Sprintf(msgs.Message(l.lang, "account.signed_in_as"), browserName); !strings.Contains(p.Body, who) {
		problems = append(problems, fmt.Sprintf("the account page does not say %q", who))
	}
	if zone := strings.TrimPrefix(msgs.Message(l.lang, "time.jst"), "%s"); !strings.Contains(p.Body, zone) {
		problems = append(problems, fmt.Sprintf("the account page's times lack %q", zone))
	}
	b.check(main, "account page", problems)
	b.audit(main, "account", `#account-who`, nil)
	browserRun(b, main, "start at the top of the page", chromedp.Evaluate[bool](`window.scrollTo(0, 0); document.activeElement && document.activeElement.blur(); true`))
	if browserRun(b, main, "is the withdrawal hidden", chromedp.Evaluate[bool](`document.getElementById("revoke-0").checkVisibility()`)) {
		b.fail(main, "account page", fmt.Errorf("the withdrawal button shows before the resident asks for it"))
	}
	tabTo(b, main, `#revoke-0-open`)
	b.do(main, "open the withdrawal", chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS(`#revoke-0`)))
	b.audit(main, "account-withdraw", `#revoke-0`, nil)

	// 12. The other pages a resident may meet.
	b.arrive(main, "the wallet link's page", `#openapp-link`, chromedp.Navigate(d.issuer+"/wallet/open?tx="+
		url.QueryEscape(d.issuer+"/wallet/v1/transactions/AAAAAAAAAAAAAAAAAAAAAA?qr_token=1.x")))
	b.audit(main, "openapp", `#openapp-link`, nil)
	b.arrive(main, "another device's return", `#returned`, chromedp.Navigate(d.issuer+"/login/tx/AAAAAAAAAAAAAAAAAAAAAA/return"))
	b.audit(main, "returned", `#returned`, nil)
	b.do(main, "an error", chromedp.Navigate(d.issuer+"/login?id=no-such-request"), chromedp.WaitVisible(chromedp.CSS(`#error-account`)))
	p = browserRun(b, main, "read the error page", chromedp.Evaluate[pageState](readPage))
	b.check(main, "error page", textCheck(msgs, l, "error.unknown_request", p.Body, p.Body))
	b.audit(main, "error", `#error-account`, nil)
	// The authorization endpoint's own error page, for a request it may
	// not send back to any RP, is bilingual: it cannot know the language.
	b.do(main, "an authorization error", chromedp.Navigate(d.issuer+"/authorize?"+url.Values{"client_id": {"nobody"},
		"redirect_uri": {"https://rp.example/cb"}, "response_type": {"code"}, "scope": {"openid"}}.Encode()),
		chromedp.WaitVisible(chromedp.CSS(`#error-card`)))
	b.audit(main, "authorize-error", `#error-card`, nil)
	b.arrive(main, "back to the account page", `#account-logout`, chromedp.Navigate(d.issuer+"/account"))
	b.arrive(main, "sign out", `#logout-confirm`, chromedp.Click(chromedp.CSS(`#account-logout`)))
	b.audit(main, "logout", `#logout-confirm`, nil)
	b.arrive(main, "confirm", `#signedout-card`, chromedp.Click(chromedp.CSS(`#logout-confirm`)))
	b.audit(main, "signedout", `#signedout-card`, nil)
	b.arrive(main, "the account page signed out", `#account-signin`, chromedp.Navigate(d.issuer+"/account"))
	b.audit(main, "account-signed-out", `#account-signin`, nil)

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
			if strings.Contains(line, "Content Security Policy") || strings.Contains(line, "exception") || strings.Contains(line, "Uncaught") {
				t.Errorf("tab %s console: %s", tab.name, line)
			}
		}
	}
	b.reportAxe()
	t.Logf("%s: demo → RP and every page in %s", l.lang, time.Since(started).Round(10*time.Millisecond))
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
	Received []string `json:"received"` // the claims the RP lists as received
	Body     string   `json:"body"`
}

const readRP = `({path: location.pathname, heading: (document.querySelector(".card h2") || {}).innerText || "",
	sections: Array.from(document.querySelectorAll("pre")).map(function (p) { return p.textContent; }),
	received: Array.from(document.querySelectorAll("#rp-received li code")).map(function (c) { return c.textContent; }),
	body: document.body.innerText})`

// rpProblems checks what the RP received against what the resident
// granted: sub present; the withheld claims (the whole name and with it
// its parts, the gender) absent from both the ID token and userinfo; the
// shared ones there; and the RP's own list of what it received.
func rpProblems(rp rpState) []string {
	var problems []string
	if rp.Path != "/rp/" {
		problems = append(problems, fmt.Sprintf("ended at %s, want /rp/", rp.Path))
	}
	if strings.Contains(rp.Heading, browserFamily) {
		problems = append(problems, fmt.Sprintf("heading %q names the resident, who withheld the name", rp.Heading))
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
		for _, c := range browserWithhold {
			if v, ok := claims[c]; ok {
				problems = append(problems, fmt.Sprintf("%s carries the withheld claim %s = %v", where, c, v))
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
	if got := either("birthdate"); got != browserBirthdate {
		problems = append(problems, fmt.Sprintf("birthdate %v, want %q", got, browserBirthdate))
	}
	if addr, _ := either("address").(map[string]any); addr == nil || !strings.Contains(fmt.Sprint(addr["formatted"]), browserAddress) {
		problems = append(problems, fmt.Sprintf("address %v, want formatted %q", either("address"), browserAddress))
	}
	if !slices.Equal(rp.Received, browserShare) {
		problems = append(problems, fmt.Sprintf("the RP lists %v as received, want %v", rp.Received, browserShare))
	}
	if strings.Contains(rp.Body, "Granted scope") {
		problems = append(problems, "the RP shows the token response's scope")
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
