package jpkisim_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

type simFixture struct {
	ca, ca2         *jpkisim.CA
	good, revoked   *x509.Certificate
	other           *x509.Certificate // issued by ca2
	never           *x509.Certificate // signed by ca's key, serial never issued
	revokedAt       time.Time
	srv             *httptest.Server
	crlURL, ocspURL string
}

func newSimFixture(t *testing.T) *simFixture {
	t.Helper()
	fx := &simFixture{}
	var err error
	if fx.ca, err = jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindAuthentication}); err != nil {
		t.Fatal(err)
	}
	if fx.ca2, err = jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindAuthentication, Organization: "JPKI-SIMULATOR-2"}); err != nil {
		t.Fatal(err)
	}
	issue := func(ca *jpkisim.CA) *x509.Certificate {
		l, err := ca.Issue(jpkisim.LeafOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return l.Cert
	}
	fx.good, fx.revoked, fx.other = issue(fx.ca), issue(fx.ca), issue(fx.ca2)
	fx.revokedAt = time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	fx.ca.Revoke(fx.revoked.SerialNumber, fx.revokedAt, 1)
	never := *fx.good
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(999_999_999), Subject: never.Subject, NotBefore: never.NotBefore, NotAfter: never.NotAfter}
	der, err := x509.CreateCertificate(nil, tmpl, fx.ca.Cert, fx.good.PublicKey, fx.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	if fx.never, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	fx.srv = httptest.NewServer(jpkisim.NewRevocationServer(fx.ca, fx.ca2))
	t.Cleanup(fx.srv.Close)
	fx.crlURL, fx.ocspURL = fx.srv.URL+"/crl/0.crl", fx.srv.URL+"/ocsp/0"
	return fx
}

func TestSimCRL(t *testing.T) {
	fx := newSimFixture(t)
	now := time.Now()
	der1, err := fx.ca.CRL(now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	der2, err := fx.ca.CRL(now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	rl1, err := x509.ParseRevocationList(der1)
	if err != nil {
		t.Fatal(err)
	}
	rl2, err := x509.ParseRevocationList(der2)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl1.CheckSignatureFrom(fx.ca.Cert); err != nil {
		t.Fatal(err)
	}
	if rl2.Number.Cmp(new(big.Int).Add(rl1.Number, big.NewInt(1))) != 0 {
		t.Fatalf("CRL numbers %s then %s, want consecutive", rl1.Number, rl2.Number)
	}
	revs := fx.ca.Revocations()
	if len(rl1.RevokedCertificateEntries) != len(revs) {
		t.Fatalf("%d entries, CA has %d revocations", len(rl1.RevokedCertificateEntries), len(revs))
	}
	e := rl1.RevokedCertificateEntries[0]
	if e.SerialNumber.Cmp(fx.revoked.SerialNumber) != 0 || !e.RevocationTime.Equal(fx.revokedAt) || e.ReasonCode != 1 {
		t.Fatalf("entry %+v", e)
	}

	// OpenSSL agrees the CRL is signed by the CA.
	dir := t.TempDir()
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", fx.ca.Cert.Raw)
	if err := os.WriteFile(filepath.Join(dir, "crl.der"), der1, 0o600); err != nil {
		t.Fatal(err)
	}
	out := runOpenSSL(t, dir, "crl", "-inform", "DER", "-in", "crl.der", "-CAfile", "ca.pem", "-noout", "-text")
	if !strings.Contains(out, "verify OK") || !strings.Contains(strings.ToUpper(out), strings.ToUpper(fx.revoked.SerialNumber.Text(16))) {
		t.Fatalf("openssl crl:\n%s", out)
	}
}

func TestSimRevocationServerWithClients(t *testing.T) {
	fx := newSimFixture(t)
	ctx := context.Background()
	crl, err := pkibridge.NewCRLSource(fx.crlURL, fx.ca.Cert, pkibridge.CRLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crl2, err := pkibridge.NewCRLSource(fx.srv.URL+"/crl/1.crl", fx.ca2.Cert, pkibridge.CRLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oc, err := pkibridge.NewOCSPClient(fx.ocspURL, pkibridge.OCSPOptions{NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	oc2, err := pkibridge.NewOCSPClient(fx.srv.URL+"/ocsp/1", pkibridge.OCSPOptions{NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		checker pkibridge.RevocationChecker
		leaf    *x509.Certificate
		issuer  *x509.Certificate
		want    pkibridge.RevocationStatus
		wantErr string
	}{
		{"CRL good", crl, fx.good, fx.ca.Cert, pkibridge.StatusGood, ""},
		{"CRL revoked", crl, fx.revoked, fx.ca.Cert, pkibridge.StatusRevoked, ""},
		{"second CA's CRL", crl2, fx.other, fx.ca2.Cert, pkibridge.StatusGood, ""},
		{"CRL of another CA", crl, fx.other, fx.ca2.Cert, pkibridge.StatusUnknown, "another issuer"},
		{"OCSP good", oc, fx.good, fx.ca.Cert, pkibridge.StatusGood, ""},
		{"OCSP revoked", oc, fx.revoked, fx.ca.Cert, pkibridge.StatusRevoked, ""},
		{"OCSP never issued", oc, fx.never, fx.ca.Cert, pkibridge.StatusUnknown, "does not know"},
		{"OCSP second CA", oc2, fx.other, fx.ca2.Cert, pkibridge.StatusGood, ""},
		{"OCSP asked about another CA", oc, fx.other, fx.ca2.Cert, pkibridge.StatusUnknown, "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := tc.checker.CheckRevocation(ctx, tc.leaf, tc.issuer)
			if info.Status != tc.want {
				t.Fatalf("status %s (%v), want %s", info.Status, err, tc.want)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == pkibridge.StatusRevoked && !info.RevokedAt.Equal(fx.revokedAt) {
				t.Fatalf("revoked at %s, want %s", info.RevokedAt, fx.revokedAt)
			}
		})
	}
	// Revocations after the first fetch show in OCSP at once.
	fx.ca.Revoke(fx.good.SerialNumber, time.Now(), 4)
	if info, err := oc.CheckRevocation(ctx, fx.good, fx.ca.Cert); err != nil || info.Status != pkibridge.StatusRevoked || info.Detail != "reason superseded" {
		t.Fatalf("after Revoke: %+v, %v", info, err)
	}
}

func TestSimDelegatedResponder(t *testing.T) {
	fx := newSimFixture(t)
	own, err := fx.ca.NewOCSPResponderCert()
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := fx.ca2.NewOCSPResponderCert()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		h       http.Handler
		wantErr string
	}{
		{"delegated by the CA", fx.ca.DelegatedOCSPResponder(own), ""},
		{"delegated by another CA", fx.ca.DelegatedOCSPResponder(foreign), "another CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			c, err := pkibridge.NewOCSPClient(srv.URL, pkibridge.OCSPOptions{})
			if err != nil {
				t.Fatal(err)
			}
			info, err := c.CheckRevocation(context.Background(), fx.revoked, fx.ca.Cert)
			if tc.wantErr == "" {
				if err != nil || info.Status != pkibridge.StatusRevoked {
					t.Fatalf("%+v, %v", info, err)
				}
				return
			}
			if err == nil || info.Status != pkibridge.StatusUnknown || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("%+v, %v; want unknown mentioning %q", info, err, tc.wantErr)
			}
		})
	}
}

// TestSimOCSPWithOpenSSL: the real `openssl ocsp` client accepts the
// simulator's answers, over POST.
func TestSimOCSPWithOpenSSL(t *testing.T) {
	fx := newSimFixture(t)
	dir := t.TempDir()
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", fx.ca.Cert.Raw)
	writePEM(t, filepath.Join(dir, "good.pem"), "CERTIFICATE", fx.good.Raw)
	writePEM(t, filepath.Join(dir, "revoked.pem"), "CERTIFICATE", fx.revoked.Raw)
	writePEM(t, filepath.Join(dir, "never.pem"), "CERTIFICATE", fx.never.Raw)
	// x/crypto's request parser (and so the simulator) reads one CertID
	// per request: ask about one certificate at a time.
	for _, tc := range []struct{ file, want string }{
		{"good.pem", "good.pem: good"},
		{"revoked.pem", "revoked.pem: revoked"},
		{"never.pem", "never.pem: unknown"},
	} {
		out := runOpenSSL(t, dir, "ocsp", "-issuer", "ca.pem", "-CAfile", "ca.pem", "-url", fx.ocspURL, "-no_nonce", "-cert", tc.file)
		if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, tc.want) {
			t.Errorf("openssl ocsp output lacks %q:\n%s", tc.want, out)
		}
		if tc.file == "revoked.pem" && !strings.Contains(out, "Reason: keyCompromise") {
			t.Errorf("openssl ocsp shows no reason:\n%s", out)
		}
	}
}

func TestSimOCSPHandlerNegative(t *testing.T) {
	fx := newSimFixture(t)
	req, err := ocsp.CreateRequest(fx.good, fx.ca.Cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(req)
	for _, tc := range []struct {
		name       string
		method     string
		path       string
		body       []byte
		wantHTTP   int
		wantStatus ocsp.ResponseStatus // checked when wantHTTP is 200
		wantGood   bool
	}{
		{"GET base64 request", http.MethodGet, "/ocsp/0/" + url.PathEscape(b64), nil, 200, ocsp.Success, true},
		{"GET unescaped base64", http.MethodGet, "/ocsp/0/" + b64, nil, 200, ocsp.Success, true},
		{"POST garbage", http.MethodPost, "/ocsp/0", []byte("garbage"), 200, ocsp.Malformed, false},
		{"POST empty", http.MethodPost, "/ocsp/0", nil, 200, ocsp.Malformed, false},
		{"POST oversized", http.MethodPost, "/ocsp/0", bytes.Repeat([]byte{0x30}, 70<<10), 200, ocsp.Malformed, false},
		{"GET bad base64", http.MethodGet, "/ocsp/0/%21%21", nil, 200, ocsp.Malformed, false},
		{"GET empty tail", http.MethodGet, "/ocsp/0/", nil, 404, 0, false},
		{"GET not a request", http.MethodGet, "/ocsp/0/" + base64.StdEncoding.EncodeToString([]byte("hello")), nil, 200, ocsp.Malformed, false},
		{"POST to GET path", http.MethodPost, "/ocsp/0/" + b64, req, 404, 0, false},
		{"PUT", http.MethodPut, "/ocsp/0", req, 405, 0, false},
		{"PUT CRL", http.MethodPut, "/crl/0.crl", nil, 405, 0, false},
		{"no such CA", http.MethodPost, "/ocsp/2", req, 404, 0, false},
		{"no such CRL", http.MethodGet, "/crl/2.crl", nil, 404, 0, false},
		{"non-canonical index", http.MethodGet, "/crl/00.crl", nil, 404, 0, false},
		{"negative index", http.MethodGet, "/crl/-1.crl", nil, 404, 0, false},
		{"other path", http.MethodGet, "/", nil, 404, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := http.NewRequest(tc.method, fx.srv.URL+tc.path, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantHTTP {
				t.Fatalf("HTTP %d, want %d", resp.StatusCode, tc.wantHTTP)
			}
			if tc.wantHTTP != 200 {
				return
			}
			parsed, err := ocsp.ParseResponseForCert(body, fx.good, fx.ca.Cert)
			if tc.wantStatus != ocsp.Success {
				re, ok := err.(ocsp.ResponseError)
				if !ok || re.Status != tc.wantStatus {
					t.Fatalf("response %v, want status %v", err, tc.wantStatus)
				}
				return
			}
			if err != nil || (parsed.Status == ocsp.Good) != tc.wantGood {
				t.Fatalf("response %+v, %v", parsed, err)
			}
		})
	}
}

func FuzzOCSPResponderRequest(f *testing.F) {
	ca, err := jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindAuthentication})
	if err != nil {
		f.Fatal(err)
	}
	leaf, err := ca.Issue(jpkisim.LeafOptions{})
	if err != nil {
		f.Fatal(err)
	}
	req, err := ocsp.CreateRequest(leaf.Cert, ca.Cert, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(req)
	f.Add(req[:len(req)-1])
	f.Add([]byte{0x30, 0x00})
	h := ca.OCSPResponder()
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/ocsp/0", bytes.NewReader(body)))
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d", rec.Code)
		}
		if _, err := ocsp.ParseResponse(rec.Body.Bytes(), ca.Cert); err != nil {
			if _, ok := err.(ocsp.ResponseError); !ok {
				t.Fatalf("responder produced an unparseable response: %v", err)
			}
		}
	})
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func runOpenSSL(t *testing.T, dir string, args ...string) string {
	t.Helper()
	jpkisim.RequireOpenSSL(t)
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
