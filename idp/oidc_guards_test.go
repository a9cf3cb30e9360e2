package idp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/store"
)

// Hardening the library leaves to us: methods, where secrets may travel,
// grants we do not offer, caching and the public health endpoints.
func TestBackChannelGuards(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	tok := o.loginTokens(o.oauth("web"), testAccount, nil)
	do := func(method, path, body string, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest(method, o.issuer+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := o.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	basic := map[string]string{"Authorization": "Basic " + basicAuth("web", testSecret)}
	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		errCode                  string
	}{
		{"GET token", http.MethodGet, tokenPath + "?grant_type=authorization_code&code=x", "", nil, http.StatusMethodNotAllowed, ""},
		{"GET introspect", http.MethodGet, introspectPath + "?token=x", "", basic, http.StatusMethodNotAllowed, ""},
		{"GET revoke", http.MethodGet, revokePath + "?token=x", "", basic, http.StatusMethodNotAllowed, ""},
		{"query on token", http.MethodPost, tokenPath + "?code=x", "grant_type=authorization_code", basic, http.StatusBadRequest, "invalid_request"},
		{"secret in body", http.MethodPost, tokenPath, "grant_type=authorization_code&code=x&client_id=web&client_secret=" + url.QueryEscape(testSecret), nil, http.StatusUnauthorized, "invalid_client"},
		{"secret in body at revoke", http.MethodPost, revokePath, "token=x&client_id=web&client_secret=" + url.QueryEscape(testSecret), nil, http.StatusUnauthorized, "invalid_client"},
		{"jwt-bearer grant", http.MethodPost, tokenPath, "grant_type=" + url.QueryEscape(string(oidc.GrantTypeBearer)) + "&assertion=x", basic, http.StatusBadRequest, "unsupported_grant_type"},
		{"client_credentials", http.MethodPost, tokenPath, "grant_type=client_credentials", basic, http.StatusBadRequest, "unsupported_grant_type"},
		{"no grant", http.MethodPost, tokenPath, "code=x", basic, http.StatusBadRequest, "invalid_request"},
		{"repeated parameter", http.MethodPost, tokenPath, "grant_type=authorization_code&code=x&code=y&redirect_uri=x", basic, http.StatusBadRequest, "invalid_request"},
		{"secret in body and header", http.MethodPost, tokenPath, "grant_type=authorization_code&code=x&client_secret=x", basic, http.StatusUnauthorized, "invalid_client"},
		{"Bearer at the token endpoint", http.MethodPost, tokenPath, "grant_type=authorization_code&code=x", map[string]string{"Authorization": "Bearer x"}, http.StatusUnauthorized, "invalid_client"},
		{"userinfo token in query", http.MethodGet, userinfoPath + "?access_token=" + url.QueryEscape(tok.AccessToken), "", nil, http.StatusBadRequest, "invalid_request"},
		{"library healthz", http.MethodGet, "/healthz", "", nil, http.StatusNotFound, ""},
		{"library ready", http.MethodGet, "/ready", "", nil, http.StatusNotFound, ""},
		{"device authorization", http.MethodPost, "/device_authorization", "client_id=web", nil, http.StatusNotFound, ""},
		{"discovery POST", http.MethodPost, oidc.DiscoveryEndpoint, "", nil, http.StatusMethodNotAllowed, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := do(tc.method, tc.path, tc.body, tc.hdr)
			body := readBody(t, res)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.status, body)
			}
			if tc.errCode != "" {
				var e struct {
					Error string `json:"error"`
				}
				if json.Unmarshal([]byte(body), &e) != nil || e.Error != tc.errCode {
					t.Fatalf("error %q, want %q: %s", e.Error, tc.errCode, body)
				}
			}
		})
	}
	// Token material is never cached.
	for _, path := range []string{tokenPath, introspectPath, userinfoPath} {
		var res *http.Response
		if path == userinfoPath {
			res = do(http.MethodGet, path, "", map[string]string{"Authorization": "Bearer " + tok.AccessToken})
		} else {
			res = do(http.MethodPost, path, "token=x&grant_type=refresh_token&refresh_token=x", basic)
		}
		res.Body.Close()
		if res.Header.Get("Cache-Control") != "no-store" || res.Header.Get("Pragma") != "no-cache" {
			t.Errorf("%s: Cache-Control %q", path, res.Header.Get("Cache-Control"))
		}
	}
}

func basicAuth(id, secret string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// CORS: metadata for anyone, token endpoints for configured origins only,
// never with credentials.
func TestCORS(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), func(o *Options) { o.AllowedOrigins = []string{"https://spa.example"} })
	tests := []struct {
		path, origin string
		allowed      bool
	}{
		{tokenPath, "https://spa.example", true},
		{tokenPath, "https://evil.example", false},
		{userinfoPath, "https://spa.example", true},
		{revokePath, "https://spa.example", true},
		{introspectPath, "https://spa.example", false},
		{authorizePath, "https://spa.example", false},
		{endSessionPath, "https://spa.example", false},
		{oidc.DiscoveryEndpoint, "https://evil.example", true},
		{keysPath, "https://evil.example", true},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(http.MethodOptions, o.issuer+tc.path, nil)
		req.Header.Set("Origin", tc.origin)
		req.Header.Set("Access-Control-Request-Method", http.MethodPost)
		res, err := o.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		got := res.Header.Get("Access-Control-Allow-Origin")
		if (got == tc.origin) != tc.allowed {
			t.Errorf("%s from %s: ACAO %q", tc.path, tc.origin, got)
		}
		if res.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s: credentials allowed", tc.path)
		}
	}
}

// private_key_jwt: aud may be the issuer or the token endpoint URL; a jti
// works once; other audiences, keys and clients fail.
func TestPrivateKeyJWT(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	assertion := func(key *ecdsa.PrivateKey, kid, iss string, aud any, jti string, iat time.Time) string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		claims := map[string]any{"iss": iss, "sub": iss, "aud": aud, "iat": iat.Unix(), "exp": iat.Add(time.Minute).Unix()}
		if jti != "" {
			claims["jti"] = jti
		}
		payload, _ := json.Marshal(claims)
		jws, err := signer.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := jws.CompactSerialize()
		return s
	}
	conf := o.oauth("pkjwt")
	conf.ClientSecret = ""
	conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	now := time.Now()
	tokenURL := o.issuer + tokenPath
	tests := []struct {
		name  string
		a     string
		ok    bool
		reuse bool
	}{
		{"aud token endpoint", assertion(fixtureRPKey, "rp-key-1", "pkjwt", tokenURL, "j1", now), true, false},
		{"aud issuer", assertion(fixtureRPKey, "rp-key-1", "pkjwt", o.issuer, "j2", now), true, false},
		{"aud list", assertion(fixtureRPKey, "rp-key-1", "pkjwt", []string{"x", tokenURL}, "j3", now), true, false},
		{"no kid", assertion(fixtureRPKey, "", "pkjwt", tokenURL, "j4", now), true, false},
		{"replayed jti", assertion(fixtureRPKey, "rp-key-1", "pkjwt", tokenURL, "j1", now), false, false},
		{"no jti", assertion(fixtureRPKey, "rp-key-1", "pkjwt", tokenURL, "", now), false, false},
		{"other aud", assertion(fixtureRPKey, "rp-key-1", "pkjwt", "https://other.example", "j5", now), false, false},
		{"other key", assertion(otherKey, "rp-key-1", "pkjwt", tokenURL, "j6", now), false, false},
		{"old iat", assertion(fixtureRPKey, "rp-key-1", "pkjwt", tokenURL, "j7", now.Add(-time.Hour)), false, false},
		{"secret client", assertion(fixtureRPKey, "rp-key-1", "web", tokenURL, "j8", now), false, false},
		{"garbage", "not.a.jwt", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := oauth2.GenerateVerifier()
			code := o.login(conf, v, testAccount, nil)
			_, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(v),
				oauth2.SetAuthURLParam("client_assertion_type", oidc.ClientAssertionTypeJWTAssertion),
				oauth2.SetAuthURLParam("client_assertion", tc.a))
			if (err == nil) != tc.ok {
				t.Fatalf("exchange: %v, want ok=%v", err, tc.ok)
			}
		})
	}
	// A forged assertion (wrong key) does not burn the jti it names.
	forged := assertion(otherKey, "rp-key-1", "pkjwt", tokenURL, "j9", now)
	real := assertion(fixtureRPKey, "rp-key-1", "pkjwt", tokenURL, "j9", now)
	for i, a := range []string{forged, real} {
		code, m := o.postForm(introspectPath, url.Values{"token": {"x"}, "client_assertion_type": {oidc.ClientAssertionTypeJWTAssertion}, "client_assertion": {a}}, "", "")
		if (code == http.StatusOK) != (i == 1) {
			t.Fatalf("assertion %d at introspection: %d %v", i, code, m)
		}
	}
}
