package idp

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/templates"
)

// langAnchor matches one entry of a page's language switch.
var langAnchor = regexp.MustCompile(`<a id="lang-(\w+)" href="([^"]*)"[^>]*>`)

// langSwitch returns the switch of page: language -> href (HTML-unescaped)
// and the languages marked aria-current.
func langSwitch(page string) (map[string]string, []string) {
	hrefs := map[string]string{}
	var current []string
	for _, m := range langAnchor.FindAllStringSubmatch(page, -1) {
		hrefs[m[1]] = strings.ReplaceAll(m[2], "&amp;", "&")
		if strings.Contains(m[0], `aria-current="page"`) {
			current = append(current, m[1])
		}
	}
	return hrefs, current
}

// langCookie returns the lang cookie among a response's cookies.
func langCookie(o *signinOP, cs []*http.Cookie) *http.Cookie {
	for _, c := range cs {
		if c.Name == o.s.web.CookieName("lang") {
			return c
		}
	}
	return nil
}

// The login page has the consent page's language switch; a pick on it
// (or on any page) is remembered for the browser in a small cookie, so it
// survives Continue (a POST and redirects that drop ?lang=) up to the
// consent page and on error pages, above ui_locales and Accept-Language;
// an unsupported pick is ignored.
func TestLanguageChoiceCarriesThroughFlow(t *testing.T) {
	o := newSigninOP(t, store.NewMemory())
	w := o.pki.wallet(t, factsTaro)

	t.Run("login switch", func(t *testing.T) {
		for _, c := range []struct {
			name, pick, accept, want string
		}{
			{"no pick, Japanese browser", "", "ja", "ja"},
			{"no pick, English browser", "", "en-US,en;q=0.9", "en"},
			{"English pick", "en", "ja", "en"},
			{"Japanese pick", "ja", "en", "ja"},
			{"invalid pick ignored", "fr", "en", "en"},
		} {
			t.Run(c.name, func(t *testing.T) {
				b := o.browser()
				ar := o.authorize("web")
				start := authreq.LoginURL(ar)
				if c.pick != "" {
					start = authreq.LoginURL(ar, web.LangParam, c.pick)
				}
				code, loc, body := b.get(start, "Accept-Language", c.accept)
				if code != http.StatusSeeOther {
					t.Fatalf("login: %d\n%s", code, body)
				}
				lu, err := url.Parse(loc)
				if err != nil {
					t.Fatal(err)
				}
				tx := lu.Query().Get("tx")
				// The page keeps every part of its URL (purpose too) and
				// changes only lang.
				page := "/login?" + url.Values{"id": {ar}, "tx": {tx}, "purpose": {"signin"}}.Encode()
				if c.pick != "" {
					page += "&" + web.LangParam + "=" + url.QueryEscape(c.pick)
				}
				code, _, body = b.get(page, "Accept-Language", c.accept)
				if code != http.StatusOK || !strings.Contains(body, `<html lang="`+c.want+`">`) {
					t.Fatalf("login page: %d, want lang %s", code, c.want)
				}
				if !strings.Contains(body, `<nav class="lang-switch" aria-label="`) {
					t.Error("no language switch navigation")
				}
				hrefs, current := langSwitch(body)
				for _, l := range templates.Languages {
					want := "/login?" + url.Values{"id": {ar}, "tx": {tx}, "purpose": {"signin"}, web.LangParam: {l}}.Encode()
					if hrefs[l] != want {
						t.Errorf("lang-%s href %q, want %q", l, hrefs[l], want)
					}
				}
				if len(hrefs) != len(templates.Languages) {
					t.Errorf("switch %v", hrefs)
				}
				if !slices.Equal(current, []string{c.want}) {
					t.Errorf("aria-current on %v, want [%s]", current, c.want)
				}
				for _, label := range []string{`>日本語</a>`, `>English</a>`} {
					if !strings.Contains(body, label) {
						t.Errorf("switch lacks %s", label)
					}
				}
			})
		}
	})

	t.Run("pick survives continue", func(t *testing.T) {
		for _, c := range []struct {
			name, pick, accept, want, phrase string
		}{
			{"English over Accept-Language ja", "en", "ja", "en", "is asking for your information"},
			{"Japanese over Accept-Language en", "ja", "en-US,en;q=0.9", "ja", `<html lang="ja">`},
			{"invalid pick falls back", "xx", "ja", "ja", `<html lang="ja">`},
		} {
			t.Run(c.name, func(t *testing.T) {
				b := o.browser()
				// prompt=consent: the same resident signs in each time.
				ar := o.authorize("web", oauth2.SetAuthURLParam("prompt", "consent"))
				code, loc, body := b.get(authreq.LoginURL(ar, "purpose", authreq.PurposeProofing, web.LangParam, c.pick), "Accept-Language", c.accept)
				if code != http.StatusSeeOther {
					t.Fatalf("login: %d\n%s", code, body)
				}
				lu, _ := url.Parse(loc)
				tx := lu.Query().Get("tx")
				if err := w.Approve(context.Background(), o.ts.Client(), b.walletURL(tx), "jws"); err != nil {
					t.Fatalf("wallet approve: %v", err)
				}
				// Continue: the verified page without ?lang=, then the POST.
				code, _, page := b.get(authreq.LoginURL(ar, "tx", tx), "Accept-Language", c.accept)
				if code != http.StatusOK || !strings.Contains(page, `<html lang="`+c.want+`">`) {
					t.Fatalf("verified page: %d, want lang %s", code, c.want)
				}
				code, loc, body = b.post("/login/tx/"+tx+"/finish", url.Values{web.CSRFField: {csrfFrom(t, page)}})
				if code != http.StatusSeeOther || loc != authreq.ConsentURL(ar) {
					t.Fatalf("finish: %d %q\n%s", code, loc, body)
				}
				code, _, page = b.get(loc, "Accept-Language", c.accept)
				if code != http.StatusOK || !strings.Contains(page, `<html lang="`+c.want+`">`) || !strings.Contains(page, c.phrase) {
					t.Fatalf("consent: %d, want lang %s", code, c.want)
				}
				if _, cur := langSwitch(page); !slices.Equal(cur, []string{c.want}) {
					t.Errorf("consent aria-current on %v", cur)
				}
				// Error pages follow the pick too.
				code, _, page = b.get(authreq.LoginURL("no-such-request"), "Accept-Language", c.accept)
				if code != http.StatusBadRequest || !strings.Contains(page, `<html lang="`+c.want+`">`) {
					t.Errorf("error page: %d, want lang %s", code, c.want)
				}
				// The cookie holds the language and nothing else.
				u, _ := url.Parse(o.issuer)
				lc := langCookie(o, b.jar.Cookies(u))
				switch {
				case c.pick == c.want && (lc == nil || lc.Value != c.want):
					t.Errorf("lang cookie %v, want %s", lc, c.want)
				case c.pick != c.want && lc != nil:
					t.Errorf("an invalid pick set the lang cookie %q", lc.Value)
				}
				// The form keeps the language; submitting completes.
				action, fields := pageForm(t, page2(t, b, ar, c.accept), "consent")
				if !strings.Contains(action, web.LangParam+"="+c.want) {
					t.Errorf("form posts to %q", action)
				}
				v := submission(fields)
				v.Set("action", "allow")
				if code, loc, _ := b.post(action, v); code != http.StatusSeeOther || !strings.Contains(loc, callbackPath) {
					t.Fatalf("consent post: %d %q", code, loc)
				}
			})
		}
	})

	t.Run("precedence", func(t *testing.T) {
		for _, c := range []struct {
			name, cookie, query, uiLocales, accept, want string
		}{
			{"query over cookie", "ja", "en", "", "ja", "en"},
			{"cookie over ui_locales", "ja", "", "en", "en", "ja"},
			{"cookie over Accept-Language", "en", "", "", "ja", "en"},
			{"invalid query, cookie answers", "en", "de", "", "ja", "en"},
			{"invalid cookie ignored", "fr", "", "", "en", "en"},
			{"ui_locales without cookie", "", "", "en", "ja", "en"},
			{"nothing: Japanese", "", "", "", "", "ja"},
		} {
			t.Run(c.name, func(t *testing.T) {
				target := "/login"
				if c.query != "" {
					target += "?" + web.LangParam + "=" + c.query
				}
				r, err := http.NewRequest(http.MethodGet, target, nil)
				if err != nil {
					t.Fatal(err)
				}
				if c.accept != "" {
					r.Header.Set("Accept-Language", c.accept)
				}
				if c.cookie != "" {
					r.AddCookie(&http.Cookie{Name: o.s.web.CookieName("lang"), Value: c.cookie})
				}
				var locales []string
				if c.uiLocales != "" {
					locales = []string{c.uiLocales}
				}
				if got := o.s.web.Lang(nil, r, locales); got != c.want {
					t.Errorf("pageLang = %q, want %q", got, c.want)
				}
			})
		}
	})

	t.Run("cookie attributes", func(t *testing.T) {
		for _, c := range []struct {
			name, query string
			set         string // "" when no cookie may be set
		}{
			{"English pick", "en", "en"},
			{"Japanese pick", "ja", "ja"},
			{"invalid pick", "<script>", ""},
			{"empty pick", "", ""},
		} {
			t.Run(c.name, func(t *testing.T) {
				ar := o.authorize("web")
				req, err := http.NewRequest(http.MethodGet, o.issuer+authreq.LoginURL(ar, web.LangParam, c.query), nil)
				if err != nil {
					t.Fatal(err)
				}
				res, err := o.hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				lc := langCookie(o, res.Cookies())
				if c.set == "" {
					if lc != nil {
						t.Fatalf("lang cookie set: %q", lc.Value)
					}
					return
				}
				if lc == nil {
					t.Fatal("no lang cookie")
				}
				if lc.Value != c.set || !lc.HttpOnly || lc.SameSite != http.SameSiteLaxMode || lc.Path != "/" || lc.MaxAge <= 0 || lc.Domain != "" {
					t.Errorf("lang cookie %+v", lc)
				}
				// Nothing about the resident or the request: the value is
				// one of the supported languages, no more.
				if !slices.Contains(templates.Languages, lc.Value) || strings.Contains(lc.Raw, ar) {
					t.Errorf("lang cookie carries more than the language: %q", lc.Raw)
				}
			})
		}
	})
}

// page2 reloads the consent page of ar.
func page2(t *testing.T, b *browser, ar, accept string) string {
	t.Helper()
	code, _, page := b.get(authreq.ConsentURL(ar), "Accept-Language", accept)
	if code != http.StatusOK {
		t.Fatalf("consent reload: %d", code)
	}
	return page
}
