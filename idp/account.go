package idp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/watashi-id/watashi/consent"
)

// The account page (issue 5): a signed-in resident sees every relying
// party they have connected to, what each received and when, and can
// withdraw it: the grant is deleted and that RP's tokens are revoked.
//
//	GET  /account          the list (or a sign-in link without a session)
//	GET  /account/login    self-service sign-in, bound to no RP
//	POST /account/revoke   CSRF; client_id → delete grant, revoke tokens
//
// Self-service sign-in reuses the whole sign-in machinery (transactions,
// wallet, proofing, SSO session) through an auth request for a built-in
// pseudo client that only this file knows: it cannot be named at
// /authorize (client IDs with ':' are refused at configuration), never
// reaches the provider's callback, and ends at the consent route, which
// sends it back here instead of minting a code.
//
// Stable element IDs for tests and themes: #account-signin (sign-in
// link), #account-rps (the list), li[data-client=ID], and each RP's
// form.revoke[data-client=ID] with button#revoke-<n> (name=action,
// value=revoke), #account-status, a#lang-ja / #lang-en, a#account-logout.

// accountClientID is the pseudo client of self-service sign-in.
const accountClientID = "watashi:account"

// accountClient describes Watashi itself to the login page and the
// wallet, which show who asks for the sign-in.
var accountClient = &Client{
	ID:          accountClientID,
	DisplayName: "Watashi アカウント / Watashi account",
	Purpose:     "アカウントの管理 / Managing your account",
}

// uiClient is the client an auth request's pages show: a configured
// client, or Watashi itself for the account page's sign-in.
func (s *Server) uiClient(ctx context.Context, id string) (*Client, error) {
	if id == accountClientID {
		return accountClient, nil
	}
	return s.client(ctx, id)
}

// accountPagePath is the page; accountLoginPath its sign-in.
const (
	accountPagePath   = "/account"
	accountLoginPath  = "/account/login"
	accountRevokePath = "/account/revoke"
)

func (s *Server) mountAccount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+accountPagePath, s.handleAccount)
	mux.HandleFunc("GET "+accountLoginPath, s.handleAccountLogin)
	mux.HandleFunc("POST "+accountRevokePath, s.handleAccountRevoke)
}

// handleAccountLogin starts a self-service sign-in: an auth request of
// the pseudo client, bound to this browser, handed to the login page.
func (s *Server) handleAccountLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	lang := s.pageLang(w, r, nil)
	if _, ok := s.currentSession(r); ok {
		http.Redirect(w, r, accountURL(lang, ""), http.StatusSeeOther)
		return
	}
	if !s.rateLimit(ctx, "account_login", s.clientIP(r).String(), txCreatePerIP, walletRateWindow) {
		s.errorPage(w, r, lang, http.StatusTooManyRequests, "rate_limited")
		return
	}
	binding := s.ensureBinding(w, r)
	ar := &AuthRequest{
		ID:        newID(),
		ClientID:  accountClientID,
		Scopes:    []string{"openid"},
		UILocales: []string{lang},
		Challenge: "-", // never exchanged: the pseudo client gets no code
		CreatedAt: s.now().UTC(),
		Binding:   binding,
	}
	b, err := json.Marshal(ar)
	if err == nil {
		err = s.kv.Set(ctx, authRequestKey(ar.ID), b, s.opts.AuthRequestTTL)
	}
	if err != nil {
		s.log.ErrorContext(ctx, "account sign-in request", "error", err)
		s.errorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	extra := []string{langParam, lang}
	if r.URL.Query().Get("purpose") == purposeProofing {
		extra = append(extra, "purpose", purposeProofing)
	}
	http.Redirect(w, r, loginURL(ar.ID, extra...), http.StatusSeeOther)
}

// finishAccountLogin ends a self-service sign-in at the consent route
// (the session exists now): the request is spent, the page shows.
func (s *Server) finishAccountLogin(w http.ResponseWriter, r *http.Request, ar *AuthRequest) {
	if err := s.kv.Delete(r.Context(), authRequestKey(ar.ID)); err != nil {
		s.log.WarnContext(r.Context(), "account sign-in request not deleted", "error", err)
	}
	lang := ""
	if len(ar.UILocales) > 0 {
		lang = ar.UILocales[0]
	}
	if l := r.URL.Query().Get(langParam); l != "" {
		lang = l
	}
	http.Redirect(w, r, accountURL(lang, ""), http.StatusSeeOther)
}

func accountURL(lang, revoked string) string {
	q := url.Values{}
	if lang != "" {
		q.Set(langParam, lang)
	}
	if revoked != "" {
		q.Set("revoked", revoked)
	}
	if len(q) == 0 {
		return accountPagePath
	}
	return accountPagePath + "?" + q.Encode()
}

// accountView is the account page's data.
type accountView struct {
	SignedIn  bool
	LoginURL  string
	ProofURL  string
	RPs       []connectedRP
	Revoked   string // display name of the RP just revoked
	CSRF      string
	Action    string
	Languages []langLink
	LogoutURL string
}

// connectedRP is one line of the account page.
type connectedRP struct {
	ClientID     string
	Name         string
	Organization string
	// Claims are what the RP may receive (claim names; the template
	// shows them in the page language).
	Claims []string
	// Narrowed are the answers that shared less than asked ("birthdate"
	// answered with "age_over_20").
	Narrowed  []narrowedView
	Since     string // first connection
	Updated   string // last change
	Remembers bool   // false when the grant is empty (signed in, shared nothing)
}

type narrowedView struct{ Asked, Gave string }

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(jst).Format("2006-01-02 15:04")
}

func (s *Server) handleAccount(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	lang := s.pageLang(w, r, nil)
	v := accountView{
		LoginURL:  accountLoginPath + "?" + url.Values{langParam: {lang}}.Encode(),
		ProofURL:  accountLoginPath + "?" + url.Values{langParam: {lang}, "purpose": {purposeProofing}}.Encode(),
		Languages: langLinks(&url.URL{Path: accountPagePath}, lang),
		LogoutURL: logoutPath,
	}
	sess, ok := s.currentSession(r)
	if !ok {
		s.render(w, r, http.StatusOK, "account.html", lang, v)
		return
	}
	v.SignedIn = true
	grants, err := s.consentStore().List(ctx, sess.AccountID)
	if err != nil {
		s.log.ErrorContext(ctx, "list grants", "error", err)
		s.errorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	for _, g := range grants {
		rp := connectedRP{ClientID: g.Client, Name: g.Client, Claims: g.Claims,
			Since: fmtTime(g.CreatedAt), Updated: fmtTime(g.At), Remembers: len(g.Claims) > 0}
		if rp.Since == "" {
			rp.Since = rp.Updated
		}
		if c, err := s.client(ctx, g.Client); err == nil {
			rp.Name, rp.Organization = c.displayName(), c.Organization
		}
		for _, asked := range consent.Catalogue() {
			if gave := g.Narrowed[asked.Name]; gave != "" {
				rp.Narrowed = append(rp.Narrowed, narrowedView{Asked: asked.Name, Gave: gave})
			}
		}
		v.RPs = append(v.RPs, rp)
	}
	if rv := r.URL.Query().Get("revoked"); rv != "" {
		if c, err := s.client(ctx, rv); err == nil {
			v.Revoked = c.displayName()
		}
	}
	v.CSRF = s.csrfToken(r)
	v.Action = accountRevokePath + "?" + url.Values{langParam: {lang}}.Encode()
	s.render(w, r, http.StatusOK, "account.html", lang, v)
}

// handleAccountRevoke withdraws one RP: its grant goes, then every token
// the account gave it is revoked, so its refresh and access tokens stop
// working at once. Revoking an RP that has no grant still revokes its
// tokens: the resident asked for the RP to be cut off.
func (s *Server) handleAccountRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	lang := s.pageLang(w, r, nil)
	if !s.checkCSRF(r) {
		s.errorPage(w, r, lang, http.StatusForbidden, "csrf")
		return
	}
	sess, ok := s.currentSession(r)
	if !ok {
		http.Redirect(w, r, accountURL(lang, ""), http.StatusSeeOther)
		return
	}
	client := r.PostFormValue("client_id")
	if r.PostFormValue("action") != "revoke" || client == "" || client == accountClientID {
		s.errorPage(w, r, lang, http.StatusBadRequest, "bad_request")
		return
	}
	g, err := s.consentStore().Revoke(ctx, sess.AccountID, client)
	if consent.CodeOf(err) == consent.CodeInvalidKey {
		s.errorPage(w, r, lang, http.StatusBadRequest, "bad_request")
		return
	}
	if err == nil {
		err = s.revokeAccountClientTokens(ctx, sess.AccountID, client)
	}
	if err != nil {
		s.log.ErrorContext(ctx, "revoke consent", "client", client, "error", err)
		s.errorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	s.log.InfoContext(ctx, "consent revoked by the resident", "client", client, "had_grant", g != nil)
	http.Redirect(w, r, accountURL(lang, client), http.StatusSeeOther)
}
