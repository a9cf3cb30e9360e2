package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/watashi-id/watashi/idp"
	"github.com/watashi-id/watashi/idp/passkey"
)

// PasskeysConfig is the passkey sign-in that follows identity proofing
// (docs/operator-guide.md, "Passkeys").
type PasskeysConfig struct {
	// Enabled turns passkeys on or off. Unset: on when the issuer's host
	// is a domain name (browsers refuse IP addresses as passkey sites).
	Enabled *bool `yaml:"enabled"`
	// RecentProofing is how recent the JPKI sign-in of a session that
	// adds a passkey must be (default 5m, at most 1h).
	RecentProofing time.Duration `yaml:"recent_proofing"`
	// Attestation is none (default) or direct.
	Attestation string `yaml:"attestation"`
	// AllowedAAGUIDs, when set, are the only authenticator models
	// accepted; DeniedAAGUIDs are refused. One or the other.
	AllowedAAGUIDs []string `yaml:"allowed_aaguids"`
	DeniedAAGUIDs  []string `yaml:"denied_aaguids"`
	// MDSFile is a FIDO Metadata Service blob, read at start, offline;
	// MDSRootFile the PEM trust anchor of its signature (default the FIDO
	// Alliance root).
	MDSFile     string `yaml:"mds_file"`
	MDSRootFile string `yaml:"mds_root_file"`
}

// maxRecentProofing bounds the window: a JPKI sign-in an hour old no
// longer says who is at the keyboard.
const maxRecentProofing = time.Hour

// passkeysOn reports whether passkeys are on for this config.
func (c *Config) passkeysOn() bool {
	if c.Passkeys.Enabled != nil {
		return *c.Passkeys.Enabled
	}
	u, err := url.Parse(c.Issuer)
	return err == nil && u.Hostname() != "" && net.ParseIP(u.Hostname()) == nil
}

func (c *Config) validatePasskeys(p *problems) {
	k := c.Passkeys
	if !c.passkeysOn() {
		return
	}
	if _, err := passkey.RPID(c.Issuer); err != nil && c.Issuer != "" {
		p.add("passkeys.enabled", "%v", err)
	}
	if k.RecentProofing < 0 || k.RecentProofing > maxRecentProofing {
		p.add("passkeys.recent_proofing", "must be between 0 (default 5m) and %s", maxRecentProofing)
	}
	switch k.Attestation {
	case "", passkey.AttestationNone, passkey.AttestationDirect:
	default:
		p.add("passkeys.attestation", "%q is not none or direct", k.Attestation)
	}
	if len(k.AllowedAAGUIDs) > 0 && len(k.DeniedAAGUIDs) > 0 {
		p.add("passkeys.allowed_aaguids", "give allowed_aaguids or denied_aaguids, not both")
	}
	if _, err := passkey.ParseAAGUIDs(k.AllowedAAGUIDs); err != nil {
		p.add("passkeys.allowed_aaguids", "%v", err)
	}
	if _, err := passkey.ParseAAGUIDs(k.DeniedAAGUIDs); err != nil {
		p.add("passkeys.denied_aaguids", "%v", err)
	}
	if k.MDSRootFile != "" && k.MDSFile == "" {
		p.add("passkeys.mds_root_file", "is only used with mds_file")
	}
	if k.MDSFile != "" {
		if _, err := c.passkeyMetadata(); err != nil {
			p.add("passkeys.mds_file", "%v", err)
		}
	}
}

// passkeyMetadata reads and verifies the configured metadata blob.
func (c *Config) passkeyMetadata() (*passkey.Metadata, error) {
	k := c.Passkeys
	blob, err := os.ReadFile(k.MDSFile)
	if err != nil {
		return nil, err
	}
	root := ""
	if k.MDSRootFile != "" {
		b, err := os.ReadFile(k.MDSRootFile)
		if err != nil {
			return nil, err
		}
		root = string(b)
	}
	return passkey.LoadMetadata(blob, root, time.Now())
}

// passkeyOptions builds the provider's passkey options.
func (c *Config) passkeyOptions() (idp.PasskeyOptions, error) {
	k := c.Passkeys
	o := idp.PasskeyOptions{Enabled: c.passkeysOn(), RecentProofing: k.RecentProofing, Attestation: k.Attestation}
	if !o.Enabled {
		return o, nil
	}
	var err error
	if o.Policy.Allowed, err = passkey.ParseAAGUIDs(k.AllowedAAGUIDs); err != nil {
		return o, fmt.Errorf("passkeys.allowed_aaguids: %w", err)
	}
	if o.Policy.Denied, err = passkey.ParseAAGUIDs(k.DeniedAAGUIDs); err != nil {
		return o, fmt.Errorf("passkeys.denied_aaguids: %w", err)
	}
	if k.MDSFile != "" {
		if o.Metadata, err = c.passkeyMetadata(); err != nil {
			return o, fmt.Errorf("passkeys.mds_file: %w", err)
		}
	}
	return o, nil
}
