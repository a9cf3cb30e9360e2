package pkibridge

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"math/big"
	"math/bits"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// CRLOptions tune one CRL source. The zero value is usable.
type CRLOptions struct {
	// HTTPClient fetches http(s) locations (default: a plain client).
	HTTPClient *http.Client
	// Timeout bounds one fetch (default 10s). A fetch runs detached from
	// the caller's context so that one impatient caller cannot abort the
	// download every other caller is waiting for.
	Timeout time.Duration
	// MaxBytes refuses larger CRLs (default 256 MiB), counted while reading:
	// a Content-Length header is only a hint.
	MaxBytes int64
	// Grace lets a CRL be used this long after its nextUpdate (default 0),
	// for publishers that are habitually a little late.
	Grace time.Duration
	// RetryBackoff is how long a failed fetch is remembered before the next
	// check tries again (default 30s), so that a dead server costs one
	// timeout per backoff period rather than one per sign-in.
	RetryBackoff time.Duration
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

const (
	crlDefaultTimeout  = 10 * time.Second
	crlDefaultMaxBytes = 256 << 20
	crlDefaultBackoff  = 30 * time.Second
)

// CRLSource answers revocation questions from one configured CRL location.
// JPKI certificates name their CRL distribution point as a directory name,
// not a URL, so the location is configuration: a file path or an http(s)
// URL. The CRL is fetched lazily, verified against its issuer, indexed
// compactly (a million entries take tens of megabytes, not hundreds), and
// used until its nextUpdate; after that the next check refetches it, once
// for all concurrent callers. A stale CRL is never used.
//
// A source built by NewCRLSource belongs to one issuer. A source built by
// NewChecker starts with candidate issuers and is paired, on its first
// successful fetch, with the candidate whose name matches the CRL issuer
// and whose key verifies the CRL signature; it stays paired with that
// issuer for its lifetime, so a later CRL signed by another candidate is
// refused.
type CRLSource struct {
	location   string
	isURL      bool
	candidates []*x509.Certificate
	opts       CRLOptions

	mu       sync.Mutex
	issuer   *x509.Certificate // set once a CRL verified
	cur      *crlIndex
	lastErr  error
	lastFail time.Time
	flight   *crlFlight
}

type crlFlight struct {
	done chan struct{}
	idx  *crlIndex
	err  error
}

// CRLStats describe the CRL a source currently holds, for health checks
// and metrics.
type CRLStats struct {
	Location   string
	Loaded     bool
	Entries    int
	ThisUpdate time.Time
	NextUpdate time.Time
	FetchedAt  time.Time
	// Number is the CRL number extension, if the CRL has one.
	Number *big.Int
	// Issuer is the paired issuer's subject, empty until the first fetch.
	Issuer string
	// LastError is the last fetch failure, cleared by a successful fetch.
	LastError string
}

// NewCRLSource makes a source for the CRL at location (file path or
// http(s) URL) issued by issuer. Nothing is fetched until the first check
// or Refresh.
func NewCRLSource(location string, issuer *x509.Certificate, opts CRLOptions) (*CRLSource, error) {
	if issuer == nil {
		return nil, Fail(ReasonMalformed, "CRL source %s: no issuer certificate", location)
	}
	return newCRLSource(location, []*x509.Certificate{issuer}, opts)
}

func newCRLSource(location string, candidates []*x509.Certificate, opts CRLOptions) (*CRLSource, error) {
	if location == "" {
		return nil, Fail(ReasonMalformed, "CRL source: empty location")
	}
	if len(candidates) == 0 {
		return nil, Fail(ReasonMalformed, "CRL source %s: no issuer certificates", location)
	}
	for _, c := range candidates {
		if c == nil {
			return nil, Fail(ReasonMalformed, "CRL source %s: nil issuer certificate", location)
		}
	}
	s := &CRLSource{location: location, candidates: candidates, opts: opts}
	lower := strings.ToLower(location)
	switch {
	case strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"):
		s.isURL = true
	case strings.Contains(location, "://"):
		return nil, Fail(ReasonMalformed, "CRL source %s: only file paths and http(s) URLs are supported (fetch LDAP CRLs to a file)", location)
	}
	if s.opts.Timeout <= 0 {
		s.opts.Timeout = crlDefaultTimeout
	}
	if s.opts.MaxBytes <= 0 {
		s.opts.MaxBytes = crlDefaultMaxBytes
	}
	if s.opts.RetryBackoff <= 0 {
		s.opts.RetryBackoff = crlDefaultBackoff
	}
	if s.opts.Now == nil {
		s.opts.Now = time.Now
	}
	if s.opts.Logger == nil {
		s.opts.Logger = slog.New(slog.DiscardHandler)
	}
	if s.opts.HTTPClient == nil {
		s.opts.HTTPClient = &http.Client{}
	}
	return s, nil
}

// Location is the configured file path or URL, as it appears in
// RevocationInfo.Source ("crl:<location>") for audit.
func (s *CRLSource) Location() string { return s.location }

// Issuer is the certificate whose CRLs this source uses: the one given to
// NewCRLSource, or the candidate paired on the first fetch (nil before).
func (s *CRLSource) Issuer() *x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.issuer == nil && len(s.candidates) == 1 {
		return s.candidates[0]
	}
	return s.issuer
}

// Stats reports what the source holds now.
func (s *CRLSource) Stats() CRLStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := CRLStats{Location: s.location}
	if s.issuer != nil {
		st.Issuer = s.issuer.Subject.String()
	}
	if s.lastErr != nil {
		st.LastError = s.lastErr.Error()
	}
	if idx := s.cur; idx != nil {
		st.Loaded = true
		st.Entries = idx.len()
		st.ThisUpdate = idx.thisUpdate
		st.NextUpdate = idx.nextUpdate
		st.FetchedAt = idx.fetchedAt
		if idx.number != nil {
			st.Number = new(big.Int).Set(idx.number)
		}
	}
	return st
}

// Refresh fetches the CRL now, whatever the cache holds, so that a service
// can fail fast at start-up or reload on a signal. On failure the CRL in
// use (if still fresh) stays in use.
func (s *CRLSource) Refresh(ctx context.Context) error {
	_, err := s.load(ctx, true)
	return err
}

func (s *CRLSource) source() string { return "crl:" + s.location }

// CheckRevocation answers from the CRL in memory, so a sign-in costs a
// hash lookup; only the first check, and the first after nextUpdate, wait
// for a fetch. It answers unknown, never good, for leaves of another
// issuer or outside the CRL's scope, and when no fresh CRL is at hand.
func (s *CRLSource) CheckRevocation(ctx context.Context, leaf, issuer *x509.Certificate) (RevocationInfo, error) {
	info := RevocationInfo{Status: StatusUnknown, Source: s.source()}
	if leaf == nil {
		return info, Fail(ReasonRevocationUnknown, "%s: no certificate", info.Source)
	}
	if reason := s.quickMismatch(leaf, issuer); reason != "" {
		return info, Fail(ReasonRevocationUnknown, "%s: CRL is for another issuer (%s)", info.Source, reason)
	}
	idx, err := s.load(ctx, false)
	if err != nil {
		return info, err
	}
	s.mu.Lock()
	crlIssuer := s.issuer
	s.mu.Unlock()
	if reason := crlIssuerMismatch(crlIssuer, leaf, issuer); reason != "" {
		return info, Fail(ReasonRevocationUnknown, "%s: CRL is for another issuer (%s)", info.Source, reason)
	}
	if why := idx.covers(leaf); why != "" {
		return info, Fail(ReasonRevocationUnknown, "%s: CRL does not cover this certificate: %s", info.Source, why)
	}
	var kb [crlSerialBuf]byte
	at, reason, found := idx.lookup(crlSerialKey(leaf.SerialNumber, kb[:0]))
	if !found {
		info.Status = StatusGood
		info.Detail = fmt.Sprintf("not listed in CRL of %s", idx.thisUpdate.UTC().Format(time.RFC3339))
		return info, nil
	}
	info.Status = StatusRevoked
	info.RevokedAt = time.Unix(at, 0).UTC()
	if reason >= 0 {
		info.Detail = "reason " + revReasonName(int(reason))
	}
	return info, nil
}

// quickMismatch refuses leaves no candidate could have issued, before any
// network traffic.
func (s *CRLSource) quickMismatch(leaf, issuer *x509.Certificate) string {
	s.mu.Lock()
	cands := s.candidates
	if s.issuer != nil {
		cands = []*x509.Certificate{s.issuer}
	}
	s.mu.Unlock()
	reason := ""
	for _, c := range cands {
		if reason = crlIssuerMismatch(c, leaf, issuer); reason == "" {
			return ""
		}
	}
	return reason
}

// crlIssuerMismatch says why crlIssuer cannot be leaf's issuer, or "".
// JPKI generations share a DN, so the key decides: the issuer passed in
// must have crlIssuer's key, and the leaf's AKI (when both sides have key
// identifiers) must name it.
func crlIssuerMismatch(crlIssuer, leaf, issuer *x509.Certificate) string {
	if crlIssuer == nil {
		return "no issuer"
	}
	if !bytes.Equal(leaf.RawIssuer, crlIssuer.RawSubject) {
		return "issuer name differs"
	}
	if issuer != nil && !bytes.Equal(issuer.RawSubjectPublicKeyInfo, crlIssuer.RawSubjectPublicKeyInfo) {
		return "issuer key differs"
	}
	if len(leaf.AuthorityKeyId) > 0 && len(crlIssuer.SubjectKeyId) > 0 && !bytes.Equal(leaf.AuthorityKeyId, crlIssuer.SubjectKeyId) {
		return "authority key identifier differs"
	}
	return ""
}

// load returns a fresh CRL index, fetching when forced, when there is
// none, or when the one held is stale.
func (s *CRLSource) load(ctx context.Context, force bool) (*crlIndex, error) {
	s.mu.Lock()
	now := s.opts.Now()
	if !force && s.cur != nil && s.fresh(s.cur, now) {
		idx := s.cur
		s.mu.Unlock()
		return idx, nil
	}
	if !force && s.flight == nil && s.lastErr != nil && now.Before(s.lastFail.Add(s.opts.RetryBackoff)) {
		err := s.lastErr
		s.mu.Unlock()
		return nil, err
	}
	f := s.flight
	if f == nil {
		f = &crlFlight{done: make(chan struct{})}
		s.flight = f
		go s.fetch(context.WithoutCancel(ctx), f)
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.idx, f.err
	case <-ctx.Done():
		return nil, Wrap(ReasonRevocationUnknown, ctx.Err(), "%s: waiting for CRL", s.source())
	}
}

func (s *CRLSource) fresh(idx *crlIndex, now time.Time) bool {
	return !now.After(idx.nextUpdate.Add(s.opts.Grace))
}

// fetch runs one download-verify-index cycle and publishes its outcome to
// everyone waiting on f.
func (s *CRLSource) fetch(ctx context.Context, f *crlFlight) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	start := s.opts.Now()
	idx, issuer, err := s.fetchOnce(ctx)
	s.mu.Lock()
	now := s.opts.Now()
	if err == nil {
		idx.fetchedAt = now
		switch {
		case !s.fresh(idx, now):
			err = Fail(ReasonRevocationUnknown, "%s: stale CRL: nextUpdate %s has passed", s.source(), idx.nextUpdate.UTC().Format(time.RFC3339))
		case s.cur != nil && idx.thisUpdate.Before(s.cur.thisUpdate):
			err = Fail(ReasonRevocationUnknown, "%s: fetched CRL (thisUpdate %s) is older than the one in use", s.source(), idx.thisUpdate.UTC().Format(time.RFC3339))
		case s.cur != nil && idx.number != nil && s.cur.number != nil && idx.number.Cmp(s.cur.number) < 0:
			err = Fail(ReasonRevocationUnknown, "%s: fetched CRL number %s is below the one in use (%s)", s.source(), idx.number, s.cur.number)
		}
	}
	if err == nil {
		s.cur, s.issuer, s.lastErr = idx, issuer, nil
		f.idx = idx
		s.opts.Logger.Info("CRL loaded", "source", s.source(), "entries", idx.len(),
			"this_update", idx.thisUpdate, "next_update", idx.nextUpdate, "took", now.Sub(start))
	} else {
		s.lastErr, s.lastFail = err, now
		f.err = err
		s.opts.Logger.Warn("CRL fetch failed", "source", s.source(), "error", err)
	}
	s.flight = nil
	s.mu.Unlock()
	close(f.done)
}

func (s *CRLSource) fetchOnce(ctx context.Context) (*crlIndex, *x509.Certificate, error) {
	data, err := s.read(ctx)
	if err != nil {
		return nil, nil, err
	}
	der, err := crlDecodePEM(data)
	if err != nil {
		return nil, nil, Wrap(ReasonRevocationUnknown, err, "%s", s.source())
	}
	data = nil
	s.mu.Lock()
	cands := s.candidates
	if s.issuer != nil {
		cands = []*x509.Certificate{s.issuer}
	}
	s.mu.Unlock()
	idx, issuer, err := parseCRL(der, cands)
	if err != nil {
		return nil, nil, Wrap(ReasonRevocationUnknown, err, "%s", s.source())
	}
	return idx, issuer, nil
}

func (s *CRLSource) read(ctx context.Context) ([]byte, error) {
	max := s.opts.MaxBytes
	if !s.isURL {
		f, err := os.Open(s.location)
		if err != nil {
			return nil, Wrap(ReasonRevocationUnknown, err, "%s", s.source())
		}
		defer f.Close()
		var hint int64
		if fi, err := f.Stat(); err == nil {
			if fi.Size() > max {
				return nil, Fail(ReasonRevocationUnknown, "%s: CRL is %d bytes, above the %d-byte limit", s.source(), fi.Size(), max)
			}
			hint = fi.Size()
		}
		return crlReadLimited(ctx, f, max, hint, s.source())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.location, nil)
	if err != nil {
		return nil, Wrap(ReasonRevocationUnknown, err, "%s", s.source())
	}
	req.Header.Set("Accept", "application/pkix-crl, application/x-pkcs7-crl, */*")
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, Wrap(ReasonRevocationUnknown, err, "%s: fetching CRL", s.source())
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, Fail(ReasonRevocationUnknown, "%s: HTTP status %d", s.source(), resp.StatusCode)
	}
	if resp.ContentLength > max {
		return nil, Fail(ReasonRevocationUnknown, "%s: CRL is %d bytes, above the %d-byte limit", s.source(), resp.ContentLength, max)
	}
	return crlReadLimited(ctx, resp.Body, max, resp.ContentLength, s.source())
}

// crlReadLimited reads at most max bytes; hint (a file size or
// Content-Length, possibly a lie) only presizes the buffer.
func crlReadLimited(ctx context.Context, r io.Reader, max, hint int64, src string) ([]byte, error) {
	if hint < 0 || hint > max {
		hint = 0
	}
	buf := make([]byte, 0, hint+512)
	lr := io.LimitReader(r, max+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > max {
			return nil, Fail(ReasonRevocationUnknown, "%s: CRL exceeds the %d-byte limit", src, max)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, Wrap(ReasonRevocationUnknown, err, "%s: reading CRL", src)
		}
	}
}

// crlDecodePEM accepts DER, or PEM with an "X509 CRL" block (text before
// it, as `openssl crl -text` writes, is skipped).
func crlDecodePEM(data []byte) ([]byte, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] == 0x30 || !bytes.Contains(trimmed, []byte("-----BEGIN")) {
		return data, nil // DER, or garbage the DER parser will name
	}
	rest := trimmed
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("PEM without an X509 CRL block")
		}
		if b.Type == "X509 CRL" {
			return b.Bytes, nil
		}
	}
}

// revReasonName names an RFC 5280 CRLReason for audit details.
func revReasonName(code int) string {
	names := [...]string{
		0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
		4: "superseded", 5: "cessationOfOperation", 6: "certificateHold",
		8: "removeFromCRL", 9: "privilegeWithdrawn", 10: "aACompromise",
	}
	if code >= 0 && code < len(names) && names[code] != "" {
		return names[code]
	}
	return fmt.Sprintf("code %d", code)
}

// ---- CRL parsing and the compact index ----
//
// x509.ParseRevocationList builds a big.Int, a time.Time and a slice
// header per entry: for a million entries that is about 2-3 s and 400 MB
// of heap. parseCRL instead walks the DER with cryptobyte, checks the
// signature over the raw TBSCertList before reading a single entry, and
// stores the entries in a flat open-addressing table of fixed-width slots
//
//	[serial length][reason][revocation time, 8 bytes LE][serial, padded]
//
// sized for the longest serial (serials above crlInlineMax octets, which
// conforming CAs never issue, go to a small side map), plus a parallel
// array of 16-bit tags probed first. A million 16-byte serials take about
// 38 MB, and a lookup costs at most one random read of the slot array.

// crlIndex is a verified CRL reduced to what revocation checks need.
type crlIndex struct {
	issuerRaw  []byte
	thisUpdate time.Time
	nextUpdate time.Time
	number     *big.Int
	fetchedAt  time.Time
	scope      crlScope

	n     int
	width int      // slot width in bytes
	tags  []uint16 // per slot: fingerprint, 0 when empty
	slots []byte   // len(tags) slots of width bytes
	long  map[string]crlEntry
	seed  maphash.Seed
}

type crlEntry struct {
	at     int64
	reason int8
}

const (
	crlSlotHeader = 10 // length, reason, time
	crlInlineMax  = 24 // longest serial kept in the table itself
)

// crlScope is what an issuingDistributionPoint extension limits the CRL to.
type crlScope struct {
	onlyUser  bool
	onlyCA    bool
	onlyAttr  bool
	someReas  bool
	dpPresent bool
	dpRaw     []byte   // the DistributionPointName element
	dpNames   [][]byte // its fullName GeneralName elements
}

// crlSerialBuf fits every conforming serial (RFC 5280: at most 20 octets)
// plus a sign byte, so lookups do not allocate.
const crlSerialBuf = 24

func (x *crlIndex) len() int { return x.n }

// home maps a hash onto a slot without requiring a power-of-two table,
// which lets the table run at 75% load instead of up to 50%.
func (x *crlIndex) home(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(x.tags)))
	return int(hi)
}

// crlTag is a slot's 15-bit fingerprint; 0 marks an empty slot. It uses
// the low bits of the hash: home uses the high ones, so neighbours in the
// table share their high bits and tags made of them would always match.
func crlTag(h uint64) uint16 { return uint16(h) | 1 }

// lookup finds key (a minimal DER INTEGER content) in O(1). It probes the
// tag array (2 bytes a slot, small enough to stay in cache) and reads a
// slot only when the tag matches, so a miss, the usual answer, seldom
// leaves the cache and a hit costs one slot read.
func (x *crlIndex) lookup(key []byte) (at int64, reason int8, ok bool) {
	if len(key) > crlInlineMax || x.width == 0 {
		e, ok := x.long[string(key)]
		return e.at, e.reason, ok
	}
	if len(key) > x.width-crlSlotHeader {
		return 0, 0, false
	}
	h := maphash.Bytes(x.seed, key)
	tag := crlTag(h)
	for i := x.home(h); ; {
		t := x.tags[i]
		if t == 0 {
			return 0, 0, false
		}
		if t == tag {
			s := x.slots[i*x.width : (i+1)*x.width]
			if l := int(s[0]); l == len(key) && bytes.Equal(s[crlSlotHeader:crlSlotHeader+l], key) {
				return int64(binary.LittleEndian.Uint64(s[2:10])), int8(s[1]), true
			}
		}
		if i++; i == len(x.tags) {
			i = 0
		}
	}
}

// insert adds an entry unless its serial is already present (the first
// listing wins).
func (x *crlIndex) insert(key []byte, at int64, reason int8) {
	if len(key) > crlInlineMax {
		if _, dup := x.long[string(key)]; !dup {
			x.long[string(key)] = crlEntry{at, reason}
			x.n++
		}
		return
	}
	h := maphash.Bytes(x.seed, key)
	tag := crlTag(h)
	for i := x.home(h); ; {
		s := x.slots[i*x.width : (i+1)*x.width]
		switch x.tags[i] {
		case 0:
			x.tags[i] = tag
			s[0] = byte(len(key))
			s[1] = byte(reason)
			binary.LittleEndian.PutUint64(s[2:10], uint64(at))
			copy(s[crlSlotHeader:], key)
			x.n++
			return
		case tag:
			if l := int(s[0]); l == len(key) && bytes.Equal(s[crlSlotHeader:crlSlotHeader+l], key) {
				return
			}
		}
		if i++; i == len(x.tags) {
			i = 0
		}
	}
}

// forEach visits the entries (in no particular order) until fn returns
// false.
func (x *crlIndex) forEach(fn func(key []byte, at int64, reason int8) bool) {
	for i := 0; i+x.width <= len(x.slots) && x.width > 0; i += x.width {
		s := x.slots[i : i+x.width]
		if l := int(s[0]); l > 0 && !fn(s[crlSlotHeader:crlSlotHeader+l], int64(binary.LittleEndian.Uint64(s[2:10])), int8(s[1])) {
			return
		}
	}
	for k, e := range x.long {
		if !fn([]byte(k), e.at, e.reason) {
			return
		}
	}
}

// covers says why this CRL's scope excludes leaf, or "". A partitioned CRL
// (issuingDistributionPoint with a name) covers only certificates whose
// CRL distribution points name it; answering "good" for others would be
// a guess.
func (x *crlIndex) covers(leaf *x509.Certificate) string {
	sc := x.scope
	switch {
	case sc.someReas:
		return "CRL covers only some revocation reasons"
	case sc.onlyCA && !leaf.IsCA, sc.onlyAttr:
		return "CRL covers only CA or attribute certificates"
	case sc.onlyUser && leaf.IsCA:
		return "CRL covers only end-entity certificates"
	}
	if !sc.dpPresent {
		return ""
	}
	dpRaws, names := crlLeafDistributionPoints(leaf)
	for _, d := range dpRaws {
		if bytes.Equal(d, sc.dpRaw) {
			return ""
		}
	}
	for _, n := range names {
		for _, m := range sc.dpNames {
			if bytes.Equal(n, m) {
				return ""
			}
		}
	}
	return "certificate's CRL distribution points do not name this CRL partition"
}

var (
	crlOIDExtAKI        = []byte{0x55, 0x1d, 0x23} // 2.5.29.35
	crlOIDExtNumber     = []byte{0x55, 0x1d, 0x14} // 2.5.29.20
	crlOIDExtDelta      = []byte{0x55, 0x1d, 0x1b} // 2.5.29.27
	crlOIDExtIDP        = []byte{0x55, 0x1d, 0x1c} // 2.5.29.28
	crlOIDExtReason     = []byte{0x55, 0x1d, 0x15} // 2.5.29.21
	crlOIDExtCertIssuer = []byte{0x55, 0x1d, 0x1d} // 2.5.29.29
	crlOIDExtCRLDP      = []byte{0x55, 0x1d, 0x1f} // 2.5.29.31
)

// crlSigAlgs are the signature algorithms accepted on CRLs. SHA-1 and MD5
// are refused, as x509.RevocationList.CheckSignatureFrom does.
var crlSigAlgs = []struct {
	oid     []byte
	alg     x509.SignatureAlgorithm
	rsaNull bool // parameters must be NULL or absent; otherwise absent
}{
	{[]byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b}, x509.SHA256WithRSA, true},
	{[]byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c}, x509.SHA384WithRSA, true},
	{[]byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d}, x509.SHA512WithRSA, true},
	{[]byte{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}, x509.ECDSAWithSHA256, false},
	{[]byte{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03}, x509.ECDSAWithSHA384, false},
	{[]byte{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04}, x509.ECDSAWithSHA512, false},
	{[]byte{0x2b, 0x65, 0x70}, x509.PureEd25519, false},
}

func crlSignatureAlgorithm(algID cryptobyte.String) (x509.SignatureAlgorithm, error) {
	var body, oid cryptobyte.String
	if !algID.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) {
		return 0, errors.New("malformed signature algorithm")
	}
	for _, a := range crlSigAlgs {
		if !bytes.Equal(oid, a.oid) {
			continue
		}
		if len(body) != 0 {
			var null cryptobyte.String
			if !a.rsaNull || !body.ReadASN1(&null, cbasn1.NULL) || len(null) != 0 || len(body) != 0 {
				return 0, errors.New("malformed signature algorithm parameters")
			}
		}
		return a.alg, nil
	}
	return 0, fmt.Errorf("unsupported CRL signature algorithm %s", crlOIDString(oid))
}

// crlTBS is the TBSCertList with the entries still unparsed.
type crlTBS struct {
	sigAlg     cryptobyte.String
	issuerRaw  []byte
	thisUpdate time.Time
	nextUpdate time.Time
	revoked    cryptobyte.String
	exts       cryptobyte.String
	hasExts    bool
}

// parseCRL verifies der against one of candidates and indexes it. The
// candidate must carry the CRL's issuer name (byte-equal), match its AKI,
// be allowed to sign CRLs, and its key must verify the signature; the
// entries are read only after that.
func parseCRL(der []byte, candidates []*x509.Certificate) (*crlIndex, *x509.Certificate, error) {
	input := cryptobyte.String(der)
	var crl, tbsRaw, outerAlg cryptobyte.String
	var sig asn1.BitString
	if !input.ReadASN1(&crl, cbasn1.SEQUENCE) || len(input) != 0 {
		return nil, nil, errors.New("malformed CRL: not a single DER SEQUENCE")
	}
	if !crl.ReadASN1Element(&tbsRaw, cbasn1.SEQUENCE) ||
		!crl.ReadASN1Element(&outerAlg, cbasn1.SEQUENCE) ||
		!crl.ReadASN1BitString(&sig) || len(crl) != 0 {
		return nil, nil, errors.New("malformed CRL: bad CertificateList")
	}
	if sig.BitLength%8 != 0 {
		return nil, nil, errors.New("malformed CRL: signature is not whole bytes")
	}
	alg, err := crlSignatureAlgorithm(outerAlg)
	if err != nil {
		return nil, nil, err
	}
	tbs, err := parseCRLTBS(tbsRaw)
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(tbs.sigAlg, outerAlg) {
		return nil, nil, errors.New("malformed CRL: inner and outer signature algorithms differ")
	}
	idx := &crlIndex{issuerRaw: tbs.issuerRaw, thisUpdate: tbs.thisUpdate, nextUpdate: tbs.nextUpdate}
	var aki []byte
	if tbs.hasExts {
		if aki, err = idx.parseExtensions(tbs.exts); err != nil {
			return nil, nil, err
		}
	}
	if tbs.nextUpdate.IsZero() {
		return nil, nil, errors.New("CRL has no nextUpdate, so there is no telling when it goes stale")
	}

	var issuer *x509.Certificate
	var sigErr error
	nameMatched := false
	for _, c := range candidates {
		if !bytes.Equal(c.RawSubject, tbs.issuerRaw) {
			continue
		}
		nameMatched = true
		if len(aki) > 0 && len(c.SubjectKeyId) > 0 && !bytes.Equal(aki, c.SubjectKeyId) {
			sigErr = errors.New("CRL authority key identifier does not match the issuer (signed by another key?)")
			continue
		}
		if c.Version == 3 && !c.BasicConstraintsValid || c.BasicConstraintsValid && !c.IsCA {
			sigErr = errors.New("CRL issuer certificate is not a CA")
			continue
		}
		if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCRLSign == 0 {
			sigErr = errors.New("CRL issuer certificate may not sign CRLs")
			continue
		}
		if err := c.CheckSignature(alg, tbsRaw, sig.Bytes); err != nil {
			sigErr = fmt.Errorf("CRL signature does not verify with the issuer key (signed by another key?): %w", err)
			continue
		}
		issuer = c
		break
	}
	if issuer == nil {
		if !nameMatched {
			return nil, nil, errors.New("CRL issuer name does not match the issuer certificate")
		}
		return nil, nil, sigErr
	}
	if err := idx.buildIndex(tbs.revoked); err != nil {
		return nil, nil, err
	}
	return idx, issuer, nil
}

func parseCRLTBS(tbsRaw cryptobyte.String) (*crlTBS, error) {
	var tbs cryptobyte.String
	if !tbsRaw.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, errors.New("malformed CRL: bad TBSCertList")
	}
	out := &crlTBS{}
	if tbs.PeekASN1Tag(cbasn1.INTEGER) {
		var v int
		if !tbs.ReadASN1Integer(&v) || v != 1 {
			return nil, errors.New("malformed CRL: unsupported version")
		}
	}
	var issuer cryptobyte.String
	if !tbs.ReadASN1Element(&out.sigAlg, cbasn1.SEQUENCE) || !tbs.ReadASN1Element(&issuer, cbasn1.SEQUENCE) {
		return nil, errors.New("malformed CRL: bad signature or issuer field")
	}
	out.issuerRaw = issuer
	var err error
	if out.thisUpdate, err = crlReadTime(&tbs); err != nil {
		return nil, fmt.Errorf("malformed CRL: thisUpdate: %w", err)
	}
	if tbs.PeekASN1Tag(cbasn1.UTCTime) || tbs.PeekASN1Tag(cbasn1.GeneralizedTime) {
		if out.nextUpdate, err = crlReadTime(&tbs); err != nil {
			return nil, fmt.Errorf("malformed CRL: nextUpdate: %w", err)
		}
	}
	if tbs.PeekASN1Tag(cbasn1.SEQUENCE) {
		if !tbs.ReadASN1(&out.revoked, cbasn1.SEQUENCE) {
			return nil, errors.New("malformed CRL: bad revokedCertificates")
		}
	}
	extTag := cbasn1.Tag(0).Constructed().ContextSpecific()
	if tbs.PeekASN1Tag(extTag) {
		var wrap cryptobyte.String
		if !tbs.ReadASN1(&wrap, extTag) || !wrap.ReadASN1(&out.exts, cbasn1.SEQUENCE) || len(wrap) != 0 {
			return nil, errors.New("malformed CRL: bad crlExtensions")
		}
		out.hasExts = true
	}
	if len(tbs) != 0 {
		return nil, errors.New("malformed CRL: trailing data in TBSCertList")
	}
	return out, nil
}

// crlReadExtension reads one Extension; value is the extnValue contents.
func crlReadExtension(exts *cryptobyte.String) (oid cryptobyte.String, critical bool, value cryptobyte.String, ok bool) {
	var ext cryptobyte.String
	if !exts.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) || len(oid) == 0 {
		return nil, false, nil, false
	}
	if ext.PeekASN1Tag(cbasn1.BOOLEAN) && !ext.ReadASN1Boolean(&critical) {
		return nil, false, nil, false
	}
	if !ext.ReadASN1(&value, cbasn1.OCTET_STRING) || len(ext) != 0 {
		return nil, false, nil, false
	}
	return oid, critical, value, true
}

// parseExtensions reads the CRL extensions; it returns the AKI key id.
func (x *crlIndex) parseExtensions(exts cryptobyte.String) (aki []byte, err error) {
	seen := map[string]bool{}
	for len(exts) > 0 {
		oid, critical, val, ok := crlReadExtension(&exts)
		if !ok {
			return nil, errors.New("malformed CRL: bad extension")
		}
		if seen[string(oid)] {
			return nil, fmt.Errorf("malformed CRL: duplicate extension %s", crlOIDString(oid))
		}
		seen[string(oid)] = true
		switch {
		case bytes.Equal(oid, crlOIDExtAKI):
			var seq cryptobyte.String
			if !val.ReadASN1(&seq, cbasn1.SEQUENCE) || len(val) != 0 {
				return nil, errors.New("malformed CRL: bad authority key identifier")
			}
			tag := cbasn1.Tag(0).ContextSpecific()
			if seq.PeekASN1Tag(tag) {
				var id cryptobyte.String
				if !seq.ReadASN1(&id, tag) {
					return nil, errors.New("malformed CRL: bad authority key identifier")
				}
				aki = id
			}
		case bytes.Equal(oid, crlOIDExtNumber):
			n := new(big.Int)
			if !val.ReadASN1Integer(n) || len(val) != 0 || n.Sign() < 0 {
				return nil, errors.New("malformed CRL: bad CRL number")
			}
			x.number = n
		case bytes.Equal(oid, crlOIDExtDelta):
			return nil, errors.New("delta CRLs are not supported; configure the complete CRL")
		case bytes.Equal(oid, crlOIDExtIDP):
			if err := x.scope.parse(val); err != nil {
				return nil, err
			}
		case critical:
			return nil, fmt.Errorf("CRL has unsupported critical extension %s", crlOIDString(oid))
		}
	}
	return aki, nil
}

// parse reads an IssuingDistributionPoint. Indirect CRLs are refused:
// their entries may belong to other issuers.
func (sc *crlScope) parse(val cryptobyte.String) error {
	bad := errors.New("malformed CRL: bad issuing distribution point")
	var seq cryptobyte.String
	if !val.ReadASN1(&seq, cbasn1.SEQUENCE) || len(val) != 0 {
		return bad
	}
	dpTag := cbasn1.Tag(0).Constructed().ContextSpecific()
	if seq.PeekASN1Tag(dpTag) {
		var dp, name cryptobyte.String
		if !seq.ReadASN1(&dp, dpTag) {
			return bad
		}
		rest := dp
		var nameTag cbasn1.Tag
		if !rest.ReadAnyASN1Element(&name, &nameTag) || len(rest) != 0 {
			return bad
		}
		sc.dpPresent = true
		sc.dpRaw = name
		fullTag := cbasn1.Tag(0).Constructed().ContextSpecific()
		if nameTag == fullTag {
			var names cryptobyte.String
			if !name.ReadASN1(&names, fullTag) {
				return bad
			}
			for len(names) > 0 {
				var gn cryptobyte.String
				var t cbasn1.Tag
				if !names.ReadAnyASN1Element(&gn, &t) {
					return bad
				}
				sc.dpNames = append(sc.dpNames, gn)
			}
		}
	}
	flag := func(n uint8, dst *bool) bool {
		tag := cbasn1.Tag(n).ContextSpecific()
		if !seq.PeekASN1Tag(tag) {
			return true
		}
		var b cryptobyte.String
		if !seq.ReadASN1(&b, tag) || len(b) != 1 {
			return false
		}
		*dst = b[0] != 0
		return true
	}
	var indirect bool
	if !flag(1, &sc.onlyUser) || !flag(2, &sc.onlyCA) {
		return bad
	}
	reasonsTag := cbasn1.Tag(3).ContextSpecific()
	if seq.PeekASN1Tag(reasonsTag) {
		var r cryptobyte.String
		if !seq.ReadASN1(&r, reasonsTag) {
			return bad
		}
		sc.someReas = true
	}
	if !flag(4, &indirect) || !flag(5, &sc.onlyAttr) || len(seq) != 0 {
		return bad
	}
	if indirect {
		return errors.New("indirect CRLs are not supported")
	}
	return nil
}

// crlLeafDistributionPoints returns the DistributionPointName elements of
// leaf's CRL distribution points and the GeneralNames of their fullNames,
// raw, for comparison with an issuingDistributionPoint. crypto/x509 keeps
// only URIs; JPKI uses directory names.
func crlLeafDistributionPoints(leaf *x509.Certificate) (dps, names [][]byte) {
	for _, ext := range leaf.Extensions {
		if !bytes.Equal(crlOIDBytes(ext.Id), crlOIDExtCRLDP) {
			continue
		}
		val := cryptobyte.String(ext.Value)
		var seq cryptobyte.String
		if !val.ReadASN1(&seq, cbasn1.SEQUENCE) {
			return nil, nil
		}
		for len(seq) > 0 {
			var dp cryptobyte.String
			if !seq.ReadASN1(&dp, cbasn1.SEQUENCE) {
				return nil, nil
			}
			dpTag := cbasn1.Tag(0).Constructed().ContextSpecific()
			if !dp.PeekASN1Tag(dpTag) {
				continue
			}
			var wrap, name cryptobyte.String
			var nameTag cbasn1.Tag
			if !dp.ReadASN1(&wrap, dpTag) || !wrap.ReadAnyASN1Element(&name, &nameTag) {
				return nil, nil
			}
			dps = append(dps, name)
			if nameTag == cbasn1.Tag(0).Constructed().ContextSpecific() {
				var gns cryptobyte.String
				if !name.ReadASN1(&gns, nameTag) {
					return nil, nil
				}
				for len(gns) > 0 {
					var gn cryptobyte.String
					var t cbasn1.Tag
					if !gns.ReadAnyASN1Element(&gn, &t) {
						return nil, nil
					}
					names = append(names, gn)
				}
			}
		}
	}
	return dps, names
}

// buildIndex parses the revokedCertificates in two passes: the first
// counts entries and finds the longest serial, so the table is allocated
// once at its final size; the second validates and inserts.
func (x *crlIndex) buildIndex(revoked cryptobyte.String) error {
	n, maxLen := 0, 0
	scan := revoked
	for len(scan) > 0 {
		var entry, serial cryptobyte.String
		if !scan.ReadASN1(&entry, cbasn1.SEQUENCE) || !entry.ReadASN1(&serial, cbasn1.INTEGER) {
			return fmt.Errorf("malformed CRL: bad entry %d", n)
		}
		s, err := crlNormalizeSerial(serial)
		if err != nil {
			return fmt.Errorf("malformed CRL: entry %d: %w", n, err)
		}
		n++
		if len(s) <= crlInlineMax {
			maxLen = max(maxLen, len(s))
		}
	}
	x.long = map[string]crlEntry{}
	x.seed = maphash.MakeSeed()
	if maxLen > 0 {
		x.width = crlSlotHeader + maxLen
		x.tags = make([]uint16, n+n/3+1)
		x.slots = make([]byte, len(x.tags)*x.width)
	}
	for i := 0; len(revoked) > 0; i++ {
		var entry, serial cryptobyte.String
		revoked.ReadASN1(&entry, cbasn1.SEQUENCE)
		entry.ReadASN1(&serial, cbasn1.INTEGER)
		key, _ := crlNormalizeSerial(serial)
		at, err := crlReadTime(&entry)
		if err != nil {
			return fmt.Errorf("malformed CRL: entry %d revocationDate: %w", i, err)
		}
		reason := int8(-1)
		if len(entry) > 0 {
			var exts cryptobyte.String
			if !entry.ReadASN1(&exts, cbasn1.SEQUENCE) || len(entry) != 0 {
				return fmt.Errorf("malformed CRL: entry %d: bad extensions", i)
			}
			if reason, err = crlEntryExtensions(exts); err != nil {
				return fmt.Errorf("malformed CRL: entry %d: %w", i, err)
			}
		}
		x.insert(key, at.Unix(), reason)
	}
	return nil
}

// crlEntryExtensions returns the reason code (-1 if absent). An unknown
// critical entry extension makes the whole CRL unusable (RFC 5280 5.3).
func crlEntryExtensions(exts cryptobyte.String) (int8, error) {
	reason := int8(-1)
	for len(exts) > 0 {
		oid, critical, val, ok := crlReadExtension(&exts)
		if !ok {
			return 0, errors.New("bad entry extension")
		}
		switch {
		case bytes.Equal(oid, crlOIDExtReason):
			var e cryptobyte.String
			if !val.ReadASN1(&e, cbasn1.ENUM) || len(val) != 0 || len(e) != 1 || e[0] > 10 || e[0] == 7 {
				return 0, errors.New("bad reason code")
			}
			reason = int8(e[0])
		case bytes.Equal(oid, crlOIDExtCertIssuer):
			return 0, errors.New("certificateIssuer entry extension (indirect CRL) is not supported")
		case critical:
			return 0, fmt.Errorf("unsupported critical entry extension %s", crlOIDString(oid))
		}
	}
	return reason, nil
}

// crlNormalizeSerial strips redundant sign bytes so that a serial the CA
// encoded non-minimally still matches the certificate's.
func crlNormalizeSerial(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("empty serial number")
	}
	if len(b) > 64 {
		return nil, errors.New("serial number longer than 64 octets")
	}
	for len(b) > 1 && (b[0] == 0 && b[1]&0x80 == 0 || b[0] == 0xff && b[1]&0x80 != 0) {
		b = b[1:]
	}
	return b, nil
}

// crlSerialKey renders n as minimal DER INTEGER contents, appending to buf.
func crlSerialKey(n *big.Int, buf []byte) []byte {
	if n == nil {
		return append(buf, 0)
	}
	if n.Sign() < 0 {
		der, err := asn1.Marshal(n)
		if err != nil || len(der) < 3 {
			return append(buf, 0)
		}
		var v cryptobyte.String
		s := cryptobyte.String(der)
		if !s.ReadASN1(&v, cbasn1.INTEGER) {
			return append(buf, 0)
		}
		return append(buf, v...)
	}
	l := (n.BitLen() + 7) / 8
	if l == 0 {
		return append(buf, 0)
	}
	start := len(buf)
	buf = append(buf, make([]byte, l+1)...)
	n.FillBytes(buf[start+1:])
	if buf[start+1]&0x80 != 0 {
		return buf
	}
	copy(buf[start:], buf[start+1:])
	return buf[:len(buf)-1]
}

// crlReadTime reads a UTCTime or GeneralizedTime in the strict DER forms
// RFC 5280 prescribes (YYMMDDHHMMSSZ, YYYYMMDDHHMMSSZ). It is hand-rolled
// because a million time.Parse calls dominate CRL parsing otherwise.
func crlReadTime(s *cryptobyte.String) (time.Time, error) {
	var v cryptobyte.String
	var tag cbasn1.Tag
	if !s.ReadAnyASN1(&v, &tag) {
		return time.Time{}, errors.New("bad time")
	}
	digits := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	var year int
	var rest []byte
	switch tag {
	case cbasn1.UTCTime:
		if len(v) != 13 {
			return time.Time{}, errors.New("bad UTCTime")
		}
		yy, ok := digits(v[:2])
		if !ok {
			return time.Time{}, errors.New("bad UTCTime")
		}
		year = 1900 + yy
		if yy < 50 {
			year = 2000 + yy
		}
		rest = v[2:]
	case cbasn1.GeneralizedTime:
		if len(v) != 15 {
			return time.Time{}, errors.New("bad GeneralizedTime")
		}
		var ok bool
		if year, ok = digits(v[:4]); !ok {
			return time.Time{}, errors.New("bad GeneralizedTime")
		}
		rest = v[4:]
	default:
		return time.Time{}, errors.New("not a time")
	}
	if rest[10] != 'Z' {
		return time.Time{}, errors.New("time not in UTC")
	}
	var f [5]int
	for i := range f {
		d, ok := digits(rest[2*i : 2*i+2])
		if !ok {
			return time.Time{}, errors.New("bad time digits")
		}
		f[i] = d
	}
	mon, day, hh, mm, ss := f[0], f[1], f[2], f[3], f[4]
	if mon < 1 || mon > 12 || day < 1 || hh > 23 || mm > 59 || ss > 59 {
		return time.Time{}, errors.New("time out of range")
	}
	t := time.Date(year, time.Month(mon), day, hh, mm, ss, 0, time.UTC)
	if t.Day() != day {
		return time.Time{}, errors.New("time out of range")
	}
	return t, nil
}

func crlOIDBytes(oid asn1.ObjectIdentifier) []byte {
	der, err := asn1.Marshal(oid)
	if err != nil || len(der) < 2 {
		return nil
	}
	return der[2:]
}

func crlOIDString(b []byte) string {
	var oid asn1.ObjectIdentifier
	full := append([]byte{0x06, byte(len(b))}, b...)
	if len(b) > 127 {
		return "(long OID)"
	}
	if _, err := asn1.Unmarshal(full, &oid); err != nil {
		return fmt.Sprintf("%x", b)
	}
	return oid.String()
}
