package provider

import (
	"context"
	"net/url"

	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/idp/session"
)

// TerminateSession is superseded by TerminateSessionFromRequest.
func (st *storage) TerminateSession(context.Context, string, string) error { return nil }

// TerminateSessionFromRequest runs after the library validated
// id_token_hint and post_logout_redirect_uri. Storage cannot touch the
// browser's cookies, so it hands over to /logout with the validated
// destination, signed so that /logout is never an open redirect.
func (st *storage) TerminateSessionFromRequest(ctx context.Context, req *op.EndSessionRequest) (string, error) {
	s := st.s
	if req.UserID != "" && req.ClientID != "" {
		// The hint's sub is pairwise; the index written at completion maps
		// it back to the account. The browser's own session is ended by
		// /logout, which holds the cookie; ending the account's sessions
		// elsewhere would need a session index (not kept yet).
		_, err := s.kv.Get(ctx, subIndexKey(req.ClientID, req.UserID))
		s.log.DebugContext(ctx, "end_session", "client_id", req.ClientID, "hint_subject_known", err == nil)
	}
	u, err := url.Parse(req.RedirectURI)
	if err != nil || !u.IsAbs() {
		// The default (our own page, perhaps with state appended).
		return session.LogoutPath, nil
	}
	return session.LogoutPath + "?next=" + url.QueryEscape(s.sessions.SignNext(req.RedirectURI)), nil
}
