package session

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
)

func FuzzVerifyLogout(f *testing.F) {
	s, _ := newManager(f, store.NewMemory(), time.Hour)
	r := httptest.NewRequest(http.MethodGet, "/logout", nil)
	want := Logout{Dest: "https://rp.example/bye?state=1", ClientID: "web"}
	good := s.SignLogout(r, want)
	// base64 decoding ignores the unused low bits of the last character,
	// so a few spellings of good verify; they carry the same sign-out.
	malleated := good[:len(good)-1] + string(good[len(good)-1]^1)
	for _, v := range []string{good, malleated, "", ".", "a.b", good + "x", strings.Replace(good, ".", "..", 1)} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, ok := s.VerifyLogout(r, v)
		if ok && got != want {
			// Only sign-outs we signed verify; the fuzzer cannot forge an
			// HMAC.
			t.Fatalf("forged %q -> %+v", v, got)
		}
		if !ok && got != (Logout{}) {
			t.Fatalf("refused %q but returned %+v", v, got)
		}
	})
}
