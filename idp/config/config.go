package config

import (
	"fmt"
	"io"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/whitelist"
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
	// Passkeys sign residents in after identity proofing.
	Passkeys PasskeysConfig `yaml:"passkeys"`
	// Notify mails residents who opt in at each sign-in.
	Notify NotifyConfig `yaml:"notify"`
	// FactsMonitor re-checks every account's proofing certificate on a
	// schedule.
	FactsMonitor FactsMonitorConfig `yaml:"facts_monitor"`
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
	// WaitReplicas is how many replicas must acknowledge each write of a
	// durable record before it counts as done (Redis WAIT). 0, the
	// default, chooses by topology: 1 with Sentinel or Cluster, none for
	// a single address; -1 never waits.
	WaitReplicas int `yaml:"wait_replicas"`
	// WaitTimeout bounds that wait (default 500ms, or half of timeout
	// when that is shorter); a write not confirmed in time fails as a
	// temporary error. It must stay below timeout.
	WaitTimeout time.Duration `yaml:"wait_timeout"`
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

// SecretsConfig holds the keys, each inline or (better) from a file, hex
// or base64 encoded; the key-encryption keys only from files.
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
	// KEKFile holds the key-encryption key (exactly 32 bytes) that wraps
	// the data keys of accounts and signing keys. File only: it is the
	// one key that opens everything the store holds.
	KEKFile string `yaml:"kek_file"`
	// PreviousKEKFiles are former KEKs, still accepted for reading while
	// `watashi kek rotate` re-wraps the store under KEKFile.
	PreviousKEKFiles []string `yaml:"previous_kek_files"`
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
	clients.Client `yaml:",inline"`
	// ClientSecretFile holds the plain secret (client_secret_basic); it
	// is hashed at start-up and never kept.
	ClientSecretFile string `yaml:"client_secret_file"`
	// ClientSecretHash is the output of clients.HashSecret, for operators
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
)

// ListenAddrs returns the public and telemetry addresses, defaults
// applied.
func (c *Config) ListenAddrs() (public, telemetry string) { return c.listenAddrs() }

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

// WhitelistAdmin is the admin API's listener and token hash file, both
// empty when the admin API is off.
func (c *Config) WhitelistAdmin() (listen, tokenHashFile string) {
	if !c.Whitelist.Enabled || c.Whitelist.AdminListen == "" || c.Whitelist.AdminTokenHashFile == "" {
		return "", ""
	}
	return c.Whitelist.AdminListen, c.Whitelist.AdminTokenHashFile
}

// FactsMonitorConfig schedules the re-check of every account's proofing
// (signature) certificate: CRLs first (free), OCSP for what they leave
// undecided when OCSP is true (each query may cost a fee).
type FactsMonitorConfig struct {
	Enabled bool `yaml:"enabled"`
	// Interval is how often every account is checked (default 24h).
	Interval time.Duration `yaml:"interval"`
	// OCSP also asks the configured OCSP responders, for certificates
	// the CRLs do not decide.
	OCSP bool `yaml:"ocsp"`
}
