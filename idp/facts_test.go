package idp

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// Stale facts, end to end with the simulator CA: a resident proves with
// a signature certificate, which is later revoked (they moved house).
// Within Options.FactsRecheck the facts are still released (the last
// check vouches for them); after it, the consent step checks again,
// finds the certificate revoked, marks the facts stale and sends the
// resident to prove again instead of releasing anything. Tokens minted
// earlier stop releasing too. After proving with a new signature
// certificate, release works again.
func TestStaleFactsReproof(t *testing.T) {
	pki := simulatorPKI(t)
	o := newConsentOP(t, store.NewMemory(), func(o *Options) {
		// Every revocation question goes to the simulator's responder, so
		// the test sees the CA's current answer; production caches it.
		checker, err := pkibridge.NewChecker(nil, []string{pki.revURL + "/ocsp/0", pki.revURL + "/ocsp/1"}, nil,
			pkibridge.CheckerOptions{OCSP: pkibridge.OCSPOptions{NoCache: true}})
		if err != nil {
			t.Fatal(err)
		}
		o.Verifier.Revocation = checker
		o.FactsRecheck = time.Hour
		o.AccessTokenTTL = 3 * time.Hour // the first RP's token outlives the clock jump
	})
	ctx := context.Background()
	w := pki.wallet(t, factsTaro)
	b := o.proofed(w)
	acct := b.sessionAccount()
	a, err := o.s.accounts.Get(ctx, acct)
	if err != nil || a.FactsSource == nil || a.FactsSource.Recheck == nil || len(a.FactsSource.Recheck.IssuerCert) == 0 ||
		a.FactsSource.CheckedAt.IsZero() || a.FactsSource.Stale {
		t.Fatalf("proofed account's facts source: %+v (%v)", a.FactsSource, err)
	}

	// A first RP gets the name and the birth date.
	ar, conf, v := b.request("web", []string{"name", "birthdate"}, "")
	_, loc := b.consentAll(ar)
	oldTok := o.tokens(conf, v, b.callback(loc))

	// The municipality revokes the signature certificate.
	pki.sigCA.Revoke(w.SigCert.SerialNumber, time.Now(), 4) // superseded

	// Within the recheck period the last answer stands.
	ar, conf, v = b.request("web", []string{"name", "birthdate"}, "")
	if code, loc, _ := b.get(authreq.ConsentURL(ar)); code != http.StatusSeeOther || !strings.Contains(loc, callbackPath) {
		t.Fatalf("within the recheck period: %d %q", code, loc)
	}

	// An hour later, a sign-in with the authentication certificate alone
	// (a fresh browser): consent asks to prove again.
	o.clock.Advance(time.Hour + time.Minute)
	fresh := o.browser()
	ar, conf, v = o.authorizeClaims("web", []string{"name", "birthdate"}, "")
	tx, _ := fresh.openTx(ar, "signin")
	if err := w.Approve(ctx, o.ts.Client(), fresh.walletURL(tx), "jws"); err != nil {
		t.Fatal(err)
	}
	fresh.finish(ar, tx)
	code, loc, _ := fresh.get(authreq.ConsentURL(ar))
	lu, _ := url.Parse(loc)
	if code != http.StatusSeeOther || lu.Path != "/login" || lu.Query().Get("purpose") != authreq.PurposeProofing ||
		lu.Query().Get("notice") != authreq.NoticeStaleFacts {
		t.Fatalf("stale facts: %d %q, want the proofing path", code, loc)
	}
	if a, _ := o.s.accounts.Get(ctx, acct); a.FactsSource == nil || !a.FactsSource.Stale || a.FactsSource.Revocation.Status != pkibridge.StatusRevoked {
		t.Fatalf("facts not marked stale: %+v", a.FactsSource)
	}
	// Tokens minted before the revocation was found release nothing now.
	if st, ui := o.userinfo(oldTok.AccessToken); st != http.StatusOK || len(personal(ui)) != 0 {
		t.Errorf("userinfo of an old token: %d %v", st, personal(ui))
	}
	// prompt=none cannot prove: interaction_required.
	arNone, _, _ := o.authorizeClaims("web", []string{"name", "birthdate"}, "", oauth2.SetAuthURLParam("prompt", "none"))
	fresh.get(authreq.LoginURL(arNone))
	if _, loc, _ := fresh.get(authreq.ConsentURL(arNone)); !strings.Contains(loc, "error=interaction_required") {
		t.Errorf("prompt=none with stale facts: %q", loc)
	}

	// The login page says why, in both languages.
	code, loc, _ = fresh.get(loc)
	if code != http.StatusSeeOther {
		t.Fatalf("proofing path: %d %q", code, loc)
	}
	_, _, page := fresh.get(loc)
	if !strings.Contains(page, `id="notice"`) || !strings.Contains(page, "失効") {
		t.Fatalf("login page without the stale-facts notice:\n%s", page)
	}
	enURL, _ := url.Parse(loc)
	q := enURL.Query()
	q.Set(web.LangParam, "en")
	enURL.RawQuery = q.Encode()
	_, _, pageEN := fresh.get(enURL.String())
	if !strings.Contains(pageEN, "has been revoked") {
		t.Errorf("English notice missing")
	}

	// Proving with the renewed signature certificate (same person, new
	// address) refreshes the facts; release works again.
	moved := factsTaroJP
	leaf, err := pki.sigCA.Issue(jpkisim.LeafOptions{Facts: &moved, Key: pki.key()})
	if err != nil {
		t.Fatal(err)
	}
	renewed := *w
	renewed.SigCert, renewed.SigKey = leaf.Cert, leaf.Key
	txu, _ := url.Parse(loc)
	if err := renewed.Approve(ctx, o.ts.Client(), fresh.walletURL(txu.Query().Get("tx")), "jws"); err != nil {
		t.Fatalf("re-proofing: %v", err)
	}
	consentLoc := fresh.finish(ar, txu.Query().Get("tx"))
	code, loc, _ = fresh.get(consentLoc)
	if code != http.StatusSeeOther || !strings.Contains(loc, callbackPath) {
		t.Fatalf("after re-proofing: %d %q", code, loc)
	}
	tok := o.tokens(conf, v, fresh.callback(loc))
	_, ui := o.userinfo(tok.AccessToken)
	if ui["name"] != "山田\u3000太郎" || ui["birthdate"] != "1980-12-31" {
		t.Fatalf("after re-proofing: %v", personalOf(ui))
	}
	a, _ = o.s.accounts.Get(ctx, acct)
	if a.FactsSource.Stale || a.FactsSource.Serial != leaf.Cert.SerialNumber.String() || a.Facts.Address != moved.Address {
		t.Fatalf("facts after re-proofing: %+v", a.FactsSource)
	}
}

// putAccountRecord stores an account as the sign-in layer would.
func putAccountRecord(t testing.TB, o *testOP, a *account.Account) {
	t.Helper()
	if err := o.s.accounts.Put(context.Background(), a); err != nil {
		t.Fatal(err)
	}
}

// A revocation check that cannot answer keeps the facts (unmarked and
// unchecked), and a record without certificates cannot be checked: the
// facts were verified once, and an outage must not lock residents out.
func TestRecheckFactsInconclusive(t *testing.T) {
	o := newConsentOP(t, store.NewMemory(), func(o *Options) {
		checker, err := pkibridge.NewChecker(nil, []string{"http://127.0.0.1:1/ocsp"}, nil, pkibridge.CheckerOptions{
			OCSP: pkibridge.OCSPOptions{NoCache: true, Timeout: time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		o.Verifier.Revocation = checker
	})
	ctx := context.Background()
	w := o.pki.wallet(t, factsTaro)
	old := time.Now().Add(-48 * time.Hour).UTC()
	a := &account.Account{ID: "acct-x", Facts: testFacts, FactsSource: &account.FactsSource{Link: "f", Serial: w.SigCert.SerialNumber.String(), VerifiedAt: old,
		CheckedAt: old, Recheck: &account.RevocationRef{RawIssuer: w.SigCert.RawIssuer, IssuerCert: o.pki.sigCA.Cert.Raw}}}
	putAccountRecord(t, o.testOP, a)
	got, err := o.s.accounts.RecheckFacts(ctx, a)
	if err != nil || got.FactsSource.Stale || !got.FactsSource.CheckedAt.Equal(old) {
		t.Fatalf("inconclusive check changed the facts: %+v %v", got.FactsSource, err)
	}
	b := &account.Account{ID: "acct-y", Facts: testFacts, FactsSource: &account.FactsSource{Link: "g", VerifiedAt: old}}
	putAccountRecord(t, o.testOP, b)
	if got, err := o.s.accounts.RecheckFacts(ctx, b); err != nil || got.FactsSource.Stale {
		t.Fatalf("record without certificates: %+v %v", got.FactsSource, err)
	}
	// Stale facts refuse release; the consent package's sentinel says why.
	b.FactsSource.Stale = true
	if err := b.ProofingNeeded([]string{"name"}, consent.Resolve([]string{"name"}, nil, consent.PolicyForScopes([]string{"name"}))); err == nil {
		t.Fatalf("stale facts releasable: %v", err)
	}
}
