package templates

import (
	"html/template"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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

func TestRender(t *testing.T) {
	s, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	if err := s.Render(rec, "error.html", "en", struct{ Code, RequestID string }{"csrf", "req-123456"}); err != nil {
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
	if err := s.Render(&b, "error.html", "ja", struct{ Code, RequestID string }{"csrf", `<script>x</script>`}); err != nil {
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

func TestNegotiate(t *testing.T) {
	for _, c := range []struct {
		ui     []string
		accept string
		want   string
	}{
		{nil, "", "ja"},
		{nil, "en", "en"},
		{nil, "en-GB,en;q=0.9,ja;q=0.8", "en"},
		{nil, "ja-JP,en;q=0.5", "ja"},
		{nil, "fr,en;q=0.3", "en"},
		{nil, "en;q=0.2,ja;q=0.9", "ja"},
		{nil, "en;q=0", "ja"},
		{nil, "en;q=abc", "ja"},
		{nil, "*", "ja"},
		{nil, "fr, de", "ja"},
		{[]string{"en"}, "ja", "en"},
		{[]string{"fr", "en-US"}, "ja", "en"},
		{[]string{"fr"}, "en", "en"},
		{[]string{"JA"}, "en", "ja"},
		{nil, strings.Repeat("x,", 10000) + "en", "ja"},
	} {
		if got := Negotiate(c.ui, c.accept); got != c.want {
			t.Errorf("Negotiate(%v, %.40q) = %s, want %s", c.ui, c.accept, got, c.want)
		}
	}
}

func FuzzNegotiate(f *testing.F) {
	for _, s := range []string{"", "en", "ja-JP,en;q=0.5", "*;q=0.1", ";;;,,,q=", "en;q=1e309"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, ui, accept string) {
		got := Negotiate(strings.Split(ui, " "), accept)
		if got != "ja" && got != "en" {
			t.Fatalf("Negotiate returned %q", got)
		}
	})
}

// The parse-time resolution of message lookups must render exactly what
// Page.T renders, escaping included, in every context and for every
// pattern it rewrites or leaves alone.
func TestResolvedMessagesRenderLikePageT(t *testing.T) {
	msgs := map[string]string{
		"plain":    `Tom & "Jerry" <b>`,
		"percent":  `100% sure`,
		"args":     `hello %s, you are %d`,
		"claim.a":  `Claim <A>`,
		"claim.b":  `Claim B's`,
		"js":       `it's </script>`,
		"only.key": "x",
	}
	type item struct{ Claim string }
	type named string
	data := struct {
		Name   string
		Items  []item
		Named  named
		Number int
	}{`<Taro>`, []item{{"a"}, {"b"}, {"missing"}}, named("a"), 7}
	const layout = `{{define "layout"}}<p title="{{.T "plain"}}">{{.T "plain"}}|{{$.T "percent"}}|{{.T "args" .Data.Name .Data.Number}}</p>` +
		`<ul>{{range .Data.Items}}<li>{{$.T (printf "claim.%s" .Claim)}}</li>{{end}}</ul>` +
		`{{$.T (printf "claim.%s" .Data.Named)}}|{{$.T (printf "claim.%d" .Data.Number)}}|{{.T "nope"}}|{{.T "only.key"}}` +
		`<a href="/x?q={{.T "plain"}}">l</a><script>var s = {{.T "js"}};</script>{{end}}`
	resolved, err := parsePage("p", []byte(layout), nil, msgs)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := template.New("p").Option("missingkey=error").Parse(layout)
	if err != nil {
		t.Fatal(err)
	}
	page := Page{Lang: "en", Data: data, msgs: msgs}
	var got, want strings.Builder
	if err := resolved.ExecuteTemplate(&got, "layout", page); err != nil {
		t.Fatal(err)
	}
	if err := plain.ExecuteTemplate(&want, "layout", page); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Fatalf("resolved:\n%s\nPage.T:\n%s", got.String(), want.String())
	}
	for _, s := range []string{"Tom &amp; &#34;Jerry&#34; &lt;b&gt;", "Claim &lt;A&gt;", "claim.missing", "hello &lt;Taro&gt;, you are 7"} {
		if !strings.Contains(got.String(), s) {
			t.Errorf("%q not in %s", s, got.String())
		}
	}
	// The rewrite really happened: no reference to T is left in the tree.
	for _, tt := range resolved.Templates() {
		if tt.Tree != nil && strings.Contains(tt.Tree.Root.String(), `.T "plain"`) {
			t.Errorf("template %s still looks messages up at run time: %s", tt.Name(), tt.Tree.Root)
		}
	}
}
