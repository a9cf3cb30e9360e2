package idp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/watashi-id/watashi/idp"
	"github.com/watashi-id/watashi/idp/backchannel"
	"github.com/watashi-id/watashi/idp/ssf"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/whitelist"
)

// adminAPI is node A of a deployment: the operators' admin API with the
// kill switch, on a connection of its own to the shared Redis.
type adminAPI struct {
	t     *testing.T
	url   string
	token string
}

func newAdminAPI(t *testing.T, kv store.KV) *adminAPI {
	t.Helper()
	b := whitelist.KVBackend(kv, store.ErrNotFound)
	reg, err := whitelist.New(whitelist.Options{Backend: b, Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := whitelist.NewBlocklist(whitelist.BlocklistOptions{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	token, hash := whitelist.NewAdminToken()
	h, err := reg.AdminHandler(whitelist.AdminOptions{TokenHash: hash, Prefix: "/whitelist", Blocks: blocks})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &adminAPI{t: t, url: srv.URL, token: token}
}

func (a *adminAPI) call(method, path string, body any) int {
	a.t.Helper()
	var buf bytes.Buffer
	if body != nil {
		_ = json.NewEncoder(&buf).Encode(body)
	}
	req, _ := http.NewRequest(method, a.url+path, &buf)
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// rpInbox is a relying party's endpoint for what the provider pushes: a
// real HTTP server taking back-channel logout tokens (form posts) and
// SSF SETs (RFC 8935 push with the bearer token the receiver gave).
type rpInbox struct {
	*httptest.Server
	logout, sets chan string
}

const inboxAuth = "Bearer inbox-secret-0123456789"

func newRPInbox(t *testing.T) *rpInbox {
	in := &rpInbox{logout: make(chan string, 16), sets: make(chan string, 16)}
	in.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/bcl" && r.PostFormValue("logout_token") != "":
			in.logout <- r.PostFormValue("logout_token")
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodPost && r.URL.Path == "/events" && r.Header.Get("Authorization") == inboxAuth &&
			r.Header.Get("Content-Type") == "application/secevent+jwt":
			b, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
			in.sets <- string(b)
			w.WriteHeader(http.StatusAccepted)
		default:
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	t.Cleanup(in.Close)
	return in
}

func (in *rpInbox) next(t *testing.T, c chan string, what string) string {
	t.Helper()
	select {
	case s := <-c:
		return s
	case <-time.After(15 * time.Second):
		t.Fatalf("no %s within 15 s", what)
		return ""
	}
}

// pushedClaims verifies a token the provider pushed as the RP does:
// against the published JWKS, with the typ it expects.
func pushedClaims(t *testing.T, issuer, tok, typ string) map[string]any {
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
	keys := set.Key(h.KeyID)
	if h.ExtraHeaders["typ"] != typ || len(keys) != 1 {
		t.Fatalf("typ %v (want %s), kid %q", h.ExtraHeaders["typ"], typ, h.KeyID)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil || claims["iss"] != issuer {
		t.Fatalf("claims %s: %v", payload, err)
	}
	return claims
}

func redisConn(t testing.TB, addr, prefix string) store.KV {
	t.Helper()
	kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	return kv
}

// TestKillSwitchAcrossNodes: the operator blocks a token label through
// the admin API of node A; the very next sign-in with that label on
// node B, which shares one real Redis, is refused, and the browser is
// told why. The time from the admin call to node B's refusal is logged
// for each run, with its median. When a session signed in with a blocked
// label comes back, it ends, and the RP that holds it hears so at its
// back-channel logout endpoint and by SSF (session revoked by the admin,
// credential revoked and to be changed). A blocked client is refused at
// node B's /authorize the same way, and lifting either block lets the
// resident through again.
func TestKillSwitchAcrossNodes(t *testing.T) {
	addr := storetest.StartRedis(t)
	admin := newAdminAPI(t, redisConn(t, addr, "ks:"))
	kvB := redisConn(t, addr, "ks:")
	op := startOP(t, opSetup{kv: kvB})
	blocksB, err := whitelist.NewBlocklist(whitelist.BlocklistOptions{Backend: whitelist.KVBackend(kvB, store.ErrNotFound)})
	if err != nil {
		t.Fatal(err)
	}
	// Node B runs its background work (the block list, the events to
	// relying parties); "city" registered a back-channel logout endpoint.
	inbox := newRPInbox(t)
	o := op.opts
	o.Verifier = op.pki.verifier(t)
	o.Blocks = blocksB
	o.Clients = e2eClients(op.pki.secretHash)
	for _, c := range o.Clients {
		if c.ID == "city" {
			c.BackchannelLogoutURI = inbox.URL + "/bcl"
		}
	}
	srvB, err := idp.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	op.front.set(srvB.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srvB.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for !blocksB.Live() {
		time.Sleep(time.Millisecond)
	}
	rp := op.rp("city", e2eCityRedirect)
	phone := op.pki.wallet(t, e2eTaro) // reports JPKIAPGPSETOKEN

	var ds []time.Duration
	for range 5 {
		b := op.browser()
		p := b.openTransaction(b.authorize(rp.begin()))
		tx, err := walletsim.Fetch(context.Background(), op.hc, p.walletLink(t))
		if err != nil {
			t.Fatal(err)
		}
		sigs, err := phone.SignBytes(tx.Bytes, "jws", tx.Certificates)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if code := admin.call("POST", "/whitelist/blocks", map[string]string{"kind": "label", "value": walletsim.TokenAndroid, "reason": "test"}); code != http.StatusCreated {
			t.Fatalf("block: HTTP %d", code)
		}
		err = phone.SubmitSignatures(context.Background(), op.hc, tx, walletsim.Submission{Signatures: sigs, ComparisonCode: tx.ComparisonCode, QRToken: tx.QRToken})
		elapsed := time.Since(start)
		var we *walletsim.Error
		if !errors.As(err, &we) || we.Code != "authenticator_blocked" || we.Status != http.StatusForbidden {
			t.Fatalf("sign-in on node B after the block on node A: %v", err)
		}
		if elapsed > time.Second {
			t.Fatalf("the refusal came %v after the block", elapsed)
		}
		ds = append(ds, elapsed)
		if st := b.await(p, 2*time.Second); st.State != "failed" || st.Reason != "authenticator_blocked" {
			t.Fatalf("the browser sees %+v", st)
		}
		page := b.expectPage(b.get(p.url.String()))
		if !strings.Contains(page, "have been stopped by Watashi") {
			t.Fatalf("the login page does not say why:\n%s", page)
		}
		if code := admin.call("DELETE", "/whitelist/blocks/label/"+walletsim.TokenAndroid, nil); code != http.StatusOK {
			t.Fatalf("unblock: HTTP %d", code)
		}
	}
	slices.Sort(ds)
	t.Logf("block on node A to refused sign-in on node B, %d runs (includes the admin call and the signature check): min %v, median %v, max %v",
		len(ds), ds[0], ds[len(ds)/2], ds[len(ds)-1])

	// Lifted: the same phone proves and signs in on node B.
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		if blocked, _ := blocksB.LabelBlocked(ctx, walletsim.TokenAndroid); !blocked {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("node B kept the lifted block")
		}
	}
	sb := op.browser()
	first := rp.begin()
	l := rp.callback(first, sb.signIn(phone, first, "proofing", "jws"))
	if l.tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	sb.signedInCode(rp.begin()) // the SSO session works
	// A second browser signs in with the same phone and never comes
	// back: its relying party must not refresh on once the label is
	// blocked.
	away := op.browser()
	second := rp.begin()
	awayLogin := rp.callback(second, away.signIn(phone, second, "signin", "jws"))
	if awayLogin.tok.RefreshToken == "" {
		t.Fatal("no refresh token for the second browser")
	}
	var idt struct {
		Sub string `json:"sub"`
		Sid string `json:"sid"`
	}
	if err := l.idt.Claims(&idt); err != nil || idt.Sid == "" {
		t.Fatalf("ID token sid: %+v %v", idt, err)
	}
	// "city" follows the resident's sessions and credentials by SSF.
	stream, _ := json.Marshal(map[string]any{
		"events_requested": []string{ssf.EventSessionRevoked, ssf.EventCredentialChange, ssf.EventChangeRequired},
		"delivery":         map[string]any{"method": ssf.MethodPush, "endpoint_url": inbox.URL + "/events", "authorization_header": inboxAuth},
	})
	req, _ := http.NewRequest(http.MethodPost, op.issuer+ssf.StreamPath, bytes.NewReader(stream))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("city", e2eSecret)
	res, err := op.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create SSF stream: HTTP %d", res.StatusCode)
	}

	// A block ends what that label already started: the session, when
	// the browser comes back to any node, with the sessions and the
	// token families of the same certificate.
	if code := admin.call("POST", "/whitelist/blocks", map[string]string{"kind": "label", "value": walletsim.TokenAndroid}); code != http.StatusCreated {
		t.Fatalf("block: HTTP %d", code)
	}
	// Before any browser of that label returns: the family it left
	// behind refreshes no more (a rotation the block had not reached yet
	// hands on its new token).
	rt := awayLogin.tok.RefreshToken
	for start := time.Now(); ; {
		tok, errCode := rp.refresh(rt)
		if errCode == "invalid_grant" {
			break
		}
		if errCode != "" || tok == nil || time.Since(start) > time.Second {
			t.Fatalf("refresh of a family the blocked label signed in, after the block: %q", errCode)
		}
		rt = tok.RefreshToken
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	for {
		h := sb.get(sb.authorize(rp.begin()).String())
		if h.status == http.StatusSeeOther && h.loc != nil && h.loc.Query().Get("tx") != "" {
			break // a new sign-in, not the old session
		}
		if time.Since(start) > time.Second {
			t.Fatalf("the session of a blocked label still signs in after 1 s: %d %v", h.status, h.loc)
		}
		time.Sleep(time.Millisecond)
	}
	if _, errCode := rp.refresh(l.tok.RefreshToken); errCode != "invalid_grant" {
		t.Fatalf("refresh token of a blocked session: %q", errCode)
	}
	// "city" hears of it: a logout token for the session it holds, and
	// SETs saying the operator ended the session and revoked the
	// credential, which must change.
	// Both sessions of that phone end: the one whose browser came back
	// and the one whose browser stayed away; each has its logout token.
	var awayIDT struct {
		Sid string `json:"sid"`
	}
	if err := awayLogin.idt.Claims(&awayIDT); err != nil || awayIDT.Sid == "" || awayIDT.Sid == idt.Sid {
		t.Fatalf("second browser's sid: %+v %v", awayIDT, err)
	}
	sids := map[any]bool{}
	for range 2 {
		lt := pushedClaims(t, op.issuer, inbox.next(t, inbox.logout, "logout token"), backchannel.TokenType)
		if ev, _ := lt["events"].(map[string]any); lt["aud"] != "city" || lt["sub"] != idt.Sub || ev[backchannel.EventURI] == nil {
			t.Fatalf("logout token %v", lt)
		}
		sids[lt["sid"]] = true
	}
	if !sids[idt.Sid] || !sids[awayIDT.Sid] {
		t.Fatalf("logout tokens for sids %v, want %s and %s", sids, idt.Sid, awayIDT.Sid)
	}
	heard := map[string]map[string]any{}
	revoked := 0
	for range 4 {
		set := pushedClaims(t, op.issuer, inbox.next(t, inbox.sets, "SET"), "secevent+jwt")
		sub, _ := set["sub_id"].(map[string]any)
		ev, _ := set["events"].(map[string]any)
		if set["aud"] != "city" || sub["sub"] != idt.Sub || len(ev) != 1 {
			t.Fatalf("SET %v", set)
		}
		for uri, p := range ev {
			heard[uri], _ = p.(map[string]any)
			if uri == ssf.EventSessionRevoked {
				revoked++
			}
		}
	}
	if p := heard[ssf.EventSessionRevoked]; p == nil || p["initiating_entity"] != "admin" || revoked != 2 {
		t.Fatalf("session-revoked (%d of 2) %v", revoked, heard)
	}
	if p := heard[ssf.EventCredentialChange]; p == nil || p["change_type"] != "revoke" || p["credential_type"] != "x509" ||
		p["friendly_name"] != walletsim.TokenAndroid || p["initiating_entity"] != "admin" {
		t.Fatalf("credential-change %v", heard)
	}
	if heard[ssf.EventChangeRequired] == nil {
		t.Fatalf("account-credential-change-required missing: %v", heard)
	}
	if code := admin.call("DELETE", "/whitelist/blocks/label/"+walletsim.TokenAndroid, nil); code != http.StatusOK {
		t.Fatalf("unblock: HTTP %d", code)
	}
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		if blocked, _ := blocksB.LabelBlocked(ctx, walletsim.TokenAndroid); !blocked {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("node B kept the lifted block")
		}
	}

	// Another label is untouched by a block of this one.
	if code := admin.call("POST", "/whitelist/blocks", map[string]string{"kind": "label", "value": walletsim.TokenIOS}); code != http.StatusCreated {
		t.Fatalf("block: HTTP %d", code)
	}
	op.browser().signIn(phone, rp.begin(), "", "jws")

	// A blocked client: node B's /authorize refuses it with a page of its
	// own, and no redirect to the client.
	if code := admin.call("POST", "/whitelist/blocks", map[string]string{"kind": "client", "value": "city"}); code != http.StatusCreated {
		t.Fatalf("block client: HTTP %d", code)
	}
	start = time.Now()
	for {
		h := op.browser().get(rp.begin().url)
		if h.status == http.StatusForbidden {
			if h.loc != nil || !strings.Contains(h.body, "has stopped sign-ins to this service") {
				t.Fatalf("blocked client page: %d %v\n%s", h.status, h.loc, h.body)
			}
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("node B still serves the blocked client after 1 s: %d", h.status)
		}
		time.Sleep(time.Millisecond)
	}
	// Its other endpoints refuse it too: the token endpoint answers
	// invalid_client.
	res, err = op.hc.PostForm(op.issuer+"/oauth/token", map[string][]string{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {"city"}, "client_secret": {e2eSecret}})
	if err != nil {
		t.Fatal(err)
	}
	var tokErr struct{ Error string }
	_ = json.NewDecoder(res.Body).Decode(&tokErr)
	res.Body.Close()
	if tokErr.Error != "invalid_client" {
		t.Fatalf("token endpoint for a blocked client: %d %q", res.StatusCode, tokErr.Error)
	}
	// Another client is untouched.
	if h := op.browser().get(op.rp("shop", e2eShopRedirect).begin().url); h.status != http.StatusSeeOther && h.status != http.StatusFound {
		t.Fatalf("another client: %d", h.status)
	}
}
