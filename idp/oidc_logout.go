package idp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// logoutPath is SIGNIN's end-session landing page; it is also the
// library's DefaultLogoutRedirectURI, used when the RP names no valid
// post_logout_redirect_uri.
const logoutPath = "/logout"

// logoutNextTTL bounds how long a signed /logout?next= link works.
const logoutNextTTL = 10 * time.Minute

// TerminateSession is superseded by TerminateSessionFromRequest.
func (st *opStorage) TerminateSession(context.Context, string, string) error { return nil }

// TerminateSessionFromRequest runs after the library validated
// id_token_hint and post_logout_redirect_uri. Storage cannot touch the
// browser's cookies, so it hands over to /logout with the validated
// destination, signed so that /logout is never an open redirect.
func (st *opStorage) TerminateSessionFromRequest(ctx context.Context, req *op.EndSessionRequest) (string, error) {
	s := st.s
	if req.UserID != "" && req.ClientID != "" {
		// The hint's sub is pairwise; the index written at completion maps
		// it back to the account. The browser's own session is ended by
		// /logout (SIGNIN), which holds the cookie; ending the account's
		// sessions elsewhere would need a session index (not kept yet).
		_, err := s.accountForSubject(ctx, req.ClientID, req.UserID)
		s.log.DebugContext(ctx, "end_session", "client_id", req.ClientID, "hint_subject_known", err == nil)
	}
	u, err := url.Parse(req.RedirectURI)
	if err != nil || !u.IsAbs() {
		// The default (our own page, perhaps with state appended).
		return logoutPath, nil
	}
	return logoutPath + "?next=" + url.QueryEscape(s.signLogoutNext(req.RedirectURI)), nil
}

func (s *Server) logoutMAC(payload string) []byte {
	m := hmac.New(sha256.New, s.opts.CookieKey)
	m.Write([]byte("watashi logout next\x00"))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// signLogoutNext binds a validated post-logout destination and an expiry
// with CookieKey.
func (s *Server) signLogoutNext(next string) string {
	payload := strconv.FormatInt(s.now().Add(logoutNextTTL).Unix(), 10) + "|" + next
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." +
		base64.RawURLEncoding.EncodeToString(s.logoutMAC(payload))
}

// verifyLogoutNext returns the destination signed by
// TerminateSessionFromRequest, or false when the value was not made by us
// or has expired; the /logout page then stays on our signed-out page.
func (s *Server) verifyLogoutNext(next string) (string, bool) {
	p, m, ok := strings.Cut(next, ".")
	if !ok || len(next) > 4096 {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return "", false
	}
	mac, err := base64.RawURLEncoding.DecodeString(m)
	if err != nil || !hmac.Equal(mac, s.logoutMAC(string(payload))) {
		return "", false
	}
	exp, dest, ok := strings.Cut(string(payload), "|")
	if !ok {
		return "", false
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || !s.now().Before(time.Unix(unix, 0)) {
		return "", false
	}
	return dest, true
}
