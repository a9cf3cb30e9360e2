package passkey

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-webauthn/webauthn/metadata"
	"github.com/go-webauthn/webauthn/metadata/providers/memory"
	"github.com/google/uuid"
)

// AAGUIDPolicy refuses authenticator models at registration, by the AAGUID
// the authenticator reports. With attestation "none" the AAGUID is the
// authenticator's own word: the policy keeps honest clients on approved
// models and blocks a model known to be compromised, but it is no proof
// against a forged authenticator.
type AAGUIDPolicy struct {
	// Allowed, when not empty, is the only models accepted; an authenticator
	// reporting no AAGUID (all zeros) is then refused.
	Allowed []uuid.UUID
	// Denied models are refused.
	Denied []uuid.UUID
}

// errAAGUIDRefused: the policy refuses the authenticator model.
var errAAGUIDRefused = errors.New("passkey: authenticator model refused by policy")

// Check applies the policy to the AAGUID of a new credential.
func (p AAGUIDPolicy) Check(aaguid []byte) error {
	id := uuid.Nil
	if len(aaguid) != 0 {
		var err error
		if id, err = uuid.FromBytes(aaguid); err != nil {
			return fmt.Errorf("%w: malformed AAGUID", errAAGUIDRefused)
		}
	}
	if slices.Contains(p.Denied, id) {
		return fmt.Errorf("%w: %s is denied", errAAGUIDRefused, id)
	}
	if len(p.Allowed) > 0 && (id == uuid.Nil || !slices.Contains(p.Allowed, id)) {
		return fmt.Errorf("%w: %s is not allowed", errAAGUIDRefused, id)
	}
	return nil
}

// ParseAAGUIDs parses AAGUIDs written as UUIDs (8-4-4-4-12 hex).
func ParseAAGUIDs(values []string) ([]uuid.UUID, error) {
	var out []uuid.UUID
	for _, v := range values {
		id, err := uuid.Parse(strings.TrimSpace(v))
		if err != nil || len(strings.TrimSpace(v)) != 36 {
			return nil, fmt.Errorf("passkey: %q is not an AAGUID (8-4-4-4-12 hex digits)", v)
		}
		out = append(out, id)
	}
	return out, nil
}

// maxMetadataBlob bounds the metadata file read (the FIDO blob is a few
// megabytes).
const maxMetadataBlob = 32 << 20

// Metadata is a FIDO Metadata Service blob read from a file, verified.
type Metadata struct {
	// Number and NextUpdate are the blob's serial and the date by which
	// FIDO promises a new one; an operator should replace the file then.
	Number     int
	NextUpdate time.Time
	// Entries are the authenticator models the blob describes.
	Entries int
	// Provider answers go-webauthn's questions from the blob.
	Provider metadata.Provider
}

// metadataAlgs are the signature algorithms a blob may use (FIDO MDS3
// §3.1.7 names RS256 and ES256; ours may use the others).
var metadataAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.PS256, jose.ES384, jose.ES512}

// LoadMetadata verifies a FIDO Metadata Service (MDS3) blob, offline:
// the blob is a JWS whose x5c chain must lead to root (the FIDO Alliance
// root, metadata.ProductionMDSRoot, unless an operator pins another), and
// whose signature that chain's first certificate must have made, at now.
// The chain's revocation is not checked: that would need the network, and
// the operator already chose to trust the file they put in place.
//
// The verified blob then feeds go-webauthn: at registration it refuses
// authenticators whose status is revoked or compromised and, with
// attestation requested, checks the attestation against the model's trust
// anchors.
func LoadMetadata(blob []byte, rootPEM string, now time.Time) (*Metadata, error) {
	if len(blob) == 0 || len(blob) > maxMetadataBlob {
		return nil, errors.New("passkey: metadata blob is empty or too large")
	}
	root, err := parseRoot(rootPEM)
	if err != nil {
		return nil, err
	}
	jws, err := jose.ParseSigned(strings.TrimSpace(string(blob)), metadataAlgs)
	if err != nil {
		return nil, fmt.Errorf("passkey: metadata blob is not a JWS: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("passkey: metadata blob must carry exactly one signature")
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	chains, err := jws.Signatures[0].Protected.Certificates(x509.VerifyOptions{
		Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("passkey: metadata blob's certificate chain: %w", err)
	}
	payload, err := jws.Verify(chains[0][0].PublicKey)
	if err != nil {
		return nil, fmt.Errorf("passkey: metadata blob's signature: %w", err)
	}
	var pj metadata.PayloadJSON
	if err := json.Unmarshal(payload, &pj); err != nil {
		return nil, fmt.Errorf("passkey: metadata payload: %w", err)
	}
	dec, err := metadata.NewDecoder(metadata.WithIgnoreEntryParsingErrors())
	if err != nil {
		return nil, err
	}
	md, err := dec.Parse(&pj)
	if err != nil {
		return nil, fmt.Errorf("passkey: metadata payload: %w", err)
	}
	prov, err := memory.New(
		memory.WithMetadata(md.ToMap()),
		// Models the blob does not list (and the all-zero AAGUID "none"
		// attestation may bring) are not refused for that alone.
		memory.WithValidateEntry(false),
		memory.WithValidateEntryPermitZeroAAGUID(true),
		memory.WithValidateStatus(true),
		memory.WithValidateTrustAnchor(true),
		memory.WithValidateAttestationTypes(true),
	)
	if err != nil {
		return nil, fmt.Errorf("passkey: metadata provider: %w", err)
	}
	return &Metadata{Number: md.Parsed.Number, NextUpdate: md.Parsed.NextUpdate, Entries: len(md.Parsed.Entries), Provider: prov}, nil
}

// parseRoot reads the trust anchor: PEM, or the bare base64 DER that
// go-webauthn keeps the FIDO root in.
func parseRoot(s string) (*x509.Certificate, error) {
	if s == "" {
		s = metadata.ProductionMDSRoot
	}
	var der []byte
	if b, _ := pem.Decode([]byte(s)); b != nil {
		der = b.Bytes
	} else {
		var err error
		if der, err = base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), "")); err != nil {
			return nil, fmt.Errorf("passkey: metadata root: %w", err)
		}
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("passkey: metadata root: %w", err)
	}
	return c, nil
}
