package signin

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
)

// renderFor renders the login page of tx in lang with a kit in or out of
// development mode, as a resident's browser would get it.
func renderFor(t *testing.T, dev bool, demoWallet string, tx *signinTx, lang string) string {
	t.Helper()
	now := time.Unix(1700000000, 0)
	h := newTestHandler(t, store.NewMemory(), func() time.Time { return now })
	if dev {
		set, err := testTemplates()
		if err != nil {
			t.Fatal(err)
		}
		if h.web, err = web.New(web.Options{Issuer: "http://127.0.0.1:8080", Dev: true, CookieKey: bytes.Repeat([]byte{7}, 32),
			Counter: store.NewMemory(), Templates: set, Now: func() time.Time { return now }}); err != nil {
			t.Fatal(err)
		}
		h.txs.issuer = h.web.Issuer()
	}
	h.demoWallet = demoWallet
	if tx.ExpiresAt.IsZero() {
		tx.ExpiresAt = now.Add(5 * time.Minute)
	}
	tx.CreatedAt = now
	rec := httptest.NewRecorder()
	h.renderLogin(rec, httptest.NewRequest(http.MethodGet, authreq.LoginURL("ar1", "tx", tx.ID), nil), &authreq.AuthRequest{ID: "ar1"}, tx, lang)
	if rec.Code != http.StatusOK {
		t.Fatalf("render: %d\n%s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// TestLoginPageForResidents: what a resident of a real deployment sees,
// and what only a developer does.
func TestLoginPageForResidents(t *testing.T) {
	tx := func() *signinTx {
		return &signinTx{ID: "tx1", ClientID: "city", ClientName: "市民ポータル", Purpose: purposeSignin, Code: "12-34", State: txPending}
	}
	// No developer's aid in production: the transaction URL is in the
	// QR code and the app link, not in a text box.
	page := renderFor(t, false, "", tx(), "ja")
	for _, not := range []string{`id="txurl"`, "コマンドライン", "demo-tools"} {
		if strings.Contains(page, not) {
			t.Errorf("the production login page shows %q", not)
		}
	}
	// The way on this device comes before the QR code in the page, so
	// that a phone shows it first with no script; a wide screen puts the
	// QR code beside it with CSS.
	if d, q := strings.Index(page, `id="login-device"`), strings.Index(page, `id="login-qr"`); d < 0 || q < 0 || d > q {
		t.Errorf("this device at %d, the QR code at %d", d, q)
	}
	if !strings.Contains(page, `src="/rp-logo/city"`) || !strings.Contains(page, "5分間") {
		t.Errorf("the page lacks the RP's logo or the time limit")
	}
	for _, dev := range []struct {
		dev  bool
		demo string
	}{{true, ""}, {false, "http://127.0.0.1:8080/phone/"}} {
		if page := renderFor(t, dev.dev, dev.demo, tx(), "en"); !strings.Contains(page, `id="txurl"`) || !strings.Contains(page, "Demo and development only") {
			t.Errorf("dev=%v demo=%q: the developer's aid is missing", dev.dev, dev.demo)
		}
	}

	// The resident's own sign-in names the provider in the page's
	// language only.
	self := tx()
	self.ClientID, self.ClientName, self.ClientPurpose = clients.SelfServiceID, "Watashi アカウント / Watashi account", "アカウントの管理 / Managing your account"
	for lang, c := range map[string]struct{ want, not string }{
		"ja": {"あなたの Watashi アカウントにサインインします。", "Watashi account"},
		"en": {"You are signing in to your Watashi account.", "アカウント"},
	} {
		page := renderFor(t, false, "", self, lang)
		if !strings.Contains(page, c.want) || strings.Contains(page, c.not) {
			t.Errorf("%s: the self-service sign-in is not in the page's language:\n%s", lang, page)
		}
	}

	// Expired: said once, with the time limit, and a retry.
	expired := tx()
	expired.ExpiresAt = time.Unix(1700000000, 0).Add(-time.Second)
	for lang, c := range map[string]struct{ once, limit string }{
		"ja": {"有効期限", "5分"},
		"en": {"expired", "5 minutes"},
	} {
		page := renderFor(t, false, "", expired, lang)
		main := page[strings.Index(page, "<main"):]
		if n := strings.Count(main, c.once); n != 1 || !strings.Contains(main, c.limit) || !strings.Contains(main, `id="retry"`) {
			t.Errorf("%s: the expired page says %q %d times, limit %v:\n%s", lang, c.once, n, strings.Contains(main, c.limit), main)
		}
	}
	// Declined in the wallet: the reason and a retry, no second wait.
	declined := tx()
	declined.State, declined.Reason = txFailed, codeComparison
	if page := renderFor(t, false, "", declined, "en"); !strings.Contains(page, "confirmation code differs") || !strings.Contains(page, `id="retry"`) || strings.Contains(page, `id="signin"`) {
		t.Errorf("the page of a transaction declined for differing codes:\n%s", page)
	}
}

func TestDuration(t *testing.T) {
	h := newTestHandler(t, store.NewMemory(), time.Now)
	for _, c := range []struct {
		d      time.Duration
		ja, en string
	}{
		{5 * time.Minute, "5分", "5 minutes"},
		{time.Minute, "1分", "1 minute"},
		{90 * time.Second, "1分", "1 minute"},
		{30 * time.Second, "30秒", "30 seconds"},
	} {
		if got := h.duration(c.d, "ja"); got != c.ja {
			t.Errorf("%v in ja: %q", c.d, got)
		}
		if got := h.duration(c.d, "en"); got != c.en {
			t.Errorf("%v in en: %q", c.d, got)
		}
	}
}
