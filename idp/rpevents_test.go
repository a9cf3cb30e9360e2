package idp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/watashi-id/watashi/idp/backchannel"
	"github.com/watashi-id/watashi/idp/ssf"
	"github.com/watashi-id/watashi/idp/store"
)

// verifyJWT checks a token as a relying party does: against the
// provider's published JWKS, fetched over HTTP, with the typ it expects.
func verifyJWT(t *testing.T, issuer, tok, typ string) map[string]any {
	t.Helper()
	res, err := http.Get(issuer + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(res.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Header
	if h.ExtraHeaders["typ"] != typ {
		t.Fatalf("typ %v, want %s", h.ExtraHeaders["typ"], typ)
	}
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q not in the JWKS", h.KeyID)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("signature: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims["iss"] != issuer {
		t.Fatalf("iss %v", claims["iss"])
	}
	return claims
}

// logoutRP is a relying party's back-channel logout endpoint (Back-Channel
// Logout 1.0 §2.5): a real HTTP server.
type logoutRP struct {
	*httptest.Server
	tokens chan string
}

func newLogoutRP(t *testing.T) *logoutRP {
	rp := &logoutRP{tokens: make(chan string, 16)}
	rp.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		tok := r.PostFormValue("logout_token")
		if tok == "" {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		rp.tokens <- tok
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rp.Close)
	return rp
}

func (rp *logoutRP) next(t *testing.T) string {
	t.Helper()
	select {
	case tok := <-rp.tokens:
		return tok
	case <-time.After(15 * time.Second):
		t.Fatal("no logout token within 15 s")
		return ""
	}
}

// ssfReceiver is an SSF push receiver written from RFC 8935 §2: it takes
// a SET as application/secevent+jwt with the bearer token it gave the
// transmitter, and answers 202.
type ssfReceiver struct {
	*httptest.Server
	token string
	sets  chan string
}

func newSSFReceiver(t *testing.T) *ssfReceiver {
	r := &ssfReceiver{token: "Bearer receiver-secret-0123456789", sets: make(chan string, 16)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Authorization") != r.token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/secevent+jwt" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"err":"invalid_request"}`))
			return
		}
		b, _ := io.ReadAll(io.LimitReader(req.Body, 64<<10))
		r.sets <- string(b)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *ssfReceiver) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-r.sets:
		return s
	case <-time.After(15 * time.Second):
		t.Fatal("no SET within 15 s")
		return ""
	}
}

// ssfCall calls the transmitter's management API as client id.
func ssfCall(t *testing.T, o *testOP, method, path, id, secret string, body any) (int, map[string]any, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, o.issuer+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return res.StatusCode, m, raw
}

// accountOf finds the one account that has consented in the store.
func accountOf(t *testing.T, kv store.KV) string {
	t.Helper()
	var acct string
	_ = kv.Scan(context.Background(), "consents:", func(key string) error {
		acct = strings.TrimPrefix(key, "consents:")
		return nil
	})
	if acct == "" {
		t.Fatal("no account consented")
	}
	return acct
}

// TestRelyingPartyEvents runs the provider on Redis with two relying
// parties that registered back-channel logout endpoints and an SSF push
// receiver, all real HTTP servers: a resident signs in at both; the
// receiver creates and verifies a stream; a session end reaches each RP
// as a logout token with its own pairwise sub and the receiver as a CAEP
// session-revoked SET; a poll stream gets its events by RFC 8936.
func TestRelyingPartyEvents(t *testing.T) {
	kv := redisKV(t)
	rpWeb, rpOther := newLogoutRP(t), newLogoutRP(t)
	recv := newSSFReceiver(t)
	pki := simulatorPKI(t)
	clock := &testClock{}
	o := newTestOP(t, kv, func(o *Options) {
		o.Verifier = pki.verifier(t)
		o.Now = clock.Now
		for _, c := range o.Clients {
			switch c.ID {
			case "web":
				c.BackchannelLogoutURI = rpWeb.URL + "/bcl"
			case "other":
				c.BackchannelLogoutURI = rpOther.URL + "/bcl"
			}
		}
	})
	op := &signinOP{testOP: o, pki: pki, clock: clock}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.s.Run(ctx)

	// Discovery and the SSF metadata.
	_, disc, _ := ssfCall(t, o, http.MethodGet, "/.well-known/openid-configuration", "", "", nil)
	if disc["backchannel_logout_supported"] != true || disc["backchannel_logout_session_supported"] != true {
		t.Fatalf("discovery: %v", disc)
	}
	_, meta, _ := ssfCall(t, o, http.MethodGet, ssf.ConfigurationPath, "", "", nil)
	if meta["issuer"] != o.issuer || meta["configuration_endpoint"] != o.issuer+ssf.StreamPath || meta["spec_version"] != "1_0" {
		t.Fatalf("ssf-configuration: %v", meta)
	}

	// A resident proves at "web", then signs in at "other" in the same
	// session; both RPs exchange their codes for tokens.
	w := pki.wallet(t, factsTaro)
	b := op.browser()
	ar, conf, v := op.authorizeClaims("web", []string{"name"}, "")
	tx, _ := b.openTx(ar, "proofing")
	if err := w.Approve(context.Background(), o.ts.Client(), b.walletURL(tx), "jws"); err != nil {
		t.Fatal(err)
	}
	b.finish(ar, tx)
	_, loc := b.consentAll(ar)
	idTokens := map[string]string{"web": op.tokens(conf, v, b.callback(loc)).Extra("id_token").(string)}
	ar, conf, v = b.request("other", []string{"name"}, "")
	_, loc = b.consent(ar, "allow")
	idTokens["other"] = op.tokens(conf, v, b.callback(loc)).Extra("id_token").(string)
	account := accountOf(t, kv)

	// The RP "web" creates a push stream for session and credential
	// events and verifies it.
	status, cfg, raw := ssfCall(t, o, http.MethodPost, ssf.StreamPath, "web", testSecret, map[string]any{
		"events_requested": []string{ssf.EventSessionRevoked, ssf.EventCredentialChange, "urn:example:unknown"},
		"delivery":         map[string]any{"method": ssf.MethodPush, "endpoint_url": recv.URL + "/events", "authorization_header": recv.token},
		"description":      "city portal",
	})
	if status != http.StatusCreated {
		t.Fatalf("create stream: %d %s", status, raw)
	}
	streamID, _ := cfg["stream_id"].(string)
	if streamID == "" || cfg["aud"] != "web" || strings.Contains(string(raw), "receiver-secret") ||
		fmt.Sprint(cfg["events_delivered"]) != fmt.Sprint([]string{ssf.EventSessionRevoked, ssf.EventCredentialChange}) {
		t.Fatalf("stream config: %s", raw)
	}
	// The receiver's secret is sealed at rest.
	rec, err := kv.Get(context.Background(), "ssf:stream:"+streamID)
	if err != nil || strings.Contains(string(rec), "receiver-secret") || !strings.Contains(string(rec), "auth_sealed") {
		t.Fatalf("stream record holds the authorization header in the clear: %s %v", rec, err)
	}
	if status, _, raw := ssfCall(t, o, http.MethodPost, ssf.VerifyPath, "web", testSecret, map[string]any{"stream_id": streamID, "state": "st-42"}); status != http.StatusNoContent {
		t.Fatalf("verify: %d %s", status, raw)
	}
	vs := verifyJWT(t, o.issuer, recv.next(t), "secevent+jwt")
	if ev, _ := vs["events"].(map[string]any); ev[ssf.EventVerification] == nil || ev[ssf.EventVerification].(map[string]any)["state"] != "st-42" || vs["aud"] != "web" {
		t.Fatalf("verification SET: %v", vs)
	}
	if status, _, _ := ssfCall(t, o, http.MethodPost, ssf.VerifyPath, "web", testSecret, map[string]any{"stream_id": streamID}); status != http.StatusTooManyRequests {
		t.Fatalf("a second verification at once: %d", status)
	}

	// The RP "other" uses poll delivery.
	status, pcfg, raw := ssfCall(t, o, http.MethodPost, ssf.StreamPath, "other", testSecret, map[string]any{
		"events_requested": []string{ssf.EventSessionRevoked}, "delivery": map[string]any{"method": ssf.MethodPoll},
	})
	if status != http.StatusCreated {
		t.Fatalf("create poll stream: %d %s", status, raw)
	}
	pollURL := pcfg["delivery"].(map[string]any)["endpoint_url"].(string)
	pollID := pcfg["stream_id"].(string)
	if pollURL != o.issuer+ssf.PollPath+pollID {
		t.Fatalf("poll endpoint %q", pollURL)
	}

	// The resident signs out at "web" (RP-Initiated Logout with the ID
	// token): the session in which both RPs got tokens ends.
	if code, _, body := b.endSession(url.Values{"id_token_hint": {idTokens["web"]}}); code >= 400 {
		t.Fatalf("logout: %d %.300s", code, body)
	}
	subs := map[string]string{}
	for client, rp := range map[string]*logoutRP{"web": rpWeb, "other": rpOther} {
		c := verifyJWT(t, o.issuer, rp.next(t), backchannel.TokenType)
		cl, err := o.s.clients.Get(ctx, client)
		if err != nil {
			t.Fatal(err)
		}
		if c["aud"] != client || c["sub"] != o.s.clients.Subject(cl, account) || c["jti"] == "" || c["nonce"] != nil {
			t.Fatalf("%s: logout token %v", client, c)
		}
		if ev, _ := c["events"].(map[string]any); len(ev) != 1 || ev[backchannel.EventURI] == nil {
			t.Fatalf("%s: events %v", client, c["events"])
		}
		// The sid and sub of the ID token the RP holds.
		idt := idTokenClaims(t, idTokens[client])
		if c["sid"] == nil || c["sid"] != idt["sid"] || c["sub"] != idt["sub"] {
			t.Fatalf("%s: logout token sid/sub %v/%v, ID token %v/%v", client, c["sid"], c["sub"], idt["sid"], idt["sub"])
		}
		subs[client] = c["sub"].(string)
	}
	if subs["web"] == subs["other"] {
		t.Fatal("two sectors got the same sub")
	}
	if idTokenClaims(t, idTokens["web"])["sid"] == idTokenClaims(t, idTokens["other"])["sid"] {
		t.Fatal("two sectors got the same sid")
	}
	set := verifyJWT(t, o.issuer, recv.next(t), "secevent+jwt")
	sub, _ := set["sub_id"].(map[string]any)
	if sub["format"] != "iss_sub" || sub["iss"] != o.issuer || sub["sub"] != subs["web"] || set["aud"] != "web" {
		t.Fatalf("SET subject: %v", set)
	}
	if ev, _ := set["events"].(map[string]any); ev[ssf.EventSessionRevoked] == nil {
		t.Fatalf("SET events: %v", set["events"])
	}

	// Poll: the session-revoked SET waits for "other"; acknowledging it
	// removes it.
	status, polled, raw := ssfCall(t, o, http.MethodPost, ssf.PollPath+pollID, "other", testSecret, map[string]any{"returnImmediately": true})
	sets, _ := polled["sets"].(map[string]any)
	if status != http.StatusOK || len(sets) != 1 {
		t.Fatalf("poll: %d %s", status, raw)
	}
	var jti string
	for k, tok := range sets {
		jti = k
		c := verifyJWT(t, o.issuer, tok.(string), "secevent+jwt")
		if c["jti"] != k || c["sub_id"].(map[string]any)["sub"] != subs["other"] {
			t.Fatalf("polled SET %v", c)
		}
	}
	status, polled, raw = ssfCall(t, o, http.MethodPost, ssf.PollPath+pollID, "other", testSecret, map[string]any{"returnImmediately": true, "ack": []string{jti}})
	if status != http.StatusOK || len(polled["sets"].(map[string]any)) != 0 || polled["moreAvailable"] != false {
		t.Fatalf("poll after ack: %d %s", status, raw)
	}
}

// TestSSFNegative: every management handler refuses bad authentication,
// another client's stream, bad configurations and oversize bodies, and
// stores nothing for them.
func TestSSFNegative(t *testing.T) {
	kv := store.NewMemory()
	o := newTestOP(t, kv, nil)
	good := map[string]any{"delivery": map[string]any{"method": ssf.MethodPoll}}
	status, cfg, raw := ssfCall(t, o, http.MethodPost, ssf.StreamPath, "web", testSecret, good)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, raw)
	}
	sid := cfg["stream_id"].(string)
	countStreams := func() int {
		n := 0
		_ = kv.Scan(context.Background(), "ssf:stream:", func(string) error { n++; return nil })
		return n
	}
	before := countStreams()
	type tc struct {
		name         string
		method, path string
		id, secret   string
		body         any
		raw          string
		ctype        string
		want         int
	}
	big := strings.Repeat("x", 20<<10)
	cases := []tc{
		{"no credentials", "POST", ssf.StreamPath, "", "", good, "", "", 401},
		{"wrong secret", "POST", ssf.StreamPath, "web", "nope", good, "", "", 401},
		{"unknown client", "POST", ssf.StreamPath, "ghost", testSecret, good, "", "", 401},
		{"public client", "POST", ssf.StreamPath, "public", "", good, "", "", 401},
		{"bearer garbage", "GET", ssf.StreamPath, "", "", nil, "", "bearer", 401},
		{"no delivery", "POST", ssf.StreamPath, "web", testSecret, map[string]any{}, "", "", 400},
		{"unknown method", "POST", ssf.StreamPath, "web", testSecret, map[string]any{"delivery": map[string]any{"method": "urn:x"}}, "", "", 400},
		{"push without endpoint", "POST", ssf.StreamPath, "web", testSecret, map[string]any{"delivery": map[string]any{"method": ssf.MethodPush}}, "", "", 400},
		{"push to a fragment", "POST", ssf.StreamPath, "web", testSecret, map[string]any{"delivery": map[string]any{"method": ssf.MethodPush, "endpoint_url": "https://rp.example/e#x"}}, "", "", 400},
		{"push to a metadata service", "POST", ssf.StreamPath, "web", testSecret, map[string]any{"delivery": map[string]any{"method": ssf.MethodPush, "endpoint_url": "http://169.254.169.254/e"}}, "", "", 400},
		{"poll with an endpoint", "POST", ssf.StreamPath, "web", testSecret, map[string]any{"delivery": map[string]any{"method": ssf.MethodPoll, "endpoint_url": "https://rp.example/e"}}, "", "", 400},
		{"too many events", "POST", ssf.StreamPath, "web", testSecret, map[string]any{"delivery": map[string]any{"method": ssf.MethodPoll}, "events_requested": make([]string, 17)}, "", "", 400},
		{"header injection", "POST", ssf.StreamPath, "web", testSecret, map[string]any{"delivery": map[string]any{"method": ssf.MethodPush, "endpoint_url": "https://rp.example/e", "authorization_header": "x\r\nHost: evil"}}, "", "", 400},
		{"oversize body", "POST", ssf.StreamPath, "web", testSecret, map[string]any{"delivery": map[string]any{"method": ssf.MethodPoll}, "description": big}, "", "", 413},
		{"not JSON", "POST", ssf.StreamPath, "web", testSecret, nil, "{", "", 400},
		{"trailing data", "POST", ssf.StreamPath, "web", testSecret, nil, `{"delivery":{"method":"urn:ietf:rfc:8936"}} {}`, "", 400},
		{"form body", "POST", ssf.StreamPath, "web", testSecret, nil, "a=b", "application/x-www-form-urlencoded", 415},
		{"unknown stream", "GET", ssf.StreamPath + "?stream_id=nope", "web", testSecret, nil, "", "", 404},
		{"another client's stream", "GET", ssf.StreamPath + "?stream_id=" + sid, "other", testSecret, nil, "", "", 404},
		{"delete another client's stream", "DELETE", ssf.StreamPath + "?stream_id=" + sid, "other", testSecret, nil, "", "", 404},
		{"update another client's stream", "PATCH", ssf.StreamPath, "other", testSecret, map[string]any{"stream_id": sid, "description": "mine"}, "", "", 404},
		{"replace without delivery", "PUT", ssf.StreamPath, "web", testSecret, map[string]any{"stream_id": sid}, "", "", 400},
		{"bad status", "POST", ssf.StatusPath, "web", testSecret, map[string]any{"stream_id": sid, "status": "sleeping"}, "", "", 400},
		{"status of unknown stream", "GET", ssf.StatusPath + "?stream_id=nope", "web", testSecret, nil, "", "", 404},
		{"verify unknown stream", "POST", ssf.VerifyPath, "web", testSecret, map[string]any{"stream_id": "nope"}, "", "", 404},
		{"verify with a long state", "POST", ssf.VerifyPath, "web", testSecret, map[string]any{"stream_id": sid, "state": strings.Repeat("s", 300)}, "", "", 400},
		{"poll another client's stream", "POST", ssf.PollPath + sid, "other", testSecret, map[string]any{}, "", "", 404},
		{"poll too many", "POST", ssf.PollPath + sid, "web", testSecret, map[string]any{"maxEvents": 101}, "", "", 400},
		{"poll unauthenticated", "POST", ssf.PollPath + sid, "", "", map[string]any{}, "", "", 401},
		{"method not allowed", "HEAD", ssf.StatusPath + "?stream_id=" + sid, "web", testSecret, nil, "", "", 405},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var rd io.Reader
			switch {
			case c.raw != "":
				rd = strings.NewReader(c.raw)
			case c.body != nil:
				b, _ := json.Marshal(c.body)
				rd = bytes.NewReader(b)
			}
			req, _ := http.NewRequest(c.method, o.issuer+c.path, rd)
			ct := c.ctype
			if ct == "" && rd != nil {
				ct = "application/json"
			}
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			switch {
			case c.secret == "bearer":
				req.Header.Set("Authorization", "Bearer not-a-jwt")
			case c.id != "":
				req.SetBasicAuth(c.id, c.secret)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != c.want {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, c.want, body)
			}
		})
	}
	if n := countStreams(); n != before {
		t.Fatalf("refused requests changed the streams: %d, was %d", n, before)
	}
	// The per-client bound.
	for range ssf.MaxStreamsPerClient - 1 {
		if status, _, raw := ssfCall(t, o, http.MethodPost, ssf.StreamPath, "web", testSecret, good); status != http.StatusCreated {
			t.Fatalf("create: %d %s", status, raw)
		}
	}
	if status, _, _ := ssfCall(t, o, http.MethodPost, ssf.StreamPath, "web", testSecret, good); status != http.StatusConflict {
		t.Fatalf("stream over the bound: %d", status)
	}
	// Update, status, delete of one's own stream.
	if status, c, raw := ssfCall(t, o, http.MethodPatch, ssf.StreamPath, "web", testSecret, map[string]any{"stream_id": sid, "description": "renamed"}); status != 200 || c["description"] != "renamed" {
		t.Fatalf("patch: %d %s", status, raw)
	}
	if status, c, raw := ssfCall(t, o, http.MethodPost, ssf.StatusPath, "web", testSecret, map[string]any{"stream_id": sid, "status": "paused"}); status != 200 || c["status"] != "paused" {
		t.Fatalf("status: %d %s", status, raw)
	}
	if status, c, _ := ssfCall(t, o, http.MethodGet, ssf.StatusPath+"?stream_id="+sid, "web", testSecret, nil); status != 200 || c["status"] != "paused" {
		t.Fatalf("read status: %d %v", status, c)
	}
	if status, _, _ := ssfCall(t, o, http.MethodDelete, ssf.StreamPath+"?stream_id="+sid, "web", testSecret, nil); status != http.StatusNoContent {
		t.Fatalf("delete: %d", status)
	}
	if status, _, _ := ssfCall(t, o, http.MethodGet, ssf.StreamPath+"?stream_id="+sid, "web", testSecret, nil); status != http.StatusNotFound {
		t.Fatalf("deleted stream still there: %d", status)
	}

}
