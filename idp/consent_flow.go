package idp

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/watashi-id/watashi/consent"
	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// The consent step (issue 5). After the sign-in, /consent?id=AR decides
// with package consent what this authorization may release:
//
//	GET  /consent?id=AR[&lang=]   the remembered grant answers everything
//	                              (no prompt=consent): complete at once;
//	                              prompt=none and a screen is due:
//	                              consent_required to the RP; facts stale
//	                              or missing: back to the login page's
//	                              proofing path; else the screen, asking
//	                              only what was not answered before
//	POST /consent?id=AR[&lang=]   CSRF; deny → access_denied to the RP;
//	                              allow → the choices become the grant
//	                              (consent.Store.Consent, atomic), and
//	                              what it releases for this request
//	                              (consent.Effective) is recorded on the
//	                              auth request, then the callback
//
// The screen works without JavaScript: each claim is a checkbox named
// "claim"; a locked essential claim is a checked, disabled checkbox plus
// a hidden "claim" input; an age alternative is a radio group named
// "as.<claim>". Element IDs are stable for tests and themes:
// form#consent, input#claim-<claim>, input#as-<claim>-<choice>,
// button#consent-allow / #consent-deny (name=action, value=allow|deny),
// a#lang-ja / #lang-en, #rp-name, #rp-organization, #rp-verified,
// #rp-purpose, a#rp-policy, #consent-kept, #consent-error.

// consentState is what both consent handlers work from.
type consentState struct {
	ar       *AuthRequest
	sess     *Session
	lang     string
	client   *Client
	req      consent.Requested
	existing *consent.Grant
}

// promptConsent reports prompt=consent: ask about everything again.
func (st *consentState) promptConsent() bool { return st.ar.HasPrompt(oidc.PromptConsent) }

// loadConsentState runs consentContext and loads the client, the request
// under its policy and the remembered grant. It writes the answer itself
// when it returns false.
func (s *Server) loadConsentState(w http.ResponseWriter, r *http.Request) (*consentState, bool) {
	ar, sess, lang, ok := s.consentContext(w, r)
	if !ok {
		return nil, false
	}
	st := &consentState{ar: ar, sess: sess, lang: lang}
	if ar.ClientID == accountClientID {
		return st, true
	}
	ctx := r.Context()
	c, err := s.client(ctx, ar.ClientID)
	if err != nil {
		s.log.ErrorContext(ctx, "consent client", "error", err)
		s.errorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return nil, false
	}
	st.client = c
	if st.req, err = consentRequest(c, ar.Scopes, ar.Claims); err != nil {
		// Validated at /authorize: a record that no longer parses is ours.
		s.log.ErrorContext(ctx, "consent request", "error", err)
		s.errorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return nil, false
	}
	if len(st.req.Dropped) > 0 {
		// Names only: which claims the client's registration does not cover.
		var names []string
		for _, d := range st.req.Dropped {
			names = append(names, d.Claim)
		}
		s.log.InfoContext(ctx, "requested claims not allowed for the client were left out", "client", c.ID, "claims", names)
	}
	if st.existing, err = s.consentStore().Get(ctx, sess.AccountID, c.ID); err != nil {
		s.log.ErrorContext(ctx, "load consent", "error", err)
		s.errorPage(w, r, lang, http.StatusInternalServerError, "server_error")
		return nil, false
	}
	return st, true
}

// consentContext loads what both consent handlers need and answers the
// cases where no consent page is due.
func (s *Server) consentContext(w http.ResponseWriter, r *http.Request) (*AuthRequest, *Session, string, bool) {
	ar, ok := s.loadRequestForPage(w, r, r.URL.Query().Get("id"))
	if !ok {
		return nil, nil, "", false
	}
	lang := s.pageLang(w, r, ar)
	if !sameBinding(s.browserBinding(r), ar.Binding) {
		s.errorPage(w, r, lang, http.StatusForbidden, "foreign_browser")
		return nil, nil, "", false
	}
	sess, ok := s.currentSession(r)
	if !ok || !s.sessionSatisfies(r.Context(), ar, sess) {
		if ar.HasPrompt(oidc.PromptNone) {
			s.authError(w, r, ar, oidc.ErrLoginRequired())
		} else {
			http.Redirect(w, r, loginURL(ar.ID), http.StatusSeeOther)
		}
		return nil, nil, "", false
	}
	return ar, sess, lang, true
}

// consentFacts loads the account and, when facts are about to matter,
// re-checks their certificate's revocation (Options.FactsRecheck).
func (s *Server) consentFacts(w http.ResponseWriter, r *http.Request, st *consentState) (*Account, bool) {
	ctx := r.Context()
	a, err := s.account(ctx, st.sess.AccountID)
	if err == nil {
		a, err = s.recheckFacts(ctx, a)
	}
	if err != nil {
		s.log.ErrorContext(ctx, "consent account", "error", err)
		s.errorPage(w, r, st.lang, http.StatusInternalServerError, "server_error")
		return nil, false
	}
	return a, true
}

// reproof sends the resident to prove their identity again (the login
// page's proofing path, with a message saying why), or tells the RP that
// interaction is required under prompt=none.
func (s *Server) reproof(w http.ResponseWriter, r *http.Request, st *consentState, cause error) {
	if st.ar.HasPrompt(oidc.PromptNone) {
		s.authError(w, r, st.ar, oidc.ErrInteractionRequired().WithDescription("the resident must prove their identity again"))
		return
	}
	notice := noticeStaleFacts
	if errors.Is(cause, consent.ErrNoFacts) {
		notice = noticeNoFacts
	}
	s.log.InfoContext(r.Context(), "consent needs a new proofing", "account", st.sess.AccountID, "reason", notice)
	http.Redirect(w, r, loginURL(st.ar.ID, "purpose", purposeProofing, "notice", notice, langParam, st.lang), http.StatusSeeOther)
}

// factsProblem is consent.Ready for the facts of a: an error means
// "prove again" before this authorization can release granted.
func factsProblem(a *Account, granted []string, req consent.Requested) error {
	err := factsReleasable(a, granted, req)
	if needsProofing(err) {
		return err
	}
	return nil
}

func (s *Server) handleConsent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	st, ok := s.loadConsentState(w, r)
	if !ok {
		return
	}
	if st.ar.ClientID == accountClientID {
		s.finishAccountLogin(w, r, st.ar)
		return
	}
	d := consent.Decide(st.existing, st.req, st.promptConsent())
	if !d.Ask() {
		if st.existing == nil {
			// Nothing was asked: remember the connection anyway, so that
			// the account page lists this RP and can revoke its tokens.
			if _, err := s.consentStore().Consent(ctx, st.sess.AccountID, st.client.ID, st.req, false, consent.Choice{}, s.now().UTC()); err != nil {
				s.log.WarnContext(ctx, "empty grant not recorded", "error", err)
			}
		}
		if len(d.Claims) > 0 {
			a, ok := s.consentFacts(w, r, st)
			if !ok {
				return
			}
			if err := factsProblem(a, d.Claims, st.req); err != nil {
				s.reproof(w, r, st, err)
				return
			}
		}
		s.completeAndReturn(w, r, st.ar, st.sess, d.Claims, st.lang)
		return
	}
	if st.ar.HasPrompt(oidc.PromptNone) {
		s.authError(w, r, st.ar, &oidc.Error{ErrorType: "consent_required", Description: "consent has not been given"})
		return
	}
	a, ok := s.consentFacts(w, r, st)
	if !ok {
		return
	}
	// The screen shows the values that would be released: stale or
	// missing facts are not shown, the resident proves again first.
	if a.Facts == nil || (a.FactsSource != nil && a.FactsSource.Stale) {
		cause := consent.ErrStaleFacts
		if a.Facts == nil {
			cause = consent.ErrNoFacts
		}
		s.reproof(w, r, st, cause)
		return
	}
	s.renderConsent(w, r, st, a, d, http.StatusOK, "")
}

func (s *Server) handleConsentPost(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !s.checkCSRF(r) {
		s.errorPage(w, r, s.pageLang(w, r, nil), http.StatusForbidden, "csrf")
		return
	}
	st, ok := s.loadConsentState(w, r)
	if !ok {
		return
	}
	if st.ar.ClientID == accountClientID {
		s.finishAccountLogin(w, r, st.ar)
		return
	}
	switch r.PostFormValue("action") {
	case "deny":
		s.log.InfoContext(ctx, "consent denied", "client", st.client.ID)
		s.authError(w, r, st.ar, oidc.ErrAccessDenied().WithDescription("the resident declined"))
		return
	case "allow":
	default:
		s.errorPage(w, r, st.lang, http.StatusBadRequest, "bad_request")
		return
	}
	a, ok := s.consentFacts(w, r, st)
	if !ok {
		return
	}
	again := func(code consent.Code) {
		d := consent.Decide(st.existing, st.req, st.promptConsent())
		if !d.Ask() {
			// Answered meanwhile (another tab): nothing left to ask.
			s.completeAndReturn(w, r, st.ar, st.sess, d.Claims, st.lang)
			return
		}
		s.renderConsent(w, r, st, a, d, http.StatusBadRequest, string(code))
	}
	choice, err := consent.ChoiceFromForm(r.PostForm)
	if err != nil {
		again(consent.CodeInvalidChoice)
		return
	}
	if a.Facts == nil || (a.FactsSource != nil && a.FactsSource.Stale) {
		cause := consent.ErrStaleFacts
		if a.Facts == nil {
			cause = consent.ErrNoFacts
		}
		s.reproof(w, r, st, cause)
		return
	}
	g, err := s.consentStore().Consent(ctx, st.sess.AccountID, st.client.ID, st.req, st.promptConsent(), choice, s.now().UTC())
	switch code := consent.CodeOf(err); {
	case err == nil:
	case code == consent.CodeInvalidChoice || code == consent.CodeEssentialRefused:
		s.log.InfoContext(ctx, "consent form refused", "client", st.client.ID, "reason", string(code))
		again(code)
		return
	default:
		s.log.ErrorContext(ctx, "record consent", "error", err)
		s.errorPage(w, r, st.lang, http.StatusInternalServerError, "server_error")
		return
	}
	granted := consent.Effective(g, st.req)
	if err := factsProblem(a, granted, st.req); err != nil {
		s.reproof(w, r, st, err)
		return
	}
	s.log.InfoContext(ctx, "consent recorded", "client", st.client.ID, "granted", granted)
	s.completeAndReturn(w, r, st.ar, st.sess, granted, st.lang)
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
	Languages []langLink
}

// rpView is who asks.
type rpView struct {
	ClientID     string
	Name         string
	Organization string
	Purpose      string
	PolicyURI    string
	// Verified is the "verified relying party" badge. Every client comes
	// from the operator's own configuration today, which is the
	// registration; the whitelist registry will decide it per client.
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
	Purpose  string
	Verified bool
}

type altView struct {
	Claim   string
	Full    bool
	Checked bool
	Value   string
}

func (s *Server) renderConsent(w http.ResponseWriter, r *http.Request, st *consentState, a *Account, d consent.Decision, status int, errCode string) {
	c := st.client
	action := &url.URL{Path: "/consent", RawQuery: url.Values{"id": {st.ar.ID}, langParam: {st.lang}}.Encode()}
	v := consentView{
		RP: rpView{
			ClientID:     c.ID,
			Name:         c.displayName(),
			Organization: c.Organization,
			Purpose:      c.Purpose,
			PolicyURI:    c.PolicyURI,
			Verified:     true, // static clients are operator-registered; see rpView.Verified
		},
		All:       d.Outcome == consent.AskAll,
		Error:     errCode,
		CSRF:      s.csrfToken(r),
		Action:    action.String(),
		Languages: langLinks(&url.URL{Path: "/consent", RawQuery: url.Values{"id": {st.ar.ID}}.Encode()}, st.lang),
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
		iv.Value, iv.ValueOK = s.claimText(a, it.Claim, st.lang)
		if len(it.Alternatives) > 0 {
			iv.Alternatives = append(iv.Alternatives, altView{Claim: it.Claim, Full: true, Checked: as == it.Claim, Value: iv.Value})
			for _, alt := range it.Alternatives {
				text, _ := s.claimText(a, alt, st.lang)
				iv.Alternatives = append(iv.Alternatives, altView{Claim: alt, Checked: as == alt, Value: text})
			}
		}
		v.Items = append(v.Items, iv)
	}
	s.render(w, r, status, "consent.html", st.lang, v)
}

// claimText renders the value a claim would be released with, in the
// page language: what the resident is agreeing to send.
func (s *Server) claimText(a *Account, claim, lang string) (string, bool) {
	msg := func(key string) string { return s.signin.tmpl.Message(lang, key) }
	if claim == consent.ClaimVerifiedClaims {
		fs := a.FactsSource
		if fs == nil {
			return "", false
		}
		return fmt.Sprintf(msg("consent.verified_value"), fs.Issuer, fs.Serial, fs.VerifiedAt.In(jst).Format("2006-01-02 15:04")), true
	}
	v, ok := consent.ClaimValue(a.Facts, claim, s.now())
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

// claimLabels are claim names in the page language.
func (s *Server) claimLabels(lang string, claims []string) []string {
	out := make([]string, 0, len(claims))
	for _, c := range claims {
		out = append(out, s.signin.tmpl.Message(lang, "claim."+c))
	}
	return out
}
