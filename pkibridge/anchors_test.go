package pkibridge_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// SHA-256 fingerprints of the shipped J-LIS roots, computed once with
// `openssl x509 -in roots/X.pem -noout -fingerprint -sha256`. A change to
// roots/ must change this list on purpose.
var jlisRootFingerprints = map[string]string{
	"auth_ca_2015.pem": "4DCFC4CA0AAF9FB2A3081B3F0C991C320B3ACC008667A341EEAEC5AF1D58CA7D",
	"auth_ca_2023.pem": "64114F29620C24ED2631D46476A040E7EE740D956089C00B036A6A8118C322B5",
	"sign_ca_2015.pem": "19645405A1FE14377434BD55957628AC4038557C542403A2243F21C706FC9355",
	"sign_ca_2023.pem": "D227F6CDE11D35C5252178F106F843D24651944975413B539FA2FB68DBFA365F",
}

func certFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

func TestDefaultAnchorsPinned(t *testing.T) {
	a := pkibridge.DefaultAnchors()
	if a.Len() != len(jlisRootFingerprints) {
		t.Fatalf("%d default anchors, want %d", a.Len(), len(jlisRootFingerprints))
	}
	embedded := map[string]bool{}
	for _, c := range a.Certificates() {
		embedded[certFingerprint(c)] = true
		if c.Subject.Organization[0] != "JPKI" || c.Subject.Country[0] != "JP" {
			t.Errorf("unexpected anchor subject %s", c.Subject)
		}
	}
	for file, fp := range jlisRootFingerprints {
		if !embedded[fp] {
			t.Errorf("%s (%s) is not among the default anchors", file, fp)
		}
		// The file on disk is the one pinned (and the one embedded).
		data, err := os.ReadFile(filepath.Join("roots", file))
		if err != nil {
			t.Fatal(err)
		}
		certs, err := pkibridge.ParseCertificates(data)
		if err != nil {
			t.Fatal(err)
		}
		if len(certs) != 1 || certFingerprint(certs[0]) != fp {
			t.Errorf("%s does not hold the pinned certificate", file)
		}
	}
	// Two generations per DN: the four roots have two distinct names but
	// four distinct keys.
	names, keys := map[string]bool{}, map[string]bool{}
	for _, c := range a.Certificates() {
		names[string(c.RawSubject)] = true
		keys[string(c.RawSubjectPublicKeyInfo)] = true
		if !a.Contains(c) {
			t.Errorf("anchor %s not found by its own key", c.Subject)
		}
	}
	if len(names) != 2 || len(keys) != 4 {
		t.Errorf("%d names and %d keys, want 2 and 4", len(names), len(keys))
	}
	if a.CertPool() == nil || pkibridge.DefaultAnchors() != a {
		t.Error("DefaultAnchors is not a shared, ready anchor set")
	}
}

// TestSameDNDifferentKeys is the J-LIS key rollover: two generations with
// one name. Both must work, and neither may vouch for the other's leaves.
func TestSameDNDifferentKeys(t *testing.T) {
	gen1 := coreCA(t, jpkisim.CAOptions{Kind: pkibridge.KindAuthentication, Key: coreKey(4)})
	gen2 := coreCA(t, jpkisim.CAOptions{Kind: pkibridge.KindAuthentication, Key: coreKey(5)})
	if !bytes.Equal(gen1.Cert.RawSubject, gen2.Cert.RawSubject) {
		t.Fatal("precondition: the generations must share a DN")
	}
	leaf1 := coreIssue(t, gen1, jpkisim.LeafOptions{})
	leaf2 := coreIssue(t, gen2, jpkisim.LeafOptions{})
	both, err := pkibridge.NewAnchors(gen1.Cert, gen2.Cert)
	if err != nil {
		t.Fatal(err)
	}
	only1, err := pkibridge.NewAnchors(gen1.Cert)
	if err != nil {
		t.Fatal(err)
	}
	only2, err := pkibridge.NewAnchors(gen2.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if both.Len() != 2 {
		t.Fatalf("same-DN anchors collapsed to %d", both.Len())
	}
	if only1.Contains(gen2.Cert) || only2.Contains(gen1.Cert) {
		t.Fatal("anchor matched by name instead of key")
	}
	cases := []struct {
		name    string
		anchors *pkibridge.Anchors
		leaf    *x509.Certificate
		issuer  *x509.Certificate
		want    pkibridge.Reason
	}{
		{"gen1 leaf, both anchors", both, leaf1, gen1.Cert, ""},
		{"gen2 leaf, both anchors", both, leaf2, gen2.Cert, ""},
		{"gen1 leaf, gen1 anchor", only1, leaf1, gen1.Cert, ""},
		{"gen1 leaf through gen2 anchor", only2, leaf1, nil, pkibridge.ReasonUntrusted},
		{"gen2 leaf through gen1 anchor", only1, leaf2, nil, pkibridge.ReasonUntrusted},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := &pkibridge.Verifier{Anchors: c.anchors, Policy: pkibridge.DefaultPolicy(), Mode: pkibridge.RevocationOff}
			res, err := v.VerifyCertificate(context.Background(), c.leaf, nil)
			coreWantReason(t, err, c.want)
			if err == nil && !bytes.Equal(res.Chain[1].RawSubjectPublicKeyInfo, c.issuer.RawSubjectPublicKeyInfo) {
				t.Fatal("chain ends at the other generation's key")
			}
		})
	}
	// The other generation's certificate offered in x5c cannot help.
	v := &pkibridge.Verifier{Anchors: only2, Policy: pkibridge.DefaultPolicy(), Mode: pkibridge.RevocationOff}
	_, err = v.VerifyCertificate(context.Background(), leaf1, []*x509.Certificate{gen1.Cert})
	coreWantReason(t, err, pkibridge.ReasonUntrusted)
}

func pemOf(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		if err := pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
			panic(err)
		}
	}
	return b.Bytes()
}

func TestParseCertificates(t *testing.T) {
	roots := pkibridge.DefaultAnchors().Certificates()
	twoPEM := pemOf(roots[0], roots[1])
	withText := append(append([]byte("# J-LIS bundle\nsome commentary\n"), twoPEM...), []byte("trailing notes\n")...)
	var many []byte
	for range pkibridge.MaxCertificatesPerFile + 1 {
		many = append(many, pemOf(roots[0])...)
	}
	keyBlock := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	headerBlock := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: roots[0].Raw})
	corrupt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: roots[0].Raw[:100]})
	cases := []struct {
		name string
		in   []byte
		n    int
		want pkibridge.Reason
	}{
		{"one PEM", pemOf(roots[0]), 1, ""},
		{"two PEM", twoPEM, 2, ""},
		{"PEM with text around", withText, 2, ""},
		{"DER", roots[2].Raw, 1, ""},
		{"empty", nil, 0, pkibridge.ReasonMalformed},
		{"garbage", []byte("not a certificate at all"), 0, pkibridge.ReasonMalformed},
		{"DER with trailing byte", append(bytes.Clone(roots[0].Raw), 0), 0, pkibridge.ReasonMalformed},
		{"truncated DER", roots[0].Raw[:200], 0, pkibridge.ReasonMalformed},
		{"PEM marker, no block", []byte("-----BEGIN CERTIFICATE-----\nAAAA"), 0, pkibridge.ReasonMalformed},
		{"private key block", append(pemOf(roots[0]), keyBlock...), 0, pkibridge.ReasonMalformed},
		{"PEM headers", headerBlock, 0, pkibridge.ReasonMalformed},
		{"corrupt PEM body", corrupt, 0, pkibridge.ReasonMalformed},
		{"too many certificates", many, 0, pkibridge.ReasonMalformed},
		{"oversized", make([]byte, pkibridge.MaxCertificateFileBytes+1), 0, pkibridge.ReasonMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			certs, err := pkibridge.ParseCertificates(c.in)
			coreWantReason(t, err, c.want)
			if len(certs) != c.n {
				t.Fatalf("%d certificates, want %d", len(certs), c.n)
			}
		})
	}
}

func TestNewAnchors(t *testing.T) {
	e := coreSetup(t)
	leaf := coreIssue(t, e.authCA, jpkisim.LeafOptions{})
	ca := coreIssue(t, e.authCA, jpkisim.LeafOptions{IsCA: true})
	cases := []struct {
		name  string
		certs []*x509.Certificate
		n     int
		want  pkibridge.Reason
	}{
		{"two CAs", []*x509.Certificate{e.sigCA.Cert, e.authCA.Cert}, 2, ""},
		{"duplicate kept once", []*x509.Certificate{e.sigCA.Cert, e.sigCA.Cert}, 1, ""},
		{"none", nil, 0, pkibridge.ReasonMalformed},
		{"nil certificate", []*x509.Certificate{nil}, 0, pkibridge.ReasonMalformed},
		{"leaf refused", []*x509.Certificate{e.sigCA.Cert, leaf}, 0, pkibridge.ReasonKeyUsage},
		{"CA without keyCertSign refused", []*x509.Certificate{ca}, 0, pkibridge.ReasonKeyUsage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := pkibridge.NewAnchors(c.certs...)
			coreWantReason(t, err, c.want)
			if a.Len() != c.n {
				t.Fatalf("%d anchors, want %d", a.Len(), c.n)
			}
		})
	}
	var nilAnchors *pkibridge.Anchors
	if nilAnchors.Len() != 0 || nilAnchors.Contains(e.sigCA.Cert) || nilAnchors.Certificates() != nil {
		t.Fatal("nil Anchors is not empty")
	}
}

// opensslCA makes a CA (or, with ca false, an end-entity) certificate with
// the real openssl binary and returns its PEM.
func opensslCert(t *testing.T, dir, name string, ca bool) []byte {
	t.Helper()
	jpkisim.RequireOpenSSL(t)
	crt := filepath.Join(dir, name+".crt")
	args := []string{"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", filepath.Join(dir, name+".key"), "-out", crt, "-days", "30",
		"-subj", "/C=JP/O=JPKI-TEST/OU=" + name}
	if ca {
		args = append(args, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	} else {
		args = append(args, "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "keyUsage=critical,digitalSignature")
	}
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	data, err := os.ReadFile(crt)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(crt); err != nil {
		t.Fatal(err)
	}
	return data
}

func opensslDER(t *testing.T, pemData []byte) []byte {
	t.Helper()
	cmd := exec.Command("openssl", "x509", "-outform", "DER")
	cmd.Stdin = bytes.NewReader(pemData)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl x509 -outform DER: %v", err)
	}
	return out
}

func TestLoadAnchors(t *testing.T) {
	gen := t.TempDir()
	caA := opensslCert(t, gen, "ca-a", true)
	caB := opensslCert(t, gen, "ca-b", true)
	caC := opensslCert(t, gen, "ca-c", true)
	leaf := opensslCert(t, gen, "leaf", false)

	write := func(dir, name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := t.TempDir()
	write(good, "a.pem", caA)
	write(good, "b.DER", opensslDER(t, caB))
	write(good, "c.cer", caC)
	write(good, "README.txt", []byte("not a certificate"))
	write(good, "key.key", []byte("-----BEGIN PRIVATE KEY-----\n"))
	if err := os.Mkdir(filepath.Join(good, "sub.pem"), 0o700); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(good, "sub.pem"), "nested.pem", leaf)

	withLeaf := t.TempDir()
	write(withLeaf, "a.pem", caA)
	write(withLeaf, "leaf.crt", leaf)
	withGarbage := t.TempDir()
	write(withGarbage, "a.pem", caA)
	write(withGarbage, "broken.pem", []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
	empty := t.TempDir()
	write(empty, "notes.txt", []byte("x"))
	single := write(t.TempDir(), "bundle.anything", append(bytes.Clone(caA), caB...))
	der := write(t.TempDir(), "root.bin", opensslDER(t, caC))

	cases := []struct {
		name  string
		paths []string
		n     int
		want  pkibridge.Reason
	}{
		{"folder with PEM, DER and CER", []string{good}, 3, ""},
		{"single PEM bundle file of any name", []string{single}, 2, ""},
		{"single DER file", []string{der}, 1, ""},
		{"folder and file together, duplicates kept once", []string{good, single}, 3, ""},
		{"no paths", nil, 0, pkibridge.ReasonMalformed},
		{"missing path", []string{filepath.Join(empty, "nope")}, 0, pkibridge.ReasonMalformed},
		{"folder without certificates", []string{empty}, 0, pkibridge.ReasonMalformed},
		{"folder with a leaf", []string{withLeaf}, 0, pkibridge.ReasonKeyUsage},
		{"folder with a broken file", []string{withGarbage}, 0, pkibridge.ReasonMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := pkibridge.LoadAnchors(c.paths...)
			coreWantReason(t, err, c.want)
			if a.Len() != c.n {
				t.Fatalf("%d anchors, want %d", a.Len(), c.n)
			}
		})
	}
	// The loaded anchors are the openssl-made certificates, by key.
	a, err := pkibridge.LoadAnchors(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{caA, caB, caC} {
		certs, err := pkibridge.ParseCertificates(p)
		if err != nil {
			t.Fatal(err)
		}
		if !a.Contains(certs[0]) {
			t.Errorf("%s not loaded", certs[0].Subject)
		}
	}
}
