package loadtool

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// Files of a setup directory.
const (
	ConfigFile    = "watashi.yaml"
	caDir         = "ca"
	secretFile    = "client.secret"
	clientKeyFile = "client-key.pem"
	clientJWKS    = "client-jwks.json"
	clientKeyID   = "load-1"
)

// Client IDs of the configuration Setup writes.
const (
	ClientBasic = "load-basic"
	ClientJWT   = "load-jwt"
	// RedirectURI is both clients' redirect; nothing listens there, the
	// tool reads the code from the callback's Location.
	RedirectURI = "http://127.0.0.1:9/cb"
)

// SetupOptions are what the configuration needs to know.
type SetupOptions struct {
	Dir string
	// Listen is the provider's public address (host:port); the issuer is
	// http://Listen (the configuration is --dev: no TLS on loopback).
	Listen string
	// Telemetry is the metrics listener (host:port).
	Telemetry string
	// Redis is the address of the redis-server; empty: memory store.
	Redis string
	// Prefix namespaces the provider's keys in Redis.
	Prefix string
}

// Setup writes a directory from which `watashi serve --dev --config
// DIR/watashi.yaml` runs a provider that trusts the tool's simulator
// CAs. It refuses a directory that already holds a configuration, so
// that a second setup never replaces the CAs an enrolled provider knows.
func Setup(o SetupOptions) error {
	if o.Dir == "" {
		return errors.New("setup needs a directory")
	}
	for name, addr := range map[string]string{"listen": o.Listen, "telemetry": o.Telemetry} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s address %q: %w", name, addr, err)
		}
	}
	if _, err := os.Stat(filepath.Join(o.Dir, ConfigFile)); err == nil {
		return fmt.Errorf("%s already holds %s", o.Dir, ConfigFile)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return err
	}
	var anchors []string
	for _, k := range []struct {
		kind pkibridge.Kind
		name string
	}{{pkibridge.KindSignature, "signature"}, {pkibridge.KindAuthentication, "authentication"}} {
		ca, err := jpkisim.LoadOrCreateCA(filepath.Join(o.Dir, caDir, k.name), k.kind)
		if err != nil {
			return err
		}
		pemFile := k.name + "-ca.pem"
		if err := write(o.Dir, pemFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})); err != nil {
			return err
		}
		anchors = append(anchors, pemFile)
	}
	for _, name := range []string{"pairwise.key", "token.key", "cookie.key", "kek.key"} {
		if err := write(o.Dir, name, []byte(randomHex(32)+"\n")); err != nil {
			return err
		}
	}
	if err := write(o.Dir, secretFile, []byte(randomHex(24)+"\n")); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := write(o.Dir, clientKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: clientKeyID, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		return err
	}
	if err := write(o.Dir, clientJWKS, jwks); err != nil {
		return err
	}
	st := "store: {type: memory}"
	if o.Redis != "" {
		st = fmt.Sprintf("store:\n  type: redis\n  redis: {addrs: [%q], prefix: %q}", o.Redis, o.Prefix)
	}
	issuer := (&url.URL{Scheme: "http", Host: o.Listen}).String()
	cfg := fmt.Sprintf(`# Written by watashi load setup: a provider for load tests only. Its CAs
# are simulators; never point residents at it.
issuer: %s
dev: true
listen: %s
telemetry_listen: %s
# The tool gives every simulated browser its own address.
trusted_proxies: [127.0.0.1/32, "::1/128"]
%s
secrets:
  pairwise_key_file: pairwise.key
  token_key_file: token.key
  cookie_key_file: cookie.key
  kek_file: kek.key
pki:
  anchors: [%s]
  # The simulator CAs' OCSP responders live in no process here; in
  # production an answer is cached and costs a login nothing.
  revocation: {mode: "off"}
log: {level: warn}
clients:
  - client_id: %s
    display_name: Load test (secret)
    token_endpoint_auth_method: client_secret_basic
    client_secret_file: %s
    redirect_uris: [%s]
    scopes: [offline_access, name, birthdate, gender, address]
  - client_id: %s
    display_name: Load test (key)
    token_endpoint_auth_method: private_key_jwt
    jwks_file: %s
    redirect_uris: [%s]
    scopes: [offline_access, name, birthdate, gender, address]
`, issuer, o.Listen, o.Telemetry, st, strings.Join(anchors, ", "),
		ClientBasic, secretFile, RedirectURI, ClientJWT, clientJWKS, RedirectURI)
	return write(o.Dir, ConfigFile, []byte(cfg))
}

func write(dir, name string, b []byte) error {
	return os.WriteFile(filepath.Join(dir, name), b, 0o600)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
