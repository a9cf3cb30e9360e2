package consentflow

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/internal/logref"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
)

// consentState is what both consent handlers work from.
type consentState struct {
	ar       *authreq.AuthRequest
	sess     *session.Session
	lang     string
	client   *clients.Client
	approved bool // the "verified relying party" badge
	req      consent.Requested
	existing *consent.Grant
	// account holds the results of Accounts.ReadOps for the session's
	// account, read with the grant; nil when nothing is requested, as no
	// facts can then matter.
	account []store.Result
}

// promptConsent reports prompt=consent: ask about everything again.
func (st *consentState) promptConsent() bool { return st.ar.HasPrompt(oidc.PromptConsent) }

// loadConsentState runs consentContext and loads the client, the request
// under its policy and the remembered grant, with the account in the
// same round trip. It writes the answer itself when it returns false.
func (h *Handler) loadConsentState(w http.ResponseWriter, r *http.Request) (*consentState, bool) {
	ar, sess, lang, pre, ok := h.consentContext(w, r)
	if !ok {
		return nil, false
	}
	ctx := r.Context()
	e, err := h.clients.Lookup(ctx, ar.ClientID)
	if err != nil {
		h.log.ErrorContext(ctx, "consent client", "error", err)
		h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return nil, false
	}
	c := e.Client
	st := &consentState{ar: ar, sess: sess, lang: lang, client: c, approved: e.Approved(), req: ar.Requested}
	if len(st.req.Dropped) > 0 {
		// Names only: which claims the client's registration does not cover.
		var names []string
		for _, d := range st.req.Dropped {
			names = append(names, d.Claim)
		}
		h.log.InfoContext(ctx, "requested claims not allowed for the client were left out", "client", c.ID, "claims", names)
	}
	// The grant and the account in one round trip, unless the cookie's
	// hint had them read with the session: the grant decides, and with
	// anything requested the account's facts are read next.
	var res []store.Result
	if pre.account == sess.AccountID && pre.client == c.ID && pre.res != nil {
		res = pre.res
		if st.req.Empty() {
			res = res[:1]
		}
	} else {
		ops := []store.Op{store.Get(consent.GrantKey(sess.AccountID, c.ID))}
		if !st.req.Empty() {
			ops = append(ops, h.accounts.ReadOps(sess.AccountID)...)
		}
		res, err = h.kv.Do(ctx, ops...)
	}
	if err == nil {
		st.existing, err = h.grants.FromRecord(sess.AccountID, c.ID, res[0].Val, res[0].Err)
	}
	if err != nil {
		h.log.ErrorContext(ctx, "load consent", "error", err)
		h.web.ErrorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return nil, false
	}
	if len(res) > 1 {
		st.account = res[1:]
	}
	return st, true
}

// prefetch is the grant and the account read with the session, for the
// account and client the session cookie's hint names
// (session.Manager.Hint): the grant's result, then the account's.
type prefetch struct {
	account, client string
	res             []store.Result
}

// consentContext loads what both consent handlers need and answers the
// cases where no consent page is due.
func (h *Handler) consentContext(w http.ResponseWriter, r *http.Request) (*authreq.AuthRequest, *session.Session, string, prefetch, bool) {
	ar, sess, signedIn, pre, ok := h.loadRequest(w, r)
	if !ok {
		return nil, nil, "", prefetch{}, false
	}
	lang := h.web.Lang(w, r, ar.UILocales)
	if ar.Return != "" {
		// A resident's own sign-in has nothing to consent to; the login
		// page sends it back where it came from.
		http.Redirect(w, r, authreq.LoginURL(ar.ID), http.StatusSeeOther)
		return nil, nil, "", prefetch{}, false
	}
	if !ar.BoundTo(authreq.BrowserBinding(h.web, r)) {
		h.web.ErrorPage(w, r, lang, http.StatusForbidden, "foreign_browser")
		return nil, nil, "", prefetch{}, false
	}
	if !signedIn || !h.satisfies(r.Context(), ar, sess) {
		if ar.HasPrompt(oidc.PromptNone) {
			h.requests.Fail(w, r, ar, oidc.ErrLoginRequired(), h.log)
		} else {
			http.Redirect(w, r, authreq.LoginURL(ar.ID), http.StatusSeeOther)
		}
		return nil, nil, "", prefetch{}, false
	}
	return ar, sess, lang, pre, true
}

// maxRequestID bounds the request IDs worth looking up (authreq.Repo.Load
// refuses longer ones too).
const maxRequestID = 64

// loadRequest loads the auth request named in the query and the
// browser's session, in one round trip, and with them the grant and the
// account the session cookie's hint names. A request that is finished
// (completed, or gone after its code was exchanged) is what a signed-in
// resident meets by going Back from the relying party: that is no error,
// the page says they are done. Anyone else gets the error page.
func (h *Handler) loadRequest(w http.ResponseWriter, r *http.Request) (*authreq.AuthRequest, *session.Session, bool, prefetch, bool) {
	ctx := r.Context()
	id := r.URL.Query().Get("id")
	// An ID no request can have is not sent to the store.
	var ops []store.Op
	validID := id != "" && len(id) <= maxRequestID
	if validID {
		ops = append(ops, h.requests.ReadOp(id))
	}
	sessOp, hasCookie := h.sessions.ReadOp(r)
	if hasCookie {
		ops = append(ops, sessOp)
	}
	var pre prefetch
	if hasCookie {
		if acct, client, ok := h.sessions.Hint(r); ok {
			pre.account, pre.client = acct, client
			ops = append(append(ops, store.Get(consent.GrantKey(acct, client))), h.accounts.ReadOps(acct)...)
		}
	}
	var (
		ar       *authreq.AuthRequest
		sess     *session.Session
		signedIn bool
		res      = []store.Result{{Err: store.ErrNotFound}, {Err: store.ErrNotFound}}
		err      error
	)
	if len(ops) > 0 {
		var got []store.Result
		if got, err = h.kv.Do(ctx, ops...); err == nil {
			if !validID {
				got = append([]store.Result{{Err: store.ErrNotFound}}, got...)
			}
			copy(res, got)
			if pre.account != "" {
				pre.res = got[2:]
			}
		} else {
			err = fmt.Errorf("consentflow: read: %w", err)
		}
	}
	if err == nil {
		ar, err = h.requests.FromResult(id, res[0])
		if hasCookie {
			sess, signedIn = h.sessions.FromResult(r, res[1])
		}
	}
	var uiLocales []string
	if ar != nil {
		uiLocales = ar.UILocales
	}
	finished := errors.Is(err, authreq.ErrNotFound) || err == nil && ar.Completed
	if finished && signedIn {
		lang := h.web.Lang(w, r, uiLocales)
		h.web.Render(w, r, http.StatusOK, "message.html", lang, messageView{Kind: "done",
			Languages: web.LangLinks(&url.URL{Path: authreq.ConsentPath, RawQuery: url.Values{"id": {id}}.Encode()}, lang)})
		return nil, nil, false, prefetch{}, false
	}
	switch {
	case errors.Is(err, authreq.ErrNotFound):
		h.web.ErrorPage(w, r, h.web.Lang(w, r, nil), http.StatusBadRequest, "unknown_request")
	case err != nil:
		h.log.ErrorContext(ctx, "load auth request", "error", err)
		h.web.ErrorPage(w, r, h.web.Lang(w, r, nil), http.StatusInternalServerError, "server_error")
	case ar.Completed:
		h.web.ErrorPage(w, r, h.web.Lang(w, r, uiLocales), http.StatusBadRequest, "already_completed")
	default:
		return ar, sess, signedIn, pre, true
	}
	return nil, nil, false, prefetch{}, false
}

// messageView is the data of the provider's one-message pages; Kind
// picks the message ("done": the sign-in is finished).
type messageView struct {
	Kind      string
	Languages []web.LangLink
}

// consentFacts loads the account and, when facts are about to matter,
// re-checks their certificate's revocation.
func (h *Handler) consentFacts(w http.ResponseWriter, r *http.Request, st *consentState) (*account.Account, bool) {
	ctx := r.Context()
	var (
		a   *account.Account
		err error
	)
	if st.account != nil {
		a, err = h.accountFrom(st.sess.AccountID, st.account)
	} else {
		a, err = h.accounts.Get(ctx, st.sess.AccountID)
	}
	if err == nil {
		a, err = h.accounts.RecheckFacts(ctx, a)
	}
	if err != nil {
		h.log.ErrorContext(ctx, "consent account", "error", err)
		h.web.ErrorPage(w, r, st.lang, http.StatusInternalServerError, "server_error")
		return nil, false
	}
	return a, true
}

// accountFrom opens the account read with the grant. A missing account
// is an error here, as Accounts.Get has it, not the empty account a
// release of a deleted one gets.
func (h *Handler) accountFrom(id string, res []store.Result) (*account.Account, error) {
	for _, r := range res {
		if errors.Is(r.Err, store.ErrNotFound) {
			return nil, account.ErrNotFound
		}
	}
	return h.accounts.ForReleaseFrom(id, res)
}

// reproof sends the resident to prove their identity again (the login
// page's proofing path, with a message saying why), or tells the RP that
// interaction is required under prompt=none.
func (h *Handler) reproof(w http.ResponseWriter, r *http.Request, st *consentState, cause error) {
	if st.ar.HasPrompt(oidc.PromptNone) {
		h.requests.Fail(w, r, st.ar, oidc.ErrInteractionRequired().WithDescription("the resident must prove their identity again"), h.log)
		return
	}
	notice := authreq.NoticeStaleFacts
	if errors.Is(cause, consent.ErrNoFacts) {
		notice = authreq.NoticeNoFacts
	}
	h.log.InfoContext(r.Context(), "consent needs a new proofing", logref.Account(st.sess.AccountID), "reason", notice)
	http.Redirect(w, r, authreq.LoginURL(st.ar.ID, "purpose", authreq.PurposeProofing, "notice", notice, web.LangParam, st.lang), http.StatusSeeOther)
}

func (h *Handler) handleConsent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	st, ok := h.loadConsentState(w, r)
	if !ok {
		return
	}
	d := consent.Decide(st.existing, st.req, st.promptConsent())
	if !d.Ask() {
		if st.existing == nil {
			// Nothing was asked: remember the connection anyway, so that
			// the account page lists this RP and can revoke its tokens.
			if _, err := h.grants.Consent(ctx, st.sess.AccountID, st.client.ID, st.req, false, consent.Choice{}, h.web.Now().UTC()); err != nil {
				h.log.WarnContext(ctx, "empty grant not recorded", "error", err)
			}
		}
		if len(d.Claims) > 0 {
			a, ok := h.consentFacts(w, r, st)
			if !ok {
				return
			}
			if err := a.ProofingNeeded(d.Claims, st.req); err != nil {
				h.reproof(w, r, st, err)
				return
			}
		}
		h.completeAndReturn(w, r, st, d.Claims)
		return
	}
	if st.ar.HasPrompt(oidc.PromptNone) {
		h.requests.Fail(w, r, st.ar, &oidc.Error{ErrorType: "consent_required", Description: "consent has not been given"}, h.log)
		return
	}
	a, ok := h.consentFacts(w, r, st)
	if !ok {
		return
	}
	// The screen shows the values that would be released: stale or
	// missing facts are not shown, the resident proves again first.
	if cause := a.FactsUnusable(); cause != nil {
		h.reproof(w, r, st, cause)
		return
	}
	h.renderConsent(w, r, st, a, d, http.StatusOK, "")
}

func (h *Handler) handleConsentPost(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !h.web.CheckCSRF(r) {
		h.web.ErrorPage(w, r, h.web.Lang(w, r, nil), http.StatusForbidden, "csrf")
		return
	}
	st, ok := h.loadConsentState(w, r)
	if !ok {
		return
	}
	switch r.PostFormValue("action") {
	case "deny":
		h.log.InfoContext(ctx, "consent denied", "client", st.client.ID)
		h.requests.Fail(w, r, st.ar, oidc.ErrAccessDenied().WithDescription("the resident declined"), h.log)
		return
	case "allow":
	default:
		h.web.ErrorPage(w, r, st.lang, http.StatusBadRequest, "bad_request")
		return
	}
	a, ok := h.consentFacts(w, r, st)
	if !ok {
		return
	}
	again := func(code consent.Code) {
		d := consent.Decide(st.existing, st.req, st.promptConsent())
		if !d.Ask() {
			// Answered meanwhile (another tab): nothing left to ask.
			h.completeAndReturn(w, r, st, d.Claims)
			return
		}
		h.renderConsent(w, r, st, a, d, http.StatusBadRequest, string(code))
	}
	choice, err := consent.ChoiceFromForm(r.PostForm)
	if err != nil {
		again(consent.CodeInvalidChoice)
		return
	}
	if cause := a.FactsUnusable(); cause != nil {
		h.reproof(w, r, st, cause)
		return
	}
	g, err := h.grants.Consent(ctx, st.sess.AccountID, st.client.ID, st.req, st.promptConsent(), choice, h.web.Now().UTC())
	switch code := consent.CodeOf(err); {
	case err == nil:
	case code == consent.CodeInvalidChoice || code == consent.CodeEssentialRefused:
		h.log.InfoContext(ctx, "consent form refused", "client", st.client.ID, "reason", string(code))
		again(code)
		return
	default:
		h.log.ErrorContext(ctx, "record consent", "error", err)
		h.web.ErrorPage(w, r, st.lang, http.StatusInternalServerError, "server_error")
		return
	}
	granted := consent.Effective(g, st.req)
	if err := a.ProofingNeeded(granted, st.req); err != nil {
		h.reproof(w, r, st, err)
		return
	}
	h.log.InfoContext(ctx, "consent recorded", "client", st.client.ID, "granted", granted)
	h.completeAndReturn(w, r, st, granted)
}

// ---- the screen ----

// consentView is the consent page's data.
type consentView struct {
	RP rpView
	// Items are the lines to answer; Kept the claims answered before and
	// not asked again ("already shared").
	Items []consentItemView
	Kept  []string
	// All is set under prompt=consent (everything is asked again).
	All bool
	// Error is a consent.Code when a submission was refused.
	Error     string
	CSRF      string
	Action    string
	Languages []web.LangLink
}

// rpView is who asks.
type rpView struct {
	ClientID     string
	Name         string
	Organization string
	Purpose      string
	PolicyURI    string
	// Logo is the RP's logo, served from this origin.
	Logo string
	// Verified is the "verified relying party" badge: a client the
	// operator configured, or approved in the registry.
	Verified bool
}

// consentItemView is one line of the screen.
type consentItemView struct {
	Claim     string
	Essential bool
	Sensitive bool
	Checked   bool
	// Value is the text of what the RP will receive; ValueOK is false
	// when the facts lack it (then nothing is released for it).
	Value   string
	ValueOK bool
	// Alternatives are radio choices: the claim itself ("in full") and
	// the narrower claims offered instead.
	Alternatives []altView
	// Includes are the age checks sharing the full claim also shares.
	Includes []string
	// Parts are the parts of the claim asked for with it (the family and
	// the given name of the name), with their values: one choice.
	Parts    []partView
	Purpose  string
	Verified bool
}

type partView struct {
	Claim string
	Value string
}

type altView struct {
	Claim   string
	Full    bool
	Checked bool
	Value   string
}

func (h *Handler) renderConsent(w http.ResponseWriter, r *http.Request, st *consentState, a *account.Account, d consent.Decision, status int, errCode string) {
	c := st.client
	action := &url.URL{Path: "/consent", RawQuery: url.Values{"id": {st.ar.ID}, web.LangParam: {st.lang}}.Encode()}
	v := consentView{
		RP: rpView{
			ClientID:     c.ID,
			Name:         c.Name(),
			Organization: c.Organization,
			Purpose:      c.Purpose,
			PolicyURI:    c.PolicyURI,
			Logo:         clients.LogoPath(c.ID),
			Verified:     st.approved,
		},
		All:       d.Outcome == consent.AskAll,
		Error:     errCode,
		CSRF:      h.web.CSRFToken(w, r),
		Action:    action.String(),
		Languages: web.LangLinks(&url.URL{Path: "/consent", RawQuery: url.Values{"id": {st.ar.ID}}.Encode()}, st.lang),
	}
	for _, it := range d.Kept {
		v.Kept = append(v.Kept, it.Claim)
	}
	for _, it := range d.Items {
		tick, as := consent.Preset(st.existing, it)
		iv := consentItemView{
			Claim:     it.Claim,
			Essential: it.Essential,
			Sensitive: it.Sensitive,
			Checked:   tick,
			Includes:  it.Includes,
			Purpose:   it.Purpose,
			Verified:  it.Verified,
		}
		iv.Value, iv.ValueOK = h.claimText(a, it.Claim, st.lang)
		for _, p := range it.Parts {
			text, _ := h.claimText(a, p, st.lang)
			iv.Parts = append(iv.Parts, partView{Claim: p, Value: text})
		}
		if len(it.Alternatives) > 0 {
			iv.Alternatives = append(iv.Alternatives, altView{Claim: it.Claim, Full: true, Checked: as == it.Claim, Value: iv.Value})
			for _, alt := range it.Alternatives {
				text, _ := h.claimText(a, alt, st.lang)
				iv.Alternatives = append(iv.Alternatives, altView{Claim: alt, Checked: as == alt, Value: text})
			}
		}
		v.Items = append(v.Items, iv)
	}
	h.web.Render(w, r, status, "consent.html", st.lang, v)
}

// claimText renders the value a claim would be released with, in the
// page language: what the resident is agreeing to send.
func (h *Handler) claimText(a *account.Account, claim, lang string) (string, bool) {
	msg := func(key string) string { return h.web.Message(lang, key) }
	if claim == consent.ClaimVerifiedClaims {
		fs := a.FactsSource
		if fs == nil {
			return "", false
		}
		return fmt.Sprintf(msg("consent.verified_value"), fs.Issuer, fs.Serial, fs.VerifiedAt.In(web.JST).Format("2006-01-02 15:04")), true
	}
	v, ok := consent.ClaimValue(a.Facts, claim, h.web.Now())
	if !ok {
		return "", false
	}
	switch x := v.(type) {
	case bool:
		if x {
			return msg("consent.yes"), true
		}
		return msg("consent.no"), true
	case map[string]any:
		if f, ok := x["formatted"].(string); ok {
			return f, true
		}
		return "", false
	case string:
		if claim == consent.ClaimGender {
			if t := msg("gender." + x); t != "gender."+x {
				return t, true
			}
		}
		return x, true
	}
	return fmt.Sprint(v), true
}
