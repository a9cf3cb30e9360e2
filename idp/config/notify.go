package config

import (
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/watashi-id/watashi/idp"
	"github.com/watashi-id/watashi/idp/notify"
)

// NotifyConfig is the residents' notification mail (docs/operator-guide.md,
// "Notification mail"); off by default.
type NotifyConfig struct {
	Enabled bool       `yaml:"enabled"`
	SMTP    SMTPConfig `yaml:"smtp"`
}

// SMTPConfig is the mail relay.
type SMTPConfig struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// TLS is starttls (default), implicit or none (--dev only).
	TLS      string `yaml:"tls"`
	Username string `yaml:"username"`
	// PasswordFile holds the relay password; never the password itself.
	PasswordFile string `yaml:"password_file"`
	From         string `yaml:"from"`
	// CAFile, when set, is the only trust anchor for the relay's
	// certificate (PEM); otherwise the system's roots.
	CAFile  string        `yaml:"ca_file"`
	Timeout time.Duration `yaml:"timeout"`
}

// relay is the relay's settings as the notify package takes them, the
// trust anchor file read.
func (s SMTPConfig) relay() (notify.SMTPConfig, error) {
	out := notify.SMTPConfig{Host: s.Host, Port: s.Port, TLS: s.TLS, Username: s.Username, PasswordFile: s.PasswordFile,
		From: s.From, Timeout: s.Timeout}
	if s.CAFile != "" {
		b, err := os.ReadFile(s.CAFile)
		if err != nil {
			return out, err
		}
		out.RootCAs = x509.NewCertPool()
		if !out.RootCAs.AppendCertsFromPEM(b) {
			return out, errors.New("holds no PEM certificate")
		}
	}
	return out, nil
}

func (c *Config) validateNotify(p *problems, dev bool) {
	n := c.Notify
	if !n.Enabled {
		return
	}
	s, err := n.SMTP.relay()
	if err != nil {
		p.add("notify.smtp.ca_file", "%v", err)
	}
	if err := s.Validate(!dev); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			field, rest, _ := strings.Cut(line, " ")
			p.add("notify."+field, "%s", rest)
		}
	}
	if n.SMTP.Timeout < 0 || n.SMTP.Timeout > 5*time.Minute {
		p.add("notify.smtp.timeout", "must be between 0 (default 30s) and 5m")
	}
	if n.SMTP.PasswordFile != "" {
		if _, err := os.Stat(n.SMTP.PasswordFile); err != nil {
			p.add("notify.smtp.password_file", "%v", err)
		}
	}
}

func (c *Config) notifyOptions() (idp.NotifyOptions, error) {
	if !c.Notify.Enabled {
		return idp.NotifyOptions{}, nil
	}
	s, err := c.Notify.SMTP.relay()
	if err != nil {
		return idp.NotifyOptions{}, err
	}
	return idp.NotifyOptions{Enabled: true, SMTP: s}, nil
}
