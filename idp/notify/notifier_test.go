package notify

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/notify/notifytest"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type names struct{}

func (names) ClientName(_ context.Context, id string) (string, error) {
	switch id {
	case "city":
		return "市民ポータル", nil
	case "gone":
		return "", nil
	}
	return "", errors.New("client registry unavailable")
}

func (names) PasskeyName(_ context.Context, account, id string) (string, error) {
	if account == "acct-1" && id == "pk1" {
		return "仕事用の\r\nYubiKey", nil
	}
	return "", errors.New("unknown passkey")
}

// signOuts records the session index's calls.
type signOuts struct {
	mu    sync.Mutex
	calls []string
	fail  bool
}

func (s *signOuts) SignOutEverywhere(_ context.Context, account, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("store down")
	}
	s.calls = append(s.calls, account+" "+reason)
	return nil
}

type env struct {
	t     *testing.T
	kv    store.KV
	clock *fakeClock
	relay *notifytest.Relay
	subs  *Subscriptions
	n     *Notifier
	h     *Handler
	out   *signOuts
	srv   *httptest.Server
}

func newNotifyEnv(t *testing.T, kv store.KV) *env {
	t.Helper()
	ca := notifytest.NewCA(t)
	r := notifytest.StartRelay(t, ca, false)
	c := relayConfig(r, ca)
	c.PasswordFile = passwordFile(t, r.Pass)
	sender, err := NewSender(c, true)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: fixedTime}
	ring := seal.GenerateRing()
	subs, err := NewSubscriptions(kv, ring, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Options{Store: kv, Ring: ring, Mailer: sender, Names: names{}, Subs: subs, Issuer: "https://id.example.jp",
		LinkKey: bytes.Repeat([]byte{5}, 32), Now: clock.Now, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	out := &signOuts{}
	h, err := NewHandler(n, out, "/account")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{t: t, kv: kv, clock: clock, relay: r, subs: subs, n: n, h: h, out: out, srv: srv}
}

// wait takes the next mail the relay received.
func (e *env) wait() (*mail.Message, string) {
	e.t.Helper()
	select {
	case m := <-e.relay.C:
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			e.t.Fatal(err)
		}
		raw, _ := io.ReadAll(msg.Body)
		body, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(raw), "\r\n", ""))
		if err != nil {
			e.t.Fatal(err)
		}
		return msg, string(body)
	case <-time.After(5 * time.Second):
		e.t.Fatal("no mail arrived")
	}
	return nil, ""
}

var reLink = regexp.MustCompile(`https://id\.example\.jp(/notify/[a-z-]+)\?t=([A-Za-z0-9_.-]+)`)

func (e *env) link(body, path string) string {
	e.t.Helper()
	for _, m := range reLink.FindAllStringSubmatch(body, -1) {
		if m[1] == path {
			return m[2]
		}
	}
	e.t.Fatalf("no %s link in\n%s", path, body)
	return ""
}

func (e *env) post(path, token string) (int, string, string) {
	e.t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.PostForm(e.srv.URL+path, url.Values{"t": {token}})
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("Location"), string(b)
}

func (e *env) get(path, token string) int {
	e.t.Helper()
	res, err := http.Get(e.srv.URL + path + "?t=" + url.QueryEscape(token))
	if err != nil {
		e.t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// subscribe runs the opt-in: request, the confirmation mail, the link.
func (e *env) subscribe(account, address string) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.n.RequestConfirmation(ctx, account, address); err != nil {
		e.t.Fatal(err)
	}
	e.n.Drain(ctx)
	msg, body := e.wait()
	if msg.Header.Get("To") != address {
		e.t.Fatalf("confirmation to %q", msg.Header.Get("To"))
	}
	tok := e.link(body, ConfirmPath)
	if e.get(ConfirmPath, tok) != http.StatusOK {
		e.e404()
	}
	if _, err := e.subs.Get(ctx, account); !errors.Is(err, ErrNotSubscribed) {
		e.t.Fatalf("opening the link (GET) confirmed: %v", err)
	}
	if code, _, page := e.post(ConfirmPath, tok); code != http.StatusOK || !strings.Contains(page, "Address confirmed") {
		e.t.Fatalf("confirm: %d\n%s", code, page)
	}
}

func (e *env) e404() { e.t.Helper(); e.t.Fatal("the confirmation page did not open") }

func TestNotifyMemory(t *testing.T) { testNotify(t, store.NewMemory()) }

func TestNotifyRedis(t *testing.T) {
	kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{storetest.StartRedis(t)}, Prefix: "nt:"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	testNotify(t, kv)
}

// The whole flow: opt in by a confirmed link, a sign-in event from the
// outbox becomes one mail that names the service, the time and the
// method and nothing else, and its "this wasn't me" link signs out
// everywhere once.
func testNotify(t *testing.T, kv store.KV) {
	e := newNotifyEnv(t, kv)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.subscribe("acct-1", "taro@example.jp")
	for _, bad := range []string{"", "short", strings.Repeat("A", 43), strings.Repeat("A", 600)} {
		if code := e.get(ConfirmPath, bad); code != http.StatusBadRequest && len(bad) != 43 {
			t.Errorf("confirm page for %q: %d", bad, code)
		}
		if code, _, _ := e.post(ConfirmPath, bad); code != http.StatusBadRequest {
			t.Errorf("confirm %q: %d", bad, code)
		}
	}

	// The address is sealed at rest.
	var plain bool
	_ = kv.Scan(ctx, "notify:", func(key string) error {
		if v, err := kv.Get(ctx, key); err == nil && bytes.Contains(v, []byte("taro@example.jp")) {
			plain = true
		}
		return nil
	})
	if plain {
		t.Fatal("an address is stored in the clear")
	}

	outbox := events.NewOutbox(kv, nil)
	outbox.Poll = 20 * time.Millisecond
	go func() { _ = outbox.Consume(ctx, "notify-mail", e.n.HandleEvent) }()
	go func() { _ = e.n.Run(ctx) }()

	when := time.Date(2026, 12, 5, 4, 2, 0, 0, time.UTC) // 13:02 JST, after the confirmation
	for _, ev := range []events.Event{
		// Before the address was confirmed: told to no one, however late
		// the outbox hands it over.
		{Kind: events.SignedIn, AccountID: "acct-1", SessionID: "s0", ClientIDs: []string{"city"}, Method: "jpki:JPKIAPGPSETOKEN", Time: fixedTime.Add(-time.Minute)},
		{Kind: events.SignedIn, AccountID: "acct-1", SessionID: "s1", ClientIDs: []string{"city"}, Method: "jpki:JPKIAPGPSETOKEN", Time: when},
		{Kind: events.SignedIn, AccountID: "acct-2", SessionID: "s2", ClientIDs: []string{"city"}, Method: "jpki:JPKIAPIOSTOKEN", Time: when}, // not subscribed
		{Kind: events.SignedIn, AccountID: "acct-1", SessionID: "s3", Method: "passkey:pk1", Time: when},
		{Kind: events.FactsStale, AccountID: "acct-1", Time: when},
	} {
		if err := outbox.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}

	// Three mails, in any order: one per event of the subscribed account.
	mails := map[string]string{}
	for range 3 {
		msg, body := e.wait()
		subj, _ := new(mimeDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if msg.Header.Get("To") != "taro@example.jp" {
			t.Fatalf("mail to %q", msg.Header.Get("To"))
		}
		switch {
		case strings.Contains(subj, "prove your identity again"):
			mails["facts"] = body
		case strings.Contains(body, "パスキー"):
			mails["passkey"] = body
		case strings.Contains(subj, "You signed in"):
			mails["jpki"] = body
		}
	}
	body := mails["jpki"]
	for _, want := range []string{"サービス: 市民ポータル", "日時: 2026-12-05 13:02 JST", "方法: スマートフォン（Android）の電子証明書",
		"Service: 市民ポータル", "When: 2026-12-05 13:02 JST", "Method: the certificate on an Android smartphone"} {
		if !strings.Contains(body, want) {
			t.Errorf("mail lacks %q:\n%s", want, body)
		}
	}
	for _, b := range mails {
		text := reLink.ReplaceAllString(b, "LINK") // a token may hold any letters
		for _, never := range []string{"acct-1", "s1", "JPKIAPGPSETOKEN", "pk1", "city"} {
			if strings.Contains(text, never) {
				t.Errorf("mail carries %q", never)
			}
		}
	}
	notMe := e.link(body, NotMePath)
	if b := mails["passkey"]; !strings.Contains(b, "方法: パスキー「仕事用の  YubiKey」") || !strings.Contains(b, `Method: the passkey "仕事用の  YubiKey"`) ||
		!strings.Contains(b, "Service: Watashi アカウント / Watashi account") {
		t.Fatalf("passkey mail:\n%s", b)
	}
	if b := mails["facts"]; !strings.Contains(b, "https://id.example.jp/account") || strings.Contains(b, NotMePath) {
		t.Fatalf("facts mail:\n%s", b)
	}
	select {
	case m := <-e.relay.C:
		t.Fatalf("a mail for the account that did not opt in, or a duplicate: %s", m.To)
	case <-time.After(300 * time.Millisecond):
	}

	// "This wasn't me": the page first (a GET changes nothing), then the
	// button; the link works once.
	if code := e.get(NotMePath, notMe); code != http.StatusOK || len(e.out.calls) != 0 {
		t.Fatalf("not-me page: %d, calls %v", code, e.out.calls)
	}
	e.out.fail = true
	if code, _, _ := e.post(NotMePath, notMe); code != http.StatusServiceUnavailable {
		t.Fatalf("sign-out failing: %d", code)
	}
	e.out.fail = false
	if code, loc, _ := e.post(NotMePath, notMe); code != http.StatusSeeOther || loc != "/account" {
		t.Fatalf("not me: %d %q", code, loc)
	}
	if len(e.out.calls) != 1 || e.out.calls[0] != "acct-1 sign_out_everywhere" {
		t.Fatalf("sign-outs %v", e.out.calls)
	}
	if code, _, _ := e.post(NotMePath, notMe); code != http.StatusBadRequest || len(e.out.calls) != 1 {
		t.Fatalf("reused link: %d %v", code, e.out.calls)
	}
	if code := e.get(NotMePath, notMe); code != http.StatusBadRequest {
		t.Fatalf("reused link page: %d", code)
	}
	// Forged and expired links.
	forged := strings.Replace(notMe, notMe[:4], "eyJh", 1)
	other := e.n.notMeToken("acct-9")
	body9, sig9, _ := strings.Cut(other, ".")
	_, sig1, _ := strings.Cut(notMe, ".")
	for _, bad := range []string{"", "x", forged, body9 + "." + sig1, strings.Repeat("a", 600), other[:len(other)-2] + sig9[:2]} {
		if code, _, _ := e.post(NotMePath, bad); code != http.StatusBadRequest {
			t.Errorf("bad link %q: %d", bad, code)
		}
	}
	late := e.n.notMeToken("acct-1")
	e.clock.Advance(NotMeTTL + time.Minute)
	if code, _, _ := e.post(NotMePath, late); code != http.StatusBadRequest || len(e.out.calls) != 1 {
		t.Fatalf("expired link: %d", code)
	}
}

type mimeDecoder = mimeWordDecoder

// Confirmation tokens: single use, bounded per account, expiring; a bad
// address or token changes nothing.
func TestSubscriptions(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	clock := &fakeClock{t: fixedTime}
	subs, _ := NewSubscriptions(kv, seal.GenerateRing(), clock.Now)
	for _, bad := range []string{"", "taro", "taro@example.jp\r\nBcc: x@y.jp", "Taro <taro@example.jp>"} {
		if _, err := subs.Request(ctx, "acct-1", bad); !errors.Is(err, ErrAddress) {
			t.Errorf("Request(%q) = %v", bad, err)
		}
	}
	tok, err := subs.Request(ctx, "acct-1", "taro@example.jp")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "short", tok[:42] + "x", strings.Repeat("A", 43)} {
		if _, err := subs.Confirm(ctx, bad); !errors.Is(err, ErrToken) {
			t.Errorf("Confirm(%q) = %v", bad, err)
		}
	}
	if _, err := subs.Get(ctx, "acct-1"); !errors.Is(err, ErrNotSubscribed) {
		t.Fatal("subscribed before confirming")
	}
	s, err := subs.Confirm(ctx, tok)
	if err != nil || s.AccountID != "acct-1" || s.Address != "taro@example.jp" {
		t.Fatal(s, err)
	}
	if _, err := subs.Confirm(ctx, tok); !errors.Is(err, ErrToken) {
		t.Fatalf("reused token: %v", err)
	}
	if got, err := subs.Get(ctx, "acct-1"); err != nil || got.Address != "taro@example.jp" {
		t.Fatal(got, err)
	}
	// MaxPending confirmations a day: the first plus two more.
	for i := range MaxPending - 1 {
		if _, err := subs.Request(ctx, "acct-1", "jiro@example.jp"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if _, err := subs.Request(ctx, "acct-1", "jiro@example.jp"); !errors.Is(err, ErrTooMany) {
		t.Fatalf("past the bound: %v", err)
	}
	if _, err := subs.Request(ctx, "acct-2", "hanako@example.jp"); err != nil {
		t.Fatalf("another account is not bounded by this one: %v", err)
	}
	if err := subs.Cancel(ctx, "acct-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := subs.Get(ctx, "acct-1"); !errors.Is(err, ErrNotSubscribed) {
		t.Fatal("still subscribed after Cancel")
	}
}

// A relay outage never reaches the sign-in: the event is queued at once
// with the relay down, the mail is retried with backoff and arrives,
// once, when the relay is back.
func TestOutage(t *testing.T) {
	kv := store.NewMemory()
	e := newNotifyEnv(t, kv)
	ctx := context.Background()
	e.subscribe("acct-1", "taro@example.jp")
	addr := e.relay.Addr()
	e.relay.Stop()

	ev := events.Event{ID: "1-0", Kind: events.SignedIn, AccountID: "acct-1", ClientIDs: []string{"city"}, Method: "jpki:JPKIAPICCTOKEN2", Time: fixedTime}
	if err := e.n.HandleEvent(ctx, ev); err != nil {
		t.Fatalf("queueing with the relay down: %v", err)
	}
	if err := e.n.HandleEvent(ctx, ev); err != nil { // redelivered by the outbox
		t.Fatal(err)
	}
	for i := range 3 {
		e.n.Drain(ctx)
		e.clock.Advance(MinBackoff << i)
	}
	if e.n.Sent() != 1 { // the confirmation mail
		t.Fatalf("sent %d during the outage", e.n.Sent())
	}
	raw, err := kv.Get(ctx, jobKey("ev-1-0"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"attempts":3`)) {
		t.Fatalf("job after three failures: %s", raw)
	}

	e.relay.Start(addr)
	e.clock.Advance(MaxBackoff)
	e.n.Drain(ctx)
	_, body := e.wait()
	if !strings.Contains(body, "方法: マイナンバーカード") || !strings.Contains(body, "Method: My Number Card") {
		t.Fatalf("mail after the outage:\n%s", body)
	}
	if err := e.n.HandleEvent(ctx, ev); err != nil { // the outbox redelivers after the mail went out
		t.Fatal(err)
	}
	e.clock.Advance(MaxBackoff)
	e.n.Drain(ctx)
	select {
	case <-e.relay.C:
		t.Fatal("the mail was sent twice")
	case <-time.After(200 * time.Millisecond):
	}
	if ids, _ := kv.SetMembers(ctx, jobsKey); len(ids) != 0 {
		t.Fatalf("queue not empty: %v", ids)
	}
	for outcome, want := range map[string]float64{"queued": 1, "retry": 3, "sent": 1} {
		if got := testutil.ToFloat64(e.n.mails.WithLabelValues(kindSignedIn, outcome)); got != want {
			t.Errorf("watashi_notify_mails_total{signed_in,%s} = %v, want %v", outcome, got, want)
		}
	}

	// A client deleted since the sign-in is named as such; one the
	// registry cannot tell now delays the mail, it does not drop it.
	gone := events.Event{ID: "3-0", Kind: events.SignedIn, AccountID: "acct-1", ClientIDs: []string{"gone"}, Method: "jpki:JPKIAPICCTOKEN2", Time: fixedTime}
	if err := e.n.HandleEvent(ctx, gone); err != nil {
		t.Fatal(err)
	}
	e.n.Drain(ctx)
	if _, body := e.wait(); !strings.Contains(body, "Service: 登録が取り消されたサービス / a service no longer registered") {
		t.Fatalf("mail for a deleted client:\n%s", body)
	}
	later := events.Event{ID: "4-0", Kind: events.SignedIn, AccountID: "acct-1", ClientIDs: []string{"unknowable"}, Method: "jpki:JPKIAPICCTOKEN2", Time: fixedTime}
	if err := e.n.HandleEvent(ctx, later); err != nil {
		t.Fatal(err)
	}
	e.n.Drain(ctx)
	if raw, err := kv.Get(ctx, jobKey("ev-4-0")); err != nil || !bytes.Contains(raw, []byte(`"attempts":1`)) {
		t.Fatalf("a mail whose service cannot be named now: %s %v", raw, err)
	}
	_ = kv.Delete(ctx, jobKey("ev-4-0"))
	_ = kv.SetRemove(ctx, jobsKey, "ev-4-0")

	// A mail that cannot go out for MaxAge is dropped, not kept forever.
	e.relay.Stop()
	ev.ID = "2-0"
	if err := e.n.HandleEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	e.n.Drain(ctx)
	e.clock.Advance(MaxAge + time.Minute)
	e.n.Drain(ctx)
	if ids, _ := kv.SetMembers(ctx, jobsKey); len(ids) != 0 || e.n.Dropped() != 1 {
		t.Fatalf("old mail kept: %v, dropped %d", ids, e.n.Dropped())
	}
}

// BenchmarkHandleEvent is what a sign-in's event costs the mail side on
// the outbox consumer, with the relay up and with it down: the same,
// since only the store is touched.
func BenchmarkHandleEvent(bm *testing.B) {
	for _, down := range []bool{false, true} {
		name := map[bool]string{false: "relay-up", true: "relay-down"}[down]
		bm.Run(name, func(bm *testing.B) {
			kv := store.NewMemory()
			ca := notifytest.NewCA(bm)
			r := notifytest.StartRelay(bm, ca, false)
			c := relayConfig(r, ca)
			c.PasswordFile = passwordFile(bm, r.Pass)
			sender, err := NewSender(c, true)
			if err != nil {
				bm.Fatal(err)
			}
			ring := seal.GenerateRing()
			subs, _ := NewSubscriptions(kv, ring, nil)
			n, err := New(Options{Store: kv, Ring: ring, Mailer: sender, Names: names{}, Subs: subs, Issuer: "https://id.example.jp",
				LinkKey: bytes.Repeat([]byte{5}, 32)})
			if err != nil {
				bm.Fatal(err)
			}
			ctx := context.Background()
			// Enough subscribed accounts that MaxPerHour drops nothing in
			// -benchtime=10000x.
			const accounts = 400
			for a := range accounts {
				tok, _ := subs.Request(ctx, fmt.Sprintf("acct-%d", a), "taro@example.jp")
				if _, err := subs.Confirm(ctx, tok); err != nil {
					bm.Fatal(err)
				}
			}
			if down {
				r.Stop()
			}
			i := 0
			for bm.Loop() {
				i++
				ev := events.Event{ID: fmt.Sprintf("%d-0", i), Kind: events.SignedIn, AccountID: fmt.Sprintf("acct-%d", i%accounts), ClientIDs: []string{"city"}, Method: "jpki:JPKIAPICCTOKEN2", Time: fixedTime}
				if err := n.HandleEvent(ctx, ev); err != nil {
					bm.Fatal(err)
				}
			}
			if n.Dropped() != 0 {
				bm.Fatalf("%d events dropped by the hourly bound: the figure would not be a queued mail's", n.Dropped())
			}
		})
	}
}
