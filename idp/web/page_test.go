package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/templates"
)

func TestLang(t *testing.T) {
	tests := []struct {
		name      string
		method    string // GET unless set
		query     string // ?lang=
		cookie    string // the remembered pick
		uiLocales []string
		accept    string
		nilWriter bool
		want      string
		wantSet   string // the pick remembered on this response, "" for none
	}{
		{name: "query pick remembered", query: "en", want: "en", wantSet: "en"},
		{name: "Japanese pick remembered", query: "ja", accept: "en", want: "ja", wantSet: "ja"},
		{name: "HEAD pick remembered", method: "HEAD", query: "en", want: "en", wantSet: "en"},
		// The pick holds for this POST, but a POST is not a click on the
		// language switch: nothing is remembered.
		{name: "POST pick not remembered", method: "POST", query: "en", want: "en"},
		{name: "query over cookie", query: "en", cookie: "ja", want: "en", wantSet: "en"},
		{name: "same pick as cookie not set again", query: "en", cookie: "en", want: "en"},
		{name: "query over ui_locales and Accept-Language", query: "en", uiLocales: []string{"ja"}, accept: "ja", want: "en", wantSet: "en"},
		{name: "no writer: pick used, nothing set", query: "en", nilWriter: true, want: "en"},
		{name: "invalid pick, cookie answers", query: "de", cookie: "en", accept: "ja", want: "en"},
		{name: "script pick ignored", query: "<script>", want: "ja"},
		{name: "empty pick ignored", query: "", accept: "en", want: "en"},
		{name: "cookie over ui_locales", cookie: "ja", uiLocales: []string{"en"}, accept: "en", want: "ja"},
		{name: "cookie over Accept-Language", cookie: "en", accept: "ja", want: "en"},
		{name: "invalid cookie ignored", cookie: "fr", accept: "en", want: "en"},
		{name: "ui_locales over Accept-Language", uiLocales: []string{"en"}, accept: "ja", want: "en"},
		{name: "ui_locales in order", uiLocales: []string{"fr", "en", "ja"}, want: "en"},
		{name: "Accept-Language", accept: "en-US,en;q=0.9", want: "en"},
		{name: "Accept-Language by quality", accept: "en;q=0.5, ja", want: "ja"},
		{name: "nothing: Japanese", want: "ja"},
		{name: "nothing supported: Japanese", uiLocales: []string{"fr"}, accept: "de", want: "ja"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, dev := range []bool{false, true} {
				k, _, _ := newKit(t, Options{Dev: dev})
				method := tt.method
				if method == "" {
					method = "GET"
				}
				target := "/login?id=abc"
				if tt.query != "" {
					target += "&" + LangParam + "=" + url.QueryEscape(tt.query)
				}
				r := httptest.NewRequest(method, target, nil)
				if tt.accept != "" {
					r.Header.Set("Accept-Language", tt.accept)
				}
				if tt.cookie != "" {
					r.AddCookie(&http.Cookie{Name: k.CookieName("lang"), Value: tt.cookie})
				}
				rec := httptest.NewRecorder()
				var w http.ResponseWriter = rec
				if tt.nilWriter {
					w = nil
				}
				if got := k.Lang(w, r, tt.uiLocales); got != tt.want {
					t.Fatalf("dev=%v: Lang = %q, want %q", dev, got, tt.want)
				}
				cs := rec.Result().Cookies()
				if tt.wantSet == "" {
					if len(cs) != 0 {
						t.Fatalf("dev=%v: cookies set: %v", dev, cs)
					}
					continue
				}
				if len(cs) != 1 {
					t.Fatalf("dev=%v: cookies %v, want one lang cookie", dev, cs)
				}
				c := cs[0]
				// Only the language, remembered for a year, with the
				// attributes of every other cookie of ours.
				if c.Name != k.CookieName("lang") || c.Value != tt.wantSet || c.MaxAge != int((365*24*time.Hour)/time.Second) ||
					!c.HttpOnly || c.Secure == dev || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
					t.Fatalf("dev=%v: lang cookie %+v", dev, c)
				}
				if !slices.Contains(templates.Languages, c.Value) {
					t.Fatalf("lang cookie carries %q", c.Value)
				}
			}
		})
	}
}

func TestKeepLang(t *testing.T) {
	for _, tt := range []struct {
		target string
		want   []string
	}{
		{"/login?lang=en", []string{"lang", "en"}},
		{"/login?id=1&lang=ja", []string{"lang", "ja"}},
		{"/login?lang=de", nil},
		{"/login?lang=", nil},
		{"/login", nil},
	} {
		if got := KeepLang(httptest.NewRequest("GET", tt.target, nil)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("KeepLang(%s) = %q, want %q", tt.target, got, tt.want)
		}
	}
}

func TestLangLinks(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		current string
		want    []LangLink
	}{
		{
			name: "keeps the place in the flow", url: "/login?id=abc", current: "ja",
			want: []LangLink{{Lang: "ja", URL: "/login?id=abc&lang=ja", Current: true}, {Lang: "en", URL: "/login?id=abc&lang=en"}},
		},
		{
			name: "replaces an earlier pick", url: "/consent?lang=en&id=x%26y", current: "en",
			want: []LangLink{{Lang: "ja", URL: "/consent?id=x%26y&lang=ja"}, {Lang: "en", URL: "/consent?id=x%26y&lang=en", Current: true}},
		},
		{
			name: "no query", url: "/account", current: "en",
			want: []LangLink{{Lang: "ja", URL: "/account?lang=ja"}, {Lang: "en", URL: "/account?lang=en", Current: true}},
		},
		{
			// An escaped "?" in the path must stay escaped, or the link
			// leads to another path with a mangled query.
			name: "escaped path", url: "/wallet/a%3Fb%20c", current: "ja",
			want: []LangLink{{Lang: "ja", URL: "/wallet/a%3Fb%20c?lang=ja", Current: true}, {Lang: "en", URL: "/wallet/a%3Fb%20c?lang=en"}},
		},
		{
			name: "unknown current language", url: "/login", current: "fr",
			want: []LangLink{{Lang: "ja", URL: "/login?lang=ja"}, {Lang: "en", URL: "/login?lang=en"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			before := u.String()
			if got := LangLinks(u, tt.current); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("LangLinks(%s) = %+v, want %+v", tt.url, got, tt.want)
			}
			if u.String() != before {
				t.Fatalf("LangLinks changed its URL to %s", u)
			}
		})
	}
}

func TestRender(t *testing.T) {
	tests := []struct {
		name       string
		page, lang string
		status     int
		data       any
		wantStatus int
		wantBody   string
		wantLang   string
		wantLog    bool // a template failure is logged
	}{
		{name: "page", page: "error.html", lang: "en", status: http.StatusOK, data: ErrorView{Code: "csrf"}, wantStatus: 200, wantBody: "The form has expired.", wantLang: "en"},
		{name: "status kept", page: "error.html", lang: "ja", status: http.StatusForbidden, data: ErrorView{Code: "csrf"}, wantStatus: 403, wantBody: "フォームの有効期限が切れました", wantLang: "ja"},
		// The page and its Content-Language agree on the fallback.
		{name: "unknown language falls back to Japanese", page: "error.html", lang: "fr", status: 200, data: ErrorView{Code: "csrf"}, wantStatus: 200, wantBody: `<html lang="ja">`, wantLang: "ja"},
		{name: "unknown page", page: "nope.html", lang: "en", status: 200, wantStatus: 500, wantBody: "internal error", wantLog: true},
		{name: "data of the wrong type", page: "error.html", lang: "en", status: 200, data: 42, wantStatus: 500, wantBody: "internal error", wantLog: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, logs, _ := newKit(t, Options{})
			rec := httptest.NewRecorder()
			k.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				k.Render(w, r, tt.status, tt.page, tt.lang, tt.data)
			}), nil).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			res := rec.Result()
			body := rec.Body.String()
			if res.StatusCode != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Fatalf("%d %q, want %d with %q", res.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if tt.wantLog {
				// A clean error, never half a page.
				if strings.Contains(body, "<") || res.Header.Get("Content-Language") != "" {
					t.Fatalf("half a page sent: %v %q", res.Header, body)
				}
				m := logLine(t, logs, "template")
				if m["level"] != "ERROR" || m["page"] != tt.page || m["request_id"] != res.Header.Get("X-Request-ID") {
					t.Fatalf("template failure log %v", m)
				}
				return
			}
			if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Fatalf("Content-Type %q", ct)
			}
			if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
				t.Fatalf("Cache-Control %q", cc)
			}
			if cl := res.Header.Get("Content-Language"); cl != tt.wantLang {
				t.Fatalf("Content-Language %q, want %q", cl, tt.wantLang)
			}
		})
	}
}

func TestErrorPage(t *testing.T) {
	tests := []struct {
		name      string
		lang      string
		requestID string
		wantText  []string
	}{
		{name: "English, upstream ID", lang: "en", requestID: "req-12345678", wantText: []string{"The form has expired.", "Reference:", "<code>req-12345678</code>", `<html lang="en">`}},
		{name: "Japanese, generated ID", lang: "ja", wantText: []string{"フォームの有効期限が切れました", "問い合わせ番号："}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, _, _ := newKit(t, Options{})
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", "/consent", nil)
			if tt.requestID != "" {
				req.Header.Set("X-Request-ID", tt.requestID)
			}
			k.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				k.ErrorPage(w, r, tt.lang, http.StatusForbidden, "csrf")
			}), nil).ServeHTTP(rec, req)
			body := rec.Body.String()
			id := rec.Header().Get("X-Request-ID")
			if rec.Code != http.StatusForbidden || id == "" || !strings.Contains(body, "<code>"+id+"</code>") {
				t.Fatalf("%d, request ID %q not on the page: %s", rec.Code, id, body)
			}
			for _, s := range tt.wantText {
				if !strings.Contains(body, s) {
					t.Errorf("page lacks %q", s)
				}
			}
		})
	}
	t.Run("outside a request: no reference", func(t *testing.T) {
		k, _, _ := newKit(t, Options{})
		rec := httptest.NewRecorder()
		k.ErrorPage(rec, httptest.NewRequest("GET", "/", nil), "en", http.StatusBadRequest, "csrf")
		if rec.Code != http.StatusBadRequest || strings.Contains(rec.Body.String(), "Reference:") || !strings.Contains(rec.Body.String(), "The form has expired.") {
			t.Fatalf("%d %s", rec.Code, rec.Body.String())
		}
	})
}

func TestMessageAndStatic(t *testing.T) {
	k, _, _ := newKit(t, Options{})
	if got := k.Message("en", "error.csrf"); got != "The form has expired. Please reload the page." {
		t.Fatalf("Message %q", got)
	}
	if got := k.Message("en", "no.such.key"); got != "no.such.key" {
		t.Fatalf("missing message %q", got)
	}
	rec := httptest.NewRecorder()
	k.Static().ServeHTTP(rec, httptest.NewRequest("GET", "/watashi.css", nil))
	if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
		t.Fatalf("static: %d", rec.Code)
	}
}

func TestFormatTime(t *testing.T) {
	for _, tt := range []struct {
		in   time.Time
		want string
	}{
		{time.Time{}, ""},
		{time.Date(2026, 4, 1, 15, 30, 59, 0, time.UTC), "2026-04-02 00:30"},
		{time.Date(2026, 4, 1, 9, 0, 0, 0, JST), "2026-04-01 09:00"},
	} {
		if got := FormatTime(tt.in); got != tt.want {
			t.Errorf("FormatTime(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
