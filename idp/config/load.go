package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxConfigBytes bounds the file read: a config is a few kilobytes, and
// a path pointing at a device or a log file by mistake must not be read
// whole.
const maxConfigBytes = 1 << 20

// Load reads a YAML config strictly (an unknown or misspelt field
// is an error, not a silently ignored setting) and applies the WATASHI_*
// environment overrides. It does not validate; call Validate.
func Load(path string) (*Config, error) {
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

// parseConfig is Load without the file system and the process
// environment, so that tests and the fuzzer reach every path. The second
// Decode looks for a further document, which the decoder would otherwise
// leave unread: settings after a stray "---" would be silently ignored.
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
	abs(&c.Secrets.KEKFile)
	for i := range c.Secrets.PreviousKEKFiles {
		abs(&c.Secrets.PreviousKEKFiles[i])
	}
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
	abs(&c.Passkeys.MDSFile)
	abs(&c.Notify.SMTP.PasswordFile)
	abs(&c.Notify.SMTP.CAFile)
	abs(&c.Passkeys.MDSRootFile)
	for i := range c.Whitelist.TrustedSoftwareStatementIssuers {
		abs(&c.Whitelist.TrustedSoftwareStatementIssuers[i].JWKSFile)
	}
	abs(&c.TemplateDir)
}
