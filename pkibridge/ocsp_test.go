package pkibridge

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

var revAcceptLine = regexp.MustCompile(`^ACCEPT .*:(\d+) PID=`)

// revStartOCSP runs a live `openssl ocsp` responder for ca's index on a
// port the kernel picks (-port 0; openssl prints it), and kills it at
// cleanup. It serves any number of requests (no -nrequest).
func revStartOCSP(t testing.TB, ca *revOpenSSLCA, rsigner, rkey string, extra ...string) string {
	t.Helper()
	requireOpenSSL(t)
	args := append([]string{"ocsp", "-index", filepath.Join(ca.dir, "index.txt"), "-port", "0",
		"-rsigner", rsigner, "-rkey", rkey, "-CA", ca.pem}, extra...)
	cmd := exec.Command("openssl", args...)
	cmd.Dir = ca.dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	r := bufio.NewReader(stdout)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("openssl ocsp did not start: %v\n%s", err, stderr.String())
	}
	m := revAcceptLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("openssl ocsp printed %q", line)
	}
	go io.Copy(io.Discard, r)
	return "http://127.0.0.1:" + m[1] + "/"
}

// revProxy forwards OCSP requests to target, optionally rewriting the
// request, and counts and records what passes.
type revProxy struct {
	url      string
	requests atomic.Int32
	mu       sync.Mutex
	last     []byte
}

func revNewProxy(t testing.TB, target string, rewrite func([]byte) []byte) *revProxy {
	p := &revProxy{}
	p.url = revServe(t, func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		body, _ := io.ReadAll(r.Body)
		if rewrite != nil {
			body = rewrite(body)
		}
		resp, err := http.Post(target, "application/ocsp-request", bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		p.mu.Lock()
		p.last = out
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(out)
	})
	return p
}

func (p *revProxy) recorded() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func revClosedPortURL(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/"
}

type revOCSPFixture struct {
	ca, other                *revOpenSSLCA
	good, revoked, unknown   *x509.Certificate
	otherLeaf                *x509.Certificate
	direct, directNoCerts    string
	noNext                   string
	delegated, delegatedBare string
	noEKU, otherCA, crossCA  string
}

func revNewOCSPFixture(t testing.TB) *revOCSPFixture {
	t.Helper()
	fx := &revOCSPFixture{}
	fx.ca = revNewOpenSSLCA(t, "/C=JP/O=JPKI-TEST/OU=JPKI for user authentication", nil)
	fx.other = revNewOpenSSLCA(t, "/C=JP/O=OTHER/OU=Other CA", nil)
	ca, other := fx.ca, fx.other
	fx.good, _, _ = ca.issue("good", "leaf_ext")
	var revokedPath string
	fx.revoked, revokedPath, _ = ca.issue("revoked", "leaf_ext")
	ca.revoke(revokedPath, "keyCompromise")
	fx.unknown = ca.issueOutsideIndex("unknown", "0x7777777")
	_, rPath, rKey := ca.issue("responder", "ocsp_ext")
	_, nPath, nKey := ca.issue("noeku", "noeku_ext")
	_, oPath, oKey := other.issue("foreign-responder", "ocsp_ext")
	// other's first leaf has the same serial as ca's first leaf.
	fx.otherLeaf, _, _ = other.issue("otherleaf", "leaf_ext")

	fx.direct = revStartOCSP(t, ca, ca.pem, ca.key, "-ndays", "1")
	fx.directNoCerts = revStartOCSP(t, ca, ca.pem, ca.key, "-ndays", "1", "-resp_no_certs")
	fx.noNext = revStartOCSP(t, ca, ca.pem, ca.key)
	fx.delegated = revStartOCSP(t, ca, rPath, rKey, "-ndays", "1")
	fx.delegatedBare = revStartOCSP(t, ca, rPath, rKey, "-ndays", "1", "-resp_no_certs")
	fx.noEKU = revStartOCSP(t, ca, nPath, nKey, "-ndays", "1")
	fx.otherCA = revStartOCSP(t, ca, oPath, oKey, "-ndays", "1")
	// Signed by ca's own key but answering from other's index: the
	// response is authorised, its CertID names another issuer.
	fx.crossCA = revStartOCSP(t, other, ca.pem, ca.key, "-ndays", "1")
	return fx
}

func TestOCSPOpenSSL(t *testing.T) {
	fx := revNewOCSPFixture(t)
	ctx := context.Background()
	// The cross responder answers about other's certificates; ask it
	// about ca's leaf with a request rewritten to other's CertID.
	cross := revNewProxy(t, fx.crossCA, func(body []byte) []byte {
		req, err := ocsp.ParseRequest(body)
		if err != nil {
			return body
		}
		out, _ := ocsp.CreateRequest(&x509.Certificate{SerialNumber: req.SerialNumber}, fx.other.cert, nil)
		return out
	})
	// Ask about the revoked leaf whatever the client asked.
	swapped := revNewProxy(t, fx.direct, func([]byte) []byte {
		out, _ := ocsp.CreateRequest(fx.revoked, fx.ca.cert, nil)
		return out
	})
	if fx.good.SerialNumber.Cmp(fx.otherLeaf.SerialNumber) == 0 {
		t.Fatal("fixture: serials should differ") // good is ca's 1st leaf; otherleaf is other's 2nd
	}
	ahead := func() time.Time { return time.Now().Add(72 * time.Hour) }
	behind := func() time.Time { return time.Now().Add(-2 * time.Hour) }

	for _, tc := range []struct {
		name    string
		url     string
		leaf    *x509.Certificate
		opts    OCSPOptions
		want    RevocationStatus
		wantErr string
	}{
		{name: "good", url: fx.direct, leaf: fx.good, want: StatusGood},
		{name: "revoked", url: fx.direct, leaf: fx.revoked, want: StatusRevoked},
		{name: "unknown serial", url: fx.direct, leaf: fx.unknown, wantErr: "does not know"},
		{name: "good, SHA-256 CertID", url: fx.direct, leaf: fx.good, opts: OCSPOptions{Hash: crypto.SHA256}, want: StatusGood},
		{name: "good, nonce", url: fx.direct, leaf: fx.good, opts: OCSPOptions{Nonce: true}, want: StatusGood},
		{name: "revoked, nonce", url: fx.direct, leaf: fx.revoked, opts: OCSPOptions{Nonce: true}, want: StatusRevoked},
		{name: "issuer-signed, no certificates", url: fx.directNoCerts, leaf: fx.good, want: StatusGood},
		{name: "no nextUpdate", url: fx.noNext, leaf: fx.revoked, want: StatusRevoked},
		{name: "delegated responder", url: fx.delegated, leaf: fx.revoked, want: StatusRevoked},
		{name: "delegated responder without its certificate", url: fx.delegatedBare, leaf: fx.good, wantErr: "not signed by the issuer"},
		{name: "responder without OCSPSigning", url: fx.noEKU, leaf: fx.good, wantErr: "OCSPSigning"},
		{name: "responder from another CA", url: fx.otherCA, leaf: fx.good, wantErr: "another CA"},
		{name: "CertID of another issuer", url: cross.url, leaf: fx.good, wantErr: "another issuer's certificate"},
		{name: "response for another serial", url: swapped.url, leaf: fx.good, wantErr: "does not cover"},
		{name: "nextUpdate in the past", url: fx.direct, leaf: fx.good, opts: OCSPOptions{Now: ahead}, wantErr: "stale response"},
		{name: "thisUpdate in the future", url: fx.direct, leaf: fx.good, opts: OCSPOptions{Now: behind}, wantErr: "in the future"},
		{name: "responder down", url: revClosedPortURL(t), leaf: fx.good, wantErr: "unreachable"},
		{name: "response too large", url: fx.direct, leaf: fx.good, opts: OCSPOptions{MaxBytes: 64}, wantErr: "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewOCSPClient(tc.url, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			info, err := c.CheckRevocation(ctx, tc.leaf, fx.ca.cert)
			if tc.wantErr != "" {
				if err == nil || info.Status != StatusUnknown || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %+v, %v; want unknown mentioning %q", info, err, tc.wantErr)
				}
				revReasonIs(t, err, ReasonRevocationUnknown)
				return
			}
			if err != nil || info.Status != tc.want || info.Source != "ocsp:"+tc.url {
				t.Fatalf("got %+v, %v; want %s", info, err, tc.want)
			}
			if tc.want == StatusRevoked {
				at := revIndexRevocationTime(t, fx.ca, tc.leaf.SerialNumber)
				if !info.RevokedAt.Equal(at) || info.Detail != "reason keyCompromise" {
					t.Fatalf("revoked at %s (%s), index.txt says %s keyCompromise", info.RevokedAt, info.Detail, at)
				}
			}
		})
	}
}

// revIndexRevocationTime reads the revocation time `openssl ca -revoke`
// recorded in index.txt for serial.
func revIndexRevocationTime(t testing.TB, ca *revOpenSSLCA, serial *big.Int) time.Time {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(ca.dir, "index.txt"))
	if err != nil {
		t.Fatal(err)
	}
	idx := string(data)
	for _, line := range strings.Split(idx, "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 4 || f[0] != "R" {
			continue
		}
		s, ok := new(big.Int).SetString(f[3], 16)
		if !ok || s.Cmp(serial) != 0 {
			continue
		}
		at, err := time.Parse("060102150405Z", strings.Split(f[2], ",")[0])
		if err != nil {
			t.Fatal(err)
		}
		return at
	}
	t.Fatalf("serial %x not revoked in index.txt", serial)
	return time.Time{}
}

// TestOCSPNonceReplay replays real openssl answers: one to another nonce,
// one without a nonce. Both are validly signed and current; only the
// nonce check can refuse them.
func TestOCSPNonceReplay(t *testing.T) {
	fx := revNewOCSPFixture(t)
	ctx := context.Background()
	rec := revNewProxy(t, fx.direct, nil)
	record := func(opts OCSPOptions) []byte {
		opts.NoCache = true
		c, err := NewOCSPClient(rec.url, opts)
		if err != nil {
			t.Fatal(err)
		}
		if info, err := c.CheckRevocation(ctx, fx.revoked, fx.ca.cert); err != nil || info.Status != StatusRevoked {
			t.Fatalf("recording: %+v, %v", info, err)
		}
		return rec.recorded()
	}
	withNonce := record(OCSPOptions{Nonce: true})
	withoutNonce := record(OCSPOptions{})
	for _, tc := range []struct {
		name    string
		body    []byte
		wantErr string
	}{
		{"answer to another nonce", withNonce, "nonce does not match"},
		{"answer without nonce", withoutNonce, "does not echo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := revServe(t, func(w http.ResponseWriter, r *http.Request) { w.Write(tc.body) })
			c, err := NewOCSPClient(url, OCSPOptions{Nonce: true})
			if err != nil {
				t.Fatal(err)
			}
			info, err := c.CheckRevocation(ctx, fx.revoked, fx.ca.cert)
			if err == nil || info.Status != StatusUnknown || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %+v, %v; want unknown mentioning %q", info, err, tc.wantErr)
			}
			// Without the nonce option the same bytes are a fine answer.
			c2, _ := NewOCSPClient(url, OCSPOptions{})
			if info, err := c2.CheckRevocation(ctx, fx.revoked, fx.ca.cert); err != nil || info.Status != StatusRevoked {
				t.Fatalf("without nonce: %+v, %v", info, err)
			}
		})
	}
}

// TestOCSPCache: answers with nextUpdate are reused until then; answers
// without it only with CacheTTL; concurrent questions share one request.
func TestOCSPCache(t *testing.T) {
	fx := revNewOCSPFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		target   string
		opts     OCSPOptions
		wantReqs int32
	}{
		{"nextUpdate", fx.direct, OCSPOptions{}, 1},
		{"nextUpdate, NoCache", fx.direct, OCSPOptions{NoCache: true}, 3},
		{"no nextUpdate", fx.noNext, OCSPOptions{}, 3},
		{"no nextUpdate, CacheTTL", fx.noNext, OCSPOptions{CacheTTL: time.Hour}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := revNewProxy(t, tc.target, nil)
			c, err := NewOCSPClient(p.url, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if info, err := c.CheckRevocation(ctx, fx.good, fx.ca.cert); err != nil || info.Status != StatusGood {
					t.Fatalf("%+v, %v", info, err)
				}
			}
			if n := p.requests.Load(); n != tc.wantReqs {
				t.Fatalf("%d requests, want %d", n, tc.wantReqs)
			}
		})
	}
	t.Run("expiry", func(t *testing.T) {
		p := revNewProxy(t, fx.direct, nil)
		var shift atomic.Int64
		c, _ := NewOCSPClient(p.url, OCSPOptions{Now: func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }})
		c.CheckRevocation(ctx, fx.good, fx.ca.cert)
		shift.Store(int64(25 * time.Hour)) // past the cached nextUpdate (1 day)
		if info, err := c.CheckRevocation(ctx, fx.good, fx.ca.cert); err == nil || info.Status != StatusUnknown {
			t.Fatalf("after expiry: %+v, %v (the responder's fresh answer is stale to the skewed clock)", info, err)
		}
		if n := p.requests.Load(); n != 2 {
			t.Fatalf("%d requests, want 2", n)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		release := make(chan struct{})
		p := revNewProxy(t, fx.direct, func(b []byte) []byte { <-release; return b })
		c, _ := NewOCSPClient(p.url, OCSPOptions{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if info, err := c.CheckRevocation(ctx, fx.revoked, fx.ca.cert); err != nil || info.Status != StatusRevoked {
					t.Errorf("%+v, %v", info, err)
				}
			})
		}
		close(release)
		wg.Wait()
		if n := p.requests.Load(); n != 1 {
			t.Fatalf("%d requests for concurrent questions, want 1", n)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		c, _ := NewOCSPClient(fx.direct, OCSPOptions{MaxCacheEntries: 1})
		for _, l := range []*x509.Certificate{fx.good, fx.revoked, fx.good} {
			if _, err := c.CheckRevocation(ctx, l, fx.ca.cert); err != nil {
				t.Fatal(err)
			}
		}
		c.mu.Lock()
		n := len(c.cache)
		c.mu.Unlock()
		if n != 1 {
			t.Fatalf("cache holds %d answers, limit 1", n)
		}
	})
}

func TestOCSPTransportFaults(t *testing.T) {
	fx := revNewOCSPFixture(t)
	block := make(chan struct{})
	slow := revServe(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-block:
		}
	})
	t.Cleanup(func() { close(block) })
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		url     string
		opts    OCSPOptions
		wantErr string
	}{
		{name: "HTTP 500", handler: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "x", 500) }, wantErr: "HTTP status 500"},
		{name: "garbage body", handler: func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>hello</html>")) }, wantErr: "malformed OCSP response"},
		{name: "empty body", handler: func(w http.ResponseWriter, r *http.Request) {}, wantErr: "malformed OCSP response"},
		{name: "tryLater", handler: func(w http.ResponseWriter, r *http.Request) { w.Write(ocsp.TryLaterErrorResponse) }, wantErr: "try later"},
		{name: "unauthorized", handler: func(w http.ResponseWriter, r *http.Request) { w.Write(ocsp.UnauthorizedErrorResponse) }, wantErr: "unauthorized"},
		{name: "slow responder", url: slow, opts: OCSPOptions{Timeout: 50 * time.Millisecond}, wantErr: "deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if url == "" {
				url = revServe(t, tc.handler)
			}
			c, err := NewOCSPClient(url, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			info, err := c.CheckRevocation(context.Background(), fx.good, fx.ca.cert)
			if err == nil || info.Status != StatusUnknown || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %+v, %v; want unknown mentioning %q", info, err, tc.wantErr)
			}
			revReasonIs(t, err, ReasonRevocationUnknown)
		})
	}
	t.Run("caller gives up", func(t *testing.T) {
		c, _ := NewOCSPClient(slow, OCSPOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if info, err := c.CheckRevocation(ctx, fx.good, fx.ca.cert); err == nil || info.Status != StatusUnknown || !errors.Is(err, context.Canceled) {
			t.Fatalf("%+v, %v", info, err)
		}
	})
}

func TestNewOCSPClientRejects(t *testing.T) {
	for _, tc := range []struct {
		url  string
		opts OCSPOptions
	}{
		{"", OCSPOptions{}},
		{"ldap://x", OCSPOptions{}},
		{"127.0.0.1:80", OCSPOptions{}},
		{"http://x", OCSPOptions{Hash: crypto.MD5}},
	} {
		if _, err := NewOCSPClient(tc.url, tc.opts); err == nil {
			t.Errorf("NewOCSPClient(%q) accepted", tc.url)
		} else {
			revReasonIs(t, err, ReasonMalformed)
		}
	}
	c, err := NewOCSPClient("http://127.0.0.1:1/", OCSPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info, err := c.CheckRevocation(context.Background(), nil, nil); err == nil || info.Status != StatusUnknown {
		t.Fatalf("nil certificates: %+v, %v", info, err)
	}
}

func FuzzOCSPResponse(f *testing.F) {
	ca, key := revGoCA(f)
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(4242), RawIssuer: ca.RawSubject}
	for _, st := range []int{ocsp.Good, ocsp.Revoked, ocsp.Unknown} {
		der, err := ocsp.CreateResponse(ca, ca, ocsp.Response{
			Status: st, SerialNumber: leaf.SerialNumber, ThisUpdate: now, NextUpdate: now.Add(time.Hour),
			RevokedAt: now.Add(-time.Hour), RevocationReason: ocsp.KeyCompromise,
		}, key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
		f.Add(der[:len(der)-3])
	}
	f.Add(ocsp.TryLaterErrorResponse)
	f.Add([]byte{})
	nonce := []byte{0x04, 0x02, 0xab, 0xcd}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, n := range [][]byte{nil, nonce} {
			ans, err := ocspCheckResponse(data, leaf, ca, n, now, time.Minute)
			if err == nil && ans.status != StatusGood && ans.status != StatusRevoked && ans.status != StatusUnknown {
				t.Fatalf("status %q", ans.status)
			}
		}
		// The ResponseData walker runs only on signed bytes in
		// production; fuzz it directly too.
		ocspMatch(data, leaf, ca, nonce)
		ocspMatch(data, leaf, ca, nil)
	})
}
