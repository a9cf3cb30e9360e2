package account

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/internal/logref"
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
		ProofedAt:  fs.VerifiedAt,
		SignedAt:   fs.VerifiedAt, // the signature was made for this proofing's transaction, minutes before
		CertIssuer: fs.Issuer,
		CertSerial: fs.Serial,
		Stale:      fs.Stale,
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
	if fs.Recheck == nil {
		s.log.WarnContext(ctx, "facts source has no revocation reference; revocation not rechecked", logref.Account(a.ID))
		return a, nil
	}
	leaf, issuer, err := fs.revocationSubject()
	if err != nil {
		s.log.ErrorContext(ctx, "facts source revocation reference unusable; revocation not rechecked", logref.Account(a.ID), "error", err)
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
		attrs := []any{logref.Account(a.ID), "status", string(info.Status)}
		if err != nil {
			attrs = append(attrs, "error", err)
		}
		s.log.WarnContext(ctx, "facts revocation recheck inconclusive; facts kept", attrs...)
		return a, nil
	}
	updated, err := s.updateFactsSource(ctx, a.ID, fs.Link, mark)
	if err != nil {
		return nil, err
	}
	if updated.FactsSource != nil && updated.FactsSource.Stale {
		s.log.InfoContext(ctx, "facts marked stale: their signature certificate is revoked", logref.Account(a.ID),
			"revocation_source", info.Source)
	}
	return updated, nil
}

// updateFactsSource applies mark to the account's FactsSource with
// compare-and-swap, unless a proofing replaced the source meanwhile (then
// the account is returned as the proofing left it).
func (s *Store) updateFactsSource(ctx context.Context, id, link string, mark func(*FactsSource)) (*Account, error) {
	for range casRetries {
		l, err := s.load(ctx, id)
		if err != nil {
			return nil, err
		}
		a := l.a
		if a.FactsSource == nil || a.FactsSource.Link != link {
			return a, nil
		}
		mark(a.FactsSource)
		a.UpdatedAt = s.now().UTC()
		ok, err := s.replace(ctx, l, a)
		if err != nil {
			return nil, err
		}
		if ok {
			return a, nil
		}
	}
	return nil, ErrContention
}

// revocationSubject rebuilds what a revocation check reads of the
// certificate (serial, issuer name, authority key identifier, CRL
// distribution points) and parses the issuer's certificate. The
// certificate itself is not kept: it repeats the facts.
func (fs *FactsSource) revocationSubject() (leaf, issuer *x509.Certificate, err error) {
	serial, ok := new(big.Int).SetString(fs.Serial, 10)
	if !ok || serial.Sign() < 0 {
		return nil, nil, errors.New("serial number is not a decimal integer")
	}
	ref := fs.Recheck
	if issuer, err = x509.ParseCertificate(ref.IssuerCert); err != nil {
		return nil, nil, fmt.Errorf("issuer certificate: %w", err)
	}
	leaf = &x509.Certificate{SerialNumber: serial, RawIssuer: ref.RawIssuer, AuthorityKeyId: ref.AuthorityKeyID}
	if len(ref.CRLDistributionPoints) > 0 {
		leaf.Extensions = []pkix.Extension{{Id: oidExtCRLDistributionPoints, Value: ref.CRLDistributionPoints}}
	}
	return leaf, issuer, nil
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

// ForReleaseFrom is ForRelease from the results of ReadOps(id), which
// the caller sent with its own reads.
func (s *Store) ForReleaseFrom(id string, res []store.Result) (*Account, error) {
	l, err := s.open(id, res)
	if errors.Is(err, store.ErrNotFound) {
		return &Account{ID: id}, nil
	}
	if err != nil {
		return nil, err
	}
	return l.a, nil
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
