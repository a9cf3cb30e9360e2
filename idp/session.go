package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/watashi-id/watashi/idp/store"
)

// Session is the resident's single sign-on session in one browser: the
// result of the last certificate sign-in, reused by later auth requests
// until it expires (Options.SessionTTL) or the resident signs out.
//
// The cookie holds 256 random bits; the store keys the record by their
// SHA-256, so a copy of the store does not yield usable cookies. The
// cookie has no Max-Age: closing the browser ends the session, which is
// the safer default on the shared computers of libraries and city halls.
type Session struct {
	AccountID string    `json:"account_id"`
	AuthTime  time.Time `json:"auth_time"`
	ACR       string    `json:"acr"`
	AMR       []string  `json:"amr"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

func sessionKey(hash string) string { return "sess:" + hash }

// sessionCookieMax bounds the cookie value we are willing to hash.
const sessionCookieMax = 128

// currentSession returns the browser's valid session, if any. A store
// failure reads as "no session" (the resident signs in again) and is
// logged.
func (s *Server) currentSession(r *http.Request) (*Session, bool) {
	c, err := r.Cookie(s.cookieName("sess"))
	if err != nil || c.Value == "" || len(c.Value) > sessionCookieMax {
		return nil, false
	}
	b, err := s.kv.Get(r.Context(), sessionKey(sha256Hex(c.Value)))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.WarnContext(r.Context(), "session lookup failed", "error", err)
		}
		return nil, false
	}
	var sess Session
	if err := json.Unmarshal(b, &sess); err != nil || sess.AccountID == "" {
		return nil, false
	}
	if !s.now().Before(sess.ExpiresAt) {
		return nil, false
	}
	return &sess, true
}

// startSession stores a new session for a verified transaction and sets
// its cookie. A new cookie value each time (never reusing one the browser
// sent) rules out session fixation.
func (s *Server) startSession(ctx context.Context, w http.ResponseWriter, res *txResult) (*Session, error) {
	now := s.now().UTC()
	sess := &Session{
		AccountID: res.AccountID,
		AuthTime:  res.AuthTime,
		ACR:       res.ACR,
		AMR:       slices.Clone(res.AMR),
		CreatedAt: now,
		ExpiresAt: now.Add(s.opts.SessionTTL),
	}
	b, err := json.Marshal(sess)
	if err != nil {
		return nil, err
	}
	v := randomB64(32)
	if err := s.kv.Set(ctx, sessionKey(sha256Hex(v)), b, s.opts.SessionTTL); err != nil {
		return nil, fmt.Errorf("idp: store session: %w", err)
	}
	s.setCookie(w, s.cookieName("sess"), v, 0)
	return sess, nil
}

// endSession deletes the browser's session record and cookie.
func (s *Server) endSession(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(s.cookieName("sess")); err == nil && c.Value != "" && len(c.Value) <= sessionCookieMax {
		if err := s.kv.Delete(r.Context(), sessionKey(sha256Hex(c.Value))); err != nil {
			s.log.WarnContext(r.Context(), "session record not deleted", "error", err)
		}
	}
	s.clearCookie(w, s.cookieName("sess"))
}

// acrLevels orders the acr values we understand; requested values we do
// not know are ignored (OIDC Core §3.1.2.1: acr_values is voluntary).
var acrLevels = map[string]int{"aal1": 1, "aal2": 2, "aal3": 3}

// acrSatisfies reports whether a session of acr meets the lowest known
// requested value.
func acrSatisfies(acr string, requested []string) bool {
	need := 0
	for _, v := range requested {
		if l, ok := acrLevels[v]; ok && (need == 0 || l < need) {
			need = l
		}
	}
	return need == 0 || acrLevels[acr] >= need
}

// sessionSatisfies decides whether sess may answer ar without a new
// sign-in: max_age, acr_values and id_token_hint. A session that signed
// in after the request was made is fresh for it whatever max_age says
// (prompt=login sets max_age to 0, and the sign-in just done for that
// request must count).
func (s *Server) sessionSatisfies(ctx context.Context, ar *AuthRequest, sess *Session) bool {
	fresh := !sess.AuthTime.Before(ar.CreatedAt)
	if !fresh {
		if ar.HasPrompt("login") {
			return false
		}
		if ar.MaxAge != nil && s.now().Sub(sess.AuthTime) > time.Duration(*ar.MaxAge)*time.Second {
			return false
		}
	}
	if !acrSatisfies(sess.ACR, ar.ACRValues) {
		return false
	}
	if ar.HintSubject != "" {
		c, err := s.client(ctx, ar.ClientID)
		if err != nil || s.pairwiseSubject(c, sess.AccountID) != ar.HintSubject {
			return false
		}
	}
	return true
}
