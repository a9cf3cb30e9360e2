package account

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/internal/logref"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
)

// maxCertRefs bounds the certificates remembered per account: a resident
// renews every five years, so a handful covers a lifetime, and a bound
// keeps a record from growing without limit.
const maxCertRefs = 8

// Account is a resident known to Watashi. It is keyed by a random ID,
// never by name or birth date: two residents may share both, and a name
// changes on marriage. The facts come only from a verified signature
// certificate, with that certificate recorded as their source.
//
// The record is stored sealed (see records.go). It keeps of each
// certificate only what the provider uses: the facts, what the evidence
// of verified_claims names (issuer and serial of the signature
// certificate), what a revocation re-check needs, and the keyed link by
// which a presented certificate is recognised; never a certificate
// itself, which would repeat the facts.
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

	// PasskeyHandle is the WebAuthn user handle, random per account, and
	// Passkeys the credentials that sign the resident in after proofing
	// (passkeys.go).
	PasskeyHandle []byte    `json:"passkey_handle,omitempty"`
	Passkeys      []Passkey `json:"passkeys,omitempty"`
}

// FactsSource records which certificate vouched for the facts, so that an
// auditor can tell which card or phone, and when, proved them, and so
// that the provider can ask again later whether that certificate still
// stands: a JPKI signature certificate is revoked when the resident moves
// or changes name, which makes the facts it carried stale.
type FactsSource struct {
	Issuer string `json:"issuer"` // RFC 2253 DN of the issuing CA
	Serial string `json:"serial"` // decimal
	// Link is the certificate's keyed link name (see CertLink).
	Link       string                   `json:"link"`
	NotAfter   time.Time                `json:"not_after"`
	VerifiedAt time.Time                `json:"verified_at"`
	Revocation pkibridge.RevocationInfo `json:"revocation"`
	// Recheck is what a revocation check of the certificate needs; nil
	// when the chain gave no issuer.
	Recheck *RevocationRef `json:"recheck,omitempty"`
	// CheckedAt is the last definitive revocation answer ("good") for the
	// certificate; proofing sets it. Consent checks again when it is
	// older than Options.Recheck.
	CheckedAt time.Time `json:"checked_at,omitzero"`
	// Stale is set, for good, once the certificate is known revoked: the
	// facts are withheld until the resident proves again, which replaces
	// this record.
	Stale   bool      `json:"stale,omitempty"`
	StaleAt time.Time `json:"stale_at,omitzero"`
	// AnnouncedAt is when the facts monitor published that the facts are
	// stale (the resident's mail, relying parties' events): set after the
	// event is stored, so that a crash between the two repeats the
	// event rather than losing it.
	AnnouncedAt time.Time `json:"announced_at,omitzero"`
}

// RevocationRef is what an OCSP or CRL check asks about a certificate,
// besides the serial: the issuer's name and key (OCSP's issuer name and
// key hashes, the CRL's issuer and the signatures on both answers), the
// authority key identifier and the CRL distribution points (which CRL
// partition covers it). None of it is personal; the issuer certificate
// is the CA's, the same for every resident it certified.
type RevocationRef struct {
	RawIssuer      []byte `json:"raw_issuer"` // the certificate's issuer Name, DER
	AuthorityKeyID []byte `json:"authority_key_id,omitempty"`
	// CRLDistributionPoints is the value of the extension, DER.
	CRLDistributionPoints []byte `json:"crl_distribution_points,omitempty"`
	IssuerCert            []byte `json:"issuer_cert"` // the issuing CA's certificate, DER
}

// CertRef is a linked certificate, known by its keyed link name.
type CertRef struct {
	Kind     pkibridge.Kind `json:"kind"`
	Link     string         `json:"link"`
	NotAfter time.Time      `json:"not_after"`
	LinkedAt time.Time      `json:"linked_at"`
	// Label is the JPKI token an authentication certificate was last
	// used from, as its wallet reported it (TokenLabels): what tells the
	// resident the card from a phone on the account page.
	Label string `json:"label,omitempty"`
}

// Get loads an account; the error wraps store.ErrNotFound when there is
// none. The provider reads facts for claims through it.
func (s *Store) Get(ctx context.Context, id string) (*Account, error) {
	l, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	return l.a, nil
}

// newAccountID is 128 random bits, base64url: unguessable and carrying
// nothing about the person.
func newAccountID() string { return ids.Short() }

func certRef(kind pkibridge.Kind, c *x509.Certificate, link string, now time.Time) CertRef {
	return CertRef{Kind: kind, Link: link, NotAfter: c.NotAfter.UTC(), LinkedAt: now}
}

// addCertRef appends r unless its certificate is already listed, keeping
// the newest maxCertRefs.
func addCertRef(list []CertRef, r CertRef) []CertRef {
	if slices.ContainsFunc(list, func(x CertRef) bool { return x.Link == r.Link }) {
		return list
	}
	list = append(list, r)
	if len(list) > maxCertRefs {
		list = slices.Clone(list[len(list)-maxCertRefs:])
	}
	return list
}

// LinkedTo returns the account a certificate is linked to, or "".
func (s *Store) LinkedTo(ctx context.Context, c *x509.Certificate) (string, error) {
	link, err := s.CertLink(ctx, c)
	if err != nil {
		return "", err
	}
	return s.linked(ctx, link)
}

// linked returns the account a certificate link points at, or "".
func (s *Store) linked(ctx context.Context, link string) (string, error) {
	b, err := s.kv.Get(ctx, certLinkKey(link))
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("account: load certificate link: %w", err)
	}
	return string(b), nil
}

// linkedLive is linked, dropping a link whose account no longer exists (a
// deletion that stopped half-way), so that the certificate can prove a
// new account.
func (s *Store) linkedLive(ctx context.Context, link string) (string, error) {
	id, err := s.linked(ctx, link)
	if err != nil || id == "" {
		return id, err
	}
	if _, err := s.load(ctx, id); errors.Is(err, ErrNotFound) {
		return "", s.dropLink(ctx, link, id)
	} else if err != nil {
		return "", err
	}
	return id, nil
}

// linkCert links a certificate to accountID. SetNX makes the first link
// final: two proofings racing with one certificate cannot attach it to
// two accounts. Linking again to the same account is a no-op.
func (s *Store) linkCert(ctx context.Context, link, accountID string) error {
	ok, err := s.kv.SetNX(ctx, certLinkKey(link), []byte(accountID), 0)
	if err != nil {
		return fmt.Errorf("account: link certificate: %w", err)
	}
	if ok {
		return nil
	}
	cur, err := s.linked(ctx, link)
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

// SignIn resolves a verified authentication certificate to its account.
// An unlinked certificate is not_enrolled: the resident must prove their
// identity first.
func (s *Store) SignIn(ctx context.Context, auth *pkibridge.Result) (string, error) {
	link, err := s.CertLink(ctx, auth.Leaf)
	if err != nil {
		return "", err
	}
	id, err := s.linked(ctx, link)
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
	if !slices.ContainsFunc(a.AuthCerts, func(r CertRef) bool { return r.Link == link }) {
		// A link to a signature certificate, or a stale link: never let
		// the signature certificate sign anyone in.
		return "", fail(ErrNotEnrolled, "the certificate is not an authentication certificate of the account")
	}
	return id, nil
}

// SignedIn is what SignInNoting found: the account, the certificate's
// link in it, and why the token label was not recorded, if it was not.
type SignedIn struct {
	AccountID, Link string
	// LabelErr is NoteAuthLabel's failure; only the account page's
	// wording depends on the label, so it does not fail the sign-in.
	LabelErr error
}

// SignInNoting is SignIn followed by NoteAuthLabel(label), from the one
// reading of the account that SignIn makes: a sign-in from a token whose
// label is already recorded reads the account once, not twice.
func (s *Store) SignInNoting(ctx context.Context, auth *pkibridge.Result, label string) (SignedIn, error) {
	link, err := s.CertLink(ctx, auth.Leaf)
	if err != nil {
		return SignedIn{}, err
	}
	id, err := s.linked(ctx, link)
	if err != nil {
		return SignedIn{}, err
	}
	if id == "" {
		return SignedIn{}, fail(ErrNotEnrolled, "the authentication certificate is not linked to an account")
	}
	l, err := s.load(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return SignedIn{}, fail(ErrNotEnrolled, "the linked account no longer exists")
	}
	if err != nil {
		return SignedIn{}, err
	}
	i := slices.IndexFunc(l.a.AuthCerts, func(r CertRef) bool { return r.Link == link })
	if i < 0 {
		// A link to a signature certificate, or a stale link: never let
		// the signature certificate sign anyone in.
		return SignedIn{}, fail(ErrNotEnrolled, "the certificate is not an authentication certificate of the account")
	}
	out := SignedIn{AccountID: id, Link: link}
	if !KnownTokenLabel(label) || l.a.AuthCerts[i].Label == label {
		return out, nil
	}
	a := *l.a
	a.AuthCerts = slices.Clone(a.AuthCerts)
	a.AuthCerts[i].Label = label
	if won, err := s.replace(ctx, l, &a); err != nil {
		out.LabelErr = err
	} else if !won {
		// Changed meanwhile: the retrying path.
		out.LabelErr = s.NoteAuthLabel(ctx, id, link, label)
	}
	return out, nil
}

// proofing is one identity proofing's certificates and their links.
type proofing struct {
	sig, auth         *pkibridge.Result
	sigLink, authLink string
}

// Proof applies an identity proofing: sig and auth are the verified
// signature and authentication certificates submitted together,
// sessionAccount the account of the browser's SSO session when the
// proofing was started while signed in ("" otherwise).
//
// The account is the one every known party points at: the session's, the
// one the signature certificate is linked to, the one the authentication
// certificate is linked to. If they disagree the proofing is refused
// (account_conflict). If none exists a new account is created. An
// existing account accepts the new facts only for the same person (name
// and birth date), which covers a renewed card or an address change;
// anything else is identity_mismatch. A session of a deleted account
// counts for nothing.
func (s *Store) Proof(ctx context.Context, sig, auth *pkibridge.Result, sessionAccount string) (id string, created bool, err error) {
	p := &proofing{sig: sig, auth: auth}
	if p.sigLink, err = s.CertLink(ctx, sig.Leaf); err != nil {
		return "", false, err
	}
	if p.authLink, err = s.CertLink(ctx, auth.Leaf); err != nil {
		return "", false, err
	}
	if sessionAccount != "" {
		if _, err := s.load(ctx, sessionAccount); errors.Is(err, ErrNotFound) {
			sessionAccount = ""
		} else if err != nil {
			return "", false, err
		}
	}
	for range casRetries {
		sigAcct, err := s.linkedLive(ctx, p.sigLink)
		if err != nil {
			return "", false, err
		}
		authAcct, err := s.linkedLive(ctx, p.authLink)
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
			if err := s.refreshAccount(ctx, target, p); err != nil {
				return "", false, err
			}
			return target, false, nil
		}
		id, won, err := s.createAccount(ctx, p)
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
// the same certificate won; the new account is removed and won is false.
func (s *Store) createAccount(ctx context.Context, p *proofing) (id string, won bool, err error) {
	now := s.now().UTC()
	id = newAccountID()
	a := &Account{
		ID:          id,
		Facts:       p.sig.Attributes,
		FactsSource: factsSource(p.sig, p.sigLink, now),
		AuthCerts:   []CertRef{certRef(pkibridge.KindAuthentication, p.auth.Leaf, p.authLink, now)},
		SignCerts:   []CertRef{certRef(pkibridge.KindSignature, p.sig.Leaf, p.sigLink, now)},
		CreatedAt:   now,
		UpdatedAt:   now,
	}
	ok, err := s.insert(ctx, a)
	if err != nil {
		return "", false, err
	}
	if !ok {
		return "", false, errors.New("account: account ID collision")
	}
	undo := func(what string) {
		if derr := s.Delete(context.WithoutCancel(ctx), id); derr != nil {
			s.log.WarnContext(ctx, what+" not removed", logref.Account(id), "error", derr)
		}
	}
	ok, err = s.kv.SetNX(ctx, certLinkKey(p.sigLink), []byte(id), 0)
	if err != nil || !ok {
		undo("orphan account")
		if err != nil {
			return "", false, fmt.Errorf("account: link certificate: %w", err)
		}
		return "", false, nil
	}
	if err := s.linkCert(ctx, p.authLink, id); err != nil {
		// The authentication certificate was linked elsewhere between our
		// check and now. Undo the account and its signature link so that
		// a retry starts clean, and refuse.
		undo("half-created account")
		return "", false, err
	}
	s.created.Inc()
	return id, true, nil
}

// refreshAccount links both certificates to an existing account and, for
// the same person, replaces the facts with the newly verified ones.
func (s *Store) refreshAccount(ctx context.Context, id string, p *proofing) error {
	now := s.now().UTC()
	for range casRetries {
		l, err := s.load(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return fail(ErrConflict, "the account linked to these certificates no longer exists")
		}
		if err != nil {
			return err
		}
		a := l.a
		if a.Facts != nil && !sameIdentity(a.Facts, p.sig.Attributes) {
			return fail(ErrIdentityMismatch, "the signature certificate names another person than the account")
		}
		a.Facts = p.sig.Attributes
		a.FactsSource = factsSource(p.sig, p.sigLink, now)
		a.SignCerts = addCertRef(a.SignCerts, certRef(pkibridge.KindSignature, p.sig.Leaf, p.sigLink, now))
		a.AuthCerts = addCertRef(a.AuthCerts, certRef(pkibridge.KindAuthentication, p.auth.Leaf, p.authLink, now))
		a.UpdatedAt = now
		ok, err := s.replace(ctx, l, a)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := s.linkCert(ctx, p.sigLink, id); err != nil {
			return err
		}
		return s.linkCert(ctx, p.authLink, id)
	}
	return ErrContention
}

// oidExtCRLDistributionPoints is id-ce-cRLDistributionPoints.
var oidExtCRLDistributionPoints = asn1.ObjectIdentifier{2, 5, 29, 31}

func factsSource(sig *pkibridge.Result, link string, now time.Time) *FactsSource {
	leaf := sig.Leaf
	fs := &FactsSource{
		Issuer:     leaf.Issuer.String(),
		Serial:     leaf.SerialNumber.String(),
		Link:       link,
		NotAfter:   leaf.NotAfter.UTC(),
		VerifiedAt: now,
		Revocation: sig.Revocation,
	}
	if len(sig.Chain) > 1 && sig.Chain[1] != nil {
		ref := &RevocationRef{
			RawIssuer:      slices.Clone(leaf.RawIssuer),
			AuthorityKeyID: slices.Clone(leaf.AuthorityKeyId),
			IssuerCert:     slices.Clone(sig.Chain[1].Raw),
		}
		for _, ext := range leaf.Extensions {
			if ext.Id.Equal(oidExtCRLDistributionPoints) {
				ref.CRLDistributionPoints = slices.Clone(ext.Value)
			}
		}
		fs.Recheck = ref
	}
	if sig.Revocation.Status == pkibridge.StatusGood {
		fs.CheckedAt = now
	}
	return fs
}
