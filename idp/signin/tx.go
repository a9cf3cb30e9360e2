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

	// txSettledTTL is how long a finished transaction's tombstone is
	// kept: long enough for a double click on Continue, a reload of the
	// page or a wallet's retry to get the answer for a used transaction
	// (finished, already_used) instead of "unknown", and no longer. The
	// full record is gone from the store at the finish.
	txSettledTTL = time.Minute

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
	codeBlocked            = "authenticator_blocked"
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
	Binding       string `json:"binding,omitempty"` // SHA-256 hex of the browser's binding cookie
	Purpose       string `json:"purpose,omitempty"`
	ClientID      string `json:"client_id,omitempty"`
	ClientName    string `json:"client_name,omitempty"`
	ClientPurpose string `json:"client_purpose,omitempty"`
	// Whitelisted is the RP's badge on the wallet: a client the operator
	// configured or approved in the registry.
	Whitelisted bool      `json:"whitelisted,omitempty"`
	Claims      []string  `json:"claims,omitempty"`
	CreatedAt   time.Time `json:"created_at,omitzero"`
	ExpiresAt   time.Time `json:"expires_at"`
	Code        string    `json:"code,omitempty"`  // comparison code, "12-34"
	Nonce       string    `json:"nonce,omitempty"` // challenge inside Bytes
	// Bytes are the exact bytes to sign. They follow from the other
	// fields (bytesToSign) and are not stored: readers of a pending
	// transaction make them again (decode).
	Bytes []byte `json:"bytes,omitempty"`
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

// settled is tx once answered (verified or failed): what only a pending
// transaction needs, the bytes to sign, their nonce and the comparison
// code, is dropped, since no wallet may use them any more and the
// browser reads only the outcome.
func (tx signinTx) settled() *signinTx {
	tx.Bytes, tx.Nonce, tx.Code = nil, "", ""
	return &tx
}

// tombstone is what is left of a finished transaction: enough for the
// browser that finished it to be sent on (finished) and for a wallet to
// hear already_used, and nothing of the person, the client or the proof.
func (tx *signinTx) tombstone() *signinTx {
	return &signinTx{ID: tx.ID, AuthRequestID: tx.AuthRequestID, State: txFinished, ExpiresAt: tx.ExpiresAt}
}

// A transaction ID names the browser that owns it: 96 random bits and a
// MAC over them and the hash of the browser's binding cookie. The
// browser's endpoints (status, finish) check it before the first round
// trip, so that what they count or read with the transaction is only
// ever for the browser that owns it: another browser's request, or a
// made-up ID, makes the store hold nothing. The record's Binding says
// the same for the reader of a record, and for a transaction made
// before IDs carried the MAC (read first, counted after).
const (
	txIDRandomLen = 16 // characters: 12 bytes, base64url
	txIDLen       = txIDRandomLen + 16
)

// newID makes the ID of a transaction for the browser of binding.
func (t *transactions) newID(binding string) string {
	r := ids.New(12)
	return r + t.idMAC(r, binding)
}

func (t *transactions) idMAC(random, binding string) string {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte("watashi-tx\x00"))
	m.Write([]byte(random))
	m.Write([]byte{0})
	m.Write([]byte(binding))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12])
}

// owns reports whether id was made for the browser whose binding hash is
// binding; "" owns nothing.
func (t *transactions) owns(id, binding string) bool {
	if binding == "" || len(id) != txIDLen {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(id[txIDRandomLen:]), []byte(t.idMAC(id[:txIDRandomLen], binding))) == 1
}

// sameBinding compares binding hashes in constant time; "" never matches.
func sameBinding(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// ownedBy reports whether tx, read under id, belongs to the browser of
// binding: by its ID's MAC, or by the record's binding.
func (t *transactions) ownedBy(tx *signinTx, id, binding string) bool {
	return t.owns(id, binding) || sameBinding(binding, tx.Binding)
}

// The per-transaction counters, the fields of one hash beside the
// record: wallet submissions admitted to verification and the browser's
// status polls. They are counted in the round trip that reads the
// record, and deleted when it finishes or fails.
func txCountersKey(id string) string { return "txn:" + id }

const (
	txSubmitsField = "wallet_submit_tx"
	txPollsField   = "signin_status"
)

// countOp counts one event of field for transaction id.
func (h *Handler) countOp(id, field string) store.Op {
	return store.HashIncr(txCountersKey(id), field, h.counterTTL())
}

// counterTTL outlives any transaction, so that a count lasts as long as
// the transaction it limits.
func (h *Handler) counterTTL() time.Duration { return h.txTTL + txGrace }

// ttlOf is how long tx's record has left to live: until its expiry and
// the grace after it.
func (t *transactions) ttlOf(tx *signinTx) time.Duration {
	return max(tx.ExpiresAt.Add(txGrace).Sub(t.now()), time.Second)
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
		ID:             h.txs.newID(binding),
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
	b, err := json.Marshal(tx.stored())
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
	tx, err := t.decode(b)
	return tx, b, err
}

// decode reads a stored transaction, with the bytes to sign of one that
// has them.
func (t *transactions) decode(b []byte) (*signinTx, error) {
	tx := new(signinTx)
	if err := json.Unmarshal(b, tx); err != nil {
		return nil, fmt.Errorf("signin: transaction record: %w", err)
	}
	if tx.Nonce != "" && tx.Bytes == nil {
		var err error
		if tx.Bytes, err = bytesToSign(t.issuer, tx); err != nil {
			return nil, err
		}
	}
	return tx, nil
}

// stored is tx as the store keeps it: without the bytes to sign, which
// follow from the rest.
func (tx signinTx) stored() *signinTx {
	tx.Bytes = nil
	return &tx
}

// readOp reads transaction id in a batch (store.KV.Do); an ID no
// transaction can have reads a key that never exists.
func (t *transactions) readOp(id string) store.Op {
	if id == "" || len(id) > 64 {
		id = "-"
	}
	return store.Get(txKey(id))
}

// fromResult is load's answer from the result of readOp.
func (t *transactions) fromResult(res store.Result) (*signinTx, error) {
	if res.Err != nil {
		return nil, res.Err
	}
	return t.decode(res.Val)
}

// claim marks tx processing if nobody changed it meanwhile. Processing
// reads as pending to every listener (displayState), so the claim is not
// announced: a listener would only re-read the record and repeat
// "pending".
func (t *transactions) claim(ctx context.Context, old []byte, tx *signinTx) ([]byte, bool, error) {
	claimed := tx.stored()
	claimed.State = txProcessing
	b, err := json.Marshal(claimed)
	if err != nil {
		return nil, false, err
	}
	ok, err := t.kv.CompareAndSwap(ctx, txKey(tx.ID), old, b)
	if err != nil {
		return nil, false, fmt.Errorf("signin: update transaction: %w", err)
	}
	return b, ok, nil
}

// change replaces old with tx, living ttl from now, if nobody changed it
// meanwhile, and tells every node's listeners, with extra, in one round
// trip. The announcement goes out even when the swap loses: a listener
// re-reads the record on any announcement, so it hears the winner's
// state either way.
func (t *transactions) change(ctx context.Context, old []byte, tx *signinTx, ttl time.Duration, extra ...store.Op) (bool, error) {
	b, err := json.Marshal(tx.stored())
	if err != nil {
		return false, err
	}
	msg, _ := json.Marshal(txEvent{State: tx.State, Reason: tx.Reason})
	ops := append([]store.Op{store.CAS(txKey(tx.ID), old, b, ttl), store.Publish(txChannel(tx.ID), msg)}, extra...)
	res, err := t.kv.Do(ctx, ops...)
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		return false, fmt.Errorf("signin: update transaction: %w", err)
	}
	if res[1].Err != nil {
		// Polling still delivers the outcome; SSE listeners re-read on
		// their next keep-alive.
		t.log.WarnContext(ctx, "transaction event not published", "tx", tx.ID, "error", res[1].Err)
	}
	return res[0].OK, nil
}

// txEvent is what the browser's status endpoint and SSE stream say.
type txEvent struct {
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
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
	w, e := t.qrWindowOf(tx.ID, tok)
	if e != nil {
		return e
	}
	now := qrWindowAt(t.now())
	if w < qrWindowAt(tx.CreatedAt) {
		return txBad(http.StatusBadRequest, codeInvalidQRToken, "qr_token outside the transaction's life")
	}
	if fresh && w < now-1 {
		return txBad(http.StatusGone, codeExpiredQRToken, "the QR code has rotated; scan the current one")
	}
	return nil
}

// qrWindowOf checks what of a token needs no record, its form and its
// MAC for transaction id and that its window has begun, and returns the
// window: a submission with a token the provider did not issue for id
// is never counted against the transaction.
func (t *transactions) qrWindowOf(id, tok string) (int64, *txError) {
	ws, _, ok := strings.Cut(tok, ".")
	if !ok || len(tok) > 64 {
		return 0, txBad(http.StatusBadRequest, codeInvalidQRToken, "missing or malformed qr_token")
	}
	w, err := strconv.ParseInt(ws, 10, 64)
	if err != nil || strconv.FormatInt(w, 10) != ws {
		return 0, txBad(http.StatusBadRequest, codeInvalidQRToken, "malformed qr_token")
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(t.qrToken(id, w))) != 1 {
		return 0, txBad(http.StatusBadRequest, codeInvalidQRToken, "qr_token does not belong to this transaction")
	}
	if w > qrWindowAt(t.now()) {
		return 0, txBad(http.StatusBadRequest, codeInvalidQRToken, "qr_token outside the transaction's life")
	}
	return w, nil
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
// verification, the one-time state change, and the account work. tx and
// raw are the transaction as read, perTx the count of the
// transaction's submissions made in the same round trip.
func (h *Handler) submitTx(ctx context.Context, tx *signinTx, raw []byte, perTx store.Result, sub *walletSubmission) (*signinTx, error) {
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
	if e := h.admitVerification(ctx, perTx); e != nil {
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

	// The operator's block applies to what the wallet reports, after the
	// signature: an unverified request must not end a transaction.
	if e := h.checkBlocked(ctx, sub.Authenticator); e != nil {
		if !e.Final {
			return nil, e
		}
		return nil, h.failTx(ctx, tx, raw, e)
	}
	label := ""
	if a := sub.Authenticator; a != nil && account.KnownTokenLabel(a.Token) {
		label = a.Token
	}

	var (
		accountID, link string
		created         bool
		err             error
	)
	if tx.Purpose == purposeSignin {
		// A sign-in changes no account (but for the token label, which
		// two answers of one card agree on), so it needs no claim: of two
		// concurrent valid submissions, the compare-and-swap to verified
		// below lets exactly one through.
		var in account.SignedIn
		if in, err = h.accounts.SignInNoting(ctx, auth, label); err != nil {
			te := fromAccountError(err)
			if te.Code == codeServerError {
				h.log.ErrorContext(ctx, "sign-in account step failed", "tx", tx.ID, "error", err)
			}
			return nil, h.failTx(ctx, tx, raw, te)
		}
		accountID, link = in.AccountID, in.Link
		if in.LabelErr != nil {
			// Only the account page's wording depends on it.
			h.log.WarnContext(ctx, "token label not recorded", "error", in.LabelErr)
		}
	} else {
		// Claim the transaction before touching accounts: of two
		// concurrent valid proofings exactly one gets past this point.
		craw, ok, err := h.txs.claim(ctx, raw, tx)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, txBad(http.StatusConflict, codeAlreadyUsed, "the transaction has already been answered")
		}
		raw = craw
		if accountID, link, created, err = h.proof(ctx, tx, sig, auth, label); err != nil {
			return nil, h.failTx(ctx, tx, raw, fromAccountError(err))
		}
	}
	done := tx.settled()
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
	ok, err := h.txs.change(ctx, raw, done, h.txs.ttlOf(tx))
	switch {
	case err != nil:
		return nil, err
	case !ok && tx.Purpose == purposeSignin:
		// Another submission, or a decline, answered it first.
		return nil, txBad(http.StatusConflict, codeAlreadyUsed, "the transaction has already been answered")
	case !ok:
		return nil, errors.New("signin: transaction changed while processing")
	}
	h.metrics.submissions.WithLabelValues("verified").Inc()
	h.log.InfoContext(ctx, "sign-in transaction verified", "tx", tx.ID, "purpose", tx.Purpose,
		logref.Account(accountID), "account_created", created, "amr", done.Result.AMR)
	return done, nil
}

// proof applies an identity proofing to the accounts, for a transaction
// claimed already, and announces a card or phone that joined an account.
func (h *Handler) proof(ctx context.Context, tx *signinTx, sig, auth *pkibridge.Result, label string) (accountID, link string, created bool, err error) {
	before, err := h.accounts.LinkedTo(ctx, auth.Leaf)
	if err == nil {
		accountID, created, err = h.accounts.Proof(ctx, sig, auth, tx.SessionAccount)
	}
	if err != nil {
		if fromAccountError(err).Code == codeServerError {
			h.log.ErrorContext(ctx, "sign-in account step failed", "tx", tx.ID, "error", err)
		}
		return "", "", false, err
	}
	if link, err = h.accounts.CertLink(ctx, auth.Leaf); err != nil {
		return "", "", false, err
	}
	if label != "" {
		if err := h.accounts.NoteAuthLabel(ctx, accountID, link, label); err != nil {
			// Only the account page's wording depends on it.
			h.log.WarnContext(ctx, "token label not recorded", "error", err)
		}
	}
	if before != accountID && h.events != nil {
		// A card or phone joined the account (or came back after its
		// removal).
		e := events.Event{Kind: events.CredentialChanged, AccountID: accountID,
			Credential: &events.Credential{Type: "jpki", Change: "create", Ref: link, Label: label}}
		if err := h.events.Publish(ctx, e); err != nil {
			h.log.ErrorContext(ctx, "event not published", "kind", string(e.Kind), "error", err)
		}
	}
	return accountID, link, created, nil
}

// checkBlocked refuses a token label the operator has blocked. The label
// is the wallet's own report: the block stops every honest wallet of
// that kind at once, which is what an operator needs when an applet or a
// phone model turns out to be broken; it cannot stop a wallet that lies.
func (h *Handler) checkBlocked(ctx context.Context, a *walletAuthenticator) *txError {
	if h.blocks == nil || a == nil || a.Token == "" {
		return nil
	}
	blocked, err := h.blocks.LabelBlocked(ctx, a.Token)
	if err != nil {
		return &txError{Code: codeServerError, Status: http.StatusServiceUnavailable, Message: "the sign-in cannot be checked now; try again", Cause: err}
	}
	if blocked {
		return &txError{Code: codeBlocked, Status: http.StatusForbidden, Final: true,
			Message: "the operator has blocked sign-ins with this kind of JPKI token (" + a.Token + ")"}
	}
	return nil
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
	failed := tx.settled()
	failed.State = txFailed
	failed.Reason = e.Code
	// The counters go with the failure: no submission is admitted any
	// more, and the page stops polling once it shows the outcome.
	if ok, err := h.txs.change(ctx, raw, failed, h.txs.ttlOf(tx),
		store.Delete(txCountersKey(tx.ID))); err != nil {
		return err
	} else if !ok {
		return txBad(http.StatusConflict, codeAlreadyUsed, "the transaction has already been answered")
	}
	return e
}
