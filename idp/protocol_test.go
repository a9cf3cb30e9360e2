package idp

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// The sign-in's protocol strings and limits, as docs/wallet-protocol.md
// documents them. The tests pin them on their own, not through the
// implementation's constants, so that a change to the protocol shows as a
// failing test.
const (
	txPending  = "pending"
	txVerified = "verified"
	txFailed   = "failed"
	txExpired  = "expired"

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

	qrWindow           = 20 * time.Second
	maxSubmissionBytes = 256 << 10
	walletSubmitPerTx  = 10
	streamsPerAddress  = 8
)

// txStatus is the browser's status endpoint answer.
type txStatus struct {
	State     string `json:"state"`
	Reason    string `json:"reason,omitempty"`
	ExpiresAt int64  `json:"expires_at"`
	QR        *struct {
		Image    string `json:"image"`
		TxURL    string `json:"tx_url"`
		AppLink  string `json:"app_link"`
		Fallback string `json:"fallback"`
	} `json:"qr,omitempty"`
}

// txEvent is one server-sent event of a transaction.
type txEvent struct {
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// txRecord is the part of a stored transaction the tests read.
type txRecord struct {
	ID        string    `json:"id"`
	Nonce     string    `json:"nonce"`
	Code      string    `json:"code"`
	ExpiresAt time.Time `json:"expires_at"`
	Result    *struct {
		AccountID string `json:"account_id"`
	} `json:"result"`
}

// storedTx reads a transaction record as the store holds it.
func storedTx(t testing.TB, o *testOP, id string) *txRecord {
	t.Helper()
	raw, err := o.kv.Get(context.Background(), "tx:"+id)
	if err != nil {
		t.Fatal(err)
	}
	tx := new(txRecord)
	if err := json.Unmarshal(raw, tx); err != nil {
		t.Fatal(err)
	}
	return tx
}
