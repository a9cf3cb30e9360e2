package whitelist_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/watashi-id/watashi/whitelist"
	"github.com/watashi-id/watashi/whitelist/whitelisttest"
)

func with(m map[string]any, kv ...any) map[string]any {
	out := maps.Clone(m)
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, k)
		} else {
			out[k] = kv[i+1]
		}
	}
	return out
}

func TestRegisterAndApprove(t *testing.T) {
	e := newEnv(t, whitelist.Backend{})
	ctx := context.Background()
	res := e.register(e.standard, webMeta(t, "rp.example"))
	if res.status != http.StatusCreated {
		t.Fatalf("register: %d %s", res.status, res.raw)
	}
	id := res.str("client_id")
	if id == "" || res.str("registration_access_token") == "" || res.str("registration_client_uri") != e.endpoint+"/"+id ||
		res.obj["client_id_issued_at"] == nil || res.str("status") != "pending" || res.str("tier") != "standard" {
		t.Fatalf("response %s", res.raw)
	}
	if _, ok := res.obj["client_secret"]; ok {
		t.Fatal("a private_key_jwt client got a secret")
	}
	if res.str("id_token_signed_response_alg") != "ES256" || res.str("application_type") != "web" ||
		!strings.Contains(res.str("scope"), "birthdate") {
		t.Fatalf("defaults not applied: %s", res.raw)
	}
	if res.header.Get("Cache-Control") != "no-store" {
		t.Fatal("registration response may be cached")
	}
	if _, err := e.r.Authorize(ctx, id); !errors.Is(err, whitelist.ErrPending) {
		t.Fatalf("pending client authorised: %v", err)
	}
	if _, err := e.r.Approve(ctx, id, operator); err != nil {
		t.Fatal(err)
	}
	c, err := e.r.Authorize(ctx, id)
	if err != nil || c.Sector != "rp.example" || c.RegisteredWith == "" || c.StatusChangedBy != operator.Actor {
		t.Fatalf("approved: %+v %v", c, err)
	}
	keys, err := c.PublicKeys()
	if err != nil || len(keys) != 1 {
		t.Fatalf("PublicKeys: %v %v", keys, err)
	}
	h, _ := e.r.History(ctx, id)
	if len(h) != 2 || h[0].Actor == "" || !strings.HasPrefix(h[0].Actor, "iat:") || h[0].Via != "registration" {
		t.Fatalf("history %+v", h)
	}
}

func TestRegisterBackchannelLogout(t *testing.T) {
	e := newEnv(t, whitelist.Backend{})
	ctx := context.Background()
	res := e.register(e.standard, with(webMeta(t, "rp.example"), "backchannel_logout_uri", "https://rp.example/bcl?tenant=1",
		"backchannel_logout_session_required", true))
	if res.status != http.StatusCreated {
		t.Fatalf("register: %d %s", res.status, res.raw)
	}
	if res.str("backchannel_logout_uri") != "https://rp.example/bcl?tenant=1" || res.obj["backchannel_logout_session_required"] != true {
		t.Fatalf("response %s", res.raw)
	}
	c, err := e.r.Get(ctx, res.str("client_id"))
	if err != nil || c.BackchannelLogoutURI != "https://rp.example/bcl?tenant=1" || !c.BackchannelLogoutSessionRequired {
		t.Fatalf("stored %+v %v", c, err)
	}
}

func TestRegisterSecretAutoApproved(t *testing.T) {
	e := newEnv(t, whitelist.Backend{})
	m := with(webMeta(t, "secret.example"), "token_endpoint_auth_method", "client_secret_basic", "jwks", nil,
		"grant_types", []string{"authorization_code", "refresh_token"}, "claims", []string{"name", "address"})
	res := e.register(e.auto, m)
	if res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.raw)
	}
	secret := res.str("client_secret")
	if secret == "" || res.obj["client_secret_expires_at"] != float64(0) || res.str("status") != "approved" {
		t.Fatalf("response %s", res.raw)
	}
	c, err := e.r.Authorize(context.Background(), res.str("client_id"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.VerifySecret(secret) || c.VerifySecret(secret+"x") || strings.Contains(c.SecretHash, secret) {
		t.Fatal("secret not verifiable or stored in the clear")
	}
	if got := c.FilterClaims([]string{"sub", "name", "birthdate", "address", "gender"}); strings.Join(got, ",") != "sub,name,address" {
		t.Fatalf("FilterClaims = %v", got)
	}
	// The secret is shown once: reads do not return it.
	get := e.do("GET", res.str("registration_client_uri"), res.str("registration_access_token"), "", nil)
	if get.status != 200 || get.str("client_secret") != "" || get.obj["client_secret_expires_at"] != float64(0) {
		t.Fatalf("GET %d %s", get.status, get.raw)
	}
	// What was read, PUT back, keeps exactly the registered access.
	up := e.do("PUT", res.str("registration_client_uri"), res.str("registration_access_token"), "application/json", get.raw)
	c2, _ := e.r.Get(context.Background(), res.str("client_id"))
	if up.status != 200 || strings.Join(c2.AllowedClaims, ",") != "name,address" || strings.Join(c2.AllowedScopes, " ") != strings.Join(c.AllowedScopes, " ") {
		t.Fatalf("echo PUT changed access: %d %s; %v %v", up.status, up.raw, c2.AllowedClaims, c2.AllowedScopes)
	}
}

func TestRegisterNativeApp(t *testing.T) {
	e := newEnv(t, whitelist.Backend{})
	m := map[string]any{
		"client_name": "Example App", "organization_name": "Example KK", "application_type": "native",
		"token_endpoint_auth_method": "none",
		"redirect_uris":              []string{"http://127.0.0.1/cb", "http://[::1]/cb", "com.example.app:/oauth2redirect"},
	}
	res := e.register(e.auto, m)
	if res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.raw)
	}
	c, err := e.r.Authorize(context.Background(), res.str("client_id"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Sector != "client:"+c.ID || !c.IsPublic() {
		t.Fatalf("native sector %q", c.Sector)
	}
	for uri, want := range map[string]bool{
		"http://127.0.0.1:51234/cb":       true, // any port, RFC 8252 §7.3
		"http://[::1]:8080/cb":            true,
		"http://127.0.0.1:51234/other":    false,
		"http://localhost:51234/cb":       false,
		"com.example.app:/oauth2redirect": true,
		"com.example.app:/other":          false,
		"http://127.0.0.1:5/cb#frag":      false,
	} {
		if got := c.RedirectAllowed(uri); got != want {
			t.Errorf("RedirectAllowed(%q) = %v", uri, got)
		}
	}
}

func TestRegisterWebExactRedirect(t *testing.T) {
	e := newEnv(t, whitelist.Backend{})
	res := e.register(e.auto, webMeta(t, "exact.example"))
	c, err := e.r.Authorize(context.Background(), res.str("client_id"))
	if err != nil {
		t.Fatal(err)
	}
	for uri, want := range map[string]bool{
		"https://exact.example/cb":      true,
		"https://exact.example/cb/":     false,
		"https://exact.example:443/cb":  false,
		"https://exact.example/cb?x=1":  false,
		"https://EXACT.example/cb":      false,
		"http://exact.example/cb":       false,
		"https://exact.example.evil/cb": false,
	} {
		if got := c.RedirectAllowed(uri); got != want {
			t.Errorf("RedirectAllowed(%q) = %v", uri, got)
		}
	}
}

func TestSectorIdentifier(t *testing.T) {
	e := newEnv(t, whitelist.Backend{})
	a, b, c := "https://a.rp.example/cb", "https://b.rp.example/cb", "https://c.rp.example/cb"
	e.sector.set(a, b)
	m := with(webMeta(t, "a.rp.example"), "redirect_uris", []string{a, b}, "sector_identifier_uri", e.sector.uri())
	res := e.register(e.auto, m)
	if res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.raw)
	}
	id, rat, uri := res.str("client_id"), res.str("registration_access_token"), res.str("registration_client_uri")
	cl, _ := e.r.Get(context.Background(), id)
	if cl.Sector != "127.0.0.1" {
		t.Fatalf("sector %q, want the sector_identifier_uri host", cl.Sector)
	}
	// A new redirect host must be in the document: the sector is re-checked.
	put := with(m, "client_id", id, "redirect_uris", []string{a, b, c})
	up := e.do("PUT", uri, rat, "application/json", body(t, put))
	if up.status != 400 || up.str("error") != "invalid_client_metadata" || !strings.Contains(up.str("error_description"), "c.rp.example") {
		t.Fatalf("PUT with an unlisted host: %d %s", up.status, up.raw)
	}
	e.sector.set(a, b, c)
	up = e.do("PUT", uri, rat, "application/json", body(t, put))
	if up.status != 200 || len(up.obj["redirect_uris"].([]any)) != 3 {
		t.Fatalf("PUT after listing the host: %d %s", up.status, up.raw)
	}
	// Dropping the sector_identifier_uri would move the sector to the
	// redirect host: refused, since every sub would change.
	up = e.do("PUT", uri, rat, "application/json", body(t, with(put, "sector_identifier_uri", nil, "redirect_uris", []string{a})))
	if up.status != 400 || up.str("error") != "invalid_redirect_uri" || !strings.Contains(up.str("error_description"), "sector") {
		t.Fatalf("PUT moving the sector: %d %s", up.status, up.raw)
	}
	// Redirects are not followed.
	res = e.register(e.auto, with(m, "sector_identifier_uri", e.sector.URL+"/redirect"))
	if res.status != 400 || !strings.Contains(res.str("error_description"), "HTTP 302") {
		t.Fatalf("redirected sector document: %d %s", res.status, res.raw)
	}
}

func TestSoftwareStatement(t *testing.T) {
	e := newEnv(t, whitelist.Backend{})
	now := e.clock.Now()
	stmt := e.issuer.sign(t, map[string]any{
		"software_id": "vetted-app", "client_name": "Vetted Name", "organization_name": "Vetted KK",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	m := with(webMeta(t, "ss.example"), "client_name", "Self-declared Name", "software_statement", stmt)
	res := e.register(e.standard, m)
	if res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.raw)
	}
	if res.str("client_name") != "Vetted Name" || res.str("software_id") != "vetted-app" || res.str("organization_name") != "Vetted KK" {
		t.Fatalf("statement claims did not take precedence: %s", res.raw)
	}
	c, _ := e.r.Get(context.Background(), res.str("client_id"))
	if c.SoftwareStatementIssuer != "https://federation.example" {
		t.Fatalf("issuer not recorded: %q", c.SoftwareStatementIssuer)
	}
}

func TestManagement(t *testing.T) {
	e := newEnv(t, whitelist.Backend{})
	ctx := context.Background()
	res := e.register(e.standard, webMeta(t, "m.example"))
	other := e.register(e.standard, webMeta(t, "other.example"))
	id, rat, uri := res.str("client_id"), res.str("registration_access_token"), res.str("registration_client_uri")

	cases := []struct {
		name, method, path, token string
		want                      int
	}{
		{"no token", "GET", uri, "", 401},
		{"wrong token", "GET", uri, rat + "x", 401},
		{"another client's token", "GET", uri, other.str("registration_access_token"), 401},
		{"unknown client", "GET", e.endpoint + "/nobody", rat, 401},
		{"initial access token", "GET", uri, e.standard, 401},
		{"nested path", "GET", uri + "/x", rat, 404},
		{"bad method", "PATCH", uri, rat, 405},
		{"GET on collection", "GET", e.endpoint, e.standard, 405},
	}
	for _, tc := range cases {
		if r := e.do(tc.method, tc.path, tc.token, "", nil); r.status != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.raw, tc.want)
		} else if tc.want == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: no WWW-Authenticate", tc.name)
		}
	}

	get := e.do("GET", uri, rat, "", nil)
	if get.status != 200 || get.str("client_id") != id || get.str("registration_access_token") != "" {
		t.Fatalf("GET: %d %s", get.status, get.raw)
	}
	// PUT what was read, changed: read-only fields are ignored.
	var put map[string]any
	json.Unmarshal(get.raw, &put)
	put["client_name"] = "Renamed RP"
	up := e.do("PUT", uri, rat, "application/json", body(t, put))
	if up.status != 200 || up.str("client_name") != "Renamed RP" {
		t.Fatalf("PUT: %d %s", up.status, up.raw)
	}
	for name, bad := range map[string]map[string]any{
		"no client_id":         with(put, "client_id", nil),
		"other client_id":      with(put, "client_id", other.str("client_id")),
		"new host":             with(put, "redirect_uris", []string{"https://elsewhere.example/cb"}),
		"invalid metadata":     with(put, "redirect_uris", []string{"https://m.example/cb#x"}),
		"wrong client_secret":  with(put, "client_secret", "guess"),
		"refresh on basic..":   with(put, "grant_types", []string{"authorization_code", "implicit"}),
		"scope outside tier":   with(put, "scope", "openid address"),
		"statement untrusted":  with(put, "software_statement", newIssuer(t, "https://rogue.example").sign(t, map[string]any{})),
		"jwks private to none": with(put, "token_endpoint_auth_method", "none"),
	} {
		before, _ := e.r.Get(ctx, id)
		r := e.do("PUT", uri, rat, "application/json", body(t, bad))
		after, _ := e.r.Get(ctx, id)
		if r.status != 400 || r.str("error") == "" || r.str("error_description") == "" {
			t.Errorf("PUT %s: %d %s", name, r.status, r.raw)
		}
		if !after.UpdatedAt.Equal(before.UpdatedAt) || after.ClientName != before.ClientName {
			t.Errorf("PUT %s: refused update changed the record", name)
		}
	}
	// Switching to client_secret_basic issues a secret, once.
	up = e.do("PUT", uri, rat, "application/json", body(t, with(put, "token_endpoint_auth_method", "client_secret_basic", "jwks", nil)))
	if up.status != 200 || up.str("client_secret") == "" {
		t.Fatalf("PUT to client_secret_basic: %d %s", up.status, up.raw)
	}
	c, _ := e.r.Get(ctx, id)
	if !c.VerifySecret(up.str("client_secret")) {
		t.Fatal("new secret does not verify")
	}
	h, _ := e.r.History(ctx, id)
	if h[len(h)-1].Action != whitelist.ActionUpdate || h[len(h)-1].Actor != "client:"+id {
		t.Fatalf("update not audited: %+v", h[len(h)-1])
	}

	// A revoked client can read but not update itself.
	if _, err := e.r.Revoke(ctx, other.str("client_id"), operator); err != nil {
		t.Fatal(err)
	}
	orat, ouri := other.str("registration_access_token"), other.str("registration_client_uri")
	if r := e.do("GET", ouri, orat, "", nil); r.status != 200 || r.str("status") != "revoked" {
		t.Fatalf("GET revoked: %d %s", r.status, r.raw)
	}
	if r := e.do("PUT", ouri, orat, "application/json", body(t, with(webMeta(t, "other.example"), "client_id", other.str("client_id")))); r.status != 400 {
		t.Fatalf("PUT revoked: %d %s", r.status, r.raw)
	}

	if r := e.do("DELETE", uri, rat, "", nil); r.status != 204 {
		t.Fatalf("DELETE: %d %s", r.status, r.raw)
	}
	if r := e.do("GET", uri, rat, "", nil); r.status != 401 {
		t.Fatalf("GET after DELETE: %d", r.status)
	}
	if _, err := e.r.Authorize(ctx, id); !errors.Is(err, whitelist.ErrUnknownClient) {
		t.Fatalf("deleted client: %v", err)
	}
	h, _ = e.r.History(ctx, id)
	if h[len(h)-1].Action != whitelist.ActionDelete {
		t.Fatalf("delete not audited")
	}
}

// Of concurrent registrations with one one-time token exactly one wins.
func TestOneTimeTokenRace(t *testing.T) {
	e := newEnv(t, whitelist.Backend{})
	var wg sync.WaitGroup
	statuses := make([]int, 6)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = e.register(e.oneTime, webMeta(t, fmt.Sprintf("race%d.example", i))).status
		}()
	}
	wg.Wait()
	won := 0
	for _, s := range statuses {
		switch s {
		case 201:
			won++
		case 401:
		default:
			t.Errorf("status %d", s)
		}
	}
	if won != 1 {
		t.Fatalf("%d registrations won with a one-time token: %v", won, statuses)
	}
}

func noneJWT(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc([]byte(claims)) + "."
}

func hsJWT(t *testing.T, claims map[string]any) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jws, _ := s.Sign(body(t, claims))
	out, _ := jws.CompactSerialize()
	return out
}

func privateJWKS(t *testing.T) json.RawMessage {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return body(t, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k, KeyID: "p", Use: "sig"}}})
}

// TestNegativeCatalogue is every way a registration can be wrong. Each
// must be refused with the right RFC 7591 code and a message that names
// what to fix, must not create a client and must not use up the
// one-time token.
func TestNegativeCatalogue(t *testing.T) {
	e := newEnv(t, whitelist.Backend{})
	ctx := context.Background()
	before, _ := e.r.List(ctx)
	base := webMeta(t, "neg.example")
	now := e.clock.Now()
	uris := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("https://neg.example/cb%d", i)
		}
		return out
	}
	e.sector.set("https://a.neg.example/cb")
	native := with(base, "application_type", "native", "token_endpoint_auth_method", "none", "jwks", nil)
	secretBasic := with(base, "token_endpoint_auth_method", "client_secret_basic", "jwks", nil)
	type tc struct {
		name   string
		token  string // default: the one-time token
		ctype  string // default: application/json
		raw    []byte // default: JSON of meta
		meta   map[string]any
		status int
		code   string
		says   string // the description must contain this
	}
	cases := []tc{
		{name: "fragment in redirect URI", meta: with(base, "redirect_uris", []string{"https://neg.example/cb#top"}), code: "invalid_redirect_uri", says: "fragment"},
		{name: "http outside dev", meta: with(base, "redirect_uris", []string{"http://neg.example/cb"}), code: "invalid_redirect_uri", says: "https"},
		{name: "wildcard", meta: with(base, "redirect_uris", []string{"https://*.neg.example/cb"}), code: "invalid_redirect_uri", says: "wildcard"},
		{name: "relative URI", meta: with(base, "redirect_uris", []string{"/cb"}), code: "invalid_redirect_uri", says: "absolute"},
		{name: "javascript redirect", meta: with(base, "redirect_uris", []string{"javascript:alert(1)"}), code: "invalid_redirect_uri", says: "javascript"},
		{name: "userinfo in redirect", meta: with(base, "redirect_uris", []string{"https://user:pw@neg.example/cb"}), code: "invalid_redirect_uri", says: "user information"},
		{name: "duplicate redirect", meta: with(base, "redirect_uris", []string{"https://neg.example/cb", "https://neg.example/cb"}), code: "invalid_redirect_uri", says: "twice"},
		{name: "no redirect URIs", meta: with(base, "redirect_uris", nil), code: "invalid_redirect_uri", says: "at least one"},
		{name: "redirect_uris not an array", meta: with(base, "redirect_uris", "https://neg.example/cb"), code: "invalid_redirect_uri", says: "array of strings"},
		{name: "private-use scheme on web", meta: with(base, "redirect_uris", []string{"com.example.app:/cb"}), code: "invalid_redirect_uri", says: "native"},
		{name: "private-use scheme without a dot", meta: with(native, "redirect_uris", []string{"myapp:/cb"}), code: "invalid_redirect_uri", says: "reverse domain"},
		{name: "native localhost", meta: with(native, "redirect_uris", []string{"http://localhost:8080/cb"}), code: "invalid_redirect_uri", says: "127.0.0.1"},
		{name: "native http non-loopback", meta: with(native, "redirect_uris", []string{"http://neg.example/cb"}), code: "invalid_redirect_uri", says: "loopback"},
		{name: "more than 20 redirect URIs", meta: with(base, "redirect_uris", uris(21)), code: "invalid_redirect_uri", says: "at most 20"},
		{name: "multiple hosts without sector_identifier_uri", meta: with(base, "redirect_uris", []string{"https://a.neg.example/cb", "https://b.neg.example/cb"}), code: "invalid_redirect_uri", says: "sector_identifier_uri"},
		{name: "sector document does not list a redirect URI", meta: with(base, "redirect_uris", []string{"https://a.neg.example/cb", "https://b.neg.example/cb"}, "sector_identifier_uri", e.sector.uri()), code: "invalid_client_metadata", says: "b.neg.example"},
		{name: "sector document missing", meta: with(base, "sector_identifier_uri", e.sector.URL+"/nothing"), code: "invalid_client_metadata", says: "HTTP 404"},
		{name: "sector_identifier_uri over http", meta: with(base, "sector_identifier_uri", "http://neg.example/sector.json"), code: "invalid_client_metadata", says: "https"},
		{name: "unknown grant type", meta: with(base, "grant_types", []string{"authorization_code", "implicit"}), code: "invalid_client_metadata", says: "implicit"},
		{name: "grant types without authorization_code", meta: with(base, "grant_types", []string{"refresh_token"}), code: "invalid_client_metadata", says: "authorization_code"},
		{name: "refresh_token outside tier", token: e.basic, meta: with(base, "grant_types", []string{"authorization_code", "refresh_token"}), code: "invalid_client_metadata", says: "offline_access"},
		{name: "response type token", meta: with(base, "response_types", []string{"code", "token"}), code: "invalid_client_metadata", says: "authorization code flow"},
		{name: "none auth on a web app", meta: with(base, "token_endpoint_auth_method", "none", "jwks", nil), code: "invalid_client_metadata", says: "native"},
		{name: "client_secret_post", meta: with(secretBasic, "token_endpoint_auth_method", "client_secret_post"), code: "invalid_client_metadata", says: "private_key_jwt"},
		{name: "private_key_jwt without keys", meta: with(base, "jwks", nil), code: "invalid_client_metadata", says: "jwks_uri"},
		{name: "both jwks and jwks_uri", meta: with(base, "jwks_uri", "https://neg.example/jwks.json"), code: "invalid_client_metadata", says: "both"},
		{name: "jwks with a private key", meta: with(base, "jwks", privateJWKS(t)), code: "invalid_client_metadata", says: "private key material"},
		{name: "jwks with a symmetric key", meta: with(base, "jwks", json.RawMessage(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)), code: "invalid_client_metadata", says: "symmetric"},
		{name: "jwks not a key set", meta: with(base, "jwks", []string{"x"}), code: "invalid_client_metadata", says: "Key Set"},
		{name: "jwks_uri over http", meta: with(base, "jwks", nil, "jwks_uri", "http://neg.example/jwks.json"), code: "invalid_client_metadata", says: "https"},
		{name: "client_name too long", meta: with(base, "client_name", strings.Repeat("あ", 201)), code: "invalid_client_metadata", says: "200"},
		{name: "client_name missing", meta: with(base, "client_name", nil), code: "invalid_client_metadata", says: "client_name"},
		{name: "organization_name missing", meta: with(base, "organization_name", nil), code: "invalid_client_metadata", says: "organization_name"},
		{name: "client_name with control characters", meta: with(base, "client_name", "RP\u0000"), code: "invalid_client_metadata", says: "control"},
		{name: "scope outside tier", token: e.basic, meta: with(base, "scope", "openid name birthdate"), code: "invalid_client_metadata", says: "tier \"basic\""},
		{name: "unknown scope", meta: with(base, "scope", "openid email"), code: "invalid_client_metadata", says: "not a scope"},
		{name: "scope without openid", meta: with(base, "scope", "name"), code: "invalid_client_metadata", says: "openid"},
		{name: "unknown claim", meta: with(base, "claims", []string{"name", "my_number"}), code: "invalid_client_metadata", says: "my_number"},
		{name: "claim outside tier", meta: with(base, "claims", []string{"address"}), code: "invalid_client_metadata", says: "tier \"standard\""},
		{name: "id_token alg none", meta: with(base, "id_token_signed_response_alg", "none"), code: "invalid_client_metadata", says: "unsigned"},
		{name: "id_token alg HS256", meta: with(base, "id_token_signed_response_alg", "HS256"), code: "invalid_client_metadata", says: "symmetric"},
		{name: "logo_uri javascript", meta: with(base, "logo_uri", "javascript:alert(1)"), code: "invalid_client_metadata", says: "https"},
		{name: "logo_uri data", meta: with(base, "logo_uri", "data:image/png;base64,AAAA"), code: "invalid_client_metadata", says: "https"},
		{name: "policy_uri over http", meta: with(base, "policy_uri", "http://neg.example/privacy"), code: "invalid_client_metadata", says: "https"},
		{name: "tos_uri with userinfo", meta: with(base, "tos_uri", "https://u@neg.example/tos"), code: "invalid_client_metadata", says: "user information"},
		{name: "backchannel_logout_uri over http", meta: with(base, "backchannel_logout_uri", "http://neg.example/bcl"), code: "invalid_client_metadata", says: "https"},
		{name: "backchannel_logout_uri with fragment", meta: with(base, "backchannel_logout_uri", "https://neg.example/bcl#x"), code: "invalid_client_metadata", says: "fragment"},
		{name: "backchannel_logout_uri relative", meta: with(base, "backchannel_logout_uri", "/bcl"), code: "invalid_client_metadata", says: "absolute"},
		{name: "backchannel_logout_uri too long", meta: with(base, "backchannel_logout_uri", "https://neg.example/"+strings.Repeat("a", 2000)), code: "invalid_client_metadata", says: "longer"},
		{name: "backchannel_logout_uri not a string", meta: with(base, "backchannel_logout_uri", 7), code: "invalid_client_metadata", says: "a string"},
		{name: "backchannel_logout_session_required not a boolean", meta: with(base, "backchannel_logout_uri", "https://neg.example/bcl", "backchannel_logout_session_required", "yes"), code: "invalid_client_metadata", says: "boolean"},
		{name: "backchannel_logout_session_required without a URI", meta: with(base, "backchannel_logout_session_required", true), code: "invalid_client_metadata", says: "backchannel_logout_uri"},
		{name: "contacts not e-mail", meta: with(base, "contacts", []string{"call us"}), code: "invalid_client_metadata", says: "e-mail"},
		{name: "unknown application_type", meta: with(base, "application_type", "spa"), code: "invalid_client_metadata", says: "native"},
		{name: "non-JSON body", raw: []byte("client_name=x"), code: "invalid_client_metadata", says: "JSON object"},
		{name: "JSON array body", raw: []byte(`[{"client_name":"x"}]`), code: "invalid_client_metadata", says: "JSON object"},
		{name: "trailing data", raw: []byte(`{"client_name":"x"} {}`), code: "invalid_client_metadata", says: "after"},
		{name: "wrong content type", ctype: "application/x-www-form-urlencoded", status: 415, code: "invalid_client_metadata", says: "application/json"},
		{name: "body over 64 KiB", meta: with(base, "software_version", strings.Repeat("x", 70<<10)), status: 413, code: "invalid_client_metadata", says: "larger"},
		{name: "no initial access token", token: "-", status: 401, code: "invalid_token", says: "initial access token"},
		{name: "unknown initial access token", token: "iat_0123456789abcdef.nope", status: 401, code: "invalid_token", says: "not valid"},
		{name: "wrong secret of a real token", token: e.standard + "x", status: 401, code: "invalid_token", says: "not valid"},
		{name: "expired initial access token", token: e.expired, status: 401, code: "invalid_token", says: "expired"},
		{name: "used one-time initial access token", token: e.used, status: 401, code: "invalid_token", says: "used"},
		{name: "revoked initial access token", token: e.revoked, status: 401, code: "invalid_token", says: "revoked"},
		{name: "software statement with a bad signature", meta: with(base, "software_statement", newIssuer(t, "https://federation.example").sign(t, map[string]any{"client_name": "x"})), code: "invalid_software_statement", says: "signature"},
		{name: "software statement alg none", meta: with(base, "software_statement", noneJWT(`{"iss":"https://federation.example"}`)), code: "invalid_software_statement", says: "ES256"},
		{name: "software statement HS256", meta: with(base, "software_statement", hsJWT(t, map[string]any{"iss": "https://federation.example"})), code: "invalid_software_statement", says: "HMAC"},
		{name: "software statement expired", meta: with(base, "software_statement", e.issuer.sign(t, map[string]any{"exp": now.Add(-time.Hour).Unix()})), code: "invalid_software_statement", says: "expired"},
		{name: "software statement from the future", meta: with(base, "software_statement", e.issuer.sign(t, map[string]any{"iat": now.Add(time.Hour).Unix()})), code: "invalid_software_statement", says: "future"},
		{name: "software statement untrusted issuer", meta: with(base, "software_statement", newIssuer(t, "https://rogue.example").sign(t, map[string]any{})), code: "unapproved_software_statement", says: "rogue.example"},
		{name: "software statement not a string", meta: with(base, "software_statement", 42), code: "invalid_software_statement", says: "JWT"},
		{name: "software statement making metadata invalid", meta: with(base, "software_statement", e.issuer.sign(t, map[string]any{"redirect_uris": []string{"http://neg.example/cb"}})), code: "invalid_redirect_uri", says: "https"},
	}
	if len(cases) < 25 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := c.token
			switch tok {
			case "":
				tok = e.oneTime
			case "-":
				tok = ""
			}
			ctype := c.ctype
			if ctype == "" {
				ctype = "application/json"
			}
			raw := c.raw
			if raw == nil {
				m := c.meta
				if m == nil {
					m = base
				}
				raw = body(t, m)
			}
			res := e.do("POST", "/register", tok, ctype, raw)
			want := c.status
			if want == 0 {
				want = 400
			}
			if res.status != want || res.str("error") != c.code {
				t.Fatalf("got %d %s, want %d %s", res.status, res.raw, want, c.code)
			}
			t.Logf("%d %s: %s", res.status, res.str("error"), res.str("error_description"))
			if d := res.str("error_description"); !strings.Contains(d, c.says) {
				t.Fatalf("description %q does not say %q", d, c.says)
			}
		})
	}
	after, _ := e.r.List(ctx)
	if len(after) != len(before) {
		t.Fatalf("refused registrations created %d clients", len(after)-len(before))
	}
	if res := e.register(e.oneTime, base); res.status != 201 {
		t.Fatalf("the one-time token was used up by refused requests: %d %s", res.status, res.raw)
	}
}

// The default fetcher refuses loopback and private addresses outside
// development: a registration must not make Watashi probe the
// operator's own network.
func TestSectorFetchRefusesPrivateAddresses(t *testing.T) {
	s := newSectorServer(t)
	s.set("https://a.ssrf.example/cb", "https://b.ssrf.example/cb")
	r := newNode(t, memoryBackend(t)) // no Fetcher: the default, guarded one
	m := whitelisttest.WebMetadata(t, "a.ssrf.example")
	m.RedirectURIs = []string{"https://a.ssrf.example/cb", "https://b.ssrf.example/cb"}
	m.SectorIdentifierURI = s.uri()
	_, err := r.Add(context.Background(), whitelist.AddRequest{Metadata: m, Tier: whitelist.TierBasic, Change: operator})
	if whitelist.CodeOf(err) != whitelist.CodeInvalidClientMetadata || !strings.Contains(err.Error(), "loopback, private") {
		t.Fatalf("sector document on 127.0.0.1 fetched: %v", err)
	}
	if list, _ := r.List(context.Background()); len(list) != 0 {
		t.Fatal("client created")
	}
}
