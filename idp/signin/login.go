package signin

import (
	"context"
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

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"rsc.io/qr"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
)

// handleLogin is the login page of an auth request: it opens a
// transaction (and redirects to its page), shows the page of the
// browser's transaction named by tx, or sends a browser whose session
// answers on. The request, the transaction named and, for a browser
// without a session opening a transaction, the address's count are one
// round trip; the new transaction one more. The count is judged before
// anything is written, so that a refused request writes nothing.
func (h *Handler) handleLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	arID, txID, purpose := q.Get("id"), q.Get("tx"), q.Get("purpose")
	sess, hasSess := h.sessions.Current(r)
	ops := []store.Op{h.requests.ReadOp(arID)}
	if txID != "" {
		ops = append(ops, h.txs.readOp(txID))
	}
	limit := -1
	if txID == "" && !hasSess {
		// A new transaction is what this browser came for: count it now.
		// With a session the request may need none; it is counted when it
		// does.
		limit = len(ops)
		ops = append(ops, h.web.LimitOp("signin_tx", h.web.RateKey(r), walletRateWindow))
	}
	res, err := h.kv.Do(ctx, ops...)
	if err != nil {
		h.log.ErrorContext(ctx, "login", "error", err)
		h.web.ErrorPage(w, r, h.web.Lang(w, r, nil), http.StatusInternalServerError, "server_error")
		return
	}
	ar, ok := h.pageRequest(w, r, arID, res[0])
	if !ok {
		return
	}
	lang := h.web.Lang(w, r, ar.UILocales)
	var tx *signinTx
	if txID != "" {
		tx, err = h.txs.fromResult(res[1])
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			h.log.ErrorContext(ctx, "load transaction", "error", err)
			h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
			return
		}
		if err != nil || tx.AuthRequestID != ar.ID || !h.txs.ownedBy(tx, txID, authreq.BrowserBinding(h.web, r)) {
			tx = nil
		}
	}

	sessionOK := hasSess && h.satisfies(ctx, ar, sess)
	prompted := ar.HasPrompt(oidc.PromptNone)
	if !prompted && tx == nil && !(txID == "" && purpose == "" && sessionOK && !ar.HasPrompt(oidc.PromptLogin)) {
		// A new transaction: refused over the address's limit before
		// anything is written, the binding included.
		allowed := false
		if limit >= 0 {
			allowed = h.web.Allowed(ctx, "signin_tx", txCreatePerIP, res[limit])
		} else {
			allowed = h.web.Allow(ctx, "signin_tx", h.web.RateKey(r), txCreatePerIP, walletRateWindow)
		}
		if !allowed {
			h.web.ErrorPage(w, r, lang, http.StatusTooManyRequests, "rate_limited")
			return
		}
	}
	binding := authreq.EnsureBinding(h.web, w, r)
	if err := h.requests.BindLoaded(ctx, ar, binding); err != nil {
		switch {
		case errors.Is(err, authreq.ErrBound):
			h.web.ErrorPage(w, r, lang, http.StatusForbidden, "foreign_browser")
		case errors.Is(err, store.ErrNotFound):
			h.web.ErrorPage(w, r, lang, http.StatusBadRequest, "unknown_request")
		default:
			h.log.ErrorContext(ctx, "bind auth request", "error", err)
			h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		}
		return
	}

	if prompted {
		// No UI may be shown: the session answers, or the RP hears
		// login_required. Consent decides consent_required.
		if !sessionOK {
			h.requests.Fail(w, r, ar, oidc.ErrLoginRequired(), h.log)
			return
		}
		h.signedIn(w, r, ar)
		return
	}
	if txID == "" && purpose == "" && sessionOK && !ar.HasPrompt(oidc.PromptLogin) {
		h.signedIn(w, r, ar)
		return
	}
	if tx != nil {
		h.renderLogin(w, r, ar, tx, lang)
		return
	}
	// No transaction named, or one gone (past its grace period) or not
	// this browser's: open a new one.
	if purpose != purposeProofing {
		purpose = purposeSignin
	}
	notice := q.Get("notice")
	if !slices.Contains(loginNotices, notice) {
		notice = ""
	}
	sessionAccount := ""
	if purpose == purposeProofing && hasSess {
		// Signed in: a proofing re-links renewed certificates to this
		// account instead of creating another.
		sessionAccount = sess.AccountID
	}
	tx, err = h.createTx(ctx, ar, binding, purpose, sessionAccount, notice)
	if err != nil {
		h.log.ErrorContext(ctx, "create transaction", "error", err)
		h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	http.Redirect(w, r, authreq.LoginURL(ar.ID, append([]string{"tx", tx.ID}, web.KeepLang(r)...)...), http.StatusSeeOther)
}

// pageRequest is authreq.Repo.LoadForPage from the result of its ReadOp:
// the request a page works on, or the error page when it cannot be used
// (missing or expired, or already completed).
func (h *Handler) pageRequest(w http.ResponseWriter, r *http.Request, id string, res store.Result) (*authreq.AuthRequest, bool) {
	ar, err := h.requests.FromResult(id, res)
	if err != nil {
		lang := h.web.Lang(w, r, nil)
		if errors.Is(err, store.ErrNotFound) {
			h.web.ErrorPage(w, r, lang, http.StatusBadRequest, "unknown_request")
		} else {
			h.log.ErrorContext(r.Context(), "load auth request", "error", err)
			h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		}
		return nil, false
	}
	if ar.Completed {
		h.web.ErrorPage(w, r, h.web.Lang(w, r, ar.UILocales), http.StatusBadRequest, "already_completed")
		return nil, false
	}
	return ar, true
}

// loginView is the login page's data.
type loginView struct {
	RP string
	// SelfService is set when the resident signs in to their own account
	// page: the page names the provider in its own language then.
	SelfService bool
	// RPLogo is the relying party's logo, served from this origin.
	RPLogo         string
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
	Languages []web.LangLink
	// Passkey, when set, offers a passkey sign-in for this request.
	Passkey *passkeyView
	// TTL is how long a transaction lasts, in words of the page
	// language: the page states it, and the expired page repeats it.
	TTL string
	// DemoTools shows the transaction URL, for the demo's phone
	// simulator and the command-line wallet: a developer's aid, shown only
	// in the demo and in development mode, which residents of a real
	// deployment never see.
	DemoTools bool
}

// passkeyView is what the passkey sign-in button needs.
type passkeyView struct {
	Begin, Finish, Request, CSRF string
}

// loginNotices are the notices a redirect may ask the login page to show;
// anything else is ignored.
var loginNotices = []string{authreq.NoticeStaleFacts, authreq.NoticeNoFacts}

// qrLinks are the rotating parts of the page.
type qrLinks struct {
	Image    string `json:"image"`
	TxURL    string `json:"tx_url"`
	AppLink  string `json:"app_link"`
	Fallback string `json:"fallback"`
}

func (h *Handler) qrLinks(tx *signinTx) qrLinks {
	w := qrWindowAt(h.web.Now())
	txu := h.txs.url(tx.ID, w)
	l := qrLinks{
		Image:    "/login/tx/" + url.PathEscape(tx.ID) + "/qr.png?w=" + fmt.Sprint(w),
		TxURL:    txu,
		AppLink:  "watashi://sign?tx=" + url.QueryEscape(txu),
		Fallback: strings.TrimSuffix(h.web.Issuer(), "/") + "/wallet/open?tx=" + url.QueryEscape(txu),
	}
	if h.demoWallet != "" {
		l.AppLink, l.Fallback = h.demoLink(txu), h.demoLink(txu)
	}
	return l
}

// demoLink opens the demo's phone simulator as the app link would open a
// wallet: on this device, so that it returns to the browser when done.
func (h *Handler) demoLink(txURL string) string {
	return h.demoWallet + "?" + url.Values{"tx": {txURL}, "link": {"1"}}.Encode()
}

func (h *Handler) renderLogin(w http.ResponseWriter, r *http.Request, ar *authreq.AuthRequest, tx *signinTx, lang string) {
	state := tx.displayState(h.web.Now())
	if state == txFinished {
		h.signedIn(w, r, ar)
		return
	}
	base := "/login/tx/" + url.PathEscape(tx.ID)
	v := loginView{
		RP:             tx.ClientName,
		SelfService:    tx.ClientID == clients.SelfServiceID,
		RPLogo:         clients.LogoPath(tx.ClientID),
		TTL:            h.duration(h.txTTL, lang),
		DemoTools:      h.demoWallet != "" || h.web.Dev(),
		RPPurpose:      tx.ClientPurpose,
		Purpose:        tx.Purpose,
		Claims:         tx.Claims,
		State:          state,
		Reason:         tx.Reason,
		Code:           tx.Code,
		ExpiresAt:      tx.ExpiresAt.In(web.JST).Format("15:04"),
		RefreshURL:     authreq.LoginURL(ar.ID, append([]string{"tx", tx.ID}, web.KeepLang(r)...)...),
		RefreshSeconds: int(qrWindow / time.Second),
		RotateSeconds:  int(qrWindow / time.Second),
		StatusURL:      base + "/status",
		EventsURL:      base + "/events",
		FinishURL:      finishURL(tx.ID, ar.ID),
		ProofingURL:    authreq.LoginURL(ar.ID, "purpose", purposeProofing),
		RetryURL:       authreq.LoginURL(ar.ID, "purpose", tx.Purpose),
		Notice:         tx.Notice,
		Languages:      web.LangLinks(&url.URL{Path: r.URL.Path, RawQuery: r.URL.RawQuery}, lang),
	}
	v.RefreshAttr = template.HTMLAttr(fmt.Sprintf(`content="%d;url=%s"`, v.RefreshSeconds, html.EscapeString(v.RefreshURL)))
	if tx.Purpose == purposeSignin {
		v.SwitchURL = authreq.LoginURL(ar.ID, "purpose", purposeProofing)
	} else {
		v.SwitchURL = authreq.LoginURL(ar.ID, "purpose", purposeSignin)
	}
	if h.passkeys != nil && state == txPending && tx.Purpose == purposeSignin && !session.NeedsJPKI(ar) {
		v.Passkey = &passkeyView{Begin: h.passkeys.LoginBegin, Finish: h.passkeys.LoginFinish, Request: ar.ID, CSRF: h.web.CSRFToken(w, r)}
	}
	switch state {
	case txPending:
		l := h.qrLinks(tx)
		v.QRImage, v.TxURL = l.Image, l.TxURL
		v.AppLink, v.FallbackLink = template.URL(l.AppLink), template.URL(l.Fallback)
		v.CSRF = h.web.CSRFToken(w, r)
	case txVerified:
		v.CSRF = h.web.CSRFToken(w, r)
	case txExpired:
		v.Reason = codeExpiredTransaction
	}
	h.web.Render(w, r, http.StatusOK, "login.html", lang, v)
}

// finishURL is where the page of transaction txID posts Continue. It
// names the request too, so that the finish reads both in one round
// trip.
func finishURL(txID, arID string) string {
	return "/login/tx/" + url.PathEscape(txID) + "/finish?" + url.Values{"ar": {arID}}.Encode()
}

// duration says d in the page language, in whole minutes or, below a
// minute, seconds.
func (h *Handler) duration(d time.Duration, lang string) string {
	n, key := int(d/time.Minute), "time.minutes"
	switch {
	case d < time.Minute:
		n, key = int(d/time.Second), "time.seconds"
	case n == 1:
		key = "time.minute"
	}
	return fmt.Sprintf(h.web.Message(lang, key), n)
}

// txForBrowser loads the transaction named in the path, for the browser
// that owns it, with the extra operations (their results follow the
// transaction's). They share the transaction's round trip when the ID
// shows the browser owns it; for any other ID the transaction is read
// alone, so that another browser's request writes nothing, and the extra
// operations run only for a record that names this browser. It writes
// the JSON error itself.
func (h *Handler) txForBrowser(w http.ResponseWriter, r *http.Request, extra ...store.Op) (*signinTx, []store.Result, bool) {
	ctx := r.Context()
	id := r.PathValue("id")
	binding := authreq.BrowserBinding(h.web, r)
	ops := []store.Op{h.txs.readOp(id)}
	owned := h.txs.owns(id, binding)
	if owned {
		ops = append(ops, extra...)
	}
	res, err := h.kv.Do(ctx, ops...)
	var tx *signinTx
	if err == nil {
		tx, err = h.txs.fromResult(res[0])
	}
	if err == nil && !owned && len(extra) > 0 && h.txs.ownedBy(tx, id, binding) {
		var more []store.Result
		if more, err = h.kv.Do(ctx, extra...); err == nil {
			res = append(res, more...)
		}
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.walletError(w, txBad(http.StatusNotFound, codeUnknownTransaction, "no such transaction"))
		return nil, nil, false
	case err != nil:
		h.log.ErrorContext(ctx, "load transaction", "error", err)
		h.walletError(w, txBad(http.StatusInternalServerError, codeServerError, "internal error"))
		return nil, nil, false
	case !h.txs.ownedBy(tx, id, binding):
		h.walletError(w, txBad(http.StatusForbidden, "forbidden", "this transaction belongs to another browser"))
		return nil, nil, false
	}
	return tx, res[1:], true
}

// txStatus is the status endpoint's answer.
type txStatus struct {
	State     string   `json:"state"`
	Reason    string   `json:"reason,omitempty"`
	ExpiresAt int64    `json:"expires_at"`
	QR        *qrLinks `json:"qr,omitempty"`
}

func (h *Handler) txStatusOf(tx *signinTx) txStatus {
	st := txStatus{State: tx.displayState(h.web.Now()), Reason: tx.Reason, ExpiresAt: tx.ExpiresAt.Unix()}
	if st.State == txPending {
		l := h.qrLinks(tx)
		st.QR = &l
	}
	if st.State == txExpired {
		st.Reason = codeExpiredTransaction
	}
	return st
}

// handleTxStatus is the page's poll: the transaction and its count of
// polls in one round trip.
func (h *Handler) handleTxStatus(w http.ResponseWriter, r *http.Request) {
	tx, res, ok := h.txForBrowser(w, r, h.countOp(r.PathValue("id"), txPollsField))
	if !ok {
		return
	}
	if !h.web.Allowed(r.Context(), "signin_status", browserStatusPerTx, res[0]) {
		h.walletError(w, txBad(http.StatusTooManyRequests, codeRateLimited, "too many status requests"))
		return
	}
	web.WriteJSON(w, http.StatusOK, h.txStatusOf(tx))
}

// sseKeepAlive keeps proxies from closing an idle event stream.
const sseKeepAlive = 15 * time.Second

// Event streams open at once on one node: per client address (an IPv6
// /64) and in all. A resident's page holds one, two for a moment across
// a reload.
const (
	streamsPerAddress = 8
	streamsPerNode    = 2000
)

// streamLimiter counts the open event streams of one node.
type streamLimiter struct {
	mu     sync.Mutex
	byAddr map[string]int
	total  int
}

func (l *streamLimiter) acquire(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= streamsPerNode || l.byAddr[addr] >= streamsPerAddress {
		return false
	}
	if l.byAddr == nil {
		l.byAddr = make(map[string]int)
	}
	l.byAddr[addr]++
	l.total++
	return true
}

func (l *streamLimiter) release(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
		delete(l.byAddr, addr)
	}
	l.total--
}

// handleTxEvents streams the transaction's state as server-sent events
// ("event: state"). It subscribes before reading the state, so a change
// in between is not lost, and it works across nodes because the change
// is published through the store.
func (h *Handler) handleTxEvents(w http.ResponseWriter, r *http.Request) {
	tx, _, ok := h.txForBrowser(w, r)
	if !ok {
		return
	}
	// Each stream holds a subscription, which is a connection of its
	// own to Redis and memory there, for minutes. The page falls back to
	// polling when refused, so the bound can be tight.
	addr := h.web.RateKey(r)
	if !h.streams.acquire(addr) {
		h.walletError(w, txBad(http.StatusServiceUnavailable, codeRateLimited, "too many event streams; poll the status"))
		return
	}
	defer h.streams.release(addr)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	events, err := h.kv.Subscribe(ctx, txChannel(tx.ID))
	if err != nil {
		h.log.ErrorContext(ctx, "subscribe to transaction", "error", err)
		h.walletError(w, txBad(http.StatusServiceUnavailable, codeServerError, "events unavailable; poll the status"))
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)

	send := func() bool { // reports whether the stream should end
		cur, _, err := h.txs.load(ctx, tx.ID)
		if err != nil {
			return true
		}
		st := h.txStatusOf(cur)
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
func (h *Handler) handleTxQR(w http.ResponseWriter, r *http.Request) {
	tx, _, ok := h.txForBrowser(w, r)
	if !ok {
		return
	}
	if tx.displayState(h.web.Now()) != txPending {
		h.walletError(w, txBad(http.StatusGone, codeExpiredTransaction, "the transaction is no longer pending"))
		return
	}
	win := qrWindowAt(h.web.Now())
	png, err := qrPNGs.png(h.txs.url(tx.ID, win), win)
	if err != nil {
		h.log.ErrorContext(r.Context(), "qr encode", "error", err)
		h.walletError(w, txBad(http.StatusInternalServerError, codeServerError, "internal error"))
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "image/png")
	hdr.Set("Cache-Control", "no-store")
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
// for the browser that owns it. The transaction and its request are one
// round trip; ending the transaction, announcing it and dropping its
// counters another; then the session.
func (h *Handler) handleTxFinish(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	lang := h.web.Lang(w, r, nil)
	if !h.web.CheckCSRF(r) {
		h.web.ErrorPage(w, r, lang, http.StatusForbidden, "csrf")
		return
	}
	id := r.PathValue("id")
	binding := authreq.BrowserBinding(h.web, r)
	// The page names the request (finishURL), read with the transaction
	// of a browser that owns it; the transaction decides which request
	// it is.
	arID := r.URL.Query().Get("ar")
	ops := []store.Op{h.txs.readOp(id)}
	if h.txs.owns(id, binding) {
		ops = append(ops, h.requests.ReadOp(arID))
	}
	res, err := h.kv.Do(ctx, ops...)
	var tx *signinTx
	if err == nil {
		tx, err = h.txs.fromResult(res[0])
	}
	if errors.Is(err, store.ErrNotFound) {
		h.web.ErrorPage(w, r, lang, http.StatusNotFound, "unknown_transaction")
		return
	}
	if err != nil {
		h.log.ErrorContext(ctx, "load transaction", "error", err)
		h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	if !h.txs.ownedBy(tx, id, binding) {
		h.web.ErrorPage(w, r, lang, http.StatusForbidden, "foreign_browser")
		return
	}
	var ar *authreq.AuthRequest
	var ok bool
	if len(res) > 1 && tx.AuthRequestID == arID {
		ar, ok = h.pageRequest(w, r, arID, res[1])
	} else {
		ar, ok = h.requests.LoadForPage(w, r, h.web, tx.AuthRequestID)
	}
	if !ok {
		return
	}
	lang = h.web.Lang(w, r, ar.UILocales)
	switch tx.State {
	case txFinished:
		h.signedIn(w, r, ar)
		return
	case txVerified:
	default:
		h.web.ErrorPage(w, r, lang, http.StatusConflict, "not_verified")
		return
	}
	// What is left is a tombstone for a minute, and the transaction's
	// counters go with the rest.
	won, err := h.txs.change(ctx, res[0].Val, tx.tombstone(), min(h.txs.ttlOf(tx), txSettledTTL),
		store.Delete(txCountersKey(tx.ID)))
	if err != nil {
		h.log.ErrorContext(ctx, "finish transaction", "error", err)
		h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	if !won {
		// A concurrent finish (double click) won; it made the session.
		h.signedIn(w, r, ar)
		return
	}
	if _, err := h.sessions.Begin(ctx, w, tx.Result.authentication(), signedInClient(ar.ClientID)); err != nil {
		h.log.ErrorContext(ctx, "start session", "error", err)
		h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	if h.passkeys != nil && h.passkeys.Offer != nil {
		// "Sign in faster next time": the offer page steps aside by
		// itself when there is nothing to offer.
		http.Redirect(w, r, h.passkeys.Offer(ar.ID), http.StatusSeeOther)
		return
	}
	h.signedIn(w, r, ar)
}

// signedInClient is the relying party a sign-in is for, "" for the
// resident's own account page.
func signedInClient(id string) string {
	if id == clients.SelfServiceID {
		return ""
	}
	return id
}

type signedOutView struct{ Next string }

// logoutView is the sign-out confirmation's data.
type logoutView struct {
	// RP is the name of the relying party that asked, "" if none did.
	RP     string
	Action string
	CSRF   string
	// Logout is the signed sign-out, posted back so that the destination
	// survives the question.
	Logout string
	// Cancel is where "stay signed in" goes: back to the RP, which has
	// signed the resident out on its side, or to the account page.
	Cancel    string
	Languages []web.LangLink
}

// handleLogout is where sign-outs arrive: from the end-session endpoint
// with a signed session.Logout, or from our own pages. Only a sign-out
// the RP proved with an id_token_hint for this very session ends the
// session at once; any other is asked about (RP-Initiated Logout 1.0
// §2), since any site can send a browser here. Without a session there
// is nothing to end, and the browser goes on to the validated
// destination. A destination is only ever one the provider validated and
// signed, so this page is no open redirect.
//
// A browser marks subresource loads (an <img> on another site) with a
// Sec-Fetch-Mode other than "navigate"; those are refused.
func (h *Handler) handleLogout(w http.ResponseWriter, r *http.Request) {
	lang := h.web.Lang(w, r, nil)
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" && mode != "navigate" {
		h.web.ErrorPage(w, r, lang, http.StatusForbidden, "bad_request")
		return
	}
	signed := r.URL.Query().Get("logout")
	l, ok := h.sessions.VerifyLogout(r, signed)
	if !ok {
		signed = "" // forged or expired: a sign-out without destination
	}
	if _, has := h.sessions.Current(r); !has || l.Confirmed {
		h.sessions.End(w, r)
		h.leave(w, r, lang, l.Dest)
		return
	}
	v := logoutView{Action: session.LogoutPath, Logout: signed, Cancel: accountPath, Languages: web.LangLinks(r.URL, lang)}
	if l.Dest != "" {
		v.Cancel = l.Dest
	}
	if l.ClientID != "" {
		if e, err := h.clients.Display(r.Context(), l.ClientID); err == nil {
			v.RP = e.Client.DisplayName
		}
	}
	v.CSRF = h.web.CSRFToken(w, r)
	h.web.Render(w, r, http.StatusOK, "logout.html", lang, v)
}

// accountPath is the resident's account page, where "stay signed in"
// leads when no relying party is waiting.
const accountPath = "/account"

// handleLogoutConfirm is the resident's answer on the confirmation page:
// a POST from our own page (CSRF), which ends the session and goes on to
// the signed destination.
func (h *Handler) handleLogoutConfirm(w http.ResponseWriter, r *http.Request) {
	lang := h.web.Lang(w, r, nil)
	if !h.web.CheckCSRF(r) {
		h.web.ErrorPage(w, r, lang, http.StatusForbidden, "csrf")
		return
	}
	l, _ := h.sessions.VerifyLogout(r, r.PostFormValue("logout"))
	h.sessions.End(w, r)
	h.leave(w, r, lang, l.Dest)
}

// leave ends a sign-out: to the RP's validated destination, or our
// signed-out page.
func (h *Handler) leave(w http.ResponseWriter, r *http.Request, lang, dest string) {
	if dest != "" {
		http.Redirect(w, r, dest, http.StatusSeeOther)
		return
	}
	h.web.Render(w, r, http.StatusOK, "signedout.html", lang, signedOutView{})
}

type openAppView struct {
	AppLink   template.URL
	PhoneURL  string
	Languages []web.LangLink
}

// handleWalletOpen is the https fallback of the app link: with the app
// installed the OS opens it instead (universal / app links); without, the
// resident lands here. Only our own transaction URLs are accepted.
func (h *Handler) handleWalletOpen(w http.ResponseWriter, r *http.Request) {
	lang := h.web.Lang(w, r, nil)
	tx := r.URL.Query().Get("tx")
	prefix := strings.TrimSuffix(h.web.Issuer(), "/") + WalletTxPath
	if !strings.HasPrefix(tx, prefix) || len(tx) > 512 {
		h.web.ErrorPage(w, r, lang, http.StatusBadRequest, "bad_request")
		return
	}
	v := openAppView{AppLink: template.URL("watashi://sign?tx=" + url.QueryEscape(tx)), Languages: web.LangLinks(r.URL, lang)}
	if h.demoWallet != "" {
		v.PhoneURL = h.demoLink(tx)
	}
	h.web.Render(w, r, http.StatusOK, "openapp.html", lang, v)
}
