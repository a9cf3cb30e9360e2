package passkey

import (
	"net/http"
	"net/url"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/web"
)

// OfferURL is the offer shown after a JPKI sign-in for request id.
func OfferURL(id string) string { return OfferPath + "?" + url.Values{"id": {id}}.Encode() }

// offerView is the offer page's data.
type offerView struct {
	Request   string
	CSRF      string
	SkipURL   string
	Begin     string
	Finish    string
	Languages []web.LangLink
}

// handleOffer is shown right after a JPKI sign-in: "sign in faster next
// time". It steps aside (straight on to where the sign-in leads) when the
// resident says not now, already has a passkey, or the session cannot
// add one. Declining needs no script: it is a link.
func (h *Handler) handleOffer(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	ar, ok := h.requests.LoadForPage(w, r, h.web, q.Get("id"))
	if !ok {
		return
	}
	lang := h.web.Lang(w, r, ar.UILocales)
	if !ar.BoundTo(authreq.BrowserBinding(h.web, r)) {
		h.web.ErrorPage(w, r, lang, http.StatusForbidden, "foreign_browser")
		return
	}
	sess, ok := h.sessions.Current(r)
	offer := ok && q.Get("skip") == "" && sess.JPKIRecent(h.web.Now(), h.recent)
	if offer {
		acct, err := h.accounts.Get(ctx, sess.AccountID)
		if err != nil {
			h.log.WarnContext(ctx, "passkey offer: account not read", "error", err)
			offer = false
		} else {
			for _, p := range acct.Passkeys {
				if p.Disabled == "" {
					offer = false // already has one
				}
			}
		}
	}
	if !offer {
		http.Redirect(w, r, h.afterSignIn(ctx, ar), http.StatusSeeOther)
		return
	}
	v := offerView{
		Request:   ar.ID,
		CSRF:      h.web.CSRFToken(w, r),
		SkipURL:   OfferPath + "?" + url.Values{"id": {ar.ID}, "skip": {"1"}}.Encode(),
		Begin:     registerBegin,
		Finish:    registerFinish,
		Languages: web.LangLinks(&url.URL{Path: r.URL.Path, RawQuery: r.URL.RawQuery}, lang),
	}
	h.web.Render(w, r, http.StatusOK, "passkey_offer.html", lang, v)
}
