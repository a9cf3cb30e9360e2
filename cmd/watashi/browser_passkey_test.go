package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// startLocalhostDemo is the demo at http://localhost:PORT: browsers
// accept passkeys for a host name, never for 127.0.0.1.
func startLocalhostDemo(t *testing.T, logs *syncBuffer) *demo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	d, err := newDemoWith("localhost:"+port, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if !d.passkeys {
		t.Fatal("the demo at localhost offers no passkeys")
	}
	ts := httptest.NewUnstartedServer(d.handler)
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	t.Cleanup(func() { d.store.Close() })
	return d
}

// addAuthenticator gives the tab a virtual platform authenticator: CTAP2,
// internal transport, resident keys, user verification that succeeds.
func addAuthenticator(b *browserSession, tab *browserTab) webauthn.AuthenticatorID {
	b.t.Helper()
	return browserRun(b, tab, "add a virtual authenticator", func(ctx context.Context, _ *chromedp.Target) (webauthn.AuthenticatorID, error) {
		f := false
		if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{EnableUI: &f}); err != nil {
			return "", err
		}
		res, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21, Transport: webauthn.AuthenticatorTransportInternal,
			HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true,
		}})
		return res.AuthenticatorID, err
	})
}

// addCredential is WebAuthn.addCredential with only the fields a copied
// credential has: cdproto always sends generateCmtgKeyOnNextOperation,
// which an authenticator without that extension refuses.
var addCredential = cdp.Command[addCredentialParams, cdp.Empty]{Method: webauthn.CommandAddCredential}

type addCredentialParams struct {
	AuthenticatorID webauthn.AuthenticatorID `json:"authenticatorId"`
	Credential      credentialCopy           `json:"credential"`
}

type credentialCopy struct {
	CredentialID         []byte  `json:"credentialId"`
	IsResidentCredential bool    `json:"isResidentCredential"`
	RpID                 string  `json:"rpId"`
	PrivateKey           []byte  `json:"privateKey"`
	UserHandle           []byte  `json:"userHandle"`
	SignCount            float64 `json:"signCount"`
	BackupEligibility    bool    `json:"backupEligibility"`
	BackupState          bool    `json:"backupState"`
}

// idTokenClaims reads the demo RP's page: the verified ID token claims.
func idTokenClaims(b *browserSession, tab *browserTab, step string) map[string]any {
	b.t.Helper()
	rp := browserRun(b, tab, step, chromedp.Evaluate[rpState](readRP))
	if rp.Path != "/rp/" || len(rp.Sections) == 0 {
		b.fail(tab, step, fmt.Errorf("not the RP's result page: %s\n%s", rp.Path, rp.Body))
	}
	var idt map[string]any
	if err := json.Unmarshal([]byte(rp.Sections[0]), &idt); err != nil {
		b.fail(tab, step, err)
	}
	return idt
}

// amrOf is the ID token's amr as strings.
func amrOf(idt map[string]any) []string {
	var out []string
	list, _ := idt["amr"].([]any)
	for _, v := range list {
		out = append(out, fmt.Sprint(v))
	}
	return out
}

// shootPage checks the page with axe-core and saves it, in Japanese and
// English, on a desktop and on a 390x844 phone screen, and comes back to
// Japanese. ready is what the page shows once its script ran.
func shootPage(b *browserSession, tab *browserTab, base, ready string) {
	b.t.Helper()
	for _, lang := range []string{"ja", "en"} {
		if lang == "en" {
			b.arrive(tab, base+" in en", `html[lang="en"] `+ready, chromedp.Click(chromedp.CSS(`#lang-en`)))
		}
		b.audit(tab, base, ready, nil)
	}
	b.arrive(tab, base+" back in ja", `html[lang="ja"] `+ready, chromedp.Click(chromedp.CSS(`#lang-ja`)))
	b.do(tab, base+" ready in ja", chromedp.WaitVisible(chromedp.CSS(ready)))
}

// TestBrowserPasskey drives Chromium with its virtual authenticator
// through the demo at localhost: JPKI proofing; the offer after it adds a
// passkey; a new browser context holding the same credential signs in
// with the passkey and the RP's ID token says acr aal2, amr user and hwk;
// acr_values=aal3 then gets the JPKI sign-in, with no passkey offered;
// the first browser, whose copy of the key now lags behind, is taken for
// a clone: the passkey is turned off and the account page says why.
// The account page lists the passkey. Screenshots go to
// $WATASHI_SCREENSHOT_DIR.
func TestBrowserPasskey(t *testing.T) {
	chrome := findChromium(t)
	shots := screenshotDir(t)
	deadline := time.Now().Add(browserBudget)
	logs := &syncBuffer{}
	d := startLocalhostDemo(t, logs)
	b, main := startBrowser(t, t.Context(), chrome, "ja,en;q=0.5", "passkey", shots, deadline)
	auth := addAuthenticator(b, main)

	// 1. JPKI proofing, as in TestBrowserSignInConsent.
	b.arrive(main, "open the RP", `a[href="/rp/login"]`, chromedp.Navigate(d.issuer+"/rp/"))
	b.arrive(main, "press sign in", `#signin #code`, chromedp.Click(chromedp.CSS(`a[href="/rp/login"]`)))
	// No passkey yet, but the button is offered: it is the resident's
	// browser that decides.
	b.do(main, "see the passkey button", chromedp.WaitVisible(chromedp.CSS(`#passkey-signin`)))
	shootPage(b, main, "passkey-login", `#passkey-signin`)
	b.arrive(main, "choose first time", `#mode-proofing[aria-current="page"]`,
		chromedp.Click(chromedp.CSS(`#mode-proofing`)))
	if browserRun(b, main, "no passkey while proving", chromedp.Evaluate[bool](`document.getElementById("passkey-login") !== null`)) {
		b.fail(main, "proofing page", fmt.Errorf("the proofing page offers a passkey sign-in"))
	}
	b.do(main, "find the app link", chromedp.WaitVisible(chromedp.CSS(`#applink`)))
	code := strings.TrimSpace(browserRun(b, main, "read the confirmation code", chromedp.Text(chromedp.CSS(`#code`))))
	// Another phone scans the QR code, enrols and approves.
	phoneTab := b.newTab("phone")
	scan(b, phoneTab, d.issuer, qrURL(b, main), `#family`)
	enrol(b, phoneTab)
	if got := strings.TrimSpace(browserRun(b, phoneTab, "read the phone's code", chromedp.Text(chromedp.CSS(`#phone-tx .code`)))); got != code {
		b.fail(phoneTab, "compare confirmation codes", fmt.Errorf("phone shows %q, login page %q", got, code))
	}
	b.arrive(phoneTab, "approve", `#phone-done`, chromedp.Click(chromedp.CSS(`#phone-approve`)))

	// 2. The login tab moves on by itself to the offer; add a passkey.
	b.arrive(main, "reach the passkey offer", `#passkey-add`)
	b.do(main, "the add button shows", chromedp.WaitVisible(chromedp.CSS(`#passkey-add`)))
	shootPage(b, main, "passkey-offer", `#passkey-add`)
	allow := `form#consent button[name="action"][value="allow"]`
	b.arrive(main, "add the passkey", allow, chromedp.Click(chromedp.CSS(`#passkey-add`)))
	creds := browserRun(b, main, "read the authenticator", func(ctx context.Context, _ *chromedp.Target) ([]*webauthn.Credential, error) {
		res, err := chromedp.Call(ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: auth})
		return res.Credentials, err
	})
	if len(creds) != 1 || !creds[0].IsResidentCredential || len(creds[0].UserHandle) != 32 {
		b.fail(main, "read the authenticator", fmt.Errorf("want one resident credential with a 32-byte handle, got %+v", creds))
	}
	b.arrive(main, "allow", `a[href="/rp/logout"]`, chromedp.Click(chromedp.CSS(allow)))
	if idt := idTokenClaims(b, main, "read the JPKI sign-in"); idt["acr"] != "aal3" {
		b.fail(main, "read the JPKI sign-in", fmt.Errorf("acr %v after the JPKI sign-in, want aal3", idt["acr"]))
	}
	b.arrive(main, "open the account page", `#passkey-list`, chromedp.Navigate(d.issuer+"/account"))
	if n := browserRun(b, main, "count passkeys", chromedp.Evaluate[int](`document.querySelectorAll("#passkey-list li").length`)); n != 1 {
		b.fail(main, "account page", fmt.Errorf("%d passkeys listed, want 1", n))
	}
	shootPage(b, main, "passkey-account", `#passkey-list`)

	// 3. Another browser context with the same authenticator's credential
	// signs in with the passkey alone.
	other, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	fresh := &browserTab{name: "second context", ctx: other}
	b.tabs = append(b.tabs, fresh)
	if err := chromedp.Do(other); err != nil {
		b.fail(main, "open a second browser context", err)
	}
	b.watchConsole(fresh)
	auth2 := addAuthenticator(b, fresh)
	c := creds[0]
	b.do(fresh, "copy the credential", func(ctx context.Context, _ *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Call(ctx, addCredential, addCredentialParams{AuthenticatorID: auth2, Credential: credentialCopy{
			CredentialID: c.CredentialID, IsResidentCredential: true, RpID: c.RpID, PrivateKey: c.PrivateKey,
			UserHandle: c.UserHandle, SignCount: c.SignCount, BackupEligibility: c.BackupEligibility, BackupState: c.BackupState,
		}})
		return chromedp.Void{}, err
	})
	b.arrive(fresh, "open the RP in the second context", `a[href="/rp/login"]`, chromedp.Navigate(d.issuer+"/rp/"))
	// The login page asks the browser for a passkey through autofill
	// (conditional mediation) as it loads; the virtual authenticator
	// answers at once, as a resident picking the suggestion would, and the
	// page signs in by itself. (The button takes the same path.)
	b.do(fresh, "sign in with the passkey", chromedp.Click(chromedp.CSS(`a[href="/rp/login"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/rp/logout"], `+allow+", "+errorShown+", #passkey-status.error-text")))
	if browserRun(b, fresh, "consent again?", chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q) !== null`, allow))) {
		b.arrive(fresh, "allow", `a[href="/rp/logout"]`, chromedp.Click(chromedp.CSS(allow)))
	}
	idt := idTokenClaims(b, fresh, "read the passkey sign-in")
	if idt["acr"] != "aal2" || !slices.Equal(amrOf(idt), []string{"user", "hwk"}) {
		b.fail(fresh, "read the passkey sign-in", fmt.Errorf("acr %v amr %v, want aal2 and [user hwk]", idt["acr"], idt["amr"]))
	}
	b.screenshot(fresh, "passkey-rp-aal2-ja.png")

	// 4. An RP asking for aal3 gets the certificate sign-in, passkey
	// session or not, and no passkey button.
	b.arrive(fresh, "ask for aal3", `#signin #code`, chromedp.Click(chromedp.CSS(`#rp-aal3`)))
	if browserRun(b, fresh, "no passkey for aal3", chromedp.Evaluate[bool](`document.getElementById("passkey-login") !== null`)) {
		b.fail(fresh, "aal3 login page", fmt.Errorf("a request for aal3 offers a passkey"))
	}
	b.screenshot(fresh, "passkey-aal3-login-ja.png")

	// 5. The first browser's authenticator still holds the credential
	// with its old signature counter: to the provider it is a clone of
	// the key that just signed in. The passkey is turned off, the login
	// page says so, and the account page tells the resident why.
	b.arrive(main, "sign in again in the first browser", `#passkey-signin`, chromedp.Navigate(d.issuer+"/rp/login?prompt=login"))
	b.do(main, "the cloned key is refused", chromedp.WaitVisible(chromedp.CSS(`#passkey-signin`)),
		chromedp.Click(chromedp.CSS(`#passkey-signin`)), chromedp.WaitVisible(chromedp.CSS(`#passkey-status.error-text`)))
	if got := browserRun(b, main, "read the refusal", chromedp.Text(chromedp.CSS(`#passkey-status`))); !strings.Contains(got, "停止") {
		b.fail(main, "read the refusal", fmt.Errorf("the login page says %q, want the passkey-disabled message", got))
	}
	// (A reload would clear the message: this state is shot as it is.)
	b.screenshot(main, "passkey-disabled-login-ja.png")
	b.setViewport(main, phone)
	b.screenshot(main, "passkey-disabled-login-ja-390.png")
	b.setViewport(main, desktop)
	b.arrive(main, "open the account page again", `#passkey-disabled-notice`, chromedp.Navigate(d.issuer+"/account"))
	shootPage(b, main, "passkey-disabled-account", `#pk-0-disabled`)

	// 6. The account page lists the card or phone that proved the
	// identity; with the passkey turned off it is the last way to sign
	// in, and removing it warns. Signing out everywhere, confirmed, ends
	// this session and the second context's passkey session too.
	if n := browserRun(b, main, "count cards and phones", chromedp.Evaluate[int](`document.querySelectorAll("#jpki-list li").length`)); n != 1 {
		b.fail(main, "account page", fmt.Errorf("%d cards and phones listed, want 1", n))
	}
	b.do(main, "open the removal", chromedp.Click(chromedp.CSS(`#jpki-0-remove-open`)), chromedp.WaitVisible(chromedp.CSS(`#jpki-0-last`)))
	b.do(main, "open sign out everywhere", chromedp.Click(chromedp.CSS(`#everywhere-open`)), chromedp.WaitVisible(chromedp.CSS(`#everywhere-confirm`)),
		chromedp.Click(chromedp.CSS(`#everywhere-confirm`)))
	b.screenshot(main, "account-authenticators-open-ja.png")
	b.setViewport(main, phone)
	b.screenshot(main, "account-authenticators-open-ja-390.png")
	b.setViewport(main, desktop)
	shootPage(b, main, "account-authenticators", `#everywhere-open`)
	b.do(main, "open sign out everywhere again", chromedp.Click(chromedp.CSS(`#everywhere-open`)), chromedp.WaitVisible(chromedp.CSS(`#everywhere-confirm`)))
	b.arrive(main, "sign out everywhere", `#everywhere-done`, chromedp.Click(chromedp.CSS(`#everywhere-confirm`)), chromedp.Click(chromedp.CSS(`#everywhere-do`)))
	// (The notice is the answer to the sign-out: in one language.)
	b.audit(main, "account-signed-out-everywhere", `#everywhere-done`, nil)
	b.arrive(fresh, "the passkey session ended too", `#account-signed-out`, chromedp.Navigate(d.issuer+"/account"))

	// No page hit a CSP violation or a script error.
	var problems []string
	for _, tab := range b.tabs {
		for _, line := range tab.consoleLines() {
			if strings.Contains(line, "Content Security Policy") || strings.Contains(line, "exception") || strings.Contains(line, "Uncaught") {
				problems = append(problems, tab.name+": "+line)
			}
		}
	}
	b.check(main, "console", problems)
	for _, v := range []string{browserFamily, browserGiven, browserAddress} {
		if strings.Contains(logs.String(), v) {
			t.Errorf("the logs carry %q", v)
		}
	}
	b.reportAxe()
}
