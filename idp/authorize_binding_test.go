package idp

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/store"
)

// TestLoginURLLeakedBeforeLogin: /authorize binds the request to the
// browser the RP sent there, so its login URL, leaked before that browser
// opened it, is no use to another browser even if that one opens it
// first; the owner signs in as usual. Each browser follows the RP's
// redirect itself here (the harness's startAuth is no browser).
func TestLoginURLLeakedBeforeLogin(t *testing.T) {
	for _, c := range []struct {
		name        string
		ownerCookie bool // the owner has a binding cookie from an earlier login
	}{{"new browser", false}, {"browser with a binding cookie", true}} {
		t.Run(c.name, func(t *testing.T) {
			o := newSigninOP(t, store.NewMemory())
			owner, thief := o.browser(), o.browser()
			if c.ownerCookie {
				owner.authorizeItself(t, "web")
			}
			ar := owner.authorizeItself(t, "web")
			for _, u := range []string{authreq.LoginURL(ar), authreq.LoginURL(ar, "purpose", authreq.PurposeProofing), authreq.ConsentURL(ar)} {
				if code, _, _ := thief.get(u); code != http.StatusForbidden {
					t.Errorf("%s from another browser before the owner: %d, want 403", u, code)
				}
			}
			if tx, _ := owner.openTx(ar, authreq.PurposeProofing); tx == "" {
				t.Fatal("the owner has no transaction")
			}
			if code, _, _ := thief.get(authreq.LoginURL(ar)); code != http.StatusForbidden {
				t.Errorf("login page from another browser after the owner: %d, want 403", code)
			}
		})
	}
}

// authorizeItself sends this browser, with its cookies, to /authorize as
// an RP's redirect would and returns the auth request ID.
func (b *browser) authorizeItself(t *testing.T, clientID string) string {
	t.Helper()
	conf := b.op.oauth(clientID, "name")
	code, loc, _ := b.get(conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("nonce", "n")))
	if code != http.StatusFound || !strings.HasPrefix(loc, authreq.LoginPath+"?") {
		t.Fatalf("authorize: %d %q", code, loc)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("id")
}
