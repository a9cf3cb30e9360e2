package passkey

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/whitelist"
)

// The operator's block on an authenticator model stops its sign-ins and
// registrations at once, with the page's message, and lifting it lets
// the same key sign in again.
func TestBlockedModel(t *testing.T) {
	blocks, err := whitelist.NewBlocklist(whitelist.BlocklistOptions{Backend: whitelist.KVBackend(store.NewMemory(), store.ErrNotFound)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	op := whitelist.Change{Actor: "ops", Via: "test"}
	model := uuid.MustParse("cb69481e-8ff7-4039-93ec-0a2729a154a8")
	e := newEnv(t, func(o *Options) { o.Blocks = blocks })
	_, key := enrolled(t, e, "taro", func(k *softKey) { k.aaguid = model[:] })

	if _, err := blocks.Add(ctx, "aaguid", model.String(), op); err != nil {
		t.Fatal(err)
	}
	nb := e.browser()
	ar := nb.authRequest(nil)
	code, out := nb.login(key, ar)
	if code != http.StatusForbidden || out["error"] != codeModelBlocked || !strings.Contains(out["message"].(string), "運営者が停止") {
		t.Fatalf("login with a blocked model: %d %v", code, out)
	}
	if _, ok := nb.session(); ok {
		t.Fatal("a blocked model started a session")
	}
	if p := e.passkey("taro", key.credID); p.SignCount != 0 || !p.LastUsedAt.IsZero() || p.Disabled != "" {
		t.Fatalf("the refused sign-in changed the passkey: %+v", p)
	}

	// Another key of the same model cannot be added either; another
	// model can.
	b := e.browser()
	b.signIn("taro", session.ACRJPKI)
	k2 := newSoftKey(t, testRPID, testOrigin)
	k2.aaguid = model[:]
	if code, out := b.register(k2); code != http.StatusForbidden || out["error"] != codeModelBlocked {
		t.Fatalf("register a blocked model: %d %v", code, out)
	}
	if a, _ := e.accounts.Get(ctx, "taro"); len(a.Passkeys) != 1 {
		t.Fatalf("refused passkey stored: %d", len(a.Passkeys))
	}
	if code, out := b.register(newSoftKey(t, testRPID, testOrigin)); code != http.StatusOK {
		t.Fatalf("register another model: %d %v", code, out)
	}

	if err := blocks.Remove(ctx, "aaguid", model.String(), op); err != nil {
		t.Fatal(err)
	}
	nb = e.browser()
	ar = nb.authRequest(nil)
	if code, out := nb.login(key, ar); code != http.StatusOK {
		t.Fatalf("login after the block was lifted: %d %v", code, out)
	}
}
