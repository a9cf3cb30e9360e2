package provider

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/session"
)

// EndSession is RP-initiated logout (RP-Initiated Logout 1.0). The
// library validates id_token_hint, client_id and post_logout_redirect_uri;
// what to do with the browser's session is decided by /logout, which
// holds the cookie. It receives a signed Logout: the validated
// destination, the RP, and whether the RP proved with its id_token_hint
// that it speaks for the resident of this browser's current session.
// Only such a sign-out ends the session at once; a request naming a
// client_id alone, or another resident's hint, is asked about first
// (§2), since any site can send a browser here.
func (s *Server) EndSession(ctx context.Context, r *op.Request[oidc.EndSessionRequest]) (*op.Redirect, error) {
	es, err := op.ValidateEndSessionRequest(ctx, r.Data, s.Provider())
	if err != nil {
		return nil, endSessionError(err)
	}
	hr := (&http.Request{Method: r.Method, URL: r.URL, Header: r.Header}).WithContext(ctx)
	l := session.Logout{ClientID: es.ClientID, Confirmed: s.hintIsCurrent(ctx, hr, es)}
	// The library's default destination is /logout itself (with state):
	// only an RP's validated, absolute URI is carried over.
	if u, err := url.Parse(es.RedirectURI); err == nil && u.IsAbs() {
		l.Dest = es.RedirectURI
	}
	return op.NewRedirect(session.LogoutPath + "?" + url.Values{"logout": {s.sessions.SignLogout(hr, l)}}.Encode()), nil
}

// hintIsCurrent reports whether the id_token_hint names the resident of
// the browser's current session: its sub is that account's pairwise sub
// for the hint's client. Any doubt (no hint, no session, a client that
// cannot be read) answers no, and the resident is asked.
func (s *Server) hintIsCurrent(ctx context.Context, r *http.Request, es *op.EndSessionRequest) bool {
	if es.UserID == "" || es.ClientID == "" {
		return false
	}
	sess, ok := s.sessions.Current(r)
	if !ok {
		return false
	}
	c, err := s.clients.Get(ctx, es.ClientID)
	if err != nil {
		return false
	}
	return s.clients.Subject(c, sess.AccountID) == es.UserID
}

// endSessionError keeps every end_session refusal an OAuth error with a
// description of ours (the library would put an internal error's text
// into the answer), and an outage a 503: a hint the keys could not be
// loaded to check is not an invalid hint.
func endSessionError(err error) error {
	var oe *oidc.Error
	if !temporary(err) && errors.As(err, &oe) && oe.ErrorType != temporarilyUnavailable {
		return clean(oe)
	}
	return op.NewStatusError(errTemporarilyUnavailable(), http.StatusServiceUnavailable)
}

// TerminateSession is never called: EndSession hands over to /logout.
func (st *storage) TerminateSession(context.Context, string, string) error { return errOwnEndpoint }

// TerminateSessionFromRequest is never called: EndSession hands over to
// /logout.
func (st *storage) TerminateSessionFromRequest(context.Context, *op.EndSessionRequest) (string, error) {
	return "", errOwnEndpoint
}

// GetClientByClientID serves end_session's checks (the library's
// post_logout_redirect_uri validation). A registry that cannot be asked
// is an outage, not an unknown client.
func (st *storage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	e, err := st.s.clients.Lookup(ctx, id)
	if errors.Is(err, clients.ErrUnavailable) {
		return nil, op.NewStatusError(errTemporarilyUnavailable(), http.StatusServiceUnavailable)
	}
	if err != nil {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client, or one not approved to act now")
	}
	return st.s.opClient(e), nil
}
