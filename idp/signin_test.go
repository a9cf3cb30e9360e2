package idp

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/signin"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/templates"
)

// TestSigninProofingThenSignin is the whole resident journey on both
// stores: first visit proves identity (signature + authentication
// certificate in one submission), a later visit in another browser signs
// in with the authentication certificate alone, and the RP sees one
// pairwise sub and the verified facts.
func TestSigninProofingThenSignin(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		o := newSigninOP(t, newKV(t))
		w := o.pki.wallet(t, factsTaro)
		ctx := context.Background()

		first := o.browser().signIn(w, "web", authreq.PurposeProofing, walletsim.FormatJWS)
		if first.Query().Get("code") == "" || first.Query().Get("state") != "st-1" {
			t.Fatalf("proofing did not reach the RP with a code: %s", first.Redacted())
		}

		// The account: random ID, facts from the signature certificate,
		// both certificates linked.
		acctID, err := o.s.accounts.LinkedTo(ctx, w.AuthCert)
		if err != nil || acctID == "" {
			t.Fatalf("auth certificate not linked: %q %v", acctID, err)
		}
		if sigAcct, _ := o.s.accounts.LinkedTo(ctx, w.SigCert); sigAcct != acctID {
			t.Fatalf("signature certificate linked to %q, want %q", sigAcct, acctID)
		}
		a, err := o.s.accounts.Get(ctx, acctID)
		if err != nil {
			t.Fatal(err)
		}
		if a.Facts == nil || a.Facts.Name != "山田\u3000太郎" || a.Facts.Birthdate != "1980-12-31" {
			t.Fatalf("facts not taken from the certificate: %+v", a.Facts)
		}
		if a.FactsSource == nil || a.FactsSource.Serial != w.SigCert.SerialNumber.String() ||
			a.FactsSource.Link != certLink(t, o.s, w.SigCert) || a.FactsSource.Issuer != w.SigCert.Issuer.String() ||
			a.FactsSource.VerifiedAt.IsZero() || a.FactsSource.Revocation.Status != pkibridge.StatusGood {
			t.Fatalf("facts source: %+v", a.FactsSource)
		}
		if len(a.AuthCerts) != 1 || a.AuthCerts[0].Link != certLink(t, o.s, w.AuthCert) {
			t.Fatalf("auth certs: %+v", a.AuthCerts)
		}
		if strings.Contains(acctID, "山田") || len(acctID) != 22 {
			t.Fatalf("account ID %q is not a random 128-bit ID", acctID)
		}

		// Second visit, new browser: sign-in with the auth certificate.
		second := o.browser().signIn(w, "web", "", walletsim.FormatJWS)
		if second.Query().Get("code") == "" {
			t.Fatalf("sign-in did not reach the RP: %s", second.Redacted())
		}
		if n, err := o.s.accounts.Get(ctx, acctID); err != nil || n.ID != acctID {
			t.Fatalf("account gone: %v", err)
		}
	})
}

// TestSigninTokensCarryFacts checks the RP's view: the same pairwise sub
// after proofing and after sign-in, and the facts in userinfo.
func TestSigninTokensCarryFacts(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	w := o.pki.wallet(t, factsTaro)
	subs := map[string]bool{}
	for i, purpose := range []string{authreq.PurposeProofing, "signin"} {
		b := o.browser()
		conf := o.oauth("web", "name", "birthdate")
		v := oauth2.GenerateVerifier()
		ar := o.startAuth(conf, v)
		tx, _ := b.openTx(ar, purpose)
		if err := w.Approve(context.Background(), o.ts.Client(), b.walletURL(tx), []string{"jws", "cms"}[i]); err != nil {
			t.Fatalf("%s: %v", purpose, err)
		}
		b.finish(ar, tx)
		// The birth date is sensitive: unticked until the resident ticks
		// it. The second sign-in skips the screen (the grant is
		// remembered) and releases the same.
		_, loc := b.consentAll(ar)
		rp := b.callback(loc)
		tok, err := conf.Exchange(o.ctx(), rp.Query().Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatalf("%s: exchange: %v", purpose, err)
		}
		code, ui := o.userinfo(tok.AccessToken)
		if code != http.StatusOK {
			t.Fatalf("%s: userinfo %d %v", purpose, code, ui)
		}
		if ui["name"] != "山田\u3000太郎" || ui["birthdate"] != "1980-12-31" {
			t.Fatalf("%s: userinfo facts: %v", purpose, ui)
		}
		if _, ok := ui["address"]; ok {
			t.Fatalf("%s: address released without the scope", purpose)
		}
		subs[fmt.Sprint(ui["sub"])] = true
	}
	if len(subs) != 1 {
		t.Fatalf("sub changed between proofing and sign-in: %v", subs)
	}
}

// submitRaw posts a prepared submission to the transaction's URL and
// returns the status and error code.
func submitRaw(t testing.TB, o *signinOP, tx *walletsim.Transaction, body []byte, contentType string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, tx.URL, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := o.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]string
	_ = json.NewDecoder(res.Body).Decode(&m)
	if res.StatusCode == http.StatusOK {
		return res.StatusCode, m["status"]
	}
	return res.StatusCode, m["error"]
}

// TestWalletSubmissionOutcomes drives each refusal through the real
// endpoint and checks what the wallet hears and what the browser then
// sees: final refusals fail the transaction, request errors change
// nothing.
func TestWalletSubmissionOutcomes(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	enrolled := o.pki.wallet(t, factsTaro)
	o.browser().signIn(enrolled, "web", authreq.PurposeProofing, walletsim.FormatJWS)
	stranger := o.pki.wallet(t, factsHanako)
	rogue := o.pki.rogueWallet(t, factsHanako)
	revoked := o.pki.wallet(t, factsTaro)
	o.pki.authCA.Revoke(revoked.AuthCert.SerialNumber, time.Now().Add(-time.Minute), 1)
	ctx := context.Background()

	type submit func(t *testing.T, tx *walletsim.Transaction) error
	sign := func(w *walletsim.Wallet, format string, certs ...string) submit {
		return func(t *testing.T, tx *walletsim.Transaction) error {
			sigs, err := w.SignBytes(tx.Bytes, format, certs)
			if err != nil {
				t.Fatal(err)
			}
			return w.SubmitSignatures(ctx, o.ts.Client(), tx, walletsim.Submission{Signatures: sigs, ComparisonCode: tx.ComparisonCode, QRToken: tx.QRToken})
		}
	}
	auth, sig := walletsim.CertAuthentication, walletsim.CertSignature
	cases := []struct {
		name    string
		purpose string
		submit  submit
		status  int
		code    string
		state   string // browser's view afterwards
	}{
		{"signin jws", "signin", sign(enrolled, "jws", auth), 200, "", txVerified},
		{"signin cms", "signin", sign(enrolled, "cms", auth), 200, "", txVerified},
		{"signin raw", "signin", sign(enrolled, "raw", auth), 200, "", txVerified},
		{"other bytes", "signin", func(t *testing.T, tx *walletsim.Transaction) error {
			other := append([]byte(nil), tx.Bytes...)
			other = []byte(strings.Replace(string(other), tx.ID, "another-transaction", 1))
			sigs, err := enrolled.SignBytes(other, "jws", []string{auth})
			if err != nil {
				t.Fatal(err)
			}
			return enrolled.SubmitSignatures(ctx, o.ts.Client(), tx, walletsim.Submission{Signatures: sigs, ComparisonCode: tx.ComparisonCode, QRToken: tx.QRToken})
		}, 400, "bad_signature", txFailed},
		{"not enrolled", "signin", sign(stranger, "jws", auth), 400, codeNotEnrolled, txFailed},
		{"signature cert for sign-in", "signin", sign(enrolled, "jws", sig), 400, codeWrongCertificate, txFailed},
		{"untrusted", "signin", sign(rogue, "jws", auth), 400, "untrusted", txFailed},
		{"revoked", "signin", sign(revoked, "raw", auth), 400, "revoked", txFailed},
		{"proofing with two auth certs", authreq.PurposeProofing, func(t *testing.T, tx *walletsim.Transaction) error {
			a, _ := stranger.SignBytes(tx.Bytes, "jws", []string{auth})
			b, _ := enrolled.SignBytes(tx.Bytes, "jws", []string{auth})
			return stranger.SubmitSignatures(ctx, o.ts.Client(), tx, walletsim.Submission{Signatures: append(a, b...), ComparisonCode: tx.ComparisonCode, QRToken: tx.QRToken})
		}, 400, codeWrongCertificate, txFailed},
		{"proofing with one signature", authreq.PurposeProofing, sign(stranger, "jws", sig), 400, codeInvalidRequest, txPending},
		{"sign-in with two signatures", "signin", sign(enrolled, "jws", auth, auth), 400, codeInvalidRequest, txPending},
		{"wrong comparison code", "signin", func(t *testing.T, tx *walletsim.Transaction) error {
			sigs, _ := enrolled.SignBytes(tx.Bytes, "jws", []string{auth})
			wrong := "00-00"
			if strings.ReplaceAll(tx.ComparisonCode, "-", "") == "0000" {
				wrong = "11-11"
			}
			return enrolled.SubmitSignatures(ctx, o.ts.Client(), tx, walletsim.Submission{Signatures: sigs, ComparisonCode: wrong, QRToken: tx.QRToken})
		}, 400, codeComparison, txPending},
		{"forged qr token", "signin", func(t *testing.T, tx *walletsim.Transaction) error {
			sigs, _ := enrolled.SignBytes(tx.Bytes, "jws", []string{auth})
			w, _, _ := strings.Cut(tx.QRToken, ".")
			return enrolled.SubmitSignatures(ctx, o.ts.Client(), tx, walletsim.Submission{Signatures: sigs, ComparisonCode: tx.ComparisonCode, QRToken: w + ".AAAAAAAAAAAAAAAAAAAAAA"})
		}, 400, codeInvalidQRToken, txPending},
		{"proofing cms creates account", authreq.PurposeProofing, sign(stranger, "cms", sig, auth), 200, "", txVerified},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := o.browser()
			ar := o.authorize("web")
			txID, _ := b.openTx(ar, c.purpose)
			tx, err := walletsim.Fetch(ctx, o.ts.Client(), b.walletURL(txID))
			if err != nil {
				t.Fatal(err)
			}
			err = c.submit(t, tx)
			var we *walletsim.Error
			switch {
			case c.code == "" && err != nil:
				t.Fatalf("want success, got %v", err)
			case c.code != "" && (!errors.As(err, &we) || we.Code != c.code || we.Status != c.status):
				t.Fatalf("want %d %s, got %v", c.status, c.code, err)
			}
			code, st := b.status(txID)
			if code != http.StatusOK || st.State != c.state {
				t.Fatalf("browser sees %d %+v, want state %s", code, st, c.state)
			}
			if c.state == txFailed && st.Reason != c.code {
				t.Fatalf("browser reason %q, want %q", st.Reason, c.code)
			}
			// A refused transaction cannot be answered again, a pending
			// one still can.
			if c.state == txFailed {
				if err := enrolled.Submit(ctx, o.ts.Client(), tx, "jws"); walletsim.ErrorCode(err) != codeAlreadyUsed {
					t.Fatalf("second submission after a final refusal: %v", err)
				}
			}
		})
	}
}

// TestTransactionOneTimeAndExpiry: a verified transaction refuses a
// second submission; an expired one refuses fetch and submission and
// the browser sees "expired".
func TestTransactionOneTimeAndExpiry(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	w := o.pki.wallet(t, factsTaro)
	ctx := context.Background()
	b := o.browser()
	tx1, _ := b.openTx(o.authorize("web"), authreq.PurposeProofing)
	u := b.walletURL(tx1)
	tx, err := walletsim.Fetch(ctx, o.ts.Client(), u)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Submit(ctx, o.ts.Client(), tx, "jws"); err != nil {
		t.Fatal(err)
	}
	if err := w.Submit(ctx, o.ts.Client(), tx, "jws"); walletsim.ErrorCode(err) != codeAlreadyUsed {
		t.Fatalf("replayed submission: %v", err)
	}
	if _, err := walletsim.Fetch(ctx, o.ts.Client(), u); walletsim.ErrorCode(err) != codeAlreadyUsed {
		t.Fatalf("fetch of a used transaction: %v", err)
	}

	tx2, _ := b.openTx(o.authorize("web"), "signin")
	u2 := b.walletURL(tx2)
	fetched, err := walletsim.Fetch(ctx, o.ts.Client(), u2)
	if err != nil {
		t.Fatal(err)
	}
	o.clock.Advance(o.s.opts.TransactionTTL + time.Second)
	sigs, _ := w.SignBytes(fetched.Bytes, "jws", fetched.Certificates)
	err = w.SubmitSignatures(ctx, o.ts.Client(), fetched, walletsim.Submission{Signatures: sigs, ComparisonCode: fetched.ComparisonCode, QRToken: fetched.QRToken})
	if walletsim.ErrorCode(err) != codeExpiredTransaction {
		t.Fatalf("late submission: %v", err)
	}
	if _, err := walletsim.Fetch(ctx, o.ts.Client(), u2); walletsim.ErrorCode(err) != codeExpiredTransaction {
		t.Fatalf("late fetch: %v", err)
	}
	if _, st := b.status(tx2); st.State != txExpired || st.Reason != codeExpiredTransaction {
		t.Fatalf("browser: %+v", st)
	}
}

// TestQRTokenRotation: the wallet's fetch needs the token of the current
// or previous 20 s window; the submission accepts the scanned token later.
func TestQRTokenRotation(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	w := o.pki.wallet(t, factsTaro)
	ctx := context.Background()
	b := o.browser()
	txID, _ := b.openTx(o.authorize("web"), authreq.PurposeProofing)
	scanned := b.walletURL(txID)

	o.clock.Advance(qrWindow) // one window later: still accepted
	tx, err := walletsim.Fetch(ctx, o.ts.Client(), scanned)
	if err != nil {
		t.Fatalf("previous-window token refused: %v", err)
	}
	o.clock.Advance(2 * qrWindow) // a relayed screenshot, 60 s old
	if _, err := walletsim.Fetch(ctx, o.ts.Client(), scanned); walletsim.ErrorCode(err) != codeExpiredQRToken {
		t.Fatalf("stale token: %v", err)
	}
	if fresh := b.walletURL(txID); fresh == scanned {
		t.Fatal("the QR code did not rotate")
	}
	// The wallet that scanned in time may still submit (a slow PIN).
	if err := w.Submit(ctx, o.ts.Client(), tx, "jws"); err != nil {
		t.Fatalf("submission with the scanned token: %v", err)
	}
}

// TestForeignBrowser: a transaction or auth request ID never lets
// another browser look at or finish a sign-in.
func TestForeignBrowser(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	w := o.pki.wallet(t, factsTaro)
	owner, thief := o.browser(), o.browser()
	ar := o.authorize("web")
	txID, _ := owner.openTx(ar, authreq.PurposeProofing)
	if err := w.Approve(context.Background(), o.ts.Client(), owner.walletURL(txID), "jws"); err != nil {
		t.Fatal(err)
	}
	base := "/login/tx/" + txID
	for _, p := range []string{base + "/status", base + "/events", base + "/qr.png"} {
		if code, _, _ := thief.get(p); code != http.StatusForbidden {
			t.Errorf("GET %s from another browser: %d, want 403", p, code)
		}
	}
	if code, _, _ := thief.get(authreq.LoginURL(ar)); code != http.StatusForbidden {
		t.Errorf("login page of a request bound to another browser: %d", code)
	}
	if code, _, _ := thief.get(authreq.LoginURL(ar, "tx", txID)); code != http.StatusForbidden {
		t.Errorf("transaction page from another browser: %d", code)
	}
	// Finish with the owner's CSRF token but the thief's cookies: refused.
	_, _, vpage := owner.get(authreq.LoginURL(ar, "tx", txID))
	if code, _, _ := thief.post(base+"/finish", url.Values{web.CSRFField: {csrfFrom(t, vpage)}}); code != http.StatusForbidden {
		t.Errorf("finish from another browser: %d", code)
	}
	// The thief's own valid CSRF token (from a login it started itself)
	// passes the CSRF check, so only the transaction's browser binding can
	// refuse this.
	ar2 := o.authorize("web")
	thiefTx, _ := thief.openTx(ar2, authreq.PurposeProofing)
	_, _, tpage := thief.get(authreq.LoginURL(ar2, "tx", thiefTx))
	if code, body, _ := thief.post(base+"/finish", url.Values{web.CSRFField: {csrfFrom(t, tpage)}}); code != http.StatusForbidden {
		t.Errorf("finish of another browser's transaction with the thief's own CSRF token: %d %s", code, body)
	}
	if code, _, _ := thief.get(authreq.ConsentURL(ar)); code != http.StatusForbidden {
		t.Errorf("consent from another browser: %d", code)
	}
	// The owner still finishes.
	owner.finish(ar, txID)
}

// TestConcurrentSubmissions: two valid answers to one transaction race;
// exactly one wins and one account exists.
func TestConcurrentSubmissions(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		o := newSigninOP(t, newKV(t))
		w := o.pki.wallet(t, factsTaro)
		ctx := context.Background()
		b := o.browser()
		txID, _ := b.openTx(o.authorize("web"), authreq.PurposeProofing)
		tx, err := walletsim.Fetch(ctx, o.ts.Client(), b.walletURL(txID))
		if err != nil {
			t.Fatal(err)
		}
		var subs [2]walletsim.Submission
		for i := range subs {
			sigs, err := w.SignBytes(tx.Bytes, []string{"jws", "cms"}[i], tx.Certificates)
			if err != nil {
				t.Fatal(err)
			}
			subs[i] = walletsim.Submission{Signatures: sigs, ComparisonCode: tx.ComparisonCode, QRToken: tx.QRToken}
		}
		var wg sync.WaitGroup
		errs := make([]error, len(subs))
		for i := range subs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = w.SubmitSignatures(ctx, o.ts.Client(), tx, subs[i])
			}()
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case walletsim.ErrorCode(err) != codeAlreadyUsed:
				t.Fatalf("loser got %v, want already_used", err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d submissions won, want exactly 1 (%v)", wins, errs)
		}
		if _, st := b.status(txID); st.State != txVerified {
			t.Fatalf("state %+v", st)
		}
	})
}

// TestConcurrentProofingOneAccount: two transactions proving the same
// certificates at once still make one account (the link is SetNX).
func TestConcurrentProofingOneAccount(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	w := o.pki.wallet(t, factsTaro)
	ctx := context.Background()
	var txs [3]*walletsim.Transaction
	for i := range txs {
		b := o.browser()
		id, _ := b.openTx(o.authorize("web"), authreq.PurposeProofing)
		var err error
		if txs[i], err = walletsim.Fetch(ctx, o.ts.Client(), b.walletURL(id)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(txs))
	for i, tx := range txs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.Submit(ctx, o.ts.Client(), tx, "jws")
		}()
	}
	wg.Wait()
	accounts := map[string]bool{}
	for i, tx := range txs {
		if errs[i] != nil {
			t.Fatalf("proofing %d: %v", i, errs[i])
		}
		st := storedTx(t, o.testOP, tx.ID)
		accounts[st.Result.AccountID] = true
	}
	if len(accounts) != 1 {
		t.Fatalf("one certificate, %d accounts", len(accounts))
	}
}

// TestRenewalRelink: while signed in, a proofing with renewed
// certificates of the same person links them to the same account (new
// address taken over); another person's certificates are refused; without
// a session a renewed card starts a new account.
func TestRenewalRelink(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	ctx := context.Background()
	old := o.pki.wallet(t, factsTaro)
	b := o.browser()
	b.signIn(old, "web", authreq.PurposeProofing, "jws")
	acct, _ := o.s.accounts.LinkedTo(ctx, old.AuthCert)

	renewed := o.pki.wallet(t, factsTaroJP)
	ar := o.authorize("web")
	txID, page := b.openTx(ar, authreq.PurposeProofing)
	if !strings.Contains(page, "本人確認") || !strings.Contains(page, "purpose=signin") {
		t.Fatalf("not a proofing page:\n%s", page)
	}
	if err := renewed.Approve(ctx, o.ts.Client(), b.walletURL(txID), "raw"); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	if got, _ := o.s.accounts.LinkedTo(ctx, renewed.AuthCert); got != acct {
		t.Fatalf("renewed auth cert linked to %q, want %q", got, acct)
	}
	a, _ := o.s.accounts.Get(ctx, acct)
	if len(a.AuthCerts) != 2 || a.Facts.Address != factsTaroJP.Address || a.FactsSource.Link != certLink(t, o.s, renewed.SigCert) {
		t.Fatalf("account after renewal: %+v %+v", a.AuthCerts, a.FactsSource)
	}

	// Another person's certificates while signed in as Taro.
	other := o.pki.wallet(t, factsHanako)
	txID, _ = b.openTx(o.authorize("web"), authreq.PurposeProofing)
	if err := other.Approve(ctx, o.ts.Client(), b.walletURL(txID), "jws"); walletsim.ErrorCode(err) != codeIdentityMismatch {
		t.Fatalf("other person's renewal: %v", err)
	}
	if got, _ := o.s.accounts.LinkedTo(ctx, other.AuthCert); got != "" {
		t.Fatalf("refused certificate was linked to %q", got)
	}

	// A new signature certificate with an already linked auth
	// certificate (address change reissues only the signature cert).
	moved := *renewed
	fresh := o.pki.wallet(t, factsTaro)
	moved.SigKey, moved.SigCert = fresh.SigKey, fresh.SigCert
	b2 := o.browser()
	txID, _ = b2.openTx(o.authorize("web"), authreq.PurposeProofing)
	if err := moved.Approve(ctx, o.ts.Client(), b2.walletURL(txID), "jws"); err != nil {
		t.Fatalf("new signature cert with linked auth cert: %v", err)
	}
	if got, _ := o.s.accounts.LinkedTo(ctx, fresh.SigCert); got != acct {
		t.Fatalf("new signature cert linked to %q, want %q", got, acct)
	}
	// Certificates of one account mixed with another's: refused.
	mixed := *other
	mixed.AuthKey, mixed.AuthCert = renewed.AuthKey, renewed.AuthCert
	b3 := o.browser()
	txID, _ = b3.openTx(o.authorize("web"), authreq.PurposeProofing)
	err := mixed.Approve(ctx, o.ts.Client(), b3.walletURL(txID), "jws")
	if c := walletsim.ErrorCode(err); c != codeIdentityMismatch && c != codeAccountConflict {
		t.Fatalf("mixed certificates: %v", err)
	}

	// No session: a brand-new card of the same person is a new account
	// (accounts are never matched by name and birth date).
	newCard := o.pki.wallet(t, factsTaro)
	b4 := o.browser()
	b4.signIn(newCard, "web", authreq.PurposeProofing, "jws")
	if got, _ := o.s.accounts.LinkedTo(ctx, newCard.AuthCert); got == acct || got == "" {
		t.Fatalf("sessionless proofing joined account %q", got)
	}
}

// TestPromptAndSession covers the SSO decisions of /login.
func TestPromptAndSession(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	w := o.pki.wallet(t, factsTaro)

	// prompt=none without a session: login_required at the RP.
	anon := o.browser()
	ar := o.authorize("web", oauth2.SetAuthURLParam("prompt", "none"))
	code, loc, _ := anon.get(authreq.LoginURL(ar))
	u, _ := url.Parse(loc)
	if code != http.StatusFound || u.Query().Get("error") != "login_required" || u.Query().Get("state") != "st-1" ||
		!strings.HasPrefix(loc, "https://rp.example/cb") {
		t.Fatalf("prompt=none without session: %d %q", code, loc)
	}

	b := o.browser()
	b.signIn(w, "web", authreq.PurposeProofing, "jws")

	// With a session: straight to consent, which was given: a code.
	ar = o.authorize("web", oauth2.SetAuthURLParam("prompt", "none"))
	code, loc, _ = b.get(authreq.LoginURL(ar))
	if code != http.StatusSeeOther || loc != authreq.ConsentURL(ar) {
		t.Fatalf("prompt=none with session: %d %q", code, loc)
	}
	_, cb := b.consent(ar, "allow")
	if rp := b.callback(cb); rp.Query().Get("code") == "" {
		t.Fatalf("prompt=none did not yield a code: %s", rp.Redacted())
	}

	// Another client without consent, prompt=none: consent_required.
	ar = o.startAuth(o.oauth("other", "name"), oauth2.GenerateVerifier(), oauth2.SetAuthURLParam("prompt", "none"))
	_, loc, _ = b.get(authreq.LoginURL(ar))
	_, loc, _ = b.get(loc)
	if u, _ := url.Parse(loc); u.Query().Get("error") != "consent_required" {
		t.Fatalf("prompt=none without consent: %q", loc)
	}

	// Session rules that force a new sign-in.
	for _, c := range []struct {
		name  string
		param []oauth2.AuthCodeOption
		skip  bool
	}{
		{"plain", nil, true},
		{"prompt=login", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "login")}, false},
		{"max_age=0", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("max_age", "0")}, false},
		{"max_age=3600", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("max_age", "3600")}, true},
		{"acr aal3", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("acr_values", "aal3")}, true},
		{"unknown acr", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("acr_values", "urn:example:gold")}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			o.clock.Advance(2 * time.Second) // auth_time is in the past
			ar := o.authorize("web", c.param...)
			code, loc, _ := b.get(authreq.LoginURL(ar))
			skipped := code == http.StatusSeeOther && loc == authreq.ConsentURL(ar)
			if skipped != c.skip {
				t.Fatalf("skip=%v, want %v (%d %q)", skipped, c.skip, code, loc)
			}
		})
	}

	// prompt=login: after the fresh sign-in, consent accepts the new
	// session although max_age is 0.
	ar = o.authorize("web", oauth2.SetAuthURLParam("prompt", "login"))
	txID, _ := b.openTx(ar, "")
	if err := w.Approve(context.Background(), o.ts.Client(), b.walletURL(txID), "jws"); err != nil {
		t.Fatal(err)
	}
	b.finish(ar, txID)
	_, cb = b.consent(ar, "allow")
	if rp := b.callback(cb); rp.Query().Get("code") == "" {
		t.Fatal("prompt=login sign-in did not complete")
	}
}

func TestConsentDenyAndLogout(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	w := o.pki.wallet(t, factsTaro)
	b := o.browser()
	ar := o.authorize("web")
	txID, _ := b.openTx(ar, authreq.PurposeProofing)
	if err := w.Approve(context.Background(), o.ts.Client(), b.walletURL(txID), "jws"); err != nil {
		t.Fatal(err)
	}
	b.finish(ar, txID)
	// A consent POST without the CSRF token is refused.
	if code, _, _ := b.post(authreq.ConsentURL(ar), url.Values{"action": {"allow"}}); code != http.StatusForbidden {
		t.Fatalf("consent without CSRF: %d", code)
	}
	code, loc := b.consent(ar, "deny")
	u, _ := url.Parse(loc)
	if code != http.StatusFound || u.Query().Get("error") != "access_denied" || u.Query().Get("state") != "st-1" {
		t.Fatalf("deny: %d %q", code, loc)
	}

	// Signed in (the session exists): a new request skips the login page.
	ar = o.authorize("web")
	if code, loc, _ := b.get(authreq.LoginURL(ar)); code != http.StatusSeeOther || loc != authreq.ConsentURL(ar) {
		t.Fatalf("SSO: %d %q", code, loc)
	}
	// Logout with a forged value: the resident is asked, and the session
	// lives until they answer.
	code, loc, page := b.get("/logout?logout=" + url.QueryEscape("forged.value"))
	if code != http.StatusOK || loc != "" || !strings.Contains(page, `id="logout-confirm"`) {
		t.Fatalf("logout with a forged value: %d %q", code, loc)
	}
	if code, loc, _ := b.get(authreq.LoginURL(o.authorize("web"))); code != http.StatusSeeOther || strings.Contains(loc, "tx=") {
		t.Fatalf("the question ended the session: %d %q", code, loc)
	}
	// Confirmed with the page's CSRF token: signed out, our page (no
	// destination was signed).
	code, loc, page = b.post("/logout", url.Values{web.CSRFField: {csrfFrom(t, page)}})
	if code != http.StatusOK || loc != "" || !strings.Contains(page, "サインアウトしました") {
		t.Fatalf("confirmed logout: %d %q", code, loc)
	}
	if code, loc, _ := b.get(authreq.LoginURL(ar)); code != http.StatusSeeOther || !strings.Contains(loc, "tx=") {
		t.Fatalf("after logout the session still answers: %d %q", code, loc)
	}
	// Without a session there is nothing to ask: a signed destination is
	// followed at once.
	signed := o.s.sessions.SignLogout(httptest.NewRequest(http.MethodGet, "/", nil), session.Logout{Dest: "https://rp.example/bye?state=s9"})
	if code, loc, _ := b.get("/logout?logout=" + url.QueryEscape(signed)); code != http.StatusSeeOther || loc != "https://rp.example/bye?state=s9" {
		t.Fatalf("logout with a signed destination: %d %q", code, loc)
	}
}

// TestFinishRules: finishing needs CSRF, a verified transaction, and
// happens once.
func TestFinishRules(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	w := o.pki.wallet(t, factsTaro)
	b := o.browser()
	ar := o.authorize("web")
	txID, page := b.openTx(ar, authreq.PurposeProofing)
	tok := csrfFrom(t, page)
	if code, _, _ := b.post("/login/tx/"+txID+"/finish", url.Values{web.CSRFField: {tok}}); code != http.StatusConflict {
		t.Fatalf("finish before verification: %d", code)
	}
	if err := w.Approve(context.Background(), o.ts.Client(), b.walletURL(txID), "jws"); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := b.post("/login/tx/"+txID+"/finish", url.Values{web.CSRFField: {"forged"}}); code != http.StatusForbidden {
		t.Fatalf("finish with a forged CSRF token: %d", code)
	}
	b.finish(ar, txID)
	// A second finish (double click) goes to consent without a second
	// session.
	if code, loc, _ := b.post("/login/tx/"+txID+"/finish", url.Values{web.CSRFField: {tok}}); code != http.StatusSeeOther || loc != authreq.ConsentURL(ar) {
		t.Fatalf("second finish: %d %q", code, loc)
	}
	if code, _, _ := b.post("/login/tx/nope/finish", url.Values{web.CSRFField: {tok}}); code != http.StatusNotFound {
		t.Fatalf("finish of unknown transaction: %d", code)
	}
}

// TestEventsStream reads the SSE stream while the wallet answers.
func TestEventsStream(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		o := newSigninOP(t, newKV(t))
		w := o.pki.wallet(t, factsTaro)
		b := o.browser()
		ar := o.authorize("web")
		txID, _ := b.openTx(ar, authreq.PurposeProofing)
		req, _ := http.NewRequest(http.MethodGet, o.issuer+"/login/tx/"+txID+"/events", nil)
		res, err := b.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK || ct != "text/event-stream" {
			t.Fatalf("events: %d %s", res.StatusCode, ct)
		}
		sc := bufio.NewScanner(res.Body)
		next := func() txEvent {
			for sc.Scan() {
				if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
					var ev txEvent
					if err := json.Unmarshal([]byte(data), &ev); err != nil {
						t.Fatal(err)
					}
					return ev
				}
			}
			t.Fatalf("stream ended: %v", sc.Err())
			return txEvent{}
		}
		if ev := next(); ev.State != txPending {
			t.Fatalf("first event %+v", ev)
		}
		if err := w.Approve(context.Background(), o.ts.Client(), b.walletURL(txID), "jws"); err != nil {
			t.Fatal(err)
		}
		// processing, then verified (processing reads as pending).
		for {
			ev := next()
			if ev.State == txPending {
				continue
			}
			if ev.State != txVerified {
				t.Fatalf("event %+v", ev)
			}
			break
		}
	})
}

// TestWalletEndpointNegatives: malformed requests are refused with the
// documented codes and change nothing.
func TestWalletEndpointNegatives(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	w := o.pki.wallet(t, factsTaro)
	ctx := context.Background()
	b := o.browser()
	// open returns a fresh proofing transaction (one per case: the
	// per-transaction rate limit would stop a long series on one).
	open := func() (string, *walletsim.Transaction) {
		txID, _ := b.openTx(o.authorize("web"), authreq.PurposeProofing)
		tx, err := walletsim.Fetch(ctx, o.ts.Client(), b.walletURL(txID))
		if err != nil {
			t.Fatal(err)
		}
		return txID, tx
	}
	_, tx := open()
	good, _ := w.SignBytes(tx.Bytes, "jws", tx.Certificates)
	body := func(m map[string]any) []byte {
		base := map[string]any{"signatures": good, "comparison_code": tx.ComparisonCode, "qr_token": tx.QRToken}
		for k, v := range m {
			if v == nil {
				delete(base, k)
			} else {
				base[k] = v
			}
		}
		b, _ := json.Marshal(base)
		return b
	}
	sig := func(fields map[string]string) []map[string]string { return []map[string]string{fields} }
	cases := []struct {
		name   string
		body   []byte
		ctype  string
		url    string
		status int
		code   string
	}{
		{"not JSON", []byte("{not json"), "application/json", "", 400, codeInvalidRequest},
		{"trailing data", append(body(nil), []byte(" {}")...), "application/json", "", 400, codeInvalidRequest},
		{"wrong content type", body(nil), "text/plain", "", 415, codeInvalidRequest},
		{"oversized", []byte(`{"signatures":[{"format":"jws","jws":"` + strings.Repeat("A", maxSubmissionBytes) + `"}]}`), "application/json", "", 413, codeRequestTooLarge},
		{"unknown transaction", body(nil), "application/json", o.issuer + signin.WalletTxPath + "AAAAAAAAAAAAAAAAAAAAAA", 404, codeUnknownTransaction},
		{"no signatures", body(map[string]any{"signatures": []any{}}), "application/json", "", 400, codeInvalidRequest},
		{"three signatures", body(map[string]any{"signatures": append(append([]walletsim.Signature{}, good...), good[0])}), "application/json", "", 400, codeInvalidRequest},
		{"unknown format", body(map[string]any{"signatures": sig(map[string]string{"format": "xml", "jws": "a"})}), "application/json", "", 400, codeInvalidRequest},
		{"missing format", body(map[string]any{"signatures": sig(map[string]string{"jws": "a"})}), "application/json", "", 400, codeInvalidRequest},
		{"bad base64 cms", body(map[string]any{"signatures": sig(map[string]string{"format": "cms", "cms_b64": "!!!"})}), "application/json", "", 400, codeInvalidRequest},
		{"bad base64 raw sig", body(map[string]any{"signatures": sig(map[string]string{"format": "raw", "sig_b64": "%%", "cert_b64": "AAAA"})}), "application/json", "", 400, codeInvalidRequest},
		{"raw cert not DER", body(map[string]any{"signatures": sig(map[string]string{"format": "raw", "sig_b64": "AAAA", "cert_b64": "AAAA"})}), "application/json", "", 400, "malformed"},
		{"raw unknown hash", body(map[string]any{"signatures": sig(map[string]string{"format": "raw", "sig_b64": "AAAA", "cert_b64": base64.StdEncoding.EncodeToString(w.AuthCert.Raw), "hash": "MD5"})}), "application/json", "", 400, codeInvalidRequest},
		{"field of another format", body(map[string]any{"signatures": sig(map[string]string{"format": "jws", "jws": "a", "cms_b64": "AAAA"})}), "application/json", "", 400, codeInvalidRequest},
		{"missing qr_token", body(map[string]any{"qr_token": nil}), "application/json", "", 400, codeInvalidQRToken},
		{"missing comparison code", body(map[string]any{"comparison_code": nil}), "application/json", "", 400, codeInvalidRequest},
		{"garbled jws", body(map[string]any{"signatures": []map[string]string{{"format": "jws", "jws": "a.b.c"}, {"format": "jws", "jws": "x.y.z"}}}), "application/json", "", 400, "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			txID, fresh := open()
			// The bodies were built for tx; rebuild the parts bound to it.
			bodyFor := []byte(strings.NewReplacer(tx.QRToken, fresh.QRToken, tx.ComparisonCode, fresh.ComparisonCode).Replace(string(c.body)))
			target := *fresh
			if c.url != "" {
				target.URL = c.url
			}
			status, code := submitRaw(t, o, &target, bodyFor, c.ctype)
			if status != c.status || code != c.code {
				t.Fatalf("got %d %q, want %d %q", status, code, c.status, c.code)
			}
			// Refused requests change nothing.
			if _, st := b.status(txID); st.State != txPending {
				t.Fatalf("transaction left %+v", st)
			}
		})
	}
	// The transaction that served as template still succeeds.
	if err := w.Submit(ctx, o.ts.Client(), tx, "jws"); err != nil {
		t.Fatalf("transaction damaged: %v", err)
	}

	// Per-transaction submission limit: it counts submissions that reach
	// the verifier (well formed, this transaction's QR token and
	// comparison code), here garbled signatures, which leave the
	// transaction pending.
	_, limited := open()
	garbled := []byte(`{"signatures":[{"format":"jws","jws":"a.b.c"},{"format":"jws","jws":"x.y.z"}],` +
		`"comparison_code":"` + limited.ComparisonCode + `","qr_token":"` + limited.QRToken + `"}`)
	for i := range walletSubmitPerTx {
		if status, code := submitRaw(t, o, limited, garbled, "application/json"); status != 400 || code != "malformed" {
			t.Fatalf("submission %d: %d %s", i, status, code)
		}
	}
	if status, code := submitRaw(t, o, limited, garbled, "application/json"); status != http.StatusTooManyRequests || code != codeRateLimited {
		t.Fatalf("submission over the limit: %d %s", status, code)
	}

	// GET negatives.
	for _, c := range []struct {
		name   string
		url    string
		status int
		code   string
	}{
		{"unknown transaction", o.issuer + signin.WalletTxPath + "nope?qr_token=1.AAAA", 404, codeUnknownTransaction},
		{"no token", tx.URL, 400, codeInvalidQRToken},
		{"garbage token", tx.URL + "?qr_token=zzz", 400, codeInvalidQRToken},
	} {
		t.Run("GET "+c.name, func(t *testing.T) {
			txID2, _ := b.openTx(o.authorize("web"), "signin")
			u := strings.Replace(c.url, tx.ID, txID2, 1)
			res, err := o.ts.Client().Get(u)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]string
			_ = json.NewDecoder(res.Body).Decode(&m)
			res.Body.Close()
			if res.StatusCode != c.status || m["error"] != c.code {
				t.Fatalf("got %d %v, want %d %s", res.StatusCode, m, c.status, c.code)
			}
			if res.Header.Get("Set-Cookie") != "" {
				t.Fatal("wallet endpoint set a cookie")
			}
		})
	}
}

// TestStrangerCannotUseUpSubmissions: whoever holds a transaction's URL
// can post to it, but posts that never reach the verifier (not JSON, a
// stale or foreign QR token, a wrong comparison code, the wrong number of
// signatures) must not use up the transaction's submission limit, or a
// stranger could make the resident's own valid signature get 429.
func TestStrangerCannotUseUpSubmissions(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	resident := o.pki.wallet(t, factsTaro)
	ctx := context.Background()
	b := o.browser()
	txID, _ := b.openTx(o.authorize("web"), authreq.PurposeProofing)
	tx, err := walletsim.Fetch(ctx, o.ts.Client(), b.walletURL(txID))
	if err != nil {
		t.Fatal(err)
	}
	jws := `[{"format":"jws","jws":"a.b.c"},{"format":"jws","jws":"x.y.z"}]`
	bogus := []string{
		`{not json`,
		`{"signatures":` + jws + `,"comparison_code":"` + tx.ComparisonCode + `","qr_token":"1.AAAA"}`,
		`{"signatures":` + jws + `,"comparison_code":"00-00","qr_token":"` + tx.QRToken + `"}`,
		`{"signatures":[{"format":"jws","jws":"a.b.c"}],"comparison_code":"` + tx.ComparisonCode + `","qr_token":"` + tx.QRToken + `"}`,
		`{"signatures":[],"comparison_code":"1","qr_token":"1.x"}`,
		`{"signatures":[{"format":"cms","cms_b64":"!!"}],"comparison_code":"1","qr_token":"1.x"}`,
	}
	if tx.ComparisonCode == "00-00" {
		bogus[2] = strings.Replace(bogus[2], "00-00", "11-11", 1)
	}
	for i := range walletSubmitPerTx + 2 {
		body := bogus[i%len(bogus)]
		if status, code := submitRaw(t, o, tx, []byte(body), "application/json"); status == http.StatusOK || status == http.StatusTooManyRequests {
			t.Fatalf("bogus post %d (%s): %d %s", i, body, status, code)
		}
	}
	if _, st := b.status(txID); st.State != txPending {
		t.Fatalf("the stranger's posts changed the transaction: %+v", st)
	}
	if err := resident.Submit(ctx, o.ts.Client(), tx, walletsim.FormatJWS); err != nil {
		t.Fatalf("the resident's signature after %d bogus posts: %v", walletSubmitPerTx+2, err)
	}
	if _, st := b.status(txID); st.State != "verified" {
		t.Fatalf("state after the resident's signature: %+v", st)
	}
}

// TestWalletTransactionDocument pins the GET answer's shape (the wallet
// protocol) and the bytes to sign.
func TestWalletTransactionDocument(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	b := o.browser()
	txID, _ := b.openTx(o.authorize("web"), authreq.PurposeProofing)
	res, err := o.ts.Client().Get(b.walletURL(txID))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(res.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"certificates", "comparison_code", "expires_at", "issuer", "purpose", "requested_claims", "return_url", "rp", "sign", "transaction"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	if doc["return_url"] != o.issuer+"/login/tx/"+txID+"/return" {
		t.Fatalf("return_url %v", doc["return_url"])
	}
	rp := doc["rp"].(map[string]any)
	if rp["client_id"] != "web" || rp["display_name"] != "Web RP" || rp["whitelisted"] != true {
		t.Fatalf("rp %v", rp)
	}
	sign := doc["sign"].(map[string]any)
	raw, err := base64.StdEncoding.DecodeString(sign["bytes_b64"].(string))
	if err != nil {
		t.Fatal(err)
	}
	stored := storedTx(t, o.testOP, txID)
	wantBytes := fmt.Sprintf(`{"aud":%q,"client_id":"web","exp":%d,"iss":%q,"nonce":%q,"purpose":"proofing","rp":"Web RP","txn":%q,"typ":"watashi-signin+v1"}`,
		o.issuer, stored.ExpiresAt.Unix(), o.issuer, stored.Nonce, txID)
	if string(raw) != wantBytes {
		t.Fatalf("bytes to sign:\n%s\nwant\n%s", raw, wantBytes)
	}
	if fmt.Sprint(doc["certificates"]) != "[signature authentication]" || doc["comparison_code"] != stored.Code {
		t.Fatalf("doc %v", doc)
	}
}

// TestLoginPageLanguageAndA11y renders the login page in both languages.
func TestLoginPageLanguageAndA11y(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	for _, c := range []struct {
		name    string
		opts    []oauth2.AuthCodeOption
		accept  string
		lang    string
		snippet string
	}{
		{"default Japanese", nil, "", "ja", "確認コード"},
		{"Accept-Language en", nil, "en-US,en;q=0.9", "en", "Confirmation code"},
		{"ui_locales wins", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("ui_locales", "en")}, "ja", "en", "Confirmation code"},
		{"unsupported falls back", nil, "fr", "ja", "確認コード"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := o.browser()
			ar := o.authorize("web", c.opts...)
			_, loc, _ := b.get(authreq.LoginURL(ar), "Accept-Language", c.accept)
			code, _, page := b.get(loc, "Accept-Language", c.accept)
			if code != http.StatusOK {
				t.Fatalf("%d", code)
			}
			for _, want := range []string{`<html lang="` + c.lang + `">`, c.snippet, `alt="`, `<noscript><meta http-equiv="refresh" content="20;url=/login?`, `href="watashi://sign?tx=http`, "Web RP", "/qr.png?w="} {
				if !strings.Contains(page, want) {
					t.Errorf("page lacks %q", want)
				}
			}
			if strings.Contains(page, "ZgotmplZ") {
				t.Error("template escaping rejected a value")
			}
		})
	}
}

func TestQRImage(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	b := o.browser()
	txID, _ := b.openTx(o.authorize("web"), "signin")
	req, _ := http.NewRequest(http.MethodGet, o.issuer+"/login/tx/"+txID+"/qr.png", nil)
	res, err := b.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var head [8]byte
	if _, err := res.Body.Read(head[:]); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "image/png" || string(head[:]) != "\x89PNG\r\n\x1a\n" {
		t.Fatalf("qr: %d %s %q", res.StatusCode, res.Header.Get("Content-Type"), head)
	}
}

func TestDemoWalletLinks(t *testing.T) {
	pki := simulatorPKI(t)
	o := newTestOP(t, store.NewMemory(), func(opts *Options) {
		opts.Verifier = pki.verifier(t)
		opts.DemoWalletURL = "http://demo.example/phone/"
	})
	so := &signinOP{testOP: o, pki: pki, clock: &testClock{}}
	b := so.browser()
	txID, page := b.openTx(so.authorize("web"), "")
	// The phone simulator is opened as a same-device app would be.
	if !strings.Contains(page, `href="http://demo.example/phone/?link=1&amp;tx=http`) {
		t.Fatalf("demo link missing:\n%s", page)
	}
	// The https fallback page accepts only our own transaction URLs.
	u := b.walletURL(txID)
	if code, _, p := b.get("/wallet/open?tx=" + url.QueryEscape(u)); code != http.StatusOK || !strings.Contains(p, "watashi://sign?tx=") {
		t.Fatalf("open page: %d", code)
	}
	if code, _, _ := b.get("/wallet/open?tx=" + url.QueryEscape("https://evil.example/wallet/v1/transactions/x")); code != http.StatusBadRequest {
		t.Fatalf("open page for a foreign URL: %d", code)
	}
}

func TestLoginErrors(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	b := o.browser()
	if code, _, page := b.get("/login?id=nope"); code != http.StatusBadRequest || !strings.Contains(page, `role="alert"`) {
		t.Fatalf("unknown request: %d", code)
	}
	if code, _, _ := b.get("/consent?id=nope"); code != http.StatusBadRequest {
		t.Fatalf("unknown consent: %d", code)
	}
	// A consent page without a session goes back to the login.
	ar := o.authorize("web")
	b.get(authreq.LoginURL(ar)) // binds
	if code, loc, _ := b.get(authreq.ConsentURL(ar)); code != http.StatusSeeOther || loc != authreq.LoginURL(ar) {
		t.Fatalf("consent without session: %d %q", code, loc)
	}
	if code, _, _ := b.get("/static/watashi.css"); code != http.StatusOK {
		t.Fatalf("static css: %d", code)
	}
	if code, _, _ := b.get("/static/"); code != http.StatusNotFound {
		t.Fatalf("static listing: %d", code)
	}
}

// TestReasonMessages: every code the browser can be shown has a message
// in both languages (templates build these keys at run time, so the
// start-up check cannot see them).
func TestReasonMessages(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	reasons := []string{codeNotEnrolled, codeWrongCertificate, codeIdentityMismatch, codeAccountConflict,
		codeExpiredTransaction, codeAlreadyUsed, codeServerError}
	for _, r := range []pkibridge.Reason{pkibridge.ReasonBadSignature, pkibridge.ReasonUntrusted, pkibridge.ReasonExpired,
		pkibridge.ReasonNotYetValid, pkibridge.ReasonRevoked, pkibridge.ReasonRevocationUnknown, pkibridge.ReasonKeyUsage,
		pkibridge.ReasonMalformed, pkibridge.ReasonWeakKey, pkibridge.ReasonWeakAlgorithm, pkibridge.ReasonAttributes} {
		reasons = append(reasons, string(r))
	}
	pages := []string{"unknown_request", "foreign_browser", "already_completed", "unknown_transaction", "csrf",
		"rate_limited", "not_verified", "server_error", "bad_request"}
	var claims []string
	for _, c := range consent.Catalogue() {
		claims = append(claims, c.Name)
	}
	claims = append(claims, consent.ClaimVerifiedClaims)
	for _, lang := range []string{"ja", "en"} {
		for _, set := range []struct {
			prefix string
			keys   []string
		}{
			{"reason.", reasons}, {"error.", pages}, {"claim.", claims},
			{"consent.as.", []string{consent.ClaimAgeOver18, consent.ClaimAgeOver20}},
			{"consent.error.", []string{string(consent.CodeInvalidChoice), string(consent.CodeEssentialRefused)}},
			{"gender.", []string{"male", "female", "not_known"}},
			{"notice.", []string{authreq.NoticeStaleFacts, authreq.NoticeNoFacts}},
			{"lang.", templates.Languages},
		} {
			for _, k := range set.keys {
				if m := o.s.web.Message(lang, set.prefix+k); m == set.prefix+k || m == "" {
					t.Errorf("%s: no message for %s%s", lang, set.prefix, k)
				}
			}
		}
	}
}

func TestLogoutRefusesSubresources(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	w := o.pki.wallet(t, factsTaro)
	b := o.browser()
	b.signIn(w, "web", authreq.PurposeProofing, "jws")
	if code, _, _ := b.get("/logout", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image"); code != http.StatusForbidden {
		t.Fatalf("logout from an <img>: %d", code)
	}
	ar := o.authorize("web")
	if code, loc, _ := b.get(authreq.LoginURL(ar)); code != http.StatusSeeOther || loc != authreq.ConsentURL(ar) {
		t.Fatalf("the refused logout ended the session: %d %q", code, loc)
	}
	if code, _, _ := b.get("/logout", "Sec-Fetch-Mode", "navigate"); code != http.StatusOK {
		t.Fatalf("navigated logout: %d", code)
	}
}
