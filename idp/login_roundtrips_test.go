package idp_test

import (
	"context"
	"net/url"
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/walletsim"
)

// loginRoundTripBudget is the most store round trips one whole login of
// an enrolled resident may cost the request handlers: a new browser, the
// wallet's fetch and submission, one status poll, finish, a remembered
// consent, the callback, the code exchange and userinfo (the load tool's
// login). Each is a network round trip on Redis and most of a login's
// CPU there; raise it only with the reason in the commit.
const loginRoundTripBudget = 21

var (
	reFinishCSRF = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
	// reFinishForm is the page's Continue form, where a browser posts.
	reFinishForm = regexp.MustCompile(`<form id="finish" method="post" action="([^"]+)"`)
)

// TestLoginRoundTrips counts, step by step, the store round trips of the
// request handlers (watashi_store_round_trips_total{origin="request"},
// a batch as one) in one login, and holds the total to the budget.
func TestLoginRoundTrips(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	kv, err := store.Instrument(store.NewMemory(), reg)
	if err != nil {
		t.Fatal(err)
	}
	trips := func() float64 { return requestRoundTrips(t, reg) }
	op := startOP(t, opSetup{kv: kv})
	city := op.rp("city", e2eCityRedirect)
	w := op.pki.wallet(t, e2eTaro)

	// Enrolment: proofing, consent remembered, the RP's key set fetched.
	a := city.begin()
	city.callback(a, op.browser().signIn(w, a, "proofing", walletsim.FormatJWS))

	type step struct {
		name  string
		trips float64
	}
	var steps []step
	measure := func(name string, fn func()) {
		before := trips()
		fn()
		steps = append(steps, step{name, trips() - before})
	}
	a = city.begin()
	b := op.browser()
	var (
		loginURL, consentURL, callbackURL, rpURL *url.URL
		p                                        loginPage
		tx                                       *walletsim.Transaction
		done                                     *login
	)
	measure("authorize", func() { loginURL = b.authorize(a) })
	measure("login and its page", func() { p = b.openTransaction(loginURL) })
	measure("wallet fetch", func() {
		if tx, err = walletsim.Fetch(ctx, op.hc, p.walletLink(t)); err != nil {
			t.Fatal(err)
		}
	})
	measure("wallet submission", func() {
		if err := w.Submit(ctx, op.hc, tx, walletsim.FormatJWS); err != nil {
			t.Fatal(err)
		}
	})
	measure("status poll", func() {
		if _, st := b.status(p); st.State != "verified" {
			t.Fatalf("status %+v after the submission", st)
		}
	})
	measure("finish", func() {
		action := scrape(t, reFinishForm, p.body)
		consentURL = b.expectRedirect(b.submit(action, url.Values{"csrf_token": {scrape(t, reFinishCSRF, p.body)}}), "/consent")
	})
	measure("consent (remembered)", func() { callbackURL = b.consent(consentURL) })
	measure("callback", func() { rpURL = b.toRP(callbackURL) })
	measure("code exchange", func() { done = city.callback(a, rpURL) })
	measure("userinfo", func() {
		if _, code := city.userinfo(done.tok); code != 200 {
			t.Fatalf("userinfo: HTTP %d", code)
		}
	})

	var total float64
	for _, s := range steps {
		t.Logf("%-22s %3.0f", s.name, s.trips)
		total += s.trips
	}
	t.Logf("%-22s %3.0f (budget %d)", "login", total, loginRoundTripBudget)
	if total > loginRoundTripBudget {
		t.Errorf("a login costs %.0f store round trips, more than the budget of %d", total, loginRoundTripBudget)
	}
}
