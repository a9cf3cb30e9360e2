package config

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/argon2"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
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
  kek_file: secrets/kek.key
  previous_kek_files: [secrets/kek-old.key]
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
	writeFile(t, dir, "secrets/kek.key", openssl(t, dir, "rand", "-hex", "32"))
	writeFile(t, dir, "secrets/kek-old.key", openssl(t, dir, "rand", "-base64", "32"))
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

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
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
	cur, _ := loadKEK(filepath.Join(f.dir, "secrets/kek.key"))
	prev, _ := loadKEK(filepath.Join(f.dir, "secrets/kek-old.key"))
	if o.KEK == nil || o.KEK.CurrentID() != cur.ID() || !slices.Equal(o.KEK.IDs(), []string{cur.ID(), prev.ID()}) {
		t.Fatalf("KEK ring %v", o.KEK)
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
	if p := web.Policy(); !p.Verified || !p.ScopeClaimsInIDToken || !slices.Equal(p.AgeAlternatives, []string{consent.ClaimAgeOver18, consent.ClaimAgeOver20}) ||
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
	// No KEK: the provider generates one for a memory store under --dev.
	if _, ok := o.Store.(*store.Memory); !ok || !o.Dev || len(o.PairwiseKey) != 32 || len(o.CookieKey) != 32 || o.TokenKey == [32]byte{} || o.KEK != nil {
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
	for _, want := range []string{"dev:", "issuer:", "store.type:", "secrets.pairwise_key:", "secrets.token_key:", "secrets.cookie_key:", "secrets.kek_file:", "pki.revocation.mode:"} {
		if !slices.ContainsFunc(errs, func(e error) bool { return strings.HasPrefix(e.Error(), want) }) {
			t.Errorf("missing %q in %v", want, errs)
		}
	}
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
	guide, err := os.ReadFile("../../docs/operator-guide.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../deploy/watashi.example.yaml")
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
