package accountpage

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/web"
)

// passkeysPath renames and removes passkeys (adding one is the passkey
// package's ceremony).
const passkeysPath = "/account/passkeys"

// The account page's passkey notices, by query flag.
const (
	addedParam   = "passkey_added" // package passkey sends the browser back with it
	removedParam = "passkey_removed"
	renamedParam = "passkey_renamed"
)

// passkeysView is the passkey section of the account page.
type passkeysView struct {
	List []passkeyView
	// CanAdd: the session's JPKI sign-in is recent enough to add one.
	CanAdd bool
	// ProveURL signs in with the card again, to add one.
	ProveURL      string
	Begin, Finish string
	Action        string
	Full          bool   // the account has the most passkeys it may
	Notice        string // added, removed, renamed
	// Disabled is set when some passkey was disabled for safety.
	Disabled bool
}

// passkeyView is one passkey of the list.
type passkeyView struct {
	ID         string // credential ID, base64url
	Name       string
	Created    string
	LastUsed   string
	Synced     bool
	Disabled   string // reason: counter, backup_flags
	DisabledAt string
}

func (h *Handler) passkeySection(r *http.Request, a *account.Account, sess *session.Session, lang string) *passkeysView {
	o := h.passkeys
	v := &passkeysView{
		CanAdd:   sess.JPKIRecent(h.web.Now(), o.RecentProofing),
		ProveURL: loginPath + "?" + url.Values{web.LangParam: {lang}, "reauth": {"1"}}.Encode(),
		Begin:    o.Begin, Finish: o.Finish,
		Action: passkeysPath + "?" + url.Values{web.LangParam: {lang}}.Encode(),
		Full:   len(a.Passkeys) >= account.MaxPasskeys,
	}
	for _, p := range a.Passkeys {
		pv := passkeyView{ID: base64.RawURLEncoding.EncodeToString(p.ID), Name: p.Name, Created: h.jst(p.CreatedAt, lang),
			LastUsed: h.jst(p.LastUsedAt, lang), Synced: p.Synced(), Disabled: p.Disabled, DisabledAt: h.jst(p.DisabledAt, lang)}
		if p.Disabled != "" {
			v.Disabled = true
		}
		v.List = append(v.List, pv)
	}
	q := r.URL.Query()
	for _, n := range []string{addedParam, removedParam, renamedParam} {
		if q.Get(n) != "" {
			v.Notice = n
		}
	}
	return v
}

// maxCredentialIDField bounds the form's credential ID (1023 bytes as
// base64url).
const maxCredentialIDField = 1364

// handlePasskeys renames or removes one of the session's passkeys. A
// passkey of another account is simply not found: the account is the
// session's, never the form's.
func (h *Handler) handlePasskeys(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, lang, ok := h.postForm(w, r)
	if !ok {
		return
	}
	field := r.PostFormValue("passkey")
	cred, err := base64.RawURLEncoding.Strict().DecodeString(field)
	action := r.PostFormValue("action")
	if err != nil || len(cred) == 0 || len(field) > maxCredentialIDField || !slices.Contains([]string{"rename", "remove"}, action) {
		h.web.ErrorPage(w, r, lang, http.StatusBadRequest, "bad_request")
		return
	}
	notice := removedParam
	if action == "rename" {
		notice = renamedParam
		err = h.passkeys.Store.RenamePasskey(ctx, sess.AccountID, cred, r.PostFormValue("name"))
	} else {
		var a *account.Account
		if a, err = h.passkeys.Store.Get(ctx, sess.AccountID); err == nil {
			p, ok := a.Passkey(cred)
			switch {
			case !ok:
				err = account.ErrPasskeyNotFound
			case p.Disabled == "" && ways(a) <= 1 && r.PostFormValue("confirm_last") != "1":
				h.web.ErrorPage(w, r, lang, http.StatusBadRequest, "last_authenticator")
				return
			default:
				err = h.passkeys.Store.RemovePasskey(ctx, sess.AccountID, cred)
			}
		}
	}
	switch {
	case errors.Is(err, account.ErrPasskeyNotFound), errors.Is(err, account.ErrPasskeyInvalid):
		h.web.ErrorPage(w, r, lang, http.StatusBadRequest, "bad_request")
		return
	case err != nil:
		h.log.ErrorContext(ctx, "passkey "+action, "error", err)
		h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return
	}
	h.log.InfoContext(ctx, "passkey changed by the resident", "action", action)
	if action == "remove" {
		h.afterRemoval(w, r, lang, sess, h.passkeyRemoved(ctx, sess.AccountID, cred), notice, "#passkeys")
		return
	}
	http.Redirect(w, r, pagePath+"?"+url.Values{web.LangParam: {lang}, notice: {"1"}}.Encode()+"#passkeys", http.StatusSeeOther)
}
