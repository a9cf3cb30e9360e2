package jpkisim

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/watashi-id/watashi/pkibridge"
)

// Files of a saved CA directory. The key file is written 0600: even a
// simulator key lets anyone mint certificates that a demo trusts.
const (
	caCertFile  = "ca.crt"
	caKeyFile   = "ca.key"
	caStateFile = "state.json"
)

// caState is the mutable part of a CA that must survive a restart: the
// serial counter (the OCSP responder answers "good" only for serials it
// issued) and the revocations (or a revoked card would come back to life).
type caState struct {
	Kind       pkibridge.Kind `json:"kind"`
	NextSerial int64          `json:"next_serial"`
	CRLNumber  int64          `json:"crl_number"`
	Revoked    []savedRevoked `json:"revoked"`
}

type savedRevoked struct {
	Serial     string    `json:"serial"` // decimal
	RevokedAt  time.Time `json:"revoked_at"`
	ReasonCode int       `json:"reason_code"`
}

// Save writes the CA into dir (created 0700 if absent) so that the
// command-line wallet simulator and a demo server can share one simulated
// CA across processes. Each file is written to a temporary name and
// renamed, so a crash never leaves a half-written key.
func (ca *CA) Save(dir string) error {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return errors.New("jpkisim: Save: incomplete CA")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("jpkisim: Save: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return fmt.Errorf("jpkisim: Save: %w", err)
	}
	ca.mu.Lock()
	st := caState{Kind: ca.Kind, NextSerial: ca.nextSerial, CRLNumber: ca.crlNumber, Revoked: []savedRevoked{}}
	for _, r := range ca.revoked {
		st.Revoked = append(st.Revoked, savedRevoked{Serial: r.Serial.String(), RevokedAt: r.RevokedAt, ReasonCode: r.ReasonCode})
	}
	ca.mu.Unlock()
	state, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("jpkisim: Save: %w", err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{caCertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o644},
		{caKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
		{caStateFile, append(state, '\n'), 0o600},
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("jpkisim: Save: %w", err)
		}
	}
	return nil
}

// LoadCA reads a CA written by Save. It refuses a directory whose key does
// not match its certificate, or whose certificate is not a CA, rather than
// issuing certificates no verifier will accept.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, fmt.Errorf("jpkisim: LoadCA: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, fmt.Errorf("jpkisim: LoadCA: %w", err)
	}
	stateJSON, err := os.ReadFile(filepath.Join(dir, caStateFile))
	if err != nil {
		return nil, fmt.Errorf("jpkisim: LoadCA: %w", err)
	}
	cert, err := parsePEMCertificate(certPEM)
	if err != nil {
		return nil, fmt.Errorf("jpkisim: LoadCA: %s: %w", caCertFile, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("jpkisim: LoadCA: %s is not a CA certificate", caCertFile)
	}
	key, err := ParsePEMPrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("jpkisim: LoadCA: %s: %w", caKeyFile, err)
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("jpkisim: LoadCA: %s: want an RSA key", caKeyFile)
	}
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&rsaKey.PublicKey) {
		return nil, fmt.Errorf("jpkisim: LoadCA: %s does not match %s", caKeyFile, caCertFile)
	}
	var st caState
	if err := json.Unmarshal(stateJSON, &st); err != nil {
		return nil, fmt.Errorf("jpkisim: LoadCA: %s: %w", caStateFile, err)
	}
	if st.Kind != pkibridge.KindSignature && st.Kind != pkibridge.KindAuthentication {
		return nil, fmt.Errorf("jpkisim: LoadCA: %s: unknown kind %q", caStateFile, st.Kind)
	}
	if st.NextSerial < 1000 {
		return nil, fmt.Errorf("jpkisim: LoadCA: %s: next_serial %d below 1000", caStateFile, st.NextSerial)
	}
	ca := &CA{Kind: st.Kind, Cert: cert, Key: rsaKey, nextSerial: st.NextSerial, crlNumber: st.CRLNumber, revoked: map[string]Revocation{}}
	for _, r := range st.Revoked {
		n, ok := new(big.Int).SetString(r.Serial, 10)
		if !ok || n.Sign() <= 0 {
			return nil, fmt.Errorf("jpkisim: LoadCA: %s: bad revoked serial", caStateFile)
		}
		ca.revoked[n.String()] = Revocation{Serial: n, RevokedAt: r.RevokedAt.UTC(), ReasonCode: r.ReasonCode}
	}
	return ca, nil
}

// LoadOrCreateCA loads the CA in dir, or creates one of kind and saves it
// there when dir holds none yet.
func LoadOrCreateCA(dir string, kind pkibridge.Kind) (*CA, error) {
	if _, err := os.Stat(filepath.Join(dir, caCertFile)); err == nil {
		ca, err := LoadCA(dir)
		if err != nil {
			return nil, err
		}
		if ca.Kind != kind {
			return nil, fmt.Errorf("jpkisim: %s holds a %s CA, want %s", dir, ca.Kind, kind)
		}
		return ca, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("jpkisim: %w", err)
	}
	ca, err := NewCA(CAOptions{Kind: kind})
	if err != nil {
		return nil, err
	}
	if err := ca.Save(dir); err != nil {
		return nil, err
	}
	return ca, nil
}

// ParsePEMPrivateKey reads the first private key block of a PEM file in
// PKCS#8, PKCS#1 or SEC 1 form.
func ParsePEMPrivateKey(data []byte) (any, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no private key PEM block")
		}
		switch b.Type {
		case "PRIVATE KEY":
			return x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(b.Bytes)
		}
	}
}

func parsePEMCertificate(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no CERTIFICATE PEM block")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// writeFileAtomic writes data to a temporary file in the same directory
// and renames it over name.
func writeFileAtomic(name string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-"+filepath.Base(name)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}
