package idp

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/templates"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"rsc.io/qr"
)

// The browser side of the sign-in (DESIGN.md §3 steps 2 and 5):
//
//	GET  /login?id=AR             SSO decision, or open a transaction and
//	                              redirect to /login?id=AR&tx=TX (so that a
//	                              reload resumes instead of opening another)
//	GET  /login?id=AR&tx=TX       the page: QR code, comparison code, app
//	                              link; refreshes itself every QR window
//	GET  /login/tx/TX/status      JSON state (+ the rotated QR links)
//	GET  /login/tx/TX/events      server-sent events on state changes
//	GET  /login/tx/TX/qr.png      the QR code of the current window
//	POST /login/tx/TX/finish      CSRF; verified → SSO session → /consent
//	GET  /consent?id=AR           consent screen (consent_flow.go), or skip
//	                              when the remembered grant answers it
//	POST /consent?id=AR           choices → grant → complete → callback
//	GET  /logout?next=SIGNED      end the SSO session
//
// Every step after /login needs the binding cookie whose hash the auth
// request and the transaction carry: an ID alone never lets another
// browser see or finish anything.

// jst is Japan Standard Time (no daylight saving), for expiry texts.
var jst = time.FixedZone("JST", 9*60*60)

// bindingCookieLen is the length of our binding cookie values (32 random
// bytes, base64url).
const bindingCookieLen = 43

// browserBinding returns the hash of the browser's binding cookie, or "".
func (s *Server) browserBinding(r *http.Request) string {
	c, err := r.Cookie(s.cookieName("bind"))
	if err != nil || len(c.Value) != bindingCookieLen {
		return ""
	}
	return bindingHash(c.Value)
}

// ensureBinding returns the hash of the browser's binding cookie, setting
// a new cookie when the browser has none.
func (s *Server) ensureBinding(w http.ResponseWriter, r *http.Request) string {
	if h := s.browserBinding(r); h != "" {
		return h
	}
	v := randomB64(32)
	s.setCookie(w, s.cookieName("bind"), v, 0)
	return bindingHash(v)
}

func sameBinding(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// langParam is the query parameter of the pages' language switch.
const langParam = "lang"

// langCookieBase is passed to cookieName for the remembered language
// pick. The cookie holds only "ja" or "en": nothing about the resident.
const langCookieBase = "lang"

// langCookieAge is how long a language pick is remembered: a resident who
// chose English once should not have to choose again on every visit.
const langCookieAge = 365 * 24 * time.Hour

// pageLang is the page language of every browser page, decided in one
// place so that a pick on any page's language switch holds for the rest
// of the flow (the POSTs and redirects between pages drop ?lang=): the
// resident's own pick (?lang=), else the pick remembered in the lang
// cookie, else the request's ui_locales, else the browser's
// Accept-Language, else Japanese. A pick on a GET is remembered; w may be
// nil where nothing should be set.
func (s *Server) pageLang(w http.ResponseWriter, r *http.Request, ar *AuthRequest) string {
	if l := r.URL.Query().Get(langParam); slices.Contains(templates.Languages, l) {
		if w != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			if c, err := r.Cookie(s.cookieName(langCookieBase)); err != nil || c.Value != l {
				s.setCookie(w, s.cookieName(langCookieBase), l, langCookieAge)
			}
		}
		return l
	}
	if c, err := r.Cookie(s.cookieName(langCookieBase)); err == nil && slices.Contains(templates.Languages, c.Value) {
		return c.Value
	}
	var locales []string
	if ar != nil {
		locales = ar.UILocales
	}
	return templates.Negotiate(locales, r.Header.Get("Accept-Language"))
}

// keepLang carries the resident's language pick (?lang=) into the next
// URL of the flow, as extra loginURL arguments.
func keepLang(r *http.Request) []string {
	if l := r.URL.Query().Get(langParam); slices.Contains(templates.Languages, l) {
		return []string{langParam, l}
	}
	return nil
}

// langLink is one entry of a page's language switch.
type langLink struct {
	Lang    string
	URL     string
	Current bool
}

// langLinks builds the language switch for a page at u: the same URL
// with ?lang= set, so that switching keeps the resident's place in the
// flow (the auth request ID travels in the URL).
func langLinks(u *url.URL, current string) []langLink {
	var out []langLink
	for _, l := range templates.Languages {
		q := u.Query()
		q.Set(langParam, l)
		out = append(out, langLink{Lang: l, URL: u.Path + "?" + q.Encode(), Current: l == current})
	}
	return out
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name, lang string, data any) {
	var buf strings.Builder
	if err := s.signin.tmpl.Render(&buf, name, lang, data); err != nil {
		s.log.ErrorContext(r.Context(), "template", "page", name, "error", err)
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

type errorView struct {
	Code      string
	RequestID string
}

// errorPage shows a sign-in error that is not sent to the RP.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, lang string, status int, code string) {
	s.render(w, r, status, "error.html", lang, errorView{Code: code, RequestID: RequestIDFrom(r.Context())})
}

// loadRequestForPage loads the auth request named by ?id= and renders the
// error page when it cannot be used.
func (s *Server) loadRequestForPage(w http.ResponseWriter, r *http.Request, id string) (*AuthRequest, bool) {
	ar, err := s.authRequest(r.Context(), id)
	if err != nil {
		lang := s.pageLang(w, r, nil)
		if errors.Is(err, store.ErrNotFound) {
			s.errorPage(w, r, lang, http.StatusBadRequest, "unknown_request")
		} else {
			s.log.ErrorContext(r.Context(), "load auth request", "error", err)
			s.errorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		}
		return nil, false
	}
	if ar.Completed {
		s.errorPage(w, r, s.pageLang(w, r, ar), http.StatusBadRequest, "already_completed")
		return nil, false
	}
	return ar, true
}

func loginURL(arID string, extra ...string) string {
	q := url.Values{"id": {arID}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return "/login?" + q.Encode()
}

func consentURL(arID string) string { return "/consent?" + url.Values{"id": {arID}}.Encode() }

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	ar, ok := s.loadRequestForPage(w, r, q.Get("id"))
	if !ok {
		return
	}
	lang := s.pageLang(w, r, ar)
	binding := s.ensureBinding(w, r)
	if err := s.bindAuthRequest(ctx, ar.ID, binding); err != nil {
		switch {
		case errors.Is(err, errAuthRequestBound):
			s.errorPage(w, r, lang, http.StatusForbidden, "foreign_browser")
		case errors.Is(err, store.ErrNotFound):
			s.errorPage(w, r, lang, http.StatusBadRequest, "unknown_request")
		default:
			s.log.ErrorContext(ctx, "bind auth request", "error", err)
			s.errorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		}
		return
	}

	sess, hasSess := s.currentSession(r)
	sessionOK := hasSess && s.sessionSatisfies(ctx, ar, sess)
	if ar.HasPrompt(oidc.PromptNone) {
		// No UI may be shown: the session answers, or the RP hears
		// login_required. Consent decides consent_required.
		if !sessionOK {
			s.authError(w, r, ar, oidc.ErrLoginRequired())
			return
		}
		http.Redirect(w, r, consentURL(ar.ID), http.StatusSeeOther)
		return
	}
	purpose := q.Get("purpose")
	if q.Get("tx") == "" && purpose == "" && sessionOK && !ar.HasPrompt(oidc.PromptLogin) {
		http.Redirect(w, r, consentURL(ar.ID), http.StatusSeeOther)
		return
	}

	if id := q.Get("tx"); id != "" {
		tx, _, err := s.loadTx(ctx, id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.ErrorContext(ctx, "load transaction", "error", err)
			s.errorPage(w, r, lang, http.StatusInternalServerError, "server_error")
			return
		}
		if err == nil && tx.AuthRequestID == ar.ID && sameBinding(binding, tx.Binding) {
			s.renderLogin(w, r, ar, tx, lang)
			return
		}
		// Gone (past its grace period) or not ours: open a new one.
	}
	if purpose != purposeProofing {
		purpose = purposeSignin
	}
	notice := q.Get("notice")
	if !slices.Contains(loginNotices, notice) {
		notice = ""
	}
	if !s.rateLimit(ctx, "signin_tx", s.clientIP(r).String(), txCreatePerIP, walletRateWindow) {
		s.errorPage(w, r, lang, http.StatusTooManyRequests, "rate_limited")
		return
	}
	sessionAccount := ""
	if purpose == purposeProofing && hasSess {
		// Signed in: a proofing re-links renewed certificates to this
		// account instead of creating another.
		sessionAccount = sess.AccountID
	}
	tx, err := s.createTx(ctx, ar, binding, purpose, sessionAccount, notice)
	if err != nil {
		s.log.ErrorContext(ctx, "create transaction", "error", err)
		s.errorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	http.Redirect(w, r, loginURL(ar.ID, append([]string{"tx", tx.ID}, keepLang(r)...)...), http.StatusSeeOther)
}

// loginView is the login page's data.
type loginView struct {
	RP             string
	RPPurpose      string
	Purpose        string
	Claims         []string
	State          string
	Reason         string
	Code           string
	QRImage        string
	TxURL          string
	AppLink        template.URL // watashi:// is not a scheme html/template trusts
	FallbackLink   template.URL
	ExpiresAt      string
	RefreshURL     string
	RefreshAttr    template.HTMLAttr
	RefreshSeconds int
	RotateSeconds  int
	StatusURL      string
	EventsURL      string
	FinishURL      string
	CSRF           string
	SwitchURL      string
	ProofingURL    string
	RetryURL       string
	// Notice says why the resident is here (stale_facts: prove again).
	Notice string
	// Languages is the language switch: this very page in each language.
	Languages []langLink
}

// Login page notices a redirect may ask for; anything else is ignored.
const (
	noticeStaleFacts = "stale_facts" // the facts' certificate was revoked: prove again
	noticeNoFacts    = "no_facts"    // the account has no verified facts yet
)

var loginNotices = []string{noticeStaleFacts, noticeNoFacts}

// qrLinks are the rotating parts of the page.
type qrLinks struct {
	Image    string `json:"image"`
	TxURL    string `json:"tx_url"`
	AppLink  string `json:"app_link"`
	Fallback string `json:"fallback"`
}

func (s *Server) qrLinks(tx *signinTx) qrLinks {
	w := qrWindowAt(s.now())
	txu := s.txURL(tx.ID, w)
	l := qrLinks{
		Image:    "/login/tx/" + url.PathEscape(tx.ID) + "/qr.png?w=" + fmt.Sprint(w),
		TxURL:    txu,
		AppLink:  "watashi://sign?tx=" + url.QueryEscape(txu),
		Fallback: strings.TrimSuffix(s.opts.Issuer, "/") + "/wallet/open?tx=" + url.QueryEscape(txu),
	}
	if s.opts.DemoWalletURL != "" {
		demo := s.opts.DemoWalletURL + "?tx=" + url.QueryEscape(txu)
		l.AppLink, l.Fallback = demo, demo
	}
	return l
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, ar *AuthRequest, tx *signinTx, lang string) {
	state := tx.displayState(s.now())
	if state == txFinished {
		http.Redirect(w, r, consentURL(ar.ID), http.StatusSeeOther)
		return
	}
	base := "/login/tx/" + url.PathEscape(tx.ID)
	v := loginView{
		RP:             tx.ClientName,
		RPPurpose:      tx.ClientPurpose,
		Purpose:        tx.Purpose,
		Claims:         tx.Claims,
		State:          state,
		Reason:         tx.Reason,
		Code:           tx.Code,
		ExpiresAt:      tx.ExpiresAt.In(jst).Format("15:04"),
		RefreshURL:     loginURL(ar.ID, append([]string{"tx", tx.ID}, keepLang(r)...)...),
		RefreshSeconds: int(qrWindow / time.Second),
		RotateSeconds:  int(qrWindow / time.Second),
		StatusURL:      base + "/status",
		EventsURL:      base + "/events",
		FinishURL:      base + "/finish",
		ProofingURL:    loginURL(ar.ID, "purpose", purposeProofing),
		RetryURL:       loginURL(ar.ID, "purpose", tx.Purpose),
		Notice:         tx.Notice,
		Languages:      langLinks(&url.URL{Path: r.URL.Path, RawQuery: r.URL.RawQuery}, lang),
	}
	v.RefreshAttr = template.HTMLAttr(fmt.Sprintf(`content="%d;url=%s"`, v.RefreshSeconds, html.EscapeString(v.RefreshURL)))
	if tx.Purpose == purposeSignin {
		v.SwitchURL = loginURL(ar.ID, "purpose", purposeProofing)
	} else {
		v.SwitchURL = loginURL(ar.ID, "purpose", purposeSignin)
	}
	switch state {
	case txPending:
		l := s.qrLinks(tx)
		v.QRImage, v.TxURL = l.Image, l.TxURL
		v.AppLink, v.FallbackLink = template.URL(l.AppLink), template.URL(l.Fallback)
		v.CSRF = s.csrfToken(r)
	case txVerified:
		v.CSRF = s.csrfToken(r)
	case txExpired:
		v.Reason = codeExpiredTransaction
	}
	s.render(w, r, http.StatusOK, "login.html", lang, v)
}

// txForBrowser loads the transaction named in the path and checks that
// this browser owns it. It writes the JSON error itself.
func (s *Server) txForBrowser(w http.ResponseWriter, r *http.Request) (*signinTx, []byte, bool) {
	tx, raw, err := s.loadTx(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.walletError(w, txBad(http.StatusNotFound, codeUnknownTransaction, "no such transaction"))
		return nil, nil, false
	case err != nil:
		s.log.ErrorContext(r.Context(), "load transaction", "error", err)
		s.walletError(w, txBad(http.StatusInternalServerError, codeServerError, "internal error"))
		return nil, nil, false
	case !sameBinding(s.browserBinding(r), tx.Binding):
		s.walletError(w, txBad(http.StatusForbidden, "forbidden", "this transaction belongs to another browser"))
		return nil, nil, false
	}
	return tx, raw, true
}

// txStatus is the status endpoint's answer.
type txStatus struct {
	State     string   `json:"state"`
	Reason    string   `json:"reason,omitempty"`
	ExpiresAt int64    `json:"expires_at"`
	QR        *qrLinks `json:"qr,omitempty"`
}

func (s *Server) txStatusOf(tx *signinTx) txStatus {
	st := txStatus{State: tx.displayState(s.now()), Reason: tx.Reason, ExpiresAt: tx.ExpiresAt.Unix()}
	if st.State == txPending {
		l := s.qrLinks(tx)
		st.QR = &l
	}
	if st.State == txExpired {
		st.Reason = codeExpiredTransaction
	}
	return st
}

func (s *Server) handleTxStatus(w http.ResponseWriter, r *http.Request) {
	tx, _, ok := s.txForBrowser(w, r)
	if !ok {
		return
	}
	if !s.rateLimit(r.Context(), "signin_status", tx.ID, browserStatusPerTx, s.opts.TransactionTTL+txGrace) {
		s.walletError(w, txBad(http.StatusTooManyRequests, codeRateLimited, "too many status requests"))
		return
	}
	writeWalletJSON(w, http.StatusOK, s.txStatusOf(tx))
}

// sseKeepAlive keeps proxies from closing an idle event stream.
const sseKeepAlive = 15 * time.Second

// handleTxEvents streams the transaction's state as server-sent events
// ("event: state"). It subscribes before reading the state, so a change
// in between is not lost, and it works across nodes because the change
// is published through the store.
func (s *Server) handleTxEvents(w http.ResponseWriter, r *http.Request) {
	tx, _, ok := s.txForBrowser(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	events, err := s.kv.Subscribe(ctx, txChannel(tx.ID))
	if err != nil {
		s.log.ErrorContext(ctx, "subscribe to transaction", "error", err)
		s.walletError(w, txBad(http.StatusServiceUnavailable, codeServerError, "events unavailable; poll the status"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)

	send := func() bool { // reports whether the stream should end
		cur, _, err := s.loadTx(ctx, tx.ID)
		if err != nil {
			return true
		}
		st := s.txStatusOf(cur)
		st.QR = nil
		b, _ := json.Marshal(st)
		if _, err := fmt.Fprintf(w, "event: state\ndata: %s\n\n", b); err != nil {
			return true
		}
		_ = rc.Flush()
		return st.State != txPending
	}
	if send() {
		return
	}
	expiry := time.NewTimer(time.Until(tx.ExpiresAt) + time.Second)
	defer expiry.Stop()
	keep := time.NewTicker(sseKeepAlive)
	defer keep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok || send() {
				return
			}
		case <-expiry.C:
			send()
			return
		case <-keep.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			_ = rc.Flush()
		}
	}
}

// handleTxQR draws the QR code of the current window. It is an image on
// our own origin (not a data: URL), so the page works under a strict CSP.
func (s *Server) handleTxQR(w http.ResponseWriter, r *http.Request) {
	tx, _, ok := s.txForBrowser(w, r)
	if !ok {
		return
	}
	if tx.displayState(s.now()) != txPending {
		s.walletError(w, txBad(http.StatusGone, codeExpiredTransaction, "the transaction is no longer pending"))
		return
	}
	win := qrWindowAt(s.now())
	png, err := qrPNGs.png(s.txURL(tx.ID, win), win)
	if err != nil {
		s.log.ErrorContext(r.Context(), "qr encode", "error", err)
		s.walletError(w, txBad(http.StatusInternalServerError, codeServerError, "internal error"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/png")
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(png)
}

// qrPNGCacheSize bounds the QR image cache: the codes of the
// transactions shown in the last window or two on a busy instance.
const qrPNGCacheSize = 256

// qrPNGCache keeps encoded QR images by their exact payload. A page
// reloads its image every window and the status poll may too, while the
// payload (the transaction URL with the window's token) changes only
// once a window; encoding and compressing it is most of the handler's
// cost. The payload alone decides the image, so the cache holds nothing
// a request could not recompute, and it is shared by every Server.
type qrPNGCache struct {
	mu sync.Mutex
	m  map[string]qrPNGEntry
}

type qrPNGEntry struct {
	window int64
	png    []byte
}

var qrPNGs qrPNGCache

// png returns the PNG of payload, shown in QR window win. The returned
// slice is shared and must not be modified.
func (c *qrPNGCache) png(payload string, win int64) ([]byte, error) {
	c.mu.Lock()
	e, ok := c.m[payload]
	c.mu.Unlock()
	if ok {
		return e.png, nil
	}
	code, err := qr.Encode(payload, qr.M)
	if err != nil {
		return nil, err
	}
	code.Scale = 6
	b := code.PNG()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]qrPNGEntry)
	}
	if len(c.m) >= qrPNGCacheSize {
		// Codes of past windows are never asked for again (a wallet may
		// still scan the previous one from a screen, but the page asks
		// for the current one).
		for k, old := range c.m {
			if old.window < win-1 {
				delete(c.m, k)
			}
		}
		for k := range c.m { // still full: an arbitrary victim
			if len(c.m) < qrPNGCacheSize {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[payload] = qrPNGEntry{window: win, png: b}
	return b, nil
}

// handleTxFinish turns a verified transaction into an SSO session, once,
// for the browser that owns it.
func (s *Server) handleTxFinish(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	lang := s.pageLang(w, r, nil)
	if !s.checkCSRF(r) {
		s.errorPage(w, r, lang, http.StatusForbidden, "csrf")
		return
	}
	tx, raw, err := s.loadTx(ctx, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		s.errorPage(w, r, lang, http.StatusNotFound, "unknown_transaction")
		return
	}
	if err != nil {
		s.log.ErrorContext(ctx, "load transaction", "error", err)
		s.errorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	if !sameBinding(s.browserBinding(r), tx.Binding) {
		s.errorPage(w, r, lang, http.StatusForbidden, "foreign_browser")
		return
	}
	ar, ok := s.loadRequestForPage(w, r, tx.AuthRequestID)
	if !ok {
		return
	}
	lang = s.pageLang(w, r, ar)
	switch tx.State {
	case txFinished:
		http.Redirect(w, r, consentURL(ar.ID), http.StatusSeeOther)
		return
	case txVerified:
	default:
		s.errorPage(w, r, lang, http.StatusConflict, "not_verified")
		return
	}
	done := *tx
	done.State = txFinished
	if _, ok, err := s.swapTx(ctx, raw, &done); err != nil {
		s.log.ErrorContext(ctx, "finish transaction", "error", err)
		s.errorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	} else if !ok {
		// A concurrent finish (double click) won; it made the session.
		http.Redirect(w, r, consentURL(ar.ID), http.StatusSeeOther)
		return
	}
	if _, err := s.startSession(ctx, w, tx.Result); err != nil {
		s.log.ErrorContext(ctx, "start session", "error", err)
		s.errorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	http.Redirect(w, r, consentURL(ar.ID), http.StatusSeeOther)
}

// completeAndReturn records the sign-in on the auth request and sends the
// browser to the provider's callback, which mints the code.
func (s *Server) completeAndReturn(w http.ResponseWriter, r *http.Request, ar *AuthRequest, sess *Session, granted []string, lang string) {
	ctx := r.Context()
	err := s.completeAuthRequest(ctx, ar.ID, Authentication{
		AccountID: sess.AccountID,
		ACR:       sess.ACR,
		AMR:       sess.AMR,
		Time:      sess.AuthTime,
	}, granted)
	switch {
	case errors.Is(err, errAuthRequestDone):
		s.errorPage(w, r, lang, http.StatusBadRequest, "already_completed")
		return
	case errors.Is(err, store.ErrNotFound):
		s.errorPage(w, r, lang, http.StatusBadRequest, "unknown_request")
		return
	case err != nil:
		s.log.ErrorContext(ctx, "complete auth request", "error", err)
		s.errorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	http.Redirect(w, r, s.callbackURL(ctx, ar.ID), http.StatusSeeOther)
}

type signedOutView struct{ Next string }

// handleLogout ends the SSO session. next is a destination the provider
// validated and signed at end_session; anything else is ignored, so this
// page is no open redirect.
//
// It is a GET because end_session redirects here. A browser marks
// subresource loads (an <img> on another site) with a Sec-Fetch-Mode other
// than "navigate"; those are refused, so another page cannot sign the
// resident out behind their back.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	lang := s.pageLang(w, r, nil)
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" && mode != "navigate" {
		s.errorPage(w, r, lang, http.StatusForbidden, "bad_request")
		return
	}
	s.endSession(w, r)
	if next := r.URL.Query().Get("next"); next != "" {
		if dest, ok := s.verifyLogoutNext(next); ok {
			http.Redirect(w, r, dest, http.StatusSeeOther)
			return
		}
	}
	s.render(w, r, http.StatusOK, "signedout.html", lang, signedOutView{})
}

type openAppView struct {
	AppLink  template.URL
	PhoneURL string
}

// handleWalletOpen is the https fallback of the app link: with the app
// installed the OS opens it instead (universal / app links); without, the
// resident lands here. Only our own transaction URLs are accepted.
func (s *Server) handleWalletOpen(w http.ResponseWriter, r *http.Request) {
	lang := s.pageLang(w, r, nil)
	tx := r.URL.Query().Get("tx")
	prefix := strings.TrimSuffix(s.opts.Issuer, "/") + walletTxPath
	if !strings.HasPrefix(tx, prefix) || len(tx) > 512 {
		s.errorPage(w, r, lang, http.StatusBadRequest, "bad_request")
		return
	}
	v := openAppView{AppLink: template.URL("watashi://sign?tx=" + url.QueryEscape(tx))}
	if s.opts.DemoWalletURL != "" {
		v.PhoneURL = s.opts.DemoWalletURL + "?tx=" + url.QueryEscape(tx)
	}
	s.render(w, r, http.StatusOK, "openapp.html", lang, v)
}
