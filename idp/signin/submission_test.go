package signin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
)

// submission builds a POST body from a list of signature objects.
func submission(sigs ...string) string {
	return `{"signatures":[` + strings.Join(sigs, ",") + `],"comparison_code":"12-34","qr_token":"1.x"}`
}

// Every malformed wallet POST is a request-level refusal (not final), with
// the code the wallet protocol documents.
func TestParseSubmissionRefusals(t *testing.T) {
	jws := `{"format":"jws","jws":"a.b.c"}`
	for _, c := range []struct {
		name, body, code, msg string
	}{
		{"not JSON", `{`, codeInvalidRequest, "not a JSON object"},
		{"array", `[]`, codeInvalidRequest, "not a JSON object"},
		{"trailing data", submission(jws) + `{}`, codeInvalidRequest, "trailing data"},
		{"trailing garbage", submission(jws) + `x`, codeInvalidRequest, "trailing data"},
		{"no signatures", `{"comparison_code":"1","qr_token":"1.x"}`, codeInvalidRequest, "signatures is empty"},
		{"three signatures", submission(jws, jws, jws), codeInvalidRequest, "at most 2"},
		{"no qr_token", `{"signatures":[` + jws + `],"comparison_code":"1"}`, codeInvalidQRToken, "qr_token is required"},
		{"no comparison code", `{"signatures":[` + jws + `],"qr_token":"1.x"}`, codeInvalidRequest, "comparison_code is required"},
		{"long authenticator token", `{"signatures":[` + jws + `],"comparison_code":"1","qr_token":"1.x","authenticator":{"token":"` + strings.Repeat("T", 65) + `"}}`, codeInvalidRequest, "too long"},
		{"long user verification", `{"signatures":[` + jws + `],"comparison_code":"1","qr_token":"1.x","authenticator":{"user_verification":"` + strings.Repeat("u", 33) + `"}}`, codeInvalidRequest, "too long"},
		{"wrong types", `{"signatures":"jws","comparison_code":1,"qr_token":"1.x"}`, codeInvalidRequest, "not a JSON object"},
		{"no format", submission(`{"jws":"a.b.c"}`), codeInvalidRequest, "signatures[0]: format is required"},
		{"unknown format", submission(`{"format":"pgp","jws":"a.b.c"}`), codeInvalidRequest, "unknown format"},
		{"empty jws", submission(`{"format":"jws"}`), codeInvalidRequest, "jws is required"},
		{"jws with a cms field", submission(`{"format":"jws","jws":"a.b.c","cms_b64":"MA=="}`), codeInvalidRequest, "cms_b64 does not belong"},
		{"cms not base64", submission(`{"format":"cms","cms_b64":"%%%"}`), codeInvalidRequest, "cms_b64 is not base64"},
		{"cms empty", submission(`{"format":"cms"}`), codeInvalidRequest, "cms_b64 is not base64"},
		{"cms url-safe base64", submission(`{"format":"cms","cms_b64":"_-8="}`), codeInvalidRequest, "cms_b64 is not base64"},
		{"cms with a hash", submission(`{"format":"cms","cms_b64":"MA==","hash":"SHA-256"}`), codeInvalidRequest, "hash does not belong"},
		{"raw without sig", submission(`{"format":"raw","cert_b64":"AAAA"}`), codeInvalidRequest, "sig_b64 is not base64"},
		{"raw without cert", submission(`{"format":"raw","sig_b64":"AAAA"}`), codeInvalidRequest, "cert_b64 is not base64"},
		{"raw cert not DER", submission(`{"format":"raw","sig_b64":"AAAA","cert_b64":"AAAA"}`), string(pkibridge.ReasonMalformed), "not a DER certificate"},
		{"raw with jws", submission(`{"format":"raw","sig_b64":"AAAA","cert_b64":"AAAA","jws":"a.b.c"}`), codeInvalidRequest, "jws does not belong"},
		{"second signature bad", submission(jws, `{"format":"cms","cms_b64":"!"}`), codeInvalidRequest, "signatures[1]: cms_b64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sub, err := parseSubmission([]byte(c.body))
			if sub != nil || err == nil {
				t.Fatalf("accepted: %+v", sub)
			}
			if err.Code != c.code || err.Status != http.StatusBadRequest || err.Final || !strings.Contains(err.Message, c.msg) {
				t.Fatalf("refusal %+v, want %s mentioning %q", err, c.code, c.msg)
			}
		})
	}
}

func TestParseSubmissionAccepts(t *testing.T) {
	sub, err := parseSubmission([]byte(`{"signatures":[{"format":"jws","jws":"a.b.c"},{"format":"cms","cms_b64":"MA=="}],` +
		`"comparison_code":"12 34","qr_token":"7.x","authenticator":{"token":"JPKIAPICCTOKEN2","user_verification":"pin"}}` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(sub.envelopes) != 2 || sub.envelopes[0].format != "jws" || string(sub.envelopes[0].jws) != "a.b.c" ||
		sub.envelopes[1].format != "cms" || len(sub.envelopes[1].cms) != 1 {
		t.Fatalf("envelopes %+v", sub.envelopes)
	}
	if sub.QRToken != "7.x" || sub.Authenticator == nil || sub.Authenticator.Token != "JPKIAPICCTOKEN2" {
		t.Fatalf("submission %+v", sub)
	}
}

// Raw signatures: the certificate must parse and the hash must be one the
// verifier knows (SHA-1 gets to the verifier, which refuses it by policy).
func TestDecodeRawHash(t *testing.T) {
	der := testCertDER(t)
	for _, c := range []struct {
		hash string
		ok   bool
	}{{"", true}, {"SHA-256", true}, {"SHA-1", true}, {"SHA-512", false}, {"sha-256", false}, {"MD5", false}} {
		e, err := decodeSignature(walletSignature{Format: "raw", SigB64: "AAAA", CertB64: base64.StdEncoding.EncodeToString(der), Hash: c.hash})
		if (err == nil) != c.ok {
			t.Errorf("hash %q: %v", c.hash, err)
		}
		if err == nil && (e.cert == nil || len(e.sig) != 3 || e.hash == 0) {
			t.Errorf("hash %q: envelope %+v", c.hash, e)
		}
	}
}

// A verifier failure tells the wallet what it means and keeps the
// verifier's own detail for the log.
func TestFromVerifyError(t *testing.T) {
	reasons := []pkibridge.Reason{pkibridge.ReasonBadSignature, pkibridge.ReasonUntrusted, pkibridge.ReasonExpired,
		pkibridge.ReasonNotYetValid, pkibridge.ReasonRevoked, pkibridge.ReasonRevocationUnknown, pkibridge.ReasonKeyUsage,
		pkibridge.ReasonMalformed, pkibridge.ReasonWeakKey, pkibridge.ReasonWeakAlgorithm, pkibridge.ReasonAttributes}
	for _, r := range reasons {
		cause := pkibridge.Fail(r, "secret detail %d", 42)
		e := fromVerifyError(cause)
		if e.Code != string(r) || !errors.Is(e, cause) || e.Message == "" {
			t.Errorf("%s: %+v", r, e)
		}
		if strings.Contains(e.Message, "secret detail") {
			t.Errorf("%s: the verifier's detail reaches the wallet: %q", r, e.Message)
		}
		if reasonMessages[r] == "" {
			t.Errorf("%s: no message", r)
		}
		wantFinal, wantStatus := true, http.StatusBadRequest
		switch r {
		case pkibridge.ReasonMalformed:
			wantFinal = false
		case pkibridge.ReasonRevocationUnknown:
			wantFinal, wantStatus = false, http.StatusServiceUnavailable
		}
		if e.Final != wantFinal || e.Status != wantStatus {
			t.Errorf("%s: final %v status %d, want %v %d", r, e.Final, e.Status, wantFinal, wantStatus)
		}
		if !strings.Contains(e.Error(), "secret detail") {
			t.Errorf("%s: the log line %q lacks the cause", r, e.Error())
		}
	}
	// A reason this version does not know still refuses, with a generic
	// message; an unclassified error came from parsing untrusted input
	// (pkibridge.ReasonOf) and leaves the transaction open.
	e := fromVerifyError(pkibridge.Fail("brand_new_reason", "boom"))
	if e.Message != "the signature was not accepted" || !e.Final || strings.Contains(e.Message, "boom") {
		t.Fatalf("unknown reason: %+v", e)
	}
	e = fromVerifyError(errors.New("boom"))
	if e.Code != string(pkibridge.ReasonMalformed) || e.Final || strings.Contains(e.Message, "boom") {
		t.Fatalf("unclassified failure: %+v", e)
	}
}

func TestFromAccountError(t *testing.T) {
	for _, c := range []struct {
		err    error
		code   string
		status int
	}{
		{account.ErrNotEnrolled, codeNotEnrolled, http.StatusBadRequest},
		{fmt.Errorf("wrapped: %w", account.ErrNotEnrolled), codeNotEnrolled, http.StatusBadRequest},
		{account.ErrConflict, codeAccountConflict, http.StatusBadRequest},
		{account.ErrIdentityMismatch, codeIdentityMismatch, http.StatusBadRequest},
		{account.ErrContention, codeServerError, http.StatusInternalServerError},
		{errors.New("redis: connection refused"), codeServerError, http.StatusInternalServerError},
	} {
		e := fromAccountError(c.err)
		if e.Code != c.code || e.Status != c.status || !e.Final || !errors.Is(e, c.err) {
			t.Errorf("%v: %+v", c.err, e)
		}
		if strings.Contains(e.Message, "redis") {
			t.Errorf("%v: the cause reaches the wallet: %q", c.err, e.Message)
		}
	}
}

func TestTxErrorText(t *testing.T) {
	if got := txBad(http.StatusBadRequest, codeInvalidRequest, "m").Error(); got != "invalid_request: m" {
		t.Fatal(got)
	}
	cause := errors.New("c")
	e := &txError{Code: "x", Message: "m", Cause: cause}
	if e.Error() != "x: m: c" || e.Unwrap() != cause {
		t.Fatal(e.Error())
	}
	if f := txFail(codeWrongCertificate, "m"); !f.Final || f.Status != http.StatusBadRequest || f.Cause != nil {
		t.Fatalf("%+v", f)
	}
}

func TestTxStates(t *testing.T) {
	now := time.Unix(1700000000, 0)
	h := newTestHandler(t, store.NewMemory(), func() time.Time { return now })
	for _, c := range []struct {
		state   string
		expires time.Time
		display string
		code    string
	}{
		{txPending, now.Add(time.Minute), txPending, ""},
		{txPending, now, txExpired, codeExpiredTransaction},
		{txProcessing, now.Add(time.Minute), txPending, codeAlreadyUsed},
		{txProcessing, now.Add(-time.Minute), txExpired, codeExpiredTransaction},
		{txVerified, now.Add(-time.Minute), txVerified, codeAlreadyUsed},
		{txFailed, now.Add(time.Minute), txFailed, codeAlreadyUsed},
		{txFinished, now.Add(time.Minute), txFinished, codeAlreadyUsed},
	} {
		tx := &signinTx{ID: "t", State: c.state, ExpiresAt: c.expires}
		if got := tx.displayState(now); got != c.display {
			t.Errorf("%s expiring %v: displayed %s, want %s", c.state, c.expires.Sub(now), got, c.display)
		}
		got := ""
		if e := h.txs.checkOpen(tx); e != nil {
			got = e.Code
		}
		if got != c.code {
			t.Errorf("%s expiring %v: open check %q, want %q", c.state, c.expires.Sub(now), got, c.code)
		}
	}
}

// A transaction ID names its browser: only the binding it was made for
// owns it, and nothing else passes for one.
func TestTxIDOwnership(t *testing.T) {
	h := newTestHandler(t, store.NewMemory(), time.Now)
	mine, theirs := ids.Hash("mine"), ids.Hash("theirs")
	id := h.txs.newID(mine)
	other := newTestHandler(t, store.NewMemory(), time.Now)
	other.txs.key = []byte("another-key-0123456789abcdef-0123456789")
	flip := []byte(id)
	flip[len(flip)-1] ^= 1
	for _, c := range []struct {
		name    string
		id      string
		binding string
		want    bool
	}{
		{"its browser", id, mine, true},
		{"another browser", id, theirs, false},
		{"no binding cookie", id, "", false},
		{"another random part", h.txs.newID(mine)[:txIDRandomLen] + id[txIDRandomLen:], mine, false},
		{"a changed MAC", string(flip), mine, false},
		{"made with another key", other.txs.newID(mine), mine, false},
		{"an ID of the old form", ids.Short(), mine, false},
		{"too long", id + "A", mine, false},
		{"empty", "", mine, false},
	} {
		if got := h.txs.owns(c.id, c.binding); got != c.want {
			t.Errorf("%s: owns = %v, want %v", c.name, got, c.want)
		}
	}
	if len(id) != txIDLen || h.txs.newID(mine) == id {
		t.Fatalf("IDs %q", id)
	}
}

// An answered transaction keeps what its outcome needs, a finished one
// only what a double click and a wallet's retry need.
func TestTxShrinks(t *testing.T) {
	now := time.Unix(1700000000, 0).UTC()
	full := &signinTx{ID: "t", AuthRequestID: "ar", Binding: ids.Hash("b"), Purpose: purposeSignin, ClientID: "c",
		ClientName: "市役所", ClientPurpose: "p", Claims: []string{"name"}, CreatedAt: now, ExpiresAt: now.Add(5 * time.Minute),
		Code: "12-34", Nonce: "n", Bytes: []byte("bytes to sign"), SessionAccount: "acct", Notice: "stale_facts", State: txPending}
	settled := full.settled()
	if settled.Bytes != nil || settled.Nonce != "" || settled.Code != "" {
		t.Errorf("settled keeps the bytes to sign: %+v", settled)
	}
	if settled.ClientName != full.ClientName || settled.Purpose != full.Purpose || settled.Notice != full.Notice || full.Code == "" {
		t.Errorf("settled lost what the page shows, or changed the original: %+v", settled)
	}
	tomb := full.tombstone()
	if tomb.ID != "t" || tomb.AuthRequestID != "ar" || tomb.State != txFinished || !tomb.ExpiresAt.Equal(full.ExpiresAt) {
		t.Errorf("tombstone %+v", tomb)
	}
	b, _ := json.Marshal(tomb)
	for _, gone := range []string{"市役所", "acct", "12-34", "name", full.Binding, "bytes"} {
		if strings.Contains(string(b), gone) {
			t.Errorf("tombstone keeps %q: %s", gone, b)
		}
	}
	if len(b) > 160 {
		t.Errorf("tombstone of %d bytes: %s", len(b), b)
	}
	var back signinTx
	if err := json.Unmarshal(b, &back); err != nil || back.displayState(now) != txFinished {
		t.Fatalf("tombstone reads back as %+v (%v)", back, err)
	}
	h := newTestHandler(t, store.NewMemory(), func() time.Time { return now })
	if e := h.txs.checkOpen(&back); e == nil || e.Code != codeAlreadyUsed {
		t.Errorf("a wallet hears %v from a tombstone, want already_used", e)
	}
}

// loadTx never reads the store for an ID no transaction can have, and a
// damaged record is an error, not an empty transaction.
func TestLoadTx(t *testing.T) {
	kv := store.NewMemory()
	h := newTestHandler(t, kv, time.Now)
	ctx := context.Background()
	for _, id := range []string{"", strings.Repeat("a", 65), "missing"} {
		if _, _, err := h.txs.load(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("loadTx(%q) = %v", id, err)
		}
	}
	_ = kv.Set(ctx, txKey("bad"), []byte("{"), time.Minute)
	if _, _, err := h.txs.load(ctx, "bad"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("damaged record: %v", err)
	}
	tx := &signinTx{ID: "good", State: txPending, Code: "12-34"}
	b, _ := json.Marshal(tx)
	_ = kv.Set(ctx, txKey("good"), b, time.Minute)
	got, raw, err := h.txs.load(ctx, "good")
	if err != nil || got.Code != "12-34" || string(raw) != string(b) {
		t.Fatalf("loadTx = %+v, %q, %v", got, raw, err)
	}
	// change replaces only the bytes it read, and the extra operations
	// go with it.
	changed := *got
	changed.State = txFailed
	if ok, err := h.txs.change(ctx, []byte("stale"), &changed, time.Minute); ok || err != nil {
		t.Fatalf("change from stale bytes: %v %v", ok, err)
	}
	_ = kv.Set(ctx, txCountersKey("good"), []byte("1"), time.Minute)
	if ok, err := h.txs.change(ctx, raw, &changed, time.Minute, store.Delete(txCountersKey("good"))); !ok || err != nil {
		t.Fatalf("change: %v %v", ok, err)
	}
	if _, err := kv.Get(ctx, txCountersKey("good")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the extra delete: %v", err)
	}
	if again, _, _ := h.txs.load(ctx, "good"); again.State != txFailed {
		t.Fatalf("state %s after swap", again.State)
	}
}

// The transaction URL carries a token for the window it is shown in.
func TestTxURL(t *testing.T) {
	now := time.Unix(1700000000, 0)
	h := newTestHandler(t, store.NewMemory(), func() time.Time { return now })
	w := qrWindowAt(now)
	u := h.txs.url("tx/1", w)
	want := "https://idp.example" + WalletTxPath + "tx%2F1?qr_token="
	if !strings.HasPrefix(u, want) {
		t.Fatalf("txURL = %q", u)
	}
	tx := &signinTx{ID: "tx/1", CreatedAt: now}
	tok := strings.TrimPrefix(u, want)
	if e := h.txs.checkQR(tx, tok, true); e != nil {
		t.Fatalf("token from the URL refused: %v", e)
	}
	// A token made with another key is refused.
	other := newTestHandler(t, store.NewMemory(), func() time.Time { return now })
	other.txs.key = []byte("another-key-0123456789abcdef-0123456789")
	if e := h.txs.checkQR(tx, other.txs.qrToken("tx/1", w), true); e == nil || e.Code != codeInvalidQRToken {
		t.Fatalf("foreign token: %v", e)
	}
	if e := h.txs.checkQR(tx, strings.Repeat("1", 65)+".x", false); e == nil || e.Code != codeInvalidQRToken {
		t.Fatalf("oversized token: %v", e)
	}
}
