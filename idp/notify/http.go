package notify

import (
	"context"
	"errors"
	"html/template"
	"net/http"
)

// SignOut ends every session of an account and revokes its tokens
// (the session index's SignOutEverywhere).
type SignOut interface {
	SignOutEverywhere(ctx context.Context, accountID, reason string) error
}

// ReasonNotMe is the reason a "this wasn't me" link signs out with.
const ReasonNotMe = "sign_out_everywhere"

// Handler serves the two links of the mails. Each opens a page with one
// button: mail scanners follow links, and a GET must neither confirm an
// address nor sign anyone out.
type Handler struct {
	n       *Notifier
	signOut SignOut
	// AccountURL is where a resident goes to remove the authenticator.
	AccountURL string
}

// NewHandler needs the notifier and the session index.
func NewHandler(n *Notifier, s SignOut, accountURL string) (*Handler, error) {
	if n == nil || s == nil {
		return nil, errors.New("notify: handler needs the notifier and the sign-out")
	}
	return &Handler{n: n, signOut: s, AccountURL: accountURL}, nil
}

// Mount registers the routes.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+ConfirmPath, h.confirmPage)
	mux.HandleFunc("POST "+ConfirmPath, h.confirm)
	mux.HandleFunc("GET "+NotMePath, h.notMePage)
	mux.HandleFunc("POST "+NotMePath, h.notMe)
}

var page = template.Must(template.New("notify").Parse(`<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>Watashi</title>
<link rel="icon" href="/favicon.ico" sizes="any">
<link rel="stylesheet" href="/static/watashi.css"></head>
<body>
<header class="site"><div class="bar"><p class="brand"><img src="/static/logo.svg" alt="" width="28" height="28"><span>Watashi</span></p></div></header>
<main id="main"><div class="card">
<h1>{{.TitleJA}} <span lang="en">/ {{.TitleEN}}</span></h1>
<p>{{.JA}}</p><p lang="en">{{.EN}}</p>
{{if .Token}}<form method="post" action="{{.Action}}"><input type="hidden" name="t" value="{{.Token}}">
<button type="submit" class="button">{{.ButtonJA}} / {{.ButtonEN}}</button></form>{{end}}
{{if .Link}}<p><a class="button" href="{{.Link}}">アカウントのページへ / Go to your account</a></p>{{end}}
</div></main></body></html>
`))

type view struct {
	TitleJA, TitleEN, JA, EN, ButtonJA, ButtonEN string
	Action, Token, Link                          string
}

func (h *Handler) render(w http.ResponseWriter, status int, v view) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_ = page.Execute(w, v)
}

var badLink = view{TitleJA: "リンクが無効です", TitleEN: "This link does not work",
	JA: "このリンクは使用済みか、期限切れか、正しくありません。", EN: "This link has been used, has expired or is not complete."}

// token reads the t parameter, bounded; a longer one is no token of ours.
func token(r *http.Request) string {
	t := r.FormValue("t")
	if len(t) > 512 {
		return ""
	}
	return t
}

func (h *Handler) confirmPage(w http.ResponseWriter, r *http.Request) {
	t := token(r)
	if len(t) != 43 {
		h.render(w, http.StatusBadRequest, badLink)
		return
	}
	h.render(w, http.StatusOK, view{TitleJA: "メールアドレスの確認", TitleEN: "Confirm your address",
		JA: "このアドレスでサインインの通知を受け取ります。", EN: "Sign-in notices will be sent to this address.",
		ButtonJA: "確認する", ButtonEN: "Confirm", Action: ConfirmPath, Token: t})
}

func (h *Handler) confirm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	_, err := h.n.o.Subs.Confirm(r.Context(), token(r))
	switch {
	case errors.Is(err, ErrToken):
		h.render(w, http.StatusBadRequest, badLink)
	case err != nil:
		h.n.log.ErrorContext(r.Context(), "notify: confirmation failed", "error", err)
		h.render(w, http.StatusServiceUnavailable, view{TitleJA: "しばらくしてからお試しください", TitleEN: "Please try again shortly",
			JA: "ただいま確認できません。リンクはまだ有効です。", EN: "We cannot confirm now. The link still works."})
	default:
		h.render(w, http.StatusOK, view{TitleJA: "確認しました", TitleEN: "Address confirmed",
			JA: "サインインのたびに、このアドレスにお知らせします。", EN: "You will be told at this address each time you sign in.", Link: h.AccountURL})
	}
}

func (h *Handler) notMePage(w http.ResponseWriter, r *http.Request) {
	t := token(r)
	c, err := h.n.checkNotMe(t)
	if err == nil {
		if _, gerr := h.n.o.Store.Get(r.Context(), usedKey(c.Nonce)); gerr == nil {
			err = ErrToken
		}
	}
	if err != nil {
		h.render(w, http.StatusBadRequest, badLink)
		return
	}
	h.render(w, http.StatusOK, view{TitleJA: "身に覚えのないサインイン", TitleEN: "This wasn't me",
		JA:       "すべての端末とサービスからサインアウトします。そのあとサインインし直して、アカウントのページで使われた認証手段を削除してください。",
		EN:       "This signs you out on every device and service. Then sign in again and remove the authenticator that was used on your account page.",
		ButtonJA: "すべてサインアウト", ButtonEN: "Sign out everywhere", Action: NotMePath, Token: t})
}

func (h *Handler) notMe(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	ctx := r.Context()
	t := token(r)
	// Spent before the sign-out, on every node at once; given back if
	// the sign-out fails, so that the resident can try again.
	c, err := h.n.spendNotMe(ctx, t)
	if errors.Is(err, ErrToken) {
		h.render(w, http.StatusBadRequest, badLink)
		return
	}
	if err == nil {
		if err = h.signOut.SignOutEverywhere(ctx, c.Account, ReasonNotMe); err != nil {
			_ = h.n.o.Store.Delete(context.WithoutCancel(ctx), usedKey(c.Nonce))
		}
	}
	if err != nil {
		h.n.log.ErrorContext(ctx, "notify: sign out everywhere failed", "error", err)
		h.render(w, http.StatusServiceUnavailable, view{TitleJA: "しばらくしてからお試しください", TitleEN: "Please try again shortly",
			JA: "ただいまサインアウトできません。リンクはまだ有効です。", EN: "We cannot sign you out now. The link still works."})
		return
	}
	http.Redirect(w, r, h.AccountURL, http.StatusSeeOther)
}
