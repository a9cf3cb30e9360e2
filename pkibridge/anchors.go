package pkibridge

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"embed"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Bounds on anchor input. Anchor files are configuration, but a wrong path
// (a log file, a device) must fail quickly instead of eating memory.
const (
	// MaxCertificateFileBytes bounds one PEM or DER input to
	// ParseCertificates and one file read by LoadAnchors.
	MaxCertificateFileBytes = 1 << 20
	// MaxCertificatesPerFile bounds how many certificates one input holds.
	MaxCertificatesPerFile = 256
)

//go:embed roots/*.pem
var jlisRoots embed.FS

// Anchors is a set of trust anchors matched by key. J-LIS reuses one
// distinguished name across CA generations (2015, 2023, ...), so a name
// says nothing about which key signed; every lookup here is by the
// SubjectPublicKeyInfo or the SubjectKeyId. An Anchors is immutable once
// built and safe for concurrent use.
type Anchors struct {
	certs  []*x509.Certificate
	pool   *x509.CertPool
	bySPKI map[[sha256.Size]byte]*x509.Certificate
	bySKI  map[string][]*x509.Certificate
	// own holds what is worked out once per anchor certificate, keyed by
	// the pointers chain building hands back, so that the verification
	// path neither hashes the key nor words the name again.
	own map[*x509.Certificate]anchorInfo
}

// anchorInfo is precomputed for each anchor certificate.
type anchorInfo struct {
	byKey *x509.Certificate // what bySPKI holds for its key
	role  string            // "anchor <subject>", for error details
}

// ParseCertificates reads certificates from PEM (any number of CERTIFICATE
// blocks, text around them ignored) or from a single DER certificate, so
// that operators can point at whatever form J-LIS or their CA tooling
// published. Anything else is ReasonMalformed.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	if len(data) == 0 {
		return nil, Fail(ReasonMalformed, "certificate input is empty")
	}
	if len(data) > MaxCertificateFileBytes {
		return nil, Fail(ReasonMalformed, "certificate input of %d bytes exceeds the limit of %d", len(data), MaxCertificateFileBytes)
	}
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		cert, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, Wrap(ReasonMalformed, err, "input is neither PEM nor a DER certificate")
		}
		return []*x509.Certificate{cert}, nil
	}
	var certs []*x509.Certificate
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, Fail(ReasonMalformed, "PEM block %d is %q, want CERTIFICATE", n, block.Type)
		}
		if len(block.Headers) != 0 {
			return nil, Fail(ReasonMalformed, "PEM block %d has headers; certificates carry none", n)
		}
		if len(certs) == MaxCertificatesPerFile {
			return nil, Fail(ReasonMalformed, "more than %d certificates in one input", MaxCertificatesPerFile)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, Wrap(ReasonMalformed, err, "PEM block %d is not a valid certificate", n)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, Fail(ReasonMalformed, "no PEM CERTIFICATE block could be decoded")
	}
	return certs, nil
}

// anchorFileExts are the names LoadAnchors picks up from a folder; other
// files (README, keys, CRLs) in the same folder are left alone.
var anchorFileExts = map[string]bool{".pem": true, ".crt": true, ".cer": true, ".der": true}

// LoadAnchors reads anchors from files and folders, so that a deployment
// can trust a test root or a new J-LIS generation without a rebuild. A
// file is read whatever its name; a folder contributes its *.pem, *.crt,
// *.cer and *.der files (not recursively, in name order). Every file must
// parse, and every certificate must be a CA (see NewAnchors).
func LoadAnchors(paths ...string) (*Anchors, error) {
	if len(paths) == 0 {
		return nil, Fail(ReasonMalformed, "no anchor paths given")
	}
	var certs []*x509.Certificate
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, Wrap(ReasonMalformed, err, "anchor path %s", p)
		}
		if !fi.IsDir() {
			cs, err := readCertificateFile(p)
			if err != nil {
				return nil, err
			}
			certs = append(certs, cs...)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, Wrap(ReasonMalformed, err, "anchor folder %s", p)
		}
		found := 0
		for _, e := range entries {
			if !anchorFileExts[strings.ToLower(filepath.Ext(e.Name()))] {
				continue
			}
			full := filepath.Join(p, e.Name())
			st, err := os.Stat(full) // follows symlinks
			if err != nil {
				return nil, Wrap(ReasonMalformed, err, "anchor file %s", full)
			}
			if !st.Mode().IsRegular() {
				continue
			}
			cs, err := readCertificateFile(full)
			if err != nil {
				return nil, err
			}
			certs = append(certs, cs...)
			found++
		}
		if found == 0 {
			return nil, Fail(ReasonMalformed, "anchor folder %s has no *.pem, *.crt, *.cer or *.der file", p)
		}
	}
	return NewAnchors(certs...)
}

func readCertificateFile(name string) ([]*x509.Certificate, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, Wrap(ReasonMalformed, err, "anchor file %s", name)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxCertificateFileBytes+1))
	if err != nil {
		return nil, Wrap(ReasonMalformed, err, "anchor file %s", name)
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, &Error{Reason: e.Reason, Detail: "anchor file " + name + ": " + e.Detail, Err: e.Err}
		}
		return nil, err
	}
	return certs, nil
}

// NewAnchors builds an anchor set. Only CA certificates are accepted
// (basicConstraints cA, and keyCertSign when key usage is present): a leaf
// pinned as an anchor would make every certificate "issued" by it look
// trusted to a careless reader and is always a configuration mistake.
// Identical certificates are kept once; different certificates with the
// same name are all kept, since that is how J-LIS rolls its keys.
func NewAnchors(certs ...*x509.Certificate) (*Anchors, error) {
	if len(certs) == 0 {
		return nil, Fail(ReasonMalformed, "no trust anchors given")
	}
	a := &Anchors{
		pool:   x509.NewCertPool(),
		bySPKI: map[[sha256.Size]byte]*x509.Certificate{},
		bySKI:  map[string][]*x509.Certificate{},
	}
	seen := map[[sha256.Size]byte]bool{}
	for i, c := range certs {
		if c == nil {
			return nil, Fail(ReasonMalformed, "anchor %d is nil", i)
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, Fail(ReasonKeyUsage, "anchor %d (%s) is not a CA certificate", i, c.Subject)
		}
		if certHasExtension(c, oidExtKeyUsage) && c.KeyUsage&x509.KeyUsageCertSign == 0 {
			return nil, Fail(ReasonKeyUsage, "anchor %d (%s) lacks keyCertSign in its key usage", i, c.Subject)
		}
		if len(c.UnhandledCriticalExtensions) > 0 {
			return nil, Fail(ReasonMalformed, "anchor %d (%s) has unhandled critical extensions %v", i, c.Subject, c.UnhandledCriticalExtensions)
		}
		raw := sha256.Sum256(c.Raw)
		if seen[raw] {
			continue
		}
		seen[raw] = true
		a.certs = append(a.certs, c)
		a.pool.AddCert(c)
		spki := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		if _, ok := a.bySPKI[spki]; !ok {
			a.bySPKI[spki] = c
		}
		if len(c.SubjectKeyId) > 0 {
			a.bySKI[string(c.SubjectKeyId)] = append(a.bySKI[string(c.SubjectKeyId)], c)
		}
	}
	a.own = make(map[*x509.Certificate]anchorInfo, len(a.certs))
	for _, c := range a.certs {
		a.own[c] = anchorInfo{byKey: a.bySPKI[sha256.Sum256(c.RawSubjectPublicKeyInfo)], role: "anchor " + c.Subject.String()}
	}
	return a, nil
}

var defaultAnchors = sync.OnceValues(func() (*Anchors, error) {
	names, err := fs.Glob(jlisRoots, "roots/*.pem")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var certs []*x509.Certificate
	for _, n := range names {
		data, err := jlisRoots.ReadFile(n)
		if err != nil {
			return nil, err
		}
		cs, err := ParseCertificates(data)
		if err != nil {
			return nil, fmt.Errorf("embedded %s: %w", path.Base(n), err)
		}
		certs = append(certs, cs...)
	}
	return NewAnchors(certs...)
})

// DefaultAnchors returns the real J-LIS signature and user-authentication
// roots (2015 and 2023 generations) compiled into the binary, so that a
// production deployment trusts exactly J-LIS unless told otherwise. The
// embedded files are pinned by a test; a failure to parse them is a broken
// build, hence the panic.
func DefaultAnchors() *Anchors {
	a, err := defaultAnchors()
	if err != nil {
		panic("pkibridge: embedded J-LIS roots: " + err.Error())
	}
	return a
}

// Certificates returns the anchors in the order they were added; the slice
// is a copy, the certificates are shared and must not be modified.
func (a *Anchors) Certificates() []*x509.Certificate {
	if a == nil {
		return nil
	}
	return append([]*x509.Certificate(nil), a.certs...)
}

// Len is the number of distinct anchor certificates.
func (a *Anchors) Len() int {
	if a == nil {
		return 0
	}
	return len(a.certs)
}

// CertPool returns a copy of the anchors as an x509.CertPool for callers
// that verify with crypto/x509 themselves (e.g. TLS client certificates).
func (a *Anchors) CertPool() *x509.CertPool {
	if a == nil {
		return x509.NewCertPool()
	}
	return a.pool.Clone()
}

// Contains reports whether cert's key is an anchor key. It compares the
// whole SubjectPublicKeyInfo, never the name.
func (a *Anchors) Contains(cert *x509.Certificate) bool {
	return a.byKey(cert) != nil
}

// byKey returns the anchor holding cert's public key, or nil.
func (a *Anchors) byKey(cert *x509.Certificate) *x509.Certificate {
	if a == nil || cert == nil {
		return nil
	}
	if info, ok := a.own[cert]; ok {
		return info.byKey
	}
	return a.bySPKI[sha256.Sum256(cert.RawSubjectPublicKeyInfo)]
}

// roleOf is the precomputed "anchor <subject>" of one of a's own
// certificates, or "" for any other certificate.
func (a *Anchors) roleOf(cert *x509.Certificate) string {
	if a == nil {
		return ""
	}
	return a.own[cert].role
}

// bySubjectKeyID returns the anchors whose SubjectKeyId is ski.
func (a *Anchors) bySubjectKeyID(ski []byte) []*x509.Certificate {
	if a == nil || len(ski) == 0 {
		return nil
	}
	return a.bySKI[string(ski)]
}

func certHasExtension(c *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return true
		}
	}
	return false
}
