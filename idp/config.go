package idp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/whitelist"
	"gopkg.in/yaml.v3"
)

// Config is the operator's YAML file (see docs/operator-guide.md and
// deploy/watashi.example.yaml). It is only data: Validate reports what is
// wrong with it, Options turns it into running parts. Relative paths in
// the file are resolved against the file's directory, so that a config
// and its secrets can move together.
type Config struct {
	// Issuer is the exact issuer URL RPs configure (https, no trailing
	// slash).
	Issuer string `yaml:"issuer"`
	// Listen is the public address (default ":8080").
	Listen string `yaml:"listen"`
	// TelemetryListen serves /healthz, /readyz and /metrics (default
	// "127.0.0.1:9090"); keep it off the public network.
	TelemetryListen string `yaml:"telemetry_listen"`
	// Dev declares a development config. It is refused unless the
	// process was started with --dev, so that a dev config copied to a
	// server fails loudly instead of running with relaxed rules.
	Dev bool `yaml:"dev"`

	Store   StoreConfig    `yaml:"store"`
	Secrets SecretsConfig  `yaml:"secrets"`
	PKI     PKIConfig      `yaml:"pki"`
	Clients []ClientConfig `yaml:"clients"`
	// Whitelist is the relying-party registry with dynamic registration
	// (docs/integrators.md); off by default.
	Whitelist WhitelistConfig `yaml:"whitelist"`
	TTLs      TTLConfig       `yaml:"ttls"`
	// KeyRotation is the signing key rotation period (default 720h;
	// negative disables scheduled rotation).
	KeyRotation time.Duration `yaml:"key_rotation"`
	// CORSAllowedOrigins may call the token, userinfo and revocation
	// endpoints from a browser (SPAs).
	CORSAllowedOrigins []string `yaml:"cors_allowed_origins"`
	// TemplateDir overrides the embedded login templates.
	TemplateDir string `yaml:"template_dir"`
	// TrustedProxies are CIDR prefixes (or addresses) of reverse proxies
	// whose ClientIPHeader is believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ClientIPHeader is the header those proxies set (default
	// X-Forwarded-For).
	ClientIPHeader string    `yaml:"client_ip_header"`
	Log            LogConfig `yaml:"log"`

	logOutput io.Writer // SetLogOutput; default os.Stderr
}

// SetLogOutput sends the logs of the Options' logger to w (default
// standard error), for commands that own their output streams and tests.
func (c *Config) SetLogOutput(w io.Writer) { c.logOutput = w }

// StoreConfig selects the storage backend.
type StoreConfig struct {
	// Type is memory (--dev only: forgets everything on restart) or redis.
	Type  string      `yaml:"type"`
	Redis RedisConfig `yaml:"redis"`
}

// RedisConfig is one Redis deployment: one address is standalone,
// several are a Cluster seed list, master_name selects Sentinel (the
// addresses are then the sentinels').
type RedisConfig struct {
	Addrs        []string       `yaml:"addrs"`
	MasterName   string         `yaml:"master_name"`
	Username     string         `yaml:"username"`
	Password     string         `yaml:"password"`
	PasswordFile string         `yaml:"password_file"`
	DB           int            `yaml:"db"`
	TLS          RedisTLSConfig `yaml:"tls"`
	Prefix       string         `yaml:"prefix"`
	// Timeout bounds each command (default 2s).
	Timeout time.Duration `yaml:"timeout"`
}

// RedisTLSConfig enables TLS to Redis, optionally with a private CA and a
// client certificate.
type RedisTLSConfig struct {
	Enabled    bool   `yaml:"enabled"`
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// SecretsConfig holds the three keys, each inline or (better) from a
// file, hex or base64 encoded.
type SecretsConfig struct {
	// PairwiseKey derives every pairwise sub: durable, never rotate it
	// casually (>= 32 bytes).
	PairwiseKey     string `yaml:"pairwise_key"`
	PairwiseKeyFile string `yaml:"pairwise_key_file"`
	// TokenKey encrypts codes and opaque access tokens (exactly 32 bytes).
	TokenKey     string `yaml:"token_key"`
	TokenKeyFile string `yaml:"token_key_file"`
	// CookieKey authenticates cookies and CSRF tokens (>= 32 bytes).
	CookieKey     string `yaml:"cookie_key"`
	CookieKeyFile string `yaml:"cookie_key_file"`
}

// PKIConfig is the certificate verification policy.
type PKIConfig struct {
	// Anchors are PEM/DER files or folders; empty means the J-LIS roots
	// compiled into the binary.
	Anchors       []string `yaml:"anchors"`
	Intermediates []string `yaml:"intermediates"`
	// SignaturePolicyOIDs and AuthenticationPolicyOIDs replace the card
	// policy OIDs (smartphone certificates may carry others).
	SignaturePolicyOIDs      []string         `yaml:"signature_policy_oids"`
	AuthenticationPolicyOIDs []string         `yaml:"authentication_policy_oids"`
	AllowSHA1                bool             `yaml:"allow_sha1"`
	Revocation               RevocationConfig `yaml:"revocation"`
	// Leeway tolerates clock skew at certificate validity bounds.
	Leeway time.Duration `yaml:"leeway"`
}

// RevocationConfig names the revocation sources. JPKI certificates carry
// no usable CRL or OCSP location, so these are configuration.
type RevocationConfig struct {
	// Mode is require (default), prefer or off (--dev only).
	Mode string      `yaml:"mode"`
	CRLs []CRLConfig `yaml:"crls"`
	// OCSP are responder URLs, asked before the CRLs.
	OCSP []string `yaml:"ocsp"`
	// Timeout bounds one CRL download or OCSP query (defaults 10s / 5s).
	Timeout time.Duration `yaml:"timeout"`
}

// CRLConfig is one CRL: a file path or http(s) URL, optionally pinned to
// its issuer certificate. Unpinned CRLs are paired with the anchor that
// signed them on first fetch. In YAML either a plain string (the
// location) or a mapping {location, issuer}.
type CRLConfig struct {
	Location string `yaml:"location"`
	Issuer   string `yaml:"issuer"`
}

// UnmarshalYAML accepts both forms. It checks the mapping's keys itself,
// because a nested Decode would not inherit the strict decoder's
// unknown-field check.
func (c *CRLConfig) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		c.Location = n.Value
		return nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: crl %s must be a string", v.Line, k.Value)
			}
			switch k.Value {
			case "location":
				c.Location = v.Value
			case "issuer":
				c.Issuer = v.Value
			default:
				return fmt.Errorf("line %d: field %s not found in a crl entry (want location, issuer)", k.Line, k.Value)
			}
		}
		return nil
	}
	return fmt.Errorf("line %d: a crl entry is a location string or a {location, issuer} mapping", n.Line)
}

// ClientConfig is a static relying party: the Client fields plus where
// its credentials come from.
type ClientConfig struct {
	Client `yaml:",inline"`
	// ClientSecretFile holds the plain secret (client_secret_basic); it
	// is hashed at start-up and never kept.
	ClientSecretFile string `yaml:"client_secret_file"`
	// ClientSecretHash is the output of HashClientSecret, for operators
	// who do not want the plain secret on the server at all.
	ClientSecretHash string `yaml:"client_secret_hash"`
	// JWKSFile holds the client's public keys (private_key_jwt).
	JWKSFile string `yaml:"jwks_file"`
}

// WhitelistConfig turns on the relying-party registry: clients that
// integrators register at /register (with an initial access token from
// `watashi client token issue`) and operators approve, next to the static
// clients above. It lives in the store, so every node and the `watashi
// client` commands share it.
type WhitelistConfig struct {
	Enabled bool `yaml:"enabled"`
	// Tiers replaces the default tier catalogue (basic, standard, full).
	Tiers []whitelist.Tier `yaml:"tiers"`
	// AdminListen is the separate listener of the operators' HTTP API
	// (off unless both it and AdminTokenHashFile are set).
	AdminListen string `yaml:"admin_listen"`
	// AdminTokenHashFile holds the SHA-256 of the admin bearer token, as
	// `watashi client admin-token` prints it.
	AdminTokenHashFile string `yaml:"admin_token_hash_file"`
	// TrustedSoftwareStatementIssuers may vouch for an RP's metadata with
	// a signed software statement (RFC 7591 §2.3).
	TrustedSoftwareStatementIssuers []TrustedIssuerConfig `yaml:"trusted_software_statement_issuers"`
	// RequireSoftwareStatement refuses registrations without one.
	RequireSoftwareStatement bool `yaml:"require_software_statement"`
}

// TrustedIssuerConfig is a software statement issuer and the file with
// its public JWKS.
type TrustedIssuerConfig struct {
	Issuer   string `yaml:"issuer"`
	JWKSFile string `yaml:"jwks_file"`
}

// TTLConfig overrides the lifetimes (zero: the defaults in Options).
type TTLConfig struct {
	AuthRequest  time.Duration `yaml:"auth_request"`
	Transaction  time.Duration `yaml:"transaction"`
	Code         time.Duration `yaml:"code"`
	AccessToken  time.Duration `yaml:"access_token"`
	RefreshToken time.Duration `yaml:"refresh_token"`
	IDToken      time.Duration `yaml:"id_token"`
	Session      time.Duration `yaml:"session"`
	// FactsRecheck is how old a revocation check of the facts' source
	// certificate may be before consent checks it again (default 1h).
	FactsRecheck time.Duration `yaml:"facts_recheck"`
}

// LogConfig selects the log level (debug, info, warn, error) and format
// (json or text).
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Defaults for the listeners.
const (
	DefaultListen          = ":8080"
	DefaultTelemetryListen = "127.0.0.1:9090"
	maxConfigBytes         = 1 << 20
	maxSecretFileBytes     = 64 << 10
)

// LoadConfig reads a YAML config strictly (an unknown or misspelt field
// is an error, not a silently ignored setting) and applies the WATASHI_*
// environment overrides. It does not validate; call Validate.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("config: %s is larger than %d bytes", path, maxConfigBytes)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parseConfig(data, dir, os.LookupEnv)
}

func parseConfig(data []byte, dir string, lookupEnv func(string) (string, bool)) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	c := &Config{}
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config: the file is empty")
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("config: more than one YAML document")
	}
	c.resolvePaths(dir)
	if err := c.applyEnv(lookupEnv); err != nil {
		return nil, err
	}
	return c, nil
}

// resolvePaths makes the file's relative paths relative to its directory.
// URLs (CRL locations) are left alone.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) && !strings.Contains(*p, "://") {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Store.Redis.PasswordFile)
	abs(&c.Store.Redis.TLS.CAFile)
	abs(&c.Store.Redis.TLS.CertFile)
	abs(&c.Store.Redis.TLS.KeyFile)
	abs(&c.Secrets.PairwiseKeyFile)
	abs(&c.Secrets.TokenKeyFile)
	abs(&c.Secrets.CookieKeyFile)
	for i := range c.PKI.Anchors {
		abs(&c.PKI.Anchors[i])
	}
	for i := range c.PKI.Intermediates {
		abs(&c.PKI.Intermediates[i])
	}
	for i := range c.PKI.Revocation.CRLs {
		abs(&c.PKI.Revocation.CRLs[i].Location)
		abs(&c.PKI.Revocation.CRLs[i].Issuer)
	}
	for i := range c.Clients {
		abs(&c.Clients[i].ClientSecretFile)
		abs(&c.Clients[i].JWKSFile)
	}
	abs(&c.Whitelist.AdminTokenHashFile)
	for i := range c.Whitelist.TrustedSoftwareStatementIssuers {
		abs(&c.Whitelist.TrustedSoftwareStatementIssuers[i].JWKSFile)
	}
	abs(&c.TemplateDir)
}

// envOverride is one WATASHI_* variable. Only scalar settings have one:
// there is deliberately no $VAR expansion inside the file (DESIGN.md §7).
type envOverride struct {
	name string
	set  func(c *Config, v string) error
}

func envString(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

// envSecret sets one form of a secret and clears the other, so that an
// override never leaves the file's form in place to conflict with it.
func envSecret(set, clear func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *set(c) = v; *clear(c) = ""; return nil }
}

func envDuration(p func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New("not a duration (e.g. 30s, 5m, 720h)")
		}
		*p(c) = d
		return nil
	}
}

// envOverrides is the complete list; docs/operator-guide.md documents
// each (a test checks that).
var envOverrides = []envOverride{
	{"WATASHI_ISSUER", envString(func(c *Config) *string { return &c.Issuer })},
	{"WATASHI_LISTEN", envString(func(c *Config) *string { return &c.Listen })},
	{"WATASHI_TELEMETRY_LISTEN", envString(func(c *Config) *string { return &c.TelemetryListen })},
	{"WATASHI_STORE_TYPE", envString(func(c *Config) *string { return &c.Store.Type })},
	{"WATASHI_REDIS_ADDRS", func(c *Config, v string) error {
		c.Store.Redis.Addrs = nil
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				c.Store.Redis.Addrs = append(c.Store.Redis.Addrs, a)
			}
		}
		return nil
	}},
	{"WATASHI_REDIS_MASTER_NAME", envString(func(c *Config) *string { return &c.Store.Redis.MasterName })},
	{"WATASHI_REDIS_USERNAME", envString(func(c *Config) *string { return &c.Store.Redis.Username })},
	{"WATASHI_REDIS_PASSWORD", envSecret(func(c *Config) *string { return &c.Store.Redis.Password }, func(c *Config) *string { return &c.Store.Redis.PasswordFile })},
	{"WATASHI_REDIS_PASSWORD_FILE", envSecret(func(c *Config) *string { return &c.Store.Redis.PasswordFile }, func(c *Config) *string { return &c.Store.Redis.Password })},
	{"WATASHI_REDIS_DB", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("not an integer")
		}
		c.Store.Redis.DB = n
		return nil
	}},
	{"WATASHI_REDIS_PREFIX", envString(func(c *Config) *string { return &c.Store.Redis.Prefix })},
	{"WATASHI_REDIS_TLS", func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("not a boolean (true or false)")
		}
		c.Store.Redis.TLS.Enabled = b
		return nil
	}},
	{"WATASHI_PAIRWISE_KEY", envSecret(func(c *Config) *string { return &c.Secrets.PairwiseKey }, func(c *Config) *string { return &c.Secrets.PairwiseKeyFile })},
	{"WATASHI_PAIRWISE_KEY_FILE", envSecret(func(c *Config) *string { return &c.Secrets.PairwiseKeyFile }, func(c *Config) *string { return &c.Secrets.PairwiseKey })},
	{"WATASHI_TOKEN_KEY", envSecret(func(c *Config) *string { return &c.Secrets.TokenKey }, func(c *Config) *string { return &c.Secrets.TokenKeyFile })},
	{"WATASHI_TOKEN_KEY_FILE", envSecret(func(c *Config) *string { return &c.Secrets.TokenKeyFile }, func(c *Config) *string { return &c.Secrets.TokenKey })},
	{"WATASHI_COOKIE_KEY", envSecret(func(c *Config) *string { return &c.Secrets.CookieKey }, func(c *Config) *string { return &c.Secrets.CookieKeyFile })},
	{"WATASHI_COOKIE_KEY_FILE", envSecret(func(c *Config) *string { return &c.Secrets.CookieKeyFile }, func(c *Config) *string { return &c.Secrets.CookieKey })},
	{"WATASHI_REVOCATION_MODE", envString(func(c *Config) *string { return &c.PKI.Revocation.Mode })},
	{"WATASHI_REVOCATION_TIMEOUT", envDuration(func(c *Config) *time.Duration { return &c.PKI.Revocation.Timeout })},
	{"WATASHI_KEY_ROTATION", envDuration(func(c *Config) *time.Duration { return &c.KeyRotation })},
	{"WATASHI_TEMPLATE_DIR", envString(func(c *Config) *string { return &c.TemplateDir })},
	{"WATASHI_CLIENT_IP_HEADER", envString(func(c *Config) *string { return &c.ClientIPHeader })},
	{"WATASHI_LOG_LEVEL", envString(func(c *Config) *string { return &c.Log.Level })},
	{"WATASHI_LOG_FORMAT", envString(func(c *Config) *string { return &c.Log.Format })},
}

// applyEnv applies every set, non-empty override. An empty variable is
// ignored, as systemd and container tooling often define them empty.
func (c *Config) applyEnv(lookup func(string) (string, bool)) error {
	var errs []error
	for _, e := range envOverrides {
		v, ok := lookup(e.name)
		if !ok || v == "" {
			continue
		}
		if err := e.set(c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.name, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return nil
}

// problems collects Validate's findings, each prefixed with its field
// path, so that an operator fixes everything in one round.
type problems []error

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (p problems) err() error { return errors.Join(p...) }

var oidPattern = regexp.MustCompile(`^[0-2](\.(0|[1-9][0-9]*))+$`)

// Validate reports every problem at once (errors.Join; each error is
// "field.path: what is wrong"). dev is the --dev flag: without it the
// production rules apply and a memory store, an http issuer, missing or
// short secrets, revocation off, permissive CORS and plain-http redirect
// URIs are refused.
func (c *Config) Validate(dev bool) error {
	var p problems
	if c.Dev && !dev {
		p.add("dev", "true requires the --dev flag")
	}
	c.validateIssuer(&p, dev)
	c.validateListen(&p)
	c.validateStore(&p, dev)
	c.validateSecrets(&p, dev)
	c.validatePKI(&p, dev)
	c.validateClients(&p, dev)
	c.validateWhitelist(&p, dev)
	c.validateTTLs(&p)
	c.validateWeb(&p, dev)
	return p.err()
}

func (c *Config) validateIssuer(p *problems, dev bool) {
	if c.Issuer == "" {
		p.add("issuer", "required")
		return
	}
	u, err := url.Parse(c.Issuer)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		p.add("issuer", "must be an absolute https URL")
	case u.Scheme != "https" && !dev:
		p.add("issuer", "must be https outside --dev")
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		p.add("issuer", "must not have a query, fragment or user info")
	case strings.HasSuffix(c.Issuer, "/"):
		p.add("issuer", "must not end with '/' (RPs compare it byte for byte)")
	}
}

func (c *Config) listenAddrs() (string, string) {
	l, t := c.Listen, c.TelemetryListen
	if l == "" {
		l = DefaultListen
	}
	if t == "" {
		t = DefaultTelemetryListen
	}
	return l, t
}

func (c *Config) validateListen(p *problems) {
	l, t := c.listenAddrs()
	for _, x := range []struct{ path, addr string }{{"listen", l}, {"telemetry_listen", t}} {
		if _, port, err := net.SplitHostPort(x.addr); err != nil || port == "" {
			p.add(x.path, "%q is not host:port", x.addr)
		}
	}
	if _, port, _ := net.SplitHostPort(l); l == t && port != "0" {
		p.add("telemetry_listen", "must differ from listen: metrics and health stay off the public listener")
	}
}

func (c *Config) validateStore(p *problems, dev bool) {
	switch c.Store.Type {
	case "", "memory":
		if !dev {
			p.add("store.type", "memory forgets accounts and keys on restart and is for --dev only; use redis")
		}
		return
	case "redis":
	default:
		p.add("store.type", "%q: want memory or redis", c.Store.Type)
		return
	}
	r := c.Store.Redis
	if len(r.Addrs) == 0 {
		p.add("store.redis.addrs", "at least one host:port is required")
	}
	for i, a := range r.Addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			p.add(fmt.Sprintf("store.redis.addrs[%d]", i), "%q is not host:port", a)
		}
	}
	if r.Password != "" && r.PasswordFile != "" {
		p.add("store.redis.password", "set password or password_file, not both")
	}
	if r.PasswordFile != "" {
		if _, err := readSecretFile(r.PasswordFile); err != nil {
			p.add("store.redis.password_file", "%v", err)
		}
	}
	if r.DB < 0 {
		p.add("store.redis.db", "must not be negative")
	}
	if r.DB != 0 && len(r.Addrs) > 1 && r.MasterName == "" {
		p.add("store.redis.db", "Redis Cluster has only database 0")
	}
	if r.Timeout < 0 {
		p.add("store.redis.timeout", "must not be negative")
	}
	t := r.TLS
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "") {
		p.add("store.redis.tls.enabled", "TLS settings are given but enabled is false")
	}
	if t.Enabled {
		if _, err := r.tlsConfig(); err != nil {
			p.add("store.redis.tls", "%v", err)
		}
	}
}

func (r RedisConfig) tlsConfig() (*tls.Config, error) {
	if !r.TLS.Enabled {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.TLS.ServerName}
	if r.TLS.CAFile != "" {
		pem, err := os.ReadFile(r.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("ca_file: no PEM certificate found")
		}
	}
	if (r.TLS.CertFile == "") != (r.TLS.KeyFile == "") {
		return nil, errors.New("cert_file and key_file go together")
	}
	if r.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(r.TLS.CertFile, r.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// secretSpec describes one of the three keys.
type secretSpec struct {
	path         string
	inline, file string
	min, max     int
}

func (c *Config) secretSpecs() []secretSpec {
	s := c.Secrets
	return []secretSpec{
		{"secrets.pairwise_key", s.PairwiseKey, s.PairwiseKeyFile, 32, 0},
		{"secrets.token_key", s.TokenKey, s.TokenKeyFile, 32, 32},
		{"secrets.cookie_key", s.CookieKey, s.CookieKeyFile, 32, 0},
	}
}

// load returns the key, nil when it is not configured. Errors never
// contain key material.
func (s secretSpec) load() ([]byte, error) {
	if s.inline != "" && s.file != "" {
		return nil, errors.New("set the key or its _file, not both")
	}
	raw := s.inline
	if s.file != "" {
		b, err := readSecretFile(s.file)
		if err != nil {
			return nil, err
		}
		raw = string(b)
	}
	if raw == "" {
		return nil, nil
	}
	key, err := decodeKey(raw)
	if err != nil {
		return nil, err
	}
	if len(key) < s.min || (s.max > 0 && len(key) > s.max) {
		if s.min == s.max {
			return nil, fmt.Errorf("must be exactly %d bytes, got %d", s.min, len(key))
		}
		return nil, fmt.Errorf("must be at least %d bytes, got %d", s.min, len(key))
	}
	return key, nil
}

// decodeKey reads hex (an even number of hex digits) or base64 (standard
// or URL alphabet, padded or not). Hex is tried first: every hex string
// is also valid base64, and `openssl rand -hex 32` is the documented way.
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s)%2 == 0 {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("is neither hex nor base64")
}

func readSecretFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSecretFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes; not a secret file", name, maxSecretFileBytes)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("%s: empty", name)
	}
	return b, nil
}

func (c *Config) validateSecrets(p *problems, dev bool) {
	for _, s := range c.secretSpecs() {
		key, err := s.load()
		switch {
		case err != nil:
			p.add(s.path, "%v", err)
		case key == nil && !dev:
			p.add(s.path, "required outside --dev (set %s_file or WATASHI_%s_FILE)", s.path, strings.ToUpper(strings.TrimPrefix(s.path, "secrets.")))
		}
	}
}

func (c *Config) validatePKI(p *problems, dev bool) {
	k := c.PKI
	if len(k.Anchors) > 0 {
		if _, err := pkibridge.LoadAnchors(k.Anchors...); err != nil {
			p.add("pki.anchors", "%v", err)
		}
	}
	for i, f := range k.Intermediates {
		if _, err := readCertFile(f); err != nil {
			p.add(fmt.Sprintf("pki.intermediates[%d]", i), "%v", err)
		}
	}
	for _, l := range []struct {
		path string
		oids []string
	}{{"pki.signature_policy_oids", k.SignaturePolicyOIDs}, {"pki.authentication_policy_oids", k.AuthenticationPolicyOIDs}} {
		for i, o := range l.oids {
			if !oidPattern.MatchString(o) {
				p.add(fmt.Sprintf("%s[%d]", l.path, i), "%q is not a dotted OID", o)
			}
		}
	}
	if k.Leeway < 0 || k.Leeway > time.Hour {
		p.add("pki.leeway", "must be between 0 and 1h")
	}
	r := k.Revocation
	mode, err := pkibridge.ParseRevocationMode(r.Mode)
	if err != nil {
		p.add("pki.revocation.mode", "%q: want require, prefer or off", r.Mode)
		return
	}
	if mode == pkibridge.RevocationOff {
		if !dev {
			p.add("pki.revocation.mode", "off accepts revoked certificates and is for --dev only")
		}
		return
	}
	if len(r.CRLs) == 0 && len(r.OCSP) == 0 {
		p.add("pki.revocation", "mode %s needs at least one crls or ocsp source (JPKI certificates name none)", mode)
	}
	if r.Timeout < 0 {
		p.add("pki.revocation.timeout", "must not be negative")
	}
	for i, crl := range r.CRLs {
		path := fmt.Sprintf("pki.revocation.crls[%d]", i)
		loc := crl.Location
		lower := strings.ToLower(loc)
		switch {
		case loc == "":
			p.add(path+".location", "required")
		case strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"):
			if u, err := url.Parse(loc); err != nil || u.Host == "" {
				p.add(path+".location", "%q is not a valid URL", loc)
			}
		case strings.Contains(loc, "://"):
			p.add(path+".location", "only file paths and http(s) URLs are supported (fetch LDAP CRLs to a file)")
		default:
			if _, err := os.Stat(loc); err != nil {
				p.add(path+".location", "%v", err)
			}
		}
		if crl.Issuer != "" {
			if _, err := readIssuer(crl.Issuer); err != nil {
				p.add(path+".issuer", "%v", err)
			}
		}
	}
	for i, u := range r.OCSP {
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https") {
			p.add(fmt.Sprintf("pki.revocation.ocsp[%d]", i), "%q is not an http(s) URL", u)
		}
	}
}

func readCertFile(name string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return pkibridge.ParseCertificates(b)
}

func readIssuer(name string) (*x509.Certificate, error) {
	certs, err := readCertFile(name)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%s: want exactly one certificate, found %d", name, len(certs))
	}
	return certs[0], nil
}

var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)

func (c *Config) validateClients(p *problems, dev bool) {
	seen := map[string]bool{}
	for i, cc := range c.Clients {
		path := fmt.Sprintf("clients[%d]", i)
		if !clientIDPattern.MatchString(cc.ID) {
			p.add(path+".client_id", "%q: 1-128 characters from A-Z a-z 0-9 . _ ~ -", cc.ID)
		} else if seen[cc.ID] {
			p.add(path+".client_id", "%q is configured twice", cc.ID)
		}
		seen[cc.ID] = true
		if strings.TrimSpace(cc.DisplayName) == "" {
			p.add(path+".display_name", "required: residents see it on the wallet and consent screens")
		}
		native := cc.AuthMethod == authNone
		switch cc.AuthMethod {
		case authSecretBasic:
			switch {
			case cc.ClientSecretFile != "" && cc.ClientSecretHash != "":
				p.add(path+".client_secret_file", "set client_secret_file or client_secret_hash, not both")
			case cc.ClientSecretFile != "":
				if b, err := readSecretFile(cc.ClientSecretFile); err != nil {
					p.add(path+".client_secret_file", "%v", err)
				} else if len(b) < 16 {
					p.add(path+".client_secret_file", "the secret must be at least 16 characters")
				}
			case cc.ClientSecretHash != "":
				if _, err := parseSecretHash(cc.ClientSecretHash); err != nil {
					p.add(path+".client_secret_hash", "%v", err)
				}
			default:
				p.add(path+".client_secret_file", "client_secret_basic needs client_secret_file or client_secret_hash")
			}
		case authPrivateKeyJWT:
			if cc.JWKSFile == "" {
				p.add(path+".jwks_file", "private_key_jwt needs the client's public keys")
			} else if err := checkJWKSFile(cc.JWKSFile); err != nil {
				p.add(path+".jwks_file", "%v", err)
			}
		case authNone:
		default:
			p.add(path+".token_endpoint_auth_method", "%q: want private_key_jwt, client_secret_basic or none", cc.AuthMethod)
		}
		if cc.AuthMethod != authSecretBasic && (cc.ClientSecretFile != "" || cc.ClientSecretHash != "") {
			p.add(path+".client_secret_file", "a secret is only used with client_secret_basic")
		}
		if cc.AuthMethod != authPrivateKeyJWT && cc.JWKSFile != "" {
			p.add(path+".jwks_file", "keys are only used with private_key_jwt")
		}
		if len(cc.RedirectURIs) == 0 {
			p.add(path+".redirect_uris", "at least one is required")
		}
		redirectsOK := true
		for j, u := range cc.RedirectURIs {
			if msg := checkRedirectURI(u, native, dev); msg != "" {
				p.add(fmt.Sprintf("%s.redirect_uris[%d]", path, j), "%s", msg)
				redirectsOK = false
			}
		}
		for j, u := range cc.PostLogout {
			if msg := checkRedirectURI(u, native, dev); msg != "" {
				p.add(fmt.Sprintf("%s.post_logout_redirect_uris[%d]", path, j), "%s", msg)
			}
		}
		if cc.SectorIdentifierURI != "" {
			u, err := url.Parse(cc.SectorIdentifierURI)
			if err != nil || u.Host == "" || (u.Scheme != "https" && !(dev && u.Scheme == "http")) {
				p.add(path+".sector_identifier_uri", "must be an https URL")
			}
		} else if len(cc.RedirectURIs) > 0 && redirectsOK {
			if _, err := commonRedirectHost(&cc.Client); err != nil {
				p.add(path+".redirect_uris", "%v", strings.TrimPrefix(err.Error(), "idp: sector: "))
			}
		}
		for j, s := range cc.Scopes {
			if s == "" || strings.ContainsAny(s, " \t\"\\") {
				p.add(fmt.Sprintf("%s.scopes[%d]", path, j), "%q is not a scope token", s)
			}
		}
		switch cc.IDTokenAlg {
		case "", string(jose.ES256), string(jose.RS256):
		default:
			p.add(path+".id_token_signed_response_alg", "%q: want ES256 or RS256", cc.IDTokenAlg)
		}
		if cc.PolicyURI != "" {
			u, err := url.Parse(cc.PolicyURI)
			if err != nil || u.Host == "" || (u.Scheme != "https" && !(dev && u.Scheme == "http")) {
				p.add(path+".policy_uri", "must be an https URL (residents follow it from the consent screen)")
			}
		}
		if cc.AgeAlternatives && !slices.Contains(cc.Scopes, "birthdate") && !slices.Contains(cc.Scopes, "profile") {
			p.add(path+".age_alternatives", "offers an age check instead of the birth date, but the client may not ask for the birth date (scopes birthdate or profile)")
		}
	}
}

// checkRedirectURI applies the redirect rules: absolute, no fragment;
// outside --dev https only, except that native clients (auth method
// none) may use loopback http (RFC 8252 §7.3) or a private-use scheme
// (§7.1, reverse domain name).
func checkRedirectURI(raw string, native, dev bool) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return fmt.Sprintf("%q is not an absolute URI", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return "must not have a fragment"
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return "has no host"
		}
		return ""
	case "http":
		if u.Host == "" {
			return "has no host"
		}
		if dev || (native && isLoopbackHost(u.Hostname())) {
			return ""
		}
		if native {
			return "must be https outside --dev (native clients may use http on a loopback address)"
		}
		return "must be https outside --dev"
	default:
		if native && strings.Contains(u.Scheme, ".") {
			return ""
		}
		return fmt.Sprintf("scheme %q: only https (and, for native clients, loopback http or a reverse-domain private-use scheme)", u.Scheme)
	}
}

func checkJWKSFile(name string) error {
	b, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return fmt.Errorf("%s: not a JWK Set: %v", name, err)
	}
	if len(set.Keys) == 0 {
		return fmt.Errorf("%s: no keys", name)
	}
	for i, k := range set.Keys {
		if !k.IsPublic() {
			return fmt.Errorf("%s: key %d holds private key material; give the client's public keys only", name, i)
		}
		if !k.Valid() {
			return fmt.Errorf("%s: key %d is not a valid key", name, i)
		}
	}
	return nil
}

func (c *Config) validateWhitelist(p *problems, dev bool) {
	w := c.Whitelist
	if !w.Enabled {
		if len(w.Tiers) > 0 || w.AdminListen != "" || w.AdminTokenHashFile != "" ||
			len(w.TrustedSoftwareStatementIssuers) > 0 || w.RequireSoftwareStatement {
			p.add("whitelist.enabled", "whitelist settings are given but enabled is false")
		}
		return
	}
	if c.Store.Type != "redis" && !dev {
		p.add("whitelist.enabled", "the registry must live in Redis outside --dev (store.type: redis), so that every node and the watashi client commands share it")
	}
	if _, err := whitelist.New(whitelist.Options{Backend: whitelist.KVBackend(store.NewMemory(), store.ErrNotFound), Tiers: w.Tiers}); err != nil {
		p.add("whitelist.tiers", "%s", strings.TrimPrefix(err.Error(), "whitelist: "))
	}
	if (w.AdminListen == "") != (w.AdminTokenHashFile == "") {
		p.add("whitelist.admin_listen", "the admin API needs both admin_listen and admin_token_hash_file")
	}
	if w.AdminListen != "" {
		l, t := c.listenAddrs()
		if _, port, err := net.SplitHostPort(w.AdminListen); err != nil || port == "" {
			p.add("whitelist.admin_listen", "%q is not host:port", w.AdminListen)
		} else if port != "0" && (w.AdminListen == l || w.AdminListen == t) {
			p.add("whitelist.admin_listen", "must differ from listen and telemetry_listen: the admin API stays off the public listener")
		}
	}
	if w.AdminTokenHashFile != "" {
		reg, _ := whitelist.New(whitelist.Options{Backend: whitelist.KVBackend(store.NewMemory(), store.ErrNotFound)})
		if _, err := reg.AdminHandler(whitelist.AdminOptions{TokenHashFile: w.AdminTokenHashFile, Prefix: "/whitelist"}); err != nil {
			p.add("whitelist.admin_token_hash_file", "%s", strings.TrimPrefix(err.Error(), "whitelist: "))
		}
	}
	seen := map[string]bool{}
	for i, ti := range w.TrustedSoftwareStatementIssuers {
		path := fmt.Sprintf("whitelist.trusted_software_statement_issuers[%d]", i)
		if ti.Issuer == "" {
			p.add(path+".issuer", "required")
		} else if seen[ti.Issuer] {
			p.add(path+".issuer", "%q is listed twice", ti.Issuer)
		}
		seen[ti.Issuer] = true
		if ti.JWKSFile == "" {
			p.add(path+".jwks_file", "required")
		} else if _, err := readIssuerJWKS(ti.JWKSFile); err != nil {
			p.add(path+".jwks_file", "%v", err)
		}
	}
	if w.RequireSoftwareStatement && len(w.TrustedSoftwareStatementIssuers) == 0 {
		p.add("whitelist.require_software_statement", "needs at least one trusted_software_statement_issuers entry")
	}
}

// readIssuerJWKS reads a software statement issuer's public key set.
func readIssuerJWKS(name string) (jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	b, err := os.ReadFile(name)
	if err != nil {
		return set, err
	}
	if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) == 0 {
		return set, errors.New("not a JSON Web Key Set with at least one key")
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || !k.Valid() {
			return set, errors.New("the key set must hold valid public keys only")
		}
	}
	return set, nil
}

// WhitelistAdmin is the admin API's listener and token hash file, both
// empty when the admin API is off.
func (c *Config) WhitelistAdmin() (listen, tokenHashFile string) {
	if !c.Whitelist.Enabled || c.Whitelist.AdminListen == "" || c.Whitelist.AdminTokenHashFile == "" {
		return "", ""
	}
	return c.Whitelist.AdminListen, c.Whitelist.AdminTokenHashFile
}

// OpenStore validates the store settings only and opens the store, for
// commands that work on the store alone (`watashi client`, `watashi
// keys`) and so need neither the PKI files nor the secrets.
func (c *Config) OpenStore(ctx context.Context, dev bool) (store.KV, error) {
	var p problems
	if c.Dev && !dev {
		p.add("dev", "true requires the --dev flag")
	}
	c.validateStore(&p, dev)
	if err := p.err(); err != nil {
		return nil, err
	}
	kv, err := c.store()
	if err != nil {
		return nil, err
	}
	if err := kv.Ping(ctx); err != nil {
		kv.Close()
		return nil, fmt.Errorf("store unreachable: %w", err)
	}
	return kv, nil
}

// NewRegistry builds the whitelist registry on kv with the configured
// tiers (the default catalogue when the whitelist section is empty), for
// the server and the `watashi client` commands alike.
func (c *Config) NewRegistry(kv store.KV, dev bool, logger *slog.Logger) (*whitelist.Registry, error) {
	reg, err := whitelist.New(whitelist.Options{
		Backend: whitelist.KVBackend(kv, store.ErrNotFound), Tiers: c.Whitelist.Tiers, Dev: dev, Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("whitelist: %w", err)
	}
	return reg, nil
}

func (c *Config) validateTTLs(p *problems) {
	t := c.TTLs
	for _, x := range []struct {
		path string
		d    time.Duration
	}{
		{"ttls.auth_request", t.AuthRequest}, {"ttls.transaction", t.Transaction}, {"ttls.code", t.Code},
		{"ttls.access_token", t.AccessToken}, {"ttls.refresh_token", t.RefreshToken}, {"ttls.id_token", t.IDToken},
		{"ttls.session", t.Session}, {"ttls.facts_recheck", t.FactsRecheck},
	} {
		if x.d < 0 {
			p.add(x.path, "must not be negative")
		}
	}
	o := c.ttlOptions()
	o.defaults()
	if o.TransactionTTL >= o.AuthRequestTTL {
		p.add("ttls.transaction", "must be shorter than ttls.auth_request (%s), or the request expires under a slow card tap", o.AuthRequestTTL)
	}
	if o.CodeTTL > 10*time.Minute {
		p.add("ttls.code", "must be at most 10m (RFC 6749 §4.1.2)")
	}
	if c.KeyRotation > 0 && c.KeyRotation < time.Hour {
		p.add("key_rotation", "must be at least 1h so that JWKS caches keep up (negative disables)")
	}
}

func (c *Config) ttlOptions() Options {
	t := c.TTLs
	return Options{
		AuthRequestTTL: t.AuthRequest, TransactionTTL: t.Transaction, CodeTTL: t.Code,
		AccessTokenTTL: t.AccessToken, RefreshTokenTTL: t.RefreshToken, IDTokenTTL: t.IDToken,
		SessionTTL: t.Session, KeyRotation: c.KeyRotation, FactsRecheck: t.FactsRecheck,
	}
}

var headerNamePattern = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

func (c *Config) validateWeb(p *problems, dev bool) {
	for i, o := range c.CORSAllowedOrigins {
		path := fmt.Sprintf("cors_allowed_origins[%d]", i)
		if o == "*" {
			if !dev {
				p.add(path, "\"*\" lets any site call the token endpoint from a browser; list origins")
			}
			continue
		}
		u, err := url.Parse(o)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			p.add(path, "%q is not an origin (scheme://host[:port])", o)
		case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			p.add(path, "%q: an origin has no path, query or fragment", o)
		case u.Scheme == "http" && !dev:
			p.add(path, "%q: http origins are refused outside --dev", o)
		}
	}
	if _, err := parsePrefixes(c.TrustedProxies); err != nil {
		p.add("trusted_proxies", "%v", err)
	}
	if c.ClientIPHeader != "" && !headerNamePattern.MatchString(c.ClientIPHeader) {
		p.add("client_ip_header", "%q is not a header name", c.ClientIPHeader)
	}
	if c.TemplateDir != "" {
		if fi, err := os.Stat(c.TemplateDir); err != nil {
			p.add("template_dir", "%v", err)
		} else if !fi.IsDir() {
			p.add("template_dir", "%s is not a directory", c.TemplateDir)
		}
	}
	if _, err := parseLogLevel(c.Log.Level); err != nil {
		p.add("log.level", "%v", err)
	}
	switch c.Log.Format {
	case "", "json", "text":
	default:
		p.add("log.format", "%q: want json or text", c.Log.Format)
	}
}

// parsePrefixes reads CIDR prefixes or single addresses. A /0 would
// believe every client's header and is refused.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range list {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				errs = append(errs, fmt.Errorf("%q is neither a CIDR prefix nor an address", s))
				continue
			}
			pfx = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if pfx.Bits() == 0 {
			errs = append(errs, fmt.Errorf("%q would trust every client's %s", s, "forwarded address"))
			continue
		}
		out = append(out, pfx.Masked())
	}
	return out, errors.Join(errs...)
}

func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q: want debug, info, warn or error", s)
}

// NewLogger builds the process logger the config asks for (JSON by
// default, for log shippers).
func (c *Config) NewLogger(w io.Writer) *slog.Logger {
	lvl, _ := parseLogLevel(c.Log.Level)
	ho := &slog.HandlerOptions{Level: lvl}
	if c.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, ho))
	}
	return slog.New(slog.NewJSONHandler(w, ho))
}

// ListenAddrs returns the public and telemetry addresses, defaults
// applied.
func (c *Config) ListenAddrs() (public, telemetry string) { return c.listenAddrs() }

// Options validates the config and builds what the provider runs on:
// the store, the certificate verifier with its revocation sources, the
// clients (secrets hashed, sectors resolved, which may fetch
// sector_identifier_uri documents), the keys and a metrics registry.
// Under --dev, missing keys are generated at random: everything keyed by
// them (sessions, subs) then lasts only as long as the process.
func (c *Config) Options(ctx context.Context, dev bool) (Options, error) {
	if err := c.Validate(dev); err != nil {
		return Options{}, err
	}
	out := c.logOutput
	if out == nil {
		out = os.Stderr
	}
	logger := c.NewLogger(out)
	o := c.ttlOptions()
	o.Issuer = c.Issuer
	o.Dev = dev
	o.Logger = logger
	o.AllowedOrigins = slices.Clone(c.CORSAllowedOrigins)
	o.TemplateDir = c.TemplateDir
	o.ClientIPHeader = c.ClientIPHeader
	o.TrustedProxies, _ = parsePrefixes(c.TrustedProxies)

	keys := make([][]byte, 3)
	for i, s := range c.secretSpecs() {
		k, err := s.load()
		if err != nil {
			return Options{}, fmt.Errorf("%s: %w", s.path, err)
		}
		if k == nil {
			k = make([]byte, 32)
			if _, err := rand.Read(k); err != nil {
				return Options{}, err
			}
			logger.Warn("dev: generated an ephemeral key; it dies with the process", "key", s.path)
		}
		keys[i] = k
	}
	o.PairwiseKey, o.CookieKey = keys[0], keys[2]
	copy(o.TokenKey[:], keys[1])

	v, err := c.verifier(logger)
	if err != nil {
		return Options{}, err
	}
	o.Verifier = v

	clients, err := c.clients(ctx, dev)
	if err != nil {
		return Options{}, err
	}
	o.Clients = clients

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o.Metrics, o.Gatherer = reg, reg

	kv, err := c.store()
	if err != nil {
		return Options{}, err
	}
	o.Store = kv
	if c.Whitelist.Enabled {
		if o.Registry, err = c.NewRegistry(kv, dev, logger); err != nil {
			kv.Close()
			return Options{}, err
		}
		for _, ti := range c.Whitelist.TrustedSoftwareStatementIssuers {
			set, err := readIssuerJWKS(ti.JWKSFile)
			if err != nil {
				kv.Close()
				return Options{}, fmt.Errorf("whitelist.trusted_software_statement_issuers: %s: %w", ti.Issuer, err)
			}
			o.TrustedSoftwareStatementIssuers = append(o.TrustedSoftwareStatementIssuers, whitelist.TrustedIssuer{Issuer: ti.Issuer, Keys: set})
		}
		o.RequireSoftwareStatement = c.Whitelist.RequireSoftwareStatement
	}
	return o, nil
}

func (c *Config) store() (store.KV, error) {
	if c.Store.Type != "redis" {
		return store.NewMemory(), nil
	}
	r := c.Store.Redis
	pw := r.Password
	if r.PasswordFile != "" {
		b, err := readSecretFile(r.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("store.redis.password_file: %w", err)
		}
		pw = string(b)
	}
	tc, err := r.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("store.redis.tls: %w", err)
	}
	kv, err := store.NewRedis(store.RedisOptions{
		Addrs: r.Addrs, MasterName: r.MasterName, Username: r.Username, Password: pw,
		DB: r.DB, TLS: tc, Prefix: r.Prefix, Timeout: r.Timeout,
	})
	if err != nil {
		return nil, fmt.Errorf("store.redis: %w", err)
	}
	return kv, nil
}

func (c *Config) verifier(logger *slog.Logger) (*pkibridge.Verifier, error) {
	k := c.PKI
	anchors := pkibridge.DefaultAnchors()
	if len(k.Anchors) > 0 {
		var err error
		if anchors, err = pkibridge.LoadAnchors(k.Anchors...); err != nil {
			return nil, fmt.Errorf("pki.anchors: %w", err)
		}
	}
	var inter []*x509.Certificate
	for i, f := range k.Intermediates {
		cs, err := readCertFile(f)
		if err != nil {
			return nil, fmt.Errorf("pki.intermediates[%d]: %w", i, err)
		}
		inter = append(inter, cs...)
	}
	policy := pkibridge.DefaultPolicy()
	if len(k.SignaturePolicyOIDs) > 0 {
		policy.SignaturePolicies = slices.Clone(k.SignaturePolicyOIDs)
	}
	if len(k.AuthenticationPolicyOIDs) > 0 {
		policy.AuthenticationPolicies = slices.Clone(k.AuthenticationPolicyOIDs)
	}
	policy.AllowSHA1 = k.AllowSHA1
	mode, err := pkibridge.ParseRevocationMode(k.Revocation.Mode)
	if err != nil {
		return nil, fmt.Errorf("pki.revocation.mode: %w", err)
	}
	v := &pkibridge.Verifier{
		Anchors: anchors, Intermediates: inter, Policy: policy, Mode: mode,
		Leeway: k.Leeway, Logger: logger,
	}
	if mode != pkibridge.RevocationOff {
		chk, err := c.revocationChecker(anchors, logger)
		if err != nil {
			return nil, err
		}
		v.Revocation = chk
	}
	return v, nil
}

func (c *Config) revocationChecker(anchors *pkibridge.Anchors, logger *slog.Logger) (*pkibridge.Checker, error) {
	r := c.PKI.Revocation
	copts := pkibridge.CheckerOptions{
		CRL:    pkibridge.CRLOptions{Timeout: r.Timeout, Logger: logger},
		OCSP:   pkibridge.OCSPOptions{Timeout: r.Timeout, Logger: logger},
		Logger: logger,
	}
	var unpaired []string
	for _, crl := range r.CRLs {
		if crl.Issuer == "" {
			unpaired = append(unpaired, crl.Location)
		}
	}
	chk, err := pkibridge.NewChecker(unpaired, r.OCSP, anchors.Certificates(), copts)
	if err != nil {
		return nil, fmt.Errorf("pki.revocation: %w", err)
	}
	for i, crl := range r.CRLs {
		if crl.Issuer == "" {
			continue
		}
		issuer, err := readIssuer(crl.Issuer)
		if err != nil {
			return nil, fmt.Errorf("pki.revocation.crls[%d].issuer: %w", i, err)
		}
		src, err := pkibridge.NewCRLSource(crl.Location, issuer, copts.CRL)
		if err != nil {
			return nil, fmt.Errorf("pki.revocation.crls[%d]: %w", i, err)
		}
		chk.CRLs = append(chk.CRLs, src)
	}
	return chk, nil
}

func (c *Config) clients(ctx context.Context, dev bool) ([]*Client, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	var out []*Client
	for i, cc := range c.Clients {
		path := fmt.Sprintf("clients[%d]", i)
		cl := cc.Client
		cl.RedirectURIs = slices.Clone(cl.RedirectURIs)
		cl.PostLogout = slices.Clone(cl.PostLogout)
		cl.Scopes = slices.Clone(cl.Scopes)
		switch {
		case cc.ClientSecretHash != "":
			cl.SecretHash = cc.ClientSecretHash
		case cc.ClientSecretFile != "":
			secret, err := readSecretFile(cc.ClientSecretFile)
			if err != nil {
				return nil, fmt.Errorf("%s.client_secret_file: %w", path, err)
			}
			if cl.SecretHash, err = HashClientSecret(string(secret)); err != nil {
				return nil, fmt.Errorf("%s.client_secret_file: %w", path, err)
			}
		}
		if cc.JWKSFile != "" {
			b, err := os.ReadFile(cc.JWKSFile)
			if err != nil {
				return nil, fmt.Errorf("%s.jwks_file: %w", path, err)
			}
			cl.JWKS = b
		}
		sector, err := ResolveSector(ctx, &cl, hc, dev)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		cl.Sector = sector
		out = append(out, &cl)
	}
	return out, nil
}
