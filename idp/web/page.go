package web

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/watashi-id/watashi/templates"
)

// LangParam is the query parameter of the pages' language switch.
const LangParam = "lang"

const (
	// langCookieBase names the remembered language pick. The cookie holds
	// only "ja" or "en": nothing about the resident.
	langCookieBase = "lang"
	// langCookieAge: a resident who chose English once should not have to
	// choose again on every visit.
	langCookieAge = 365 * 24 * time.Hour
)

// JST is Japan Standard Time (no daylight saving), for the times residents
// read.
var JST = time.FixedZone("JST", 9*60*60)

// FormatTime shows a time to a resident, "" for the zero time.
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(JST).Format("2006-01-02 15:04")
}

// Lang is the page language, decided in one place so that a pick on any
// page's language switch holds for the rest of the flow (the POSTs and
// redirects between pages drop ?lang=): the resident's own pick (?lang=),
// else the pick remembered in the lang cookie, else the request's
// ui_locales, else the browser's Accept-Language, else Japanese. A pick on
// a GET is remembered; w may be nil where nothing should be set.
func (k *Kit) Lang(w http.ResponseWriter, r *http.Request, uiLocales []string) string {
	name := k.CookieName(langCookieBase)
	if l := r.URL.Query().Get(LangParam); slices.Contains(templates.Languages, l) {
		if w != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			if c, err := r.Cookie(name); err != nil || c.Value != l {
				k.SetCookie(w, name, l, langCookieAge)
			}
		}
		return l
	}
	if c, err := r.Cookie(name); err == nil && slices.Contains(templates.Languages, c.Value) {
		return c.Value
	}
	return templates.Negotiate(uiLocales, r.Header.Get("Accept-Language"))
}

// KeepLang carries the resident's language pick (?lang=) into the next
// URL of the flow, as extra query arguments.
func KeepLang(r *http.Request) []string {
	if l := r.URL.Query().Get(LangParam); slices.Contains(templates.Languages, l) {
		return []string{LangParam, l}
	}
	return nil
}

// LangLink is one entry of a page's language switch.
type LangLink struct {
	Lang    string
	URL     string
	Current bool
}

// LangLinks builds the language switch for a page at u: the same URL with
// ?lang= set, so that switching keeps the resident's place in the flow
// (the auth request ID travels in the URL).
func LangLinks(u *url.URL, current string) []LangLink {
	var out []LangLink
	for _, l := range templates.Languages {
		q := u.Query()
		q.Set(LangParam, l)
		out = append(out, LangLink{Lang: l, URL: u.EscapedPath() + "?" + q.Encode(), Current: l == current})
	}
	return out
}

// Render writes the page name in lang. It is buffered, so a template
// failure gives a clean 500, never half a page.
func (k *Kit) Render(w http.ResponseWriter, r *http.Request, status int, name, lang string, data any) {
	if !slices.Contains(templates.Languages, lang) {
		lang = templates.DefaultLanguage // what the templates fall back to
	}
	var buf strings.Builder
	if err := k.tmpl.Render(&buf, name, lang, data); err != nil {
		k.log.ErrorContext(r.Context(), "template", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Language", lang)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(buf.String()))
}

// ErrorView is the error page's data.
type ErrorView struct {
	Code      string
	RequestID string
	// Languages switch the page's language: the same GET in each
	// language. Empty after a POST, which a link cannot repeat.
	Languages []LangLink
}

// ErrorPage shows a sign-in error that is not sent to the relying party:
// the message for code (error.<code> in the catalogues) and the request
// ID, which leads an operator to the log line with the cause.
func (k *Kit) ErrorPage(w http.ResponseWriter, r *http.Request, lang string, status int, code string) {
	v := ErrorView{Code: code, RequestID: RequestID(r.Context())}
	if r.Method == http.MethodGet {
		v.Languages = LangLinks(r.URL, lang)
	}
	k.Render(w, r, status, "error.html", lang, v)
}

// Message is one catalogue text in lang.
func (k *Kit) Message(lang, key string) string { return k.tmpl.Message(lang, key) }

// Static serves the pages' static files.
func (k *Kit) Static() http.Handler { return k.tmpl.Static() }
