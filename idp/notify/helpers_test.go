package notify

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
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// testCA issues the relay's certificate; the sender trusts only it.
type testCA struct {
	pool *x509.CertPool
	cert tls.Certificate
}

func newTestCA(t testing.TB) *testCA {
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
	return &testCA{pool: pool, cert: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}}
}

type received struct {
	from, to string
	data     []byte
}

// relay is a real SMTP server (go-smtp) with AUTH PLAIN, STARTTLS or
// implicit TLS, that can be stopped and started again on its port.
type relay struct {
	t        testing.TB
	ca       *testCA
	implicit bool
	noTLS    bool
	user     string
	pass     string
	rejectTo string // RCPT TO this address gets 550

	mu   sync.Mutex
	srv  *smtp.Server
	addr string
	got  []received
	ch   chan received
}

func startRelay(t testing.TB, ca *testCA, implicit bool) *relay {
	r := &relay{t: t, ca: ca, implicit: implicit, user: "watashi", pass: "s3cret", ch: make(chan received, 100)}
	r.start("127.0.0.1:0")
	t.Cleanup(r.stop)
	return r
}

func (r *relay) port() int {
	_, p, _ := net.SplitHostPort(r.addr)
	n := 0
	for _, c := range p {
		n = n*10 + int(c-'0')
	}
	return n
}

func (r *relay) start(addr string) {
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
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &relaySession{r: r}, nil }))
	s.Domain = "localhost"
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	tc := &tls.Config{Certificates: []tls.Certificate{r.ca.cert}}
	if r.implicit {
		l = tls.NewListener(l, tc)
	} else if !r.noTLS {
		s.TLSConfig = tc
	}
	r.mu.Lock()
	r.srv, r.addr = s, l.Addr().String()
	r.mu.Unlock()
	go func() { _ = s.Serve(l) }()
}

func (r *relay) stop() {
	r.mu.Lock()
	s := r.srv
	r.srv = nil
	r.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}

func (r *relay) config() SMTPConfig {
	mode := TLSStartTLS
	if r.implicit {
		mode = TLSImplicit
	}
	return SMTPConfig{Host: "127.0.0.1", Port: r.port(), TLS: mode, Username: r.user, From: "no-reply@id.example.jp",
		RootCAs: r.ca.pool, Timeout: 5 * time.Second}
}

func (r *relay) received() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

type relaySession struct {
	r        *relay
	authed   bool
	from, to string
}

func (s *relaySession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *relaySession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != s.r.user || pass != s.r.pass {
			return errors.New("bad credentials")
		}
		s.authed = true
		return nil
	}), nil
}

func (s *relaySession) Mail(from string, _ *smtp.MailOptions) error {
	if s.r.user != "" && !s.authed {
		return &smtp.SMTPError{Code: 530, Message: "authentication required"}
	}
	s.from = from
	return nil
}

func (s *relaySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to == s.r.rejectTo {
		return &smtp.SMTPError{Code: 550, Message: "no such user"}
	}
	s.to = to
	return nil
}

func (s *relaySession) Data(rd io.Reader) error {
	b, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	m := received{from: s.from, to: s.to, data: b}
	s.r.mu.Lock()
	s.r.got = append(s.r.got, m)
	s.r.mu.Unlock()
	s.r.ch <- m
	return nil
}

func (s *relaySession) Reset()        {}
func (s *relaySession) Logout() error { return nil }
