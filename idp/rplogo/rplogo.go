package rplogo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"html"
	"image"
	_ "image/gif" // the formats a logo may have
	_ "image/jpeg"
	_ "image/png"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/whitelist"
)

// Limits of what is fetched and kept.
const (
	// MaxBytes bounds one logo.
	MaxBytes = 64 << 10
	// MaxSide bounds a logo's width and height in pixels.
	MaxSide = 1024
	// MaxEntries bounds the cache: logos and remembered failures.
	MaxEntries = 256
	// TTL is how long a fetched logo is served before it is fetched
	// again; FailTTL how long a failure is remembered.
	TTL     = time.Hour
	FailTTL = 10 * time.Minute
	// maxFetches bounds the fetches running at once.
	maxFetches = 4
	// maxIDLen bounds the client ID read from the path.
	maxIDLen = 256
)

// Clients find the relying party whose logo is asked for: one that may
// act now (clients.Resolver.Lookup).
type Clients interface {
	Lookup(ctx context.Context, id string) (*clients.Entry, error)
}

// Fetcher fetches from URLs integrators registered (whitelist.Fetcher).
type Fetcher interface {
	Fetch(ctx context.Context, rawURL string, o whitelist.FetchOptions) ([]byte, error)
}

// Options are the handler's dependencies.
type Options struct {
	Clients Clients
	Fetcher Fetcher
	Logger  *slog.Logger
	Now     func() time.Time
}

// Handler serves the logos.
type Handler struct {
	clients Clients
	fetcher Fetcher
	log     *slog.Logger
	now     func() time.Time
	sem     chan struct{}

	mu       sync.Mutex
	cache    map[string]*entry
	inflight map[string]*call
}

// entry is one cached answer for a client: its logo, or a failure (img
// nil) to answer with the mark until it expires.
type entry struct {
	uri     string // the logo_uri the answer is for
	img     []byte
	ctype   string
	expires time.Time
}

// call is a fetch that requests for the same logo wait on.
type call struct {
	done chan struct{}
	e    *entry
}

// New checks the options.
func New(o Options) (*Handler, error) {
	if o.Clients == nil || o.Fetcher == nil {
		return nil, errors.New("rplogo: Clients and Fetcher are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Handler{clients: o.Clients, fetcher: o.Fetcher, log: o.Logger, now: o.Now,
		sem: make(chan struct{}, maxFetches), cache: map[string]*entry{}, inflight: map[string]*call{}}, nil
}

// Mount registers the route.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /rp-logo/{id}", h.serve)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxIDLen {
		writeMark(w, genericMark)
		return
	}
	e, err := h.clients.Lookup(r.Context(), id)
	if err != nil {
		// Unknown, refused, or the registry is down: nothing to show
		// but the generic mark, which says nothing about which.
		writeMark(w, genericMark)
		return
	}
	c := e.Client
	if c.LogoURI == "" {
		writeMark(w, monogram(c.ID, c.Name()))
		return
	}
	if got := h.logo(r.Context(), c.ID, c.LogoURI); got != nil && got.img != nil {
		hd := w.Header()
		hd.Set("Content-Type", got.ctype)
		hd.Set("Cache-Control", "public, max-age=3600")
		hd.Set("Content-Security-Policy", "default-src 'none'; sandbox")
		_, _ = w.Write(got.img)
		return
	}
	writeMark(w, monogram(c.ID, c.Name()))
}

// logo returns the cached answer for client id's logo at uri, fetching
// it when there is none or it expired. nil means "not now": too many
// fetches running, or the request gave up waiting.
func (h *Handler) logo(ctx context.Context, id, uri string) *entry {
	now := h.now()
	h.mu.Lock()
	if e, ok := h.cache[id]; ok && e.uri == uri && now.Before(e.expires) {
		h.mu.Unlock()
		return e
	}
	c, waiting := h.inflight[id]
	if !waiting {
		select {
		case h.sem <- struct{}{}:
		default:
			h.mu.Unlock()
			return nil
		}
		c = &call{done: make(chan struct{})}
		h.inflight[id] = c
	}
	h.mu.Unlock()
	if !waiting {
		// The fetch outlives a request that gives up: others may wait
		// on it, and the fetcher's own timeout bounds it.
		go h.fetch(context.WithoutCancel(ctx), id, uri, c)
	}
	select {
	case <-c.done:
		return c.e
	case <-ctx.Done():
		return nil
	}
}

func (h *Handler) fetch(ctx context.Context, id, uri string, c *call) {
	e := &entry{uri: uri}
	img, err := h.fetcher.Fetch(ctx, uri, whitelist.FetchOptions{Accept: "image/png, image/jpeg, image/gif", MaxBytes: MaxBytes})
	if err == nil {
		e.ctype, err = check(img)
	}
	if err != nil {
		h.log.WarnContext(ctx, "relying party logo not usable; showing a mark instead", "client", id, "reason", reason(err))
		e.expires = h.now().Add(FailTTL)
	} else {
		e.img = img
		e.expires = h.now().Add(TTL)
	}
	h.mu.Lock()
	if _, ok := h.cache[id]; !ok && len(h.cache) >= MaxEntries {
		h.evict()
	}
	h.cache[id] = e
	delete(h.inflight, id)
	h.mu.Unlock()
	<-h.sem
	c.e = e
	close(c.done)
}

// evict drops expired entries, or else the one closest to expiry, so
// that the cache never holds more than MaxEntries. Called with mu held.
func (h *Handler) evict() {
	now := h.now()
	var victim string
	var soonest time.Time
	for k, e := range h.cache {
		if !now.Before(e.expires) {
			delete(h.cache, k)
			continue
		}
		if victim == "" || e.expires.Before(soonest) {
			victim, soonest = k, e.expires
		}
	}
	if len(h.cache) >= MaxEntries && victim != "" {
		delete(h.cache, victim)
	}
}

// reason is a fetch failure for the log: the fetcher's own words for the
// integrator (never an internal address), or the image check's.
func reason(err error) string {
	var fe *whitelist.FetchError
	if errors.As(err, &fe) {
		return fe.Reason
	}
	return err.Error()
}

// errNotImage is an answer that is not a logo this handler serves.
var errNotImage = errors.New("not a PNG, JPEG or GIF image")

// check recognises a logo by its bytes and checks its size, returning
// its Content-Type. The header is decoded, not the pixels: the browser
// decodes those, and MaxSide bounds what it must hold.
func check(img []byte) (string, error) {
	var ctype string
	switch {
	case bytes.HasPrefix(img, []byte("\x89PNG\r\n\x1a\n")):
		ctype = "image/png"
	case bytes.HasPrefix(img, []byte{0xff, 0xd8, 0xff}):
		ctype = "image/jpeg"
	case bytes.HasPrefix(img, []byte("GIF87a")), bytes.HasPrefix(img, []byte("GIF89a")):
		ctype = "image/gif"
	default:
		return "", errNotImage
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(img))
	if err != nil || "image/"+format != ctype {
		return "", fmt.Errorf("%w: its header does not decode", errNotImage)
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width > MaxSide || cfg.Height > MaxSide {
		return "", fmt.Errorf("the image is %dx%d pixels; at most %dx%d are shown", cfg.Width, cfg.Height, MaxSide, MaxSide)
	}
	return ctype, nil
}

// markColours are dark enough for white text on them (contrast above
// 4.5:1), so the initial stays legible whichever a client gets.
var markColours = []string{"#0b57d0", "#146c2e", "#6d1b7b", "#7a2e00", "#00586e", "#3c4a5c", "#8c1d48"}

// monogram is the mark of a client without a usable logo: its initial
// on a colour that its client ID picks, so that two RPs look different.
func monogram(id, name string) []byte {
	f := fnv.New32a()
	f.Write([]byte(id))
	colour := markColours[f.Sum32()%uint32(len(markColours))]
	initial := "?"
	for _, r := range strings.TrimSpace(name) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			initial = string(unicode.ToUpper(r))
			break
		}
	}
	if !utf8.ValidString(initial) {
		initial = "?"
	}
	return []byte(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64">` +
		`<rect width="64" height="64" rx="14" fill="` + colour + `"/>` +
		`<text x="32" y="43" font-family="system-ui, 'Noto Sans JP', sans-serif" font-size="30" font-weight="700" text-anchor="middle" fill="#ffffff">` +
		html.EscapeString(initial) + `</text></svg>`)
}

// genericMark stands for a client the provider does not know: a plain
// building.
var genericMark = []byte(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64">` +
	`<rect width="64" height="64" rx="14" fill="#3c4a5c"/>` +
	`<path d="M20 48V20h16v28M36 28h8v20M16 48h32" fill="none" stroke="#ffffff" stroke-width="3" stroke-linejoin="round"/>` +
	`<path d="M25 26h6M25 32h6M25 38h6" stroke="#ffffff" stroke-width="3"/></svg>`)

func writeMark(w http.ResponseWriter, svg []byte) {
	hd := w.Header()
	hd.Set("Content-Type", "image/svg+xml")
	hd.Set("Cache-Control", "public, max-age=300")
	// An image, never a document: no script, no fetches, even opened on
	// its own.
	hd.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	_, _ = w.Write(svg)
}
