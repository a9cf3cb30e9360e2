package templates

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
)

//go:embed *.html messages_*.json static
var embedded embed.FS

// Layout is the skeleton every page is rendered into; pages define the
// blocks "title", "head" and "main".
const Layout = "layout.html"

// Pages are the templates a Set must hold. Handlers render them by name.
var Pages = []string{"login.html", "consent.html", "account.html", "error.html", "signedout.html", "logout.html", "openapp.html", "passkey_offer.html", "message.html"}

// Languages are the supported UI languages, the default first: residents
// are in Japan, so Japanese unless they ask for English.
var Languages = []string{"ja", "en"}

// DefaultLanguage is what residents get when nothing they send matches.
const DefaultLanguage = "ja"

// Set is a parsed, validated template set. It is immutable and safe for
// concurrent use.
type Set struct {
	// pages holds each page parsed once, with the layout, for all
	// languages: the language is in the Page a render passes, not in the
	// template.
	pages  map[string]*template.Template
	msgs   map[string]map[string]string
	static fs.FS
}

// New parses the embedded templates, with files in overrideDir (if not
// empty) replacing embedded ones of the same name: *.html, messages_*.json
// (merged key by key over the embedded messages) and static/*.
func New(overrideDir string) (*Set, error) {
	var over fs.FS
	if overrideDir != "" {
		st, err := os.Stat(overrideDir)
		if err != nil {
			return nil, fmt.Errorf("templates: override directory: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("templates: override %s is not a directory", overrideDir)
		}
		over = os.DirFS(overrideDir)
	}
	return newSet(embedded, over)
}

// newSet builds a Set from base with optional overrides; tests use it to
// build sets with missing or broken files. It reports every problem it
// finds at once, so an operator fixes a theme in one go.
func newSet(base, over fs.FS) (*Set, error) {
	read := func(name string) ([]byte, error) {
		if over != nil {
			b, err := fs.ReadFile(over, name)
			if err == nil {
				return b, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		return fs.ReadFile(base, name)
	}
	s := &Set{pages: map[string]*template.Template{}, msgs: map[string]map[string]string{}}
	var errs []error

	for _, lang := range Languages {
		name := "messages_" + lang + ".json"
		m := map[string]string{}
		b, err := fs.ReadFile(base, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("templates: %s: %w", name, err))
			continue
		}
		if err := json.Unmarshal(b, &m); err != nil {
			errs = append(errs, fmt.Errorf("templates: %s: %w", name, err))
			continue
		}
		if over != nil {
			ob, err := fs.ReadFile(over, name)
			switch {
			case err == nil:
				om := map[string]string{}
				if err := json.Unmarshal(ob, &om); err != nil {
					errs = append(errs, fmt.Errorf("templates: override %s: %w", name, err))
				}
				for k, v := range om {
					m[k] = v
				}
			case !errors.Is(err, fs.ErrNotExist):
				errs = append(errs, fmt.Errorf("templates: override %s: %w", name, err))
			}
		}
		s.msgs[lang] = m
	}

	layoutSrc, err := read(Layout)
	if err != nil {
		errs = append(errs, fmt.Errorf("templates: %s: %w", Layout, err))
	}
	used := map[string][]string{} // message key -> templates using it
	noteKeys(used, Layout, layoutSrc)
	var layout *template.Template
	if layoutSrc != nil {
		layout, err = template.New(Layout).Option("missingkey=error").Parse(string(layoutSrc))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("templates: %s: %w", Layout, err))
			layout = nil
		case layout.Lookup("layout") == nil:
			errs = append(errs, fmt.Errorf("templates: no \"layout\" template defined by %s", Layout))
			layout = nil
		}
	}
	for _, name := range Pages {
		src, err := read(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("templates: %s: %w", name, err))
			continue
		}
		noteKeys(used, name, src)
		if layout == nil {
			continue // reported above
		}
		t, err := parsePage(layout, name, src)
		if err != nil {
			errs = append(errs, fmt.Errorf("templates: %s: %w", name, err))
			continue
		}
		s.pages[name] = t
	}
	keys := make([]string, 0, len(used))
	for k := range used {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, lang := range Languages {
		m, ok := s.msgs[lang]
		if !ok {
			continue
		}
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				errs = append(errs, fmt.Errorf("templates: message %q (used by %s) missing in %s", k, strings.Join(used[k], ", "), lang))
			}
		}
	}

	staticFS, err := fs.Sub(base, "static")
	if err != nil {
		errs = append(errs, fmt.Errorf("templates: static: %w", err))
	}
	s.static = staticFS
	if over != nil {
		if o, err := fs.Sub(over, "static"); err == nil {
			s.static = overlayFS{over: o, base: staticFS}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// parsePage adds one page's blocks to a copy of the layout. The page is
// parsed under its own name, so a syntax error names the file to fix.
func parsePage(layout *template.Template, name string, src []byte) (*template.Template, error) {
	t, err := layout.Clone()
	if err != nil {
		return nil, err
	}
	if _, err := t.New(name).Parse(string(src)); err != nil {
		return nil, err
	}
	return t, nil
}

// keyPattern finds message keys in templates: {{.T "key"}} and
// {{$.T "key" ...}}. Keys built at run time (printf) are checked by the
// handlers' tests instead.
var keyPattern = regexp.MustCompile(`\.T\s+"([^"]+)"`)

func noteKeys(used map[string][]string, name string, src []byte) {
	for _, m := range keyPattern.FindAllSubmatch(src, -1) {
		k := string(m[1])
		if !slices.Contains(used[k], name) {
			used[k] = append(used[k], name)
		}
	}
}

// Page is what a template sees.
type Page struct {
	Lang string
	Data any
	msgs map[string]string
}

// T returns the message for key in the page's language, formatted with
// args (fmt verbs) when given. A key missing at run time shows as the key
// itself: a visible, harmless defect rather than a failed page.
func (p Page) T(key string, args ...any) string {
	msg, ok := p.msgs[key]
	if !ok {
		return key
	}
	if len(args) > 0 {
		return fmt.Sprintf(msg, args...)
	}
	return msg
}

// Has reports whether a message exists, so templates can show optional
// texts (claim descriptions) only when the theme defines them.
func (p Page) Has(key string) bool {
	_, ok := p.msgs[key]
	return ok
}

// Render executes the page name in lang into w. The output is buffered,
// so a template failure never sends half a page.
func (s *Set) Render(w io.Writer, name, lang string, data any) error {
	lang = normalize(lang)
	t, ok := s.pages[name]
	if !ok {
		return fmt.Errorf("templates: no page %q", name)
	}
	buf := bufPool.Get().(*bytes.Buffer)
	defer putBuffer(buf)
	if err := t.ExecuteTemplate(buf, "layout", Page{Lang: lang, Data: data, msgs: s.msgs[lang]}); err != nil {
		return fmt.Errorf("templates: %s: %w", name, err)
	}
	if rw, ok := w.(http.ResponseWriter); ok {
		h := rw.Header()
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "text/html; charset=utf-8")
		}
		h.Set("Content-Language", lang)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// bufPool recycles render buffers: a page is several kilobytes, and
// growing a fresh buffer for every render is most of its allocations.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putBuffer returns buf to the pool unless an unusually large page grew
// it, so that one big page does not pin memory for good.
func putBuffer(buf *bytes.Buffer) {
	if buf.Cap() > 256<<10 {
		return
	}
	buf.Reset()
	bufPool.Put(buf)
}

// Message returns one message outside a template (JSON status texts).
func (s *Set) Message(lang, key string) string {
	return Page{msgs: s.msgs[normalize(lang)]}.T(key)
}

// Static serves the CSS and JavaScript the pages link to (under
// /static/). Scripts are files, not inline, so the CSP can forbid inline
// script.
func (s *Set) Static() http.Handler {
	files := http.FileServerFS(s.static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}

func normalize(lang string) string {
	if slices.Contains(Languages, lang) {
		return lang
	}
	return DefaultLanguage
}

// overlayFS serves files from over when present, else from base.
type overlayFS struct{ over, base fs.FS }

func (o overlayFS) Open(name string) (fs.File, error) {
	if f, err := o.over.Open(path.Clean(name)); err == nil {
		return f, nil
	}
	return o.base.Open(name)
}
