package account

import (
	"context"
	"errors"

	"github.com/watashi-id/watashi/idp/internal/logref"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
)

// FactsCheck is the outcome of one scheduled re-check of an account's
// facts.
type FactsCheck int

const (
	// FactsSkipped: nothing to check (no facts, no revocation reference,
	// account gone) or already stale and announced.
	FactsSkipped FactsCheck = iota
	// FactsGood: the certificate still stands; CheckedAt moved.
	FactsGood
	// FactsUndecided: the checker gave no definitive answer.
	FactsUndecided
	// FactsStaleUnannounced: the facts were already stale (found by a
	// release-time check, or an announcement that failed) and nobody was
	// told yet: publish, then call AnnounceStale. Nothing was asked.
	FactsStaleUnannounced
	// FactsRevoked: this check found the certificate revoked and marked
	// the facts stale: publish, then call AnnounceStale.
	FactsRevoked
)

// Announce reports whether the outcome calls for FactsStale.
func (r FactsCheck) Announce() bool { return r == FactsStaleUnannounced || r == FactsRevoked }

// Asked reports whether the checker was asked.
func (r FactsCheck) Asked() bool { return r == FactsGood || r == FactsUndecided || r == FactsRevoked }

// CheckFacts asks c whether the certificate account id's facts came
// from still stands, whatever the age of the last answer, and marks the
// facts stale when it was revoked. The facts monitor calls it with the
// free CRL checker first and an OCSP checker (which may cost a fee) only
// for what stays undecided.
func (s *Store) CheckFacts(ctx context.Context, id string, c RevocationChecker) (FactsCheck, error) {
	l, err := s.load(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return FactsSkipped, nil
	}
	if err != nil {
		return FactsSkipped, err
	}
	a := l.a
	fs := a.FactsSource
	switch {
	case a.Facts == nil || fs == nil:
		return FactsSkipped, nil
	case fs.Stale && fs.AnnouncedAt.IsZero():
		return FactsStaleUnannounced, nil
	case fs.Stale, fs.Recheck == nil, c == nil:
		return FactsSkipped, nil
	}
	leaf, issuer, err := fs.revocationSubject()
	if err != nil {
		s.log.ErrorContext(ctx, "facts source revocation reference unusable", logref.Account(a.ID), "error", err)
		return FactsSkipped, nil
	}
	info, err := c.CheckRevocation(ctx, leaf, issuer)
	now := s.now().UTC()
	switch {
	case info.Status == pkibridge.StatusRevoked:
		u, err := s.updateFactsSource(ctx, id, fs.Link, func(f *FactsSource) {
			if !f.Stale {
				f.Stale, f.StaleAt, f.Revocation = true, now, info
			}
		})
		if err != nil {
			return FactsSkipped, err
		}
		if u.FactsSource == nil || !u.FactsSource.Stale || !u.FactsSource.AnnouncedAt.IsZero() {
			return FactsSkipped, nil // proved again meanwhile, or told already
		}
		s.log.InfoContext(ctx, "facts marked stale by the monitor: their signature certificate is revoked", logref.Account(id),
			"revocation_source", info.Source)
		return FactsRevoked, nil
	case err == nil && info.Status == pkibridge.StatusGood:
		if _, err := s.updateFactsSource(ctx, id, fs.Link, func(f *FactsSource) { f.CheckedAt, f.Revocation = now, info }); err != nil {
			return FactsSkipped, err
		}
		return FactsGood, nil
	}
	return FactsUndecided, nil
}

// AnnounceStale records that the stale facts of account id were
// announced, so that the monitor does not announce them again.
func (s *Store) AnnounceStale(ctx context.Context, id string) error {
	l, err := s.load(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.a.FactsSource == nil {
		return nil
	}
	at := s.now().UTC()
	_, err = s.updateFactsSource(ctx, id, l.a.FactsSource.Link, func(f *FactsSource) {
		if f.Stale && f.AnnouncedAt.IsZero() {
			f.AnnouncedAt = at
		}
	})
	return err
}
