package pkibridge

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"log/slog"
	"time"
	"unsafe"
)

// Limits applied by Verify before any work.
const (
	// MaxExtraCertificates bounds the certificates an envelope may carry
	// besides its leaf; J-LIS chains are leaf + root.
	MaxExtraCertificates = 8
	// maxChainDepth bounds our own issuer walk when explaining a failure.
	maxChainDepth = 8
	// maxLeewayRetries bounds chain-building retries inside the leeway.
	maxLeewayRetries = 4
)

// Verifier decides whether an envelope proves anything. It is safe for
// concurrent use once configured; build one at start-up and share it.
//
// A nil Anchors trusts nothing (every chain is ReasonUntrusted): trust is
// always explicit, set it to DefaultAnchors() for production. A nil
// Revocation with Mode require (the default, also for "") or prefer is a
// configuration error and every certificate fails with
// ReasonRevocationUnknown, because quietly skipping revocation would turn
// a missing wire into accepting revoked cards.
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
	// NoChainCache turns off the cache of verified chains. The same
	// authentication certificate signs in again and again, and the cache
	// (at most ChainCacheEntries, keyed by the certificates' bytes) lets
	// it skip chain building, the CA's signature on the leaf above all,
	// while now lies inside every chain certificate's validity window and
	// Anchors, the configured intermediates the chain uses and
	// Policy.MinRSABits are unchanged. Profile, attributes, revocation
	// and the envelope signature are checked on every call either way.
	NoChainCache bool

	// chains is the *chainCache, made on first use. It is an
	// unsafe.Pointer used atomically rather than an atomic.Pointer so that
	// a Verifier can still be copied (before it is shared) to derive
	// another configuration; the copies then share one cache, which is
	// safe because an entry is used only under the configuration that
	// built it.
	chains unsafe.Pointer
}

// Verify checks that env covers exactly expected and that its leaf is a
// trusted, unrevoked JPKI certificate of an accepted kind. The byte
// comparison comes first and is constant-time: a signature over anything
// but the issued challenge proves nothing, whatever the certificate.
func (v *Verifier) Verify(ctx context.Context, env *Envelope, expected []byte) (*Result, error) {
	if env == nil {
		return nil, Fail(ReasonMalformed, "no envelope")
	}
	if env.Leaf == nil {
		return nil, Fail(ReasonMalformed, "envelope has no leaf certificate")
	}
	limit := v.Policy.MaxEnvelopeBytes
	if limit <= 0 {
		limit = DefaultPolicy().MaxEnvelopeBytes
	}
	if len(expected) == 0 {
		return nil, Fail(ReasonMalformed, "no expected content to compare with")
	}
	if len(expected) > limit {
		return nil, Fail(ReasonMalformed, "expected content of %d bytes exceeds the limit of %d", len(expected), limit)
	}
	if len(env.Content) > limit {
		return nil, Fail(ReasonMalformed, "signed content of %d bytes exceeds the limit of %d", len(env.Content), limit)
	}
	if len(env.Extra) > MaxExtraCertificates {
		return nil, Fail(ReasonMalformed, "envelope carries %d extra certificates, more than %d", len(env.Extra), MaxExtraCertificates)
	}
	if subtle.ConstantTimeCompare(env.Content, expected) != 1 {
		return nil, Fail(ReasonBadSignature, "signed bytes differ from the issued challenge")
	}
	res, err := v.VerifyCertificate(ctx, env.Leaf, env.Extra)
	if err != nil {
		return nil, err
	}
	res.Format = env.Format
	res.Algorithm = env.Algorithm
	return res, nil
}

// VerifyCertificate runs the certificate checks alone (profile, chain,
// revocation, attributes), with extra as untrusted intermediates.
//
// Order: profile (Classify), validity of the leaf with Leeway, chain
// building with crypto/x509 to anchors matched by key, key strength and
// validity of every chain member, the basic four facts for signature
// certificates, and revocation last, because a revocation check can cost
// a fee and go over the network.
func (v *Verifier) VerifyCertificate(ctx context.Context, leaf *x509.Certificate, extra []*x509.Certificate) (*Result, error) {
	if leaf == nil {
		return nil, Fail(ReasonMalformed, "no leaf certificate")
	}
	if len(extra) > MaxExtraCertificates {
		return nil, Fail(ReasonMalformed, "%d extra certificates, more than %d", len(extra), MaxExtraCertificates)
	}
	for i, c := range extra {
		if c == nil {
			return nil, Fail(ReasonMalformed, "extra certificate %d is nil", i)
		}
	}
	kind, err := v.Policy.Classify(leaf)
	if err != nil {
		return nil, err
	}
	now := v.now()
	if err := v.checkValidity(leaf, leafRole, now); err != nil {
		return nil, err
	}
	if v.Anchors.Len() == 0 {
		return nil, Fail(ReasonUntrusted, "no trust anchors configured")
	}
	if isSelfSigned(leaf) {
		return nil, Fail(ReasonUntrusted, "leaf is self-signed; only configured anchors are trusted")
	}
	chain, err := v.chain(leaf, extra, now)
	if err != nil {
		return nil, err
	}
	res := &Result{Kind: kind, Leaf: leaf, Chain: chain}
	if kind == KindSignature {
		if res.Attributes, err = ParseAttributes(leaf); err != nil {
			return nil, err
		}
	}
	if res.Revocation, err = v.checkRevocation(ctx, kind, leaf, chain[1]); err != nil {
		return nil, err
	}
	return res, nil
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) logger() *slog.Logger {
	if v.Logger != nil {
		return v.Logger
	}
	return slog.Default()
}

// checkValidity applies the validity bounds with Leeway at now. role
// words "leaf" or a CA description, and is called only for an error; CA
// subjects are not personal data, leaf subjects may be (JPKI puts the
// holder's municipality there) and are never named.
func (v *Verifier) checkValidity(c *x509.Certificate, role func() string, now time.Time) error {
	lw := v.leeway()
	if now.After(c.NotAfter.Add(lw)) {
		return Fail(ReasonExpired, "%s expired at %s (now %s, leeway %s)", role(), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), lw)
	}
	if now.Before(c.NotBefore.Add(-lw)) {
		return Fail(ReasonNotYetValid, "%s is valid only from %s (now %s, leeway %s)", role(), c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), lw)
	}
	return nil
}

// leafRole names the leaf in error details.
func leafRole() string { return "leaf" }

func (v *Verifier) leeway() time.Duration {
	if v.Leeway < 0 {
		return 0
	}
	return v.Leeway
}

// chainCandidate is a certificate that may issue another: an anchor, a
// configured intermediate, or one the envelope carried.
type chainCandidate struct {
	cert   *x509.Certificate
	anchor bool
}

// buildChain lets crypto/x509 build the chain and then checks what it
// chose: the last certificate must be an anchor by key, and every member
// must have an acceptable key and be valid at now within Leeway. crypto/x509
// knows nothing of leeway, so chain building runs at a time inside every
// validity window on the path, at most Leeway from now.
func (v *Verifier) buildChain(leaf *x509.Certificate, extra []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	var inter *x509.CertPool // nil: no intermediates, and no pool to fill
	for _, set := range [][]*x509.Certificate{v.Intermediates, extra} {
		for _, c := range set {
			if c == nil {
				continue
			}
			if inter == nil {
				inter = x509.NewCertPool()
			}
			inter.AddCert(c)
		}
	}
	leafForX509 := withoutUnderstoodCritical(leaf)
	at := clampTime(now, leaf.NotBefore, leaf.NotAfter)
	var chains [][]*x509.Certificate
	for attempt := 0; ; attempt++ {
		var err error
		chains, err = leafForX509.Verify(x509.VerifyOptions{
			Roots:         v.Anchors.pool,
			Intermediates: inter,
			CurrentTime:   at,
			KeyUsages:     anyExtKeyUsage,
		})
		if err == nil {
			break
		}
		retry, why := v.explainChainFailure(leaf, extra, now, at, err)
		if why != nil {
			return nil, why
		}
		if attempt == maxLeewayRetries || retry.Equal(at) {
			return nil, Wrap(ReasonUntrusted, err, "no chain to a trust anchor")
		}
		at = retry
	}
	var first error
	for _, chain := range chains {
		chain[0] = leaf
		err := v.checkChain(chain, now)
		if err == nil {
			return chain, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// anyExtKeyUsage is the chain-building key usage: JPKI certificates carry
// no extended key usage, and the profile is Classify's business.
var anyExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}

// checkChain vets a chain crypto/x509 accepted.
func (v *Verifier) checkChain(chain []*x509.Certificate, now time.Time) error {
	if len(chain) < 2 {
		return Fail(ReasonUntrusted, "chain has no issuer")
	}
	top := chain[len(chain)-1]
	if v.Anchors.byKey(top) == nil {
		return Fail(ReasonUntrusted, "chain ends at %s, whose key is not an anchor key", top.Subject)
	}
	for i, c := range chain {
		role := leafRole
		if i > 0 {
			role = func() string { return v.Anchors.caRole(c, i == len(chain)-1) }
		}
		if err := v.Policy.checkPublicKey(c, role); err != nil {
			return err
		}
		if err := v.checkValidity(c, role, now); err != nil {
			return err
		}
	}
	return nil
}

// caRole names a CA certificate in error details. Anchors have their
// names worded once, in NewAnchors.
func (a *Anchors) caRole(c *x509.Certificate, anchor bool) string {
	if anchor {
		if role := a.roleOf(c); role != "" {
			return role
		}
		return "anchor " + c.Subject.String()
	}
	return "intermediate " + c.Subject.String()
}

// explainChainFailure turns a crypto/x509 refusal into a Reason by walking
// the issuer links itself. It returns either an error, or a time inside
// every validity window on a path whose members are all within Leeway of
// now, at which chain building should be retried.
func (v *Verifier) explainChainFailure(leaf *x509.Certificate, extra []*x509.Certificate, now, at time.Time, x509Err error) (time.Time, error) {
	var cands []chainCandidate
	for _, c := range v.Anchors.certs {
		cands = append(cands, chainCandidate{c, true})
	}
	for _, c := range v.Intermediates {
		if c != nil {
			cands = append(cands, chainCandidate{c, false})
		}
	}
	for _, c := range extra {
		cands = append(cands, chainCandidate{c, false})
	}
	w := chainWalk{v: v, cands: cands, now: now, at: at, x509Err: x509Err}
	retry, err := w.walk(leaf, leaf.NotBefore, leaf.NotAfter, []*x509.Certificate{leaf})
	if err != nil {
		return time.Time{}, err
	}
	if !retry.IsZero() {
		return retry, nil
	}
	if len(v.Anchors.bySubjectKeyID(leaf.AuthorityKeyId)) > 0 {
		return time.Time{}, Wrap(ReasonUntrusted, x509Err, "no chain to a trust anchor: the authority key identifier names an anchor whose subject is not the leaf's issuer")
	}
	return time.Time{}, Wrap(ReasonUntrusted, x509Err, "no chain to a trust anchor")
}

type chainWalk struct {
	v       *Verifier
	cands   []chainCandidate
	now, at time.Time
	x509Err error
}

// walk looks for c's issuers. lo and hi bound the common validity window
// of the path so far. It returns a retry time, or the most specific error
// along the first failing path.
func (w *chainWalk) walk(c *x509.Certificate, lo, hi time.Time, path []*x509.Certificate) (time.Time, error) {
	if len(path) > maxChainDepth {
		return time.Time{}, Fail(ReasonUntrusted, "chain longer than %d certificates", maxChainDepth)
	}
	var found error
	keyIDMatch := false
	for _, cand := range w.cands {
		p := cand.cert
		if inPath(p, path) || !bytes.Equal(p.RawSubject, c.RawIssuer) {
			continue
		}
		if err := p.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
			if len(c.AuthorityKeyId) > 0 && bytes.Equal(c.AuthorityKeyId, p.SubjectKeyId) {
				keyIDMatch = true
			}
			if errors.Is(err, x509.InsecureAlgorithmError(c.SignatureAlgorithm)) && found == nil {
				found = Wrap(ReasonWeakAlgorithm, err, "certificate signed with %s by %s", c.SignatureAlgorithm, p.Subject)
			}
			continue
		}
		role := w.v.Anchors.caRole(p, cand.anchor)
		var err error
		switch {
		case insecureCertSignature(c.SignatureAlgorithm):
			// CheckSignature still accepts SHA-1; chain building does not.
			err = Fail(ReasonWeakAlgorithm, "certificate signed with %s by %s", c.SignatureAlgorithm, role)
		case !p.BasicConstraintsValid || !p.IsCA:
			err = Fail(ReasonUntrusted, "issuer %s is not a CA certificate", role)
		case len(p.UnhandledCriticalExtensions) > 0:
			err = Fail(ReasonMalformed, "issuer %s has unknown critical extension(s) %s", role, joinOIDs(p.UnhandledCriticalExtensions))
		default:
			err = w.v.checkValidity(p, func() string { return role }, w.now)
		}
		if err != nil {
			if found == nil {
				found = err
			}
			continue
		}
		nlo, nhi := laterTime(lo, p.NotBefore), earlierTime(hi, p.NotAfter)
		if nlo.After(nhi) {
			if found == nil {
				found = Fail(ReasonExpired, "validity of %s does not overlap the rest of the chain", role)
			}
			continue
		}
		if w.at.Before(nlo) || w.at.After(nhi) {
			return clampTime(w.now, nlo, nhi), nil
		}
		if cand.anchor {
			// Every check we know passes; crypto/x509 refused for a reason
			// of its own (path length, policy constraints).
			if found == nil {
				found = Wrap(ReasonUntrusted, w.x509Err, "chain to %s refused", role)
			}
			continue
		}
		retry, err := w.walk(p, nlo, nhi, append(path[:len(path):len(path)], p))
		if !retry.IsZero() {
			return retry, nil
		}
		if found == nil {
			found = err
		}
	}
	if found != nil {
		return time.Time{}, found
	}
	if keyIDMatch {
		return time.Time{}, Fail(ReasonBadSignature, "certificate signature does not verify with the key its authority key identifier names")
	}
	return time.Time{}, nil
}

func insecureCertSignature(alg x509.SignatureAlgorithm) bool {
	switch alg {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
		return true
	}
	return false
}

func inPath(c *x509.Certificate, path []*x509.Certificate) bool {
	for _, p := range path {
		if bytes.Equal(p.RawSubject, c.RawSubject) && bytes.Equal(p.RawSubjectPublicKeyInfo, c.RawSubjectPublicKeyInfo) {
			return true
		}
	}
	return false
}

// isSelfSigned reports whether c names itself as issuer and its own key
// verifies its signature.
func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

func clampTime(t, lo, hi time.Time) time.Time {
	if t.Before(lo) {
		return lo
	}
	if t.After(hi) {
		return hi
	}
	return t
}

func laterTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlierTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// checkRevocation applies the RevocationMode to the checker's answer.
func (v *Verifier) checkRevocation(ctx context.Context, kind Kind, leaf, issuer *x509.Certificate) (RevocationInfo, error) {
	mode := v.Mode
	if mode == "" {
		mode = RevocationRequire
	}
	switch mode {
	case RevocationOff:
		return RevocationInfo{Status: StatusSkipped}, nil
	case RevocationRequire, RevocationPrefer:
	default:
		return RevocationInfo{}, Fail(ReasonRevocationUnknown, "revocation mode %q is not require, prefer or off", mode)
	}
	if v.Revocation == nil {
		return RevocationInfo{}, Fail(ReasonRevocationUnknown, "revocation mode %s but no revocation checker is configured", mode)
	}
	info, err := v.Revocation.CheckRevocation(ctx, leaf, issuer)
	switch {
	case info.Status == StatusRevoked:
		e := Fail(ReasonRevoked, "certificate is revoked")
		if !info.RevokedAt.IsZero() {
			e.Detail += " since " + info.RevokedAt.UTC().Format(time.RFC3339)
		}
		if info.Source != "" {
			e.Detail += " (" + info.Source + ")"
		}
		return info, e
	case err == nil && info.Status == StatusGood:
		return info, nil
	}
	if info.Status != StatusUnknown {
		info.Status = StatusUnknown
	}
	if mode == RevocationRequire {
		if err != nil {
			return info, Wrap(ReasonRevocationUnknown, err, "no definitive revocation status")
		}
		return info, Fail(ReasonRevocationUnknown, "no definitive revocation status")
	}
	info.SoftFail = true
	attrs := []any{slog.String("kind", string(kind)), slog.String("issuer", issuer.Subject.String())}
	if info.Source != "" {
		attrs = append(attrs, slog.String("source", info.Source))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	v.logger().WarnContext(ctx, "revocation status unknown; accepted because mode is prefer", attrs...)
	return info, nil
}
