package idp

import (
	"context"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

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

// TestFactsMonitorToSSF: on Redis, a resident proves at an RP that holds
// an SSF push stream; the simulator CA revokes the proofing (signature)
// certificate and publishes a new CRL; in the next round the monitor
// finds it in the CRL index without asking OCSP, marks the facts stale,
// and the receiver gets a CAEP credential-change SET for the RP's
// pairwise subject.
func TestFactsMonitorToSSF(t *testing.T) {
	kv := redisKV(t)
	recv := newSSFReceiver(t)
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
	})
	op := &signinOP{testOP: o, pki: pki, clock: clock}
	w := pki.wallet(t, factsTaro)
	if rp := op.browser().signIn(w, "web", "proofing", "jws"); rp.Query().Get("code") == "" {
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
	// Another round: announced once, not again.
	clock.Advance(time.Hour)
	time.Sleep(500 * time.Millisecond)
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
