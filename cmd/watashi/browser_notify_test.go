package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserNotices: in Chromium against the demo, a resident proves
// their identity, opts in to sign-in notices on the account page,
// confirms the address from the demo's mailbox, signs in again and finds
// the notice, whose "this wasn't me" page signs them out everywhere.
// Each step's page is saved as a screenshot and checked with axe-core.
func TestBrowserNotices(t *testing.T) {
	chrome := findChromium(t)
	shots := screenshotDir(t)
	deadline := time.Now().Add(browserBudget)
	d, _ := startDemo(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.server.Run(ctx) }() // the mail consumer and queue
	t.Cleanup(func() { cancel(); <-done })
	b, main := startBrowser(t, t.Context(), chrome, "ja,en;q=0.5", "notices", shots, deadline)

	// 1. Identity proofing with the phone simulator, as in
	// TestBrowserSignInConsent.
	b.arrive(main, "open the RP", `a[href="/rp/login"]`, chromedp.Navigate(d.issuer+"/rp/"))
	b.arrive(main, "press sign in", `#signin #code`, chromedp.Click(chromedp.CSS(`a[href="/rp/login"]`)))
	b.arrive(main, "choose first time", `#mode-proofing[aria-current="page"]`, chromedp.Click(chromedp.CSS(`#mode-proofing`)))
	b.do(main, "find the app link", chromedp.WaitVisible(chromedp.CSS(`#applink`)))
	phone := b.newTab("phone")
	scan(b, phone, d.issuer, qrURL(b, main), `#family`)
	enrol(b, phone)
	b.arrive(phone, "approve", `#phone-done`, chromedp.Click(chromedp.CSS(`#phone-approve`)))
	allow := `form#consent button[name="action"][value="allow"]`
	b.arrive(main, "reach consent", allow)
	b.arrive(main, "allow", `a[href="/rp/logout"]`, chromedp.Click(chromedp.CSS(allow)))

	// 2. The account page offers the notices; a bad address is refused.
	b.arrive(main, "open the account page", `#notices-address`, chromedp.Navigate(d.issuer+"/account"))
	b.arrive(main, "a bad address", `#notices-notice`,
		chromedp.SetValue(chromedp.CSS(`#notices-address`), "taro@example"),
		chromedp.Click(chromedp.CSS(`#notices-subscribe`)))
	if got := browserRun(b, main, "read the refusal", chromedp.Text(chromedp.CSS(`#notices-notice`))); !strings.Contains(got, "taro@example.jp") {
		b.fail(main, "a bad address", fmt.Errorf("the refusal says %q", got))
	}
	b.arrive(main, "subscribe", `#notices-notice`,
		chromedp.SetValue(chromedp.CSS(`#notices-address`), "taro@example.jp"),
		chromedp.Click(chromedp.CSS(`#notices-subscribe`)))
	shootPage(b, main, "notices-sent", `#notices`)

	// 3. The confirmation mail, its page, and its button.
	b.arrive(main, "the confirmation mail", `#mail-0 a[href*="/notify/confirm"]`, chromedp.Navigate(d.issuer+"/mail/"))
	b.audit(main, "notices-mail-confirm", `#mail-0`, nil)
	b.arrive(main, "open the link", `form[action="/notify/confirm"] button`, chromedp.Click(chromedp.CSS(`#mail-0 a[href*="/notify/confirm"]`)))
	b.arrive(main, "confirm", `a[href="/account"]`, chromedp.Click(chromedp.CSS(`form[action="/notify/confirm"] button`)))
	b.audit(main, "notices-confirmed", `a[href="/account"]`, nil)
	b.arrive(main, "the account page names the address", `#notices-current`, chromedp.Navigate(d.issuer+"/account"))
	if got := browserRun(b, main, "read the address", chromedp.Text(chromedp.CSS(`#notices-current`))); !strings.Contains(got, "taro@example.jp") {
		b.fail(main, "account page", fmt.Errorf("the notices section says %q", got))
	}
	shootPage(b, main, "notices-account", `#notices`)

	// 4. After signing out, another sign-in at the RP with the phone
	// brings a notice naming the service and the phone. (Coming back
	// within the SSO session is no new sign-in and brings none.)
	b.arrive(main, "sign out", `#logout-confirm`, chromedp.Click(chromedp.CSS(`#account-logout`)))
	b.arrive(main, "confirm", `#signedout-card`, chromedp.Click(chromedp.CSS(`#logout-confirm`)))
	b.arrive(main, "sign in at the RP again", `#applink`, chromedp.Navigate(d.issuer+"/rp/login"))
	scan(b, phone, d.issuer, qrURL(b, main), `#phone-approve`)
	b.arrive(phone, "approve again", `#phone-done`, chromedp.Click(chromedp.CSS(`#phone-approve`)))
	b.do(main, "back at the RP or consent", chromedp.WaitVisible(chromedp.CSS(`a[href="/rp/logout"], `+allow)))
	if browserRun(b, main, "consent asked again", chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q) !== null`, allow))) {
		b.arrive(main, "allow again", `a[href="/rp/logout"]`, chromedp.Click(chromedp.CSS(allow)))
	}
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		b.do(main, "open the mailbox", chromedp.Navigate(d.issuer+"/mail/"), chromedp.WaitVisible(chromedp.CSS(`#mailbox`)))
		if browserRun(b, main, "look for the notice", chromedp.Evaluate[bool](`document.querySelector('#mail-0 a[href*="/notify/not-me"]') !== null`)) {
			break
		}
		if time.Since(start) > 10*time.Second {
			b.fail(main, "the notice", fmt.Errorf("no sign-in notice in the mailbox after 10 s"))
		}
	}
	text := browserRun(b, main, "read the notice", chromedp.Text(chromedp.CSS(`#mail-0`)))
	for _, want := range []string{"Watashi demo RP", "Android", "JST"} {
		if !strings.Contains(text, want) {
			b.fail(main, "read the notice", fmt.Errorf("the notice lacks %q:\n%s", want, text))
		}
	}
	b.audit(main, "notices-mail-signin", `#mail-0`, nil)

	// 5. "This wasn't me": a page, then every session ends.
	b.arrive(main, "open this wasn't me", `form[action="/notify/not-me"] button`, chromedp.Click(chromedp.CSS(`#mail-0 a[href*="/notify/not-me"]`)))
	b.audit(main, "notices-not-me", `form[action="/notify/not-me"] button`, nil)
	b.arrive(main, "sign out everywhere", `#account-signin`, chromedp.Click(chromedp.CSS(`form[action="/notify/not-me"] button`)))
	b.reportAxe()
}
