package whitelist_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/whitelist"
	"github.com/watashi-id/watashi/whitelist/whitelisttest"
)

var operator = whitelist.Change{Actor: "test-operator", Via: "test", Reason: "test"}

// sectorServer is an integrator's https server publishing a sector
// identifier document that the test can change.
type sectorServer struct {
	*httptest.Server
	mu   sync.Mutex
	list []string
	code int
	body []byte
}

func newSectorServer(t *testing.T) *sectorServer {
	s := &sectorServer{code: http.StatusOK}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch r.URL.Path {
		case "/sector.json":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(s.code)
			if s.body != nil {
				w.Write(s.body)
				return
			}
			json.NewEncoder(w).Encode(s.list)
		case "/redirect":
			http.Redirect(w, r, "/sector.json", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *sectorServer) set(list ...string) {
	s.mu.Lock()
	s.list, s.code, s.body = list, http.StatusOK, nil
	s.mu.Unlock()
}

func (s *sectorServer) uri() string { return s.URL + "/sector.json" }

// fetcher reaches this server: the guarded Fetcher with loopback exempted
// and the test CA trusted, as an operator with an internal integrator
// would configure it.
func (s *sectorServer) fetcher() *whitelist.Fetcher {
	return whitelist.NewFetcher(whitelist.FetcherOptions{
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		TLS:   s.Client().Transport.(*http.Transport).TLSClientConfig,
	})
}

// issuer signs software statements.
type issuer struct {
	name string
	key  *ecdsa.PrivateKey
}

func newIssuer(t testing.TB, name string) *issuer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &issuer{name: name, key: k}
}

func (i *issuer) trusted() whitelist.TrustedIssuer {
	return whitelist.TrustedIssuer{Issuer: i.name, Keys: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &i.key.PublicKey, KeyID: "ss1", Algorithm: "ES256", Use: "sig"}}}}
}

func (i *issuer) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	if _, ok := claims["iss"]; !ok {
		claims["iss"] = i.name
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: i.key, KeyID: "ss1"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := json.Marshal(claims)
	jws, err := s.Sign(p)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// env is a registry with its registration endpoint over TLS.
type env struct {
	t        *testing.T
	r        *whitelist.Registry
	clock    *whitelisttest.Clock
	srv      *httptest.Server
	sector   *sectorServer
	issuer   *issuer
	endpoint string
	// tokens by purpose
	standard, basic, auto, oneTime, expired, used, revoked string
}

func newEnv(t *testing.T, kv whitelist.Backend) *env {
	t.Helper()
	e := &env{t: t, clock: whitelisttest.NewClock(), sector: newSectorServer(t), issuer: newIssuer(t, "https://federation.example")}
	if kv.Store == nil {
		kv = whitelist.KVBackend(store.NewMemory(), store.ErrNotFound)
	}
	r, err := whitelist.New(whitelist.Options{Backend: kv, Now: e.clock.Now, Fetcher: e.sector.fetcher()})
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	mux := http.NewServeMux()
	e.srv = httptest.NewUnstartedServer(mux)
	e.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	e.endpoint = e.srv.URL + "/register"
	h, err := r.RegistrationHandler(whitelist.RegistrationOptions{Endpoint: e.endpoint, TrustedIssuers: []whitelist.TrustedIssuer{e.issuer.trusted()}})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/register", h)
	mux.Handle("/register/", h)

	ctx := context.Background()
	issue := func(req whitelist.TokenRequest) string {
		req.Change = operator
		tok, _, err := r.IssueToken(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	e.standard = issue(whitelist.TokenRequest{Tier: whitelist.TierStandard, TTL: 24 * time.Hour})
	e.basic = issue(whitelist.TokenRequest{Tier: whitelist.TierBasic, TTL: 24 * time.Hour})
	e.auto = issue(whitelist.TokenRequest{Tier: whitelist.TierFull, TTL: 24 * time.Hour, AutoApprove: true})
	e.oneTime = issue(whitelist.TokenRequest{Tier: whitelist.TierStandard, TTL: 24 * time.Hour, OneTime: true})
	e.expired = issue(whitelist.TokenRequest{Tier: whitelist.TierStandard, TTL: time.Minute})
	e.used = issue(whitelist.TokenRequest{Tier: whitelist.TierStandard, TTL: 24 * time.Hour, OneTime: true})
	e.revoked = issue(whitelist.TokenRequest{Tier: whitelist.TierStandard, TTL: 24 * time.Hour})
	id, _, _ := bytes.Cut([]byte(e.revoked), []byte("."))
	if _, err := r.RevokeToken(ctx, string(id), operator); err != nil {
		t.Fatal(err)
	}
	if res := e.do("POST", "/register", e.used, "application/json", body(t, webMeta(t, "used.example"))); res.status != 201 {
		t.Fatalf("using the one-time token: %d %s", res.status, res.raw)
	}
	e.clock.Advance(2 * time.Minute) // expires e.expired
	return e
}

type response struct {
	status int
	header http.Header
	raw    []byte
	obj    map[string]any
}

func (r response) str(k string) string { s, _ := r.obj[k].(string); return s }

func (e *env) do(method, path, token, ctype string, b []byte) response {
	e.t.Helper()
	url := path
	if len(path) > 0 && path[0] == '/' {
		url = e.srv.URL + path
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(res.Body)
	out := response{status: res.StatusCode, header: res.Header, raw: buf.Bytes()}
	if buf.Len() > 0 {
		if err := json.Unmarshal(buf.Bytes(), &out.obj); err != nil {
			e.t.Fatalf("%s %s: response is not a JSON object: %q", method, path, buf.String())
		}
	}
	return out
}

func (e *env) register(token string, m map[string]any) response {
	e.t.Helper()
	return e.do("POST", "/register", token, "application/json", body(e.t, m))
}

func body(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// webMeta is valid request metadata for a private_key_jwt web client.
func webMeta(t testing.TB, host string) map[string]any {
	return map[string]any{
		"client_name":                "RP " + host,
		"organization_name":          "Example KK",
		"redirect_uris":              []string{"https://" + host + "/cb"},
		"token_endpoint_auth_method": "private_key_jwt",
		"jwks":                       json.RawMessage(whitelisttest.JWKS(t)),
		"contacts":                   []string{"ops@" + host},
	}
}
