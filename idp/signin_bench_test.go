package idp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/idp/web"
)

// benchBrowser carries cookies through in-process requests (no sockets).
type benchBrowser struct {
	b       *testing.B
	h       http.Handler
	issuer  string
	cookies map[string]*http.Cookie
}

func (bb *benchBrowser) do(method, target string, body string, hdr ...string) *httptest.ResponseRecorder {
	if strings.HasPrefix(target, "/") {
		target = bb.issuer + target
	}
	var req *http.Request
	if body != "" {
		req = httptest.NewRequest(method, target, strings.NewReader(body))
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	for _, c := range bb.cookies {
		req.AddCookie(c)
	}
	req.RemoteAddr = benchAddr() // rate limits are per address; spread the load
	rec := httptest.NewRecorder()
	bb.h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(bb.cookies, c.Name)
		} else {
			bb.cookies[c.Name] = c
		}
	}
	return rec
}

// BenchmarkSigninTransaction measures the sign-in layer of one login in
// process: authorize, open a transaction, the wallet's fetch and
// submission (signature verification, OCSP answered from cache), finish,
// consent (remembered) and the callback that mints the code. The wallet's
// RSA signing is excluded (timer stopped), as the target says.
func BenchmarkSigninTransaction(b *testing.B) {
	for _, c := range []struct {
		name string
		kv   func(testing.TB) store.KV
	}{{"memory", memoryKV}, {"redis", redisKV}} {
		b.Run(c.name, func(b *testing.B) {
			pki := simulatorPKI(b)
			kv := c.kv(b)
			fixtures(b)
			seedKeys(b, kv)
			const issuer = "http://op.bench"
			o := testOptions(kv, issuer)
			o.Verifier = pki.verifier(b)
			s, err := New(context.Background(), o)
			if err != nil {
				b.Fatal(err)
			}
			hc := &http.Client{Transport: handlerTransport{s.Handler()}}
			w := pki.wallet(b, factsTaro)
			bb := &benchBrowser{b: b, h: s.Handler(), issuer: issuer, cookies: map[string]*http.Cookie{}}
			login := func(purpose string) {
				v := oauth2.GenerateVerifier()
				q := url.Values{"client_id": {"web"}, "response_type": {"code"}, "scope": {"openid name"},
					"redirect_uri": {"https://rp.example/cb"}, "state": {"s"},
					"code_challenge": {oauth2.S256ChallengeFromVerifier(v)}, "code_challenge_method": {"S256"}}
				loc := bb.do(http.MethodGet, authorizePath+"?"+q.Encode(), "").Header().Get("Location")
				if purpose != "" {
					loc += "&purpose=" + purpose
				}
				rec := bb.do(http.MethodGet, loc, "")
				page := rec.Header().Get("Location")
				txID, _ := url.ParseQuery(strings.SplitN(page, "?", 2)[1])
				id := txID.Get("tx")
				st := bb.do(http.MethodGet, "/login/tx/"+id+"/status", "")
				var status txStatus
				if err := json.Unmarshal(st.Body.Bytes(), &status); err != nil || status.QR == nil {
					b.Fatalf("status: %s", st.Body)
				}
				tx, err := walletsim.Fetch(context.Background(), hc, status.QR.TxURL)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				sigs, err := w.SignBytes(tx.Bytes, walletsim.FormatJWS, tx.Certificates)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := w.SubmitSignatures(context.Background(), hc, tx, walletsim.Submission{Signatures: sigs, ComparisonCode: tx.ComparisonCode, QRToken: tx.QRToken}); err != nil {
					b.Fatal(err)
				}
				csrf := s.web.CSRFTokenFor(httptest.NewRecorder(), reqWithCookies(bb), "form")
				fin := bb.do(http.MethodPost, "/login/tx/"+id+"/finish", url.Values{web.CSRFField: {csrf}}.Encode(),
					"Content-Type", "application/x-www-form-urlencoded", "Origin", issuer)
				consent := fin.Header().Get("Location")
				rec = bb.do(http.MethodGet, consent, "")
				if rec.Code == http.StatusOK { // first time: allow
					rec = bb.do(http.MethodPost, consent, url.Values{web.CSRFField: {csrf}, "action": {"allow"}}.Encode(),
						"Content-Type", "application/x-www-form-urlencoded", "Origin", issuer)
				}
				cb := bb.do(http.MethodGet, rec.Header().Get("Location"), "")
				if u, _ := url.Parse(cb.Header().Get("Location")); u == nil || u.Query().Get("code") == "" {
					b.Fatalf("no code: %d %s", cb.Code, cb.Header().Get("Location"))
				}
				delete(bb.cookies, s.web.CookieName("sess")) // next login signs in again
			}
			bb.do(http.MethodGet, "/static/watashi.css", "")
			// Warm-up: proofing, consent, CSRF cookie, OCSP cache.
			bb.cookies[s.web.CookieName("csrf")] = &http.Cookie{Name: s.web.CookieName("csrf"), Value: ids.Long()}
			login(authreq.PurposeProofing)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				login("")
			}
		})
	}
}

func reqWithCookies(bb *benchBrowser) *http.Request {
	r := httptest.NewRequest(http.MethodGet, bb.issuer+"/", nil)
	for _, c := range bb.cookies {
		r.AddCookie(c)
	}
	return r
}

var benchAddrN atomic.Uint32

// benchAddr is a different client address per request: a benchmark is
// many residents, not one address hammering the rate limits.
func benchAddr() string {
	n := benchAddrN.Add(1)
	return fmt.Sprintf("10.%d.%d.%d:1234", n>>16&255, n>>8&255, n&255)
}

// handlerTransport sends the wallet's requests straight to the handler.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r.RemoteAddr = benchAddr()
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}
