package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"
)

// TLS modes of the SMTP connection.
const (
	// TLSStartTLS connects in the clear and upgrades with STARTTLS,
	// which the server must offer (submission, port 587).
	TLSStartTLS = "starttls"
	// TLSImplicit speaks TLS from the first byte (submissions, port 465).
	TLSImplicit = "implicit"
	// TLSNone sends in the clear; development only.
	TLSNone = "none"
)

// SMTPConfig is how Watashi reaches its mail relay.
type SMTPConfig struct {
	Host string
	Port int
	// TLS is TLSStartTLS (default), TLSImplicit or TLSNone.
	TLS string
	// Username and PasswordFile authenticate with AUTH PLAIN, over TLS
	// only. The password is read from the file at start, never from the
	// configuration itself.
	Username     string
	PasswordFile string
	// From is the envelope and header sender.
	From string
	// RootCAs verifies the relay's certificate (nil: the system's).
	RootCAs *x509.CertPool
	// Timeout bounds one delivery, connection to QUIT (default 30 s).
	Timeout time.Duration
}

// Validate reports every problem at once; prod refuses a relay without
// TLS.
func (c *SMTPConfig) Validate(prod bool) error {
	var errs []error
	if c.Host == "" || strings.ContainsAny(c.Host, " /\r\n") {
		errs = append(errs, errors.New("smtp.host is required (a host name or address)"))
	}
	if c.Port <= 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("smtp.port %d is not a port", c.Port))
	}
	switch c.TLS {
	case "", TLSStartTLS, TLSImplicit:
	case TLSNone:
		if prod {
			errs = append(errs, errors.New("smtp.tls none sends residents' mail in the clear; production requires starttls or implicit"))
		}
	default:
		errs = append(errs, fmt.Errorf("smtp.tls %q is not starttls, implicit or none", c.TLS))
	}
	if (c.Username == "") != (c.PasswordFile == "") {
		errs = append(errs, errors.New("smtp.username and smtp.password_file go together"))
	}
	if c.Username != "" && c.TLS == TLSNone {
		errs = append(errs, errors.New("smtp credentials are never sent without TLS"))
	}
	if _, err := ParseAddress(c.From); err != nil {
		errs = append(errs, fmt.Errorf("smtp.from %q is not a bare mail address", c.From))
	}
	return errors.Join(errs...)
}

// Sender delivers one message at a time to the relay.
type Sender struct {
	cfg      SMTPConfig
	password string
}

// NewSender validates the configuration and reads the password file.
func NewSender(c SMTPConfig, prod bool) (*Sender, error) {
	if err := c.Validate(prod); err != nil {
		return nil, err
	}
	if c.TLS == "" {
		c.TLS = TLSStartTLS
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	s := &Sender{cfg: c}
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("smtp.password_file: %w", err)
		}
		s.password = strings.TrimRight(string(b), "\r\n")
		if s.password == "" || strings.ContainsAny(s.password, "\r\n") {
			return nil, errors.New("smtp.password_file must hold the password on one line")
		}
	}
	return s, nil
}

// From is the configured sender address.
func (s *Sender) From() string { return s.cfg.From }

// PermanentError is a refusal the relay will repeat (a 5xx reply): the
// message is dropped rather than retried.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "notify: permanent SMTP failure: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Send delivers msg to one recipient. A 5xx reply is a *PermanentError;
// anything else (no connection, a timeout, a 4xx reply, a TLS failure)
// is temporary and worth retrying later.
func (s *Sender) Send(ctx context.Context, to string, msg []byte) (err error) {
	if _, err := ParseAddress(to); err != nil {
		return &PermanentError{Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	addr := net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("notify: connect %s: %w", addr, err)
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	tlsConf := &tls.Config{ServerName: s.cfg.Host, RootCAs: s.cfg.RootCAs, MinVersion: tls.VersionTLS12}
	if s.cfg.TLS == TLSImplicit {
		tc := tls.Client(conn, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return fmt.Errorf("notify: TLS with %s: %w", addr, err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, s.cfg.Host)
	if err != nil {
		conn.Close()
		return classify("greeting", err)
	}
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return classify("EHLO", err)
	}
	if s.cfg.TLS == TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fmt.Errorf("notify: %s does not offer STARTTLS", addr)
		}
		if err := c.StartTLS(tlsConf); err != nil {
			return fmt.Errorf("notify: STARTTLS with %s: %w", addr, err)
		}
	}
	if s.cfg.Username != "" {
		// A refused login is the operator's to mend, never the
		// resident's mail to drop: always temporary.
		if err := c.Auth(smtp.PlainAuth("", s.cfg.Username, s.password, s.cfg.Host)); err != nil {
			if perm := (*PermanentError)(nil); errors.As(classify("AUTH", err), &perm) {
				return fmt.Errorf("notify: %w", perm.Err)
			}
			return classify("AUTH", err)
		}
	}
	if err := c.Mail(s.cfg.From); err != nil {
		return classify("MAIL FROM", err)
	}
	if err := c.Rcpt(to); err != nil {
		return classify("RCPT TO", err)
	}
	w, err := c.Data()
	if err != nil {
		return classify("DATA", err)
	}
	if _, err := w.Write(msg); err != nil {
		return classify("DATA", err)
	}
	if err := w.Close(); err != nil {
		return classify("end of DATA", err)
	}
	_ = c.Quit()
	return nil
}

// classify keeps the reply code and drops the relay's text, which may
// echo the recipient's address into the log.
func classify(step string, err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		e := fmt.Errorf("%s: the relay answered %d", step, te.Code)
		if te.Code >= 500 && te.Code < 600 {
			return &PermanentError{Err: e}
		}
		return fmt.Errorf("notify: %w", e)
	}
	return fmt.Errorf("notify: %s: %w", step, err)
}
