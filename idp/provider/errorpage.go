package provider

import (
	"html/template"
	"net/http"
	"strconv"

	"github.com/watashi-id/watashi/idp/web"
)

// Protocol errors that must not be redirected to the RP: the client or
// the redirect URI cannot be trusted with the answer.
var errorMessages = map[string][2]string{ // code -> {ja, en}
	"bad_request":        {"リクエストが正しくありません。", "The request is not valid."},
	"unknown_client":     {"このサービスは登録されていません。", "This service is not registered with us."},
	"client_not_allowed": {"このサービスは現在、このサインインを利用できません。サービスの提供者にお問い合わせください。", "This service is not currently allowed to use this sign-in. Please contact the service provider."},
	"client_blocked": {"安全のため、このサービスへのサインインは Watashi の運営者が停止しています。サービスの提供者にお問い合わせください。",
		"For your protection, Watashi's operator has stopped sign-ins to this service. Please contact the service provider."},
	"invalid_redirect_uri": {"このサービスの戻り先が登録と一致しません。", "This service's return address does not match its registration."},
	"unknown_request":      {"サインイン要求が見つからないか、期限切れです。利用中のサービスからやり直してください。", "The sign-in request was not found or has expired. Please start again from the service you were using."},
	"request_too_large":    {"リクエストが大きすぎます。利用中のサービスの提供者にお問い合わせください。", "The request is too large. Please contact the service provider."},
	"rate_limited":         {"短時間に多くのリクエストがありました。しばらくしてからやり直してください。", "Too many requests in a short time. Please wait a minute and try again."},
	"foreign_browser":      {"このサインインは別のブラウザで開始されました。そちらで続けるか、サービスからやり直してください。", "This sign-in was started in another browser. Continue there, or start again from the service."},
	"temporarily_unavailable": {"ただいま一時的にご利用いただけません。しばらくしてから、もう一度お試しください。",
		"The service is temporarily unavailable. Please try again in a moment."},
}

// errorPage is bilingual: the request that failed may not say which
// language the resident reads. It wears the pages' frame (stylesheet,
// logo) but needs nothing else from them.
var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>エラー / Error - Watashi</title>
<link rel="icon" href="/favicon.ico" sizes="any">
<link rel="stylesheet" href="/static/watashi.css"></head>
<body>
<header class="site"><div class="bar"><p class="brand"><img src="/static/logo.svg" alt="" width="28" height="28"><span>Watashi</span></p></div></header>
<main id="main"><div class="card" id="error-card">
<h1>問題が発生しました <span lang="en">/ Something went wrong</span></h1>
<div class="error" role="alert"><p>{{.JA}}</p>
<p lang="en">{{.EN}}</p></div>
{{if .RequestID}}<p class="small">参照番号 <span lang="en">/ Reference</span>: <code>{{.RequestID}}</code></p>{{end}}
</div></main></body></html>
`))

// unavailablePage says that the provider cannot answer now, as a 503
// with Retry-After: it knows nothing of the client or request (its store
// is down), so it may neither refuse it nor redirect.
func (s *Server) unavailablePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	s.errorPage(w, r, http.StatusServiceUnavailable, "temporarily_unavailable")
}

// errorPage shows a protocol error that must not be redirected to the RP.
// It never has a Location header.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, code string) {
	msg, ok := errorMessages[code]
	if !ok {
		msg = errorMessages["bad_request"]
	}
	h := w.Header()
	h.Del("Location")
	h.Set("Content-Type", "text/html; charset=utf-8")
	web.NoStore(h)
	w.WriteHeader(status)
	id := web.RequestID(r.Context())
	if !web.ValidRequestID(id) {
		id = ""
	}
	_ = errorPage.Execute(w, struct{ JA, EN, RequestID string }{msg[0], msg[1], id})
	s.log.InfoContext(r.Context(), "authorization error page", "code", code, "status", status)
}
