package walletsim

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// Certificate kinds as the protocol names them.
const (
	CertSignature      = "signature"
	CertAuthentication = "authentication"
)

// Envelope formats a wallet may answer in.
const (
	FormatJWS = "jws"
	FormatCMS = "cms"
	FormatRaw = "raw"
)

// Token labels of the JPKI applets, reported so that the
// provider can add the RFC 8176 "sc" method for a card.
const (
	TokenCard    = "JPKIAPICCTOKEN2"
	TokenAndroid = "JPKIAPGPSETOKEN"
	TokenIOS     = "JPKIAPIOSTOKEN"
)

// SignedType is the "typ" of the bytes a wallet signs; any other value
// means the provider is asking for something this wallet does not know.
const SignedType = "watashi-signin+v1"

// Limits on what a provider may send back, so a hostile URL cannot make
// the wallet read without bound.
const maxResponseBytes = 1 << 20

// Wallet holds the two JPKI key pairs of one simulated resident.
type Wallet struct {
	SigKey   crypto.Signer
	SigCert  *x509.Certificate
	AuthKey  crypto.Signer
	AuthCert *x509.Certificate
	// Token is the applet label the wallet reports (default TokenAndroid).
	Token string
	// UserVerification is "pin" or "biometric", as the wallet reports it.
	UserVerification string
}

// EnrollOptions tune Enroll; tests pass pre-generated keys because RSA
// key generation dominates their run time.
type EnrollOptions struct {
	SigKey, AuthKey  crypto.Signer
	Token            string
	UserVerification string
	NotBefore        time.Time
	NotAfter         time.Time
}

// Enroll issues a signature certificate carrying facts and a
// user-authentication certificate, with fresh RSA-2048 keys, as a
// municipality does when it writes the certificates to a card or phone.
func Enroll(sigCA, authCA *jpkisim.CA, facts jpkisim.Facts) (*Wallet, error) {
	return EnrollWith(sigCA, authCA, facts, EnrollOptions{})
}

// EnrollWith is Enroll with options.
func EnrollWith(sigCA, authCA *jpkisim.CA, facts jpkisim.Facts, o EnrollOptions) (*Wallet, error) {
	if sigCA == nil || authCA == nil {
		return nil, errors.New("walletsim: Enroll needs a signature CA and an authentication CA")
	}
	if sigCA.Kind != pkibridge.KindSignature || authCA.Kind != pkibridge.KindAuthentication {
		return nil, errors.New("walletsim: Enroll: CAs of the wrong kind (want signature, authentication)")
	}
	sig, err := sigCA.Issue(jpkisim.LeafOptions{Facts: &facts, Key: o.SigKey, NotBefore: o.NotBefore, NotAfter: o.NotAfter})
	if err != nil {
		return nil, fmt.Errorf("walletsim: issue signature certificate: %w", err)
	}
	auth, err := authCA.Issue(jpkisim.LeafOptions{Key: o.AuthKey, NotBefore: o.NotBefore, NotAfter: o.NotAfter})
	if err != nil {
		return nil, fmt.Errorf("walletsim: issue authentication certificate: %w", err)
	}
	w := &Wallet{SigKey: sig.Key, SigCert: sig.Cert, AuthKey: auth.Key, AuthCert: auth.Cert, Token: o.Token, UserVerification: o.UserVerification}
	if w.Token == "" {
		w.Token = TokenAndroid
	}
	if w.UserVerification == "" {
		w.UserVerification = "pin"
	}
	return w, nil
}

// Files of a saved wallet.
const (
	sigCertFile  = "signature.crt"
	sigKeyFile   = "signature.key"
	authCertFile = "authentication.crt"
	authKeyFile  = "authentication.key"
	metaFile     = "wallet.json"
)

type walletMeta struct {
	Simulator        bool   `json:"simulator"`
	Token            string `json:"token"`
	UserVerification string `json:"user_verification"`
}

// Save writes the wallet to dir as PEM (keys 0600), so that `watashi
// wallet approve` can answer transactions in a later process.
func (w *Wallet) Save(dir string) error {
	if w == nil || w.SigKey == nil || w.SigCert == nil || w.AuthKey == nil || w.AuthCert == nil {
		return errors.New("walletsim: Save: incomplete wallet")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("walletsim: Save: %w", err)
	}
	sigKey, err := x509.MarshalPKCS8PrivateKey(w.SigKey)
	if err != nil {
		return fmt.Errorf("walletsim: Save: %w", err)
	}
	authKey, err := x509.MarshalPKCS8PrivateKey(w.AuthKey)
	if err != nil {
		return fmt.Errorf("walletsim: Save: %w", err)
	}
	meta, err := json.MarshalIndent(walletMeta{Simulator: true, Token: w.Token, UserVerification: w.UserVerification}, "", "  ")
	if err != nil {
		return fmt.Errorf("walletsim: Save: %w", err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{sigCertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: w.SigCert.Raw}), 0o644},
		{sigKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: sigKey}), 0o600},
		{authCertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: w.AuthCert.Raw}), 0o644},
		{authKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: authKey}), 0o600},
		{metaFile, append(meta, '\n'), 0o644},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("walletsim: Save: %w", err)
		}
		if err := os.Chmod(filepath.Join(dir, f.name), f.mode); err != nil {
			return fmt.Errorf("walletsim: Save: %w", err)
		}
	}
	return nil
}

// Load reads a wallet written by Save and checks that each key matches
// its certificate.
func Load(dir string) (*Wallet, error) {
	w := &Wallet{}
	var err error
	if w.SigCert, err = readCert(filepath.Join(dir, sigCertFile)); err != nil {
		return nil, err
	}
	if w.SigKey, err = readKey(filepath.Join(dir, sigKeyFile)); err != nil {
		return nil, err
	}
	if w.AuthCert, err = readCert(filepath.Join(dir, authCertFile)); err != nil {
		return nil, err
	}
	if w.AuthKey, err = readKey(filepath.Join(dir, authKeyFile)); err != nil {
		return nil, err
	}
	if !samePublic(w.SigKey, w.SigCert) || !samePublic(w.AuthKey, w.AuthCert) {
		return nil, fmt.Errorf("walletsim: Load: a key in %s does not match its certificate", dir)
	}
	meta := walletMeta{Token: TokenAndroid, UserVerification: "pin"}
	if b, err := os.ReadFile(filepath.Join(dir, metaFile)); err == nil {
		if err := json.Unmarshal(b, &meta); err != nil {
			return nil, fmt.Errorf("walletsim: Load: %s: %w", metaFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("walletsim: Load: %w", err)
	}
	w.Token, w.UserVerification = meta.Token, meta.UserVerification
	return w, nil
}

func readCert(name string) (*x509.Certificate, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("walletsim: %w", err)
	}
	certs, err := pkibridge.ParseCertificates(b)
	if err != nil || len(certs) != 1 {
		return nil, fmt.Errorf("walletsim: %s: want exactly one certificate", filepath.Base(name))
	}
	return certs[0], nil
}

func readKey(name string) (crypto.Signer, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("walletsim: %w", err)
	}
	k, err := jpkisim.ParsePEMPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("walletsim: %s: %w", filepath.Base(name), err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("walletsim: %s: not a signing key", filepath.Base(name))
	}
	return s, nil
}

func samePublic(k crypto.Signer, c *x509.Certificate) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := k.Public().(equaler)
	return ok && e.Equal(c.PublicKey)
}

// Transaction is what GET /wallet/v1/transactions/{id} returns, plus what
// the wallet derived from the URL it was given.
type Transaction struct {
	ID              string   `json:"transaction"`
	Issuer          string   `json:"issuer"`
	RP              RP       `json:"rp"`
	Purpose         string   `json:"purpose"`
	RequestedClaims []string `json:"requested_claims"`
	Certificates    []string `json:"certificates"`
	ExpiresAt       int64    `json:"expires_at"`
	ComparisonCode  string   `json:"comparison_code"`
	Sign            SignSpec `json:"sign"`
	// ReturnURL is where a wallet opened on the browser's own device
	// sends the resident after answering. Fetch keeps it only when it is
	// on the issuer's origin.
	ReturnURL string `json:"return_url"`

	// URL is the transaction URL without its query; the wallet POSTs here.
	URL string `json:"-"`
	// QRToken is the rotating token from the scanned URL, echoed on submit.
	QRToken string `json:"-"`
	// Bytes are the exact bytes to sign (Sign.BytesB64 decoded).
	Bytes []byte `json:"-"`
	// Signed is Bytes parsed, after Fetch checked it against the rest.
	Signed SignedBytes `json:"-"`
}

// RP describes the relying party as the provider vouches for it.
type RP struct {
	ClientID    string `json:"client_id"`
	DisplayName string `json:"display_name"`
	Whitelisted bool   `json:"whitelisted"`
	Purpose     string `json:"purpose,omitempty"`
}

// SignSpec says what to sign and in which envelopes.
type SignSpec struct {
	BytesB64 string   `json:"bytes_b64"`
	Formats  []string `json:"formats"`
}

// SignedBytes is the JSON object inside the bytes to sign.
type SignedBytes struct {
	Aud      string `json:"aud"`
	ClientID string `json:"client_id"`
	Exp      int64  `json:"exp"`
	Iss      string `json:"iss"`
	Nonce    string `json:"nonce"`
	Purpose  string `json:"purpose"`
	RP       string `json:"rp"`
	Txn      string `json:"txn"`
	Typ      string `json:"typ"`
}

// Expires is ExpiresAt as a time.
func (t *Transaction) Expires() time.Time { return time.Unix(t.ExpiresAt, 0) }

// Signature is one element of the submission's "signatures" array.
type Signature struct {
	Format  string `json:"format"`
	JWS     string `json:"jws,omitempty"`
	CMSB64  string `json:"cms_b64,omitempty"`
	SigB64  string `json:"sig_b64,omitempty"`
	CertB64 string `json:"cert_b64,omitempty"`
	Hash    string `json:"hash,omitempty"`
}

// Authenticator is what the wallet reports about how the key was used.
// The provider cannot verify it; it only refines amr.
type Authenticator struct {
	Token            string `json:"token,omitempty"`
	UserVerification string `json:"user_verification,omitempty"`
}

// Submission is the POST body.
type Submission struct {
	Signatures     []Signature    `json:"signatures"`
	ComparisonCode string         `json:"comparison_code"`
	QRToken        string         `json:"qr_token"`
	Authenticator  *Authenticator `json:"authenticator,omitempty"`
}

// Error is a refusal from the provider ({"error": ..., "error_description": ...}).
type Error struct {
	Status      int
	Code        string
	Description string
}

func (e *Error) Error() string {
	if e.Description != "" {
		return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Description)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Code, e.Status)
}

// ErrorCode returns the provider's error code of err, or "".
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

const transactionsPath = "/wallet/v1/transactions/"

// ParseURL accepts what a QR code or app link carries: the transaction
// URL itself (https, or http for a local demo), or the app link
// watashi://sign?tx=<URL>. It returns the URL to fetch.
func ParseURL(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("walletsim: not a URL")
	}
	if u.Scheme == "watashi" {
		inner := u.Query().Get("tx")
		if inner == "" {
			return nil, errors.New("walletsim: app link without tx")
		}
		if u, err = url.Parse(inner); err != nil {
			return nil, errors.New("walletsim: app link tx is not a URL")
		}
	} else if u.Path != "" && !strings.Contains(u.Path, transactionsPath) && u.Query().Get("tx") != "" {
		// An https fallback link or the demo phone page: ...?tx=<URL>.
		if u, err = url.Parse(u.Query().Get("tx")); err != nil {
			return nil, errors.New("walletsim: link tx is not a URL")
		}
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("walletsim: transaction URL must be https (or http for a local demo)")
	}
	if u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, errors.New("walletsim: transaction URL must have a host and no user info or fragment")
	}
	i := strings.LastIndex(u.Path, transactionsPath)
	if i < 0 || strings.Contains(u.Path[i+len(transactionsPath):], "/") || len(u.Path) == i+len(transactionsPath) {
		return nil, fmt.Errorf("walletsim: not a transaction URL (want .../wallet/v1/transactions/<id>)")
	}
	return u, nil
}

// Fetch reads a transaction and checks that the bytes to sign say what
// the rest of the answer says and belong to the server that was asked:
// a wallet signs nothing whose issuer is not the origin it fetched from,
// so a phishing site cannot relay another provider's transaction.
func Fetch(ctx context.Context, c *http.Client, txURL string) (*Transaction, error) {
	u, err := ParseURL(txURL)
	if err != nil {
		return nil, err
	}
	if c == nil {
		c = defaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("walletsim: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("walletsim: fetch transaction: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("walletsim: fetch transaction: %w", err)
	}
	if len(body) > maxResponseBytes {
		return nil, errors.New("walletsim: fetch transaction: response too large")
	}
	if resp.StatusCode != http.StatusOK {
		return nil, decodeError(resp.StatusCode, body)
	}
	var tx Transaction
	if err := json.Unmarshal(body, &tx); err != nil {
		return nil, fmt.Errorf("walletsim: transaction is not JSON: %w", err)
	}
	tx.QRToken = u.Query().Get("qr_token")
	clean := *u
	clean.RawQuery = ""
	tx.URL = clean.String()
	if err := tx.check(u); err != nil {
		return nil, err
	}
	return &tx, nil
}

// check is the wallet's side of the binding: everything it will show the
// resident must be what the signed bytes say.
func (tx *Transaction) check(u *url.URL) error {
	b, err := base64.StdEncoding.DecodeString(tx.Sign.BytesB64)
	if err != nil || len(b) == 0 {
		return errors.New("walletsim: sign.bytes_b64 is not base64")
	}
	tx.Bytes = b
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tx.Signed); err != nil {
		return fmt.Errorf("walletsim: the bytes to sign are not a %s object: %w", SignedType, err)
	}
	s := tx.Signed
	prefix := strings.TrimSuffix(s.Iss, "/") + transactionsPath
	var problems []string
	check := func(ok bool, what string) {
		if !ok {
			problems = append(problems, what)
		}
	}
	check(s.Typ == SignedType, "typ")
	check(s.Txn == tx.ID && tx.ID != "", "txn")
	check(s.Iss == tx.Issuer && s.Aud == tx.Issuer, "iss/aud")
	check(strings.HasPrefix(tx.URL, prefix) && tx.URL == prefix+url.PathEscape(tx.ID), "issuer does not match the URL fetched")
	check(s.ClientID == tx.RP.ClientID && s.RP == tx.RP.DisplayName, "rp")
	check(s.Purpose == tx.Purpose, "purpose")
	check(s.Exp == tx.ExpiresAt, "exp")
	check(s.Nonce != "", "nonce")
	switch tx.Purpose {
	case "signin":
		check(slices.Equal(tx.Certificates, []string{CertAuthentication}), "certificates")
	case "proofing":
		check(slices.Equal(tx.Certificates, []string{CertSignature, CertAuthentication}), "certificates")
	default:
		problems = append(problems, "unknown purpose")
	}
	if len(problems) > 0 {
		return fmt.Errorf("walletsim: refusing to sign: the transaction is inconsistent (%s)", strings.Join(problems, ", "))
	}
	// A return URL elsewhere than the provider would let a transaction
	// send the resident anywhere after the PIN: it is dropped.
	if !strings.HasPrefix(tx.ReturnURL, strings.TrimSuffix(s.Iss, "/")+"/") {
		tx.ReturnURL = ""
	}
	return nil
}

// Approve fetches the transaction at txURL and answers it in format with
// the certificates it asks for. Interactive callers use Fetch, show the
// transaction, then Submit.
func (w *Wallet) Approve(ctx context.Context, c *http.Client, txURL, format string) error {
	tx, err := Fetch(ctx, c, txURL)
	if err != nil {
		return err
	}
	return w.Submit(ctx, c, tx, format)
}

// Submit signs tx's bytes with the certificates it asks for and posts
// them. Expiry is checked here too, so a resident who waited too long
// hears it from the wallet rather than after a PIN entry.
func (w *Wallet) Submit(ctx context.Context, c *http.Client, tx *Transaction, format string) error {
	if time.Now().After(tx.Expires()) {
		return &Error{Status: 0, Code: "expired_transaction", Description: "the transaction expired before it was signed"}
	}
	sigs, err := w.SignBytes(tx.Bytes, format, tx.Certificates)
	if err != nil {
		return err
	}
	return w.SubmitSignatures(ctx, c, tx, Submission{Signatures: sigs, ComparisonCode: tx.ComparisonCode, QRToken: tx.QRToken})
}

// SubmitSignatures posts a prepared submission; tests use it to send
// tampered ones. The wallet's authenticator report is added when absent.
func (w *Wallet) SubmitSignatures(ctx context.Context, c *http.Client, tx *Transaction, sub Submission) error {
	if c == nil {
		c = defaultClient
	}
	if sub.Authenticator == nil && w != nil {
		sub.Authenticator = &Authenticator{Token: w.Token, UserVerification: w.UserVerification}
	}
	body, err := json.Marshal(sub)
	if err != nil {
		return fmt.Errorf("walletsim: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tx.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("walletsim: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("walletsim: submit: %w", err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("walletsim: submit: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp.StatusCode, rb)
	}
	var ok struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(rb, &ok); err != nil || ok.Status != "verified" {
		return fmt.Errorf("walletsim: submit: unexpected answer")
	}
	return nil
}

// Reasons a wallet gives for not signing.
const (
	// DeclineDeclined: the resident said no.
	DeclineDeclined = "declined"
	// DeclineCodesDiffer: the resident saw a different confirmation code
	// in the browser (a QR code from someone else's screen).
	DeclineCodesDiffer = "comparison_mismatch"
)

// Decline tells the provider that the resident will not sign tx, so that
// the browser stops waiting at once and says why. reason is
// DeclineDeclined or DeclineCodesDiffer.
func Decline(ctx context.Context, c *http.Client, tx *Transaction, reason string) error {
	if c == nil {
		c = defaultClient
	}
	body, err := json.Marshal(map[string]string{"qr_token": tx.QRToken, "reason": reason})
	if err != nil {
		return fmt.Errorf("walletsim: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tx.URL+"/decline", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("walletsim: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("walletsim: decline: %w", err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("walletsim: decline: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp.StatusCode, rb)
	}
	var ok struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(rb, &ok); err != nil || ok.Status != "declined" {
		return fmt.Errorf("walletsim: decline: unexpected answer")
	}
	return nil
}

// SignBytes makes one signature per named certificate kind over data.
func (w *Wallet) SignBytes(data []byte, format string, certs []string) ([]Signature, error) {
	if len(certs) == 0 {
		return nil, errors.New("walletsim: no certificate asked for")
	}
	var out []Signature
	for _, kind := range certs {
		var key crypto.Signer
		var cert *x509.Certificate
		switch kind {
		case CertSignature:
			key, cert = w.SigKey, w.SigCert
		case CertAuthentication:
			key, cert = w.AuthKey, w.AuthCert
		default:
			return nil, fmt.Errorf("walletsim: unknown certificate kind %q", kind)
		}
		s, err := signOne(key, cert, data, format)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func signOne(key crypto.Signer, cert *x509.Certificate, data []byte, format string) (Signature, error) {
	switch format {
	case FormatJWS, "":
		jws, err := jpkisim.SignJWS(key, []*x509.Certificate{cert}, data)
		if err != nil {
			return Signature{}, err
		}
		return Signature{Format: FormatJWS, JWS: string(jws)}, nil
	case FormatCMS:
		cms, err := jpkisim.SignCMS(key, cert, data, false)
		if err != nil {
			return Signature{}, err
		}
		return Signature{Format: FormatCMS, CMSB64: base64.StdEncoding.EncodeToString(cms)}, nil
	case FormatRaw:
		sig, err := jpkisim.SignRaw(key, data)
		if err != nil {
			return Signature{}, err
		}
		return Signature{Format: FormatRaw, SigB64: base64.StdEncoding.EncodeToString(sig), CertB64: base64.StdEncoding.EncodeToString(cert.Raw), Hash: "SHA-256"}, nil
	}
	return Signature{}, fmt.Errorf("walletsim: unknown format %q (want jws, cms or raw)", format)
}

func decodeError(status int, body []byte) error {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return &Error{Status: status, Code: "http_error", Description: http.StatusText(status)}
	}
	return &Error{Status: status, Code: e.Error, Description: e.Description}
}

var defaultClient = &http.Client{Timeout: 30 * time.Second}
