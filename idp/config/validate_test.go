package config

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/store"
)

// Under --dev a memory store may go without a KEK (the provider makes one
// for the process); a Redis store may not, as its records would be
// unreadable after a restart.
func TestConfigDevKEK(t *testing.T) {
	for _, tc := range []struct {
		store string
		want  string
	}{
		{"type: memory", ""},
		{"type: redis\n  redis: {addrs: [\"127.0.0.1:6379\"]}", "secrets.kek_file: required with a redis store, also under --dev"},
	} {
		c, err := parseConfig([]byte("issuer: http://127.0.0.1:8080\ndev: true\nstore:\n  "+tc.store+"\npki:\n  revocation:\n    mode: \"off\"\n"), t.TempDir(), noEnv)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Validate(true)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.HasPrefix(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.store, err, tc.want)
		}
		if r, err := c.KEK(true); tc.want == "" && (r != nil || err != nil) {
			t.Errorf("KEK of a dev memory config: %v %v", r, err)
		}
		if _, err := c.RequireKEK(true); err == nil {
			t.Errorf("%s: RequireKEK without a KEK", tc.store)
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
		{name: "wait replicas below -1", mutate: func(c *Config) { c.Store.Redis.WaitReplicas = -2 }, path: "store.redis.wait_replicas: must be -1"},
		{name: "wait replicas absurd", mutate: func(c *Config) { c.Store.Redis.WaitReplicas = 17 }, path: "store.redis.wait_replicas: 17 replicas: at most 16"},
		{name: "wait timeout negative", mutate: func(c *Config) { c.Store.Redis.WaitTimeout = -time.Second }, path: "store.redis.wait_timeout: must not be negative"},
		{name: "wait timeout not below timeout", mutate: func(c *Config) { c.Store.Redis.WaitReplicas = 1; c.Store.Redis.WaitTimeout = 3 * time.Second }, path: "store.redis.wait_timeout: 3s must be below store.redis.timeout (3s)"},
		{name: "sentinel waits past the default timeout", mutate: func(c *Config) {
			c.Store.Redis.MasterName, c.Store.Redis.Timeout, c.Store.Redis.WaitTimeout = "mymaster", 0, 2*time.Second
		}, path: "store.redis.wait_timeout: 2s must be below store.redis.timeout (2s)"},
		{name: "redis tls settings while disabled", mutate: func(c *Config) { c.Store.Redis.TLS.CAFile = "/x" }, path: "store.redis.tls.enabled:"},
		{name: "redis tls missing ca", mutate: func(c *Config) { c.Store.Redis.TLS = RedisTLSConfig{Enabled: true, CAFile: "/nonexistent/ca.pem"} }, path: "store.redis.tls: ca_file:"},
		{name: "missing pairwise key", mutate: func(c *Config) { c.Secrets.PairwiseKeyFile = "" }, path: "secrets.pairwise_key: required outside --dev", devOK: true},
		{name: "missing token key", mutate: func(c *Config) { c.Secrets.TokenKeyFile = "" }, path: "secrets.token_key: required", devOK: true},
		{name: "short cookie key", mutate: func(c *Config) { c.Secrets.CookieKey = strings.Repeat("ab", 31) }, path: "secrets.cookie_key: must be at least 32 bytes, got 31"},
		{name: "long token key", mutate: func(c *Config) { c.Secrets.TokenKeyFile = ""; c.Secrets.TokenKey = strings.Repeat("ab", 33) }, path: "secrets.token_key: must be exactly 32 bytes, got 33"},
		{name: "garbage key", mutate: func(c *Config) { c.Secrets.CookieKey = "not a key!" }, path: "secrets.cookie_key: is neither hex nor base64"},
		{name: "key inline and file", mutate: func(c *Config) { c.Secrets.PairwiseKey = strings.Repeat("ab", 32) }, path: "secrets.pairwise_key: set the key or its _file"},
		{name: "missing key file", mutate: func(c *Config) { c.Secrets.PairwiseKeyFile = filepath.Join(f.dir, "nope.key") }, path: "secrets.pairwise_key: open"},
		{name: "missing kek", mutate: func(c *Config) { c.Secrets.KEKFile = ""; c.Secrets.PreviousKEKFiles = nil }, path: "secrets.kek_file: required outside --dev"},
		{name: "previous kek without current", mutate: func(c *Config) { c.Secrets.KEKFile = "" }, path: "secrets.kek_file: required when previous_kek_files is set"},
		{name: "kek file missing", mutate: func(c *Config) { c.Secrets.KEKFile = filepath.Join(f.dir, "nope.key") }, path: "secrets.kek_file: open"},
		{name: "kek too short", mutate: func(c *Config) { c.Secrets.KEKFile = filepath.Join(f.dir, "short.kek") }, path: "secrets.kek_file: must be exactly 32 bytes, got 16",
			setupFS: func(dir string) {
				os.WriteFile(filepath.Join(dir, "short.kek"), []byte(strings.Repeat("ab", 16)), 0o600)
			}},
		{name: "kek not encoded", mutate: func(c *Config) { c.Secrets.KEKFile = filepath.Join(f.dir, "words.kek") }, path: "secrets.kek_file: is neither hex nor base64",
			setupFS: func(dir string) {
				os.WriteFile(filepath.Join(dir, "words.kek"), []byte("correct horse battery staple!"), 0o600)
			}},
		{name: "previous kek is the current", mutate: func(c *Config) { c.Secrets.PreviousKEKFiles = []string{c.Secrets.KEKFile} }, path: "secrets.previous_kek_files[0]: is the same key as secrets.kek_file"},
		{name: "previous kek twice", mutate: func(c *Config) {
			c.Secrets.PreviousKEKFiles = append(c.Secrets.PreviousKEKFiles, c.Secrets.PreviousKEKFiles[0])
		},
			path: "secrets.previous_kek_files[1]: is the same key as secrets.previous_kek_files[0]"},
		{name: "previous kek missing", mutate: func(c *Config) { c.Secrets.PreviousKEKFiles = []string{filepath.Join(f.dir, "gone.key")} }, path: "secrets.previous_kek_files[0]: open"},
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
		{name: "facts monitor interval too short", mutate: func(c *Config) { c.FactsMonitor.Interval = time.Second }, path: "facts_monitor.interval:"},
		{name: "facts monitor without sources", mutate: func(c *Config) {
			c.FactsMonitor.Enabled = true // OCSP responders, but not allowed, and no CRL
			c.PKI.Revocation.CRLs = nil
		}, path: "facts_monitor.enabled:"},
		{name: "facts monitor OCSP without responders", mutate: func(c *Config) { c.FactsMonitor.Enabled, c.FactsMonitor.OCSP = true, true; c.PKI.Revocation.OCSP = nil }, path: "facts_monitor.ocsp:"},
		{name: "http backchannel logout uri", mutate: func(c *Config) { c.Clients[0].BackchannelLogoutURI = "http://rp.example.com/bcl" }, path: "clients[0].backchannel_logout_uri:", devOK: true},
		{name: "backchannel logout uri with fragment", mutate: func(c *Config) { c.Clients[0].BackchannelLogoutURI = "https://rp.example.com/bcl#x" }, path: "clients[0].backchannel_logout_uri:"},
		{name: "http policy uri", mutate: func(c *Config) { c.Clients[0].PolicyURI = "http://rp.example.com/privacy" }, path: "clients[0].policy_uri: must be an https URL", devOK: true},
		{name: "relative policy uri", mutate: func(c *Config) { c.Clients[0].PolicyURI = "/privacy" }, path: "clients[0].policy_uri:"},
		{name: "http logo uri", mutate: func(c *Config) { c.Clients[0].LogoURI = "http://rp.example.com/logo.png" }, path: "clients[0].logo_uri: must be an https URL", devOK: true},
		{name: "relative logo uri", mutate: func(c *Config) { c.Clients[0].LogoURI = "/logo.png" }, path: "clients[0].logo_uri:"},
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

		// Malformed values and boundaries, refused with or without --dev.
		{name: "listen without port", mutate: func(c *Config) { c.Listen = ":" }, path: "listen: \":\" is not host:port"},
		{name: "bad telemetry listen", mutate: func(c *Config) { c.TelemetryListen = "localhost" }, path: "telemetry_listen: \"localhost\" is not host:port"},
		{name: "issuer with user info", mutate: func(c *Config) { c.Issuer = "https://admin@id.example.jp" }, path: "issuer: must not have a query, fragment or user info"},
		{name: "issuer ftp", mutate: func(c *Config) { c.Issuer = "ftp://id.example.jp" }, path: "issuer: must be an absolute https URL"},
		{name: "negative redis db", mutate: func(c *Config) { c.Store.Redis.DB = -1 }, path: "store.redis.db: must not be negative"},
		{name: "negative redis timeout", mutate: func(c *Config) { c.Store.Redis.Timeout = -time.Second }, path: "store.redis.timeout: must not be negative"},
		{name: "redis password file missing", mutate: func(c *Config) { c.Store.Redis.PasswordFile = filepath.Join(f.dir, "nope.pass") }, path: "store.redis.password_file: open"},
		{name: "redis password file empty", mutate: func(c *Config) { c.Store.Redis.PasswordFile = filepath.Join(f.dir, "empty.pass") }, path: "store.redis.password_file: ",
			setupFS: func(dir string) { os.WriteFile(filepath.Join(dir, "empty.pass"), []byte("\n"), 0o600) }},
		{name: "redis tls cert without key", mutate: func(c *Config) {
			c.Store.Redis.TLS = RedisTLSConfig{Enabled: true, CertFile: filepath.Join(f.dir, "ca.pem")}
		}, path: "store.redis.tls: cert_file and key_file go together"},
		{name: "redis tls ca not pem", mutate: func(c *Config) {
			c.Store.Redis.TLS = RedisTLSConfig{Enabled: true, CAFile: filepath.Join(f.dir, "redis.pass")}
		}, path: "store.redis.tls: ca_file: no PEM certificate found"},
		{name: "redis tls key not matching", mutate: func(c *Config) {
			c.Store.Redis.TLS = RedisTLSConfig{Enabled: true, CertFile: filepath.Join(f.dir, "ca.pem"), KeyFile: filepath.Join(f.dir, "redis.pass")}
		}, path: "store.redis.tls: client certificate:"},
		{name: "missing intermediate", mutate: func(c *Config) { c.PKI.Intermediates = []string{filepath.Join(f.dir, "nope.pem")} }, path: "pki.intermediates[0]: open"},
		{name: "intermediate not a certificate", mutate: func(c *Config) { c.PKI.Intermediates = []string{filepath.Join(f.dir, "redis.pass")} }, path: "pki.intermediates[0]:"},
		{name: "oid with leading zero", mutate: func(c *Config) { c.PKI.SignaturePolicyOIDs = []string{"1.02.3"} }, path: "pki.signature_policy_oids[0]: \"1.02.3\" is not a dotted OID"},
		{name: "oid with a bad first arc", mutate: func(c *Config) { c.PKI.AuthenticationPolicyOIDs = []string{"3.1"} }, path: "pki.authentication_policy_oids[0]:"},
		{name: "oid of one arc", mutate: func(c *Config) { c.PKI.AuthenticationPolicyOIDs = []string{"1"} }, path: "pki.authentication_policy_oids[0]:"},
		{name: "negative leeway", mutate: func(c *Config) { c.PKI.Leeway = -time.Second }, path: "pki.leeway: must be between 0 and 1h"},
		{name: "leeway just over 1h", mutate: func(c *Config) { c.PKI.Leeway = time.Hour + time.Second }, path: "pki.leeway:"},
		{name: "negative revocation timeout", mutate: func(c *Config) { c.PKI.Revocation.Timeout = -time.Second }, path: "pki.revocation.timeout: must not be negative"},
		{name: "prefer without sources", mutate: func(c *Config) { c.PKI.Revocation = RevocationConfig{Mode: "prefer"} }, path: "pki.revocation: mode prefer needs"},
		{name: "crl without location", mutate: func(c *Config) { c.PKI.Revocation.CRLs[0].Location = "" }, path: "pki.revocation.crls[0].location: required"},
		{name: "crl url without host", mutate: func(c *Config) { c.PKI.Revocation.CRLs[1].Location = "https:///auth.crl" }, path: "pki.revocation.crls[1].location: \"https:///auth.crl\" is not a valid URL"},
		{name: "crl issuer missing", mutate: func(c *Config) { c.PKI.Revocation.CRLs[1].Issuer = filepath.Join(f.dir, "nope.pem") }, path: "pki.revocation.crls[1].issuer: open"},
		{name: "ocsp ftp", mutate: func(c *Config) { c.PKI.Revocation.OCSP = []string{"ftp://ocsp.example.jp/"} }, path: "pki.revocation.ocsp[0]: \"ftp://ocsp.example.jp/\" is not an http(s) URL"},
		{name: "cors not an origin", mutate: func(c *Config) { c.CORSAllowedOrigins = []string{"spa.example.com"} }, path: "cors_allowed_origins[0]: \"spa.example.com\" is not an origin"},
		{name: "cors with user info", mutate: func(c *Config) { c.CORSAllowedOrigins = []string{"https://u@spa.example.com"} }, path: "cors_allowed_origins[0]: \"https://u@spa.example.com\": an origin has no path"},
		{name: "cors with trailing slash", mutate: func(c *Config) { c.CORSAllowedOrigins = []string{"https://spa.example.com/"} }, path: "cors_allowed_origins[0]:"},
		{name: "empty client id", mutate: func(c *Config) { c.Clients[1].ID = "" }, path: "clients[1].client_id: \"\": 1-128 characters"},
		{name: "client id too long", mutate: func(c *Config) { c.Clients[1].ID = strings.Repeat("a", 129) }, path: "clients[1].client_id:"},
		{name: "no redirect uris", mutate: func(c *Config) { c.Clients[1].RedirectURIs = nil }, path: "clients[1].redirect_uris: at least one is required"},
		{name: "relative redirect", mutate: func(c *Config) { c.Clients[1].RedirectURIs = []string{"/oidc"} }, path: "clients[1].redirect_uris[0]: \"/oidc\" is not an absolute URI"},
		{name: "https redirect without host", mutate: func(c *Config) { c.Clients[1].RedirectURIs = []string{"https:///oidc"} }, path: "clients[1].redirect_uris[0]: has no host"},
		{name: "native scheme without a dot", mutate: func(c *Config) { c.Clients[2].RedirectURIs = []string{"myapp:/cb"} }, path: "clients[2].redirect_uris[0]: scheme \"myapp\""},
		{name: "native post logout public http", mutate: func(c *Config) { c.Clients[2].PostLogout = []string{"http://app.example.com/"} }, path: "clients[2].post_logout_redirect_uris[0]: must be https outside --dev (native", devOK: true},
		{name: "client secret file missing", mutate: func(c *Config) { c.Clients[0].ClientSecretFile = filepath.Join(f.dir, "nope.secret") }, path: "clients[0].client_secret_file: open"},
		{name: "client secret file and hash", mutate: func(c *Config) { c.Clients[0].ClientSecretHash = "sha256:abc" }, path: "clients[0].client_secret_file: set client_secret_file or client_secret_hash, not both"},
		{name: "keys for a secret client", mutate: func(c *Config) { c.Clients[0].JWKSFile = filepath.Join(f.dir, "jwt.jwks") }, path: "clients[0].jwks_file: keys are only used with private_key_jwt"},
		{name: "jwks not json", mutate: func(c *Config) { c.Clients[1].JWKSFile = filepath.Join(f.dir, "redis.pass") }, path: "clients[1].jwks_file: " + filepath.Join(f.dir, "redis.pass") + ": not a JWK Set"},
		{name: "jwks without keys", mutate: func(c *Config) { c.Clients[1].JWKSFile = filepath.Join(f.dir, "empty.jwks") }, path: "clients[1].jwks_file: " + filepath.Join(f.dir, "empty.jwks") + ": no keys",
			setupFS: func(dir string) { os.WriteFile(filepath.Join(dir, "empty.jwks"), []byte(`{"keys":[]}`), 0o600) }},
		{name: "jwks file missing", mutate: func(c *Config) { c.Clients[1].JWKSFile = filepath.Join(f.dir, "nope.jwks") }, path: "clients[1].jwks_file: open"},
		{name: "empty scope", mutate: func(c *Config) { c.Clients[0].Scopes = []string{"", "birthdate"} }, path: "clients[0].scopes[0]: \"\" is not a scope token"},
		{name: "scope with a quote", mutate: func(c *Config) { c.Clients[0].Scopes = []string{"birthdate", `na"me`} }, path: "clients[0].scopes[1]:"},
		{name: "ftp sector uri", mutate: func(c *Config) { c.Clients[0].SectorIdentifierURI = "ftp://rp.example.com/sector.json" }, path: "clients[0].sector_identifier_uri: must be an https URL"},
		{name: "ftp policy uri", mutate: func(c *Config) { c.Clients[0].PolicyURI = "ftp://rp.example.com/privacy" }, path: "clients[0].policy_uri:"},
		{name: "negative access token ttl", mutate: func(c *Config) { c.TTLs.AccessToken = -time.Second }, path: "ttls.access_token: must not be negative"},
		{name: "transaction as long as request", mutate: func(c *Config) { c.TTLs.Transaction = c.TTLs.AuthRequest }, path: "ttls.transaction: must be shorter"},
		{name: "request no longer than default transaction", mutate: func(c *Config) { c.TTLs.AuthRequest = 5 * time.Minute; c.TTLs.Transaction = 0 }, path: "ttls.transaction: must be shorter than ttls.auth_request (5m0s)"},
		{name: "code ttl just over 10m", mutate: func(c *Config) { c.TTLs.Code = 10*time.Minute + time.Second }, path: "ttls.code: must be at most 10m"},
		{name: "key rotation just under 1h", mutate: func(c *Config) { c.KeyRotation = time.Hour - time.Second }, path: "key_rotation:"},
		{name: "trust every ipv6 client", mutate: func(c *Config) { c.TrustedProxies = []string{"::/0"} }, path: "trusted_proxies: \"::/0\" would trust"},
		{name: "proxy prefix out of range", mutate: func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/33"} }, path: "trusted_proxies: \"10.0.0.0/33\" is neither"},
		{name: "ip header with a colon", mutate: func(c *Config) { c.ClientIPHeader = "X-Real-IP:" }, path: "client_ip_header:"},
		{name: "template dir is a file", mutate: func(c *Config) { c.TemplateDir = filepath.Join(f.dir, "redis.pass") }, path: "template_dir: " + filepath.Join(f.dir, "redis.pass") + " is not a directory"},
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

// TestConfigBoundariesAccepted: the values at the edge of each refusal
// above, so that a rule is not stricter than it says.
func TestConfigBoundariesAccepted(t *testing.T) {
	f := newConfigFixture(t)
	tests := []struct {
		name   string
		mutate func(c *Config)
	}{
		{"code ttl of 10m", func(c *Config) { c.TTLs.Code = 10 * time.Minute }},
		{"transaction a second shorter than the request", func(c *Config) { c.TTLs.Transaction = c.TTLs.AuthRequest - time.Second }},
		{"leeway of 1h", func(c *Config) { c.PKI.Leeway = time.Hour }},
		{"no leeway", func(c *Config) { c.PKI.Leeway = 0 }},
		{"key rotation of 1h", func(c *Config) { c.KeyRotation = time.Hour }},
		{"key rotation disabled", func(c *Config) { c.KeyRotation = -1 }},
		{"both listeners on port 0", func(c *Config) { c.Listen, c.TelemetryListen = "127.0.0.1:0", "127.0.0.1:0" }},
		{"proxy by ipv6 address and mapped ipv4", func(c *Config) { c.TrustedProxies = []string{"2001:db8::1", "::ffff:192.0.2.1", "fd00::/8"} }},
		{"log level in capitals", func(c *Config) { c.Log.Level = "WARNING" }},
		{"crl url scheme in capitals", func(c *Config) { c.PKI.Revocation.CRLs[1].Location = "HTTPS://crl.example.jp/auth.crl" }},
		{"plain http ocsp", func(c *Config) { c.PKI.Revocation.OCSP = []string{"http://ocsp.example.jp/"} }},
		{"ocsp only", func(c *Config) { c.PKI.Revocation.CRLs = nil }},
		{"cors origin with port", func(c *Config) { c.CORSAllowedOrigins = []string{"https://spa.example.com:8443"} }},
		{"client id of 128 characters", func(c *Config) { c.Clients[1].ID = strings.Repeat("a", 128) }},
		{"sentinel with a database", func(c *Config) {
			c.Store.Redis.Addrs = []string{"s1:26379", "s2:26379"}
			c.Store.Redis.MasterName = "mymaster"
			c.Store.Redis.DB = 3
		}},
		{"cluster that never waits", func(c *Config) { c.Store.Redis.Addrs = []string{"a:1", "b:1"}; c.Store.Redis.WaitReplicas = -1 }},
		{"two replicas, wait just below the timeout", func(c *Config) {
			c.Store.Redis.WaitReplicas, c.Store.Redis.WaitTimeout = 2, 3*time.Second-time.Millisecond
		}},
		{"standalone: a wait timeout that is never used", func(c *Config) { c.Store.Redis.WaitTimeout = time.Minute }},
		{"secret by hash", func(c *Config) {
			h, err := clients.HashSecret("a-long-enough-client-secret")
			if err != nil {
				t.Fatal(err)
			}
			c.Clients[0].ClientSecretFile = ""
			c.Clients[0].ClientSecretHash = h
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.parse(t, f.yaml, nil)
			tt.mutate(c)
			if err := c.Validate(false); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
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

func TestConfigNotify(t *testing.T) {
	f := newConfigFixture(t)
	writeFile(t, f.dir, "smtp.password", []byte("s3cret\n"))
	writeFile(t, f.dir, "bad.pem", []byte("not a certificate\n"))
	relay := "enabled: true\n  smtp:\n    host: smtp.example.jp\n    port: 587\n    from: no-reply@id.example.jp\n"
	tests := []struct {
		name    string
		section string
		want    []string
	}{
		{"no relay", "enabled: true", []string{"notify.smtp.host:", "notify.smtp.port:", "notify.smtp.from:"}},
		{"clear text", relay + "    tls: none", []string{"notify.smtp.tls: none sends residents' mail in the clear"}},
		{"unknown tls", relay + "    tls: ssl", []string{"notify.smtp.tls: \"ssl\" is not starttls"}},
		{"user without password file", relay + "    username: watashi", []string{"notify.smtp.username: and smtp.password_file go together"}},
		{"missing password file", relay + "    username: watashi\n    password_file: nope", []string{"notify.smtp.password_file:"}},
		{"from with a display name", "enabled: true\n  smtp:\n    host: smtp.example.jp\n    port: 587\n    from: \"Watashi <no-reply@id.example.jp>\"", []string{"notify.smtp.from:"}},
		{"bad CA file", relay + "    ca_file: bad.pem", []string{"notify.smtp.ca_file: holds no PEM certificate"}},
		{"long timeout", relay + "    timeout: 1h", []string{"notify.smtp.timeout:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := f.parse(t, f.yaml+"notify:\n  "+tc.section+"\n", nil)
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
	t.Run("valid, and clear text under --dev", func(t *testing.T) {
		c := f.parse(t, f.yaml+"notify:\n  "+relay+"    username: watashi\n    password_file: smtp.password\n", nil)
		if err := c.Validate(false); err != nil {
			t.Fatal(err)
		}
		c = f.parse(t, f.yaml+"notify:\n  "+relay+"    tls: none\n", nil)
		if err := c.Validate(true); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("environment", func(t *testing.T) {
		c := f.parse(t, f.yaml, map[string]string{"WATASHI_NOTIFY_ENABLED": "true", "WATASHI_NOTIFY_SMTP_HOST": "relay.example.jp",
			"WATASHI_NOTIFY_SMTP_PORT": "465", "WATASHI_NOTIFY_SMTP_TLS": "implicit", "WATASHI_NOTIFY_SMTP_FROM": "a@example.jp"})
		if err := c.Validate(false); err != nil || !c.Notify.Enabled || c.Notify.SMTP.Port != 465 {
			t.Fatalf("%v %+v", err, c.Notify)
		}
	})
}
