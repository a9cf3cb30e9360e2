package jpkisim

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Revocation data served by the simulator. Paths of NewRevocationServer,
// where <n> is the CA's position in its argument list (0-based):
//
//	GET  /crl/<n>.crl          DER CRL, freshly signed, valid 24 h
//	POST /ocsp/<n>             OCSP request body (application/ocsp-request)
//	GET  /ocsp/<n>/<request>   base64 of the DER request, URL-escaped (RFC 6960 A.1)
//
// OCSP answers are signed with the CA key (or a delegated responder
// certificate, DelegatedOCSPResponder) and say: revoked, with time and
// reason, for serials passed to Revoke; good for serials the CA issued;
// unknown for any other serial. Requests about another issuer get the
// "unauthorized" response status. Request nonces are not echoed.

const (
	ocspMaxRequest  = 64 << 10
	crlValidity     = 24 * time.Hour
	ocspValidity    = time.Hour
	ocspContentType = "application/ocsp-response"
)

// CRL signs a complete CRL of every revocation so far, with the next CRL
// number. Tests pass explicit times to make stale or not-yet-valid CRLs.
func (ca *CA) CRL(thisUpdate, nextUpdate time.Time) ([]byte, error) {
	ca.mu.Lock()
	ca.crlNumber++
	number := ca.crlNumber
	ca.mu.Unlock()
	revs := ca.Revocations()
	slices.SortFunc(revs, func(a, b Revocation) int { return a.Serial.Cmp(b.Serial) })
	entries := make([]x509.RevocationListEntry, 0, len(revs))
	for _, r := range revs {
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber:   r.Serial,
			RevocationTime: r.RevokedAt,
			ReasonCode:     r.ReasonCode,
		})
	}
	return x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		SignatureAlgorithm:        x509.SHA256WithRSA,
		Number:                    big.NewInt(number),
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
}

// CRLHandler serves a fresh CRL on every GET, valid for 24 hours.
func (ca *CA) CRLHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		now := time.Now()
		der, err := ca.CRL(now.Add(-time.Minute), now.Add(crlValidity))
		if err != nil {
			http.Error(w, "cannot sign CRL", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Header().Set("Content-Length", strconv.Itoa(len(der)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(der)
		}
	})
}

// issued reports whether serial came from Issue (serials run upwards from
// 1001) or NewOCSPResponderCert.
func (ca *CA) issued(serial *big.Int) bool {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return serial.IsInt64() && serial.Int64() > 1000 && serial.Int64() <= ca.nextSerial
}

// NewOCSPResponderCert issues a delegated OCSP responder certificate
// (id-kp-OCSPSigning, id-pkix-ocsp-nocheck, ECDSA P-256, valid a year),
// for tests of responder authorisation.
func (ca *CA) NewOCSPResponderCert() (*Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ca.mu.Lock()
	ca.nextSerial++
	serial := big.NewInt(ca.nextSerial)
	ca.mu.Unlock()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{Country: []string{"JP"}, Organization: []string{"JPKI-SIMULATOR"}, CommonName: fmt.Sprintf("OCSP-%d", serial.Int64())},
		NotBefore:      now.Add(-time.Hour),
		NotAfter:       now.AddDate(1, 0, 0),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		AuthorityKeyId: ca.Cert.SubjectKeyId,
		ExtraExtensions: []pkix.Extension{
			{Id: []int{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}, Value: []byte{0x05, 0x00}}, // id-pkix-ocsp-nocheck
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Leaf{Cert: cert, Key: key}, nil
}

// OCSPResponder answers OCSP requests about this CA's certificates,
// signing with the CA key.
func (ca *CA) OCSPResponder() http.Handler {
	return &ocspResponder{ca: ca, cert: ca.Cert, key: ca.Key}
}

// DelegatedOCSPResponder answers like OCSPResponder but signs with
// responder's key and embeds its certificate, as a delegated responder
// does. Passing a certificate the CA did not delegate produces answers a
// correct client refuses, which is what negative tests need.
func (ca *CA) DelegatedOCSPResponder(responder *Leaf) http.Handler {
	return &ocspResponder{ca: ca, cert: responder.Cert, key: responder.Key, embed: true}
}

type ocspResponder struct {
	ca    *CA
	cert  *x509.Certificate
	key   crypto.Signer
	embed bool
}

func (o *ocspResponder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var der []byte
	switch r.Method {
	case http.MethodPost:
		body, err := io.ReadAll(io.LimitReader(r.Body, ocspMaxRequest+1))
		if err != nil || len(body) > ocspMaxRequest {
			o.write(w, ocsp.MalformedRequestErrorResponse)
			return
		}
		der = body
	case http.MethodGet:
		der = ocspRequestFromPath(r.URL.EscapedPath())
		if der == nil {
			o.write(w, ocsp.MalformedRequestErrorResponse)
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	o.write(w, o.respond(der))
}

func (o *ocspResponder) write(w http.ResponseWriter, resp []byte) {
	w.Header().Set("Content-Type", ocspContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(resp)))
	_, _ = w.Write(resp)
}

// ocspRequestFromPath finds the base64 request at the end of an escaped
// path. Standard base64 contains '/', so it tries ever longer suffixes
// rather than assuming the handler's mount point.
func ocspRequestFromPath(escaped string) []byte {
	segs := strings.Split(escaped, "/")
	for i := len(segs) - 1; i >= 1; i-- {
		joined, err := url.PathUnescape(strings.Join(segs[i:], "/"))
		if err != nil || joined == "" {
			continue
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding, base64.URLEncoding} {
			if der, err := enc.DecodeString(joined); err == nil {
				if _, err := ocsp.ParseRequest(der); err == nil {
					return der
				}
			}
		}
	}
	return nil
}

// respond builds the DER response to one request.
func (o *ocspResponder) respond(der []byte) []byte {
	req, err := ocsp.ParseRequest(der)
	if err != nil || req.SerialNumber == nil {
		return ocsp.MalformedRequestErrorResponse
	}
	if !o.ca.ownsCertID(req) {
		return ocsp.UnauthorizedErrorResponse
	}
	now := time.Now().UTC().Truncate(time.Second)
	tmpl := ocsp.Response{
		SerialNumber: req.SerialNumber,
		IssuerHash:   req.HashAlgorithm,
		ThisUpdate:   now.Add(-time.Minute),
		NextUpdate:   now.Add(ocspValidity),
	}
	if rev, ok := o.ca.IsRevoked(req.SerialNumber); ok {
		tmpl.Status = ocsp.Revoked
		tmpl.RevokedAt = rev.RevokedAt
		tmpl.RevocationReason = rev.ReasonCode
	} else if o.ca.issued(req.SerialNumber) {
		tmpl.Status = ocsp.Good
	} else {
		tmpl.Status = ocsp.Unknown
	}
	if o.embed {
		tmpl.Certificate = o.cert
	}
	resp, err := ocsp.CreateResponse(o.ca.Cert, o.cert, tmpl, o.key)
	if err != nil {
		return ocsp.InternalErrorErrorResponse
	}
	return resp
}

// ownsCertID reports whether the request's issuer hashes name this CA.
func (ca *CA) ownsCertID(req *ocsp.Request) bool {
	if !req.HashAlgorithm.Available() {
		return false
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(ca.Cert.RawSubjectPublicKeyInfo, &spki); err != nil {
		return false
	}
	h := req.HashAlgorithm.New()
	h.Write(ca.Cert.RawSubject)
	name := h.Sum(nil)
	h = req.HashAlgorithm.New()
	h.Write(spki.PublicKey.RightAlign())
	key := h.Sum(nil)
	return bytes.Equal(name, req.IssuerNameHash) && bytes.Equal(key, req.IssuerKeyHash)
}

// NewRevocationServer serves the CRLs and OCSP responders of cas under
// the paths listed above; everything else is 404.
func NewRevocationServer(cas ...*CA) http.Handler {
	crls := make([]http.Handler, len(cas))
	ocsps := make([]http.Handler, len(cas))
	for i, ca := range cas {
		crls[i] = ca.CRLHandler()
		ocsps[i] = ca.OCSPResponder()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		if rest, ok := strings.CutPrefix(p, "/crl/"); ok {
			if num, ok := strings.CutSuffix(rest, ".crl"); ok {
				if n, err := strconv.Atoi(num); err == nil && n >= 0 && n < len(crls) && strconv.Itoa(n) == num {
					crls[n].ServeHTTP(w, r)
					return
				}
			}
		}
		if rest, ok := strings.CutPrefix(p, "/ocsp/"); ok {
			num, tail, hasTail := strings.Cut(rest, "/")
			if n, err := strconv.Atoi(num); err == nil && n >= 0 && n < len(ocsps) && strconv.Itoa(n) == num {
				if (r.Method == http.MethodPost && !hasTail) || (r.Method == http.MethodGet && hasTail && tail != "") || (r.Method != http.MethodPost && r.Method != http.MethodGet) {
					ocsps[n].ServeHTTP(w, r)
					return
				}
			}
		}
		http.NotFound(w, r)
	})
}
