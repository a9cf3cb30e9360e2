package config

import (
	"errors"
	"fmt"

	"github.com/watashi-id/watashi/idp/seal"
)

// kekFiles are the KEK settings with their field paths, current first.
func (c *Config) kekFiles() (paths, files []string) {
	s := c.Secrets
	if s.KEKFile != "" {
		paths, files = append(paths, "secrets.kek_file"), append(files, s.KEKFile)
	}
	for i, f := range s.PreviousKEKFiles {
		paths, files = append(paths, fmt.Sprintf("secrets.previous_kek_files[%d]", i)), append(files, f)
	}
	return paths, files
}

// validateKEK checks the key-encryption keys. A memory store under --dev
// may go without (a key is generated for the process); a Redis store may
// not, not even under --dev: what was sealed under a generated key would
// be unreadable after a restart.
func (c *Config) validateKEK(p *problems, dev bool) {
	s := c.Secrets
	if s.KEKFile == "" {
		switch {
		case len(s.PreviousKEKFiles) > 0:
			p.add("secrets.kek_file", "required when previous_kek_files is set: it is the key that wraps")
		case !dev:
			p.add("secrets.kek_file", "required outside --dev (set secrets.kek_file or WATASHI_KEK_FILE): it encrypts residents' facts and the signing keys")
		case c.Store.Type == "redis":
			p.add("secrets.kek_file", "required with a redis store, also under --dev: records sealed under a generated key are unreadable after a restart")
		}
		return
	}
	seen := map[string]string{}
	paths, files := c.kekFiles()
	for i, f := range files {
		k, err := loadKEK(f)
		if err != nil {
			p.add(paths[i], "%v", err)
			continue
		}
		if first, ok := seen[k.ID()]; ok {
			p.add(paths[i], "is the same key as %s", first)
			continue
		}
		seen[k.ID()] = paths[i]
	}
}

// loadKEK reads one KEK file: exactly 32 bytes, hex or base64. Errors
// never contain key material.
func loadKEK(file string) (*seal.KEK, error) {
	b, err := readSecretFile(file)
	if err != nil {
		return nil, err
	}
	key, err := decodeKey(string(b))
	if err != nil {
		return nil, err
	}
	if len(key) != seal.KeySize {
		return nil, fmt.Errorf("must be exactly %d bytes, got %d", seal.KeySize, len(key))
	}
	return seal.ParseKEK(key)
}

// KEK returns the configured ring of key-encryption keys (the current
// one, then the previous ones), nil when none is configured. It checks
// the KEK settings only, for commands that work on the store alone.
func (c *Config) KEK(dev bool) (*seal.Ring, error) {
	var p problems
	c.validateKEK(&p, dev)
	if err := p.err(); err != nil {
		return nil, err
	}
	paths, files := c.kekFiles()
	if len(files) == 0 {
		return nil, nil
	}
	keks := make([]*seal.KEK, len(files))
	for i, f := range files {
		k, err := loadKEK(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", paths[i], err)
		}
		keks[i] = k
	}
	return seal.NewRing(keks[0], keks[1:]...)
}

// RequireKEK is KEK for the commands that read sealed records: they have
// nothing to read without one.
func (c *Config) RequireKEK(dev bool) (*seal.Ring, error) {
	r, err := c.KEK(dev)
	if err == nil && r == nil {
		err = errors.New("secrets.kek_file: required: the store's accounts and signing keys are encrypted with it")
	}
	return r, err
}
