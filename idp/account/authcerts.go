package account

import (
	"context"
	"fmt"
	"slices"

	"github.com/watashi-id/watashi/idp/store"
)

// The JPKI token labels a wallet reports: the card through a reader or
// NFC, and the smartphone certificate on Android and on iOS. Any other
// report is not recorded.
const (
	TokenCard    = "JPKIAPICCTOKEN2"
	TokenAndroid = "JPKIAPGPSETOKEN"
	TokenIOS     = "JPKIAPIOSTOKEN"
)

// KnownTokenLabel reports whether label is one of the JPKI tokens.
func KnownTokenLabel(label string) bool {
	return label == TokenCard || label == TokenAndroid || label == TokenIOS
}

// ErrAuthCertNotFound: the account has no such authentication
// certificate link.
var ErrAuthCertNotFound = fmt.Errorf("account: authentication certificate not found: %w", store.ErrNotFound)

// AuthCert returns the account's authentication certificate of link.
func (a *Account) AuthCert(link string) (CertRef, bool) {
	i := slices.IndexFunc(a.AuthCerts, func(r CertRef) bool { return r.Link == link })
	if i < 0 {
		return CertRef{}, false
	}
	return a.AuthCerts[i], true
}

// NoteAuthLabel records the token label an authentication certificate
// was just used from, when it is a known label and differs from the one
// recorded: one write on the first sign-in from a token, none after.
func (s *Store) NoteAuthLabel(ctx context.Context, id, link, label string) error {
	if !KnownTokenLabel(label) {
		return nil
	}
	for range casRetries {
		l, err := s.load(ctx, id)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(l.a.AuthCerts, func(r CertRef) bool { return r.Link == link })
		if i < 0 || l.a.AuthCerts[i].Label == label {
			return nil
		}
		a := *l.a
		a.AuthCerts = slices.Clone(a.AuthCerts)
		a.AuthCerts[i].Label = label
		if won, err := s.replace(ctx, l, &a); err != nil || won {
			return err
		}
	}
	return ErrContention
}

// RemoveAuthCert unlinks an authentication certificate from the account:
// the card or phone holding its key signs no one in afterwards, until the
// resident proves their identity with it again (signature and
// authentication certificates together), which links it anew.
func (s *Store) RemoveAuthCert(ctx context.Context, id, link string) error {
	for range casRetries {
		l, err := s.load(ctx, id)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(l.a.AuthCerts, func(r CertRef) bool { return r.Link == link })
		if i < 0 {
			return ErrAuthCertNotFound
		}
		a := *l.a
		a.AuthCerts = slices.Delete(slices.Clone(a.AuthCerts), i, i+1)
		a.UpdatedAt = s.now().UTC()
		won, err := s.replace(ctx, l, &a)
		if err != nil {
			return err
		}
		if won {
			// SignIn also checks the account's list, so a link left
			// behind by a failure here signs no one in.
			return s.dropLink(ctx, link, id)
		}
	}
	return ErrContention
}
