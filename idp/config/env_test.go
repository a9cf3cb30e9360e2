package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

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
			"WATASHI_REDIS_WAIT_REPLICAS": "2", "WATASHI_REDIS_WAIT_TIMEOUT": "300ms",
		}, func(t *testing.T, c *Config) {
			r := c.Store.Redis
			if r.WaitReplicas != 2 || r.WaitTimeout != 300*time.Millisecond {
				t.Fatalf("wait overrides not applied: %+v", r)
			}
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
		{"kek files", map[string]string{"WATASHI_KEK_FILE": "/run/secrets/kek", "WATASHI_PREVIOUS_KEK_FILES": "/run/secrets/kek1, ,/run/secrets/kek0"}, func(t *testing.T, c *Config) {
			if c.Secrets.KEKFile != "/run/secrets/kek" || !slices.Equal(c.Secrets.PreviousKEKFiles, []string{"/run/secrets/kek1", "/run/secrets/kek0"}) {
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

// TestConfigEnvOverrideErrors: a variable that cannot be read is named in
// the error, without its value (which might be a misplaced secret).
func TestConfigEnvOverrideErrors(t *testing.T) {
	f := newConfigFixture(t)
	tests := []struct {
		name, variable, value, err string
	}{
		{"duration without unit", "WATASHI_REVOCATION_TIMEOUT", "5", "not a duration"},
		{"days are not a unit", "WATASHI_KEY_ROTATION", "30d", "not a duration"},
		{"fractional db", "WATASHI_REDIS_DB", "1.5", "not an integer"},
		{"db with a space", "WATASHI_REDIS_DB", " 2", "not an integer"},
		{"yaml-style boolean", "WATASHI_REDIS_TLS", "yes", "not a boolean"},
		{"secret-looking value", "WATASHI_REDIS_DB", "s3cr3t-p4ssw0rd", "not an integer"},
		{"replicas in words", "WATASHI_REDIS_WAIT_REPLICAS", "one", "not an integer"},
		{"wait without unit", "WATASHI_REDIS_WAIT_TIMEOUT", "500", "not a duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig([]byte(f.yaml), f.dir, envMap(map[string]string{tt.variable: tt.value}))
			if err == nil || c != nil {
				t.Fatalf("%s=%q accepted", tt.variable, tt.value)
			}
			if want := "config: " + tt.variable + ": " + tt.err; !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("err %q, want prefix %q", err, want)
			}
			// Short values could match the hint text ("5" in "5m").
			if v := strings.TrimSpace(tt.value); len(v) > 4 && strings.Contains(err.Error(), v) {
				t.Fatalf("err %q echoes the value", err)
			}
		})
	}
}

// TestConfigEnvOverridesValidated: an override is held to the same rules
// as the file; it is no way around production validation.
func TestConfigEnvOverridesValidated(t *testing.T) {
	f := newConfigFixture(t)
	tests := []struct {
		name string
		env  map[string]string
		want string // prefix of the one expected problem
	}{
		{"http issuer", map[string]string{"WATASHI_ISSUER": "http://id.example.jp"}, "issuer: must be https outside --dev"},
		{"memory store", map[string]string{"WATASHI_STORE_TYPE": "memory"}, "store.type: memory"},
		{"addresses that are only commas", map[string]string{"WATASHI_REDIS_ADDRS": " , ,"}, "store.redis.addrs: at least one"},
		{"address without port", map[string]string{"WATASHI_REDIS_ADDRS": "redis"}, "store.redis.addrs[0]:"},
		{"negative db", map[string]string{"WATASHI_REDIS_DB": "-1"}, "store.redis.db: must not be negative"},
		{"redis password file missing", map[string]string{"WATASHI_REDIS_PASSWORD_FILE": "/nonexistent/redis.pass"}, "store.redis.password_file: open"},
		{"short inline key", map[string]string{"WATASHI_PAIRWISE_KEY": strings.Repeat("0f", 16)}, "secrets.pairwise_key: must be at least 32 bytes, got 16"},
		{"undecodable inline key", map[string]string{"WATASHI_COOKIE_KEY": "not a key!"}, "secrets.cookie_key: is neither hex nor base64"},
		{"missing key file", map[string]string{"WATASHI_TOKEN_KEY_FILE": "/nonexistent/token.key"}, "secrets.token_key: open"},
		{"revocation off", map[string]string{"WATASHI_REVOCATION_MODE": "off"}, "pki.revocation.mode: off"},
		{"negative revocation timeout", map[string]string{"WATASHI_REVOCATION_TIMEOUT": "-1s"}, "pki.revocation.timeout: must not be negative"},
		{"fast key rotation", map[string]string{"WATASHI_KEY_ROTATION": "10m"}, "key_rotation:"},
		{"same listeners", map[string]string{"WATASHI_LISTEN": "127.0.0.1:9100"}, "telemetry_listen: must differ"},
		{"bad header", map[string]string{"WATASHI_CLIENT_IP_HEADER": "X Real IP"}, "client_ip_header:"},
		{"missing template dir", map[string]string{"WATASHI_TEMPLATE_DIR": "/nonexistent/theme"}, "template_dir:"},
		{"bad log level", map[string]string{"WATASHI_LOG_LEVEL": "loud"}, "log.level:"},
		{"bad log format", map[string]string{"WATASHI_LOG_FORMAT": "logfmt"}, "log.format:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.parse(t, f.yaml, tt.env)
			errs := joined(c.Validate(false))
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tt.want) {
				t.Fatalf("got %q, want one problem starting %q", errs, tt.want)
			}
		})
	}
}
