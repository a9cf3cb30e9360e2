package idp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/keys"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/pkibridge"
)

// Shared fixtures: key generation (RSA above all) and Argon2 hashing are
// slow, so they are made once per test binary.
var (
	fixtureOnce   sync.Once
	fixtureKeys   []keys.Record
	fixtureSecret string // hash of testSecret
	fixtureRPKey  *ecdsa.PrivateKey
	fixtureRPJWKS []byte
)

const (
	testSecret   = "correct horse battery staple"
	testAccount  = "acct-0001"
	testAccount2 = "acct-0002"
)

func fixtures(t testing.TB) {
	t.Helper()
	fixtureOnce.Do(func() {
		for _, alg := range keys.Algs {
			for _, st := range []string{keys.StateCurrent, keys.StateNext} {
				rec, err := keys.NewRecord(alg, st, time.Now())
				if err != nil {
					panic(err)
				}
				fixtureKeys = append(fixtureKeys, *rec)
			}
		}
		var err error
		if fixtureSecret, err = clients.HashSecret(testSecret); err != nil {
			panic(err)
		}
		if fixtureRPKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &fixtureRPKey.PublicKey, KeyID: "rp-key-1", Algorithm: "ES256", Use: "sig"}}}
		if fixtureRPJWKS, err = json.Marshal(set); err != nil {
			panic(err)
		}
	})
}

func seedKeys(t testing.TB, kv store.KV) {
	t.Helper()
	fixtures(t)
	m, err := keys.New(kv, keys.Options{KEK: testKEK})
	if err != nil {
		t.Fatal(err)
	}
	for i := range fixtureKeys {
		rec := fixtureKeys[i]
		if err := m.Put(context.Background(), &rec); err != nil {
			t.Fatal(err)
		}
	}
}

// testClients covers every client kind the provider supports.
func testClients() []*clients.Client {
	scopes := []string{"name", "birthdate", "gender", "address", "profile", "offline_access"}
	return []*clients.Client{
		{ID: "web", DisplayName: "Web RP", AuthMethod: clients.AuthSecretBasic, SecretHash: fixtureSecret,
			RedirectURIs: []string{"https://rp.example/cb"}, PostLogout: []string{"https://rp.example/bye"}, Scopes: scopes},
		{ID: "web2", DisplayName: "Same sector", AuthMethod: clients.AuthSecretBasic, SecretHash: fixtureSecret,
			RedirectURIs: []string{"https://rp.example/other-cb"}, Scopes: scopes},
		{ID: "other", DisplayName: "Other sector", AuthMethod: clients.AuthSecretBasic, SecretHash: fixtureSecret,
			RedirectURIs: []string{"https://other.example/cb"}, Scopes: scopes},
		{ID: "rsa", DisplayName: "RS256 RP", AuthMethod: clients.AuthSecretBasic, SecretHash: fixtureSecret, IDTokenAlg: "RS256",
			RedirectURIs: []string{"https://rsa.example/cb"}, Scopes: scopes},
		{ID: "public", DisplayName: "Native app", AuthMethod: clients.AuthNone,
			RedirectURIs: []string{"http://127.0.0.1/cb"}, Scopes: []string{"name"}},
		{ID: "pkjwt", DisplayName: "private_key_jwt RP", AuthMethod: clients.AuthPrivateKeyJWT, JWKS: fixtureRPJWKS,
			RedirectURIs: []string{"https://pk.example/cb"}, Scopes: scopes},
		{ID: "narrow", DisplayName: "No extra scopes", AuthMethod: clients.AuthSecretBasic, SecretHash: fixtureSecret,
			RedirectURIs: []string{"https://narrow.example/cb"}},
	}
}

type testOP struct {
	t      testing.TB
	s      *Server
	ts     *httptest.Server
	issuer string
	kv     store.KV
	hc     *http.Client // follows no redirects
	// binds holds the binding cookie /authorize set for each request
	// startAuth made: the browser of the test's RP redirect.
	mu    sync.Mutex
	binds map[string]*http.Cookie
}

// bindingOf is the binding cookie /authorize set for request id, if any.
func (o *testOP) bindingOf(id string) *http.Cookie {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.binds[id]
}

// bindCookie is the binding cookie a response set, or nil.
func bindCookie(s *Server, cookies []*http.Cookie) *http.Cookie {
	for _, c := range cookies {
		if c.Name == s.web.CookieName("bind") {
			return c
		}
	}
	return nil
}

func memoryKV(testing.TB) store.KV { return store.NewMemory() }

func redisKV(t testing.TB) store.KV {
	addr := storetest.StartRedis(t)
	kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: "test:"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	return kv
}

// backends runs f against the memory store and a real Redis.
func backends(t *testing.T, f func(t *testing.T, newKV func(testing.TB) store.KV)) {
	t.Run("memory", func(t *testing.T) { f(t, memoryKV) })
	t.Run("redis", func(t *testing.T) { f(t, redisKV) })
}

func testOptions(kv store.KV, issuer string) Options {
	return Options{
		Issuer:      issuer,
		Dev:         true,
		Store:       kv,
		Verifier:    &pkibridge.Verifier{},
		Clients:     testClients(),
		PairwiseKey: []byte("pairwise-key-for-tests-0123456789abcdef"),
		TokenKey:    [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32},
		CookieKey:   []byte("cookie-key-for-tests-0123456789abcdef"),
		KEK:         testKEK,
	}
}

// newTestOP starts the provider on a loopback listener; the issuer is its
// URL, so that go-oidc can discover it.
func newTestOP(t testing.TB, kv store.KV, mutate func(*Options)) *testOP {
	t.Helper()
	fixtures(t)
	seedKeys(t, kv)
	ts := httptest.NewUnstartedServer(nil)
	issuer := "http://" + ts.Listener.Addr().String()
	o := testOptions(kv, issuer)
	if mutate != nil {
		mutate(&o)
	}
	s, err := New(context.Background(), o)
	if err != nil {
		ts.Close()
		t.Fatalf("New: %v", err)
	}
	ts.Config.Handler = s.Handler()
	ts.Start()
	t.Cleanup(ts.Close)
	return &testOP{t: t, s: s, ts: ts, issuer: issuer, kv: kv,
		hc: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (o *testOP) ctx() context.Context {
	return context.WithValue(context.Background(), oauth2.HTTPClient, o.ts.Client())
}

func (o *testOP) redirectFor(clientID string) string {
	for _, c := range o.s.opts.Clients {
		if c.ID == clientID {
			return c.RedirectURIs[0]
		}
	}
	o.t.Fatalf("no client %q", clientID)
	return ""
}

func (o *testOP) oauth(clientID string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: clientID, ClientSecret: testSecret, RedirectURL: o.redirectFor(clientID),
		Scopes: append([]string{"openid"}, scopes...),
		Endpoint: oauth2.Endpoint{AuthURL: o.issuer + authorizePath, TokenURL: o.issuer + tokenPath,
			AuthStyle: oauth2.AuthStyleInHeader},
	}
}

// get issues a GET without following redirects.
func (o *testOP) get(rawURL string, cookies ...*http.Cookie) *http.Response {
	o.t.Helper()
	if strings.HasPrefix(rawURL, "/") {
		rawURL = o.issuer + rawURL
	}
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		o.t.Fatal(err)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	res, err := o.hc.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	res.Body.Close()
	return res
}

func readBody(t testing.TB, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// startAuth sends the RP's /authorize request and returns the auth request
// ID from the login redirect.
func (o *testOP) startAuth(conf *oauth2.Config, verifier string, extra ...oauth2.AuthCodeOption) string {
	o.t.Helper()
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "n-1")}, extra...)
	res := o.get(conf.AuthCodeURL("st-1", opts...))
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "/login?id=") {
		o.t.Fatalf("authorize: %d %q", res.StatusCode, loc)
	}
	u, _ := url.Parse(loc)
	id := u.Query().Get("id")
	if c := bindCookie(o.s, res.Cookies()); c != nil {
		o.mu.Lock()
		if o.binds == nil {
			o.binds = map[string]*http.Cookie{}
		}
		o.binds[id] = c
		o.mu.Unlock()
	}
	return id
}

// finish plays the sign-in side: bind the browser, complete the request
// and hit the callback with the binding cookie. It returns the redirect
// to the RP.
func (o *testOP) finish(id, account string, granted []string) *url.URL {
	o.t.Helper()
	ctx := context.Background()
	// /authorize bound the request to the browser it answered; binding
	// it again to that browser changes nothing.
	cookie := o.bindingOf(id)
	if cookie == nil {
		cookie = &http.Cookie{Name: o.s.web.CookieName("bind"), Value: ids.Long()}
	}
	if err := o.s.requests.Bind(ctx, id, ids.Hash(cookie.Value)); err != nil {
		o.t.Fatal(err)
	}
	if err := completeRequest(o.s, id, authreq.Authentication{AccountID: account, ACR: "aal3", AMR: []string{"hwk", "pin"}}, granted); err != nil {
		o.t.Fatal(err)
	}
	res := o.get(authreq.CallbackURL(o.issuer, id), cookie)
	if res.StatusCode != http.StatusFound {
		o.t.Fatalf("callback: %d", res.StatusCode)
	}
	u, err := url.Parse(res.Header.Get("Location"))
	if err != nil {
		o.t.Fatal(err)
	}
	return u
}

// login runs authorize → sign-in → callback and returns the code.
func (o *testOP) login(conf *oauth2.Config, verifier, account string, granted []string, extra ...oauth2.AuthCodeOption) string {
	o.t.Helper()
	u := o.finish(o.startAuth(conf, verifier, extra...), account, granted)
	code := u.Query().Get("code")
	if code == "" || u.Query().Get("state") != "st-1" {
		o.t.Fatalf("callback redirect without code/state: %s", u.Redacted())
	}
	return code
}

// loginTokens runs a whole login and the code exchange.
func (o *testOP) loginTokens(conf *oauth2.Config, account string, granted []string) *oauth2.Token {
	o.t.Helper()
	v := oauth2.GenerateVerifier()
	code := o.login(conf, v, account, granted)
	tok, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(v))
	if err != nil {
		o.t.Fatalf("exchange: %v", err)
	}
	return tok
}

// postForm posts to a back-channel endpoint, with basic auth when
// clientID is given.
func (o *testOP) postForm(path string, form url.Values, clientID, secret string) (int, map[string]any) {
	o.t.Helper()
	req, err := http.NewRequest(http.MethodPost, o.issuer+path, strings.NewReader(form.Encode()))
	if err != nil {
		o.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if clientID != "" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	res, err := o.hc.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	body := readBody(o.t, res)
	var m map[string]any
	_ = json.Unmarshal([]byte(body), &m)
	if m == nil {
		m = map[string]any{"_raw": body}
	}
	return res.StatusCode, m
}

func (o *testOP) introspect(token, clientID string) map[string]any {
	o.t.Helper()
	code, m := o.postForm(introspectPath, url.Values{"token": {token}}, clientID, testSecret)
	if code != http.StatusOK {
		o.t.Fatalf("introspect: %d %v", code, m)
	}
	return m
}

// userinfo returns the status and JSON of /userinfo with a bearer token.
func (o *testOP) userinfo(token string) (int, map[string]any) {
	o.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, o.issuer+userinfoPath, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := o.hc.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	body := readBody(o.t, res)
	var m map[string]any
	_ = json.Unmarshal([]byte(body), &m)
	return res.StatusCode, m
}

func (o *testOP) refresh(clientID, rt string) (int, map[string]any) {
	o.t.Helper()
	return o.postForm(tokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, clientID, testSecret)
}

// The provider's endpoints, as an RP addresses them.
const (
	authorizePath  = "/authorize"
	callbackPath   = authreq.CallbackPath
	tokenPath      = "/oauth/token"
	introspectPath = "/oauth/introspect"
	userinfoPath   = "/userinfo"
	revokePath     = "/revoke"
	endSessionPath = "/end_session"
	keysPath       = "/keys"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// completeRequest records a finished sign-in on a request, as the consent
// step does: the pairwise subject for the request's client and what the
// granted claims may release of the request.
func completeRequest(s *Server, id string, a authreq.Authentication, granted []string) error {
	ctx := context.Background()
	ar, err := s.requests.Load(ctx, id)
	if err != nil {
		return err
	}
	c, err := s.clients.Get(ctx, ar.ClientID)
	if err != nil {
		return err
	}
	_, err = s.requests.Complete(ctx, id, authreq.Completion{
		Authentication: a,
		Subject:        s.clients.Subject(c, a.AccountID),
		Granted:        consent.Effective(&consent.Grant{Claims: granted}, ar.Requested),
	})
	return err
}

// redirectOf is a static client's first redirect URI.
func redirectOf(s *Server, clientID string) string {
	for _, c := range s.opts.Clients {
		if c.ID == clientID {
			return c.RedirectURIs[0]
		}
	}
	panic("no client " + clientID)
}
