package account

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
)

// Store keys of the durable records. Accounts and links
// have no TTL and need a durable backend (Redis with AOF in production).
func accountKey(id string) string { return "acct:" + id }

// certLinkKey maps a certificate (SHA-256 fingerprint of its DER, hex) to
// the account it proves. Both the signature and the authentication
// certificate of a proofing get one.
func certLinkKey(fingerprint string) string { return "link:" + fingerprint }

// maxCertRefs bounds the certificates remembered per account: a resident
// renews every five years, so a handful covers a lifetime, and a bound
// keeps a record from growing without limit.
const maxCertRefs = 8

// Account is a resident known to Watashi. It is keyed by a random ID,
// never by name or birth date: two residents may share both, and a name
// changes on marriage. The facts come only from a verified signature
// certificate, with that certificate recorded as their source.
type Account struct {
	ID          string                `json:"id"`
	Facts       *pkibridge.Attributes `json:"facts,omitempty"`
	FactsSource *FactsSource          `json:"facts_source,omitempty"`
	// AuthCerts are the user-authentication certificates that sign this
	// resident in; SignCerts the signature certificates whose facts were
	// accepted (the last one is FactsSource).
	AuthCerts []CertRef `json:"auth_certs,omitempty"`
	SignCerts []CertRef `json:"sign_certs,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// FactsSource records which certificate vouched for the facts, so that an
// auditor can tell which card or phone, and when, proved them, and so
// that the provider can ask again later whether that certificate still
// stands: a JPKI signature certificate is revoked when the resident moves
// or changes name, which makes the facts it carried stale.
type FactsSource struct {
	Issuer      string                   `json:"issuer"`      // RFC 2253 DN of the issuing CA
	Serial      string                   `json:"serial"`      // decimal
	Fingerprint string                   `json:"fingerprint"` // SHA-256 of the certificate DER, hex
	NotAfter    time.Time                `json:"not_after"`
	VerifiedAt  time.Time                `json:"verified_at"`
	Revocation  pkibridge.RevocationInfo `json:"revocation"`
	// Cert and IssuerCert are the DER of the signature certificate and of
	// its issuing CA certificate: what a revocation check needs.
	// Certificates are public documents, but this one carries the basic
	// four facts, so it is kept with them and never logged.
	Cert       []byte `json:"cert,omitempty"`
	IssuerCert []byte `json:"issuer_cert,omitempty"`
	// CheckedAt is the last definitive revocation answer ("good") for
	// Cert; proofing sets it. Consent checks again when it is older than
	// Options.Recheck.
	CheckedAt time.Time `json:"checked_at,omitzero"`
	// Stale is set, for good, once Cert is known revoked: the facts are
	// withheld until the resident proves again, which replaces this
	// record.
	Stale   bool      `json:"stale,omitempty"`
	StaleAt time.Time `json:"stale_at,omitzero"`
}

// CertRef identifies a linked certificate without keeping the whole DER.
type CertRef struct {
	Kind        pkibridge.Kind `json:"kind"`
	Issuer      string         `json:"issuer"`
	Serial      string         `json:"serial"`
	Fingerprint string         `json:"fingerprint"`
	NotAfter    time.Time      `json:"not_after"`
	LinkedAt    time.Time      `json:"linked_at"`
}

// account loads an account; the error wraps store.ErrNotFound when there
// is none. The provider reads facts for claims through it.
func (s *Store) Get(ctx context.Context, id string) (*Account, error) {
	a, _, err := s.loadAccount(ctx, id)
	return a, err
}

func (s *Store) loadAccount(ctx context.Context, id string) (*Account, []byte, error) {
	if id == "" {
		return nil, nil, ErrNotFound
	}
	b, err := s.kv.Get(ctx, accountKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("account: load account: %w", err)
	}
	a := new(Account)
	if err := json.Unmarshal(b, a); err != nil {
		return nil, nil, fmt.Errorf("account: account record: %w", err)
	}
	return a, b, nil
}

// newAccountID is 128 random bits, base64url: unguessable and carrying
// nothing about the person.
func newAccountID() string { return ids.Short() }

// certFingerprint is the SHA-256 of the certificate DER, lowercase hex.
func Fingerprint(c *x509.Certificate) string {
	h := sha256.Sum256(c.Raw)
	return hex.EncodeToString(h[:])
}

func certRef(kind pkibridge.Kind, c *x509.Certificate, now time.Time) CertRef {
	return CertRef{
		Kind:        kind,
		Issuer:      c.Issuer.String(),
		Serial:      c.SerialNumber.String(),
		Fingerprint: Fingerprint(c),
		NotAfter:    c.NotAfter.UTC(),
		LinkedAt:    now,
	}
}

// addCertRef appends r unless its certificate is already listed, keeping
// the newest maxCertRefs.
func addCertRef(list []CertRef, r CertRef) []CertRef {
	if slices.ContainsFunc(list, func(x CertRef) bool { return x.Fingerprint == r.Fingerprint }) {
		return list
	}
	list = append(list, r)
	if len(list) > maxCertRefs {
		list = slices.Clone(list[len(list)-maxCertRefs:])
	}
	return list
}

// linkedAccount returns the account a certificate is linked to, or "".
func (s *Store) Linked(ctx context.Context, fingerprint string) (string, error) {
	b, err := s.kv.Get(ctx, certLinkKey(fingerprint))
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("account: load certificate link: %w", err)
	}
	return string(b), nil
}

// linkCert links a certificate to accountID. SetNX makes the first link
// final: two proofings racing with one certificate cannot attach it to
// two accounts. Linking again to the same account is a no-op.
func (s *Store) linkCert(ctx context.Context, fingerprint, accountID string) error {
	ok, err := s.kv.SetNX(ctx, certLinkKey(fingerprint), []byte(accountID), 0)
	if err != nil {
		return fmt.Errorf("account: link certificate: %w", err)
	}
	if ok {
		return nil
	}
	cur, err := s.Linked(ctx, fingerprint)
	if err != nil {
		return err
	}
	if cur != accountID {
		return fail(ErrConflict, "the certificate is linked to another account")
	}
	return nil
}

// sameIdentity compares the facts that do not change over a life (name
// and birth date; the address does): a renewed signature certificate
// may only refresh an account that belongs to the same person. A name
// change therefore needs a new account, which is the safe failure.
func sameIdentity(a, b *pkibridge.Attributes) bool {
	return a != nil && b != nil && a.Name == b.Name && a.Birthdate == b.Birthdate
}

// signinAccount resolves a verified authentication certificate to its
// account. An unlinked certificate is not_enrolled: the resident must
// prove their identity first.
func (s *Store) SignIn(ctx context.Context, auth *pkibridge.Result) (string, error) {
	fp := Fingerprint(auth.Leaf)
	id, err := s.Linked(ctx, fp)
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", fail(ErrNotEnrolled, "the authentication certificate is not linked to an account")
	}
	a, err := s.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return "", fail(ErrNotEnrolled, "the linked account no longer exists")
	}
	if err != nil {
		return "", err
	}
	if !slices.ContainsFunc(a.AuthCerts, func(r CertRef) bool { return r.Fingerprint == fp }) {
		// A link to a signature certificate, or a stale link: never let
		// the signature certificate's fingerprint sign anyone in.
		return "", fail(ErrNotEnrolled, "the certificate is not an authentication certificate of the account")
	}
	return id, nil
}

// proofAccount applies an identity proofing: sig and auth are the
// verified signature and authentication certificates submitted together,
// sessionAccount the account of the browser's SSO session when the
// proofing was started while signed in ("" otherwise).
//
// The account is the one every known party points at: the session's, the
// one the signature certificate is linked to, the one the authentication
// certificate is linked to. If they disagree the proofing is refused
// (account_conflict). If none exists a new account is created. An
// existing account accepts the new facts only for the same person (name
// and birth date), which covers a renewed card or an address change;
// anything else is identity_mismatch.
func (s *Store) Proof(ctx context.Context, sig, auth *pkibridge.Result, sessionAccount string) (id string, created bool, err error) {
	sigFP, authFP := Fingerprint(sig.Leaf), Fingerprint(auth.Leaf)
	for range casRetries {
		sigAcct, err := s.Linked(ctx, sigFP)
		if err != nil {
			return "", false, err
		}
		authAcct, err := s.Linked(ctx, authFP)
		if err != nil {
			return "", false, err
		}
		target := ""
		for _, cand := range []string{sessionAccount, sigAcct, authAcct} {
			switch {
			case cand == "":
			case target == "":
				target = cand
			case cand != target:
				return "", false, fail(ErrConflict, "the certificates or the session belong to different accounts")
			}
		}
		if target != "" {
			if err := s.refreshAccount(ctx, target, sig, auth); err != nil {
				return "", false, err
			}
			return target, false, nil
		}
		id, won, err := s.createAccount(ctx, sig, auth)
		if err != nil {
			return "", false, err
		}
		if won {
			return id, true, nil
		}
		// Another proofing linked the signature certificate first: go
		// round again and join its account.
	}
	return "", false, ErrContention
}

// createAccount writes a new account, then claims the signature
// certificate's link. Losing that claim means a concurrent proofing of
// the same certificate won; the new record is removed and won is false.
func (s *Store) createAccount(ctx context.Context, sig, auth *pkibridge.Result) (id string, won bool, err error) {
	now := s.now().UTC()
	id = newAccountID()
	a := &Account{
		ID:          id,
		Facts:       sig.Attributes,
		FactsSource: factsSource(sig, now),
		AuthCerts:   []CertRef{certRef(pkibridge.KindAuthentication, auth.Leaf, now)},
		SignCerts:   []CertRef{certRef(pkibridge.KindSignature, sig.Leaf, now)},
		CreatedAt:   now,
		UpdatedAt:   now,
	}
	b, err := json.Marshal(a)
	if err != nil {
		return "", false, err
	}
	ok, err := s.kv.SetNX(ctx, accountKey(id), b, 0)
	if err != nil {
		return "", false, fmt.Errorf("account: create account: %w", err)
	}
	if !ok {
		return "", false, errors.New("account: account ID collision")
	}
	ok, err = s.kv.SetNX(ctx, certLinkKey(Fingerprint(sig.Leaf)), []byte(id), 0)
	if err != nil || !ok {
		if derr := s.kv.Delete(ctx, accountKey(id)); derr != nil {
			s.log.WarnContext(ctx, "orphan account record not removed", "account", id, "error", derr)
		}
		if err != nil {
			return "", false, fmt.Errorf("account: link certificate: %w", err)
		}
		return "", false, nil
	}
	if err := s.linkCert(ctx, Fingerprint(auth.Leaf), id); err != nil {
		// The authentication certificate was linked elsewhere between our
		// check and now. Undo the signature link so that a retry starts
		// clean, and refuse.
		if derr := s.kv.Delete(ctx, certLinkKey(Fingerprint(sig.Leaf)), accountKey(id)); derr != nil {
			s.log.WarnContext(ctx, "half-created account not removed", "account", id, "error", derr)
		}
		return "", false, err
	}
	s.created.Inc()
	return id, true, nil
}

// refreshAccount links both certificates to an existing account and, for
// the same person, replaces the facts with the newly verified ones.
func (s *Store) refreshAccount(ctx context.Context, id string, sig, auth *pkibridge.Result) error {
	now := s.now().UTC()
	for range casRetries {
		a, old, err := s.loadAccount(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return fail(ErrConflict, "the account linked to these certificates no longer exists")
		}
		if err != nil {
			return err
		}
		if a.Facts != nil && !sameIdentity(a.Facts, sig.Attributes) {
			return fail(ErrIdentityMismatch, "the signature certificate names another person than the account")
		}
		a.Facts = sig.Attributes
		a.FactsSource = factsSource(sig, now)
		a.SignCerts = addCertRef(a.SignCerts, certRef(pkibridge.KindSignature, sig.Leaf, now))
		a.AuthCerts = addCertRef(a.AuthCerts, certRef(pkibridge.KindAuthentication, auth.Leaf, now))
		a.UpdatedAt = now
		b, err := json.Marshal(a)
		if err != nil {
			return err
		}
		ok, err := s.kv.CompareAndSwap(ctx, accountKey(id), old, b)
		if err != nil {
			return fmt.Errorf("account: update account: %w", err)
		}
		if !ok {
			continue
		}
		if err := s.linkCert(ctx, Fingerprint(sig.Leaf), id); err != nil {
			return err
		}
		return s.linkCert(ctx, Fingerprint(auth.Leaf), id)
	}
	return ErrContention
}

func factsSource(sig *pkibridge.Result, now time.Time) *FactsSource {
	fs := &FactsSource{
		Issuer:      sig.Leaf.Issuer.String(),
		Serial:      sig.Leaf.SerialNumber.String(),
		Fingerprint: Fingerprint(sig.Leaf),
		NotAfter:    sig.Leaf.NotAfter.UTC(),
		VerifiedAt:  now,
		Revocation:  sig.Revocation,
		Cert:        slices.Clone(sig.Leaf.Raw),
	}
	if len(sig.Chain) > 1 && sig.Chain[1] != nil {
		fs.IssuerCert = slices.Clone(sig.Chain[1].Raw)
	}
	if sig.Revocation.Status == pkibridge.StatusGood {
		fs.CheckedAt = now
	}
	return fs
}
