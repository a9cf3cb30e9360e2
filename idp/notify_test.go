package idp_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp"
	"github.com/watashi-id/watashi/idp/notify"
	"github.com/watashi-id/watashi/idp/notify/notifytest"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

// mailBody waits for the relay's next message and returns its decoded
// text.
func mailBody(t *testing.T, r *notifytest.Relay, within time.Duration) (*mail.Message, string) {
	t.Helper()
	select {
	case m := <-r.C:
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(msg.Body)
		body, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(raw), "\r\n", ""))
		if err != nil {
			t.Fatal(err)
		}
		return msg, string(body)
	case <-time.After(within):
		t.Fatalf("no mail within %v", within)
	}
	return nil, ""
}

var reMailLink = regexp.MustCompile(`https?://[^\s]+(/notify/[a-z-]+)\?t=([A-Za-z0-9_.-]+)`)

func mailLink(t *testing.T, body, path string) string {
	t.Helper()
	for _, m := range reMailLink.FindAllStringSubmatch(body, -1) {
		if m[1] == path {
			return m[2]
		}
	}
	t.Fatalf("no %s link in\n%s", path, body)
	return ""
}

// TestNotificationMail through the provider on Redis: the resident opts
// in on the account page and confirms by the link; a sign-in at an RP
// brings a mail naming the service, the time and the phone; with the
// relay down a sign-in goes through as before and its mail arrives once
// the relay is back; the mail's "this wasn't me" link signs out
// everywhere and leads to the account page.
func TestNotificationMail(t *testing.T) {
	kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{storetest.StartRedis(t)}, Prefix: "nm:"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	op := startOP(t, opSetup{kv: kv})
	ca := notifytest.NewCA(t)
	relay := notifytest.StartRelay(t, ca, false)
	pw := t.TempDir() + "/smtp.password"
	if err := os.WriteFile(pw, []byte(relay.Pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := op.opts
	o.Verifier = op.pki.verifier(t)
	o.Notify = idp.NotifyOptions{Enabled: true, SMTP: notify.SMTPConfig{Host: "127.0.0.1", Port: relay.Port(), TLS: notify.TLSStartTLS,
		Username: relay.User, PasswordFile: pw, From: "no-reply@id.example.jp", RootCAs: ca.Pool, Timeout: 5 * time.Second}}
	srv, err := idp.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	op.front.set(srv.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	rp := op.rp("city", e2eCityRedirect)
	phone := op.pki.wallet(t, e2eTaro)
	b := op.browser()
	a := rp.begin()
	rp.callback(a, b.signIn(phone, a, "proofing", "jws"))
	// The proofing sign-in was before the opt-in: no mail for it.

	page := b.expectPage(b.get("/account"))
	action, fields := form(t, page, "/account/notices")
	for _, bad := range []string{"taro@example.jp\r\nBcc: x@example.com", "Taro <taro@example.jp>", "nope"} {
		f := url.Values{"csrf_token": fields["csrf_token"], "action": {"subscribe"}, "address": {bad}}
		if loc := b.expectRedirect(b.submit(action, f), "/account"); loc.Query().Get("notices") != "bad_address" {
			t.Fatalf("address %q: %s", bad, loc)
		}
	}
	// Refusals change nothing: no CSRF token, an unknown action, no session.
	if h := b.submit(action, url.Values{"action": {"subscribe"}, "address": {"taro@example.jp"}}); h.status != http.StatusForbidden {
		t.Fatalf("no CSRF token: %d", h.status)
	}
	if h := b.submit(action, url.Values{"csrf_token": fields["csrf_token"], "action": {"explode"}}); h.status != http.StatusBadRequest {
		t.Fatalf("unknown action: %d", h.status)
	}
	stranger := op.browser()
	sp := stranger.expectPage(stranger.get("/account"))
	if strings.Contains(sp, "/account/notices") {
		t.Fatal("the notices form is offered without a session")
	}
	f := url.Values{"csrf_token": fields["csrf_token"], "action": {"subscribe"}, "address": {"taro@example.jp"}}
	if loc := b.expectRedirect(b.submit(action, f), "/account"); loc.Query().Get("notices") != "sent" {
		t.Fatalf("subscribe: %s", loc)
	}
	msg, body := mailBody(t, relay, 5*time.Second)
	if msg.Header.Get("To") != "taro@example.jp" {
		t.Fatalf("confirmation to %q (the refused addresses got mail?)", msg.Header.Get("To"))
	}
	tok := mailLink(t, body, notify.ConfirmPath)
	if h := b.submit(notify.ConfirmPath, url.Values{"t": {tok}}); h.status != http.StatusOK || !strings.Contains(h.body, "Address confirmed") {
		t.Fatalf("confirm: %d\n%s", h.status, h.body)
	}
	if h := b.submit(notify.ConfirmPath, url.Values{"t": {tok}}); h.status != http.StatusBadRequest {
		t.Fatalf("confirm twice: %d", h.status)
	}
	if page := b.expectPage(b.get("/account")); !strings.Contains(page, "taro@example.jp") {
		t.Fatal("the account page does not show the confirmed address")
	}

	// A sign-in from a new browser at the RP: one mail.
	nb := op.browser()
	a2 := rp.begin()
	rp.callback(a2, nb.signIn(phone, a2, "", "jws"))
	_, body = mailBody(t, relay, 5*time.Second)
	for _, want := range []string{"サービス: 市民ポータル", "方法: スマートフォン（Android）の電子証明書", "Service: 市民ポータル",
		"Method: the certificate on an Android smartphone", "When: "} {
		if !strings.Contains(body, want) {
			t.Errorf("sign-in mail lacks %q:\n%s", want, body)
		}
	}
	notMe := mailLink(t, body, notify.NotMePath)

	// The relay goes down: a sign-in goes through as before; its mail
	// comes when the relay is back.
	addr := relay.Addr()
	relay.Stop()
	a3 := rp.begin()
	rp.callback(a3, op.browser().signIn(phone, a3, "", "jws"))
	relay.Start(addr)
	_, body = mailBody(t, relay, 10*time.Second)
	if !strings.Contains(body, "サービス: 市民ポータル") {
		t.Fatalf("mail after the outage:\n%s", body)
	}

	// "This wasn't me": every session ends; the browser goes to the
	// account page, signed out.
	h := b.submit(notify.NotMePath, url.Values{"t": {notMe}})
	if h.status != http.StatusSeeOther || h.loc == nil || h.loc.Path != "/account" {
		t.Fatalf("not me: %d %v", h.status, h.loc)
	}
	if page := b.expectPage(b.get("/account")); strings.Contains(page, "taro@example.jp") {
		t.Fatal("still signed in after \"this wasn't me\"")
	}
	if h := nb.get(nb.authorize(rp.begin()).String()); h.status != http.StatusSeeOther || h.loc == nil || h.loc.Query().Get("tx") == "" {
		t.Fatalf("the other browser's session survived: %d %v", h.status, h.loc)
	}
	if h := b.submit(notify.NotMePath, url.Values{"t": {notMe}}); h.status != http.StatusBadRequest {
		t.Fatalf("not-me link used twice: %d", h.status)
	}
	select {
	case m := <-relay.C:
		t.Fatalf("an unexpected mail to %s", m.To)
	case <-time.After(300 * time.Millisecond):
	}
}
