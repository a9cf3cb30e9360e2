package jpkisim

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/watashi-id/watashi/pkibridge"
)

// Facts are the basic four facts to put into a signature certificate.
// Birthdate is the raw EYYYYMMDD form, so tests can also issue malformed
// values; use EraDate to build it from a time.
type Facts struct {
	Name                string // family and given name separated by U+3000
	NameSubstitution    string
	Gender              string // "1", "2" or "3"
	Birthdate           string // EYYYYMMDD
	Address             string
	AddressSubstitution string
}

// CAOptions configure a simulated CA. Zero values give a JPKI-like CA.
type CAOptions struct {
	// Kind selects the OU: signature or user authentication.
	Kind pkibridge.Kind
	// Name overrides the CommonName-less JPKI DN's organisation ("JPKI-SIMULATOR").
	Organization string
	KeyBits      int       // default 2048
	NotBefore    time.Time // default now - 1h
	NotAfter     time.Time // default now + 10 years
	// Key reuses an existing key (e.g. to make a second generation with the
	// same DN but another key, set Key nil and Organization equal).
	Key *rsa.PrivateKey
}

// CA is a simulated J-LIS certificate authority.
type CA struct {
	Kind pkibridge.Kind
	Cert *x509.Certificate
	Key  *rsa.PrivateKey

	mu         sync.Mutex
	nextSerial int64
	revoked    map[string]Revocation // by serial, decimal
	crlNumber  int64
}

// Revocation is one revoked certificate.
type Revocation struct {
	Serial     *big.Int
	RevokedAt  time.Time
	ReasonCode int
}

// NewCA creates a self-signed simulator root.
func NewCA(opts CAOptions) (*CA, error) {
	if opts.Kind == "" {
		opts.Kind = pkibridge.KindSignature
	}
	if opts.KeyBits == 0 {
		opts.KeyBits = 2048
	}
	if opts.Organization == "" {
		opts.Organization = "JPKI-SIMULATOR"
	}
	now := time.Now()
	if opts.NotBefore.IsZero() {
		opts.NotBefore = now.Add(-time.Hour)
	}
	if opts.NotAfter.IsZero() {
		opts.NotAfter = now.AddDate(10, 0, 0)
	}
	key := opts.Key
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, opts.KeyBits); err != nil {
			return nil, err
		}
	}
	ou := "JPKI for digital signature"
	if opts.Kind == pkibridge.KindAuthentication {
		ou = "JPKI for user authentication"
	}
	ski := keyID(&key.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject: pkix.Name{
			Country:            []string{"JP"},
			Organization:       []string{opts.Organization},
			OrganizationalUnit: []string{ou, "Japan Agency for Local Authority Information Systems (SIMULATOR)"},
		},
		NotBefore:             opts.NotBefore,
		NotAfter:              opts.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          ski,
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Kind: opts.Kind, Cert: cert, Key: key, nextSerial: 1000, revoked: map[string]Revocation{}}, nil
}

// LeafOptions shape one issued certificate. The zero value is a valid card
// certificate of the CA's kind, valid from an hour ago for five years.
type LeafOptions struct {
	Facts     *Facts // signature certificates only; required for them unless OmitFacts
	OmitFacts bool
	Key       crypto.Signer // default: fresh RSA-2048
	KeyBits   int
	NotBefore time.Time
	NotAfter  time.Time
	// Policies overrides the policy OIDs (dotted). Nil: the kind's card OID.
	Policies []string
	// KeyUsage overrides the key usage; -1 omits the extension.
	KeyUsage x509.KeyUsage
	// KeyUsageNonCritical marks the extension non-critical.
	KeyUsageNonCritical bool
	// IsCA issues a CA certificate as if it were a leaf (a negative case).
	IsCA bool
	// ExtraExtensions are appended as-is (e.g. an unknown critical one).
	ExtraExtensions []pkix.Extension
	// SignatureAlgorithm overrides SHA256WithRSA.
	SignatureAlgorithm x509.SignatureAlgorithm
}

// Leaf is an issued certificate with its private key.
type Leaf struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Issue signs a leaf certificate for the given options.
func (ca *CA) Issue(opts LeafOptions) (*Leaf, error) {
	key := opts.Key
	if key == nil {
		bits := opts.KeyBits
		if bits == 0 {
			bits = 2048
		}
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, err
		}
		key = k
	}
	now := time.Now()
	if opts.NotBefore.IsZero() {
		opts.NotBefore = now.Add(-time.Hour)
	}
	if opts.NotAfter.IsZero() {
		opts.NotAfter = now.AddDate(5, 0, 0)
	}
	ca.mu.Lock()
	ca.nextSerial++
	serial := big.NewInt(ca.nextSerial)
	ca.mu.Unlock()

	policies := opts.Policies
	if policies == nil {
		policies = []string{pkibridge.PolicySignature}
		if ca.Kind == pkibridge.KindAuthentication {
			policies = []string{pkibridge.PolicyAuthentication}
		}
	}
	var exts []pkix.Extension
	if len(policies) > 0 {
		ext, err := policiesExtension(policies)
		if err != nil {
			return nil, err
		}
		exts = append(exts, ext)
	}
	ku := opts.KeyUsage
	if ku == 0 {
		ku = x509.KeyUsageDigitalSignature
		if ca.Kind == pkibridge.KindSignature {
			ku |= x509.KeyUsageContentCommitment
		}
	}
	if ku != -1 {
		ext, err := keyUsageExtension(ku, !opts.KeyUsageNonCritical)
		if err != nil {
			return nil, err
		}
		exts = append(exts, ext)
	}
	if ca.Kind == pkibridge.KindSignature && !opts.OmitFacts {
		if opts.Facts == nil {
			return nil, errors.New("jpkisim: signature certificates need Facts (or OmitFacts)")
		}
		ext, err := SANExtension(*opts.Facts)
		if err != nil {
			return nil, err
		}
		exts = append(exts, ext)
	}
	exts = append(exts, opts.ExtraExtensions...)
	sigAlg := opts.SignatureAlgorithm
	if sigAlg == 0 {
		sigAlg = x509.SHA256WithRSA
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Country:      []string{"JP"},
			Organization: []string{"JPKI-SIMULATOR"},
			CommonName:   fmt.Sprintf("%s-%d", kindLabel(ca.Kind), serial.Int64()),
		},
		NotBefore:             opts.NotBefore,
		NotAfter:              opts.NotAfter,
		BasicConstraintsValid: opts.IsCA,
		IsCA:                  opts.IsCA,
		AuthorityKeyId:        ca.Cert.SubjectKeyId,
		ExtraExtensions:       exts,
		SignatureAlgorithm:    sigAlg,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Leaf{Cert: cert, Key: key}, nil
}

// Revoke marks a serial revoked from the given time (reasonCode per RFC 5280).
func (ca *CA) Revoke(serial *big.Int, at time.Time, reasonCode int) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.revoked[serial.String()] = Revocation{Serial: new(big.Int).Set(serial), RevokedAt: at.UTC().Truncate(time.Second), ReasonCode: reasonCode}
}

// IsRevoked reports the revocation of serial, if any.
func (ca *CA) IsRevoked(serial *big.Int) (Revocation, bool) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	r, ok := ca.revoked[serial.String()]
	return r, ok
}

// Revocations lists every revoked serial.
func (ca *CA) Revocations() []Revocation {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	out := make([]Revocation, 0, len(ca.revoked))
	for _, r := range ca.revoked {
		out = append(out, r)
	}
	return out
}

// EraDate renders t as the JPKI EYYYYMMDD birth date with the right era digit.
func EraDate(t time.Time) string {
	d := t.Format("20060102")
	era := 0
	switch {
	case d >= "20190501":
		era = 5
	case d >= "19890108":
		era = 4
	case d >= "19261225":
		era = 3
	case d >= "19120730":
		era = 2
	case d >= "18680125":
		era = 1
	}
	return fmt.Sprintf("%d%s", era, d)
}

// SANExtension encodes facts as the JPKI SubjectAltName: one otherName per
// fact, each value [0] EXPLICIT UTF8String. Empty fields are omitted, so
// tests can issue certificates with a fact missing.
func SANExtension(f Facts) (pkix.Extension, error) {
	type otherName struct {
		TypeID asn1.ObjectIdentifier
		Value  asn1.RawValue // [0] EXPLICIT, built by hand: encoding/asn1 ignores tag parameters on a RawValue
	}
	var names []asn1.RawValue
	add := func(oid asn1.ObjectIdentifier, v string) error {
		if v == "" {
			return nil
		}
		utf8, err := asn1.MarshalWithParams(v, "utf8")
		if err != nil {
			return err
		}
		explicit := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: utf8}
		on, err := asn1.Marshal(otherName{TypeID: oid, Value: explicit})
		if err != nil {
			return err
		}
		// GeneralName otherName is [0] IMPLICIT: retag the SEQUENCE.
		var raw asn1.RawValue
		if _, err := asn1.Unmarshal(on, &raw); err != nil {
			return err
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: raw.Bytes})
		return nil
	}
	for _, kv := range []struct {
		oid asn1.ObjectIdentifier
		v   string
	}{
		{pkibridge.OIDName, f.Name},
		{pkibridge.OIDNameSubstitution, f.NameSubstitution},
		{pkibridge.OIDGender, f.Gender},
		{pkibridge.OIDBirthdate, f.Birthdate},
		{pkibridge.OIDAddress, f.Address},
		{pkibridge.OIDAddressSubstitution, f.AddressSubstitution},
	} {
		if err := add(kv.oid, kv.v); err != nil {
			return pkix.Extension{}, err
		}
	}
	val, err := asn1.Marshal(names)
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: val}, nil
}

func policiesExtension(oids []string) (pkix.Extension, error) {
	type policyInfo struct{ ID asn1.ObjectIdentifier }
	var infos []policyInfo
	for _, s := range oids {
		oid, err := parseOID(s)
		if err != nil {
			return pkix.Extension{}, err
		}
		infos = append(infos, policyInfo{oid})
	}
	val, err := asn1.Marshal(infos)
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 32}, Value: val}, nil
}

func keyUsageExtension(ku x509.KeyUsage, critical bool) (pkix.Extension, error) {
	var a [2]byte
	a[0] = reverseBitsInAByte(byte(ku))
	a[1] = reverseBitsInAByte(byte(ku >> 8))
	l := 1
	if a[1] != 0 {
		l = 2
	}
	bits := a[:l]
	val, err := asn1.Marshal(asn1.BitString{Bytes: bits, BitLength: asn1BitLength(bits)})
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: critical, Value: val}, nil
}

func reverseBitsInAByte(in byte) byte {
	b1 := in>>4 | in<<4
	b2 := b1>>2&0x33 | b1<<2&0xcc
	return b2>>1&0x55 | b2<<1&0xaa
}

func asn1BitLength(b []byte) int {
	bitLen := len(b) * 8
	for i := range b {
		x := b[len(b)-1-i]
		for bit := uint(0); bit < 8; bit++ {
			if (x>>bit)&1 == 1 {
				return bitLen
			}
			bitLen--
		}
	}
	return 0
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	var oid asn1.ObjectIdentifier
	n := 0
	have := false
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if !have {
				return nil, fmt.Errorf("jpkisim: bad OID %q", s)
			}
			oid = append(oid, n)
			n, have = 0, false
			continue
		}
		if s[i] < '0' || s[i] > '9' {
			return nil, fmt.Errorf("jpkisim: bad OID %q", s)
		}
		n = n*10 + int(s[i]-'0')
		have = true
	}
	return oid, nil
}

func keyID(pub *rsa.PublicKey) []byte {
	der := x509.MarshalPKCS1PublicKey(pub)
	h := crypto.SHA1.New()
	h.Write(der)
	return h.Sum(nil)
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	return n
}

func kindLabel(k pkibridge.Kind) string {
	if k == pkibridge.KindAuthentication {
		return "AUTH"
	}
	return "SIGN"
}
