package rplogo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/whitelist"
)

// fakeClients is a client table: the resolver's behaviour is not what
// these tests are about.
type fakeClients map[string]*clients.Client

func (f fakeClients) Lookup(_ context.Context, id string) (*clients.Entry, error) {
	if c, ok := f[id]; ok {
		return &clients.Entry{Client: c}, nil
	}
	return nil, clients.ErrUnknown
}

func encoded(t testing.TB, format string, w, h int) []byte {
	t.Helper()
	img := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.White, color.Black})
	var b bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&b, img)
	case "jpeg":
		err = jpeg.Encode(&b, img, nil)
	case "gif":
		err = gif.Encode(&b, img, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// logoServer is the RP's web server: it counts requests per path.
type logoServer struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newLogoServer(t *testing.T, files map[string]func(w http.ResponseWriter)) *logoServer {
	t.Helper()
	s := &logoServer{hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		if f, ok := files[r.URL.Path]; ok {
			f(w)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *logoServer) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func body(b []byte, ctype string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", ctype)
		_, _ = w.Write(b)
	}
}

type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

func newHandler(t *testing.T, cl fakeClients, f Fetcher, c *clock) http.Handler {
	t.Helper()
	if f == nil {
		// Dev: the test's server is on loopback, over http.
		f = whitelist.NewFetcher(whitelist.FetcherOptions{Dev: true, Timeout: 2 * time.Second})
	}
	h, err := New(Options{Clients: cl, Fetcher: f, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	return mux
}

func get(t *testing.T, h http.Handler, id string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, clients.LogoPath(id), nil))
	return rec
}

func isMark(rec *httptest.ResponseRecorder) bool {
	return rec.Code == http.StatusOK && rec.Header().Get("Content-Type") == "image/svg+xml" &&
		strings.HasPrefix(rec.Body.String(), "<svg ")
}

func TestLogoServedAndCached(t *testing.T) {
	pngLogo := encoded(t, "png", 64, 32)
	srv := newLogoServer(t, map[string]func(http.ResponseWriter){
		"/logo.png": body(pngLogo, "image/png"),
		"/logo.jpg": body(encoded(t, "jpeg", 16, 16), "application/octet-stream"), // the type sent is not believed
		"/logo.gif": body(encoded(t, "gif", 16, 16), "image/gif"),
	})
	c := &clock{}
	h := newHandler(t, fakeClients{
		"bank":   {ID: "bank", DisplayName: "Bank", LogoURI: srv.URL + "/logo.png"},
		"clinic": {ID: "clinic", DisplayName: "Clinic", LogoURI: srv.URL + "/logo.jpg"},
		"city":   {ID: "city", DisplayName: "City", LogoURI: srv.URL + "/logo.gif"},
	}, nil, c)
	for id, want := range map[string]string{"bank": "image/png", "clinic": "image/jpeg", "city": "image/gif"} {
		rec := get(t, h, id)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != want {
			t.Errorf("%s: %d %s, want %s", id, rec.Code, rec.Header().Get("Content-Type"), want)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") {
			t.Errorf("%s: CSP %q", id, csp)
		}
	}
	if rec := get(t, h, "bank"); !bytes.Equal(rec.Body.Bytes(), pngLogo) {
		t.Error("the PNG is not served as fetched")
	}
	// Served from memory within TTL, fetched again after it.
	for range 5 {
		get(t, h, "bank")
	}
	if n := srv.count("/logo.png"); n != 1 {
		t.Errorf("fetched %d times within the TTL, want 1", n)
	}
	c.advance(TTL + time.Second)
	get(t, h, "bank")
	if n := srv.count("/logo.png"); n != 2 {
		t.Errorf("fetched %d times after the TTL, want 2", n)
	}
}

func TestBadLogosGiveTheMark(t *testing.T) {
	svg := []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`)
	huge := encoded(t, "png", MaxSide+1, 1)
	srv := newLogoServer(t, map[string]func(http.ResponseWriter){
		"/logo.svg":   body(svg, "image/svg+xml"),
		"/huge.png":   body(huge, "image/png"),
		"/big.png":    body(append(encoded(t, "png", 8, 8), make([]byte, MaxBytes)...), "image/png"),
		"/broken.png": body([]byte("\x89PNG\r\n\x1a\nnot really"), "image/png"),
		"/html":       body([]byte("<!doctype html><p>hello"), "text/html"),
		"/redirect": func(w http.ResponseWriter) {
			w.Header().Set("Location", "/logo.svg")
			w.WriteHeader(http.StatusFound)
		},
	})
	cl := fakeClients{}
	for _, p := range []string{"/logo.svg", "/huge.png", "/big.png", "/broken.png", "/html", "/redirect", "/missing"} {
		id := strings.TrimPrefix(strings.ReplaceAll(p, ".", "-"), "/")
		cl[id] = &clients.Client{ID: id, DisplayName: "渡志銀行", LogoURI: srv.URL + p}
	}
	cl["ftp"] = &clients.Client{ID: "ftp", DisplayName: "FTP", LogoURI: "ftp://example.com/logo.png"}
	c := &clock{}
	h := newHandler(t, cl, nil, c)
	for id := range cl {
		rec := get(t, h, id)
		if !isMark(rec) {
			t.Errorf("%s: %d %s %q, want the mark", id, rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
			continue
		}
		if strings.Contains(rec.Body.String(), "script") {
			t.Errorf("%s: the mark carries the RP's bytes", id)
		}
	}
	if got := get(t, h, "logo-svg").Body.String(); !strings.Contains(got, ">渡<") {
		t.Errorf("the mark does not show the RP's initial: %s", got)
	}
	// A failure is remembered for FailTTL: the RP is not asked again.
	for range 3 {
		get(t, h, "missing")
	}
	if n := srv.count("/missing"); n != 1 {
		t.Errorf("a failing logo was fetched %d times within FailTTL, want 1", n)
	}
	c.advance(FailTTL + time.Second)
	get(t, h, "missing")
	if n := srv.count("/missing"); n != 2 {
		t.Errorf("a failing logo was fetched %d times after FailTTL, want 2", n)
	}
}

func TestMarks(t *testing.T) {
	h := newHandler(t, fakeClients{
		"plain":  {ID: "plain", DisplayName: "city portal"},
		"tricky": {ID: "tricky", DisplayName: `<script>"&`},
		"marks":  {ID: "marks", DisplayName: `<"&>`},
	}, nil, &clock{})
	for _, tc := range []struct{ id, want string }{
		{"plain", ">C<"},                    // the initial, in capitals
		{"tricky", ">S<"},                   // the first letter, never the markup
		{"marks", ">?<"},                    // no letter to show
		{"nobody", "<path"},                 // unknown: the generic mark
		{strings.Repeat("x", 300), "<path"}, // too long to look up
	} {
		rec := get(t, h, tc.id)
		if !isMark(rec) || !strings.Contains(rec.Body.String(), tc.want) || strings.Contains(rec.Body.String(), "<script") {
			t.Errorf("%.20s: %s", tc.id, rec.Body.String())
		}
	}
	// Two RPs of different IDs do not all share one colour.
	colours := map[string]bool{}
	for i := range 20 {
		colours[string(monogram(fmt.Sprint("rp-", i), "A"))] = true
	}
	if len(colours) < 3 {
		t.Errorf("20 client IDs gave %d colours", len(colours))
	}
}

// slowFetcher blocks until released, counting the fetches it starts.
type slowFetcher struct {
	started atomic.Int32
	release chan struct{}
	img     []byte
}

func (f *slowFetcher) Fetch(ctx context.Context, _ string, _ whitelist.FetchOptions) ([]byte, error) {
	f.started.Add(1)
	select {
	case <-f.release:
		return f.img, nil
	case <-ctx.Done():
		return nil, errors.New("cancelled")
	}
}

// TestFetchesShared: requests for one logo share its fetch, and no more
// than maxFetches run at once; a request past that bound gets the mark
// at once instead of waiting.
func TestFetchesShared(t *testing.T) {
	f := &slowFetcher{release: make(chan struct{}), img: encoded(t, "png", 8, 8)}
	cl := fakeClients{}
	for i := range maxFetches + 1 {
		id := fmt.Sprint("rp", i)
		cl[id] = &clients.Client{ID: id, DisplayName: id, LogoURI: "https://rp.example/" + id + ".png"}
	}
	h := newHandler(t, cl, f, &clock{})
	var wg sync.WaitGroup
	results := make(chan *httptest.ResponseRecorder, 3*maxFetches)
	for i := range maxFetches {
		for range 3 {
			wg.Go(func() { results <- get(t, h, fmt.Sprint("rp", i)) })
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.started.Load() < maxFetches && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if rec := get(t, h, fmt.Sprint("rp", maxFetches)); !isMark(rec) {
		t.Errorf("a fetch beyond the bound: %s, want the mark at once", rec.Header().Get("Content-Type"))
	}
	close(f.release)
	wg.Wait()
	close(results)
	for rec := range results {
		if rec.Header().Get("Content-Type") != "image/png" {
			t.Errorf("a waiting request got %s", rec.Header().Get("Content-Type"))
		}
	}
	if n := f.started.Load(); n != maxFetches {
		t.Errorf("%d fetches for %d logos asked by 3 requests each", n, maxFetches)
	}
}

// TestCacheBound: however many clients, the cache holds at most
// MaxEntries answers.
func TestCacheBound(t *testing.T) {
	f := &slowFetcher{release: make(chan struct{}), img: encoded(t, "png", 8, 8)}
	close(f.release)
	cl := fakeClients{}
	for i := range MaxEntries + 50 {
		id := fmt.Sprint("rp", i)
		cl[id] = &clients.Client{ID: id, DisplayName: id, LogoURI: "https://rp.example/" + id + ".png"}
	}
	h, err := New(Options{Clients: cl, Fetcher: f})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	for id := range cl {
		if rec := get(t, mux, id); rec.Header().Get("Content-Type") != "image/png" {
			t.Fatalf("%s: %s", id, rec.Header().Get("Content-Type"))
		}
	}
	h.mu.Lock()
	n := len(h.cache)
	h.mu.Unlock()
	if n > MaxEntries {
		t.Errorf("cache holds %d entries, bound %d", n, MaxEntries)
	}
}

func TestNewRefusesMissingParts(t *testing.T) {
	if _, err := New(Options{Fetcher: &slowFetcher{}}); err == nil {
		t.Error("no clients accepted")
	}
	if _, err := New(Options{Clients: fakeClients{}}); err == nil {
		t.Error("no fetcher accepted")
	}
}

func FuzzCheck(f *testing.F) {
	f.Add([]byte("\x89PNG\r\n\x1a\n"))
	f.Add([]byte("GIF89a\x01\x00\x01\x00"))
	f.Add([]byte{0xff, 0xd8, 0xff, 0xe0})
	f.Add(encoded(f, "png", 3, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		ctype, err := check(b)
		if err == nil && ctype != "image/png" && ctype != "image/jpeg" && ctype != "image/gif" {
			t.Fatalf("accepted as %q", ctype)
		}
		if err == nil {
			cfg, _, derr := image.DecodeConfig(bytes.NewReader(b))
			if derr != nil || cfg.Width > MaxSide || cfg.Height > MaxSide {
				t.Fatalf("accepted an image whose header gives %+v, %v", cfg, derr)
			}
		}
	})
}
