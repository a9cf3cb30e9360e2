package accountpage

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/web"
)

// A resident who lost a phone signs in from another device (the card,
// another phone, a passkey) and removes it here; "sign out everywhere"
// ends every session when they do not know what else was exposed.

const (
	authenticatorsPath = "/account/authenticators"
	everywherePath     = "/account/signout-everywhere"
)

// The page's notices after these actions, by query flag.
const (
	authRemovedParam = "authenticator_removed"
	everywhereParam  = "signed_out_everywhere"
)

// Ender ends sessions and revokes their tokens (session.Manager).
type Ender interface {
	SignOutEverywhere(ctx context.Context, accountID, reason string) error
	EndAuthenticator(ctx context.Context, accountID, authenticator, reason string) error
}

// Publisher appends events to the outbox (events.Outbox).
type Publisher interface {
	Publish(ctx context.Context, e events.Event) error
}

// AuthCerts removes a linked authentication certificate (account.Store).
type AuthCerts interface {
	RemoveAuthCert(ctx context.Context, id, link string) error
}

// jpkiView is one linked JPKI authentication certificate.
type jpkiView struct {
	Link string
	// Label is the message key naming the token: the card, an Android
	// or iOS phone, or unknown.
	Label    string
	Token    string // JPKIAPGPSETOKEN ..., "" when unknown
	LinkedAt string
	Until    string
	// Current: this browser's session signed in with it.
	Current bool
}

// authenticatorsView is the "ways to sign in" section.
type authenticatorsView struct {
	JPKI   []jpkiView
	Action string
	// Last: only one way to sign in is left, and removing it asks for a
	// second confirmation.
	Last bool
	// EverywhereAction signs out everywhere.
	EverywhereAction string
	Notice           string
}

func tokenLabelKey(label string) string {
	switch label {
	case account.TokenCard:
		return "authn.token_card"
	case account.TokenAndroid:
		return "authn.token_android"
	case account.TokenIOS:
		return "authn.token_ios"
	}
	return "authn.token_unknown"
}

// ways counts the authenticators that can sign the resident in.
func ways(a *account.Account) int {
	n := len(a.AuthCerts)
	for _, p := range a.Passkeys {
		if p.Disabled == "" {
			n++
		}
	}
	return n
}

func (h *Handler) authenticatorSection(r *http.Request, a *account.Account, sess *session.Session, lang string) *authenticatorsView {
	v := &authenticatorsView{
		Action:           authenticatorsPath + "?" + url.Values{web.LangParam: {lang}}.Encode(),
		EverywhereAction: everywherePath + "?" + url.Values{web.LangParam: {lang}}.Encode(),
		Last:             ways(a) <= 1,
	}
	for _, c := range a.AuthCerts {
		v.JPKI = append(v.JPKI, jpkiView{Link: c.Link, Label: tokenLabelKey(c.Label), Token: c.Label,
			LinkedAt: h.jst(c.LinkedAt, lang), Until: h.jst(c.NotAfter, lang),
			Current: sess.Authenticator == "jpki:"+c.Link})
	}
	if r.URL.Query().Get(authRemovedParam) != "" {
		v.Notice = authRemovedParam
	}
	return v
}

// maxLinkField bounds the form's link (base64url of a SHA-256).
const maxLinkField = 64

// handleAuthenticators removes one of the session's JPKI authentication
// certificate links. The account is the session's, never the form's: a
// link of another account is simply not found, and changes nothing.
func (h *Handler) handleAuthenticators(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, lang, ok := h.postForm(w, r)
	if !ok {
		return
	}
	link := r.PostFormValue("link")
	if r.PostFormValue("action") != "remove" || link == "" || len(link) > maxLinkField {
		h.web.ErrorPage(w, r, lang, http.StatusBadRequest, "bad_request")
		return
	}
	a, err := h.accounts.Get(ctx, sess.AccountID)
	if err != nil {
		h.log.ErrorContext(ctx, "load account", "error", err)
		h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	ref, ok := a.AuthCert(link)
	if !ok {
		h.web.ErrorPage(w, r, lang, http.StatusBadRequest, "bad_request")
		return
	}
	if ways(a) <= 1 && r.PostFormValue("confirm_last") != "1" {
		h.web.ErrorPage(w, r, lang, http.StatusBadRequest, "last_authenticator")
		return
	}
	err = h.authCerts.RemoveAuthCert(ctx, sess.AccountID, link)
	if errors.Is(err, account.ErrAuthCertNotFound) {
		h.web.ErrorPage(w, r, lang, http.StatusBadRequest, "bad_request")
		return
	}
	if err != nil {
		h.log.ErrorContext(ctx, "remove authentication certificate", "error", err)
		h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	h.removed(ctx, sess.AccountID, "jpki", link, ref.Label)
	h.log.InfoContext(ctx, "authentication certificate removed by the resident", "token", ref.Label)
	h.afterRemoval(w, r, lang, sess, "jpki:"+link, authRemovedParam, "#authenticators")
}

// removed ends what an authenticator just removed had started and tells
// the outbox. The authenticator is gone already: a failure here is
// logged, and "sign out everywhere" remains for the resident.
func (h *Handler) removed(ctx context.Context, accountID, typ, ref, label string) {
	if err := h.ender.EndAuthenticator(ctx, accountID, typ+":"+ref, events.ReasonAuthenticatorRemoved); err != nil {
		h.log.ErrorContext(ctx, "sessions of a removed authenticator not all ended", "error", err)
	}
	if h.events == nil {
		return
	}
	e := events.Event{Kind: events.CredentialChanged, AccountID: accountID,
		Credential: &events.Credential{Type: typ, Change: "delete", Ref: ref, Label: label}}
	if err := h.events.Publish(ctx, e); err != nil {
		h.log.ErrorContext(ctx, "event not published", "kind", string(e.Kind), "error", err)
	}
}

// afterRemoval returns to the page. When the removed authenticator had
// started this very session, the session has ended: the browser's
// cookie goes too, and the page shows the signed-out view.
func (h *Handler) afterRemoval(w http.ResponseWriter, r *http.Request, lang string, sess *session.Session, authenticator, notice, anchor string) {
	if sess.Authenticator == authenticator {
		h.sessions.End(w, r)
		anchor = ""
	}
	http.Redirect(w, r, pagePath+"?"+url.Values{web.LangParam: {lang}, notice: {"1"}}.Encode()+anchor, http.StatusSeeOther)
}

// handleEverywhere ends every session of the account, this one included,
// and revokes every token it holds, once the resident confirmed it.
func (h *Handler) handleEverywhere(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, lang, ok := h.postForm(w, r)
	if !ok {
		return
	}
	if r.PostFormValue("confirm") != "1" {
		h.web.ErrorPage(w, r, lang, http.StatusBadRequest, "bad_request")
		return
	}
	err := h.ender.SignOutEverywhere(ctx, sess.AccountID, events.ReasonEverywhere)
	if err == nil {
		err = h.revokeConsented(ctx, sess.AccountID)
	}
	if err != nil {
		h.log.ErrorContext(ctx, "sign out everywhere", "error", err)
		h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	h.sessions.End(w, r)
	http.Redirect(w, r, pagePath+"?"+url.Values{web.LangParam: {lang}, everywhereParam: {"1"}}.Encode(), http.StatusSeeOther)
}

// revokeConsented also revokes, RP by RP, the tokens of every relying
// party the resident consented to: that reaches token families the
// session index does not list (minted before it existed).
func (h *Handler) revokeConsented(ctx context.Context, accountID string) error {
	grants, err := h.grants.List(ctx, accountID)
	if err != nil {
		return err
	}
	for _, g := range grants {
		if err := h.tokens.RevokeAccountClient(ctx, accountID, g.Client); err != nil {
			return err
		}
	}
	return nil
}

// passkeyRemoved is what removing a passkey sets off, as for a card.
func (h *Handler) passkeyRemoved(ctx context.Context, accountID string, cred []byte) string {
	ref := base64.RawURLEncoding.EncodeToString(cred)
	h.removed(ctx, accountID, "passkey", ref, "")
	return "passkey:" + ref
}
