package idp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
	"golang.org/x/crypto/argon2"
)

func openssl(t testing.TB, dir string, args ...string) []byte {
	t.Helper()
	jpkisim.RequireOpenSSL(t)
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
	return out
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// configFixture is a directory holding a complete production config and
// the files it points to: secrets from `openssl rand` (the way the guide
// tells operators to make them), a CA certificate from `openssl req`, a
// CRL from the simulator, and client credentials.
type configFixture struct {
	dir      string
	yaml     string
	caPEM    []byte
	jwks     []byte
	pairwise []byte
}

var validConfigTemplate = template.Must(template.New("").Parse(`
issuer: https://id.example.jp
listen: ":8443"
telemetry_listen: 127.0.0.1:9100
store:
  type: redis
  redis:
    addrs: [127.0.0.1:6379]
    password_file: redis.pass
    prefix: "watashi:"
    timeout: 3s
secrets:
  pairwise_key_file: pairwise.key
  token_key_file: secrets/token.key
  cookie_key: {{.CookieKey}}
pki:
  anchors: [ca.pem]
  signature_policy_oids: ["1.2.392.200149.8.5.1.1.20", "1.2.3.4"]
  revocation:
    mode: require
    crls:
      - sig.crl
      - location: https://crl.example.jp/auth.crl
        issuer: ca.pem
    ocsp: [https://ocsp.example.jp/]
    timeout: 4s
  leeway: 30s
clients:
  - client_id: web
    display_name: Example Web
    token_endpoint_auth_method: client_secret_basic
    client_secret_file: web.secret
    redirect_uris: [https://rp.example.com/cb, https://rp.example.com/cb2]
    post_logout_redirect_uris: [https://rp.example.com/]
    scopes: [name, birthdate]
    purpose: Opening an account
    organization: Example Web Ltd.
    policy_uri: https://rp.example.com/privacy
    age_alternatives: true
    verified_claims: true
    scope_claims_in_id_token: true
  - client_id: jwt
    display_name: Example JWT
    token_endpoint_auth_method: private_key_jwt
    jwks_file: jwt.jwks
    redirect_uris: [https://bank.example.org/oidc]
    id_token_signed_response_alg: RS256
  - client_id: app
    display_name: Example App
    token_endpoint_auth_method: none
    redirect_uris: ["http://127.0.0.1/cb", "http://127.0.0.1:8765/cb"]
ttls:
  auth_request: 15m
  transaction: 6m
  code: 30s
  facts_recheck: 20m
key_rotation: 240h
cors_allowed_origins: [https://spa.example.com]
trusted_proxies: [10.0.0.0/8, 192.0.2.1]
log:
  level: debug
  format: text
`))

func newConfigFixture(t testing.TB) *configFixture {
	t.Helper()
	dir := t.TempDir()
	f := &configFixture{dir: dir}
	writeFile(t, dir, "pairwise.key", openssl(t, dir, "rand", "-hex", "32"))
	os.Mkdir(filepath.Join(dir, "secrets"), 0o700)
	writeFile(t, dir, "secrets/token.key", openssl(t, dir, "rand", "-base64", "32"))
	cookie := strings.TrimSpace(string(openssl(t, dir, "rand", "-hex", "48")))
	writeFile(t, dir, "redis.pass", []byte("redis-password\n"))
	writeFile(t, dir, "web.secret", []byte("a-long-enough-client-secret\n"))
	openssl(t, dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "ca.key", "-out", "ca.pem", "-subj", "/C=JP/O=Test CA", "-days", "2",
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	var err error
	if f.caPEM, err = os.ReadFile(filepath.Join(dir, "ca.pem")); err != nil {
		t.Fatal(err)
	}
	if f.pairwise, err = hex.DecodeString(strings.TrimSpace(readString(t, filepath.Join(dir, "pairwise.key")))); err != nil {
		t.Fatal(err)
	}
	ca, err := jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindSignature, KeyBits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	crl, err := ca.CRL(time.Now(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "sig.crl", crl)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.jwks, _ = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &ek.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	writeFile(t, dir, "jwt.jwks", f.jwks)
	var b strings.Builder
	if err := validConfigTemplate.Execute(&b, map[string]string{"CookieKey": cookie}); err != nil {
		t.Fatal(err)
	}
	f.yaml = b.String()
	return f
}

func readString(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func noEnv(string) (string, bool) { return "", false }

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func (f *configFixture) parse(t testing.TB, yamlText string, env map[string]string) *Config {
	t.Helper()
	c, err := parseConfig([]byte(yamlText), f.dir, envMap(env))
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	return c
}

// joined returns the individual errors of an errors.Join.
func joined(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestConfigValid(t *testing.T) {
	f := newConfigFixture(t)
	c := f.parse(t, f.yaml, nil)
	if err := c.Validate(false); err != nil {
		t.Fatalf("valid production config refused:\n%v", err)
	}
	if got := c.Secrets.PairwiseKeyFile; got != filepath.Join(f.dir, "pairwise.key") {
		t.Fatalf("relative path not resolved against the config directory: %q", got)
	}
	if got := c.PKI.Revocation.CRLs; len(got) != 2 || got[0].Location != filepath.Join(f.dir, "sig.crl") || got[1].Location != "https://crl.example.jp/auth.crl" || got[1].Issuer != filepath.Join(f.dir, "ca.pem") {
		t.Fatalf("crls %+v", got)
	}
	o, err := c.Options(context.Background(), false)
	if err != nil {
		t.Fatalf("Options: %v", err)
	}
	defer o.Store.Close()
	if o.Issuer != "https://id.example.jp" || o.Dev {
		t.Fatalf("issuer %q dev %v", o.Issuer, o.Dev)
	}
	if !bytes.Equal(o.PairwiseKey, f.pairwise) || len(o.CookieKey) != 48 || o.TokenKey == [32]byte{} {
		t.Fatalf("keys: pairwise %x cookie %d bytes token zero=%v", o.PairwiseKey, len(o.CookieKey), o.TokenKey == [32]byte{})
	}
	if _, ok := o.Store.(*store.Redis); !ok {
		t.Fatalf("store %T", o.Store)
	}
	if o.AuthRequestTTL != 15*time.Minute || o.TransactionTTL != 6*time.Minute || o.CodeTTL != 30*time.Second || o.KeyRotation != 240*time.Hour {
		t.Fatalf("ttls %v %v %v %v", o.AuthRequestTTL, o.TransactionTTL, o.CodeTTL, o.KeyRotation)
	}
	if len(o.TrustedProxies) != 2 || o.TrustedProxies[1].String() != "192.0.2.1/32" {
		t.Fatalf("trusted proxies %v", o.TrustedProxies)
	}
	if !slices.Equal(o.AllowedOrigins, []string{"https://spa.example.com"}) {
		t.Fatalf("origins %v", o.AllowedOrigins)
	}
	v := o.Verifier
	if v.Mode != pkibridge.RevocationRequire || v.Leeway != 30*time.Second || v.Anchors.Len() != 1 ||
		!slices.Equal(v.Policy.SignaturePolicies, []string{"1.2.392.200149.8.5.1.1.20", "1.2.3.4"}) ||
		!slices.Equal(v.Policy.AuthenticationPolicies, []string{pkibridge.PolicyAuthentication}) {
		t.Fatalf("verifier %+v", v)
	}
	chk, ok := v.Revocation.(*pkibridge.Checker)
	if !ok || len(chk.OCSP) != 1 || len(chk.CRLs) != 2 || chk.OCSP[0].URL() != "https://ocsp.example.jp/" {
		t.Fatalf("revocation %#v", v.Revocation)
	}
	if len(o.Clients) != 3 {
		t.Fatalf("clients %d", len(o.Clients))
	}
	web, jwt, app := o.Clients[0], o.Clients[1], o.Clients[2]
	if !strings.HasPrefix(web.SecretHash, "$argon2id$") || strings.Contains(web.SecretHash, "a-long-enough") {
		t.Fatalf("secret hash %q", web.SecretHash)
	}
	if !argon2Matches(t, web.SecretHash, "a-long-enough-client-secret") || argon2Matches(t, web.SecretHash, "a-long-enough-client-secret\n") {
		t.Fatal("the hash is not of the file's secret without its trailing newline")
	}
	if web.Sector != "rp.example.com" || jwt.Sector != "bank.example.org" || app.Sector != "127.0.0.1" {
		t.Fatalf("sectors %q %q %q", web.Sector, jwt.Sector, app.Sector)
	}
	if !bytes.Equal(jwt.JWKS, f.jwks) || jwt.IDTokenAlg != "RS256" {
		t.Fatalf("jwt client %+v", jwt)
	}
	if web.DisplayName != "Example Web" || web.Purpose != "Opening an account" || !slices.Equal(web.Scopes, []string{"name", "birthdate"}) ||
		web.Organization != "Example Web Ltd." || web.PolicyURI != "https://rp.example.com/privacy" || !web.AgeAlternatives ||
		!web.VerifiedClaims || !web.ScopeClaimsInIDToken || jwt.VerifiedClaims || jwt.AgeAlternatives {
		t.Fatalf("web client %+v", web)
	}
	if p := web.consentPolicy(); !p.Verified || !p.ScopeClaimsInIDToken || !slices.Equal(p.AgeAlternatives, ageAlternatives) ||
		!slices.Equal(p.Claims, []string{"name", "family_name", "given_name", "birthdate"}) {
		t.Fatalf("web consent policy %+v", p)
	}
	if o.FactsRecheck != 20*time.Minute {
		t.Fatalf("facts recheck %v", o.FactsRecheck)
	}
	if _, err := o.Gatherer.Gather(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigDevDefaults(t *testing.T) {
	c, err := parseConfig([]byte("issuer: http://127.0.0.1:8080\ndev: true\npki:\n  revocation:\n    mode: \"off\"\n"), t.TempDir(), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(true); err != nil {
		t.Fatalf("minimal dev config: %v", err)
	}
	var logs syncBuffer
	c.SetLogOutput(&logs)
	o, err := c.Options(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := o.Store.(*store.Memory); !ok || !o.Dev || len(o.PairwiseKey) != 32 || len(o.CookieKey) != 32 || o.TokenKey == [32]byte{} {
		t.Fatalf("dev options: store %T dev %v keys %d/%d", o.Store, o.Dev, len(o.PairwiseKey), len(o.CookieKey))
	}
	if o.Verifier.Revocation != nil || o.Verifier.Mode != pkibridge.RevocationOff || o.Verifier.Anchors.Len() != pkibridge.DefaultAnchors().Len() {
		t.Fatalf("dev verifier %+v", o.Verifier)
	}
	if strings.Count(logs.String(), "generated an ephemeral key") != 3 {
		t.Fatalf("dev key generation not logged: %s", logs.String())
	}
	if l, tl := c.ListenAddrs(); l != DefaultListen || tl != DefaultTelemetryListen {
		t.Fatalf("listen defaults %q %q", l, tl)
	}
	// The same file without --dev lists everything production refuses.
	errs := joined(c.Validate(false))
	for _, want := range []string{"dev:", "issuer:", "store.type:", "secrets.pairwise_key:", "secrets.token_key:", "secrets.cookie_key:", "pki.revocation.mode:"} {
		if !slices.ContainsFunc(errs, func(e error) bool { return strings.HasPrefix(e.Error(), want) }) {
			t.Errorf("missing %q in %v", want, errs)
		}
	}
}

// TestConfigProductionRefusals mutates the valid config one way at a time.
func TestConfigProductionRefusals(t *testing.T) {
	f := newConfigFixture(t)
	tests := []struct {
		name    string
		mutate  func(c *Config)
		path    string // prefix of the one expected error
		devOK   bool   // --dev accepts it
		setupFS func(dir string)
	}{
		{name: "http issuer", mutate: func(c *Config) { c.Issuer = "http://id.example.jp" }, path: "issuer: must be https outside --dev", devOK: true},
		{name: "issuer trailing slash", mutate: func(c *Config) { c.Issuer = "https://id.example.jp/" }, path: "issuer: must not end"},
		{name: "issuer with query", mutate: func(c *Config) { c.Issuer = "https://id.example.jp?x=1" }, path: "issuer: must not have a query"},
		{name: "issuer relative", mutate: func(c *Config) { c.Issuer = "id.example.jp" }, path: "issuer: must be an absolute"},
		{name: "no issuer", mutate: func(c *Config) { c.Issuer = "" }, path: "issuer: required"},
		{name: "memory store", mutate: func(c *Config) { c.Store.Type = "memory" }, path: "store.type: memory", devOK: true},
		{name: "default store", mutate: func(c *Config) { c.Store.Type = "" }, path: "store.type: memory", devOK: true},
		{name: "unknown store", mutate: func(c *Config) { c.Store.Type = "etcd" }, path: "store.type: \"etcd\""},
		{name: "redis without addrs", mutate: func(c *Config) { c.Store.Redis.Addrs = nil }, path: "store.redis.addrs: at least one"},
		{name: "redis bad addr", mutate: func(c *Config) { c.Store.Redis.Addrs = []string{"redis"} }, path: "store.redis.addrs[0]:"},
		{name: "redis password twice", mutate: func(c *Config) { c.Store.Redis.Password = "x" }, path: "store.redis.password: set password or password_file"},
		{name: "redis cluster db", mutate: func(c *Config) { c.Store.Redis.Addrs = []string{"a:1", "b:1"}; c.Store.Redis.DB = 2 }, path: "store.redis.db: Redis Cluster"},
		{name: "redis tls settings while disabled", mutate: func(c *Config) { c.Store.Redis.TLS.CAFile = "/x" }, path: "store.redis.tls.enabled:"},
		{name: "redis tls missing ca", mutate: func(c *Config) { c.Store.Redis.TLS = RedisTLSConfig{Enabled: true, CAFile: "/nonexistent/ca.pem"} }, path: "store.redis.tls: ca_file:"},
		{name: "missing pairwise key", mutate: func(c *Config) { c.Secrets.PairwiseKeyFile = "" }, path: "secrets.pairwise_key: required outside --dev", devOK: true},
		{name: "missing token key", mutate: func(c *Config) { c.Secrets.TokenKeyFile = "" }, path: "secrets.token_key: required", devOK: true},
		{name: "short cookie key", mutate: func(c *Config) { c.Secrets.CookieKey = strings.Repeat("ab", 31) }, path: "secrets.cookie_key: must be at least 32 bytes, got 31"},
		{name: "long token key", mutate: func(c *Config) { c.Secrets.TokenKeyFile = ""; c.Secrets.TokenKey = strings.Repeat("ab", 33) }, path: "secrets.token_key: must be exactly 32 bytes, got 33"},
		{name: "garbage key", mutate: func(c *Config) { c.Secrets.CookieKey = "not a key!" }, path: "secrets.cookie_key: is neither hex nor base64"},
		{name: "key inline and file", mutate: func(c *Config) { c.Secrets.PairwiseKey = strings.Repeat("ab", 32) }, path: "secrets.pairwise_key: set the key or its _file"},
		{name: "missing key file", mutate: func(c *Config) { c.Secrets.PairwiseKeyFile = filepath.Join(f.dir, "nope.key") }, path: "secrets.pairwise_key: open"},
		{name: "revocation off", mutate: func(c *Config) { c.PKI.Revocation.Mode = "off" }, path: "pki.revocation.mode: off", devOK: true},
		{name: "revocation unknown mode", mutate: func(c *Config) { c.PKI.Revocation.Mode = "maybe" }, path: "pki.revocation.mode: \"maybe\""},
		{name: "revocation without sources", mutate: func(c *Config) { c.PKI.Revocation.CRLs = nil; c.PKI.Revocation.OCSP = nil }, path: "pki.revocation: mode require needs"},
		{name: "ldap crl", mutate: func(c *Config) { c.PKI.Revocation.CRLs[0].Location = "ldap://dir.example/cn=crl" }, path: "pki.revocation.crls[0].location: only file paths"},
		{name: "missing crl file", mutate: func(c *Config) { c.PKI.Revocation.CRLs[0].Location = "/nonexistent.crl" }, path: "pki.revocation.crls[0].location:"},
		{name: "bad crl issuer", mutate: func(c *Config) { c.PKI.Revocation.CRLs[1].Issuer = filepath.Join(f.dir, "redis.pass") }, path: "pki.revocation.crls[1].issuer:"},
		{name: "ocsp not http", mutate: func(c *Config) { c.PKI.Revocation.OCSP = []string{"ocsp.example.jp"} }, path: "pki.revocation.ocsp[0]:"},
		{name: "bad anchors", mutate: func(c *Config) { c.PKI.Anchors = []string{filepath.Join(f.dir, "redis.pass")} }, path: "pki.anchors:"},
		{name: "bad policy oid", mutate: func(c *Config) { c.PKI.AuthenticationPolicyOIDs = []string{"1.2.x"} }, path: "pki.authentication_policy_oids[0]:"},
		{name: "leeway too large", mutate: func(c *Config) { c.PKI.Leeway = 2 * time.Hour }, path: "pki.leeway:"},
		{name: "cors wildcard", mutate: func(c *Config) { c.CORSAllowedOrigins = []string{"*"} }, path: "cors_allowed_origins[0]: \"*\"", devOK: true},
		{name: "cors http origin", mutate: func(c *Config) { c.CORSAllowedOrigins = []string{"http://spa.example.com"} }, path: "cors_allowed_origins[0]: \"http://spa.example.com\": http origins", devOK: true},
		{name: "cors with path", mutate: func(c *Config) { c.CORSAllowedOrigins = []string{"https://spa.example.com/app"} }, path: "cors_allowed_origins[0]:"},
		{name: "web client http redirect", mutate: func(c *Config) { c.Clients[0].RedirectURIs = []string{"http://rp.example.com/cb"} }, path: "clients[0].redirect_uris[0]: must be https outside --dev", devOK: true},
		{name: "web client loopback http", mutate: func(c *Config) { c.Clients[0].RedirectURIs = []string{"http://127.0.0.1/cb"} }, path: "clients[0].redirect_uris[0]: must be https", devOK: true},
		{name: "native client public http", mutate: func(c *Config) { c.Clients[2].RedirectURIs = []string{"http://app.example.com/cb"} }, path: "clients[2].redirect_uris[0]: must be https outside --dev (native", devOK: true},
		{name: "web client custom scheme", mutate: func(c *Config) { c.Clients[0].RedirectURIs = []string{"jp.example.app:/cb"} }, path: "clients[0].redirect_uris[0]: scheme"},
		{name: "redirect with fragment", mutate: func(c *Config) { c.Clients[0].RedirectURIs = []string{"https://rp.example.com/cb#x"} }, path: "clients[0].redirect_uris[0]: must not have a fragment"},
		{name: "post logout http", mutate: func(c *Config) { c.Clients[0].PostLogout = []string{"http://rp.example.com/"} }, path: "clients[0].post_logout_redirect_uris[0]: must be https", devOK: true},
		{name: "redirects span hosts", mutate: func(c *Config) { c.Clients[0].RedirectURIs = []string{"https://a.example/cb", "https://b.example/cb"} }, path: "clients[0].redirect_uris: client \"web\": redirect URIs span hosts"},
		{name: "duplicate client", mutate: func(c *Config) { c.Clients[1].ID = "web" }, path: "clients[1].client_id: \"web\" is configured twice"},
		{name: "client id with colon", mutate: func(c *Config) { c.Clients[1].ID = "a:b" }, path: "clients[1].client_id:"},
		{name: "no display name", mutate: func(c *Config) { c.Clients[1].DisplayName = " " }, path: "clients[1].display_name:"},
		{name: "secret basic without secret", mutate: func(c *Config) { c.Clients[0].ClientSecretFile = "" }, path: "clients[0].client_secret_file: client_secret_basic needs"},
		{name: "short client secret", mutate: func(c *Config) { c.Clients[0].ClientSecretFile = filepath.Join(f.dir, "short.secret") }, path: "clients[0].client_secret_file: the secret must be at least 16",
			setupFS: func(dir string) { os.WriteFile(filepath.Join(dir, "short.secret"), []byte("short"), 0o600) }},
		{name: "bad secret hash", mutate: func(c *Config) { c.Clients[0].ClientSecretFile = ""; c.Clients[0].ClientSecretHash = "sha256:abc" }, path: "clients[0].client_secret_hash:"},
		{name: "secret for native client", mutate: func(c *Config) { c.Clients[2].ClientSecretHash = "x" }, path: "clients[2].client_secret_file: a secret is only used"},
		{name: "jwt without jwks", mutate: func(c *Config) { c.Clients[1].JWKSFile = "" }, path: "clients[1].jwks_file: private_key_jwt needs"},
		{name: "jwks with private key", mutate: func(c *Config) { c.Clients[1].JWKSFile = filepath.Join(f.dir, "private.jwks") }, path: "clients[1].jwks_file:",
			setupFS: func(dir string) {
				ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ek, KeyID: "p"}}})
				os.WriteFile(filepath.Join(dir, "private.jwks"), b, 0o600)
			}},
		{name: "unknown auth method", mutate: func(c *Config) {
			c.Clients[2].AuthMethod = "client_secret_post"
			c.Clients[2].RedirectURIs = []string{"https://app.example.com/cb"}
		}, path: "clients[2].token_endpoint_auth_method:"},
		{name: "bad id token alg", mutate: func(c *Config) { c.Clients[1].IDTokenAlg = "HS256" }, path: "clients[1].id_token_signed_response_alg:"},
		{name: "bad scope", mutate: func(c *Config) { c.Clients[0].Scopes = []string{"a b", "birthdate"} }, path: "clients[0].scopes[0]:"},
		{name: "http sector uri", mutate: func(c *Config) { c.Clients[0].SectorIdentifierURI = "http://rp.example.com/sector.json" }, path: "clients[0].sector_identifier_uri:", devOK: true},
		{name: "http policy uri", mutate: func(c *Config) { c.Clients[0].PolicyURI = "http://rp.example.com/privacy" }, path: "clients[0].policy_uri: must be an https URL", devOK: true},
		{name: "relative policy uri", mutate: func(c *Config) { c.Clients[0].PolicyURI = "/privacy" }, path: "clients[0].policy_uri:"},
		{name: "age alternatives without birthdate", mutate: func(c *Config) {
			c.Clients[0].Scopes = []string{"name"}
			c.Clients[0].AgeAlternatives = true
		}, path: "clients[0].age_alternatives:"},
		{name: "negative facts recheck", mutate: func(c *Config) { c.TTLs.FactsRecheck = -time.Minute }, path: "ttls.facts_recheck: must not be negative"},
		{name: "transaction outlives request", mutate: func(c *Config) { c.TTLs.Transaction = 20 * time.Minute }, path: "ttls.transaction: must be shorter"},
		{name: "negative ttl", mutate: func(c *Config) { c.TTLs.Session = -time.Second }, path: "ttls.session: must not be negative"},
		{name: "long code ttl", mutate: func(c *Config) { c.TTLs.Code = time.Hour }, path: "ttls.code:"},
		{name: "fast key rotation", mutate: func(c *Config) { c.KeyRotation = time.Minute }, path: "key_rotation:"},
		{name: "trust everyone", mutate: func(c *Config) { c.TrustedProxies = []string{"0.0.0.0/0"} }, path: "trusted_proxies: \"0.0.0.0/0\" would trust"},
		{name: "bad proxy", mutate: func(c *Config) { c.TrustedProxies = []string{"proxy.local"} }, path: "trusted_proxies:"},
		{name: "bad ip header", mutate: func(c *Config) { c.ClientIPHeader = "X Forwarded" }, path: "client_ip_header:"},
		{name: "same listeners", mutate: func(c *Config) { c.TelemetryListen = c.Listen }, path: "telemetry_listen: must differ"},
		{name: "bad listen", mutate: func(c *Config) { c.Listen = "8080" }, path: "listen:"},
		{name: "missing template dir", mutate: func(c *Config) { c.TemplateDir = "/nonexistent/templates" }, path: "template_dir:"},
		{name: "bad log level", mutate: func(c *Config) { c.Log.Level = "verbose" }, path: "log.level:"},
		{name: "bad log format", mutate: func(c *Config) { c.Log.Format = "xml" }, path: "log.format:"},
		{name: "dev config without flag", mutate: func(c *Config) { c.Dev = true }, path: "dev: true requires the --dev flag", devOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setupFS != nil {
				tt.setupFS(f.dir)
			}
			c := f.parse(t, f.yaml, nil)
			tt.mutate(c)
			errs := joined(c.Validate(false))
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tt.path) {
				t.Fatalf("got %d errors %q, want one starting %q", len(errs), errs, tt.path)
			}
			if _, err := c.Options(context.Background(), false); err == nil {
				t.Fatal("Options built a refused config")
			}
			if devErr := c.Validate(true); (devErr == nil) != tt.devOK {
				t.Fatalf("with --dev: %v (want accepted=%v)", devErr, tt.devOK)
			}
		})
	}
}

func TestConfigNativeLoopbackAllowed(t *testing.T) {
	f := newConfigFixture(t)
	for _, u := range []string{"http://127.0.0.1:51000/cb", "http://[::1]/cb", "http://localhost/cb", "com.example.app:/cb"} {
		c := f.parse(t, f.yaml, nil)
		c.Clients[2].RedirectURIs = []string{u}
		if !strings.HasPrefix(u, "http") {
			// No host to derive a sector from.
			c.Clients[2].SectorIdentifierURI = "https://app.example.com/sector.json"
		}
		if err := c.Validate(false); err != nil {
			t.Errorf("%s refused for a native client: %v", u, err)
		}
	}
}

func TestConfigReportsEveryProblem(t *testing.T) {
	f := newConfigFixture(t)
	c := f.parse(t, f.yaml, nil)
	c.Issuer = "http://id.example.jp"    // 1
	c.Store.Type = "memory"              // 2
	c.Secrets.PairwiseKeyFile = ""       // 3
	c.PKI.Revocation.Mode = "off"        // 4
	c.CORSAllowedOrigins = []string{"*"} // 5
	errs := joined(c.Validate(false))
	want := []string{"issuer:", "store.type:", "secrets.pairwise_key:", "pki.revocation.mode:", "cors_allowed_origins[0]:"}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), errors.Join(errs...))
	}
	for i, w := range want {
		if !strings.HasPrefix(errs[i].Error(), w) {
			t.Errorf("error %d = %q, want prefix %q", i, errs[i], w)
		}
	}
}

func TestConfigEnvOverrides(t *testing.T) {
	f := newConfigFixture(t)
	hexKey := strings.Repeat("0f", 32)
	tests := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c *Config)
		err   string
	}{
		{"scalars", map[string]string{
			"WATASHI_ISSUER": "https://login.example.jp", "WATASHI_LISTEN": ":9443", "WATASHI_TELEMETRY_LISTEN": "127.0.0.1:9200",
			"WATASHI_STORE_TYPE": "redis", "WATASHI_REDIS_MASTER_NAME": "mymaster", "WATASHI_REDIS_USERNAME": "watashi",
			"WATASHI_REDIS_DB": "3", "WATASHI_REDIS_PREFIX": "w2:", "WATASHI_REDIS_TLS": "true",
			"WATASHI_REVOCATION_MODE": "prefer", "WATASHI_REVOCATION_TIMEOUT": "7s", "WATASHI_KEY_ROTATION": "48h",
			"WATASHI_TEMPLATE_DIR": "/srv/theme", "WATASHI_CLIENT_IP_HEADER": "X-Real-IP",
			"WATASHI_LOG_LEVEL": "warn", "WATASHI_LOG_FORMAT": "json",
		}, func(t *testing.T, c *Config) {
			r := c.Store.Redis
			if c.Issuer != "https://login.example.jp" || c.Listen != ":9443" || c.TelemetryListen != "127.0.0.1:9200" ||
				r.MasterName != "mymaster" || r.Username != "watashi" || r.DB != 3 || r.Prefix != "w2:" || !r.TLS.Enabled ||
				c.PKI.Revocation.Mode != "prefer" || c.PKI.Revocation.Timeout != 7*time.Second || c.KeyRotation != 48*time.Hour ||
				c.TemplateDir != "/srv/theme" || c.ClientIPHeader != "X-Real-IP" || c.Log.Level != "warn" || c.Log.Format != "json" {
				t.Fatalf("overrides not applied: %+v", c)
			}
		}, ""},
		{"redis addrs list", map[string]string{"WATASHI_REDIS_ADDRS": " r1:6379, r2:6379 ,,r3:6379"}, func(t *testing.T, c *Config) {
			if !slices.Equal(c.Store.Redis.Addrs, []string{"r1:6379", "r2:6379", "r3:6379"}) {
				t.Fatalf("addrs %q", c.Store.Redis.Addrs)
			}
		}, ""},
		{"inline secret replaces file", map[string]string{"WATASHI_PAIRWISE_KEY": hexKey, "WATASHI_REDIS_PASSWORD": "pw"}, func(t *testing.T, c *Config) {
			if c.Secrets.PairwiseKey != hexKey || c.Secrets.PairwiseKeyFile != "" || c.Store.Redis.Password != "pw" || c.Store.Redis.PasswordFile != "" {
				t.Fatalf("secrets %+v redis %+v", c.Secrets, c.Store.Redis)
			}
			if err := c.Validate(false); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"file secret replaces inline", map[string]string{"WATASHI_COOKIE_KEY_FILE": "pairwise.key", "WATASHI_TOKEN_KEY_FILE": "/run/secrets/token", "WATASHI_REDIS_PASSWORD_FILE": "/run/secrets/redis"}, func(t *testing.T, c *Config) {
			// Env paths are the operator's, relative to the working directory.
			if c.Secrets.CookieKeyFile != "pairwise.key" || c.Secrets.CookieKey != "" || c.Secrets.TokenKeyFile != "/run/secrets/token" || c.Store.Redis.PasswordFile != "/run/secrets/redis" {
				t.Fatalf("secrets %+v", c.Secrets)
			}
		}, ""},
		{"empty variable ignored", map[string]string{"WATASHI_ISSUER": ""}, func(t *testing.T, c *Config) {
			if c.Issuer != "https://id.example.jp" {
				t.Fatalf("issuer %q", c.Issuer)
			}
		}, ""},
		{"unlisted variable ignored", map[string]string{"WATASHI_PKI_ANCHORS": "/etc/evil", "WATASHI_DEV": "true"}, func(t *testing.T, c *Config) {
			if c.Dev || len(c.PKI.Anchors) != 1 {
				t.Fatalf("unlisted variable applied: %+v", c)
			}
		}, ""},
		{"bad duration and int", map[string]string{"WATASHI_KEY_ROTATION": "30", "WATASHI_REDIS_DB": "one", "WATASHI_REDIS_TLS": "sure"}, nil,
			"WATASHI_REDIS_DB: not an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig([]byte(f.yaml), f.dir, envMap(tt.env))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "WATASHI_KEY_ROTATION") || !strings.Contains(err.Error(), "WATASHI_REDIS_TLS") {
					t.Fatalf("err %v, want all three variables named", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestLoadConfigFromFileAndEnvironment(t *testing.T) {
	f := newConfigFixture(t)
	path := writeFile(t, f.dir, "watashi.yaml", []byte(f.yaml))
	t.Setenv("WATASHI_ISSUER", "https://env.example.jp")
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "https://env.example.jp" {
		t.Fatalf("issuer %q", c.Issuer)
	}
	if err := c.Validate(false); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(filepath.Join(f.dir, "missing.yaml")); err == nil {
		t.Fatal("missing file loaded")
	}
}

func TestConfigSecretFiles(t *testing.T) {
	dir := t.TempDir()
	hexOut := openssl(t, dir, "rand", "-hex", "32")
	b64Out := openssl(t, dir, "rand", "-base64", "48")
	tests := []struct {
		name    string
		content []byte
		wantLen int
		err     string
	}{
		{"openssl hex with newline", hexOut, 32, ""},
		{"openssl base64 with newline", b64Out, 48, ""},
		{"base64url raw", []byte(strings.Repeat("_-", 22)), 33, ""},
		{"crlf", append(bytes.TrimSpace(hexOut), '\r', '\n'), 32, ""},
		{"empty", []byte("\n"), 0, "empty"},
		{"not encoded", []byte("correct horse battery staple, 32+ chars"), 0, "neither hex nor base64"},
		{"too short", []byte(strings.Repeat("ab", 16)), 0, "at least 32 bytes, got 16"},
		{"too big", bytes.Repeat([]byte("a"), maxSecretFileBytes+1), 0, "not a secret file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, dir, "k", tt.content)
			key, err := secretSpec{path: "secrets.cookie_key", file: p, min: 32}.load()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				if strings.Contains(err.Error(), strings.TrimSpace(string(tt.content))) && len(tt.content) > 4 {
					t.Fatal("error echoes the secret")
				}
				return
			}
			if err != nil || len(key) != tt.wantLen {
				t.Fatalf("key %d bytes, err %v", len(key), err)
			}
		})
	}
	// The hex form decodes to exactly what openssl printed.
	key, err := decodeKey(string(hexOut))
	if err != nil || hex.EncodeToString(key) != strings.TrimSpace(string(hexOut)) {
		t.Fatalf("hex key %x %v", key, err)
	}
}

func TestConfigStrictYAML(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, yaml, err string
	}{
		{"unknown top-level field", "issuer: https://a.example\nissuers: x\n", "line 2: field issuers not found"},
		{"unknown nested field", "store:\n  redis:\n    passwd: x\n", "line 3: field passwd not found"},
		{"unknown client field", "clients:\n  - client_id: a\n    client_secret: plain\n", "field client_secret not found"},
		{"computed client field", "clients:\n  - client_id: a\n    sector: evil.example\n", "field sector not found"},
		{"unknown crl field", "pki:\n  revocation:\n    crls:\n      - location: a.crl\n        issuer_file: x\n", "field issuer_file not found in a crl entry"},
		{"crl as list", "pki:\n  revocation:\n    crls:\n      - [a]\n", "a crl entry is a location string"},
		{"wrong type", "listen: [a, b]\n", "cannot unmarshal"},
		{"integer duration", "key_rotation: 30\n", "cannot unmarshal"},
		{"two documents", "issuer: a\n---\nissuer: b\n", "more than one YAML document"},
		{"empty", "", "empty"},
		{"syntax", "issuer: [\n", "yaml:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tt.yaml), dir, noEnv)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err %v, want %q", err, tt.err)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	fx := newConfigFixture(f)
	f.Add([]byte(fx.yaml))
	f.Add([]byte("pki:\n  revocation:\n    crls: [a, {location: b, issuer: c}]\n"))
	f.Add([]byte("clients: [{client_id: a, redirect_uris: ['http://[::1', 'x:'] }]\nttls: {code: 1h}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConfig(data, "/nonexistent-dir", noEnv)
		if err != nil {
			return
		}
		// Validation of anything that parsed must not panic either. File
		// paths all lie under a missing directory, unless absolute; skip
		// those so that the fuzzer never reads devices or FIFOs.
		if strings.Contains(string(data), "/") {
			return
		}
		_ = c.Validate(false)
		_ = c.Validate(true)
	})
}

// yamlPaths lists every YAML field path of t ("store.redis.addrs",
// "clients[].client_id").
func yamlPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := strings.Split(sf.Tag.Get("yaml"), ",")
		if !sf.IsExported() || tag[0] == "-" {
			continue
		}
		ft := sf.Type
		list := ""
		for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer {
			if ft.Kind() == reflect.Slice {
				list = "[]"
			}
			ft = ft.Elem()
		}
		if slices.Contains(tag[1:], "inline") {
			out = append(out, yamlPaths(ft, prefix)...)
			continue
		}
		name := prefix + tag[0]
		out = append(out, name)
		if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)) {
			out = append(out, yamlPaths(ft, name+list+".")...)
		}
	}
	return out
}

// TestOperatorGuideCoversConfig keeps docs/operator-guide.md and
// deploy/watashi.example.yaml in step with the code: every field and
// every environment variable is documented, and the example parses and
// passes production validation except for the files it points to.
func TestOperatorGuideCoversConfig(t *testing.T) {
	guide, err := os.ReadFile("../docs/operator-guide.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../deploy/watashi.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range yamlPaths(reflect.TypeOf(Config{}), "") {
		if !bytes.Contains(guide, []byte("`"+p+"`")) {
			t.Errorf("operator guide does not document `%s`", p)
		}
		leaf := p[strings.LastIndex(p, ".")+1:]
		if !bytes.Contains(example, []byte(leaf+":")) {
			t.Errorf("example config lacks %s", p)
		}
	}
	for _, e := range envOverrides {
		if !bytes.Contains(guide, []byte("`"+e.name+"`")) {
			t.Errorf("operator guide does not document `%s`", e.name)
		}
	}
	c, err := parseConfig(example, t.TempDir(), noEnv)
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	for _, e := range joined(c.Validate(false)) {
		msg := e.Error()
		// The example's files do not exist here; nothing else may fail.
		if !strings.Contains(msg, "no such file or directory") {
			t.Errorf("example config: %v", e)
		}
	}
}

// argon2Matches checks a PHC-format Argon2id string the way any PHC
// implementation would, independently of the provider's verifier.
func argon2Matches(t *testing.T, phc, secret string) bool {
	t.Helper()
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != "v=19" {
		t.Fatalf("not an argon2id PHC string: %q", phc)
	}
	var m, tc uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &tc, &p); err != nil {
		t.Fatalf("PHC parameters %q: %v", parts[3], err)
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	key, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil {
		t.Fatalf("PHC salt or hash not base64: %q", phc)
	}
	return bytes.Equal(argon2.IDKey([]byte(secret), salt, tc, m, p, uint32(len(key))), key)
}

// TestConfigWhitelist: the whitelist section's refusals, each reported
// with its path and all at once, and a valid section turned into a
// registry with its trusted issuers.
func TestConfigWhitelist(t *testing.T) {
	f := newConfigFixture(t)
	writeFile(t, f.dir, "admin.hash", []byte("sha256:"+strings.Repeat("ab", 32)+"\n"))
	writeFile(t, f.dir, "bad.hash", []byte("not a hash\n"))
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	priv, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ek, KeyID: "p"}}})
	writeFile(t, f.dir, "private.jwks", priv)

	tests := []struct {
		name    string
		section string
		want    []string // error prefixes, all of them
		devOK   bool
	}{
		{"settings while disabled", "enabled: false\n  admin_listen: 127.0.0.1:9200", []string{"whitelist.enabled: whitelist settings are given"}, false},
		{"bad tier name", "enabled: true\n  tiers: [{name: Gold, scopes: [openid], min_acr: aal3}]", []string{"whitelist.tiers: tier 0: name"}, false},
		{"tier without openid", "enabled: true\n  tiers: [{name: gold, scopes: [name], min_acr: aal3}]", []string{"whitelist.tiers: tier \"gold\": scopes must include openid"}, false},
		{"tier bad acr", "enabled: true\n  tiers: [{name: gold, scopes: [openid], min_acr: aal9}]", []string{"whitelist.tiers: tier \"gold\": min_acr"}, false},
		{"duplicate tier", "enabled: true\n  tiers: [{name: a1, scopes: [openid], min_acr: aal3}, {name: a1, scopes: [openid], min_acr: aal3}]", []string{"whitelist.tiers: tier \"a1\" is defined twice"}, false},
		{"admin listen without hash", "enabled: true\n  admin_listen: 127.0.0.1:9200", []string{"whitelist.admin_listen: the admin API needs both"}, false},
		{"admin hash without listen", "enabled: true\n  admin_token_hash_file: admin.hash", []string{"whitelist.admin_listen: the admin API needs both"}, false},
		{"admin listen not host:port", "enabled: true\n  admin_listen: nowhere\n  admin_token_hash_file: admin.hash", []string{"whitelist.admin_listen: \"nowhere\" is not host:port"}, false},
		{"admin listen on the public port", "enabled: true\n  admin_listen: \":8443\"\n  admin_token_hash_file: admin.hash", []string{"whitelist.admin_listen: must differ"}, false},
		{"admin hash missing", "enabled: true\n  admin_listen: 127.0.0.1:9200\n  admin_token_hash_file: nope.hash", []string{"whitelist.admin_token_hash_file:"}, false},
		{"admin hash malformed", "enabled: true\n  admin_listen: 127.0.0.1:9200\n  admin_token_hash_file: bad.hash", []string{"whitelist.admin_token_hash_file: admin token hash must be"}, false},
		{"issuer without name or keys", "enabled: true\n  trusted_software_statement_issuers: [{}]", []string{
			"whitelist.trusted_software_statement_issuers[0].issuer: required", "whitelist.trusted_software_statement_issuers[0].jwks_file: required"}, false},
		{"issuer with private keys", "enabled: true\n  trusted_software_statement_issuers: [{issuer: https://fed.example, jwks_file: private.jwks}]", []string{
			"whitelist.trusted_software_statement_issuers[0].jwks_file: the key set must hold valid public keys only"}, false},
		{"issuer twice", "enabled: true\n  trusted_software_statement_issuers: [{issuer: https://fed.example, jwks_file: jwt.jwks}, {issuer: https://fed.example, jwks_file: jwt.jwks}]", []string{
			"whitelist.trusted_software_statement_issuers[1].issuer: \"https://fed.example\" is listed twice"}, false},
		{"statement required without issuers", "enabled: true\n  require_software_statement: true", []string{"whitelist.require_software_statement: needs at least one"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := f.parse(t, f.yaml+"whitelist:\n  "+tc.section+"\n", nil)
			errs := joined(c.Validate(false))
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors %v, want %v", len(errs), errs, tc.want)
			}
			for _, w := range tc.want {
				if !slices.ContainsFunc(errs, func(e error) bool { return strings.HasPrefix(e.Error(), w) }) {
					t.Errorf("missing %q in %v", w, errs)
				}
			}
		})
	}
	t.Run("every problem at once", func(t *testing.T) {
		c := f.parse(t, f.yaml+"whitelist:\n  enabled: true\n  admin_listen: nowhere\n  require_software_statement: true\n  tiers: [{name: X, scopes: [openid], min_acr: aal3}]\n", nil)
		if errs := joined(c.Validate(false)); len(errs) != 4 {
			t.Fatalf("want 4 problems, got %v", errs)
		}
	})
	t.Run("memory store outside dev", func(t *testing.T) {
		c, err := parseConfig([]byte("issuer: http://127.0.0.1:8080\npki:\n  revocation:\n    mode: \"off\"\nwhitelist:\n  enabled: true\n"), t.TempDir(), noEnv)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(joined(c.Validate(false)), func(e error) bool {
			return strings.HasPrefix(e.Error(), "whitelist.enabled: the registry must live in Redis")
		}) {
			t.Fatalf("memory whitelist accepted in production: %v", c.Validate(false))
		}
		if err := c.Validate(true); err != nil {
			t.Fatalf("dev: %v", err)
		}
		o, err := c.Options(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Store.Close()
		if o.Registry == nil || len(o.Registry.Tiers()) != 3 {
			t.Fatalf("dev options without the default registry: %+v", o.Registry)
		}
	})
	t.Run("valid", func(t *testing.T) {
		c := f.parse(t, f.yaml+"whitelist:\n  enabled: true\n  admin_listen: 127.0.0.1:9200\n  admin_token_hash_file: admin.hash\n"+
			"  trusted_software_statement_issuers: [{issuer: https://fed.example, jwks_file: jwt.jwks}]\n  require_software_statement: true\n"+
			"  tiers: [{name: gold, scopes: [openid, name], claims: [name], min_acr: aal3}]\n", nil)
		if err := c.Validate(false); err != nil {
			t.Fatal(err)
		}
		if l, h := c.WhitelistAdmin(); l != "127.0.0.1:9200" || h != filepath.Join(f.dir, "admin.hash") {
			t.Fatalf("admin %q %q", l, h)
		}
		reg, err := c.NewRegistry(store.NewMemory(), false, nil)
		if err != nil || len(reg.Tiers()) != 1 || reg.Tiers()[0].Name != "gold" {
			t.Fatalf("registry %v %v", reg, err)
		}
	})
}
