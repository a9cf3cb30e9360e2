package pkibridge

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ---- a real OpenSSL CA in a temp dir (shared by the revocation tests) ----

type revOpenSSLCA struct {
	t    testing.TB
	dir  string
	conf string
	key  string
	pem  string
	cert *x509.Certificate
}

const revOpenSSLConf = `
[ca]
default_ca = CA_default

[CA_default]
dir              = %[1]s
database         = $dir/index.txt
new_certs_dir    = $dir/newcerts
serial           = $dir/serial
crlnumber        = $dir/crlnumber
certificate      = $dir/ca.pem
private_key      = $dir/ca.key
default_md       = sha256
default_days     = 365
default_crl_days = 1
policy           = policy_any
unique_subject   = no
x509_extensions  = leaf_ext
crl_extensions   = crl_ext

[policy_any]
commonName = supplied

[req]
distinguished_name = req_dn
[req_dn]

[v3_ca]
basicConstraints     = critical, CA:TRUE
keyUsage             = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[leaf_ext]
basicConstraints       = CA:FALSE
keyUsage               = critical, digitalSignature, nonRepudiation
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[leaf_dp1]
basicConstraints       = CA:FALSE
keyUsage               = critical, digitalSignature
authorityKeyIdentifier = keyid
crlDistributionPoints  = URI:http://crl.example.test/p1.crl

[leaf_dp2]
basicConstraints       = CA:FALSE
keyUsage               = critical, digitalSignature
authorityKeyIdentifier = keyid
crlDistributionPoints  = URI:http://crl.example.test/p2.crl

[ocsp_ext]
basicConstraints       = CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = OCSPSigning
authorityKeyIdentifier = keyid

[noeku_ext]
basicConstraints       = CA:FALSE
keyUsage               = critical, digitalSignature
authorityKeyIdentifier = keyid

[crl_ext]
authorityKeyIdentifier = keyid

[crl_plain]
issuerAltName = email:crl@example.test

[crl_idp_p1]
authorityKeyIdentifier  = keyid
issuingDistributionPoint = critical, @idp_p1
[idp_p1]
fullname = URI:http://crl.example.test/p1.crl
onlyuser = TRUE

[crl_idp_reasons]
authorityKeyIdentifier  = keyid
issuingDistributionPoint = critical, @idp_reasons
[idp_reasons]
onlysomereasons = keyCompromise

[crl_idp_ca]
authorityKeyIdentifier  = keyid
issuingDistributionPoint = critical, @idp_ca
[idp_ca]
onlyCA = TRUE
`

func revOpenSSL(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// revNewOpenSSLCA makes an `openssl ca` directory with a fresh RSA-2048
// root named subj. keyFrom, if set, reuses another CA's key.
func revNewOpenSSLCA(t testing.TB, subj string, keyFrom *revOpenSSLCA) *revOpenSSLCA {
	t.Helper()
	requireOpenSSL(t)
	dir := t.TempDir()
	ca := &revOpenSSLCA{t: t, dir: dir, conf: filepath.Join(dir, "ca.cnf"), key: filepath.Join(dir, "ca.key"), pem: filepath.Join(dir, "ca.pem")}
	for name, content := range map[string]string{
		"ca.cnf":    fmt.Sprintf(revOpenSSLConf, dir),
		"index.txt": "",
		"serial":    "1000\n",
		"crlnumber": "01\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "newcerts"), 0o700); err != nil {
		t.Fatal(err)
	}
	args := []string{"req", "-x509", "-config", ca.conf, "-extensions", "v3_ca", "-subj", subj, "-days", "3650", "-out", ca.pem}
	if keyFrom != nil {
		key, err := os.ReadFile(keyFrom.key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(ca.key, key, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-key", ca.key)
	} else {
		args = append(args, "-newkey", "rsa:2048", "-nodes", "-keyout", ca.key)
	}
	revOpenSSL(t, dir, args...)
	ca.cert = revReadCert(t, ca.pem)
	return ca
}

func revReadCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// issue has `openssl ca` sign a P-256 leaf with the given extension
// section; it returns the certificate and its PEM and key paths.
func (ca *revOpenSSLCA) issue(cn, ext string) (*x509.Certificate, string, string) {
	ca.t.Helper()
	key, csr, crt := filepath.Join(ca.dir, cn+".key"), filepath.Join(ca.dir, cn+".csr"), filepath.Join(ca.dir, cn+".pem")
	revOpenSSL(ca.t, ca.dir, "req", "-new", "-config", ca.conf, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-keyout", key, "-subj", "/CN="+cn, "-out", csr)
	revOpenSSL(ca.t, ca.dir, "ca", "-batch", "-config", ca.conf, "-notext", "-extensions", ext, "-in", csr, "-out", crt)
	return revReadCert(ca.t, crt), crt, key
}

// issueOutsideIndex signs a leaf with `openssl x509 -req`, so the CA
// database never hears of it (an OCSP "unknown").
func (ca *revOpenSSLCA) issueOutsideIndex(cn string, serial string) *x509.Certificate {
	ca.t.Helper()
	key, csr, crt := filepath.Join(ca.dir, cn+".key"), filepath.Join(ca.dir, cn+".csr"), filepath.Join(ca.dir, cn+".pem")
	revOpenSSL(ca.t, ca.dir, "req", "-new", "-config", ca.conf, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-keyout", key, "-subj", "/CN="+cn, "-out", csr)
	revOpenSSL(ca.t, ca.dir, "x509", "-req", "-in", csr, "-CA", ca.pem, "-CAkey", ca.key, "-set_serial", serial,
		"-days", "30", "-extfile", ca.conf, "-extensions", "leaf_ext", "-out", crt)
	return revReadCert(ca.t, crt)
}

func (ca *revOpenSSLCA) revoke(certPath, reason string) {
	ca.t.Helper()
	revOpenSSL(ca.t, ca.dir, "ca", "-config", ca.conf, "-revoke", certPath, "-crl_reason", reason)
}

// gencrl runs `openssl ca -gencrl` with extra flags and returns the PEM
// and DER encodings.
func (ca *revOpenSSLCA) gencrl(extra ...string) (pemCRL, der []byte) {
	ca.t.Helper()
	out := filepath.Join(ca.dir, "crl.pem")
	revOpenSSL(ca.t, ca.dir, append([]string{"ca", "-config", ca.conf, "-gencrl", "-out", out}, extra...)...)
	derPath := filepath.Join(ca.dir, "crl.der")
	revOpenSSL(ca.t, ca.dir, "crl", "-in", out, "-outform", "DER", "-out", derPath)
	p, err := os.ReadFile(out)
	if err != nil {
		ca.t.Fatal(err)
	}
	d, err := os.ReadFile(derPath)
	if err != nil {
		ca.t.Fatal(err)
	}
	return p, d
}

func revFlipLastByte(b []byte) []byte {
	c := bytes.Clone(b)
	c[len(c)-1] ^= 1
	return c
}

func revWriteFile(t testing.TB, data []byte) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "crl-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func revServe(t testing.TB, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func revReasonIs(t testing.TB, err error, want Reason) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Reason != want {
		t.Fatalf("error %v: want an *Error with reason %s", err, want)
	}
}

// revOpenSSLFixture is one CA with a good, a revoked (keyCompromise) and a
// held leaf, and its CRL from `openssl ca -gencrl`.
type revOpenSSLFixture struct {
	ca                      *revOpenSSLCA
	good, revoked, held     *x509.Certificate
	goodPath, revokedPath   string
	crlPEM, crlDER          []byte
	stdlib                  *x509.RevocationList
	revokedAt, heldAt       time.Time
	revokedReason, heldReas int
}

func revNewOpenSSLFixture(t testing.TB) *revOpenSSLFixture {
	t.Helper()
	ca := revNewOpenSSLCA(t, "/C=JP/O=JPKI-TEST/OU=JPKI for digital signature", nil)
	fx := &revOpenSSLFixture{ca: ca}
	fx.good, fx.goodPath, _ = ca.issue("good", "leaf_ext")
	fx.revoked, fx.revokedPath, _ = ca.issue("revoked", "leaf_ext")
	var heldPath string
	fx.held, heldPath, _ = ca.issue("held", "leaf_ext")
	ca.revoke(fx.revokedPath, "keyCompromise")
	ca.revoke(heldPath, "certificateHold")
	fx.crlPEM, fx.crlDER = ca.gencrl()
	rl, err := x509.ParseRevocationList(fx.crlDER)
	if err != nil {
		t.Fatal(err)
	}
	fx.stdlib = rl
	for _, e := range rl.RevokedCertificateEntries {
		switch e.SerialNumber.Cmp(fx.revoked.SerialNumber) {
		case 0:
			fx.revokedAt, fx.revokedReason = e.RevocationTime, e.ReasonCode
		}
		if e.SerialNumber.Cmp(fx.held.SerialNumber) == 0 {
			fx.heldAt, fx.heldReas = e.RevocationTime, e.ReasonCode
		}
	}
	if fx.revokedAt.IsZero() || fx.heldAt.IsZero() {
		t.Fatal("openssl CRL lacks the revoked serials")
	}
	return fx
}

// ---- tests ----

func TestCRLSourceOpenSSL(t *testing.T) {
	fx := revNewOpenSSLFixture(t)
	url := revServe(t, func(w http.ResponseWriter, r *http.Request) { w.Write(fx.crlDER) })
	pemURL := revServe(t, func(w http.ResponseWriter, r *http.Request) { w.Write(fx.crlPEM) })
	withText := revOpenSSL(t, fx.ca.dir, "crl", "-in", filepath.Join(fx.ca.dir, "crl.pem"), "-text")
	locations := map[string]string{
		"file DER":           revWriteFile(t, fx.crlDER),
		"file PEM":           revWriteFile(t, fx.crlPEM),
		"file text then PEM": revWriteFile(t, []byte(withText)),
		"http DER":           url,
		"http PEM":           pemURL,
	}
	for name, loc := range locations {
		t.Run(name, func(t *testing.T) {
			src, err := NewCRLSource(loc, fx.ca.cert, CRLOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			info, err := src.CheckRevocation(ctx, fx.good, fx.ca.cert)
			if err != nil || info.Status != StatusGood || info.Source != "crl:"+loc {
				t.Fatalf("good leaf: %+v, %v", info, err)
			}
			info, err = src.CheckRevocation(ctx, fx.revoked, fx.ca.cert)
			if err != nil || info.Status != StatusRevoked || !info.RevokedAt.Equal(fx.revokedAt) {
				t.Fatalf("revoked leaf: %+v, %v (want revoked at %s)", info, err, fx.revokedAt)
			}
			if want := "reason " + revReasonName(fx.revokedReason); info.Detail != want {
				t.Errorf("detail %q, want %q", info.Detail, want)
			}
			info, err = src.CheckRevocation(ctx, fx.held, fx.ca.cert)
			if err != nil || info.Status != StatusRevoked || !info.RevokedAt.Equal(fx.heldAt) || info.Detail != "reason "+revReasonName(fx.heldReas) {
				t.Fatalf("held leaf: %+v, %v", info, err)
			}
			st := src.Stats()
			if !st.Loaded || st.Entries != len(fx.stdlib.RevokedCertificateEntries) || !st.NextUpdate.Equal(fx.stdlib.NextUpdate) ||
				!st.ThisUpdate.Equal(fx.stdlib.ThisUpdate) || st.Number == nil || st.Number.Cmp(fx.stdlib.Number) != 0 || st.FetchedAt.IsZero() ||
				st.Issuer != fx.ca.cert.Subject.String() {
				t.Errorf("stats %+v disagree with crypto/x509's parse", st)
			}
		})
	}
}

// TestCRLParseMatchesStdlib compares the compact index with crypto/x509's
// parse of the same openssl CRL, entry by entry.
func TestCRLParseMatchesStdlib(t *testing.T) {
	fx := revNewOpenSSLFixture(t)
	idx, issuer, err := parseCRL(fx.crlDER, []*x509.Certificate{fx.ca.cert})
	if err != nil {
		t.Fatal(err)
	}
	if issuer != fx.ca.cert {
		t.Fatal("wrong issuer paired")
	}
	if idx.len() != len(fx.stdlib.RevokedCertificateEntries) {
		t.Fatalf("%d entries, stdlib %d", idx.len(), len(fx.stdlib.RevokedCertificateEntries))
	}
	for _, e := range fx.stdlib.RevokedCertificateEntries {
		var kb [crlSerialBuf]byte
		at, reason, ok := idx.lookup(crlSerialKey(e.SerialNumber, kb[:0]))
		if !ok || at != e.RevocationTime.Unix() || int(reason) != e.ReasonCode {
			t.Errorf("serial %s: got (%d, %d, %v), stdlib (%d, %d)", e.SerialNumber, at, reason, ok, e.RevocationTime.Unix(), e.ReasonCode)
		}
	}
	if !idx.thisUpdate.Equal(fx.stdlib.ThisUpdate) || !idx.nextUpdate.Equal(fx.stdlib.NextUpdate) || idx.number.Cmp(fx.stdlib.Number) != 0 {
		t.Errorf("header (%s, %s, %s) differs from stdlib (%s, %s, %s)", idx.thisUpdate, idx.nextUpdate, idx.number,
			fx.stdlib.ThisUpdate, fx.stdlib.NextUpdate, fx.stdlib.Number)
	}
}

// TestCRLIndexManyEntries checks the index on a CRL large enough to wrap
// the table and collide, with serial shapes crypto/x509 produces: short,
// long, high-bit (leading zero octet), and one beyond the inline limit.
func TestCRLIndexManyEntries(t *testing.T) {
	ca, key := revGoCA(t)
	var entries []x509.RevocationListEntry
	base := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 3000 {
		s := new(big.Int).Lsh(big.NewInt(int64(i+1)), uint(i%220))
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: base.Add(time.Duration(i) * time.Second), ReasonCode: i % 6})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(7), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour), RevokedCertificateEntries: entries}, ca, key)
	if err != nil {
		t.Fatal(err)
	}
	idx, _, err := parseCRL(der, []*x509.Certificate{ca})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	var first []x509.RevocationListEntry // the first listing of a serial wins
	for _, e := range entries {
		if !listed[e.SerialNumber.String()] {
			first = append(first, e)
		}
		listed[e.SerialNumber.String()] = true
	}
	if idx.len() != len(first) || len(idx.long) == 0 {
		t.Fatalf("len %d (long %d), want %d with some long serials", idx.len(), len(idx.long), len(first))
	}
	var kb [crlSerialBuf]byte
	for _, e := range first {
		at, reason, ok := idx.lookup(crlSerialKey(e.SerialNumber, kb[:0]))
		wantReason := int8(e.ReasonCode)
		if e.ReasonCode == 0 {
			wantReason = -1 // x509 omits reason unspecified
		}
		if !ok || at != e.RevocationTime.Unix() || reason != wantReason {
			t.Fatalf("serial %x: (%d, %d, %v)", e.SerialNumber, at, reason, ok)
		}
		for _, miss := range []*big.Int{new(big.Int).Add(e.SerialNumber, big.NewInt(1)), new(big.Int).Neg(e.SerialNumber)} {
			if _, _, ok := idx.lookup(crlSerialKey(miss, kb[:0])); ok != listed[miss.String()] {
				t.Fatalf("serial %x: found %v, listed %v", miss, ok, listed[miss.String()])
			}
		}
	}
	seen := 0
	idx.forEach(func([]byte, int64, int8) bool { seen++; return true })
	if seen != len(first) {
		t.Fatalf("forEach saw %d", seen)
	}
}

func TestCRLSerialKey(t *testing.T) {
	for _, tc := range []struct {
		n    *big.Int
		want []byte
	}{
		{big.NewInt(0), []byte{0}},
		{big.NewInt(1), []byte{1}},
		{big.NewInt(127), []byte{0x7f}},
		{big.NewInt(128), []byte{0, 0x80}},
		{big.NewInt(256), []byte{1, 0}},
		{big.NewInt(-1), []byte{0xff}},
		{big.NewInt(-129), []byte{0xff, 0x7f}},
	} {
		// encoding/asn1 is the reference for DER INTEGER contents.
		der, err := asnMarshalInt(tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if got := crlSerialKey(tc.n, nil); !bytes.Equal(got, tc.want) || !bytes.Equal(got, der) {
			t.Errorf("%s: %x, want %x (asn1 %x)", tc.n, got, tc.want, der)
		}
	}
	for _, tc := range []struct{ in, want []byte }{
		{[]byte{0, 0, 5}, []byte{5}},
		{[]byte{0, 0x80}, []byte{0, 0x80}},
		{[]byte{0xff, 0xff, 0x80}, []byte{0x80}}, // -128
		{[]byte{0xff, 0x7f}, []byte{0xff, 0x7f}},
	} {
		if got, err := crlNormalizeSerial(tc.in); err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("normalize %x = %x, %v; want %x", tc.in, got, err, tc.want)
		}
	}
}

func asnMarshalInt(n *big.Int) ([]byte, error) {
	der, err := asn1.Marshal(n)
	if err != nil {
		return nil, err
	}
	return der[2:], nil
}

// revGoCA is a small ECDSA CA made with crypto/x509, for cases openssl
// cannot produce (huge or odd CRLs) and for the fuzz targets.
func revGoCA(t testing.TB) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rev test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId: []byte{1, 2, 3, 4},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func TestCRLSourceNegative(t *testing.T) {
	fx := revNewOpenSSLFixture(t)
	// Same DN, different key: the next J-LIS generation, or an impostor.
	sameName := revNewOpenSSLCA(t, "/C=JP/O=JPKI-TEST/OU=JPKI for digital signature", nil)
	_, sameNameCRL := sameName.gencrl()
	_, sameNameNoAKI := sameName.gencrl("-crlexts", "crl_plain")
	other := revNewOpenSSLCA(t, "/C=JP/O=OTHER/OU=Other CA", nil)
	otherLeaf, _, _ := other.issue("otherleaf", "leaf_ext")
	_, otherCRL := other.gencrl()
	// A real stale CRL: openssl writes the past dates itself.
	_, staleCRL := fx.ca.gencrl("-crl_lastupdate", time.Now().Add(-72*time.Hour).UTC().Format("20060102150405Z"),
		"-crl_nextupdate", time.Now().Add(-24*time.Hour).UTC().Format("20060102150405Z"))

	block := make(chan struct{})
	slow := revServe(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-block:
		}
	})
	t.Cleanup(func() { close(block) }) // runs before the server's Close
	status500 := revServe(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) })
	chunked := revServe(t, func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: the limit must be enforced while reading.
		for i := 0; i < len(fx.crlDER); i += 64 {
			w.Write(fx.crlDER[i:min(i+64, len(fx.crlDER))])
			w.(http.Flusher).Flush()
		}
	})
	garbage := revServe(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>not a CRL</html>")) })

	for _, tc := range []struct {
		name    string
		loc     string
		leaf    *x509.Certificate
		issuer  *x509.Certificate
		opts    CRLOptions
		wantErr string
	}{
		{name: "stale CRL", loc: revWriteFile(t, staleCRL), wantErr: "stale CRL"},
		{name: "stale by clock", loc: revWriteFile(t, fx.crlDER), opts: CRLOptions{Now: func() time.Time { return time.Now().Add(48 * time.Hour) }}, wantErr: "stale CRL"},
		{name: "signed by another key", loc: revWriteFile(t, sameNameCRL), wantErr: "signed by another key"},
		{name: "signed by another key, no AKI", loc: revWriteFile(t, sameNameNoAKI), wantErr: "signature does not verify"},
		{name: "corrupted signature", loc: revWriteFile(t, revFlipLastByte(fx.crlDER)), wantErr: "signature does not verify"},
		{name: "CRL for another issuer", loc: revWriteFile(t, otherCRL), wantErr: "issuer name does not match"},
		{name: "leaf of another issuer", loc: revWriteFile(t, fx.crlDER), leaf: otherLeaf, issuer: other.cert, wantErr: "another issuer"},
		{name: "issuer arg with another key", loc: revWriteFile(t, fx.crlDER), issuer: sameName.cert, wantErr: "issuer key differs"},
		{name: "truncated DER", loc: revWriteFile(t, fx.crlDER[:len(fx.crlDER)-10]), wantErr: "malformed CRL"},
		{name: "truncated PEM", loc: revWriteFile(t, fx.crlPEM[:len(fx.crlPEM)/2]), wantErr: "PEM"},
		{name: "empty file", loc: revWriteFile(t, nil), wantErr: "malformed CRL"},
		{name: "missing file", loc: filepath.Join(t.TempDir(), "absent.crl"), wantErr: "no such file"},
		{name: "oversized file", loc: revWriteFile(t, fx.crlDER), opts: CRLOptions{MaxBytes: 100}, wantErr: "limit"},
		{name: "oversized chunked", loc: chunked, opts: CRLOptions{MaxBytes: 100}, wantErr: "limit"},
		{name: "HTTP 500", loc: status500, wantErr: "HTTP status 500"},
		{name: "slow server", loc: slow, opts: CRLOptions{Timeout: 50 * time.Millisecond}, wantErr: "deadline exceeded"},
		{name: "not a CRL", loc: garbage, wantErr: "malformed CRL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := NewCRLSource(tc.loc, fx.ca.cert, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			leaf, issuer := fx.revoked, fx.ca.cert
			if tc.leaf != nil {
				leaf = tc.leaf
			}
			if tc.issuer != nil {
				issuer = tc.issuer
			}
			info, err := src.CheckRevocation(context.Background(), leaf, issuer)
			if err == nil || info.Status != StatusUnknown {
				t.Fatalf("got %+v, %v; want unknown with an error", info, err)
			}
			revReasonIs(t, err, ReasonRevocationUnknown)
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewCRLSourceRejects(t *testing.T) {
	fx := revNewOpenSSLFixture(t)
	for _, tc := range []struct {
		loc    string
		issuer *x509.Certificate
	}{
		{"", fx.ca.cert},
		{"ldap://directory.example/cn=crl", fx.ca.cert},
		{"/some/file", nil},
	} {
		if _, err := NewCRLSource(tc.loc, tc.issuer, CRLOptions{}); err == nil {
			t.Errorf("NewCRLSource(%q, %v) accepted", tc.loc, tc.issuer != nil)
		} else {
			revReasonIs(t, err, ReasonMalformed)
		}
	}
}

// TestCRLScope uses openssl's issuingDistributionPoint support: a
// partitioned CRL answers only for its partition, and CRLs limited to
// some reasons or to CA certificates answer nothing about leaves.
func TestCRLScope(t *testing.T) {
	ca := revNewOpenSSLCA(t, "/C=JP/O=JPKI-TEST/OU=scoped", nil)
	p1, _, _ := ca.issue("p1", "leaf_dp1")
	p2, _, _ := ca.issue("p2", "leaf_dp2")
	none, _, _ := ca.issue("nodp", "leaf_ext")
	_, idpP1 := ca.gencrl("-crlexts", "crl_idp_p1")
	_, idpReasons := ca.gencrl("-crlexts", "crl_idp_reasons")
	_, idpCA := ca.gencrl("-crlexts", "crl_idp_ca")
	for _, tc := range []struct {
		name    string
		crl     []byte
		leaf    *x509.Certificate
		wantErr string // "" means StatusGood
	}{
		{"partition member", idpP1, p1, ""},
		{"other partition", idpP1, p2, "partition"},
		{"no distribution point", idpP1, none, "partition"},
		{"only some reasons", idpReasons, p1, "some revocation reasons"},
		{"only CA certificates", idpCA, p1, "only CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := NewCRLSource(revWriteFile(t, tc.crl), ca.cert, CRLOptions{})
			if err != nil {
				t.Fatal(err)
			}
			info, err := src.CheckRevocation(context.Background(), tc.leaf, ca.cert)
			if tc.wantErr == "" {
				if err != nil || info.Status != StatusGood {
					t.Fatalf("got %+v, %v", info, err)
				}
				return
			}
			if err == nil || info.Status != StatusUnknown || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %+v, %v; want unknown mentioning %q", info, err, tc.wantErr)
			}
		})
	}
}

// TestCRLRefetch covers the cache: concurrent first checks fetch once; a
// check after nextUpdate refetches; a failed fetch is not retried within
// the backoff; an older CRL (rollback) is refused by Refresh.
func TestCRLRefetch(t *testing.T) {
	fx := revNewOpenSSLFixture(t)
	_, newer := fx.ca.gencrl("-crldays", "5")
	var (
		mu      sync.Mutex
		serve   = fx.crlDER
		fetches atomic.Int32
	)
	url := revServe(t, func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		mu.Lock()
		b := serve
		mu.Unlock()
		if b == nil {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(b)
	})
	set := func(b []byte) { mu.Lock(); serve = b; mu.Unlock() }
	var now atomic.Int64
	now.Store(time.Now().Unix())
	src, err := NewCRLSource(url, fx.ca.cert, CRLOptions{Now: func() time.Time { return time.Unix(now.Load(), 0) }, RetryBackoff: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if info, err := src.CheckRevocation(ctx, fx.revoked, fx.ca.cert); err != nil || info.Status != StatusRevoked {
				t.Errorf("concurrent check: %+v, %v", info, err)
			}
		})
	}
	wg.Wait()
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for concurrent first checks, want 1", n)
	}

	// Past nextUpdate with the server down: unknown, and no hammering.
	set(nil)
	now.Add(int64(2 * 24 * time.Hour / time.Second))
	for range 3 {
		if info, err := src.CheckRevocation(ctx, fx.good, fx.ca.cert); err == nil || info.Status != StatusUnknown {
			t.Fatalf("stale with server down: %+v, %v", info, err)
		}
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (one retry within the backoff)", n)
	}
	// After the backoff the newer CRL is fetched and used.
	set(newer)
	now.Add(int64(2 * time.Minute / time.Second))
	if info, err := src.CheckRevocation(ctx, fx.good, fx.ca.cert); err != nil || info.Status != StatusGood {
		t.Fatalf("after refetch: %+v, %v", info, err)
	}
	if st := src.Stats(); st.Number.Int64() != 2 || st.LastError != "" {
		t.Fatalf("stats after refetch %+v", st)
	}
	// Rollback to CRL number 1 is refused; the newer CRL stays in use.
	set(fx.crlDER)
	now.Store(time.Now().Unix())
	if err := src.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "the one in use") {
		t.Fatalf("rollback Refresh: %v", err)
	}
	if info, err := src.CheckRevocation(ctx, fx.revoked, fx.ca.cert); err != nil || info.Status != StatusRevoked {
		t.Fatalf("after refused rollback: %+v, %v", info, err)
	}
}

// TestCRLContextCancel: a caller that gives up gets unknown at once,
// while the shared fetch carries on for the others.
func TestCRLContextCancel(t *testing.T) {
	fx := revNewOpenSSLFixture(t)
	release := make(chan struct{})
	url := revServe(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Write(fx.crlDER)
	})
	src, err := NewCRLSource(url, fx.ca.cert, CRLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if info, err := src.CheckRevocation(ctx, fx.good, fx.ca.cert); err == nil || info.Status != StatusUnknown || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %+v, %v", info, err)
	}
	close(release)
	if info, err := src.CheckRevocation(context.Background(), fx.good, fx.ca.cert); err != nil || info.Status != StatusGood {
		t.Fatalf("after release: %+v, %v", info, err)
	}
}

// TestCRLRefusals feeds parseCRL CRLs that crypto/x509 can encode but a
// checker must not use.
func TestCRLRefusals(t *testing.T) {
	ca, key := revGoCA(t)
	now := time.Now()
	mk := func(rl *x509.RevocationList) []byte {
		t.Helper()
		if rl.ThisUpdate.IsZero() {
			rl.ThisUpdate = now
		}
		der, err := x509.CreateRevocationList(rand.Reader, rl, ca, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	critical := func(oid []int) []pkix.Extension {
		return []pkix.Extension{{Id: oid, Critical: true, Value: []byte{0x05, 0x00}}}
	}
	good := mk(&x509.RevocationList{Number: big.NewInt(1), NextUpdate: now.Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(9), RevocationTime: now}}})
	// A non-CA certificate with the CA's name and key.
	notCA := *ca
	notCA.BasicConstraintsValid, notCA.IsCA = true, false
	noCRLSign := *ca
	noCRLSign.KeyUsage = x509.KeyUsageCertSign
	for _, tc := range []struct {
		name    string
		der     []byte
		issuer  *x509.Certificate
		wantErr string
	}{
		{"no nextUpdate", revResignCRL(t, good, key, func(f [][]byte) [][]byte { return append(f[:4:4], f[5:]...) }), ca, "no nextUpdate"},
		{"version 3", revResignCRL(t, good, key, func(f [][]byte) [][]byte { f[0] = []byte{2, 1, 2}; return f }), ca, "unsupported version"},
		{"local time", revResignCRL(t, good, key, func(f [][]byte) [][]byte { f[3] = append([]byte{0x17, 17}, "250101000000+0900"...); return f }), ca, "thisUpdate"},
		{"February 30", revResignCRL(t, good, key, func(f [][]byte) [][]byte { f[3] = append([]byte{0x17, 13}, "250230000000Z"...); return f }), ca, "thisUpdate"},
		{"inner algorithm differs", revResignCRL(t, good, key, func(f [][]byte) [][]byte {
			f[1] = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03}
			return f
		}), ca, "algorithms differ"},
		{"trailing TBS field", revResignCRL(t, good, key, func(f [][]byte) [][]byte { return append(f, []byte{5, 0}) }), ca, "malformed"},
		{"delta CRL", mk(&x509.RevocationList{Number: big.NewInt(1), NextUpdate: now.Add(time.Hour), ExtraExtensions: []pkix.Extension{{Id: []int{2, 5, 29, 27}, Critical: true, Value: []byte{2, 1, 1}}}}), ca, "delta"},
		{"unknown critical extension", mk(&x509.RevocationList{Number: big.NewInt(1), NextUpdate: now.Add(time.Hour), ExtraExtensions: critical([]int{1, 2, 3, 4})}), ca, "critical extension"},
		{"unknown critical entry extension", mk(&x509.RevocationList{Number: big.NewInt(1), NextUpdate: now.Add(time.Hour), RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(5), RevocationTime: now, ExtraExtensions: critical([]int{1, 2, 3, 5})}}}), ca, "critical entry extension"},
		{"issuer not a CA", mk(&x509.RevocationList{Number: big.NewInt(1), NextUpdate: now.Add(time.Hour)}), &notCA, "not a CA"},
		{"issuer without cRLSign", mk(&x509.RevocationList{Number: big.NewInt(1), NextUpdate: now.Add(time.Hour)}), &noCRLSign, "may not sign CRLs"},
		{"trailing data", append(mk(&x509.RevocationList{Number: big.NewInt(1), NextUpdate: now.Add(time.Hour)}), 0), ca, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx, _, err := parseCRL(tc.der, []*x509.Certificate{tc.issuer})
			if err == nil || idx != nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("parseCRL = %v, %v; want error mentioning %q", idx != nil, err, tc.wantErr)
			}
		})
	}
}

// revResignCRL splits der's TBSCertList into its top-level fields, lets
// edit change them, and signs the result with key (ECDSA-SHA256): a fault
// injector for encodings neither openssl nor crypto/x509 will produce.
func revResignCRL(t testing.TB, der []byte, key *ecdsa.PrivateKey, edit func([][]byte) [][]byte) []byte {
	t.Helper()
	in := cryptobyte.String(der)
	var crl, tbs, alg cryptobyte.String
	if !in.ReadASN1(&crl, cbasn1.SEQUENCE) || !crl.ReadASN1(&tbs, cbasn1.SEQUENCE) || !crl.ReadASN1Element(&alg, cbasn1.SEQUENCE) {
		t.Fatal("bad CRL")
	}
	var fields [][]byte
	for len(tbs) > 0 {
		var el cryptobyte.String
		var tag cbasn1.Tag
		if !tbs.ReadAnyASN1Element(&el, &tag) {
			t.Fatal("bad TBS")
		}
		fields = append(fields, el)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, f := range edit(fields) {
			b.AddBytes(f)
		}
	})
	newTBS := b.BytesOrPanic()
	digest := sha256.Sum256(newTBS)
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	var out cryptobyte.Builder
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(newTBS)
		b.AddBytes(alg)
		b.AddASN1BitString(sig)
	})
	return out.BytesOrPanic()
}

func FuzzParseCRL(f *testing.F) {
	ca, key := revGoCA(f)
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, entries := range [][]x509.RevocationListEntry{
		nil,
		{{SerialNumber: big.NewInt(1), RevocationTime: now, ReasonCode: 1}},
		{{SerialNumber: big.NewInt(200), RevocationTime: now}, {SerialNumber: new(big.Int).Lsh(big.NewInt(1), 200), RevocationTime: now.AddDate(60, 0, 0)}},
	} {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(3), ThisUpdate: now, NextUpdate: now.Add(time.Hour), RevokedCertificateEntries: entries}, ca, key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
		f.Add(der[:len(der)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"))
	leaf := &x509.Certificate{SerialNumber: big.NewInt(1), RawIssuer: ca.RawSubject}
	f.Fuzz(func(t *testing.T, data []byte) {
		der, err := crlDecodePEM(data)
		if err != nil {
			return
		}
		if idx, issuer, err := parseCRL(der, []*x509.Certificate{ca}); err == nil {
			if issuer != ca || idx.nextUpdate.IsZero() {
				t.Fatalf("accepted without a verified issuer or nextUpdate")
			}
			idx.covers(leaf)
			idx.lookup([]byte{1})
		}
		// The entry parser sees attacker bytes only after the signature
		// check; fuzz it directly so the fuzzer need not forge one.
		if tbs, err := parseCRLTBS(der); err == nil {
			x := &crlIndex{}
			if tbs.hasExts {
				x.parseExtensions(tbs.exts)
			}
			if x.buildIndex(tbs.revoked) == nil {
				n := 0
				x.forEach(func(k []byte, _ int64, _ int8) bool {
					if _, _, ok := x.lookup(k); !ok {
						t.Fatalf("indexed serial %x not found", k)
					}
					n++
					return true
				})
				if n != x.len() {
					t.Fatalf("forEach saw %d of %d", n, x.len())
				}
			}
		}
	})
}

// requireOpenSSL mirrors jpkisim.RequireOpenSSL, which this internal test
// package cannot import (jpkisim imports pkibridge).
func requireOpenSSL(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if v := os.Getenv("WATASHI_REQUIRE_OPENSSL"); v != "" && v != "0" {
			tb.Fatalf("openssl not found and WATASHI_REQUIRE_OPENSSL is set: %v", err)
		}
		tb.Skip("openssl not installed (set WATASHI_REQUIRE_OPENSSL=1 to make this fatal)")
	}
}
