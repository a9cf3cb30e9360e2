package notifytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// CA issues the relay's certificate; senders under test trust only Pool.
type CA struct {
	Pool *x509.CertPool
	cert tls.Certificate
}

// NewCA makes a CA and a certificate for 127.0.0.1 and localhost.
func NewCA(t testing.TB) *CA {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "notify test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &CA{Pool: pool, cert: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}}
}

// Received is one message as the relay took it.
type Received struct {
	From, To string
	Data     []byte
}

// Relay is the SMTP server.
type Relay struct {
	t  testing.TB
	ca *CA
	// Implicit speaks TLS from the first byte; NoTLS offers no STARTTLS.
	Implicit, NoTLS bool
	// User and Pass are the only credentials AUTH PLAIN accepts; MAIL
	// needs them when User is set.
	User, Pass string
	// RejectTo is refused at RCPT TO with 550.
	RejectTo string
	// C receives every message.
	C chan Received

	mu   sync.Mutex
	srv  *smtp.Server
	addr string
	got  []Received
}

// StartRelay starts a relay with STARTTLS (or implicit TLS) and AUTH.
func StartRelay(t testing.TB, ca *CA, implicit bool) *Relay {
	r := &Relay{t: t, ca: ca, Implicit: implicit, User: "watashi", Pass: "s3cret", C: make(chan Received, 100)}
	r.Start("127.0.0.1:0")
	t.Cleanup(r.Stop)
	return r
}

// NewRelay is a relay not started yet, to set options first.
func NewRelay(t testing.TB, ca *CA) *Relay {
	r := &Relay{t: t, ca: ca, User: "watashi", Pass: "s3cret", C: make(chan Received, 100)}
	t.Cleanup(r.Stop)
	return r
}

// Addr is host:port of the listener.
func (r *Relay) Addr() string { r.mu.Lock(); defer r.mu.Unlock(); return r.addr }

// Port is the listener's port.
func (r *Relay) Port() int {
	_, p, _ := net.SplitHostPort(r.Addr())
	n, _ := strconv.Atoi(p)
	return n
}

// Start listens on addr ("127.0.0.1:0", or the address of a stopped
// relay to bring it back).
func (r *Relay) Start(addr string) {
	r.t.Helper()
	var l net.Listener
	var err error
	for range 50 { // the port of a stopped relay may take a moment to free
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{r: r}, nil }))
	s.Domain = "localhost"
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	tc := &tls.Config{Certificates: []tls.Certificate{r.ca.cert}}
	if r.Implicit {
		l = tls.NewListener(l, tc)
	} else if !r.NoTLS {
		s.TLSConfig = tc
	}
	r.mu.Lock()
	r.srv, r.addr = s, l.Addr().String()
	r.mu.Unlock()
	go func() { _ = s.Serve(l) }()
}

// Stop closes the listener and every connection: an outage.
func (r *Relay) Stop() {
	r.mu.Lock()
	s := r.srv
	r.srv = nil
	r.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}

// Received returns every message so far.
func (r *Relay) Received() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Received(nil), r.got...)
}

type session struct {
	r        *Relay
	authed   bool
	from, to string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != s.r.User || pass != s.r.Pass {
			return errors.New("bad credentials")
		}
		s.authed = true
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.r.User != "" && !s.authed {
		return &smtp.SMTPError{Code: 530, Message: "authentication required"}
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to == s.r.RejectTo {
		return &smtp.SMTPError{Code: 550, Message: "no such user"}
	}
	s.to = to
	return nil
}

func (s *session) Data(rd io.Reader) error {
	b, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	m := Received{From: s.from, To: s.to, Data: b}
	s.r.mu.Lock()
	s.r.got = append(s.r.got, m)
	s.r.mu.Unlock()
	s.r.C <- m
	return nil
}

func (s *session) Reset()        {}
func (s *session) Logout() error { return nil }
