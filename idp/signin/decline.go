package signin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
)

// A wallet that will not sign says so, so that the browser stops waiting
// at once instead of at the transaction's expiry: the resident declined,
// or saw a confirmation code that differs from the browser's (a QR code
// scanned from someone else's screen: exactly when a resident should
// decline). The decline ends the transaction as a final refusal would;
// the browser shows the reason and offers a new attempt.
//
// After answering, a wallet opened on the same device as the browser
// follows the transaction's return URL back to it (one device, no tab
// juggling). The return URL leads the browser that owns the transaction
// to its login page, which shows the outcome; any other browser, such as
// the phone's own when the QR code was scanned, gets a page saying where
// to look instead.
const (
	// walletDeclineSuffix follows WalletTxPath+{id}.
	walletDeclineSuffix = "/decline"

	// Reasons a wallet may give, which become the transaction's reason.
	codeDeclined = "declined"

	// maxDeclineBytes bounds a decline body: a token and a reason.
	maxDeclineBytes = 1 << 10
)

// walletDecline is a decline body. Unknown fields are ignored, as in a
// submission.
type walletDecline struct {
	QRToken string `json:"qr_token"`
	Reason  string `json:"reason"`
}

// parseDecline checks a decline body without looking at any transaction.
func parseDecline(body []byte) (*walletDecline, *txError) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var d walletDecline
	if err := dec.Decode(&d); err != nil {
		return nil, txBad(http.StatusBadRequest, codeInvalidRequest, "body is not a JSON object of the decline schema")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, txBad(http.StatusBadRequest, codeInvalidRequest, "trailing data after the JSON object")
	}
	if d.QRToken == "" {
		return nil, txBad(http.StatusBadRequest, codeInvalidQRToken, "qr_token is required")
	}
	switch d.Reason {
	case "":
		d.Reason = codeDeclined
	case codeDeclined, codeComparison:
	default:
		return nil, txBad(http.StatusBadRequest, codeInvalidRequest, "reason must be declined or comparison_mismatch")
	}
	return &d, nil
}

// handleWalletDecline is POST /wallet/v1/transactions/{id}/decline. It
// needs the QR token the wallet scanned, as a submission does, so that
// knowing a transaction ID is not enough to end it; a refused decline
// changes nothing.
func (h *Handler) handleWalletDecline(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d, refused := readDecline(w, r)
	tx, raw, _, ok := h.walletRead(w, r, "wallet_submit", refused)
	if !ok {
		return
	}
	if e := h.txs.checkOpen(tx); e != nil {
		h.walletError(w, e)
		return
	}
	if e := h.txs.checkQR(tx, d.QRToken, false); e != nil {
		h.walletError(w, e)
		return
	}
	msg := "the resident declined"
	if d.Reason == codeComparison {
		msg = "the resident reported that the confirmation codes differ"
	}
	err := h.failTx(ctx, tx, raw, &txError{Code: d.Reason, Status: http.StatusOK, Final: true, Message: msg})
	var te *txError
	switch {
	case errors.As(err, &te) && te.Code == d.Reason:
	case errors.As(err, &te):
		h.walletError(w, te)
		return
	default:
		h.log.ErrorContext(ctx, "wallet decline", "tx", tx.ID, "error", err)
		h.walletError(w, txBad(http.StatusInternalServerError, codeServerError, "internal error"))
		return
	}
	web.WriteJSON(w, http.StatusOK, map[string]string{"status": "declined"})
}

// readDecline reads and parses a decline's body.
func readDecline(w http.ResponseWriter, r *http.Request) (*walletDecline, *txError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, txBad(http.StatusUnsupportedMediaType, codeInvalidRequest, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDeclineBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, txBad(http.StatusRequestEntityTooLarge, codeRequestTooLarge, "body too large")
		}
		return nil, txBad(http.StatusBadRequest, codeInvalidRequest, "cannot read body")
	}
	return parseDecline(body)
}

// returnPath is where a same-device wallet sends the resident after
// answering transaction id.
func returnPath(id string) string { return "/login/tx/" + url.PathEscape(id) + "/return" }

// messageView is the data of the provider's one-message pages; Kind
// picks the message ("returned": look at the screen where you started).
type messageView struct {
	Kind      string
	Languages []web.LangLink
}

// handleTxReturn is GET /login/tx/{id}/return: the browser that owns the
// transaction goes to its login page, which shows what the wallet said
// (and continues by itself when it was an approval); any other browser
// is told to look at the screen where the sign-in started. It changes
// nothing and reveals nothing but that.
func (h *Handler) handleTxReturn(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	lang := h.web.Lang(w, r, nil)
	id := r.PathValue("id")
	tx, _, err := h.txs.load(ctx, id)
	switch {
	case err == nil && h.txs.ownedBy(tx, id, authreq.BrowserBinding(h.web, r)):
		http.Redirect(w, r, authreq.LoginURL(tx.AuthRequestID, append([]string{"tx", tx.ID}, web.KeepLang(r)...)...), http.StatusSeeOther)
		return
	case err != nil && !errors.Is(err, store.ErrNotFound):
		h.log.ErrorContext(ctx, "load transaction", "error", err)
		h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	// Gone or another browser's: the same words either way, so that the
	// page tells nobody whether a transaction exists.
	v := messageView{Kind: "returned", Languages: web.LangLinks(&url.URL{Path: strings.TrimSuffix(r.URL.Path, "/")}, lang)}
	h.web.Render(w, r, http.StatusOK, "message.html", lang, v)
}
