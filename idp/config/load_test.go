package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfigFromFileAndEnvironment(t *testing.T) {
	f := newConfigFixture(t)
	path := writeFile(t, f.dir, "watashi.yaml", []byte(f.yaml))
	t.Setenv("WATASHI_ISSUER", "https://env.example.jp")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "https://env.example.jp" {
		t.Fatalf("issuer %q", c.Issuer)
	}
	if err := c.Validate(false); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(f.dir, "missing.yaml")); err == nil {
		t.Fatal("missing file loaded")
	}
}

// TestLoadRefusals: what Load itself refuses, before any validation.
func TestLoadRefusals(t *testing.T) {
	dir := t.TempDir()
	big := writeFile(t, dir, "big.yaml", bytes.Repeat([]byte("#"), maxConfigBytes+1))
	// At the limit the size check passes and the YAML check answers.
	limit := writeFile(t, dir, "limit.yaml", append(bytes.Repeat([]byte("#"), maxConfigBytes-1), '\n'))
	os.Mkdir(filepath.Join(dir, "conf.d"), 0o700)
	tests := []struct {
		name, path string
		env        map[string]string
		err        string
	}{
		{"missing file", filepath.Join(dir, "missing.yaml"), nil, "config: open "},
		{"a directory", filepath.Join(dir, "conf.d"), nil, "is a directory"},
		{"over the size limit", big, nil, fmt.Sprintf("big.yaml is larger than %d bytes", maxConfigBytes)},
		{"at the size limit", limit, nil, "the file is empty"},
		{"unknown field", writeFile(t, dir, "typo.yaml", []byte("issuer: https://a.example\nlistne: :8080\n")), nil, "line 2: field listne not found"},
		{"bad override", writeFile(t, dir, "ok.yaml", []byte("issuer: https://a.example\n")), map[string]string{"WATASHI_REDIS_DB": "zero"}, "config: WATASHI_REDIS_DB: not an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c, err := Load(tt.path)
			if err == nil || c != nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("config %v, err %v; want %q", c, err, tt.err)
			}
		})
	}
}

// TestLoadRelativePath: the file's relative paths follow the file, also
// when the file itself is named relative to the working directory.
func TestLoadRelativePath(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "etc"), 0o700)
	writeFile(t, dir, "etc/watashi.yaml", []byte("secrets:\n  pairwise_key_file: keys/pairwise.key\n  token_key_file: /abs/token.key\n"+
		"pki:\n  revocation:\n    crls: [local.crl, \"http://crl.example.jp/a.crl\"]\n"))
	t.Chdir(dir)
	c, err := Load(filepath.Join("etc", "watashi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Secrets.PairwiseKeyFile; got != filepath.Join(dir, "etc", "keys", "pairwise.key") {
		t.Errorf("pairwise_key_file %q", got)
	}
	if got := c.Secrets.TokenKeyFile; got != "/abs/token.key" {
		t.Errorf("absolute path changed: %q", got)
	}
	if crls := c.PKI.Revocation.CRLs; crls[0].Location != filepath.Join(dir, "etc", "local.crl") || crls[1].Location != "http://crl.example.jp/a.crl" {
		t.Errorf("crls %+v", crls)
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
		// The decoder's own refusals, which the strict reading relies on.
		{"key given twice", "issuer: https://a.example\nissuer: https://b.example\n", `line 2: mapping key "issuer" already defined at line 1`},
		{"nested key given twice", "store: {type: redis, type: memory}\n", `mapping key "type" already defined`},
		{"unknown field in a list entry", "whitelist:\n  tiers:\n    - name: a\n      bogus: 1\n", "line 4: field bogus not found"},
		{"unknown trusted issuer field", "whitelist:\n  trusted_software_statement_issuers:\n    - issuer: https://fed.example\n      jwks: x\n", "line 4: field jwks not found"},
		{"unknown field through a merge key", "store:\n  <<: {type: redis, bogus: 1}\n", "field bogus not found"},
		// gopkg.in/yaml.v3 v3.0.1 panicked on this one.
		{"merge key next to a list key", "store:\n  <<: {type: redis}\n  [a]: 1\n", "config: yaml:"},
		{"top-level list", "- issuer: a\n", "cannot unmarshal !!seq into config.Config"},
		{"top-level scalar", "issuer\n", "cannot unmarshal !!str `issuer` into config.Config"},
		{"string for an integer", "store: {redis: {db: one}}\n", "cannot unmarshal !!str `one` into int"},
		{"string for a bool", "dev: maybe\n", "cannot unmarshal !!str `maybe` into bool"},
		{"string for a list", "store: {redis: {addrs: a:1}}\n", "into []string"},
		{"number for a tier list", "whitelist: {tiers: 3}\n", "cannot unmarshal"},
		{"tab indentation", "store:\n\ttype: redis\n", "found character that cannot start any token"},
		{"unterminated quote", "issuer: 'https://a.example\n", "yaml: line 2:"},
		// The crl entry checks its keys itself: line numbers and strictness
		// must survive that.
		{"crl field with line", "pki:\n  revocation:\n    crls:\n      - location: a.crl\n        issuer_file: x\n", "line 5: field issuer_file not found in a crl entry"},
		{"crl location not a string", "pki:\n  revocation:\n    crls:\n      - location: [a]\n", "line 4: crl location must be a string"},
		{"crl merge key", "pki:\n  revocation:\n    crls:\n      - <<: {location: a.crl}\n", "line 4: crl << must be a string"},
		{"crl issuer not a string", "pki: {revocation: {crls: [{location: a, issuer: {x: y}}]}}\n", "crl issuer must be a string"},
		// One document per file, however the second one looks.
		{"trailing separator", "issuer: a\n---\n", "more than one YAML document"},
		{"second document broken", "issuer: a\n---\n[\n", "more than one YAML document"},
		{"second document after end marker", "issuer: a\n...\n---\nissuer: b\n", "more than one YAML document"},
		{"comment only", "# nothing here\n", "the file is empty"},
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
	// Merge keys and aliases reach the decoder's least-trodden paths; the
	// first of these crashed gopkg.in/yaml.v3 v3.0.1, which this package used
	// before go.yaml.in/yaml/v3.
	f.Add([]byte("store:\n  <<: {type: redis}\n  [a]: 1\n"))
	f.Add([]byte("store: &s {type: redis, redis: {addrs: [a:1]}}\nwhitelist: {tiers: [{<<: {name: x}, scopes: [openid]}]}\n"))
	f.Add([]byte("cors_allowed_origins: &o [https://a.example]\nttls: {code: 1m, code: 2m}\n---\n"))
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
