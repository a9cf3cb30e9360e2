package idp

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/watashi-id/watashi/idp/notify"
	"github.com/watashi-id/watashi/idp/notify/notifytest"
	"github.com/watashi-id/watashi/idp/ssf"
	"github.com/watashi-id/watashi/pkibridge"
)

// counterValue reads a counter.
func counterValue(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var d dto.Metric
	if err := (<-ch).Write(&d); err != nil {
		return -1
	}
	return d.GetCounter().GetValue()
}

// relayMail waits for the relay's next message and returns its decoded
// subject and text.
func relayMail(t *testing.T, r *notifytest.Relay, within time.Duration) (notifytest.Received, string, string) {
	t.Helper()
	select {
	case m := <-r.C:
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(msg.Body)
		body, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(raw), "\r\n", ""))
		if err != nil {
			t.Fatal(err)
		}
		return m, subject, string(body)
	case <-time.After(within):
		t.Fatalf("no mail within %v", within)
	}
	return notifytest.Received{}, "", ""
}

var reConfirmLink = regexp.MustCompile(regexp.QuoteMeta(notify.ConfirmPath) + `\?t=([A-Za-z0-9_.-]+)`)

// TestFactsMonitorToSSF: on Redis, a resident proves at an RP that holds
// an SSF push stream; the simulator CA revokes the proofing (signature)
// certificate and publishes a new CRL; in the next round the monitor
// finds it in the CRL index without asking OCSP, marks the facts stale,
// and the receiver gets a CAEP credential-change SET for the RP's
// pairwise subject, while the resident, who opted in to notices on the
// account page, gets one mail through a real SMTP relay asking to prove
// again, in both languages, without any of the facts. The next round
// announces neither again.
func TestFactsMonitorToSSF(t *testing.T) {
	kv := redisKV(t)
	recv := newSSFReceiver(t)
	mailCA := notifytest.NewCA(t)
	relay := notifytest.StartRelay(t, mailCA, false)
	pw := t.TempDir() + "/smtp.password"
	if err := os.WriteFile(pw, []byte(relay.Pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pki := simulatorPKI(t)
	clock := &testClock{}
	anchors, err := pkibridge.NewAnchors(pki.sigCA.Cert, pki.authCA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	// CRL of the signature CA (free, in memory), OCSP for both (each
	// query may cost a fee), uncached so that a sign-in sees revocation.
	checker, err := pkibridge.NewChecker([]string{pki.revURL + "/crl/0.crl"}, []string{pki.revURL + "/ocsp/0", pki.revURL + "/ocsp/1"},
		[]*x509.Certificate{pki.sigCA.Cert}, pkibridge.CheckerOptions{OCSP: pkibridge.OCSPOptions{NoCache: true}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	o := newTestOP(t, kv, func(o *Options) {
		o.Verifier = &pkibridge.Verifier{Anchors: anchors, Policy: pkibridge.DefaultPolicy(), Revocation: checker, Mode: pkibridge.RevocationRequire}
		o.Now = clock.Now
		o.Metrics = reg
		o.FactsMonitor = FactsMonitorOptions{Enabled: true, Interval: time.Hour, OCSP: true, Partitions: 4, Tick: 100 * time.Millisecond}
		o.Notify = NotifyOptions{Enabled: true, SMTP: notify.SMTPConfig{Host: "127.0.0.1", Port: relay.Port(), TLS: notify.TLSStartTLS,
			Username: relay.User, PasswordFile: pw, From: "no-reply@id.example.jp", RootCAs: mailCA.Pool, Timeout: 5 * time.Second}}
	})
	op := &signinOP{testOP: o, pki: pki, clock: clock}
	w := pki.wallet(t, factsTaro)
	b := op.browser()
	if rp := b.signIn(w, "web", "proofing", "jws"); rp.Query().Get("code") == "" {
		t.Fatalf("sign-in: %s", rp)
	}
	account := accountOf(t, kv)
	status, _, raw := ssfCall(t, o, http.MethodPost, ssf.StreamPath, "web", testSecret, map[string]any{
		"events_requested": []string{ssf.EventCredentialChange},
		"delivery":         map[string]any{"method": ssf.MethodPush, "endpoint_url": recv.URL + "/events", "authorization_header": recv.token},
	})
	if status != http.StatusCreated {
		t.Fatalf("create stream: %d %s", status, raw)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.s.Run(ctx)

	checked := func() float64 {
		return counterValue(o.s.monitor.Metric("checked"))
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The first round: the certificate stands.
	waitFor("the first round", func() bool { return checked() >= 1 })
	if a, _ := o.s.accounts.Get(ctx, account); a.FactsSource.Stale {
		t.Fatal("stale before revocation")
	}
	// mailed: the notices consumer has passed every event published so
	// far (the outbox's log and the consumer's cursor in the store).
	mailed := func() bool {
		log, err := kv.StreamRange(ctx, "events:log", "0-0", 1000)
		if err != nil || len(log) == 0 {
			return false
		}
		cur, err := kv.Get(ctx, "events:cursor:"+notify.ConsumerName)
		return err == nil && string(cur) == log[len(log)-1].ID
	}
	// The notices consumer passes the sign-in's event before the opt-in
	// (so that it brings no mail), ...
	waitFor("the notices consumer to pass the sign-in", mailed)
	// ... then the resident opts in on the account page and confirms the
	// address by the mailed link.
	code, _, page := b.get("/account")
	if code != http.StatusOK {
		t.Fatalf("account page: %d", code)
	}
	action, fields := pageForm(t, page, "notices-form")
	f := submission(fields)
	f.Set("action", "subscribe")
	f.Set("address", "taro@example.jp")
	if code, loc, _ := b.post(action, f); code != http.StatusSeeOther || !strings.Contains(loc, "notices=sent") {
		t.Fatalf("subscribe: %d %q", code, loc)
	}
	_, _, body := relayMail(t, relay, 10*time.Second)
	m := reConfirmLink.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no confirmation link in\n%s", body)
	}
	if code, _, page := b.post(notify.ConfirmPath, url.Values{"t": {m[1]}}); code != http.StatusOK || !strings.Contains(page, "Address confirmed") {
		t.Fatalf("confirm: %d\n%s", code, page)
	}

	// The CA revokes the signature certificate and publishes a CRL.
	pki.sigCA.Revoke(w.SigCert.SerialNumber, time.Now().Add(-time.Minute), 4)
	if err := checker.CRLs[0].Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	ocspBefore := counterValue(o.s.monitor.Metric("ocsp"))
	clock.Advance(time.Hour) // the next round
	set := verifyJWT(t, o.issuer, recv.next(t), "secevent+jwt")
	ev, _ := set["events"].(map[string]any)
	cc, _ := ev[ssf.EventCredentialChange].(map[string]any)
	cl, _ := o.s.clients.Get(ctx, "web")
	if cc["credential_type"] != "x509" || cc["change_type"] != "revoke" || set["aud"] != "web" ||
		set["sub_id"].(map[string]any)["sub"] != o.s.clients.Subject(cl, account) {
		t.Fatalf("SET %v", set)
	}
	a, err := o.s.accounts.Get(ctx, account)
	if err != nil || !a.FactsSource.Stale || a.FactsSource.AnnouncedAt.IsZero() {
		t.Fatalf("facts source after the monitor: %+v %v", a.FactsSource, err)
	}
	if n := counterValue(o.s.monitor.Metric("stale")); n != 1 {
		t.Fatalf("stale found %v", n)
	}
	if n := counterValue(o.s.monitor.Metric("ocsp")); n != ocspBefore {
		t.Fatalf("the CRL decided, yet OCSP was asked (%v → %v)", ocspBefore, n)
	}
	// The mail: to the confirmed address, in Japanese and English, a link
	// to the account page, and none of the facts it is about.
	got, subject, body := relayMail(t, relay, 10*time.Second)
	if got.To != "taro@example.jp" {
		t.Fatalf("mail to %q", got.To)
	}
	for _, want := range []string{"本人確認をもう一度", "Please prove your identity again"} {
		if !strings.Contains(subject, want) {
			t.Errorf("subject %q lacks %q", subject, want)
		}
	}
	for _, want := range []string{"署名用電子証明書が失効", "もう一度本人確認をしてください", "has been revoked",
		"Please prove your identity again", o.issuer + "/account"} {
		if !strings.Contains(body, want) {
			t.Errorf("mail lacks %q:\n%s", want, body)
		}
	}
	for _, fact := range []string{"山田", "太郎", "東京都", "千代田区", "霞が関", "319801231", "19801231", "1980", "12-31", "12月31日", "昭和"} {
		if strings.Contains(subject, fact) || strings.Contains(body, fact) || bytes.Contains(got.Data, []byte(fact)) {
			t.Errorf("the mail carries the fact %q:\n%s\n%s", fact, subject, body)
		}
	}
	// Another round: announced once, not again. The round is over when
	// every partition is done; the queue is read every second.
	partitions := func() float64 {
		mf, _ := reg.Gather()
		for _, f := range mf {
			if f.GetName() == "watashi_facts_monitor_partitions_done_total" {
				return f.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return -1
	}
	done := partitions()
	clock.Advance(time.Hour)
	waitFor("the next round", func() bool { return partitions() >= done+4 })
	waitFor("the notices consumer", mailed)
	time.Sleep(1500 * time.Millisecond)
	select {
	case m := <-relay.C:
		t.Fatalf("a second mail to %s:\n%s", m.To, m.Data)
	default:
	}
	select {
	case s := <-recv.sets:
		t.Fatalf("announced twice: %s", s[:min(len(s), 40)])
	default:
	}
	mf, _ := reg.Gather()
	var names []string
	for _, f := range mf {
		if strings.HasPrefix(f.GetName(), "watashi_facts_monitor_") {
			names = append(names, f.GetName())
		}
	}
	if len(names) < 3 {
		t.Fatalf("monitor metrics on the registry: %v", names)
	}
}
