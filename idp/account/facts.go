package account

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
)

// FactsMeta is where the account's facts came from, in the consent
// package's terms: verified_claims are built from it, and Stale stops
// every release.
func (a *Account) FactsMeta() consent.FactsMeta {
	fs := a.FactsSource
	if fs == nil {
		return consent.FactsMeta{}
	}
	return consent.FactsMeta{
		ProofedAt:       fs.VerifiedAt,
		SignedAt:        fs.VerifiedAt, // the signature was made for this proofing's transaction, minutes before
		CertIssuer:      fs.Issuer,
		CertSerial:      fs.Serial,
		CertFingerprint: fs.Fingerprint,
		Stale:           fs.Stale,
	}
}

// RecheckFacts asks again whether the certificate the account's facts
// came from still stands, when the last answer is older than
// the configured period, and marks the facts stale when it has been
// revoked. It returns the account as it now is.
//
// Only a definitive answer changes anything: "revoked" marks the facts
// stale for good (until the resident proves again), "good" moves
// CheckedAt. No answer (responder down, no checker, revocation off)
// keeps the facts as they are, unmarked and unchecked, so the next
// consent asks again: the facts were verified once and an outage must
// not lock residents out, but neither may it count as a fresh check.
func (s *Store) RecheckFacts(ctx context.Context, a *Account) (*Account, error) {
	fs := a.FactsSource
	if a.Facts == nil || fs == nil || fs.Stale {
		return a, nil
	}
	now := s.now().UTC()
	if !fs.CheckedAt.IsZero() && now.Sub(fs.CheckedAt) <= s.recheck {
		return a, nil
	}
	if s.checker == nil {
		return a, nil
	}
	if len(fs.Cert) == 0 || len(fs.IssuerCert) == 0 {
		// Proofed before certificates were kept: nothing to ask about.
		s.log.WarnContext(ctx, "facts source certificate not on record; revocation not rechecked", "account", a.ID)
		return a, nil
	}
	leaf, err1 := x509.ParseCertificate(fs.Cert)
	issuer, err2 := x509.ParseCertificate(fs.IssuerCert)
	if err := errors.Join(err1, err2); err != nil {
		s.log.ErrorContext(ctx, "facts source certificate does not parse; revocation not rechecked", "account", a.ID, "error", err)
		return a, nil
	}
	info, err := s.checker.CheckRevocation(ctx, leaf, issuer)
	var mark func(*FactsSource)
	switch {
	case info.Status == pkibridge.StatusRevoked:
		mark = func(f *FactsSource) {
			f.Stale, f.StaleAt, f.Revocation = true, now, info
		}
	case err == nil && info.Status == pkibridge.StatusGood:
		mark = func(f *FactsSource) { f.CheckedAt, f.Revocation = now, info }
	default:
		attrs := []any{"account", a.ID, "status", string(info.Status)}
		if err != nil {
			attrs = append(attrs, "error", err)
		}
		s.log.WarnContext(ctx, "facts revocation recheck inconclusive; facts kept", attrs...)
		return a, nil
	}
	updated, err := s.updateFactsSource(ctx, a.ID, fs.Fingerprint, mark)
	if err != nil {
		return nil, err
	}
	if updated.FactsSource != nil && updated.FactsSource.Stale {
		s.log.InfoContext(ctx, "facts marked stale: their signature certificate is revoked", "account", a.ID,
			"cert_serial", fs.Serial, "revocation_source", info.Source)
	}
	return updated, nil
}

// updateFactsSource applies mark to the account's FactsSource with
// compare-and-swap, unless a proofing replaced the source meanwhile (then
// the account is returned as the proofing left it).
func (s *Store) updateFactsSource(ctx context.Context, id, fingerprint string, mark func(*FactsSource)) (*Account, error) {
	for range casRetries {
		a, old, err := s.loadAccount(ctx, id)
		if err != nil {
			return nil, err
		}
		if a.FactsSource == nil || a.FactsSource.Fingerprint != fingerprint {
			return a, nil
		}
		mark(a.FactsSource)
		a.UpdatedAt = s.now().UTC()
		b, err := json.Marshal(a)
		if err != nil {
			return nil, err
		}
		ok, err := s.kv.CompareAndSwap(ctx, accountKey(id), old, b)
		if err != nil {
			return nil, fmt.Errorf("account: update account: %w", err)
		}
		if ok {
			return a, nil
		}
	}
	return nil, ErrContention
}

// ForRelease loads an account for a release: a missing account releases
// nothing (it was deleted), which is not an error.
func (s *Store) ForRelease(ctx context.Context, id string) (*Account, error) {
	a, err := s.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return &Account{ID: id}, nil
	}
	return a, err
}

// NeedsProofing reports whether err means the facts would be released but
// cannot be (stale or absent): the resident must prove again.
func NeedsProofing(err error) bool {
	return errors.Is(err, consent.ErrStaleFacts) || errors.Is(err, consent.ErrNoFacts)
}

// ProofingNeeded is consent.Ready for the account's facts, reduced to its
// one question: must the resident prove again before granted can be
// released? It returns consent.ErrStaleFacts or consent.ErrNoFacts, or
// nil.
func (a *Account) ProofingNeeded(granted []string, req consent.Requested) error {
	err := consent.Ready(a.Facts, a.FactsMeta(), &consent.Grant{Claims: granted}, req)
	if NeedsProofing(err) {
		return err
	}
	return nil
}

// FactsUnusable is the cause when the account's facts cannot be shown or
// released at all (never proofed, or stale), nil when they can.
func (a *Account) FactsUnusable() error {
	switch {
	case a.Facts == nil:
		return consent.ErrNoFacts
	case a.FactsSource != nil && a.FactsSource.Stale:
		return consent.ErrStaleFacts
	}
	return nil
}
