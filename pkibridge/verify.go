package pkibridge

import (
	"context"
	"crypto/x509"
	"log/slog"
	"time"
)

// Verifier decides whether an envelope proves anything. It is safe for
// concurrent use once configured; build one at start-up and share it.
type Verifier struct {
	Anchors *Anchors
	// Intermediates are optional; J-LIS CAs are single-tier.
	Intermediates []*x509.Certificate
	Policy        Policy
	Revocation    RevocationChecker
	Mode          RevocationMode
	// Leeway tolerates clock skew at the validity bounds (default 0).
	Leeway time.Duration
	// Now is the verification time (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Verify checks that env covers exactly expected and that its leaf is a
// trusted, unrevoked JPKI certificate of an accepted kind.
func (v *Verifier) Verify(ctx context.Context, env *Envelope, expected []byte) (*Result, error) {
	return nil, Fail(ReasonMalformed, "not implemented")
}

// VerifyCertificate runs the certificate checks alone (profile, chain,
// revocation, attributes), with extra as untrusted intermediates.
func (v *Verifier) VerifyCertificate(ctx context.Context, leaf *x509.Certificate, extra []*x509.Certificate) (*Result, error) {
	return nil, Fail(ReasonMalformed, "not implemented")
}
