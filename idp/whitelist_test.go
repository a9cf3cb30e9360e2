package idp_test

// The relying-party whitelist end to end: the provider composed with a
// whitelist.Registry on the same store, an independent go-oidc RP that
// registered itself at /register with an initial access token, and the
// enforcement table (each status × authorize, token, userinfo and
// introspection) over the real HTTP handler, on memory and on Redis.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/whitelist"
)

var operator = whitelist.Change{Actor: "test-operator", Via: "test", Reason: "whitelist e2e"}

// newRegistry builds a registry on kv and runs it (pub/sub and the change
// counter) for the test's lifetime, as serve does.
func newRegistry(t testing.TB, kv store.KV) *whitelist.Registry {
	t.Helper()
	reg, err := whitelist.New(whitelist.Options{Backend: whitelist.KVBackend(kv, store.ErrNotFound), Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = reg.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return reg
}

// startRegistryOP is startOP with a registry behind the static clients.
func startRegistryOP(t testing.TB, kv store.KV, reg *whitelist.Registry) *e2eOP {
	t.Helper()
	pki := e2eSim(t)
	ts := httptest.NewUnstartedServer(nil)
	issuer := "http://" + ts.Listener.Addr().String()
	o := idp.Options{Issuer: issuer, Dev: true, Store: kv, Verifier: pki.verifier(t), Clients: e2eClients(pki.secretHash),
		Registry: reg, PairwiseKey: randomBytes(t, 32), CookieKey: randomBytes(t, 32), KEK: seal.GenerateRing()}
	copy(o.TokenKey[:], randomBytes(t, 32))
	srv, err := idp.New(context.Background(), o)
	if err != nil {
		ts.Close()
		t.Fatalf("idp.New: %v", err)
	}
	front := &swapHandler{}
	front.set(srv.Handler())
	ts.Config.Handler = front
	ts.Start()
	t.Cleanup(ts.Close)
	hc := ts.Client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &e2eOP{t: t, ts: ts, issuer: issuer, kv: kv, opts: o, hc: hc, pki: pki, front: front}
}

// registered is what an integrator keeps from its registration.
type registered struct {
	ClientID                string `json:"client_id"`
	ClientSecret            string `json:"client_secret"`
	RegistrationAccessToken string `json:"registration_access_token"`
	Status                  string `json:"status"`
	Tier                    string `json:"tier"`
}

// register is the integrator's RFC 7591 request with an initial access
// token, over HTTP.
func register(t testing.TB, op *e2eOP, iat, redirect string) registered {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"redirect_uris":              []string{redirect},
		"client_name":                "登録テストサービス",
		"organization_name":          "株式会社テスト",
		"token_endpoint_auth_method": "client_secret_basic",
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
	})
	req, _ := http.NewRequest(http.MethodPost, op.issuer+"/register", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+iat)
	res, err := op.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out registered
	raw := new(bytes.Buffer)
	_, _ = raw.ReadFrom(res.Body)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("registration: %s %s", res.Status, raw)
	}
	if err := json.Unmarshal(raw.Bytes(), &out); err != nil || out.ClientID == "" || out.ClientSecret == "" {
		t.Fatalf("registration answer %s", raw)
	}
	return out
}

// outcome is what one endpoint did for a client.
type outcome struct{ authorize, token, userinfo, introspect bool }

// probe calls the four endpoints for a client: a fresh /authorize (a
// 302 into the login is acceptance, a 400 page without Location is
// refusal), a refresh (or, without a refresh token, a code exchange of
// an invalid refresh token: invalid_grant means the client passed,
// invalid_client that it was refused; userinfo needs a token and stays
// false), userinfo and introspection with the client's own
// credentials. It returns the new tokens when the refresh succeeded.
func probe(t *testing.T, op *e2eOP, rp *relyingParty, l *login) (outcome, *login) {
	t.Helper()
	var o outcome
	h := op.browser().get(rp.begin().url)
	switch {
	case h.status == http.StatusFound && h.loc != nil && strings.HasPrefix(h.loc.Path, "/login"):
		o.authorize = true
	case h.status == http.StatusBadRequest && h.loc == nil:
	default:
		t.Fatalf("authorize: %s", h)
	}
	if l == nil {
		// The refresh grant authenticates the client before it looks at
		// the token (the code grant looks at the code first).
		_, code := rp.refresh("not-a-refresh-token")
		switch code {
		case "invalid_grant":
			o.token = true
		case "invalid_client":
		default:
			t.Fatalf("refresh with a bogus token: %s", code)
		}
		status, m := rp.backChannel(rp.meta.Introspection, url.Values{"token": {"x"}})
		o.introspect = status == http.StatusOK
		if !o.introspect && status != http.StatusUnauthorized && status != http.StatusBadRequest {
			t.Fatalf("introspection: %d %v", status, m)
		}
		return o, l
	}
	tok, code := rp.refresh(l.tok.RefreshToken)
	switch code {
	case "":
		o.token = true
		l = &login{tok: tok}
	case "invalid_client":
	default:
		t.Fatalf("refresh: %s", code)
	}
	if _, status := rp.userinfo(l.tok); status == http.StatusOK {
		o.userinfo = true
	}
	status, m := rp.backChannel(rp.meta.Introspection, url.Values{"token": {l.tok.AccessToken}})
	switch {
	case status == http.StatusOK && m["active"] == true:
		o.introspect = true
	case status == http.StatusOK, status == http.StatusUnauthorized, status == http.StatusBadRequest:
	default:
		t.Fatalf("introspection: %d %v", status, m)
	}
	return o, l
}

// TestWhitelistEnforcement is the enforcement table: a client registered
// over HTTP with an initial access token, a resident login through the
// go-oidc RP once approved, then each status against each endpoint.
func TestWhitelistEnforcement(t *testing.T) {
	for _, st := range e2eStores {
		t.Run(st.name, func(t *testing.T) {
			kv := st.kv(t)
			reg := newRegistry(t, kv)
			op := startRegistryOP(t, kv, reg)
			ctx := context.Background()
			iat, _, err := reg.IssueToken(ctx, whitelist.TokenRequest{Tier: whitelist.TierFull, TTL: time.Hour, Change: operator})
			if err != nil {
				t.Fatal(err)
			}
			const redirect = "https://registered.example.test/cb"
			r := register(t, op, iat, redirect)
			if r.Status != string(whitelist.StatusPending) || r.Tier != whitelist.TierFull {
				t.Fatalf("registered %+v, want pending in tier full", r)
			}
			rp := op.rp(r.ClientID, redirect)
			rp.conf.ClientSecret = r.ClientSecret
			stranger := op.rp("stranger-client", redirect)

			all := outcome{true, true, true, true}
			none := outcome{}
			check := func(t *testing.T, status string, rp *relyingParty, l *login, want outcome) *login {
				t.Helper()
				got, l := probe(t, op.withT(t), rp.withT(t), l)
				if got != want {
					t.Errorf("%s: got %+v, want %+v", status, got, want)
				}
				return l
			}
			// Without tokens: unknown and pending clients.
			t.Run("unknown", func(t *testing.T) { check(t, "unknown", stranger, nil, none) })
			t.Run("pending", func(t *testing.T) { check(t, "pending", rp, nil, none) })

			if _, err := reg.Approve(ctx, r.ClientID, operator); err != nil {
				t.Fatal(err)
			}
			w := op.pki.wallet(t, e2eTaro)
			resident := op.browser()
			a := rp.begin()
			l := rp.callback(a, resident.signIn(w, a, "proofing", walletsim.FormatJWS))
			if l.tok.RefreshToken == "" {
				t.Fatal("no refresh token")
			}
			ui, status := rp.userinfo(l.tok)
			if status != http.StatusOK {
				t.Fatalf("userinfo %d", status)
			}
			checkFacts(t, ui, l.idt.Subject)

			steps := []struct {
				name   string
				change func() error
				want   outcome
			}{
				{"approved", func() error { return nil }, all},
				{"suspended", func() error { _, err := reg.Suspend(ctx, r.ClientID, operator); return err }, none},
				{"resumed", func() error { _, err := reg.Resume(ctx, r.ClientID, operator); return err }, all},
				{"revoked", func() error { _, err := reg.Revoke(ctx, r.ClientID, operator); return err }, none},
			}
			for _, s := range steps {
				if err := s.change(); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				t.Run(s.name, func(t *testing.T) { l = check(t, s.name, rp, l, s.want) })
			}
			// A suspended client's error page says so; an unknown one's
			// says it is not registered.
			h := op.browser().get(rp.begin().url)
			if h.status != http.StatusBadRequest || h.loc != nil || !strings.Contains(h.body, "not currently allowed") {
				t.Errorf("revoked client's authorize: %s\n%.300s", h, h.body)
			}
			// The static clients are untouched by the registry.
			if got, _ := probe(t, op, op.rp("city", e2eCityRedirect), nil); got != (outcome{authorize: true, token: true, introspect: true}) {
				t.Errorf("static client: %+v", got)
			}
		})
	}
}

// TestWhitelistTier: a scope outside the tier is invalid_scope, sent back
// to the RP's registered redirect URI with the state; claims outside the
// tier are never released.
func TestWhitelistTier(t *testing.T) {
	kv := store.NewMemory()
	reg := newRegistry(t, kv)
	op := startRegistryOP(t, kv, reg)
	ctx := context.Background()
	const redirect = "https://basic.example.test/cb"
	added, err := reg.Add(ctx, whitelist.AddRequest{Tier: whitelist.TierBasic, Approve: true, Change: operator,
		Metadata: whitelist.Metadata{RedirectURIs: []string{redirect}, ClientName: "Basic RP", OrganizationName: "Basic Org",
			TokenEndpointAuthMethod: whitelist.AuthClientSecretBasic}})
	if err != nil {
		t.Fatal(err)
	}
	rp := op.rp(added.Client.ID, redirect, "openid", "name", "address")
	rp.conf.ClientSecret = added.ClientSecret
	a := rp.begin()
	h := op.browser().get(a.url)
	if h.status != http.StatusFound || h.loc == nil {
		t.Fatalf("want a redirect to the RP: %s", h)
	}
	q := h.loc.Query()
	if got := h.loc.Scheme + "://" + h.loc.Host + h.loc.Path; got != redirect || q.Get("error") != "invalid_scope" ||
		q.Get("state") != a.state || q.Has("code") || !strings.Contains(q.Get("error_description"), "address") {
		t.Fatalf("redirect %s, want invalid_scope naming address", h.loc)
	}
	// Within the tier: into the login; then only the tier's claims.
	rp = op.rp(added.Client.ID, redirect, "openid", "name")
	rp.conf.ClientSecret = added.ClientSecret
	w := op.pki.wallet(t, e2eTaro)
	a = rp.begin()
	l := rp.callback(a, op.browser().signIn(w, a, "proofing", walletsim.FormatJWS))
	ui, status := rp.userinfo(l.tok)
	if status != http.StatusOK {
		t.Fatalf("userinfo %d", status)
	}
	var claims map[string]any
	if err := ui.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims["name"] == nil {
		t.Errorf("userinfo lacks name: %v", claims)
	}
	for _, k := range []string{"birthdate", "gender", "address"} {
		if _, ok := claims[k]; ok {
			t.Errorf("userinfo releases %s outside the basic tier", k)
		}
	}
	// The claims parameter cannot widen the tier either.
	a = rp.begin(oauth2.SetAuthURLParam("claims", `{"userinfo":{"address":{"essential":true},"birthdate":null}}`))
	l = rp.callback(a, op.browser().signIn(w, a, "", walletsim.FormatJWS))
	ui, _ = rp.userinfo(l.tok)
	claims = nil
	_ = ui.Claims(&claims)
	for _, k := range []string{"birthdate", "address"} {
		if _, ok := claims[k]; ok {
			t.Errorf("claims parameter released %s outside the tier", k)
		}
	}
}

// TestWhitelistTwoNodes: two provider nodes on one Redis, each with its
// own registry; a suspension made through one node's registry is refused
// by the other within one second. Reports the median propagation.
func TestWhitelistTwoNodes(t *testing.T) {
	kv := redisStore(t)
	regA := newRegistry(t, kv)
	regB := newRegistry(t, kv)
	opB := startRegistryOP(t, kv, regB)
	ctx := context.Background()
	const redirect = "https://twonodes.example.test/cb"
	added, err := regA.Add(ctx, whitelist.AddRequest{Tier: whitelist.TierStandard, Approve: true, Change: operator,
		Metadata: whitelist.Metadata{RedirectURIs: []string{redirect}, ClientName: "Two nodes", OrganizationName: "Org",
			TokenEndpointAuthMethod: whitelist.AuthClientSecretBasic}})
	if err != nil {
		t.Fatal(err)
	}
	rp := opB.rp(added.Client.ID, redirect, "openid", "name")
	b := opB.browser()
	accepted := func() bool {
		h := b.get(rp.begin().url)
		return h.status == http.StatusFound
	}
	var lat []time.Duration
	for range 7 {
		if !accepted() { // node B has the approved client cached now
			t.Fatal("node B refuses an approved client")
		}
		start := time.Now()
		if _, err := regA.Suspend(ctx, added.Client.ID, operator); err != nil {
			t.Fatal(err)
		}
		for accepted() {
			if time.Since(start) > time.Second {
				t.Fatal("node B still accepts the client 1 s after its suspension on node A")
			}
		}
		lat = append(lat, time.Since(start))
		if _, err := regA.Resume(ctx, added.Client.ID, operator); err != nil {
			t.Fatal(err)
		}
		for !accepted() {
			if time.Since(start) > 2*time.Second {
				t.Fatal("node B still refuses the client 1 s after it was resumed")
			}
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("suspension seen by the other node: median %v (min %v, max %v, n=%d)", lat[len(lat)/2], lat[0], lat[len(lat)-1], len(lat))
}

// TestWhitelistDiscovery: registration_endpoint is advertised with a
// registry, and only then.
func TestWhitelistDiscovery(t *testing.T) {
	kv := store.NewMemory()
	op := startRegistryOP(t, kv, newRegistry(t, kv))
	rp := op.rp("city", e2eCityRedirect)
	var meta struct {
		Registration string `json:"registration_endpoint"`
	}
	if err := rp.provider.Claims(&meta); err != nil {
		t.Fatal(err)
	}
	if meta.Registration != op.issuer+"/register" {
		t.Fatalf("registration_endpoint %q", meta.Registration)
	}
	plain := startOP(t, opSetup{kv: store.NewMemory()})
	res, err := plain.hc.Get(plain.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(res.Body).Decode(&m)
	if _, ok := m["registration_endpoint"]; ok {
		t.Error("registration_endpoint advertised without a registry")
	}
	res2, err := plain.hc.Post(plain.issuer+"/register", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if res2.StatusCode == http.StatusCreated || res2.StatusCode == http.StatusUnauthorized {
		t.Errorf("/register without a registry: %s", res2.Status)
	}
	// Registration refuses a request without an initial access token.
	res3, err := op.hc.Post(op.issuer+"/register", "application/json", strings.NewReader(`{"redirect_uris":["https://x.example.test/cb"]}`))
	if err != nil {
		t.Fatal(err)
	}
	res3.Body.Close()
	if res3.StatusCode != http.StatusUnauthorized {
		t.Errorf("registration without a token: %s", res3.Status)
	}
}
