package pkibridge

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"

	// Register the CertID hashes a responder may answer with.
	_ "crypto/sha1"
	_ "crypto/sha512"
)

// OCSPOptions tune an OCSP client. The zero value is usable.
type OCSPOptions struct {
	// HTTPClient sends the requests (default: a plain client).
	HTTPClient *http.Client
	// Timeout bounds one query (default 5s).
	Timeout time.Duration
	// Nonce adds an RFC 8954 nonce to every request and refuses answers
	// that do not echo it, so a recorded answer cannot be replayed. Cached
	// answers are reused without a new nonce; set NoCache as well when
	// every answer must come fresh from the responder.
	Nonce bool
	// NoCache disables the answer cache entirely.
	NoCache bool
	// MaxBytes refuses larger responses (default 1 MiB).
	MaxBytes int64
	// Hash is the CertID hash (default SHA-1, which RFC 5019 responders
	// expect; SHA-256 where the responder supports it).
	Hash crypto.Hash
	// ClockSkew tolerates a responder clock that runs ahead (thisUpdate in
	// the future) or a response just past nextUpdate (default 5 min).
	ClockSkew time.Duration
	// CacheTTL is how long an answer without nextUpdate is reused
	// (default 0: not cached). Answers with nextUpdate are cached until
	// then.
	CacheTTL time.Duration
	// MaxCacheAge caps how long any answer is reused, whatever its
	// nextUpdate (default 5 min; negative: no cap). Responders may set
	// nextUpdate hours ahead, and a certificate revoked in between must
	// stop signing in soon, on every node.
	MaxCacheAge time.Duration
	// MaxCacheEntries bounds the cache (default 100,000).
	MaxCacheEntries int
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// OCSPClient asks one OCSP responder (RFC 6960) about certificates of any
// issuer; it accepts only answers signed by that issuer or by a responder
// certificate the issuer delegated with id-kp-OCSPSigning. Answers are
// cached per issuer and serial until their nextUpdate, and concurrent
// questions about the same certificate share one request.
type OCSPClient struct {
	url  string
	opts OCSPOptions

	mu      sync.Mutex
	cache   map[string]ocspCached
	flights map[string]*ocspFlight
}

type ocspCached struct {
	info    RevocationInfo
	expires time.Time
}

type ocspFlight struct {
	done chan struct{}
	info RevocationInfo
	err  error
}

const (
	ocspDefaultTimeout  = 5 * time.Second
	ocspDefaultMaxBytes = 1 << 20
	ocspDefaultSkew     = 5 * time.Minute
	ocspDefaultEntries  = 100_000
	ocspDefaultMaxAge   = 5 * time.Minute
)

var (
	ocspOIDNonce       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
	ocspOIDNonceBytes  = []byte{0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02}
	ocspHashAlgorithms = []struct {
		oid  asn1.ObjectIdentifier
		hash crypto.Hash
	}{
		{asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}, crypto.SHA1},
		{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}, crypto.SHA256},
		{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}, crypto.SHA384},
		{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}, crypto.SHA512},
	}
)

// NewOCSPClient makes a client for the responder at url.
func NewOCSPClient(url string, opts OCSPOptions) (*OCSPClient, error) {
	lower := strings.ToLower(url)
	if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") {
		return nil, Fail(ReasonMalformed, "OCSP responder %q: want an http(s) URL", url)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = ocspDefaultTimeout
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = ocspDefaultMaxBytes
	}
	if opts.Hash == 0 {
		opts.Hash = crypto.SHA1
	}
	if ocspHashOID(opts.Hash) == nil {
		return nil, Fail(ReasonMalformed, "OCSP responder %s: unsupported CertID hash %v", url, opts.Hash)
	}
	if opts.ClockSkew <= 0 {
		opts.ClockSkew = ocspDefaultSkew
	}
	if opts.MaxCacheEntries <= 0 {
		opts.MaxCacheEntries = ocspDefaultEntries
	}
	if opts.MaxCacheAge == 0 {
		opts.MaxCacheAge = ocspDefaultMaxAge
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{}
	}
	return &OCSPClient{url: url, opts: opts, cache: map[string]ocspCached{}, flights: map[string]*ocspFlight{}}, nil
}

// URL is the responder address, as it appears in RevocationInfo.Source
// ("ocsp:<url>") for audit.
func (c *OCSPClient) URL() string { return c.url }

func (c *OCSPClient) source() string { return "ocsp:" + c.url }

// CheckRevocation asks the responder about leaf, unless a still-valid
// answer is cached. Anything short of a verified good or revoked answer
// (responder down, slow, unauthorised, stale, "unknown") is StatusUnknown
// with the reason, for the Verifier's RevocationMode to weigh.
func (c *OCSPClient) CheckRevocation(ctx context.Context, leaf, issuer *x509.Certificate) (RevocationInfo, error) {
	info := RevocationInfo{Status: StatusUnknown, Source: c.source()}
	if leaf == nil || issuer == nil || leaf.SerialNumber == nil {
		return info, Fail(ReasonRevocationUnknown, "%s: need the certificate and its issuer", info.Source)
	}
	h := sha256.New()
	h.Write(issuer.RawSubject)
	h.Write(issuer.RawSubjectPublicKeyInfo)
	key := string(crlSerialKey(leaf.SerialNumber, h.Sum(nil)))

	c.mu.Lock()
	if e, ok := c.cache[key]; ok {
		if c.opts.Now().Before(e.expires) {
			c.mu.Unlock()
			return e.info, nil
		}
		delete(c.cache, key)
	}
	f := c.flights[key]
	if f == nil {
		f = &ocspFlight{done: make(chan struct{})}
		c.flights[key] = f
		go c.run(context.WithoutCancel(ctx), key, leaf, issuer, f)
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.info, f.err
	case <-ctx.Done():
		return info, Wrap(ReasonRevocationUnknown, ctx.Err(), "%s: waiting for OCSP answer", info.Source)
	}
}

func (c *OCSPClient) run(ctx context.Context, key string, leaf, issuer *x509.Certificate, f *ocspFlight) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	ans, err := c.query(ctx, leaf, issuer)
	info := RevocationInfo{Status: StatusUnknown, Source: c.source()}
	if err == nil {
		info.Status = ans.status
		info.RevokedAt = ans.revokedAt
		if ans.reason >= 0 {
			info.Detail = "reason " + revReasonName(ans.reason)
		}
		if ans.status == StatusUnknown {
			err = Fail(ReasonRevocationUnknown, "%s: responder does not know this certificate", c.source())
		}
	} else {
		c.opts.Logger.Warn("OCSP query failed", "source", c.source(), "error", err)
	}
	c.mu.Lock()
	if err == nil && !c.opts.NoCache {
		now := c.opts.Now()
		expires := ans.nextUpdate
		if expires.IsZero() && c.opts.CacheTTL > 0 {
			expires = now.Add(c.opts.CacheTTL)
		}
		if limit := now.Add(c.opts.MaxCacheAge); c.opts.MaxCacheAge > 0 && expires.After(limit) {
			expires = limit
		}
		if expires.After(now) {
			c.store(key, ocspCached{info: info, expires: expires}, now)
		}
	}
	delete(c.flights, key)
	f.info, f.err = info, err
	c.mu.Unlock()
	close(f.done)
}

// store adds to the cache, dropping expired answers and then arbitrary
// ones when it is full. c.mu is held.
func (c *OCSPClient) store(key string, e ocspCached, now time.Time) {
	if len(c.cache) >= c.opts.MaxCacheEntries {
		for k, v := range c.cache {
			if !now.Before(v.expires) {
				delete(c.cache, k)
			}
		}
		for k := range c.cache {
			if len(c.cache) < c.opts.MaxCacheEntries {
				break
			}
			delete(c.cache, k)
		}
	}
	c.cache[key] = e
}

func (c *OCSPClient) query(ctx context.Context, leaf, issuer *x509.Certificate) (*ocspAnswer, error) {
	var nonce []byte
	if c.opts.Nonce {
		raw := make([]byte, 16)
		if _, err := rand.Read(raw); err != nil {
			return nil, Wrap(ReasonRevocationUnknown, err, "%s: nonce", c.source())
		}
		var err error
		if nonce, err = asn1.Marshal(raw); err != nil {
			return nil, Wrap(ReasonRevocationUnknown, err, "%s: nonce", c.source())
		}
	}
	reqDER, err := ocspBuildRequest(leaf, issuer, c.opts.Hash, nonce)
	if err != nil {
		return nil, Wrap(ReasonRevocationUnknown, err, "%s: building request", c.source())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(reqDER))
	if err != nil {
		return nil, Wrap(ReasonRevocationUnknown, err, "%s", c.source())
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	req.Header.Set("Accept", "application/ocsp-response")
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, Wrap(ReasonRevocationUnknown, err, "%s: responder unreachable", c.source())
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, Fail(ReasonRevocationUnknown, "%s: HTTP status %d", c.source(), resp.StatusCode)
	}
	if resp.ContentLength > c.opts.MaxBytes {
		return nil, Fail(ReasonRevocationUnknown, "%s: response of %d bytes is above the %d-byte limit", c.source(), resp.ContentLength, c.opts.MaxBytes)
	}
	body, err := crlReadLimited(ctx, resp.Body, c.opts.MaxBytes, resp.ContentLength, c.source())
	if err != nil {
		return nil, err
	}
	ans, err := ocspCheckResponse(body, leaf, issuer, nonce, c.opts.Now(), c.opts.ClockSkew)
	if err != nil {
		return nil, Wrap(ReasonRevocationUnknown, err, "%s", c.source())
	}
	return ans, nil
}

// ocspNoMatch is x/crypto's error for a response about other serials.
var ocspNoMatch error = ocsp.ParseError("no response matching the supplied certificate")

// ocspAnswer is a verified single response about the certificate asked.
type ocspAnswer struct {
	status     RevocationStatus
	revokedAt  time.Time
	reason     int
	thisUpdate time.Time
	nextUpdate time.Time
}

func ocspHashOID(h crypto.Hash) asn1.ObjectIdentifier {
	for _, a := range ocspHashAlgorithms {
		if a.hash == h {
			return a.oid
		}
	}
	return nil
}

// ocspIssuerHashes are the CertID name and key hashes of issuer.
func ocspIssuerHashes(issuer *x509.Certificate, h crypto.Hash) (name, key []byte, err error) {
	if !h.Available() {
		return nil, nil, fmt.Errorf("hash %v not available", h)
	}
	spki := cryptobyte.String(issuer.RawSubjectPublicKeyInfo)
	var seq, alg cryptobyte.String
	var pub asn1.BitString
	if !spki.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1(&alg, cbasn1.SEQUENCE) || !seq.ReadASN1BitString(&pub) {
		return nil, nil, errors.New("issuer public key info is malformed")
	}
	hn := h.New()
	hn.Write(issuer.RawSubject)
	hk := h.New()
	hk.Write(pub.RightAlign())
	return hn.Sum(nil), hk.Sum(nil), nil
}

// ocspBuildRequest encodes an unsigned request for one certificate, with
// the nonce extension when nonce (the DER extnValue) is set; x/crypto's
// encoder has no request extensions.
func ocspBuildRequest(leaf, issuer *x509.Certificate, h crypto.Hash, nonce []byte) ([]byte, error) {
	nameHash, keyHash, err := ocspIssuerHashes(issuer, h)
	if err != nil {
		return nil, err
	}
	oid := ocspHashOID(h)
	if oid == nil {
		return nil, fmt.Errorf("unsupported CertID hash %v", h)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // OCSPRequest
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // TBSRequest
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // requestList
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // Request
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // CertID
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier(oid)
							b.AddASN1NULL()
						})
						b.AddASN1OctetString(nameHash)
						b.AddASN1OctetString(keyHash)
						b.AddASN1BigInt(leaf.SerialNumber)
					})
				})
			})
			if nonce != nil {
				b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // Extensions
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier(ocspOIDNonce)
							b.AddASN1OctetString(nonce)
						})
					})
				})
			}
		})
	})
	return b.Bytes()
}

// ocspCheckResponse verifies an OCSP response about leaf and returns its
// answer. In order: the envelope and the embedded signer certificate's
// signature (x/crypto/ocsp); that the signer is the issuer itself, or a
// responder certificate the issuer signed with id-kp-OCSPSigning and valid
// now (x/crypto checks only the issuer's signature on it, which would let
// any certificate the issuer ever signed speak for it); then, over the
// verified ResponseData, the single response whose CertID matches leaf's
// serial and issuer's name and key hashes, the nonce, and the times.
func ocspCheckResponse(body []byte, leaf, issuer *x509.Certificate, nonce []byte, now time.Time, skew time.Duration) (*ocspAnswer, error) {
	resp, err := ocsp.ParseResponseForCert(body, leaf, nil)
	if err != nil {
		var re ocsp.ResponseError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("responder answered %q", re.Status.String())
		}
		if err == ocspNoMatch {
			return nil, errors.New("response does not cover this certificate (serial differs)")
		}
		return nil, fmt.Errorf("malformed OCSP response: %w", err)
	}
	if err := ocspAuthorize(resp, issuer, now, skew); err != nil {
		return nil, err
	}
	ans, err := ocspMatch(resp.TBSResponseData, leaf, issuer, nonce)
	if err != nil {
		return nil, err
	}
	if ans.thisUpdate.After(now.Add(skew)) {
		return nil, fmt.Errorf("response thisUpdate %s is in the future", ans.thisUpdate.UTC().Format(time.RFC3339))
	}
	if !ans.nextUpdate.IsZero() && now.Add(-skew).After(ans.nextUpdate) {
		return nil, fmt.Errorf("stale response: nextUpdate %s has passed", ans.nextUpdate.UTC().Format(time.RFC3339))
	}
	return ans, nil
}

func ocspAuthorize(resp *ocsp.Response, issuer *x509.Certificate, now time.Time, skew time.Duration) error {
	signer := resp.Certificate
	if signer == nil {
		if err := resp.CheckSignatureFrom(issuer); err != nil {
			return fmt.Errorf("response is not signed by the issuer and carries no responder certificate: %w", err)
		}
		return nil
	}
	// x/crypto verified the response signature with signer's key.
	if bytes.Equal(signer.RawSubjectPublicKeyInfo, issuer.RawSubjectPublicKeyInfo) {
		return nil
	}
	if !bytes.Equal(signer.RawIssuer, issuer.RawSubject) {
		return errors.New("responder certificate was issued by another CA")
	}
	if len(signer.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(signer.AuthorityKeyId, issuer.SubjectKeyId) {
		return errors.New("responder certificate was issued by another CA key")
	}
	if err := signer.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("responder certificate is not signed by the issuer: %w", err)
	}
	ok := false
	for _, u := range signer.ExtKeyUsage {
		ok = ok || u == x509.ExtKeyUsageOCSPSigning
	}
	if !ok {
		return errors.New("responder certificate lacks the OCSPSigning extended key usage")
	}
	if now.Add(skew).Before(signer.NotBefore) || now.Add(-skew).After(signer.NotAfter) {
		return errors.New("responder certificate is outside its validity period")
	}
	return nil
}

// ocspMatch walks the signature-verified ResponseData. x/crypto matches
// single responses by serial only; two issuers can use the same serial,
// so the issuer hashes must match too.
func ocspMatch(tbs []byte, leaf, issuer *x509.Certificate, nonce []byte) (*ocspAnswer, error) {
	bad := errors.New("malformed OCSP response data")
	in := cryptobyte.String(tbs)
	var rd cryptobyte.String
	if !in.ReadASN1(&rd, cbasn1.SEQUENCE) || len(in) != 0 {
		return nil, bad
	}
	verTag := cbasn1.Tag(0).Constructed().ContextSpecific()
	if rd.PeekASN1Tag(verTag) {
		var v cryptobyte.String
		var ver int
		if !rd.ReadASN1(&v, verTag) || !v.ReadASN1Integer(&ver) || ver != 0 {
			return nil, errors.New("unsupported OCSP response version")
		}
	}
	var responderID, producedAt, responses cryptobyte.String
	var tag cbasn1.Tag
	if !rd.ReadAnyASN1Element(&responderID, &tag) || !rd.ReadASN1Element(&producedAt, cbasn1.GeneralizedTime) ||
		!rd.ReadASN1(&responses, cbasn1.SEQUENCE) {
		return nil, bad
	}
	extTag := cbasn1.Tag(1).Constructed().ContextSpecific()
	var gotNonce []byte
	if rd.PeekASN1Tag(extTag) {
		var wrap, exts cryptobyte.String
		if !rd.ReadASN1(&wrap, extTag) || !wrap.ReadASN1(&exts, cbasn1.SEQUENCE) || len(wrap) != 0 {
			return nil, bad
		}
		for len(exts) > 0 {
			oid, critical, val, ok := crlReadExtension(&exts)
			if !ok {
				return nil, bad
			}
			switch {
			case bytes.Equal(oid, ocspOIDNonceBytes):
				gotNonce = val
			case critical:
				return nil, fmt.Errorf("unsupported critical response extension %s", crlOIDString(oid))
			}
		}
	}
	if len(rd) != 0 {
		return nil, bad
	}
	if nonce != nil {
		// RFC 8954 echoes the extnValue; some responders echo the bare
		// octets. Either proves freshness.
		var inner cryptobyte.String
		n := cryptobyte.String(nonce)
		n.ReadASN1(&inner, cbasn1.OCTET_STRING)
		switch {
		case gotNonce == nil:
			return nil, errors.New("response does not echo the request nonce")
		case !bytes.Equal(gotNonce, nonce) && !bytes.Equal(gotNonce, inner):
			return nil, errors.New("response nonce does not match the request")
		}
	}

	var kb [crlSerialBuf]byte
	serial := crlSerialKey(leaf.SerialNumber, kb[:0])
	hashes := map[crypto.Hash][2][]byte{}
	serialSeen := false
	for len(responses) > 0 {
		var sr, certID, algID, hashOID, nameHash, keyHash, serialRaw cryptobyte.String
		if !responses.ReadASN1(&sr, cbasn1.SEQUENCE) || !sr.ReadASN1(&certID, cbasn1.SEQUENCE) ||
			!certID.ReadASN1(&algID, cbasn1.SEQUENCE) || !algID.ReadASN1(&hashOID, cbasn1.OBJECT_IDENTIFIER) ||
			!certID.ReadASN1(&nameHash, cbasn1.OCTET_STRING) || !certID.ReadASN1(&keyHash, cbasn1.OCTET_STRING) ||
			!certID.ReadASN1(&serialRaw, cbasn1.INTEGER) || len(certID) != 0 {
			return nil, bad
		}
		s, err := crlNormalizeSerial(serialRaw)
		if err != nil || !bytes.Equal(s, serial) {
			continue
		}
		serialSeen = true
		var h crypto.Hash
		for _, a := range ocspHashAlgorithms {
			if bytes.Equal(crlOIDBytes(a.oid), hashOID) {
				h = a.hash
			}
		}
		if h == 0 {
			continue
		}
		want, ok := hashes[h]
		if !ok {
			n, k, err := ocspIssuerHashes(issuer, h)
			if err != nil {
				return nil, err
			}
			want = [2][]byte{n, k}
			hashes[h] = want
		}
		if !bytes.Equal(nameHash, want[0]) || !bytes.Equal(keyHash, want[1]) {
			continue
		}
		return ocspSingle(sr)
	}
	if serialSeen {
		return nil, errors.New("response is about another issuer's certificate with this serial")
	}
	return nil, errors.New("response does not cover this certificate (serial differs)")
}

// ocspSingle reads the rest of a SingleResponse after its CertID.
func ocspSingle(sr cryptobyte.String) (*ocspAnswer, error) {
	bad := errors.New("malformed OCSP single response")
	ans := &ocspAnswer{reason: -1}
	var status cryptobyte.String
	var tag cbasn1.Tag
	if !sr.ReadAnyASN1(&status, &tag) {
		return nil, bad
	}
	switch tag {
	case cbasn1.Tag(0).ContextSpecific():
		ans.status = StatusGood
	case cbasn1.Tag(2).ContextSpecific():
		ans.status = StatusUnknown
	case cbasn1.Tag(1).Constructed().ContextSpecific():
		ans.status = StatusRevoked
		var t cryptobyte.String
		if !status.ReadASN1Element(&t, cbasn1.GeneralizedTime) {
			return nil, bad
		}
		var err error
		if ans.revokedAt, err = ocspTime(t); err != nil {
			return nil, bad
		}
		reasonTag := cbasn1.Tag(0).Constructed().ContextSpecific()
		if status.PeekASN1Tag(reasonTag) {
			var w, e cryptobyte.String
			if !status.ReadASN1(&w, reasonTag) || !w.ReadASN1(&e, cbasn1.ENUM) || len(e) != 1 || len(w) != 0 {
				return nil, bad
			}
			ans.reason = int(e[0])
		}
		if len(status) != 0 {
			return nil, bad
		}
	default:
		return nil, bad
	}
	if tag != cbasn1.Tag(1).Constructed().ContextSpecific() && len(status) != 0 {
		return nil, bad
	}
	var t cryptobyte.String
	var err error
	if !sr.ReadASN1Element(&t, cbasn1.GeneralizedTime) {
		return nil, bad
	}
	if ans.thisUpdate, err = ocspTime(t); err != nil {
		return nil, bad
	}
	nextTag := cbasn1.Tag(0).Constructed().ContextSpecific()
	if sr.PeekASN1Tag(nextTag) {
		var w cryptobyte.String
		if !sr.ReadASN1(&w, nextTag) || !w.ReadASN1Element(&t, cbasn1.GeneralizedTime) || len(w) != 0 {
			return nil, bad
		}
		if ans.nextUpdate, err = ocspTime(t); err != nil {
			return nil, bad
		}
	}
	extTag := cbasn1.Tag(1).Constructed().ContextSpecific()
	if sr.PeekASN1Tag(extTag) {
		var w, exts cryptobyte.String
		if !sr.ReadASN1(&w, extTag) || !w.ReadASN1(&exts, cbasn1.SEQUENCE) || len(w) != 0 {
			return nil, bad
		}
		for len(exts) > 0 {
			oid, critical, _, ok := crlReadExtension(&exts)
			if !ok {
				return nil, bad
			}
			if critical {
				return nil, fmt.Errorf("unsupported critical single-response extension %s", crlOIDString(oid))
			}
		}
	}
	if len(sr) != 0 {
		return nil, bad
	}
	return ans, nil
}

// ocspTime parses a GeneralizedTime element, fractional seconds allowed
// as encoding/asn1 (and so x/crypto/ocsp) allows them.
func ocspTime(elem []byte) (time.Time, error) {
	var t time.Time
	rest, err := asn1.UnmarshalWithParams(elem, &t, "generalized")
	if err != nil || len(rest) != 0 {
		return time.Time{}, errors.New("bad GeneralizedTime")
	}
	return t, nil
}
