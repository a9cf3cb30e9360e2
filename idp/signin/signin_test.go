package signin

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
)

func TestBytesToSignCanonical(t *testing.T) {
	tx := &signinTx{ID: "t1", ClientID: "c<1>", ClientName: "市役所 & \"RP\"", Purpose: purposeSignin, Nonce: "n", ExpiresAt: time.Unix(1700000000, 0)}
	b, err := bytesToSign("https://idp.example", tx)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"aud":"https://idp.example","client_id":"c<1>","exp":1700000000,"iss":"https://idp.example","nonce":"n","purpose":"signin","rp":"市役所 & \"RP\"","txn":"t1","typ":"watashi-signin+v1"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	// Sorted keys: re-encoding a map gives the same bytes.
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["exp"].(float64) != 1700000000 {
		t.Fatal("exp")
	}
}

func TestQRTokenCheck(t *testing.T) {
	now := time.Unix(1700000000, 0)
	s := newTestHandler(t, store.NewMemory(), func() time.Time { return now })
	tx := &signinTx{ID: "tx1", CreatedAt: now.Add(-2 * time.Minute)}
	w := qrWindowAt(now)
	for _, c := range []struct {
		name  string
		tok   string
		fresh bool
		code  string
	}{
		{"current", s.txs.qrToken("tx1", w), true, ""},
		{"previous", s.txs.qrToken("tx1", w-1), true, ""},
		{"two back, fresh", s.txs.qrToken("tx1", w-2), true, codeExpiredQRToken},
		{"two back, submission", s.txs.qrToken("tx1", w-2), false, ""},
		{"future window", s.txs.qrToken("tx1", w+1), false, codeInvalidQRToken},
		{"before the transaction", s.txs.qrToken("tx1", qrWindowAt(tx.CreatedAt)-1), false, codeInvalidQRToken},
		{"other transaction", s.txs.qrToken("tx2", w), true, codeInvalidQRToken},
		{"empty", "", true, codeInvalidQRToken},
		{"no dot", "12345", true, codeInvalidQRToken},
		{"leading zero window", "0" + s.txs.qrToken("tx1", w), true, codeInvalidQRToken},
		{"negative window", "-1.AAAA", true, codeInvalidQRToken},
	} {
		e := s.txs.checkQR(tx, c.tok, c.fresh)
		got := ""
		if e != nil {
			got = e.Code
		}
		if got != c.code {
			t.Errorf("%s: %q, want %q", c.name, got, c.code)
		}
	}
}

func TestAMRAndACR(t *testing.T) {
	for _, c := range []struct {
		a    *walletAuthenticator
		want []string
	}{
		{nil, []string{"hwk", "pin"}},
		{&walletAuthenticator{Token: "JPKIAPGPSETOKEN", UserVerification: "pin"}, []string{"hwk", "pin"}},
		{&walletAuthenticator{Token: "JPKIAPIOSTOKEN", UserVerification: "biometric"}, []string{"hwk", "pin", "user"}},
		{&walletAuthenticator{Token: "JPKIAPICCTOKEN2"}, []string{"hwk", "pin", "sc"}},
	} {
		if got := amrFor(c.a); !slices.Equal(got, c.want) {
			t.Errorf("%+v: %v, want %v", c.a, got, c.want)
		}
	}
	for _, c := range []struct {
		acr  string
		req  []string
		want bool
	}{
		{"aal3", nil, true}, {"aal3", []string{"aal3"}, true}, {"aal2", []string{"aal3"}, false},
		{"", []string{"aal1"}, false}, {"aal2", []string{"x", "aal2"}, true},
	} {
		if got := session.ACRSatisfies(c.acr, c.req); got != c.want {
			t.Errorf("acr %q %v: %v", c.acr, c.req, got)
		}
	}
	if d := digitsOnly("12 - 34"); d != "1234" {
		t.Fatal(d)
	}
	for range 50 {
		c := comparisonCode()
		if len(c) != 5 || c[2] != '-' || len(digitsOnly(c)) != 4 {
			t.Fatalf("comparison code %q", c)
		}
	}
}

func FuzzParseSubmission(f *testing.F) {
	f.Add([]byte(`{"signatures":[{"format":"jws","jws":"a.b.c"}],"comparison_code":"12-34","qr_token":"1.x"}`))
	f.Add([]byte(`{"signatures":[{"format":"raw","sig_b64":"AAAA","cert_b64":"AAAA","hash":"SHA-256"}],"comparison_code":"1","qr_token":"1.x"}`))
	f.Add([]byte(`{"signatures":[{"format":"cms","cms_b64":"MA=="}],"comparison_code":"1","qr_token":"1.x","authenticator":{"token":"JPKIAPICCTOKEN2"}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"signatures":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		sub, err := parseSubmission(body)
		if (sub == nil) == (err == nil) {
			t.Fatalf("exactly one of result and error: %v %v", sub, err)
		}
		if err != nil && (err.Code == "" || err.Status < 400 || err.Final) {
			t.Fatalf("bad refusal %+v", err)
		}
		if sub != nil && (len(sub.envelopes) != len(sub.Signatures) || len(sub.envelopes) == 0 || len(sub.envelopes) > maxSignatures) {
			t.Fatalf("envelopes %d for %d signatures", len(sub.envelopes), len(sub.Signatures))
		}
	})
}

// TestTxRecordBound: a transaction is opened by anyone who holds an auth
// request, so its record must stay within maxTxRecordBytes whatever the
// client's name (at most 200 characters, from the registry) does under
// JSON escaping, with every catalogue claim asked for, and also once a
// result is written into it.
func TestTxRecordBound(t *testing.T) {
	var all []string
	for _, c := range consent.Catalogue() {
		all = append(all, c.Name)
	}
	for _, name := range []string{strings.Repeat("<", 200), strings.Repeat("𝔸", 200), strings.Repeat("\u2028", 200)} {
		kv := store.NewMemory()
		h := newTestHandler(t, kv, time.Now)
		r, err := clients.New(context.Background(), clients.Options{
			PairwiseKey: bytes.Repeat([]byte{1}, 32),
			Static: []*clients.Client{{ID: "c", DisplayName: name, Purpose: strings.Repeat("<", 200), AuthMethod: clients.AuthNone,
				RedirectURIs: []string{"http://127.0.0.1/cb"}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		h.clients = r
		h.metrics.transactions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x"}, []string{"purpose"})
		ar := &authreq.AuthRequest{ID: ids.Long(), ClientID: "c", Scopes: []string{"openid"}}
		ar.Requested = consent.Resolve(append([]string{"openid"}, consent.ScopesSupported()...), nil, consent.ClientPolicy{Claims: all, Verified: true})
		tx, err := h.createTx(context.Background(), ar, ids.Hash("b"), purposeProofing, ids.Long(), authreq.NoticeStaleFacts)
		if err != nil {
			t.Fatalf("%q: %v", name[:3], err)
		}
		tx.State, tx.Reason = txVerified, codeIdentityMismatch
		tx.Result = &txResult{AccountID: ids.Long(), ACR: "aal3", AMR: []string{"hwk", "pin", "user", "sc"}, AuthTime: time.Now(), Created: true}
		b, _ := json.Marshal(tx)
		t.Logf("name %q…: %d bytes with a result", name[:3], len(b))
		if len(b) > maxTxRecordBytes {
			t.Fatalf("%d bytes, over %d", len(b), maxTxRecordBytes)
		}
	}
}
