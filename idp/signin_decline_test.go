package idp

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/walletsim"
)

// TestWalletDecline: a wallet that will not sign says so, the browser
// learns it at once (its status and its page: the reason and a retry),
// and the transaction is over for every later answer.
func TestWalletDecline(t *testing.T) {
	for _, c := range []struct {
		reason, phrase string
	}{
		{walletsim.DeclineDeclined, "declined in the wallet app"},
		{walletsim.DeclineCodesDiffer, "confirmation code differs"},
	} {
		t.Run(c.reason, func(t *testing.T) {
			o := newSigninOP(t, store.NewMemory())
			w := o.pki.wallet(t, factsTaro)
			ctx := context.Background()
			b := o.browser()
			ar := o.authorize("web")
			txID, _ := b.openTx(ar, authreq.PurposeProofing)
			tx, err := walletsim.Fetch(ctx, o.ts.Client(), b.walletURL(txID))
			if err != nil {
				t.Fatal(err)
			}
			if err := walletsim.Decline(ctx, o.ts.Client(), tx, c.reason); err != nil {
				t.Fatalf("decline: %v", err)
			}
			if code, st := b.status(txID); code != http.StatusOK || st.State != "failed" || st.Reason != c.reason {
				t.Fatalf("status after the decline: %d %+v", code, st)
			}
			code, _, page := b.get(authreq.LoginURL(ar, "tx", txID, "lang", "en"))
			if code != http.StatusOK || !strings.Contains(page, c.phrase) || !strings.Contains(page, `id="retry"`) {
				t.Fatalf("page after the decline: %d\n%s", code, page)
			}
			// Over: a second decline and a late approval are refused.
			if err := walletsim.Decline(ctx, o.ts.Client(), tx, walletsim.DeclineDeclined); walletsim.ErrorCode(err) != "already_used" {
				t.Fatalf("second decline: %v", err)
			}
			if err := w.Submit(ctx, o.ts.Client(), tx, walletsim.FormatJWS); walletsim.ErrorCode(err) != "already_used" {
				t.Fatalf("approval after the decline: %v", err)
			}
		})
	}
}

// TestWalletDeclineRefusals: a decline that is malformed, or does not
// prove it comes from a wallet that scanned the code, changes nothing:
// the transaction stays open and the resident's wallet can still sign.
func TestWalletDeclineRefusals(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	w := o.pki.wallet(t, factsTaro)
	ctx := context.Background()
	b := o.browser()
	ar := o.authorize("web")
	txID, _ := b.openTx(ar, authreq.PurposeProofing)
	tx, err := walletsim.Fetch(ctx, o.ts.Client(), b.walletURL(txID))
	if err != nil {
		t.Fatal(err)
	}
	b2 := o.browser()
	other, _ := b2.openTx(o.authorize("web"), "")
	otherTx, err := walletsim.Fetch(ctx, o.ts.Client(), b2.walletURL(other))
	if err != nil {
		t.Fatal(err)
	}
	post := func(url, ctype, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		res, err := o.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(res.Body)
		return res.StatusCode, buf.String()
	}
	decline := tx.URL + "/decline"
	for _, c := range []struct {
		name, url, ctype, body string
		status                 int
		code                   string
	}{
		{"wrong content type", decline, "text/plain", `{"qr_token":"` + tx.QRToken + `"}`, 415, "invalid_request"},
		{"not JSON", decline, "application/json", `{`, 400, "invalid_request"},
		{"trailing data", decline, "application/json", `{"qr_token":"` + tx.QRToken + `"} {}`, 400, "invalid_request"},
		{"unknown reason", decline, "application/json", `{"qr_token":"` + tx.QRToken + `","reason":"bored"}`, 400, "invalid_request"},
		{"no QR token", decline, "application/json", `{"reason":"declined"}`, 400, "invalid_qr_token"},
		{"another transaction's QR token", decline, "application/json", `{"qr_token":"` + otherTx.QRToken + `"}`, 400, "invalid_qr_token"},
		{"forged QR token", decline, "application/json", `{"qr_token":"1.AAAAAAAAAAAAAAAAAAAAAA"}`, 400, "invalid_qr_token"},
		{"too large", decline, "application/json", `{"qr_token":"` + strings.Repeat("a", 2000) + `"}`, 413, "request_too_large"},
		{"unknown transaction", o.issuer + "/wallet/v1/transactions/AAAAAAAAAAAAAAAAAAAAAA/decline", "application/json", `{"qr_token":"` + tx.QRToken + `"}`, 404, "unknown_transaction"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := post(c.url, c.ctype, c.body)
			if status != c.status || !strings.Contains(body, `"error":"`+c.code+`"`) {
				t.Fatalf("%d %s, want %d %s", status, body, c.status, c.code)
			}
			if code, st := b.status(txID); code != http.StatusOK || st.State != "pending" {
				t.Fatalf("the transaction changed: %d %+v", code, st)
			}
		})
	}
	// Nothing above used up the transaction's attempts: the wallet's own
	// approval still goes through.
	if err := w.Submit(ctx, o.ts.Client(), tx, walletsim.FormatJWS); err != nil {
		t.Fatalf("approval after refused declines: %v", err)
	}
	// A decline without a reason is a plain "no".
	if code, body := post(otherTx.URL+"/decline", "application/json", `{"qr_token":"`+otherTx.QRToken+`"}`); code != http.StatusOK || !strings.Contains(body, `"status":"declined"`) {
		t.Fatalf("decline without a reason: %d %s", code, body)
	}
	if code, st := b2.status(other); st.State != "failed" || st.Reason != "declined" {
		t.Fatalf("after a decline without a reason: %d %+v", code, st)
	}
	// An expired transaction cannot be declined.
	txID3, _ := b.openTx(o.authorize("web"), "")
	tx3, err := walletsim.Fetch(ctx, o.ts.Client(), b.walletURL(txID3))
	if err != nil {
		t.Fatal(err)
	}
	o.clock.Advance(10 * time.Minute)
	if err := walletsim.Decline(ctx, o.ts.Client(), tx3, walletsim.DeclineDeclined); walletsim.ErrorCode(err) != "expired_transaction" {
		t.Fatalf("decline of an expired transaction: %v", err)
	}
}

// TestWalletReturnURL: after answering on the browser's own device, the
// wallet opens the return URL: the browser that started the sign-in goes
// back to its login page, which carries on; any other browser is told
// where to look, and learns nothing about the transaction.
func TestWalletReturnURL(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	w := o.pki.wallet(t, factsTaro)
	ctx := context.Background()
	b := o.browser()
	ar := o.authorize("web")
	txID, _ := b.openTx(ar, authreq.PurposeProofing)
	tx, err := walletsim.Fetch(ctx, o.ts.Client(), b.walletURL(txID))
	if err != nil {
		t.Fatal(err)
	}
	if tx.ReturnURL != o.issuer+"/login/tx/"+txID+"/return" {
		t.Fatalf("return URL %q", tx.ReturnURL)
	}
	if err := w.Submit(ctx, o.ts.Client(), tx, walletsim.FormatJWS); err != nil {
		t.Fatal(err)
	}
	code, loc, _ := b.get(tx.ReturnURL + "?lang=en")
	if code != http.StatusSeeOther || loc != authreq.LoginURL(ar, "tx", txID, "lang", "en") {
		t.Fatalf("the owner's return: %d %q", code, loc)
	}
	code, _, page := b.get(loc)
	if code != http.StatusOK || !strings.Contains(page, `action="/login/tx/`+txID+`/finish?ar=`+ar+`"`) || !strings.Contains(page, "Continue") {
		t.Fatalf("the login page after the return: %d\n%s", code, page)
	}
	stranger := o.browser()
	for _, u := range []string{tx.ReturnURL, o.issuer + "/login/tx/AAAAAAAAAAAAAAAAAAAAAA/return"} {
		code, loc, page := stranger.get(u)
		if code != http.StatusOK || loc != "" || !strings.Contains(page, `id="returned"`) || strings.Contains(page, txID) && u != tx.ReturnURL {
			t.Fatalf("%s for another browser: %d %q\n%s", u, code, loc, page)
		}
		if strings.Contains(page, ar) || strings.Contains(page, "/finish") {
			t.Fatalf("%s tells another browser about the sign-in:\n%s", u, page)
		}
	}
}
