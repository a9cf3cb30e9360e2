package signin

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/internal/logref"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
)

// A sign-in transaction is one attempt to answer one auth request from
// one browser with a wallet signature. It lives in the store under
// "tx:<id>" with a TTL, moves pending → processing → verified | failed
// exactly once (compare-and-swap), and then verified → finished when the
// browser that owns it picks up the result.
//
// Purpose. A transaction starts as "signin" (the authentication
// certificate alone). When the wallet answers with an authentication
// certificate that is linked to no account, the transaction fails with
// not_enrolled and the login page offers identity proofing: a new
// transaction with purpose "proofing", where the wallet signs with the
// signature certificate and the authentication certificate in one
// submission. The page also offers proofing up front ("first time"), so a
// resident who knows they are new skips one round. We chose this over
// asking the wallet to decide because a wallet cannot know whether this
// provider has seen it before, and over always proofing because a
// signature-certificate check costs the operator ten times more.
const (
	purposeSignin   = "signin"
	purposeProofing = authreq.PurposeProofing

	txPending    = "pending"
	txProcessing = "processing"
	txVerified   = "verified"
	txFailed     = "failed"
	txFinished   = "finished"
	// txExpired is never stored: a pending transaction past its expiry
	// reads as expired.
	txExpired = "expired"

	// signedType names the format of the bytes to sign; a wallet refuses
	// any other.
	signedType = "watashi-signin+v1"

	// qrWindow is the rotation period of the QR token. A wallet fetch must
	// present the token of the current or the previous window, so a
	// screenshot relayed to someone else is useless after 20-40 s.
	qrWindow = 20 * time.Second

	// txGrace keeps a record after its expiry so that the browser can
	// still learn "expired" (or finish a verification that landed in the
	// last seconds) instead of "unknown".
	txGrace = 2 * time.Minute

	// casRetries bounds optimistic updates of one record.
	casRetries = 8

	// maxTxRecordBytes bounds a stored transaction. Nothing in it comes
	// from the browser that opens it but a choice among fixed values; the
	// largest parts are the client's name (at most 200 characters), twice, and
	// its purpose.
	maxTxRecordBytes = 6 << 10
)

// Transaction error codes (the wallet protocol's and the browser's).
// pkibridge reasons are passed through unchanged.
const (
	codeInvalidRequest     = "invalid_request"
	codeRequestTooLarge    = "request_too_large"
	codeRateLimited        = "rate_limited"
	codeUnknownTransaction = "unknown_transaction"
	codeExpiredTransaction = "expired_transaction"
	codeAlreadyUsed        = "already_used"
	codeInvalidQRToken     = "invalid_qr_token"
	codeExpiredQRToken     = "expired_qr_token"
	codeComparison         = "comparison_mismatch"
	codeNotEnrolled        = "not_enrolled"
	codeWrongCertificate   = "wrong_certificate"
	codeIdentityMismatch   = "identity_mismatch"
	codeAccountConflict    = "account_conflict"
	codeServerError        = "server_error"
)

// txError is a refusal with its protocol code. Message is what the
// wallet and the browser may read; Cause, for the log only, keeps what
// the verifier or the store said. Final errors end the transaction
// (state failed, the browser shows the reason); the others leave it
// pending so a corrected request may follow.
type txError struct {
	Code    string
	Status  int
	Final   bool
	Message string
	Cause   error
}

func (e *txError) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Message + ": " + e.Cause.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *txError) Unwrap() error { return e.Cause }

// txFail is a final refusal about the certificates (the wallet answered,
// the answer is no good for this transaction).
func txFail(code, message string) *txError {
	return &txError{Code: code, Status: http.StatusBadRequest, Final: true, Message: message}
}

// txBad is a request-level refusal that changes nothing.
func txBad(status int, code, message string) *txError {
	return &txError{Code: code, Status: status, Message: message}
}

// reasonMessages say to a wallet what a verification failure means. The
// verifier's own detail (which check, which limit, which responder) goes
// to the log only.
var reasonMessages = map[pkibridge.Reason]string{
	pkibridge.ReasonBadSignature:      "the signature does not verify over the issued bytes",
	pkibridge.ReasonUntrusted:         "the certificate does not chain to a trusted JPKI root",
	pkibridge.ReasonExpired:           "the certificate has expired",
	pkibridge.ReasonNotYetValid:       "the certificate is not yet valid",
	pkibridge.ReasonRevoked:           "the certificate has been revoked",
	pkibridge.ReasonRevocationUnknown: "the certificate's revocation status could not be checked now; try again",
	pkibridge.ReasonKeyUsage:          "the certificate is not of a kind this step accepts",
	pkibridge.ReasonMalformed:         "the signature envelope is malformed",
	pkibridge.ReasonWeakKey:           "the certificate's key is too weak",
	pkibridge.ReasonWeakAlgorithm:     "the signature algorithm is not accepted",
	pkibridge.ReasonAttributes:        "the certificate's identity attributes are malformed",
}

// fromVerifyError maps a pkibridge failure. Malformed envelopes and an
// unknown revocation status do not end the transaction: the first is a
// broken request, the second a responder outage the resident did not
// cause and may outlast by retrying.
func fromVerifyError(err error) *txError {
	r := pkibridge.ReasonOf(err)
	msg, ok := reasonMessages[r]
	if !ok {
		msg = "the signature was not accepted"
	}
	e := &txError{Code: string(r), Status: http.StatusBadRequest, Final: true, Message: msg, Cause: err}
	switch r {
	case pkibridge.ReasonMalformed:
		e.Final = false
	case pkibridge.ReasonRevocationUnknown:
		e.Final, e.Status = false, http.StatusServiceUnavailable
	}
	return e
}

// fromAccountError maps the account store's answer to a proofing or a
// sign-in.
func fromAccountError(err error) *txError {
	switch {
	case errors.Is(err, account.ErrNotEnrolled):
		return &txError{Code: codeNotEnrolled, Status: http.StatusBadRequest, Final: true,
			Message: "the authentication certificate is not linked to an account; prove your identity first", Cause: err}
	case errors.Is(err, account.ErrConflict):
		return &txError{Code: codeAccountConflict, Status: http.StatusBadRequest, Final: true,
			Message: "the certificates or the session belong to different accounts", Cause: err}
	case errors.Is(err, account.ErrIdentityMismatch):
		return &txError{Code: codeIdentityMismatch, Status: http.StatusBadRequest, Final: true,
			Message: "the signature certificate names another person than the account", Cause: err}
	}
	return &txError{Code: codeServerError, Status: http.StatusInternalServerError, Final: true, Message: "internal error", Cause: err}
}

// signinTx is the stored transaction.
type signinTx struct {
	ID            string `json:"id"`
	AuthRequestID string `json:"ar"`
	Binding       string `json:"binding"` // SHA-256 hex of the browser's binding cookie
	Purpose       string `json:"purpose"`
	ClientID      string `json:"client_id"`
	ClientName    string `json:"client_name"`
	ClientPurpose string `json:"client_purpose,omitempty"`
	// Whitelisted is the RP's badge on the wallet: a client the operator
	// configured or approved in the registry.
	Whitelisted bool      `json:"whitelisted,omitempty"`
	Claims      []string  `json:"claims,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	Code        string    `json:"code"`  // comparison code, "12-34"
	Nonce       string    `json:"nonce"` // challenge inside Bytes
	Bytes       []byte    `json:"bytes"` // the exact bytes to sign
	// SessionAccount is the signed-in account when a proofing was started
	// with an SSO session: the new certificates re-link to it.
	SessionAccount string `json:"session_account,omitempty"`
	// Notice is a login-page message saying why the resident is asked
	// to sign in or prove (loginNotices).
	Notice string    `json:"notice,omitempty"`
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"`
	Result *txResult `json:"result,omitempty"`
}

// txResult is what a verified transaction proved.
type txResult struct {
	AccountID string    `json:"account_id"`
	ACR       string    `json:"acr"`
	AMR       []string  `json:"amr"`
	AuthTime  time.Time `json:"auth_time"`
	Created   bool      `json:"created,omitempty"` // a proofing made a new account
	// Method and Authenticator as in authreq.Authentication.
	Method        string `json:"method,omitempty"`
	Authenticator string `json:"authenticator,omitempty"`
}

func (r *txResult) authentication() authreq.Authentication {
	return authreq.Authentication{AccountID: r.AccountID, ACR: r.ACR, AMR: slices.Clone(r.AMR), Time: r.AuthTime,
		Method: r.Method, Authenticator: r.Authenticator}
}

// sameBinding compares binding hashes in constant time; "" never matches.
func sameBinding(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// transactions keeps the transaction records: the one-time state changes
// (compare-and-swap), their announcement to every node, and the rotating
// QR tokens that let a wallet find one.
type transactions struct {
	kv     store.KV
	issuer string
	key    []byte // QR token MAC key
	now    func() time.Time
	log    *slog.Logger
}

func txKey(id string) string { return "tx:" + id }

// txChannel carries state changes to every node's SSE streams.
func txChannel(id string) string { return "txev:" + id }

// displayState is the state a reader sees at now.
func (t *signinTx) displayState(now time.Time) string {
	switch t.State {
	case txPending, txProcessing:
		if !now.Before(t.ExpiresAt) {
			return txExpired
		}
		return txPending
	}
	return t.State
}

// comparisonCode is two plus two random digits, shown on the browser and
// in the wallet; the resident approves only when they match.
func comparisonCode() string {
	n, err := rand.Int(rand.Reader, big.NewInt(10000))
	if err != nil {
		n = big.NewInt(0)
	}
	v := n.Int64()
	return fmt.Sprintf("%02d-%02d", v/100, v%100)
}

// digitsOnly normalises a typed comparison code ("12 34", "1234").
func digitsOnly(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// signedPayload is the object the wallet signs. Field order is
// alphabetical and the encoding compact, so the bytes are canonical; the
// wallet still signs the bytes it is given, never a re-encoding.
type signedPayload struct {
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

// bytesToSign builds the exact bytes. They bind the issuer (aud and iss),
// the transaction, the RP and the expiry: a signature made for one
// context proves nothing in any other.
func bytesToSign(issuer string, tx *signinTx) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(signedPayload{
		Aud:      issuer,
		ClientID: tx.ClientID,
		Exp:      tx.ExpiresAt.Unix(),
		Iss:      issuer,
		Nonce:    tx.Nonce,
		Purpose:  tx.Purpose,
		RP:       tx.ClientName,
		Txn:      tx.ID,
		Typ:      signedType,
	})
	if err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// createTx opens a transaction for ar in the browser whose binding cookie
// hashes to binding.
func (h *Handler) createTx(ctx context.Context, ar *authreq.AuthRequest, binding, purpose, sessionAccount, notice string) (*signinTx, error) {
	if purpose != purposeSignin && purpose != purposeProofing {
		return nil, fmt.Errorf("signin: unknown purpose %q", purpose)
	}
	e, err := h.clients.Display(ctx, ar.ClientID)
	if err != nil {
		return nil, fmt.Errorf("signin: transaction client: %w", err)
	}
	now := h.web.Now().UTC().Truncate(time.Second)
	tx := &signinTx{
		ID:             ids.Short(),
		AuthRequestID:  ar.ID,
		Binding:        binding,
		Purpose:        purpose,
		ClientID:       e.Client.ID,
		ClientName:     e.Client.Name(),
		ClientPurpose:  e.Client.Purpose,
		Whitelisted:    e.Approved(),
		Claims:         requestedClaims(ar),
		CreatedAt:      now,
		ExpiresAt:      now.Add(h.txTTL),
		Code:           comparisonCode(),
		Nonce:          ids.Long(),
		SessionAccount: sessionAccount,
		Notice:         notice,
		State:          txPending,
	}
	if tx.Bytes, err = bytesToSign(h.web.Issuer(), tx); err != nil {
		return nil, err
	}
	b, err := json.Marshal(tx)
	if err != nil {
		return nil, err
	}
	if len(b) > maxTxRecordBytes {
		return nil, fmt.Errorf("signin: transaction record of %d bytes, over %d", len(b), maxTxRecordBytes)
	}
	ok, err := h.kv.SetNX(ctx, txKey(tx.ID), b, h.txTTL+txGrace)
	if err != nil {
		return nil, fmt.Errorf("signin: store transaction: %w", err)
	}
	if !ok {
		return nil, errors.New("signin: transaction ID collision")
	}
	h.metrics.transactions.WithLabelValues(purpose).Inc()
	return tx, nil
}

// requestedClaims lists what an auth request asks for, for the login page
// and the wallet ("this service will receive ..."), in display order. It
// is informative only; nothing is released from it.
func requestedClaims(ar *authreq.AuthRequest) []string {
	var out []string
	for _, it := range ar.Requested.Items() {
		out = append(out, it.Claim)
	}
	return out
}

// loadTx returns the transaction and its stored bytes (for CAS).
func (t *transactions) load(ctx context.Context, id string) (*signinTx, []byte, error) {
	if id == "" || len(id) > 64 {
		return nil, nil, store.ErrNotFound
	}
	b, err := t.kv.Get(ctx, txKey(id))
	if err != nil {
		return nil, nil, err
	}
	tx := new(signinTx)
	if err := json.Unmarshal(b, tx); err != nil {
		return nil, nil, fmt.Errorf("signin: transaction record: %w", err)
	}
	return tx, b, nil
}

// swapTx replaces old with tx if nobody changed it meanwhile, and tells
// every node's listeners.
func (t *transactions) swap(ctx context.Context, old []byte, tx *signinTx) ([]byte, bool, error) {
	b, err := json.Marshal(tx)
	if err != nil {
		return nil, false, err
	}
	ok, err := t.kv.CompareAndSwap(ctx, txKey(tx.ID), old, b)
	if err != nil {
		return nil, false, fmt.Errorf("signin: update transaction: %w", err)
	}
	// Processing reads as pending to every listener (displayState), so
	// the claim is not announced: a listener would only re-read the
	// record and repeat "pending".
	if ok && tx.State != txProcessing {
		t.publish(ctx, tx)
	}
	return b, ok, nil
}

// txEvent is what the browser's status endpoint and SSE stream say.
type txEvent struct {
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

func (t *transactions) publish(ctx context.Context, tx *signinTx) {
	msg, _ := json.Marshal(txEvent{State: tx.State, Reason: tx.Reason})
	if err := t.kv.Publish(ctx, txChannel(tx.ID), msg); err != nil {
		// Polling still delivers the outcome; SSE listeners re-read on
		// their next keep-alive.
		t.log.WarnContext(ctx, "transaction event not published", "tx", tx.ID, "error", err)
	}
}

// qrToken authenticates the transaction URL shown in window w:
// "<w>.<mac>", where mac is HMAC-SHA-256(CookieKey, "watashi-qr", txid, w)
// truncated to 128 bits.
func (t *transactions) qrToken(txID string, w int64) string {
	ws := strconv.FormatInt(w, 10)
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte("watashi-qr\x00"))
	m.Write([]byte(txID))
	m.Write([]byte{0})
	m.Write([]byte(ws))
	return ws + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

func qrWindowAt(t time.Time) int64 { return t.Unix() / int64(qrWindow/time.Second) }

// checkQRToken verifies a token for tx. With fresh, the token must be of
// the current or the previous window (the wallet's fetch: the moment of
// scanning); without, any window of the transaction's life is accepted
// (the submission, which may come a minute later after a card tap and a
// PIN, echoes the token the wallet scanned).
func (t *transactions) checkQR(tx *signinTx, tok string, fresh bool) *txError {
	ws, _, ok := strings.Cut(tok, ".")
	if !ok || len(tok) > 64 {
		return txBad(http.StatusBadRequest, codeInvalidQRToken, "missing or malformed qr_token")
	}
	w, err := strconv.ParseInt(ws, 10, 64)
	if err != nil || strconv.FormatInt(w, 10) != ws {
		return txBad(http.StatusBadRequest, codeInvalidQRToken, "malformed qr_token")
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(t.qrToken(tx.ID, w))) != 1 {
		return txBad(http.StatusBadRequest, codeInvalidQRToken, "qr_token does not belong to this transaction")
	}
	now := qrWindowAt(t.now())
	if w < qrWindowAt(tx.CreatedAt) || w > now {
		return txBad(http.StatusBadRequest, codeInvalidQRToken, "qr_token outside the transaction's life")
	}
	if fresh && w < now-1 {
		return txBad(http.StatusGone, codeExpiredQRToken, "the QR code has rotated; scan the current one")
	}
	return nil
}

// txURL is the URL the QR code and app link carry for window w.
func (t *transactions) url(txID string, w int64) string {
	return strings.TrimSuffix(t.issuer, "/") + WalletTxPath + url.PathEscape(txID) +
		"?qr_token=" + url.QueryEscape(t.qrToken(txID, w))
}

// verifyEnvelope checks one submitted signature over exactly want.
func (h *Handler) verifyEnvelope(ctx context.Context, e *envelopeIn, want []byte) (*pkibridge.Result, error) {
	v := h.verifier
	switch e.format {
	case "jws":
		return v.VerifyJWS(ctx, e.jws, want)
	case "cms":
		// The expected bytes double as the detached content: a detached
		// CMS is checked against them, an attached one must equal them.
		return v.VerifyCMS(ctx, e.cms, want, want)
	case "raw":
		return v.VerifyRaw(ctx, e.sig, e.cert, want, e.hash)
	}
	return nil, pkibridge.Fail(pkibridge.ReasonMalformed, "unknown format")
}

// amrFor turns what the wallet reports into RFC 8176 values. The key is
// hardware-bound (hwk) and was unlocked by the resident; we cannot tell a
// PIN from a fingerprint, so "pin" is always claimed (a JPKI key has a
// PIN even where biometrics unlock it), "user" is added when the wallet
// reports biometric verification, and "sc" when it reports the card's
// token. These reports are the wallet's word, not verified facts.
func amrFor(a *walletAuthenticator) []string {
	amr := []string{"hwk", "pin"}
	if a != nil {
		if a.UserVerification == "biometric" {
			amr = append(amr, "user")
		}
		if a.Token == "JPKIAPICCTOKEN2" {
			amr = append(amr, "sc")
		}
	}
	return amr
}

// submitTx runs one wallet submission to the end: checks, signature
// verification, the one-time state change, and the account work.
func (h *Handler) submitTx(ctx context.Context, id string, sub *walletSubmission) (*signinTx, error) {
	tx, raw, err := h.txs.load(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, txBad(http.StatusNotFound, codeUnknownTransaction, "no such transaction")
	}
	if err != nil {
		return nil, err
	}
	if e := h.txs.checkOpen(tx); e != nil {
		return nil, e
	}
	if e := h.txs.checkQR(tx, sub.QRToken, false); e != nil {
		return nil, e
	}
	if subtle.ConstantTimeCompare([]byte(digitsOnly(sub.ComparisonCode)), []byte(digitsOnly(tx.Code))) != 1 {
		return nil, txBad(http.StatusBadRequest, codeComparison, "comparison_code does not match the transaction")
	}
	want := 1
	if tx.Purpose == purposeProofing {
		want = 2
	}
	if len(sub.envelopes) != want {
		return nil, txBad(http.StatusBadRequest, codeInvalidRequest,
			fmt.Sprintf("purpose %s takes %d signature(s), got %d", tx.Purpose, want, len(sub.envelopes)))
	}
	if e := h.admitVerification(ctx, tx); e != nil {
		return nil, e
	}

	start := time.Now()
	results := make([]*pkibridge.Result, 0, want)
	for _, e := range sub.envelopes {
		res, err := h.verifyEnvelope(ctx, e, tx.Bytes)
		if err != nil {
			h.metrics.verify.Observe(time.Since(start).Seconds())
			return nil, h.failTx(ctx, tx, raw, fromVerifyError(err))
		}
		results = append(results, res)
	}
	h.metrics.verify.Observe(time.Since(start).Seconds())

	var sig, auth *pkibridge.Result
	for _, r := range results {
		switch {
		case r.Kind == pkibridge.KindSignature && sig == nil:
			sig = r
		case r.Kind == pkibridge.KindAuthentication && auth == nil:
			auth = r
		}
	}
	switch {
	case tx.Purpose == purposeSignin && auth == nil:
		return nil, h.failTx(ctx, tx, raw, txFail(codeWrongCertificate, "sign-in takes the user-authentication certificate"))
	case tx.Purpose == purposeProofing && (sig == nil || auth == nil):
		return nil, h.failTx(ctx, tx, raw, txFail(codeWrongCertificate, "proofing takes one signature and one user-authentication certificate"))
	}

	// Claim the transaction before touching accounts: of two concurrent
	// valid submissions exactly one gets past this point.
	claimed := *tx
	claimed.State = txProcessing
	craw, ok, err := h.txs.swap(ctx, raw, &claimed)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, txBad(http.StatusConflict, codeAlreadyUsed, "the transaction has already been answered")
	}

	var accountID, before string
	var created bool
	if tx.Purpose == purposeSignin {
		accountID, err = h.accounts.SignIn(ctx, auth)
	} else if before, err = h.accounts.LinkedTo(ctx, auth.Leaf); err == nil {
		accountID, created, err = h.accounts.Proof(ctx, sig, auth, tx.SessionAccount)
	}
	if err != nil {
		te := fromAccountError(err)
		if te.Code == codeServerError {
			h.log.ErrorContext(ctx, "sign-in account step failed", "tx", tx.ID, "error", err)
		}
		return nil, h.failTx(ctx, &claimed, craw, te)
	}
	link, err := h.accounts.CertLink(ctx, auth.Leaf)
	if err != nil {
		return nil, h.failTx(ctx, &claimed, craw, fromAccountError(err))
	}
	label := ""
	if a := sub.Authenticator; a != nil && account.KnownTokenLabel(a.Token) {
		label = a.Token
		if err := h.accounts.NoteAuthLabel(ctx, accountID, link, label); err != nil {
			// Only the account page's wording depends on it.
			h.log.WarnContext(ctx, "token label not recorded", "error", err)
		}
	}
	if tx.Purpose == purposeProofing && before != accountID && h.events != nil {
		// A card or phone joined the account (or came back after its
		// removal).
		e := events.Event{Kind: events.CredentialChanged, AccountID: accountID,
			Credential: &events.Credential{Type: "jpki", Change: "create", Ref: link, Label: label}}
		if err := h.events.Publish(ctx, e); err != nil {
			h.log.ErrorContext(ctx, "event not published", "kind", string(e.Kind), "error", err)
		}
	}
	done := claimed
	done.State = txVerified
	done.Result = &txResult{
		AccountID:     accountID,
		ACR:           session.ACRJPKI,
		AMR:           amrFor(sub.Authenticator),
		AuthTime:      h.web.Now().UTC(),
		Created:       created,
		Method:        "jpki:" + label,
		Authenticator: "jpki:" + link,
	}
	if _, ok, err := h.txs.swap(ctx, craw, &done); err != nil || !ok {
		if err == nil {
			err = errors.New("signin: transaction changed while processing")
		}
		return nil, err
	}
	h.metrics.submissions.WithLabelValues("verified").Inc()
	h.log.InfoContext(ctx, "sign-in transaction verified", "tx", tx.ID, "purpose", tx.Purpose,
		logref.Account(accountID), "account_created", created, "amr", done.Result.AMR)
	return &done, nil
}

// checkTxOpen refuses a transaction that can no longer be answered.
func (t *transactions) checkOpen(tx *signinTx) *txError {
	switch tx.displayState(t.now()) {
	case txPending:
		if tx.State == txProcessing {
			return txBad(http.StatusConflict, codeAlreadyUsed, "the transaction is being answered")
		}
		return nil
	case txExpired:
		return txBad(http.StatusGone, codeExpiredTransaction, "the transaction has expired")
	}
	return txBad(http.StatusConflict, codeAlreadyUsed, "the transaction has already been answered")
}

// failTx records a final refusal (once) and returns the error to report.
// A non-final error leaves the transaction as it is.
func (h *Handler) failTx(ctx context.Context, tx *signinTx, raw []byte, e *txError) error {
	h.metrics.submissions.WithLabelValues(e.Code).Inc()
	attrs := []any{"tx", tx.ID, "purpose", tx.Purpose, "reason", e.Code, "final", e.Final}
	if e.Cause != nil {
		attrs = append(attrs, "cause", e.Cause.Error())
	}
	h.log.InfoContext(ctx, "wallet submission refused", attrs...)
	if !e.Final {
		return e
	}
	failed := *tx
	failed.State = txFailed
	failed.Reason = e.Code
	if _, ok, err := h.txs.swap(ctx, raw, &failed); err != nil {
		return err
	} else if !ok {
		return txBad(http.StatusConflict, codeAlreadyUsed, "the transaction has already been answered")
	}
	return e
}
