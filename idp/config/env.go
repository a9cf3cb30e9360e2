package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// envOverride is one WATASHI_* variable. Only scalar settings have one:
// there is deliberately no $VAR expansion inside the file.
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
	{"WATASHI_REDIS_WAIT_REPLICAS", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("not an integer")
		}
		c.Store.Redis.WaitReplicas = n
		return nil
	}},
	{"WATASHI_REDIS_WAIT_TIMEOUT", envDuration(func(c *Config) *time.Duration { return &c.Store.Redis.WaitTimeout })},
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
	{"WATASHI_KEK_FILE", envString(func(c *Config) *string { return &c.Secrets.KEKFile })},
	{"WATASHI_PREVIOUS_KEK_FILES", func(c *Config, v string) error {
		c.Secrets.PreviousKEKFiles = nil
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				c.Secrets.PreviousKEKFiles = append(c.Secrets.PreviousKEKFiles, f)
			}
		}
		return nil
	}},
	{"WATASHI_REVOCATION_MODE", envString(func(c *Config) *string { return &c.PKI.Revocation.Mode })},
	{"WATASHI_REVOCATION_TIMEOUT", envDuration(func(c *Config) *time.Duration { return &c.PKI.Revocation.Timeout })},
	{"WATASHI_KEY_ROTATION", envDuration(func(c *Config) *time.Duration { return &c.KeyRotation })},
	{"WATASHI_TEMPLATE_DIR", envString(func(c *Config) *string { return &c.TemplateDir })},
	{"WATASHI_CLIENT_IP_HEADER", envString(func(c *Config) *string { return &c.ClientIPHeader })},
	{"WATASHI_PASSKEYS_ENABLED", func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("not a boolean (true or false)")
		}
		c.Passkeys.Enabled = &b
		return nil
	}},
	{"WATASHI_PASSKEYS_RECENT_PROOFING", envDuration(func(c *Config) *time.Duration { return &c.Passkeys.RecentProofing })},
	{"WATASHI_PASSKEYS_ATTESTATION", envString(func(c *Config) *string { return &c.Passkeys.Attestation })},
	{"WATASHI_PASSKEYS_MDS_FILE", envString(func(c *Config) *string { return &c.Passkeys.MDSFile })},
	{"WATASHI_PASSKEYS_MDS_ROOT_FILE", envString(func(c *Config) *string { return &c.Passkeys.MDSRootFile })},
	{"WATASHI_NOTIFY_ENABLED", func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("not a boolean (true or false)")
		}
		c.Notify.Enabled = b
		return nil
	}},
	{"WATASHI_NOTIFY_SMTP_HOST", envString(func(c *Config) *string { return &c.Notify.SMTP.Host })},
	{"WATASHI_NOTIFY_SMTP_PORT", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("not a port number")
		}
		c.Notify.SMTP.Port = n
		return nil
	}},
	{"WATASHI_NOTIFY_SMTP_TLS", envString(func(c *Config) *string { return &c.Notify.SMTP.TLS })},
	{"WATASHI_NOTIFY_SMTP_USERNAME", envString(func(c *Config) *string { return &c.Notify.SMTP.Username })},
	{"WATASHI_NOTIFY_SMTP_PASSWORD_FILE", envString(func(c *Config) *string { return &c.Notify.SMTP.PasswordFile })},
	{"WATASHI_NOTIFY_SMTP_FROM", envString(func(c *Config) *string { return &c.Notify.SMTP.From })},
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
