package passkey

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/session"
)

// enrolled is a resident with one passkey, registered in browser b after
// a JPKI sign-in.
func enrolled(t *testing.T, e *env, accountID string, mod func(*softKey)) (*browser, *softKey) {
	t.Helper()
	e.newAccount(accountID)
	b := e.browser()
	b.signIn(accountID, session.ACRJPKI)
	key := newSoftKey(t, testRPID, testOrigin)
	if mod != nil {
		mod(key)
	}
	if code, out := b.register(key); code != http.StatusOK || out["redirect"] != "/account?lang=ja&passkey_added=1" {
		t.Fatalf("register: %d %v", code, out)
	}
	return b, key
}

func (e *env) passkey(accountID string, id []byte) *account.Passkey {
	e.t.Helper()
	a, err := e.accounts.Get(context.Background(), accountID)
	if err != nil {
		e.t.Fatal(err)
	}
	p, ok := a.Passkey(id)
	if !ok {
		e.t.Fatalf("no passkey %x", id)
	}
	return p
}

func TestRegisterAndSignIn(t *testing.T) {
	for _, c := range []struct {
		name   string
		synced bool
		amr    []string
	}{
		{"device-bound", false, []string{"user", "hwk"}},
		{"synced", true, []string{"user", "swk"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{}
			e := newEnv(t, func(o *Options) { o.Events = rec })
			_, key := enrolled(t, e, "taro", func(k *softKey) { k.be, k.bs = c.synced, c.synced })
			p := e.passkey("taro", key.credID)
			if len(rec.got) != 1 || rec.got[0].Kind != events.CredentialChanged || rec.got[0].AccountID != "taro" ||
				*rec.got[0].Credential != (events.Credential{Type: "passkey", Change: "create", Ref: base64.RawURLEncoding.EncodeToString(key.credID)}) {
				t.Fatalf("events %+v", rec.got)
			}
			if p.Synced() != c.synced || p.Name != "パスキー 1" || p.CreatedAt.IsZero() {
				t.Fatalf("stored %+v", p)
			}
			// The user handle is random, not the account ID.
			a, _ := e.accounts.Get(context.Background(), "taro")
			if string(key.handle) == "taro" || len(key.handle) != 32 || string(a.PasskeyHandle) != string(key.handle) {
				t.Fatalf("handle %x", key.handle)
			}

			// A new browser signs in with the passkey.
			nb := e.browser()
			ar := nb.authRequest(nil)
			code, out := nb.login(key, ar)
			if code != http.StatusOK || out["redirect"] != authreq.ConsentURL(ar.ID) {
				t.Fatalf("login: %d %v", code, out)
			}
			sess, ok := nb.session()
			if !ok || sess.AccountID != "taro" || sess.ACR != "aal2" || !slices.Equal(sess.AMR, c.amr) || !sess.JPKIAt.IsZero() {
				t.Fatalf("session %+v", sess)
			}
			// The session remembers the passkey, so that removing it ends
			// the session.
			if ref := "passkey:" + base64.RawURLEncoding.EncodeToString(key.credID); sess.Authenticator != ref || sess.Method != ref || sess.ID == "" {
				t.Fatalf("session authenticator %q method %q", sess.Authenticator, sess.Method)
			}
			if p := e.passkey("taro", key.credID); p.SignCount != key.counter || p.LastUsedAt.IsZero() {
				t.Fatalf("after use %+v", p)
			}
		})
	}
}

func TestRegistrationNeedsFreshJPKI(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RecentProofing = 2 * time.Minute })
	e.newAccount("taro")

	// Signed out.
	b := e.browser()
	if code, out := b.post(registerBegin, map[string]any{}); code != http.StatusUnauthorized || out["error"] != codeSignedOut {
		t.Fatalf("signed out: %d %v", code, out)
	}
	// A passkey session is not a proof of identity.
	b.signIn("taro", session.ACRPasskey)
	if code, out := b.post(registerBegin, map[string]any{}); code != http.StatusForbidden || out["error"] != codeProofNeeded {
		t.Fatalf("passkey session: %d %v", code, out)
	}
	// A JPKI sign-in too long ago.
	b.signIn("taro", session.ACRJPKI)
	e.clock.Advance(3 * time.Minute)
	if code, out := b.post(registerBegin, map[string]any{}); code != http.StatusForbidden || out["error"] != codeProofNeeded {
		t.Fatalf("old JPKI sign-in: %d %v", code, out)
	}
	// Fresh, but it ages between begin and finish.
	b.signIn("taro", session.ACRJPKI)
	o := b.begin(registerBegin, map[string]any{})
	e.clock.Advance(3 * time.Minute)
	key := newSoftKey(t, testRPID, testOrigin)
	if code, out := b.post(registerFinish, map[string]any{"ceremony": o.Ceremony, "credential": key.create(t, o)}); code != http.StatusForbidden || out["error"] != codeProofNeeded {
		t.Fatalf("aged during the ceremony: %d %v", code, out)
	}
	if a, _ := e.accounts.Get(context.Background(), "taro"); len(a.Passkeys) != 0 {
		t.Fatal("a passkey was added without a fresh JPKI sign-in")
	}
}

func TestRegistrationOptions(t *testing.T) {
	e := newEnv(t, nil)
	_, key := enrolled(t, e, "taro", nil)
	b := e.browser()
	b.signIn("taro", session.ACRJPKI)
	o := b.begin(registerBegin, map[string]any{})
	sel := o.PublicKey.AuthenticatorSelection
	if sel.ResidentKey != "required" || sel.UserVerification != "required" || o.PublicKey.RP.ID != testRPID {
		t.Fatalf("options %+v", o.PublicKey)
	}
	if len(o.PublicKey.ExcludeCredentials) != 1 || o.PublicKey.ExcludeCredentials[0].ID != b64.EncodeToString(key.credID) {
		t.Fatalf("the existing passkey is not excluded: %+v", o.PublicKey.ExcludeCredentials)
	}
	// The same credential again is refused.
	if code, out := b.post(registerFinish, map[string]any{"ceremony": o.Ceremony, "credential": key.create(t, o)}); code != http.StatusConflict || out["error"] != codeAlreadyRegistered {
		t.Fatalf("duplicate: %d %v", code, out)
	}
}

func TestRegistrationRefusals(t *testing.T) {
	denied := uuid.MustParse("01020304-0506-0708-0102-030405060708")
	for _, c := range []struct {
		name string
		opts func(*Options)
		key  func(*softKey)
		want string
	}{
		{"AAGUID on the deny list", func(o *Options) { o.Policy.Denied = []uuid.UUID{denied} }, func(k *softKey) { k.aaguid = denied[:] }, codeModelRefused},
		{"AAGUID not on the allow list", func(o *Options) { o.Policy.Allowed = []uuid.UUID{uuid.New()} }, func(k *softKey) { k.aaguid = denied[:] }, codeModelRefused},
		{"no AAGUID with an allow list", func(o *Options) { o.Policy.Allowed = []uuid.UUID{denied} }, nil, codeModelRefused},
		{"wrong origin", nil, func(k *softKey) { k.origin = "https://evil.example" }, codeNotVerified},
		{"sub-domain origin", nil, func(k *softKey) { k.origin = "https://x.id.example.jp" }, codeNotVerified},
		{"other port", nil, func(k *softKey) { k.origin = "https://id.example.jp:8443" }, codeNotVerified},
		{"wrong RP ID", nil, func(k *softKey) { k.rpID = "example.jp" }, codeNotVerified},
		{"no user verification", nil, func(k *softKey) { k.noUV = true }, codeNotVerified},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.opts)
			e.newAccount("taro")
			b := e.browser()
			b.signIn("taro", session.ACRJPKI)
			key := newSoftKey(t, testRPID, testOrigin)
			if c.key != nil {
				c.key(key)
			}
			if code, out := b.register(key); out["error"] != c.want || code < 400 {
				t.Fatalf("%d %v, want %s", code, out, c.want)
			}
			if a, _ := e.accounts.Get(context.Background(), "taro"); len(a.Passkeys) != 0 {
				t.Fatal("refused passkey stored")
			}
		})
	}
	// The allow list admits its model.
	e := newEnv(t, func(o *Options) { o.Policy.Allowed = []uuid.UUID{denied} })
	enrolled(t, e, "taro", func(k *softKey) { k.aaguid = denied[:] })
}

func TestSignInRefusals(t *testing.T) {
	e := newEnv(t, nil)
	tb, taroKey := enrolled(t, e, "taro", nil)
	_, jiroKey := enrolled(t, e, "jiro", nil)
	_ = tb

	t.Run("wrong origin", func(t *testing.T) {
		b := e.browser()
		k := *taroKey
		k.origin = "https://phish.example"
		if code, out := b.login(&k, b.authRequest(nil)); code != http.StatusBadRequest || out["error"] != codeNotVerified {
			t.Fatalf("%d %v", code, out)
		}
		taroKey.counter = k.counter
	})
	t.Run("another account's credential", func(t *testing.T) {
		b := e.browser()
		k := *jiroKey
		k.handle = taroKey.handle // claims to be Taro, signs with Jiro's key
		if code, out := b.login(&k, b.authRequest(nil)); code != http.StatusBadRequest || out["error"] != codeUnknownPasskey {
			t.Fatalf("%d %v", code, out)
		}
		if _, ok := b.session(); ok {
			t.Fatal("signed in")
		}
		jiroKey.counter = k.counter
	})
	t.Run("replayed assertion", func(t *testing.T) {
		b := e.browser()
		ar := b.authRequest(nil)
		o := b.begin(loginBegin, map[string]any{"request": ar.ID})
		cred := taroKey.get(t, o)
		if code, out := b.post(loginFinish, map[string]any{"ceremony": o.Ceremony, "credential": cred}); code != http.StatusOK {
			t.Fatalf("first: %d %v", code, out)
		}
		// The same ceremony again.
		if code, out := b.post(loginFinish, map[string]any{"ceremony": o.Ceremony, "credential": cred}); code != http.StatusBadRequest || out["error"] != codeExpired {
			t.Fatalf("replayed ceremony: %d %v", code, out)
		}
		// The same assertion under a new ceremony: the challenge differs.
		b2 := e.browser()
		o2 := b2.begin(loginBegin, map[string]any{"request": b2.authRequest(nil).ID})
		if code, out := b2.post(loginFinish, map[string]any{"ceremony": o2.Ceremony, "credential": cred}); code != http.StatusBadRequest || out["error"] != codeNotVerified {
			t.Fatalf("replayed assertion: %d %v", code, out)
		}
	})
	t.Run("another browser's ceremony", func(t *testing.T) {
		b, other := e.browser(), e.browser()
		o := b.begin(loginBegin, map[string]any{"request": b.authRequest(nil).ID})
		if code, out := other.post(loginFinish, map[string]any{"ceremony": o.Ceremony, "credential": taroKey.get(t, o)}); code != http.StatusBadRequest || out["error"] != codeExpired {
			t.Fatalf("%d %v", code, out)
		}
		// Nothing was consumed: the owner can still finish.
		if code, out := b.post(loginFinish, map[string]any{"ceremony": o.Ceremony, "credential": taroKey.get(t, o)}); code != http.StatusOK {
			t.Fatalf("owner after the stranger: %d %v", code, out)
		}
	})
	t.Run("another browser's request", func(t *testing.T) {
		b, other := e.browser(), e.browser()
		if code, out := other.post(loginBegin, map[string]any{"request": b.authRequest(nil).ID}); code != http.StatusBadRequest || out["error"] != codeUnknownRequest {
			t.Fatalf("%d %v", code, out)
		}
	})
	t.Run("malformed credential consumes nothing", func(t *testing.T) {
		b := e.browser()
		o := b.begin(loginBegin, map[string]any{"request": b.authRequest(nil).ID})
		if code, out := b.post(loginFinish, map[string]any{"ceremony": o.Ceremony, "credential": map[string]any{"id": "x"}}); code != http.StatusBadRequest || out["error"] != codeBadRequest {
			t.Fatalf("%d %v", code, out)
		}
		if code, out := b.post(loginFinish, map[string]any{"ceremony": o.Ceremony, "credential": taroKey.get(t, o)}); code != http.StatusOK {
			t.Fatalf("after a malformed try: %d %v", code, out)
		}
	})
	t.Run("without CSRF", func(t *testing.T) {
		b := e.browser()
		b.csrf = "forged"
		if code, out := b.post(loginBegin, map[string]any{"request": "x"}); code != http.StatusForbidden || out["error"] != codeCSRF {
			t.Fatalf("%d %v", code, out)
		}
	})
	t.Run("aal3 required", func(t *testing.T) {
		for _, mod := range []func(*authreq.AuthRequest){
			func(ar *authreq.AuthRequest) { ar.ACRValues = []string{"aal3"} },
			func(ar *authreq.AuthRequest) { ar.MinACR = "aal3" },
		} {
			b := e.browser()
			if code, out := b.post(loginBegin, map[string]any{"request": b.authRequest(mod).ID}); code != http.StatusForbidden || out["error"] != codeJPKIRequired {
				t.Fatalf("%d %v", code, out)
			}
		}
	})
	t.Run("removed credential", func(t *testing.T) {
		e := newEnv(t, nil)
		_, key := enrolled(t, e, "hanako", nil)
		if err := e.accounts.RemovePasskey(context.Background(), "hanako", key.credID); err != nil {
			t.Fatal(err)
		}
		b := e.browser()
		if code, out := b.login(key, b.authRequest(nil)); code != http.StatusBadRequest || out["error"] != codeUnknownPasskey {
			t.Fatalf("%d %v", code, out)
		}
	})
}

func TestSafetyDisables(t *testing.T) {
	for _, c := range []struct {
		name   string
		before func(*softKey)
		reason string
	}{
		{"counter regression", func(k *softKey) { k.counter = 0 }, account.PasskeyCounterRegressed},
		{"counter repeated", func(k *softKey) { k.counter-- }, account.PasskeyCounterRegressed},
		{"backup eligibility appears", func(k *softKey) { k.be = true }, account.PasskeyFlagsInconsistent},
		{"backup state without eligibility", func(k *softKey) { k.bs = true }, account.PasskeyFlagsInconsistent},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			_, key := enrolled(t, e, "taro", func(k *softKey) { k.counter = 10 })
			b := e.browser()
			if code, out := b.login(key, b.authRequest(nil)); code != http.StatusOK {
				t.Fatalf("first use: %d %v", code, out)
			}
			c.before(key)
			b2 := e.browser()
			code, out := b2.login(key, b2.authRequest(nil))
			if code != http.StatusForbidden || out["error"] != codeDisabled {
				t.Fatalf("%d %v", code, out)
			}
			if _, ok := b2.session(); ok {
				t.Fatal("signed in")
			}
			p := e.passkey("taro", key.credID)
			if p.Disabled != c.reason || p.DisabledAt.IsZero() {
				t.Fatalf("not disabled: %+v", p)
			}
			// For good: a well-behaved assertion afterwards is refused too.
			key.counter, key.be, key.bs = 1000, false, false
			b3 := e.browser()
			if code, out := b3.login(key, b3.authRequest(nil)); code != http.StatusForbidden || out["error"] != codeDisabled {
				t.Fatalf("after disabling: %d %v", code, out)
			}
		})
	}
	// A bad signature with a regressed counter disables nothing: only the
	// authenticator itself can.
	e := newEnv(t, nil)
	_, key := enrolled(t, e, "taro", func(k *softKey) { k.counter = 10 })
	forged := newSoftKey(t, testRPID, testOrigin)
	forged.credID, forged.handle, forged.counter = key.credID, key.handle, 0
	b := e.browser()
	if code, out := b.login(forged, b.authRequest(nil)); code != http.StatusBadRequest || out["error"] != codeNotVerified {
		t.Fatalf("forged: %d %v", code, out)
	}
	if p := e.passkey("taro", key.credID); p.Disabled != "" {
		t.Fatalf("a forged assertion disabled the passkey: %+v", p)
	}
}

// After a JPKI sign-in the offer page shows once; it steps aside when
// there is nothing to offer.
func TestOffer(t *testing.T) {
	e := newEnv(t, nil)
	e.newAccount("taro")
	b := e.browser()
	b.signIn("taro", session.ACRJPKI)
	ar := b.authRequest(nil)
	get := func(path string) *http.Response {
		w := httptest.NewRecorder()
		e.mux.ServeHTTP(w, b.request("GET", path, nil))
		return w.Result()
	}
	if res := get(OfferURL(ar.ID)); res.StatusCode != http.StatusOK {
		t.Fatalf("offer: %d", res.StatusCode)
	}
	if res := get(OfferURL(ar.ID) + "&skip=1"); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != authreq.ConsentURL(ar.ID) {
		t.Fatalf("skip: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	// Registered from the offer: back to the request.
	o := b.begin(registerBegin, map[string]any{"request": ar.ID})
	key := newSoftKey(t, testRPID, testOrigin)
	if code, out := b.post(registerFinish, map[string]any{"ceremony": o.Ceremony, "credential": key.create(t, o)}); code != http.StatusOK || out["redirect"] != authreq.ConsentURL(ar.ID) {
		t.Fatalf("register from the offer: %d %v", code, out)
	}
	if res := get(OfferURL(ar.ID)); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("offer with a passkey: %d", res.StatusCode)
	}
	// Another browser cannot use the request.
	other := e.browser()
	w := httptest.NewRecorder()
	e.mux.ServeHTTP(w, other.request("GET", OfferURL(ar.ID), nil))
	if w.Code != http.StatusForbidden {
		t.Fatalf("foreign browser: %d", w.Code)
	}
}

func TestRPID(t *testing.T) {
	for _, c := range []struct {
		issuer, want string
		ok           bool
	}{
		{"https://id.example.jp", "id.example.jp", true},
		{"http://localhost:8080", "localhost", true},
		{"http://127.0.0.1:8080", "", false},
		{"http://[::1]:8080", "", false},
		{"not a url", "", false},
	} {
		got, err := RPID(c.issuer)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("RPID(%q) = %q, %v", c.issuer, got, err)
		}
	}
}

// recorder keeps what a handler published.
type recorder struct{ got []events.Event }

func (r *recorder) Publish(_ context.Context, e events.Event) error {
	r.got = append(r.got, e)
	return nil
}
