package session

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
)

// The cookie of a client's sign-in names the account and the client to
// the consent step before any read, sealed; everything else about it
// stays: the record is found by the whole value only.
func TestCookieHint(t *testing.T) {
	kv := store.NewMemory()
	m, clk := newManager(t, kv, time.Hour)
	other, _ := newManager(t, kv, time.Hour)
	other.hint = newHintAEAD([]byte("another-cookie-key-0123456789abcdef"))
	acct := ids.Short()
	begin := func(t *testing.T, client string) string {
		t.Helper()
		w := httptest.NewRecorder()
		if _, err := m.Begin(context.Background(), w, authreq.Authentication{AccountID: acct, ACR: ACRJPKI, Time: clk.Now()}, client); err != nil {
			t.Fatal(err)
		}
		return sessionCookie(t, w, m.name).Value
	}
	withHint := begin(t, "rp")
	random, hint, _ := strings.Cut(withHint, ".")
	long := strings.Repeat("c", hintMaxClient)
	for _, c := range []struct {
		name    string
		cookie  string
		m       *Manager
		client  string // the hint's, "" for none
		current bool
	}{
		{"a client's sign-in", withHint, m, "rp", true},
		{"no client", begin(t, ""), m, "", true},
		{"the longest client ID that fits", begin(t, long), m, long, true},
		{"a longer client ID", begin(t, long+"c"), m, "", true},
		{"the hint changed", random + "." + flip(hint), m, "", false},
		{"the hint cut", random + "." + hint[:len(hint)-2], m, "", false},
		{"the hint on another cookie", ids.Long() + "." + hint, m, "", false},
		{"the random part alone", random, m, "", false},
		{"another cookie key: no hint, the session stays", withHint, other, "", true},
	} {
		if len(c.cookie) > cookieMax {
			t.Errorf("%s: a cookie of %d bytes", c.name, len(c.cookie))
		}
		if strings.Contains(c.cookie, acct) {
			t.Errorf("%s: the account ID in clear", c.name)
		}
		r := withCookie(c.m.name, c.cookie)
		gotAcct, gotClient, ok := c.m.Hint(r)
		if ok != (c.client != "") || gotClient != c.client || ok && gotAcct != acct {
			t.Errorf("%s: Hint = %q %q %v, want the client %q", c.name, gotAcct, gotClient, ok, c.client)
		}
		if s, ok := c.m.Current(r); ok != c.current || ok && s.AccountID != acct {
			t.Errorf("%s: Current = %+v %v, want %v", c.name, s, ok, c.current)
		}
	}
}
