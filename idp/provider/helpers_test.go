package provider

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/keys"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/templates"
)

const testIssuer = "https://id.example.jp"

// testRedirect is the registered redirect URI of the test client "web".
const testRedirect = "https://rp.example/cb"

var testTemplates = sync.OnceValues(func() (*templates.Set, error) { return templates.New("") })

// newTestServer is the provider on a memory store with real parts: a web
// kit, the auth request repository, a resolver of static clients, the
// account store, the key ring (empty: nothing here signs) and sessions.
func newTestServer(t testing.TB) *Server {
	t.Helper()
	return newTestServerOn(t, store.NewMemory())
}

// newTestServerOn is newTestServer on kv.
func newTestServerOn(t testing.TB, kv store.KV) *Server {
	t.Helper()
	ctx := context.Background()
	tmpl, err := testTemplates()
	if err != nil {
		t.Fatal(err)
	}
	key := bytes.Repeat([]byte{7}, 32)
	k, err := web.New(web.Options{Issuer: testIssuer, CookieKey: key, Counter: kv, Templates: tmpl})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := clients.New(ctx, clients.Options{PairwiseKey: key, Static: []*clients.Client{
		{ID: "web", DisplayName: "Web RP", AuthMethod: clients.AuthNone, RedirectURIs: []string{testRedirect},
			Scopes: []string{"name", "birthdate", "gender", "address", "profile", "offline_access"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	kek := seal.GenerateRing()
	acc, err := account.New(kv, account.Options{KEK: kek})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keys.New(kv, keys.Options{KEK: kek})
	if err != nil {
		t.Fatal(err)
	}
	var tk [32]byte
	copy(tk[:], key)
	s, err := New(Options{Web: k, Requests: authreq.New(kv, 10*time.Minute, nil, testIssuer), Clients: cl, Accounts: acc,
		Keys: ks, Sessions: session.New(kv, k, time.Hour, key), Store: kv, TokenKey: tk})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
