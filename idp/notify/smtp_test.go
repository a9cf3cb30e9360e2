package notify

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/watashi-id/watashi/idp/notify/notifytest"
)

func passwordFile(t testing.TB, pass string) string {
	p := filepath.Join(t.TempDir(), "smtp.password")
	if err := os.WriteFile(p, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSMTPConfigValidate(t *testing.T) {
	good := SMTPConfig{Host: "smtp.example.jp", Port: 587, TLS: TLSStartTLS, Username: "u", PasswordFile: "/run/secrets/smtp", From: "no-reply@id.example.jp"}
	if err := good.Validate(true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*SMTPConfig)
		prod bool
		want string
	}{
		{"no host", func(c *SMTPConfig) { c.Host = "" }, true, "smtp.host"},
		{"bad port", func(c *SMTPConfig) { c.Port = 0 }, true, "smtp.port"},
		{"clear text in production", func(c *SMTPConfig) { c.TLS, c.Username, c.PasswordFile = TLSNone, "", "" }, true, "production requires"},
		{"credentials in the clear", func(c *SMTPConfig) { c.TLS = TLSNone }, false, "never sent without TLS"},
		{"unknown tls", func(c *SMTPConfig) { c.TLS = "ssl" }, true, "not starttls"},
		{"user without password", func(c *SMTPConfig) { c.PasswordFile = "" }, true, "go together"},
		{"from with a name", func(c *SMTPConfig) { c.From = "Watashi <no-reply@id.example.jp>" }, true, "smtp.from"},
		{"from with CRLF", func(c *SMTPConfig) { c.From = "a@b.jp\r\nBcc: x@y.jp" }, true, "smtp.from"},
	} {
		c := good
		tc.mod(&c)
		if err := c.Validate(tc.prod); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// Every problem at once.
	bad := SMTPConfig{TLS: "x"}
	if err := bad.Validate(true); err == nil || strings.Count(err.Error(), "\n") < 3 {
		t.Fatalf("all problems: %v", err)
	}
	if _, err := NewSender(SMTPConfig{Host: "h", Port: 1, Username: "u", PasswordFile: filepath.Join(t.TempDir(), "none"), From: "a@b.jp"}, true); err == nil {
		t.Fatal("a missing password file was accepted")
	}
}

// Delivery to a real SMTP server, with STARTTLS and with implicit TLS,
// authenticated with the password from a file and verified against the
// test CA.
func TestSend(t *testing.T) {
	ca := notifytest.NewCA(t)
	for _, implicit := range []bool{false, true} {
		name := map[bool]string{false: "starttls", true: "implicit"}[implicit]
		t.Run(name, func(t *testing.T) {
			r := notifytest.StartRelay(t, ca, implicit)
			c := relayConfig(r, ca)
			c.PasswordFile = passwordFile(t, r.Pass)
			s, err := NewSender(c, true)
			if err != nil {
				t.Fatal(err)
			}
			m := &Mail{From: c.From, To: "taro@example.jp", Subject: "テスト", Body: "本文\nbody", Date: fixedTime, Host: "id.example.jp"}
			msg, err := m.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(context.Background(), "taro@example.jp", msg); err != nil {
				t.Fatal(err)
			}
			got := r.Received()
			if len(got) != 1 || got[0].From != c.From || got[0].To != "taro@example.jp" || !strings.Contains(string(got[0].Data), "Subject: =?UTF-8?b?") {
				t.Fatalf("received %+v", got)
			}

			// A refused recipient is permanent; a wrong password, an
			// untrusted certificate and a relay that is down are not.
			r.RejectTo = "gone@example.jp"
			var perm *PermanentError
			if err := s.Send(context.Background(), "gone@example.jp", msg); !errors.As(err, &perm) {
				t.Fatalf("550: %v", err)
			}
			wrong := c
			wrong.PasswordFile = passwordFile(t, "wrong")
			ws, _ := NewSender(wrong, true)
			if err := ws.Send(context.Background(), "taro@example.jp", msg); err == nil || errors.As(err, &perm) {
				t.Fatalf("wrong password: %v", err)
			}
			untrusted := c
			untrusted.RootCAs = notifytest.NewCA(t).Pool
			us, _ := NewSender(untrusted, true)
			if err := us.Send(context.Background(), "taro@example.jp", msg); err == nil || errors.As(err, &perm) {
				t.Fatalf("untrusted certificate: %v", err)
			}
			r.Stop()
			if err := s.Send(context.Background(), "taro@example.jp", msg); err == nil || errors.As(err, &perm) {
				t.Fatalf("relay down: %v", err)
			}
			if n := len(r.Received()); n != 1 {
				t.Fatalf("%d messages arrived", n)
			}
		})
	}
}

// A relay that does not offer STARTTLS gets nothing, credentials least
// of all.
func TestSendRefusesWithoutSTARTTLS(t *testing.T) {
	ca := notifytest.NewCA(t)
	r := notifytest.NewRelay(t, ca)
	r.NoTLS = true
	r.Start("127.0.0.1:0")
	c := relayConfig(r, ca)
	c.PasswordFile = passwordFile(t, r.Pass)
	s, err := NewSender(c, true)
	if err != nil {
		t.Fatal(err)
	}
	m := &Mail{From: c.From, To: "taro@example.jp", Subject: "x", Body: "x", Date: fixedTime, Host: "id.example.jp"}
	msg, _ := m.Bytes()
	if err := s.Send(context.Background(), "taro@example.jp", msg); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("no STARTTLS: %v", err)
	}
	if len(r.Received()) != 0 {
		t.Fatal("mail sent in the clear")
	}
}
