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
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/template/parse"
)

//go:embed *.html messages_*.json static
var embedded embed.FS

// Layout is the skeleton every page is rendered into; pages define the
// blocks "title", "head" and "main".
const Layout = "layout.html"

// Pages are the templates a Set must hold. Handlers render them by name.
var Pages = []string{"login.html", "consent.html", "account.html", "error.html", "signedout.html", "openapp.html"}

// Languages are the supported UI languages, the default first: residents
// are in Japan, so Japanese unless they ask for English.
var Languages = []string{"ja", "en"}

// DefaultLanguage is what residents get when nothing they send matches.
const DefaultLanguage = "ja"

// Set is a parsed, validated template set. It is immutable and safe for
// concurrent use.
type Set struct {
	// pages holds each page parsed once per language (page name ->
	// language -> template), with the constant message lookups resolved
	// at parse time (see resolveMessages).
	pages  map[string]map[string]*template.Template
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
// build sets with missing or broken files.
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
	s := &Set{pages: map[string]map[string]*template.Template{}, msgs: map[string]map[string]string{}}
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

	layout, err := read(Layout)
	if err != nil {
		errs = append(errs, fmt.Errorf("templates: %s: %w", Layout, err))
	}
	used := map[string][]string{} // message key -> templates using it
	noteKeys(used, Layout, layout)
	for _, name := range Pages {
		page, err := read(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("templates: %s: %w", name, err))
			continue
		}
		noteKeys(used, name, page)
		if layout == nil {
			continue
		}
		byLang := map[string]*template.Template{}
		for _, lang := range Languages {
			msgs, ok := s.msgs[lang]
			if !ok {
				continue // reported above
			}
			t, err := parsePage(name, layout, page, msgs)
			if err != nil {
				errs = append(errs, fmt.Errorf("templates: %s: %w", name, err))
				break
			}
			if t.Lookup("layout") == nil {
				errs = append(errs, fmt.Errorf("templates: %s: no \"layout\" template defined by %s", name, Layout))
				break
			}
			byLang[lang] = t
		}
		if len(byLang) == len(Languages) {
			s.pages[name] = byLang
		}
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
	t, ok := s.pages[name][lang]
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

// Negotiate picks the UI language: the first supported tag of the OIDC
// ui_locales parameter (in the RP's order), otherwise the best of the
// browser's Accept-Language by quality, otherwise DefaultLanguage. Only
// the primary subtag counts ("en-GB" is English).
func Negotiate(uiLocales []string, acceptLanguage string) string {
	for _, l := range uiLocales {
		if m := match(l); m != "" {
			return m
		}
	}
	type cand struct {
		lang string
		q    float64
		pos  int
	}
	var cands []cand
	for i, part := range strings.Split(acceptLanguage, ",") {
		if i >= 32 { // a browser sends a handful; do not loop on garbage
			break
		}
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.TrimSpace(k) == "q" {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil || f < 0 || f > 1 {
					f = 0
				}
				q = f
			}
		}
		if q <= 0 {
			continue
		}
		if tag == "*" {
			cands = append(cands, cand{DefaultLanguage, q, i})
			continue
		}
		if m := match(tag); m != "" {
			cands = append(cands, cand{m, q, i})
		}
	}
	sort.SliceStable(cands, func(a, b int) bool { return cands[a].q > cands[b].q })
	if len(cands) > 0 {
		return cands[0].lang
	}
	return DefaultLanguage
}

func match(tag string) string {
	primary, _, _ := strings.Cut(strings.TrimSpace(tag), "-")
	primary = strings.ToLower(strings.TrimSpace(primary))
	if slices.Contains(Languages, primary) {
		return primary
	}
	return ""
}

// overlayFS serves files from over when present, else from base.
type overlayFS struct{ over, base fs.FS }

func (o overlayFS) Open(name string) (fs.File, error) {
	if f, err := o.over.Open(path.Clean(name)); err == nil {
		return f, nil
	}
	return o.base.Open(name)
}

// msgFunc is the template function that dynamic message lookups of the
// form {{$.T (printf "claim.%s" .Claim)}} are rewritten to (see
// resolveMessages). Themes may call it too: {{msgf "claim.%s" .Claim}}.
const msgFunc = "msgf"

// parsePage parses the layout and one page for one language, then
// resolves that language's message lookups in the parse trees.
func parsePage(name string, layout, page []byte, msgs map[string]string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(template.FuncMap{
		msgFunc: func(format string, arg any) string { return lookup(msgs, messageKey(format, arg)) },
	}).Parse(string(layout))
	if err == nil {
		_, err = t.Parse(string(page))
	}
	if err != nil {
		return nil, err
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil && tt.Tree.Root != nil {
			resolveMessages(tt.Tree, tt.Tree.Root, msgs)
		}
	}
	return t, nil
}

// lookup is Page.T without arguments.
func lookup(msgs map[string]string, key string) string {
	if msg, ok := msgs[key]; ok {
		return msg
	}
	return key
}

// messageKey is fmt.Sprintf(format, arg) for the one-%s formats that
// resolveMessages rewrites, without fmt's reflection for string args.
func messageKey(format string, arg any) string {
	var s string
	switch v := arg.(type) {
	case string:
		s = v
	default:
		rv := reflect.ValueOf(arg)
		if rv.Kind() != reflect.String {
			return fmt.Sprintf(format, arg)
		}
		s = rv.String()
	}
	before, after, _ := strings.Cut(format, "%s")
	return before + s + after
}

// resolveMessages rewrites, in place and once per language at parse
// time, the message lookups whose key is a constant:
//
//	.T "key"                 ->  "message"          (a constant)
//	.T "key" args...         ->  printf "message" args...
//	.T (printf "p%s" x)      ->  msgf "p%s" x
//
// ($.T likewise). Executing {{.T "key"}} otherwise costs a reflective
// method lookup and call per message, hundreds per page; the rewritten
// pipelines produce the same text and html/template still escapes it
// for its context, because escaping runs after this, at first
// execution. Lookups that the patterns do not cover are left as they
// are and work through Page.T.
func resolveMessages(tree *parse.Tree, n parse.Node, msgs map[string]string) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			resolveMessages(tree, c, msgs)
		}
	case *parse.ActionNode:
		resolveMessages(tree, n.Pipe, msgs)
	case *parse.IfNode:
		resolveBranch(tree, &n.BranchNode, msgs)
	case *parse.RangeNode:
		resolveBranch(tree, &n.BranchNode, msgs)
	case *parse.WithNode:
		resolveBranch(tree, &n.BranchNode, msgs)
	case *parse.TemplateNode:
		resolveMessages(tree, n.Pipe, msgs)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			resolveMessages(tree, c, msgs)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			resolveMessages(tree, a, msgs)
		}
		resolveCommand(tree, n, msgs)
	}
}

func resolveBranch(tree *parse.Tree, b *parse.BranchNode, msgs map[string]string) {
	resolveMessages(tree, b.Pipe, msgs)
	resolveMessages(tree, b.List, msgs)
	resolveMessages(tree, b.ElseList, msgs)
}

// isT reports whether n is the method T of the page: .T or $.T.
func isT(n parse.Node) bool {
	switch n := n.(type) {
	case *parse.FieldNode:
		return len(n.Ident) == 1 && n.Ident[0] == "T"
	case *parse.VariableNode:
		return len(n.Ident) == 2 && n.Ident[0] == "$" && n.Ident[1] == "T"
	}
	return false
}

func resolveCommand(tree *parse.Tree, c *parse.CommandNode, msgs map[string]string) {
	if len(c.Args) < 2 || !isT(c.Args[0]) {
		return
	}
	switch key := c.Args[1].(type) {
	case *parse.StringNode:
		msg, ok := msgs[key.Text]
		if !ok {
			return // Page.T shows the key; New reports it missing anyway
		}
		s := *key // keeps the node's tree for error reports
		s.Text, s.Quoted = msg, strconv.Quote(msg)
		if len(c.Args) == 2 {
			c.Args = []parse.Node{&s}
			return
		}
		c.Args[0] = parse.NewIdentifier("printf").SetTree(tree).SetPos(c.Args[0].Position())
		c.Args[1] = &s
	case *parse.PipeNode:
		// (printf "prefix%s" x): exactly one command, one %s verb.
		if len(c.Args) != 2 || len(key.Decl) != 0 || len(key.Cmds) != 1 {
			return
		}
		inner := key.Cmds[0]
		if len(inner.Args) != 3 {
			return
		}
		if id, ok := inner.Args[0].(*parse.IdentifierNode); !ok || id.Ident != "printf" {
			return
		}
		format, ok := inner.Args[1].(*parse.StringNode)
		if !ok || strings.Count(format.Text, "%") != 1 || !strings.Contains(format.Text, "%s") {
			return
		}
		c.Args = []parse.Node{
			parse.NewIdentifier(msgFunc).SetTree(tree).SetPos(c.Args[0].Position()),
			format, inner.Args[2],
		}
	}
}
