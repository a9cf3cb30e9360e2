package signin

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/pkibridge"
)

// The wallet protocol (docs/wallet-protocol.md): JSON over HTTPS, no
// cookies, no CORS (phones are not browsers). A wallet GETs a transaction
// with the token from the QR code, signs the bytes it is given, and POSTs
// the signatures once.
const (
	// WalletTxPath is where a wallet fetches and answers a transaction.
	WalletTxPath = "/wallet/v1/transactions/"

	// maxSubmissionBytes bounds a POST body: two envelopes of at most
	// pkibridge's 64 KiB each, base64-encoded, plus the JSON around them.
	maxSubmissionBytes = 256 << 10
	// maxSignatures is the most any purpose takes (proofing: two).
	maxSignatures = 2

	// Rate limits. A resident's wallet fetches a few times and submits
	// once; these leave room for retries and NAT-shared addresses.
	walletFetchPerIP   = 120 // per minute
	walletSubmitPerIP  = 30  // per minute
	walletSubmitPerTx  = 10  // verified submissions per transaction lifetime
	txCreatePerIP      = 30  // per minute
	browserStatusPerTx = 600 // per transaction lifetime (polls every 2 s)
	walletRateWindow   = time.Minute
)

// walletSubmission is a parsed POST body.
type walletSubmission struct {
	Signatures     []walletSignature    `json:"signatures"`
	ComparisonCode string               `json:"comparison_code"`
	QRToken        string               `json:"qr_token"`
	Authenticator  *walletAuthenticator `json:"authenticator,omitempty"`

	envelopes []*envelopeIn
}

type walletSignature struct {
	Format  string `json:"format"`
	JWS     string `json:"jws,omitempty"`
	CMSB64  string `json:"cms_b64,omitempty"`
	SigB64  string `json:"sig_b64,omitempty"`
	CertB64 string `json:"cert_b64,omitempty"`
	Hash    string `json:"hash,omitempty"`
}

// walletAuthenticator is the wallet's own report of how the key was
// unlocked. It refines amr and is never trusted for anything else.
type walletAuthenticator struct {
	Token            string `json:"token,omitempty"`
	UserVerification string `json:"user_verification,omitempty"`
}

// envelopeIn is one decoded signature, ready for the Verifier.
type envelopeIn struct {
	format string
	jws    []byte
	cms    []byte
	sig    []byte
	cert   *x509.Certificate
	hash   crypto.Hash
}

// parseSubmission decodes and checks a POST body without looking at any
// transaction. Every refusal is a request-level error: nothing changes.
func parseSubmission(body []byte) (*walletSubmission, *txError) {
	bad := func(format string, args ...any) *txError {
		return txBad(http.StatusBadRequest, codeInvalidRequest, fmt.Sprintf(format, args...))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var sub walletSubmission
	if err := dec.Decode(&sub); err != nil {
		return nil, bad("body is not a JSON object of the submission schema")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, bad("trailing data after the JSON object")
	}
	if len(sub.Signatures) == 0 {
		return nil, bad("signatures is empty")
	}
	if len(sub.Signatures) > maxSignatures {
		return nil, bad("at most %d signatures", maxSignatures)
	}
	if sub.QRToken == "" {
		return nil, txBad(http.StatusBadRequest, codeInvalidQRToken, "qr_token is required")
	}
	if sub.ComparisonCode == "" {
		return nil, bad("comparison_code is required")
	}
	if a := sub.Authenticator; a != nil {
		if len(a.Token) > 64 || len(a.UserVerification) > 32 {
			return nil, bad("authenticator fields too long")
		}
	}
	for i, s := range sub.Signatures {
		e, err := decodeSignature(s)
		if err != nil {
			err.Message = fmt.Sprintf("signatures[%d]: %s", i, err.Message)
			return nil, err
		}
		sub.envelopes = append(sub.envelopes, e)
	}
	return &sub, nil
}

func decodeSignature(s walletSignature) (*envelopeIn, *txError) {
	bad := func(format string, args ...any) *txError {
		return txBad(http.StatusBadRequest, codeInvalidRequest, fmt.Sprintf(format, args...))
	}
	only := func(allowed ...string) *txError {
		fields := map[string]string{"jws": s.JWS, "cms_b64": s.CMSB64, "sig_b64": s.SigB64, "cert_b64": s.CertB64, "hash": s.Hash}
		for name, v := range fields {
			if v == "" {
				continue
			}
			ok := false
			for _, a := range allowed {
				ok = ok || a == name
			}
			if !ok {
				return bad("field %s does not belong to format %s", name, s.Format)
			}
		}
		return nil
	}
	e := &envelopeIn{format: s.Format}
	switch s.Format {
	case "jws":
		if err := only("jws"); err != nil {
			return nil, err
		}
		if s.JWS == "" {
			return nil, bad("jws is required")
		}
		e.jws = []byte(s.JWS)
	case "cms":
		if err := only("cms_b64"); err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.Strict().DecodeString(s.CMSB64)
		if err != nil || len(b) == 0 {
			return nil, bad("cms_b64 is not base64")
		}
		e.cms = b
	case "raw":
		if err := only("sig_b64", "cert_b64", "hash"); err != nil {
			return nil, err
		}
		sig, err := base64.StdEncoding.Strict().DecodeString(s.SigB64)
		if err != nil || len(sig) == 0 {
			return nil, bad("sig_b64 is not base64")
		}
		der, err := base64.StdEncoding.Strict().DecodeString(s.CertB64)
		if err != nil || len(der) == 0 {
			return nil, bad("cert_b64 is not base64")
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, &txError{Code: string(pkibridge.ReasonMalformed), Status: http.StatusBadRequest, Message: "cert_b64 is not a DER certificate"}
		}
		switch s.Hash {
		case "", "SHA-256":
			e.hash = crypto.SHA256
		case "SHA-1":
			e.hash = crypto.SHA1 // refused by the Verifier unless the policy allows it
		default:
			return nil, bad("hash must be SHA-256")
		}
		e.sig, e.cert = sig, cert
	case "":
		return nil, bad("format is required")
	default:
		return nil, bad("unknown format (want jws, cms or raw)")
	}
	return e, nil
}

// admitVerification judges the transaction's submission limit, right
// before the signatures are verified. What the limit bounds is the
// verifier's work (chains, revocation look-ups) on one transaction. The
// count (res) is made in the round trip that reads the transaction, and
// only for a submission that is well formed and carries a QR token the
// provider issued for this transaction: a stranger's garbage is refused
// before it, so that it cannot use up the attempts of the resident's own
// wallet. Whoever holds a token can fetch the transaction and end it
// with a bad signature anyway.
func (h *Handler) admitVerification(ctx context.Context, res store.Result) *txError {
	if errors.Is(res.Err, errNotCounted) {
		// Unreachable: checkQR refuses first what was not counted.
		return txBad(http.StatusBadRequest, codeInvalidQRToken, "qr_token does not belong to this transaction")
	}
	if !h.web.Allowed(ctx, "wallet_submit_tx", walletSubmitPerTx, res) {
		return txBad(http.StatusTooManyRequests, codeRateLimited, "too many submissions for this transaction")
	}
	return nil
}

// errNotCounted marks a submission whose QR token was not one the
// provider issued for the transaction, and so was not counted.
var errNotCounted = errors.New("signin: submission not counted")

// walletRead reads transaction id for a wallet's submission or decline
// in one round trip with the address's count in bucket and the extra
// operations. A request refused already (refused, not nil: a body that
// is no good) reads nothing; it is counted alone, and refused, so that
// the address's limit still bounds what it makes the provider do. The
// body is read before the count: the limit bounds the store and the
// verifier, and reading a bounded body costs neither.
func (h *Handler) walletRead(w http.ResponseWriter, r *http.Request, bucket string, refused *txError, extra ...store.Op) (*signinTx, []byte, []store.Result, bool) {
	ctx := r.Context()
	if refused != nil {
		if !h.web.Allow(ctx, bucket, h.web.RateKey(r), walletSubmitPerIP, walletRateWindow) {
			refused = txBad(http.StatusTooManyRequests, codeRateLimited, "too many submissions")
		}
		h.walletError(w, refused)
		return nil, nil, nil, false
	}
	id := r.PathValue("id")
	ops := append([]store.Op{h.web.LimitOp(bucket, h.web.RateKey(r), walletRateWindow), h.txs.readOp(id)}, extra...)
	res, err := h.txs.kv.Do(ctx, ops...)
	if err != nil {
		h.log.ErrorContext(ctx, "wallet request", "tx", id, "error", err)
		h.walletError(w, txBad(http.StatusInternalServerError, codeServerError, "internal error"))
		return nil, nil, nil, false
	}
	if !h.web.Allowed(ctx, bucket, walletSubmitPerIP, res[0]) {
		h.walletError(w, txBad(http.StatusTooManyRequests, codeRateLimited, "too many submissions"))
		return nil, nil, nil, false
	}
	tx, err := h.txs.fromResult(res[1])
	if errors.Is(err, store.ErrNotFound) {
		h.walletError(w, txBad(http.StatusNotFound, codeUnknownTransaction, "no such transaction"))
		return nil, nil, nil, false
	}
	if err != nil {
		h.log.ErrorContext(ctx, "wallet request", "tx", id, "error", err)
		h.walletError(w, txBad(http.StatusInternalServerError, codeServerError, "internal error"))
		return nil, nil, nil, false
	}
	return tx, res[1].Val, res[2:], true
}

// walletError writes {"error": code, "error_description": message}; the
// cause stays in the log.
func (h *Handler) walletError(w http.ResponseWriter, e *txError) {
	web.WriteError(w, &web.Error{Status: e.Status, Code: e.Code, Message: e.Message})
}

// walletTransaction is the GET answer.
type walletTransaction struct {
	Transaction     string     `json:"transaction"`
	Issuer          string     `json:"issuer"`
	RP              walletRP   `json:"rp"`
	Purpose         string     `json:"purpose"`
	RequestedClaims []string   `json:"requested_claims"`
	Certificates    []string   `json:"certificates"`
	ExpiresAt       int64      `json:"expires_at"`
	ComparisonCode  string     `json:"comparison_code"`
	Sign            walletSign `json:"sign"`
	// ReturnURL is where a wallet opened on the browser's own device
	// sends the resident after answering.
	ReturnURL string `json:"return_url"`
}

type walletRP struct {
	ClientID    string `json:"client_id"`
	DisplayName string `json:"display_name"`
	Whitelisted bool   `json:"whitelisted"`
	Purpose     string `json:"purpose,omitempty"`
}

type walletSign struct {
	BytesB64 string   `json:"bytes_b64"`
	Formats  []string `json:"formats"`
}

func (h *Handler) handleWalletGet(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	// The address's count and the transaction in one round trip.
	res, err := h.txs.kv.Do(ctx, h.web.LimitOp("wallet_fetch", h.web.RateKey(r), walletRateWindow), h.txs.readOp(r.PathValue("id")))
	if err != nil {
		h.log.ErrorContext(ctx, "wallet fetch", "error", err)
		h.walletError(w, txBad(http.StatusInternalServerError, codeServerError, "internal error"))
		return
	}
	if !h.web.Allowed(ctx, "wallet_fetch", walletFetchPerIP, res[0]) {
		h.walletError(w, txBad(http.StatusTooManyRequests, codeRateLimited, "too many requests"))
		return
	}
	tx, err := h.txs.fromResult(res[1])
	if errors.Is(err, store.ErrNotFound) {
		h.walletError(w, txBad(http.StatusNotFound, codeUnknownTransaction, "no such transaction"))
		return
	}
	if err != nil {
		h.log.ErrorContext(ctx, "wallet fetch", "error", err)
		h.walletError(w, txBad(http.StatusInternalServerError, codeServerError, "internal error"))
		return
	}
	if e := h.txs.checkOpen(tx); e != nil {
		h.walletError(w, e)
		return
	}
	if e := h.txs.checkQR(tx, r.URL.Query().Get("qr_token"), true); e != nil {
		h.walletError(w, e)
		return
	}
	certs := []string{string(pkibridge.KindAuthentication)}
	if tx.Purpose == purposeProofing {
		certs = []string{string(pkibridge.KindSignature), string(pkibridge.KindAuthentication)}
	}
	claims := tx.Claims
	if claims == nil {
		claims = []string{}
	}
	web.WriteJSON(w, http.StatusOK, walletTransaction{
		Transaction: tx.ID,
		Issuer:      h.web.Issuer(),
		RP: walletRP{
			ClientID:    tx.ClientID,
			DisplayName: tx.ClientName,
			Whitelisted: tx.Whitelisted,
			Purpose:     tx.ClientPurpose,
		},
		Purpose:         tx.Purpose,
		RequestedClaims: claims,
		Certificates:    certs,
		ExpiresAt:       tx.ExpiresAt.Unix(),
		ComparisonCode:  tx.Code,
		Sign: walletSign{
			BytesB64: base64.StdEncoding.EncodeToString(tx.Bytes),
			Formats:  []string{"jws", "cms", "raw"},
		},
		ReturnURL: strings.TrimSuffix(h.web.Issuer(), "/") + returnPath(tx.ID),
	})
}

// handleWalletPost takes a wallet's answer. What needs no record is
// checked first (the body, and the QR token's MAC, which decides whether
// the submission counts against the transaction); then the address's
// count, the transaction's count and the transaction are one round trip.
func (h *Handler) handleWalletPost(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	sub, refused := h.readSubmission(w, r)
	var count []store.Op
	if refused == nil {
		if _, e := h.txs.qrWindowOf(id, sub.QRToken); e == nil {
			// A token the provider issued for this transaction: the
			// submission is counted against it. Any other is refused
			// below, by the same checks in the same order as ever.
			count = []store.Op{h.countOp(id, txSubmitsField)}
		}
	}
	tx, raw, res, ok := h.walletRead(w, r, "wallet_submit", refused, count...)
	if !ok {
		return
	}
	perTx := store.Result{Err: errNotCounted}
	if len(res) > 0 {
		perTx = res[0]
	}
	_, err := h.submitTx(ctx, tx, raw, perTx, sub)
	if err != nil {
		var te *txError
		if !errors.As(err, &te) {
			h.log.ErrorContext(ctx, "wallet submission", "tx", id, "error", err)
			te = txBad(http.StatusInternalServerError, codeServerError, "internal error")
		} else if te.Code == codeServerError && te.Cause != nil {
			h.log.ErrorContext(ctx, "wallet submission", "tx", id, "error", te.Cause)
		}
		h.walletError(w, te)
		return
	}
	web.WriteJSON(w, http.StatusOK, map[string]string{"status": "verified"})
}

// readSubmission reads and parses a submission's body.
func (h *Handler) readSubmission(w http.ResponseWriter, r *http.Request) (*walletSubmission, *txError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, txBad(http.StatusUnsupportedMediaType, codeInvalidRequest, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSubmissionBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, txBad(http.StatusRequestEntityTooLarge, codeRequestTooLarge, fmt.Sprintf("body exceeds %d bytes", maxSubmissionBytes))
		}
		return nil, txBad(http.StatusBadRequest, codeInvalidRequest, "cannot read body")
	}
	sub, perr := parseSubmission(body)
	if perr != nil {
		h.metrics.submissions.WithLabelValues(perr.Code).Inc()
	}
	return sub, perr
}
