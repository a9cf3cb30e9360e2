package accountpage

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/web"
)

// The page's paths.
const (
	pagePath   = "/account"
	loginPath  = "/account/login"
	revokePath = "/account/revoke"
)

// Rate limit of self-service sign-ins per client address: each opens an
// auth request in the store.
const (
	loginPerIP  = 30
	loginWindow = time.Minute
)

// handleAccountLogin starts a self-service sign-in: an auth request of
// the pseudo client, bound to this browser, handed to the login page.
func (h *Handler) handleAccountLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	lang := h.web.Lang(w, r, nil)
	// reauth: signed in, but adding a passkey needs a fresh JPKI sign-in.
	reauth := h.passkeys != nil && r.URL.Query().Get("reauth") != ""
	if _, ok := h.sessions.Current(r); ok && !reauth {
		http.Redirect(w, r, accountURL(lang, ""), http.StatusSeeOther)
		return
	}
	if !h.web.Allow(ctx, "account_login", h.web.RateKey(r), loginPerIP, loginWindow) {
		h.web.ErrorPage(w, r, lang, http.StatusTooManyRequests, "rate_limited")
		return
	}
	ar := &authreq.AuthRequest{
		ClientID:  clients.SelfServiceID,
		Scopes:    []string{"openid"},
		UILocales: []string{lang},
		Challenge: "-", // never exchanged: a resident's own sign-in gets no code
		Return:    pagePath,
		Binding:   authreq.EnsureBinding(h.web, w, r),
	}
	if reauth {
		// Only the JPKI certificate proves who adds a passkey.
		ar.Prompt, ar.ACRValues = []string{"login"}, []string{session.ACRJPKI}
	}
	if err := h.requests.Create(ctx, ar); err != nil {
		h.log.ErrorContext(ctx, "account sign-in request", "error", err)
		h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	extra := []string{web.LangParam, lang}
	if r.URL.Query().Get("purpose") == authreq.PurposeProofing {
		extra = append(extra, "purpose", authreq.PurposeProofing)
	}
	http.Redirect(w, r, authreq.LoginURL(ar.ID, extra...), http.StatusSeeOther)
}

func accountURL(lang, revoked string) string {
	q := url.Values{}
	if lang != "" {
		q.Set(web.LangParam, lang)
	}
	if revoked != "" {
		q.Set("revoked", revoked)
	}
	if len(q) == 0 {
		return pagePath
	}
	return pagePath + "?" + q.Encode()
}

// accountView is the account page's data.
type accountView struct {
	SignedIn bool
	LoginURL string
	ProofURL string
	// Name is the signed-in resident's name from their verified facts,
	// "" when the account has none; Initial is its first character, for
	// the avatar.
	Name, Initial string
	// ProofedAt is when the facts were verified.
	ProofedAt string
	RPs       []connectedRP
	Revoked   string // display name of the RP just revoked
	CSRF      string
	Action    string
	Languages []web.LangLink
	LogoutURL string
	// Passkeys is the passkey section; nil when passkeys are off.
	Passkeys *passkeysView
	// Authenticators lists the linked cards and phones and offers to
	// sign out everywhere.
	Authenticators *authenticatorsView
	// SignedOutEverywhere: the resident just did.
	SignedOutEverywhere bool
	// Notices is the notification mail section; nil when it is off.
	Notices *noticesView
}

// connectedRP is one line of the account page.
type connectedRP struct {
	ClientID     string
	Name         string
	Organization string
	Logo         string
	// Claims are what the RP may receive (claim names; the template
	// shows them in the page language), a whole standing for the parts
	// it contains.
	Claims []string
	// Narrowed are the answers that shared less than asked ("birthdate"
	// answered with "age_over_20").
	Narrowed  []narrowedView
	Since     string // first connection
	Updated   string // last change
	Remembers bool   // false when the grant is empty (signed in, shared nothing)
}

type narrowedView struct{ Asked, Gave string }

// wholes drops the parts of a claim that is listed itself: the name
// stands for the family and the given name it contains.
func wholes(claims []string) []string {
	var out []string
	for _, c := range claims {
		if info, ok := consent.Lookup(c); ok && info.PartOf != "" && slices.Contains(claims, info.PartOf) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// jst is a time as the pages show it, with its time zone named in the
// page language.
func (h *Handler) jst(t time.Time, lang string) string {
	s := web.FormatTime(t)
	if s == "" {
		return ""
	}
	return fmt.Sprintf(h.web.Message(lang, "time.jst"), s)
}

func (h *Handler) handleAccount(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	lang := h.web.Lang(w, r, nil)
	v := accountView{
		LoginURL:  loginPath + "?" + url.Values{web.LangParam: {lang}}.Encode(),
		ProofURL:  loginPath + "?" + url.Values{web.LangParam: {lang}, "purpose": {authreq.PurposeProofing}}.Encode(),
		Languages: web.LangLinks(&url.URL{Path: pagePath}, lang),
		LogoutURL: session.LogoutPath,
	}
	v.SignedOutEverywhere = r.URL.Query().Get(everywhereParam) != ""
	sess, ok := h.sessions.Current(r)
	if !ok {
		h.web.Render(w, r, http.StatusOK, "account.html", lang, v)
		return
	}
	v.SignedIn = true
	a, err := h.accounts.Get(ctx, sess.AccountID)
	if err != nil {
		h.log.ErrorContext(ctx, "load account", "error", err)
		h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	if a.Facts != nil && a.Facts.Name != "" {
		v.Name = a.Facts.Name
		first, _ := utf8.DecodeRuneInString(a.Facts.Name)
		v.Initial = string(first)
	}
	if a.FactsSource != nil {
		v.ProofedAt = h.jst(a.FactsSource.VerifiedAt, lang)
	}
	grants, err := h.grants.List(ctx, sess.AccountID)
	if err != nil {
		h.log.ErrorContext(ctx, "list grants", "error", err)
		h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	for _, g := range grants {
		rp := connectedRP{ClientID: g.Client, Name: g.Client, Claims: wholes(g.Claims), Logo: clients.LogoPath(g.Client),
			Since: h.jst(g.CreatedAt, lang), Updated: h.jst(g.At, lang), Remembers: len(g.Claims) > 0}
		if rp.Since == "" {
			rp.Since = rp.Updated
		}
		if c, err := h.clients.Get(ctx, g.Client); err == nil {
			rp.Name, rp.Organization = c.Name(), c.Organization
		}
		for _, asked := range consent.Catalogue() {
			if gave := g.Narrowed[asked.Name]; gave != "" {
				rp.Narrowed = append(rp.Narrowed, narrowedView{Asked: asked.Name, Gave: gave})
			}
		}
		v.RPs = append(v.RPs, rp)
	}
	if rv := r.URL.Query().Get("revoked"); rv != "" {
		if c, err := h.clients.Get(ctx, rv); err == nil {
			v.Revoked = c.Name()
		}
	}
	if h.passkeys != nil {
		v.Passkeys = h.passkeySection(r, a, sess, lang)
	}
	v.Authenticators = h.authenticatorSection(r, a, sess, lang)
	if h.notices != nil {
		v.Notices = h.noticesSection(ctx, r, sess.AccountID, lang)
	}
	v.CSRF = h.web.CSRFToken(w, r)
	v.Action = revokePath + "?" + url.Values{web.LangParam: {lang}}.Encode()
	h.web.Render(w, r, http.StatusOK, "account.html", lang, v)
}

// handleAccountRevoke withdraws one RP: its grant goes, then every token
// the account gave it is revoked, so its refresh and access tokens stop
// working at once. Revoking an RP that has no grant still revokes its
// tokens: the resident asked for the RP to be cut off.
func (h *Handler) handleAccountRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, lang, ok := h.postForm(w, r)
	if !ok {
		return
	}
	client := r.PostFormValue("client_id")
	if r.PostFormValue("action") != "revoke" || client == "" || client == clients.SelfServiceID {
		h.web.ErrorPage(w, r, lang, http.StatusBadRequest, "bad_request")
		return
	}
	g, err := h.grants.Revoke(ctx, sess.AccountID, client)
	if consent.CodeOf(err) == consent.CodeInvalidKey {
		h.web.ErrorPage(w, r, lang, http.StatusBadRequest, "bad_request")
		return
	}
	if err == nil {
		err = h.tokens.RevokeAccountClient(ctx, sess.AccountID, client)
	}
	if err != nil {
		h.log.ErrorContext(ctx, "revoke consent", "client", client, "error", err)
		h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	h.log.InfoContext(ctx, "consent revoked by the resident", "client", client, "had_grant", g != nil)
	http.Redirect(w, r, accountURL(lang, client), http.StatusSeeOther)
}
