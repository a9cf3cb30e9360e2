package templates

import (
	"bytes"
	"encoding/binary"
	"html/template"
	"image/png"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
)

// baseFS copies the embedded files into a MapFS the test can break.
func baseFS(t *testing.T) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(embedded, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(embedded, p)
		if err != nil {
			return err
		}
		m[p] = &fstest.MapFile{Data: b}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEmbeddedSetIsComplete(t *testing.T) {
	s, err := New("")
	if err != nil {
		t.Fatalf("embedded templates: %v", err)
	}
	for _, p := range Pages {
		if _, ok := s.pages[p]; !ok {
			t.Errorf("page %s not loaded", p)
		}
	}
	// Both languages define the same keys, so switching language never
	// shows a raw key.
	for k := range s.msgs["ja"] {
		if _, ok := s.msgs["en"][k]; !ok {
			t.Errorf("message %q missing in en", k)
		}
	}
	for k := range s.msgs["en"] {
		if _, ok := s.msgs["ja"][k]; !ok {
			t.Errorf("message %q missing in ja", k)
		}
	}
}

func TestSetRefusesBrokenInput(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(m fstest.MapFS)
		want    string
	}{
		{"missing page", func(m fstest.MapFS) { delete(m, "consent.html") }, "consent.html"},
		{"missing layout", func(m fstest.MapFS) { delete(m, Layout) }, Layout},
		{"page does not parse", func(m fstest.MapFS) { m["login.html"] = &fstest.MapFile{Data: []byte(`{{define "main"}}{{if}}`)} }, "login.html"},
		{"message missing in a language", func(m fstest.MapFS) {
			m["messages_en.json"] = &fstest.MapFile{Data: []byte(`{"brand":"Watashi"}`)}
		}, `missing in en`},
		{"messages not JSON", func(m fstest.MapFS) { m["messages_ja.json"] = &fstest.MapFile{Data: []byte(`{`)} }, "messages_ja.json"},
		{"layout without layout block", func(m fstest.MapFS) { m[Layout] = &fstest.MapFile{Data: []byte(`{{define "x"}}{{end}}`)} }, `no "layout"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := baseFS(t)
			c.breakIt(m)
			_, err := newSet(m, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}

func TestOverrideDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("signedout.html", `{{define "main"}}<p id="themed">{{.T "signedout.title"}} {{.T "theme.extra"}}</p>{{end}}`)
	write("messages_ja.json", `{"signedout.title":"またね","theme.extra":"テーマ"}`)
	write("messages_en.json", `{"theme.extra":"theme"}`)
	write("static/watashi.css", `body{color:red}`)
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := s.Render(&b, "signedout.html", "ja", nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `<p id="themed">またね テーマ</p>`) || !strings.Contains(b.String(), `<html lang="ja">`) {
		t.Fatalf("override not used:\n%s", b.String())
	}
	// Embedded messages the override did not touch stay.
	if got := s.Message("en", "signedout.title"); got != "Signed out" {
		t.Fatalf("merged message: %q", got)
	}
	rec := httptest.NewRecorder()
	s.Static().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/watashi.css", nil))
	if rec.Body.String() != `body{color:red}` {
		t.Fatalf("static override: %q", rec.Body.String())
	}
	rec = httptest.NewRecorder()
	s.Static().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/login.js", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "EventSource") {
		t.Fatalf("embedded static behind override: %d", rec.Code)
	}

	// An override that uses a message no language defines fails at start.
	write("error.html", `{{define "main"}}{{.T "nowhere.defined"}}{{end}}`)
	if _, err := New(dir); err == nil || !strings.Contains(err.Error(), "nowhere.defined") {
		t.Fatalf("undefined message accepted: %v", err)
	}
	if _, err := New(filepath.Join(dir, "absent")); err == nil {
		t.Fatal("missing override directory accepted")
	}
	if _, err := New(filepath.Join(dir, "signedout.html")); err == nil {
		t.Fatal("override that is a file accepted")
	}
}

// errorData is the shape of the error page's data (web.ErrorView).
type errorData struct {
	Code, RequestID string
	Languages       []struct {
		Lang, URL string
		Current   bool
	}
}

func TestRender(t *testing.T) {
	s, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	if err := s.Render(rec, "error.html", "en", errorData{Code: "csrf", RequestID: "req-123456"}); err != nil {
		t.Fatal(err)
	}
	body := rec.Body.String()
	for _, want := range []string{`<html lang="en">`, "The form has expired", "req-123456", `role="alert"`} {
		if !strings.Contains(body, want) {
			t.Errorf("error page lacks %q", want)
		}
	}
	if rec.Header().Get("Content-Language") != "en" {
		t.Error("Content-Language")
	}
	// Unknown languages render in the default; unknown pages fail.
	var b strings.Builder
	if err := s.Render(&b, "signedout.html", "fr", struct{ Next string }{}); err != nil || !strings.Contains(b.String(), `lang="ja"`) {
		t.Fatalf("fallback language: %v", err)
	}
	if err := s.Render(&b, "nope.html", "ja", nil); err == nil {
		t.Fatal("unknown page rendered")
	}
	// Values are escaped.
	b.Reset()
	if err := s.Render(&b, "error.html", "ja", errorData{Code: "csrf", RequestID: `<script>x</script>`}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "<script>x") {
		t.Fatal("request ID not escaped")
	}
	if got := (Page{msgs: map[string]string{"a": "n=%d"}}).T("a", 3); got != "n=3" {
		t.Fatalf("T with args: %q", got)
	}
	if got := (Page{}).T("missing.key"); got != "missing.key" {
		t.Fatalf("T of a missing key: %q", got)
	}
}

// Messages are looked up when a page renders and escaped for the context
// they land in, like any other value: an operator's message cannot inject
// markup, whatever the key form (constant, with arguments, built with
// printf from a value of a named type).
func TestMessagesEscapedInEveryContext(t *testing.T) {
	msgs := func(claimA string) string {
		return `{"plain":"Tom & \"Jerry\" <b>","percent":"100% sure","args":"hello %s, you are %d",` +
			`"claim.a":"` + claimA + `","claim.b":"Claim B's","js":"it's </script>"}`
	}
	const layout = `{{define "layout"}}<p title="{{.T "plain"}}">{{.T "plain"}}|{{$.T "percent"}}|{{.T "args" .Data.Name .Data.Number}}</p>` +
		`<ul>{{range .Data.Items}}<li>{{$.T (printf "claim.%s" .Claim)}}</li>{{end}}</ul>` +
		`[{{$.T (printf "claim.%s" .Data.Named)}}]` +
		`<a href="/x?q={{.T "plain"}}">l</a><script>var s = {{.T "js"}};</script>{{end}}`
	over := fstest.MapFS{
		Layout:             &fstest.MapFile{Data: []byte(layout)},
		"messages_en.json": &fstest.MapFile{Data: []byte(msgs("Claim <A>"))},
		"messages_ja.json": &fstest.MapFile{Data: []byte(msgs("クレーム <A>"))},
	}
	s, err := newSet(embedded, over)
	if err != nil {
		t.Fatal(err)
	}
	type item struct{ Claim string }
	type named string
	data := struct {
		Name   string
		Items  []item
		Named  named
		Number int
	}{`<Taro>`, []item{{"a"}, {"b"}, {"missing"}}, named("a"), 7}
	var b strings.Builder
	if err := s.Render(&b, "error.html", "en", data); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		`<p title="Tom &amp; &#34;Jerry&#34; &lt;b&gt;">Tom &amp; &#34;Jerry&#34; &lt;b&gt;|100% sure|hello &lt;Taro&gt;, you are 7</p>`,
		`<li>Claim &lt;A&gt;</li><li>Claim B&#39;s</li><li>claim.missing</li>`,
		`[Claim &lt;A&gt;]`,
		`<a href="/x?q=Tom%20%26%20%22Jerry%22%20%3cb%3e">`,
		`var s = "it's \u003c/script\u003e";`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("%s\nlacks %s", got, want)
		}
	}
	// The same parsed page renders the other language's messages.
	b.Reset()
	if err := s.Render(&b, "error.html", "ja", data); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `<li>クレーム &lt;A&gt;</li>`) || strings.Contains(b.String(), "Claim &lt;A&gt;") {
		t.Errorf("ja render:\n%s", b.String())
	}
}

// Both languages share one parsed template per page; renders running at
// once must each get their own language (run with -race).
func TestRenderLanguagesConcurrently(t *testing.T) {
	s, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, l := range Languages {
		want[l] = `<h1>` + s.Message(l, "signedout.title") + `</h1>`
	}
	var wg sync.WaitGroup
	for i := range 16 {
		l := Languages[i%len(Languages)]
		wg.Go(func() {
			for range 20 {
				var b strings.Builder
				if err := s.Render(&b, "signedout.html", l, struct{ Next string }{"/next"}); err != nil {
					t.Error(err)
					return
				}
				if !strings.Contains(b.String(), want[l]) || !strings.Contains(b.String(), `lang="`+l+`"`) {
					t.Errorf("%s render:\n%s", l, b.String())
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestNegotiate(t *testing.T) {
	for _, c := range []struct {
		ui     []string
		accept string
		want   string
	}{
		{nil, "", "ja"},
		{nil, "en", "en"},
		{nil, "en-GB,en;q=0.9,ja;q=0.8", "en"},
		{nil, "en-GB,ja;q=0.8", "en"},
		{nil, "en-US,ja;q=0.5", "en"},
		{nil, "ja-JP,en;q=0.5", "ja"},
		{nil, "fr,en;q=0.3", "en"},
		{nil, "en;q=0.2,ja;q=0.9", "ja"},
		{nil, "ja;q=0.5, en;q=0.6", "en"},
		{nil, "fr, de", "ja"},
		{nil, ",,en,,", "en"},
		{nil, "eng", "en"},
		{[]string{"en"}, "ja", "en"},
		{[]string{"fr", "en-US"}, "ja", "en"},
		{[]string{"fr"}, "en", "en"},
		{[]string{"fr"}, "", "ja"},
		{[]string{"JA"}, "en", "ja"},
		{[]string{"", "en"}, "ja", "en"},
		{[]string{"ja", "en"}, "en", "ja"},
	} {
		if got := Negotiate(c.ui, c.accept); got != c.want {
			t.Errorf("Negotiate(%q, %q) = %s, want %s", c.ui, c.accept, got, c.want)
		}
	}
}

// Input Negotiate must not be fooled by: whatever is malformed, too big or
// unsupported gives the default, and nothing panics.
func TestNegotiateHostileInput(t *testing.T) {
	many := make([]string, 1000)
	for i := range many {
		many[i] = "fr"
	}
	for _, c := range []struct {
		name   string
		ui     []string
		accept string
		want   string
	}{
		// Malformed: the whole header is ignored, not the part after
		// the fault, so "en" does not win by accident.
		{"q not a number", nil, "en;q=abc", "ja"},
		{"q empty", nil, "en;q=", "ja"},
		{"q above 1", nil, "ja,en;q=1.5", "ja"},
		{"q NaN", nil, "en;q=NaN", "ja"},
		{"q infinite", nil, "en;q=Inf", "ja"},
		{"q overflows float32", nil, "en;q=1e309", "ja"},
		{"two q", nil, "en;q=0.5;q=0.9", "ja"},
		{"parameter not q", nil, "en;level=1", "ja"},
		{"invalid tag among valid", nil, "x,en", "ja"},
		{"dangling hyphen", nil, "en-", "ja"},
		{"leading hyphen", nil, "-en", "ja"},
		{"NUL", nil, "en\x00", "ja"},
		{"not ASCII", nil, "英語,en;q=0.1", "ja"},
		{"only separators", nil, ";;;,,,q=", "ja"},
		{"ui_locales garbage", []string{"!!", "en-", "x"}, "en", "en"},

		// Huge: past the bound nothing is parsed, even a good first entry.
		{"many bogus entries", nil, strings.Repeat("x,", 10000) + "en", "ja"},
		{"header at the bound", nil, "en" + strings.Repeat(" ", maxAcceptLanguage-2), "en"},
		{"header past the bound", nil, "en" + strings.Repeat(" ", maxAcceptLanguage-1), "ja"},
		{"many hyphens", nil, strings.Repeat("en-", 2000) + "x", "ja"},
		{"huge ui_locales entry", []string{strings.Repeat("a", 1<<20), "en"}, "", "en"},
		{"long ui_locales entry", []string{"en-x-" + strings.Repeat("abcdefgh-", 7) + "a"}, "", "ja"},
		{"many ui_locales", append(many, "en"), "", "ja"},

		// q=0 means "not acceptable".
		{"q=0", nil, "en;q=0", "ja"},
		{"q=0.000", nil, "en;q=0.000", "ja"},
		{"q=0 rules out", nil, "ja;q=0,en;q=0.1", "en"},
		{"q=0 everywhere", nil, "ja;q=0,en;q=0", "ja"},
		{"negative q", nil, "en;q=-1", "ja"},

		// The wildcard stands for the languages the header does not name.
		{"wildcard", nil, "*", "ja"},
		{"wildcard with q", nil, "*;q=0.5", "ja"},
		{"wildcard above named", nil, "en;q=0.5,*", "ja"},
		{"wildcard below named", nil, "en,*;q=0.5", "en"},
		{"wildcard excludes named", nil, "*,ja;q=0.1", "en"},
		{"wildcard q=0", nil, "*;q=0", "ja"},
		{"wildcard after unsupported", nil, "fr,*;q=0.1", "ja"},
		{"wildcard twice", nil, "*,*;q=0.5,en;q=0.1", "ja"},
		{"wildcard in ui_locales", []string{"*"}, "en", "en"},

		// Mixed case: tags and the q parameter are case-insensitive.
		{"upper tag", nil, "EN-us", "en"},
		{"mixed tag", nil, "eN-Gb,JA;q=0.5", "en"},
		{"upper Q", nil, "JA;Q=0.5,EN;Q=0.9", "en"},
		{"upper ui_locales", []string{"EN-us"}, "ja", "en"},

		// Unsupported or unconfident: the matcher still returns some
		// supported tag (English for these), which must not be used.
		{"unsupported alone", nil, "fr", "ja"},
		{"unsupported ui_locales", []string{"fr", "de"}, "", "ja"},
		{"other script", nil, "ja-Latn", "ja"},
		{"private use", nil, "x-klingon", "ja"},
		{"Chinese", nil, "zh-CN,zh;q=0.9", "ja"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Negotiate(c.ui, c.accept); got != c.want {
				t.Errorf("Negotiate(%.40q, %.40q) = %s, want %s", c.ui, c.accept, got, c.want)
			}
		})
	}
}

func FuzzNegotiate(f *testing.F) {
	for _, s := range []string{"", "en", "ja-JP,en;q=0.5", "*;q=0.1", ";;;,,,q=", "en;q=1e309", "EN;Q=0.5,*", "x-foo,en", "und-US"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, ui, accept string) {
		locales := strings.Split(ui, " ")
		got := Negotiate(locales, accept)
		if !slices.Contains(Languages, got) {
			t.Fatalf("Negotiate(%q, %q) returned %q", locales, accept, got)
		}
		// An RP's explicit, supported first choice always wins.
		for _, l := range Languages {
			if got := Negotiate(append([]string{l}, locales...), accept); got != l {
				t.Fatalf("Negotiate(%q, %q) = %q, want the first ui_locale", append([]string{l}, locales...), accept, got)
			}
		}
	})
}

// benchLoginView mirrors the fields login.html reads, filled as a pending
// sign-in with claims and the language switch: the page rendered most often
// (it is re-rendered while the QR code rotates), with the most messages.
type benchLoginView struct {
	RP, RPPurpose, Purpose                   string
	Claims                                   []string
	State, Reason, Code, QRImage, TxURL      string
	AppLink, FallbackLink                    template.URL
	ExpiresAt, RefreshURL                    string
	RefreshAttr                              template.HTMLAttr
	RefreshSeconds, RotateSeconds            int
	StatusURL, EventsURL, FinishURL, CSRF    string
	SwitchURL, ProofingURL, RetryURL, Notice string
	Languages                                []struct {
		Lang, URL string
		Current   bool
	}
}

func benchLogin() benchLoginView {
	v := benchLoginView{
		RP: "Example Shop", RPPurpose: "Age check for alcohol sales", Purpose: "signin",
		Claims: []string{"name", "birthdate", "address", "age_over_20"},
		State:  "pending", Code: "1234", QRImage: "/login/qr/abcdef.png",
		TxURL: "https://id.example.jp/tx/abcdef", AppLink: "watashi://tx?u=https%3A%2F%2Fid.example.jp%2Ftx%2Fabcdef",
		FallbackLink: "https://id.example.jp/open/abcdef", ExpiresAt: "12:34",
		RefreshURL: "/login?tx=abcdef", RefreshAttr: `content="5"`, RefreshSeconds: 5, RotateSeconds: 30,
		StatusURL: "/login/status/abcdef", EventsURL: "/login/events/abcdef", FinishURL: "/login/finish",
		CSRF: "csrf-token-value", SwitchURL: "/login?purpose=proofing", Notice: "stale_facts",
	}
	for _, l := range Languages {
		v.Languages = append(v.Languages, struct {
			Lang, URL string
			Current   bool
		}{l, "/login?lang=" + l, l == "ja"})
	}
	return v
}

func BenchmarkRender(b *testing.B) {
	s, err := New("")
	if err != nil {
		b.Fatal(err)
	}
	data := benchLogin()
	if err := s.Render(io.Discard, "login.html", "ja", data); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Render(io.Discard, "login.html", "ja", data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestIcons: the favicon is an ICO of PNG images (16, 32 and 48 pixels)
// of the logo, and the logo is an SVG with no script.
func TestIcons(t *testing.T) {
	s, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) []byte {
		rec := httptest.NewRecorder()
		s.Static().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/"+name, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d", name, rec.Code)
		}
		return rec.Body.Bytes()
	}
	ico := get("favicon.ico")
	if len(ico) < 6 || binary.LittleEndian.Uint16(ico[0:]) != 0 || binary.LittleEndian.Uint16(ico[2:]) != 1 {
		t.Fatalf("favicon.ico is not an icon file")
	}
	n := int(binary.LittleEndian.Uint16(ico[4:]))
	var sizes []int
	for i := range n {
		e := ico[6+16*i:]
		size, off := binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:])
		if int(off+size) > len(ico) {
			t.Fatalf("entry %d outside the file", i)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(ico[off : off+size]))
		if err != nil || cfg.Width != int(e[0]) || cfg.Height != int(e[1]) {
			t.Fatalf("entry %d: %+v %v", i, cfg, err)
		}
		sizes = append(sizes, cfg.Width)
	}
	if !slices.Equal(sizes, []int{16, 32, 48}) {
		t.Errorf("favicon sizes %v", sizes)
	}
	if cfg, err := png.DecodeConfig(bytes.NewReader(get("apple-touch-icon.png"))); err != nil || cfg.Width != 180 {
		t.Errorf("apple-touch-icon: %+v %v", cfg, err)
	}
	if logo := string(get("logo.svg")); !strings.HasPrefix(logo, "<svg ") || strings.Contains(logo, "script") {
		t.Errorf("logo.svg: %q", logo)
	}
}
