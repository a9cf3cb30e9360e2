package pkibridge

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
)

// Checker combines OCSP responders and CRLs into one RevocationChecker.
// OCSP is asked first because it is fresher (same-day status against a
// daily CRL); the first definitive answer, good or revoked, wins. Sources
// disagree only across their update windows, and the fresher one is the
// better witness, so a later "revoked" does not override an earlier
// "good". When no source decides, the result is StatusUnknown with every
// source's reason joined, and the Verifier's RevocationMode takes over.
type Checker struct {
	OCSP   []*OCSPClient
	CRLs   []*CRLSource
	Logger *slog.Logger
	// SourceError, when set, is called with the kind of a source
	// (SourceOCSP or SourceCRL) each time one asked during a check gives
	// no deciding answer: unreachable, too slow, stale, unverifiable, or
	// not knowing the certificate. A check that the caller abandoned is
	// not the source's failure and is not reported. It is called from
	// concurrent checks: it is how a metrics counter learns of failing
	// sources without this package knowing of metrics.
	SourceError func(kind string)
}

// The kinds of revocation source, as SourceError reports them.
const (
	SourceOCSP = "ocsp"
	SourceCRL  = "crl"
)

// CheckerOptions configure the sources NewChecker builds.
type CheckerOptions struct {
	CRL    CRLOptions
	OCSP   OCSPOptions
	Logger *slog.Logger
	// SourceError becomes the Checker's SourceError.
	SourceError func(kind string)
}

// NewChecker builds a Checker from the unpaired locations a command line
// gives (`--crl FILE_OR_URL`, `--ocsp-url URL`, both repeatable) and the
// issuer certificates (the configured anchors).
//
// OCSP needs no pairing: a client checks each answer against the issuer
// of the certificate asked about. Each CRL location is paired lazily: on
// its first successful fetch it is bound to the issuer whose subject
// equals the CRL's issuer name and whose key verifies the CRL signature
// (J-LIS CA generations share a name, so the key decides), and it stays
// bound to that issuer. Call Refresh to fetch and pair at start-up.
func NewChecker(crlLocations, ocspURLs []string, issuers []*x509.Certificate, opts CheckerOptions) (*Checker, error) {
	if len(crlLocations) > 0 && len(issuers) == 0 {
		return nil, Fail(ReasonMalformed, "CRL locations need issuer certificates to verify them")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.CRL.Logger == nil {
		opts.CRL.Logger = logger
	}
	if opts.OCSP.Logger == nil {
		opts.OCSP.Logger = logger
	}
	c := &Checker{Logger: logger, SourceError: opts.SourceError}
	for _, u := range ocspURLs {
		oc, err := NewOCSPClient(u, opts.OCSP)
		if err != nil {
			return nil, err
		}
		c.OCSP = append(c.OCSP, oc)
	}
	for _, loc := range crlLocations {
		src, err := newCRLSource(loc, issuers, opts.CRL)
		if err != nil {
			return nil, err
		}
		c.CRLs = append(c.CRLs, src)
	}
	return c, nil
}

// Refresh fetches every CRL now (pairing unpaired ones with their issuer)
// and returns the failures joined; a service can refuse to start on them.
func (c *Checker) Refresh(ctx context.Context) error {
	var errs []error
	for _, s := range c.CRLs {
		if err := s.Refresh(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// discardLogger stands in for a nil Logger on the per-verification path,
// where making one each time would be an allocation per sign-in.
var discardLogger = slog.New(slog.DiscardHandler)

// CheckRevocation asks OCSP responders, then CRLs, in configured order.
func (c *Checker) CheckRevocation(ctx context.Context, leaf, issuer *x509.Certificate) (RevocationInfo, error) {
	logger := c.Logger
	if logger == nil {
		logger = discardLogger
	}
	var errs []error
	try := func(rc RevocationChecker, kind string) (RevocationInfo, bool) {
		info, err := rc.CheckRevocation(ctx, leaf, issuer)
		if err == nil && (info.Status == StatusGood || info.Status == StatusRevoked) {
			return info, true
		}
		if err == nil {
			err = Fail(ReasonRevocationUnknown, "%s: status %s", info.Source, info.Status)
		}
		errs = append(errs, err)
		logger.Debug("revocation source undecided", "source", info.Source, "error", err)
		if c.SourceError != nil && !errors.Is(ctx.Err(), context.Canceled) {
			c.SourceError(kind)
		}
		return info, false
	}
	for _, o := range c.OCSP {
		if info, ok := try(o, SourceOCSP); ok {
			return info, nil
		}
	}
	for _, s := range c.CRLs {
		if info, ok := try(s, SourceCRL); ok {
			return info, nil
		}
	}
	if len(errs) == 0 {
		return RevocationInfo{Status: StatusUnknown}, Fail(ReasonRevocationUnknown, "no revocation source configured")
	}
	return RevocationInfo{Status: StatusUnknown}, &Error{Reason: ReasonRevocationUnknown, Detail: "no revocation source decided", Err: errors.Join(errs...)}
}
