package account

import (
	"context"
	"errors"
	"testing"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
)

// TestSignInNoting: SignInNoting answers as SignIn does, and records a
// known token label as NoteAuthLabel would, once.
func TestSignInNoting(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	s := newStore(t, kv)
	sig, auth := sigResult(t, "山田太郎", "1980-01-01"), authResult(t)
	id, _, err := s.Proof(ctx, sig, auth, "")
	if err != nil {
		t.Fatal(err)
	}
	deleted := authResult(t)
	gone, _, err := s.Proof(ctx, sigResult(t, "佐藤次郎", "1990-03-03"), deleted, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, accountKey(gone)); err != nil {
		t.Fatal(err)
	}
	link, err := s.CertLink(ctx, auth.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	label := func() string {
		a, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := a.AuthCert(link)
		return r.Label
	}
	for _, c := range []struct {
		name      string
		auth      func() *pkibridge.Result
		label     string
		wantErr   error
		wantLabel string
	}{
		{"no label", func() *pkibridge.Result { return auth }, "", nil, ""},
		{"unknown label is not recorded", func() *pkibridge.Result { return auth }, "SOMETHING", nil, ""},
		{"known label", func() *pkibridge.Result { return auth }, TokenCard, nil, TokenCard},
		{"same label again", func() *pkibridge.Result { return auth }, TokenCard, nil, TokenCard},
		{"another token", func() *pkibridge.Result { return auth }, TokenIOS, nil, TokenIOS},
		{"signature certificate", func() *pkibridge.Result { return sig }, TokenCard, ErrNotEnrolled, TokenIOS},
		{"unlinked certificate", func() *pkibridge.Result { return authResult(t) }, TokenCard, ErrNotEnrolled, TokenIOS},
		{"deleted account", func() *pkibridge.Result { return deleted }, TokenCard, ErrNotEnrolled, TokenIOS},
	} {
		got, err := s.SignInNoting(ctx, c.auth(), c.label)
		if !errors.Is(err, c.wantErr) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.wantErr)
			continue
		}
		if err == nil && (got.AccountID != id || got.Link != link || got.LabelErr != nil) {
			t.Errorf("%s: %+v, want account %s link %s", c.name, got, id, link)
		}
		if l := label(); l != c.wantLabel {
			t.Errorf("%s: label %q, want %q", c.name, l, c.wantLabel)
		}
	}
}
