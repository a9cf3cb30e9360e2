package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxSecretFileBytes bounds a secret file: keys and passwords are tens of
// bytes, so a larger file is a wrong path, not a secret.
const maxSecretFileBytes = 64 << 10

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
