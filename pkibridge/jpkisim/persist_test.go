package jpkisim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/pkibridge"
)

func TestSaveLoadCA(t *testing.T) {
	ca, err := NewCA(CAOptions{Kind: pkibridge.KindAuthentication})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ca.Issue(LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	revokedAt := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	ca.Revoke(a.Cert.SerialNumber, revokedAt, 1)
	dir := filepath.Join(t.TempDir(), "ca")
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, caKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st.Mode(), err)
	}

	got, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != pkibridge.KindAuthentication || !got.Cert.Equal(ca.Cert) || !got.Key.Equal(ca.Key) {
		t.Fatal("loaded CA differs")
	}
	if r, ok := got.IsRevoked(a.Cert.SerialNumber); !ok || !r.RevokedAt.Equal(revokedAt) || r.ReasonCode != 1 {
		t.Fatalf("revocation lost: %+v %v", r, ok)
	}
	if !got.issued(a.Cert.SerialNumber) {
		t.Fatal("the reloaded CA no longer knows it issued the certificate (OCSP would answer unknown)")
	}
	b, err := got.Issue(LeafOptions{Key: a.Key})
	if err != nil {
		t.Fatal(err)
	}
	if b.Cert.SerialNumber.Cmp(a.Cert.SerialNumber) <= 0 {
		t.Fatalf("serial went back: %v after %v", b.Cert.SerialNumber, a.Cert.SerialNumber)
	}
	if err := b.Cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatalf("reloaded CA signs with another key: %v", err)
	}
}

func TestLoadCARefusesBadDirectories(t *testing.T) {
	sig, err := NewCA(CAOptions{Kind: pkibridge.KindSignature})
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA(CAOptions{Kind: pkibridge.KindSignature})
	if err != nil {
		t.Fatal(err)
	}
	good := t.TempDir()
	if err := sig.Save(good); err != nil {
		t.Fatal(err)
	}
	otherDir := t.TempDir()
	if err := other.Save(otherDir); err != nil {
		t.Fatal(err)
	}
	copyDir := func(t *testing.T) string {
		d := t.TempDir()
		for _, f := range []string{caCertFile, caKeyFile, caStateFile} {
			b, err := os.ReadFile(filepath.Join(good, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	for _, c := range []struct {
		name    string
		breakIt func(d string)
		want    string
	}{
		{"missing key", func(d string) { os.Remove(filepath.Join(d, caKeyFile)) }, caKeyFile},
		{"missing state", func(d string) { os.Remove(filepath.Join(d, caStateFile)) }, caStateFile},
		{"key of another CA", func(d string) {
			b, _ := os.ReadFile(filepath.Join(otherDir, caKeyFile))
			os.WriteFile(filepath.Join(d, caKeyFile), b, 0o600)
		}, "does not match"},
		{"garbage certificate", func(d string) { os.WriteFile(filepath.Join(d, caCertFile), []byte("nope"), 0o600) }, caCertFile},
		{"state not JSON", func(d string) { os.WriteFile(filepath.Join(d, caStateFile), []byte("{"), 0o600) }, caStateFile},
		{"unknown kind", func(d string) {
			os.WriteFile(filepath.Join(d, caStateFile), []byte(`{"kind":"other","next_serial":1000}`), 0o600)
		}, "unknown kind"},
		{"serial below 1000", func(d string) {
			os.WriteFile(filepath.Join(d, caStateFile), []byte(`{"kind":"signature","next_serial":5}`), 0o600)
		}, "next_serial"},
		{"bad revoked serial", func(d string) {
			os.WriteFile(filepath.Join(d, caStateFile), []byte(`{"kind":"signature","next_serial":1000,"revoked":[{"serial":"x"}]}`), 0o600)
		}, "revoked serial"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := copyDir(t)
			c.breakIt(d)
			_, err := LoadCA(d)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}

func TestLoadOrCreateCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	a, err := LoadOrCreateCA(dir, pkibridge.KindAuthentication)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateCA(dir, pkibridge.KindAuthentication)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Cert.Equal(b.Cert) {
		t.Fatal("second call created another CA")
	}
	if _, err := LoadOrCreateCA(dir, pkibridge.KindSignature); err == nil {
		t.Fatal("a CA of the wrong kind was accepted")
	}
}
