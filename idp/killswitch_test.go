package idp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp"
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
// for each run, with its median. A blocked client is refused at node B's
// /authorize the same way, and lifting either block lets the resident
// through again.
func TestKillSwitchAcrossNodes(t *testing.T) {
	addr := storetest.StartRedis(t)
	admin := newAdminAPI(t, redisConn(t, addr, "ks:"))
	kvB := redisConn(t, addr, "ks:")
	op := startOP(t, opSetup{kv: kvB})
	blocksB, err := whitelist.NewBlocklist(whitelist.BlocklistOptions{Backend: whitelist.KVBackend(kvB, store.ErrNotFound)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = blocksB.Run(ctx) }() // as Server.Run does
	t.Cleanup(func() { cancel(); <-done })
	for !blocksB.Live() {
		time.Sleep(time.Millisecond)
	}
	op.node(func(o *idp.Options) { o.Blocks = blocksB })
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

	// A block ends what that label already started: the session, when
	// the browser comes back to any node, with the sessions and the
	// token families of the same certificate.
	if code := admin.call("POST", "/whitelist/blocks", map[string]string{"kind": "label", "value": walletsim.TokenAndroid}); code != http.StatusCreated {
		t.Fatalf("block: HTTP %d", code)
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
	res, err := op.hc.PostForm(op.issuer+"/oauth/token", map[string][]string{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {"city"}, "client_secret": {e2eSecret}})
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
