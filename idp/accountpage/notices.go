package accountpage

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/watashi-id/watashi/idp/web"
)

// Notices is the notification mail as the account page offers it
// (notify.Notifier): an address to confirm, the confirmed one, opting
// out. A refusal the resident can fix says which by its NoticeCode
// (noticeCoder): bad_address or too_many.
type Notices interface {
	RequestConfirmation(ctx context.Context, accountID, address string) error
	Subscription(ctx context.Context, accountID string) (address string, ok bool, err error)
	Cancel(ctx context.Context, accountID string) error
}

// noticeCoder is a refusal of the notification service that the
// resident can fix, by name.
type noticeCoder interface{ NoticeCode() string }

const (
	noticesPath  = "/account/notices"
	noticesParam = "notices"
)

// noticesView is the notification mail section.
type noticesView struct {
	Action  string
	Address string // the confirmed address, "" when none
	// Notice is what just happened: sent (a confirmation mail is on its
	// way), stopped, or the error bad_address, too_many, unavailable.
	Notice string
}

func (h *Handler) noticesSection(ctx context.Context, r *http.Request, accountID, lang string) *noticesView {
	v := &noticesView{Action: noticesPath + "?" + url.Values{web.LangParam: {lang}}.Encode()}
	switch n := r.URL.Query().Get(noticesParam); n {
	case "sent", "stopped", "bad_address", "too_many", "unavailable":
		v.Notice = n
	}
	addr, ok, err := h.notices.Subscription(ctx, accountID)
	if err != nil {
		h.log.WarnContext(ctx, "notification subscription unreadable", "error", err)
	}
	if ok {
		v.Address = addr
	}
	return v
}

// handleNotices opts in (a confirmation mail to the address given) or
// out. The address counts only once its owner opened the link.
func (h *Handler) handleNotices(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, lang, ok := h.postForm(w, r)
	if !ok {
		return
	}
	notice := "sent"
	switch r.PostFormValue("action") {
	case "subscribe":
		err := h.notices.RequestConfirmation(ctx, sess.AccountID, r.PostFormValue("address"))
		var refused noticeCoder
		switch {
		case errors.As(err, &refused) && (refused.NoticeCode() == "bad_address" || refused.NoticeCode() == "too_many"):
			notice = refused.NoticeCode()
		case err != nil:
			h.log.ErrorContext(ctx, "notification confirmation not queued", "error", err)
			notice = "unavailable"
		}
	case "stop":
		if err := h.notices.Cancel(ctx, sess.AccountID); err != nil {
			h.log.ErrorContext(ctx, "notification not stopped", "error", err)
			notice = "unavailable"
		} else {
			notice = "stopped"
		}
	default:
		h.web.ErrorPage(w, r, lang, http.StatusBadRequest, "bad_request")
		return
	}
	http.Redirect(w, r, pagePath+"?"+url.Values{web.LangParam: {lang}, noticesParam: {notice}}.Encode()+"#notices", http.StatusSeeOther)
}
