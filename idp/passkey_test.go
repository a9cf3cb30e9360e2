package idp

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/passkey"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/idp/web"
)

// newPasskeyOP is newSigninOP with passkeys on, at http://localhost:PORT
// (browsers accept passkeys for a host name only).
func newPasskeyOP(t *testing.T, kv store.KV) *signinOP {
	t.Helper()
	fixtures(t)
	seedKeys(t, kv)
	pki := simulatorPKI(t)
	clock := &testClock{}
	ts := httptest.NewUnstartedServer(nil)
	_, port, _ := net.SplitHostPort(ts.Listener.Addr().String())
	issuer := "http://localhost:" + port
	o := testOptions(kv, issuer)
	o.Verifier, o.Now = pki.verifier(t), clock.Now
	o.Passkeys = PasskeyOptions{Enabled: true}
	s, err := New(context.Background(), o)
	if err != nil {
		ts.Close()
		t.Fatal(err)
	}
	ts.Config.Handler = s.Handler()
	ts.Start()
	t.Cleanup(ts.Close)
	op := &testOP{t: t, s: s, ts: ts, issuer: issuer, kv: kv,
		hc: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	return &signinOP{testOP: op, pki: pki, clock: clock}
}

// The login page offers a passkey only where one may answer, and a JPKI
// sign-in goes by the offer, which steps aside once declined.
func TestPasskeyLoginPageAndOffer(t *testing.T) {
	o := newPasskeyOP(t, store.NewMemory())
	ctx := context.Background()
	w := o.pki.wallet(t, factsTaro)
	b := o.browser()

	// A sign-in page offers the passkey (hidden until the script runs);
	// the proofing page and a request for aal3 do not.
	ar := o.authorize("web")
	_, page := b.openTx(ar, "")
	if !strings.Contains(page, `id="passkey-login"`) || !strings.Contains(page, `/static/passkey.js`) || !strings.Contains(page, ` hidden>`) {
		t.Fatalf("sign-in page without the passkey section:\n%s", page)
	}
	_, page = b.openTx(ar, authreq.PurposeProofing)
	if strings.Contains(page, `id="passkey-login"`) {
		t.Fatal("the proofing page offers a passkey sign-in")
	}
	aal3 := o.startAuth(o.oauth("web", "name"), oauth2.GenerateVerifier(), oauth2.SetAuthURLParam("acr_values", "aal3"))
	_, page = b.openTx(aal3, "")
	if strings.Contains(page, `id="passkey-login"`) || !strings.Contains(page, `id="qr"`) {
		t.Fatal("a request for aal3 offers a passkey sign-in")
	}

	// JPKI proofing, then the offer.
	tx, _ := b.openTx(ar, authreq.PurposeProofing)
	if err := w.Approve(ctx, o.ts.Client(), b.walletURL(tx), walletsim.FormatJWS); err != nil {
		t.Fatal(err)
	}
	code, _, page := b.get(authreq.LoginURL(ar, "tx", tx))
	if code != http.StatusOK {
		t.Fatalf("verified page: %d", code)
	}
	code, loc, _ := b.post("/login/tx/"+tx+"/finish", url.Values{web.CSRFField: {csrfFrom(t, page)}})
	if code != http.StatusSeeOther || loc != passkey.OfferURL(ar) {
		t.Fatalf("finish: %d %q, want the offer", code, loc)
	}
	code, _, page = b.get(loc)
	if code != http.StatusOK || !strings.Contains(page, `id="passkey-add"`) || !strings.Contains(page, `id="passkey-skip"`) {
		t.Fatalf("offer: %d\n%s", code, page)
	}
	// Declining needs no script: a link to where the sign-in leads.
	code, loc, _ = b.get(passkey.OfferURL(ar) + "&skip=1")
	if code != http.StatusSeeOther || loc != authreq.ConsentURL(ar) {
		t.Fatalf("not now: %d %q", code, loc)
	}
	// Another browser cannot look at this resident's offer.
	if code, _, _ := o.browser().get(passkey.OfferURL(ar)); code != http.StatusForbidden {
		t.Fatalf("offer in another browser: %d", code)
	}
}
