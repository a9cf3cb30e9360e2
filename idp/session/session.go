package session

import (
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/web"
)

// Session is one browser's sign-in.
type Session struct {
	// ID names the session inside the provider (the account's session
	// index, events, the grants it led to). It is not the cookie and is
	// never shown: relying parties see PairwiseSID of it.
	ID        string    `json:"id,omitempty"`
	AccountID string    `json:"account_id"`
	AuthTime  time.Time `json:"auth_time"`
	ACR       string    `json:"acr"`
	AMR       []string  `json:"amr"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`

	// JPKIAt is when this session's JPKI certificate sign-in happened;
	// zero for a session a passkey started. Adding a passkey needs a
	// recent one (JPKIRecent).
	JPKIAt time.Time `json:"jpki_at,omitzero"`

	// Method and Authenticator are the sign-in's (authreq.Authentication):
	// how, for the resident's eyes, and which authenticator of the
	// account, so that removing it ends this session.
	Method        string `json:"method,omitempty"`
	Authenticator string `json:"authenticator,omitempty"`
}

// JPKIRecent reports whether the session signed in with the JPKI
// certificate no longer than within ago: the proof of identity that
// adding a passkey asks for.
func (s *Session) JPKIRecent(now time.Time, within time.Duration) bool {
	return !s.JPKIAt.IsZero() && !s.JPKIAt.After(now.Add(time.Minute)) && now.Sub(s.JPKIAt) <= within
}

// Authentication is the sign-in the session carries.
func (s *Session) Authentication() authreq.Authentication {
	return authreq.Authentication{AccountID: s.AccountID, ACR: s.ACR, AMR: slices.Clone(s.AMR), Time: s.AuthTime,
		SessionID: s.ID, Method: s.Method, Authenticator: s.Authenticator}
}

// KV is the part of the store sessions use.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	Delete(ctx context.Context, keys ...string) error
	SetAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error
	SetMembers(ctx context.Context, key string) ([]string, error)
	SetRemove(ctx context.Context, key string, members ...string) error
	Incr(ctx context.Context, key string, ttl time.Duration) (int64, error)
	Do(ctx context.Context, ops ...store.Op) ([]store.Result, error)
}

// Manager keeps sessions.
type Manager struct {
	kv   KV
	web  *web.Kit
	ttl  time.Duration
	key  []byte
	log  *slog.Logger
	now  func() time.Time
	name string
	hint cipher.AEAD // seals the cookie's hint (hint.go)

	// Set once at wiring (SetTokens, SetEvents, SetBlocks), before
	// serving.
	tokens   Tokens
	tokenTTL time.Duration
	events   Publisher
	blocks   Blocks
}

// Blocks is the operators' kill switch as sessions see it: whether the
// token label or the authenticator model a session signed in with is
// blocked now.
type Blocks interface {
	SessionBlocked(ctx context.Context, s *Session) (bool, error)
}

// SetBlocks makes Current end a session whose sign-in the operator has
// since blocked, with the sessions and token families of the same
// authenticator, on whichever node the browser comes back to.
func (m *Manager) SetBlocks(b Blocks) { m.blocks = b }

// New returns a Manager whose sessions last ttl. key authenticates the
// signed logout destinations (the cookie key).
func New(kv KV, k *web.Kit, ttl time.Duration, key []byte) *Manager {
	return &Manager{kv: kv, web: k, ttl: ttl, key: slices.Clone(key), log: k.Logger(), now: k.Now, name: k.CookieName("sess"),
		hint: newHintAEAD(key)}
}

// recordKey is the session's record: its ID, the hash of its cookie.
func recordKey(sid string) string { return "sess:" + sid }

// sessionID is the ID of the session whose cookie value is v: a SHA-256
// of it, so that the store keys the record by what only the cookie
// yields, and the index, knowing the ID, reaches the record without a
// reference record of its own. Neither a copy of the store nor an ID
// yields the cookie.
func sessionID(v string) string {
	h := sha256.New()
	h.Write([]byte("watashi session\x00"))
	h.Write([]byte(v))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// cookieMax bounds the cookie value we are willing to hash: the random
// part, and a hint for a client ID of up to hintMaxClient bytes.
const cookieMax = 256

// cookieSession is the ID of the session r's cookie names, if it has one.
func (m *Manager) cookieSession(r *http.Request) (string, bool) {
	c, err := r.Cookie(m.name)
	if err != nil || c.Value == "" || len(c.Value) > cookieMax {
		return "", false
	}
	return sessionID(c.Value), true
}

// record is the stored session, in few bytes: the ID is its key, the
// creation follows from the expiry and the lifetime, and a JPKI
// sign-in's time is the sign-in's.
type record struct {
	Account string `json:"a"`
	// Auth is AuthTime in Unix nanoseconds (0 for none): a request made
	// just before the sign-in must still see the sign-in as after it.
	Auth int64    `json:"t,omitempty"`
	ACR  string   `json:"c,omitempty"`
	AMR  []string `json:"m,omitempty"`
	// Exp is ExpiresAt in Unix milliseconds, as the index member has it.
	Exp           int64  `json:"x"`
	Authenticator string `json:"n,omitempty"`
	// Method is absent when it is the authenticator (a passkey's).
	Method *string `json:"h,omitempty"`
}

func encodeRecord(s *Session) ([]byte, error) {
	rec := record{Account: s.AccountID, ACR: s.ACR, AMR: s.AMR, Exp: s.ExpiresAt.UnixMilli(), Authenticator: s.Authenticator}
	if !s.AuthTime.IsZero() {
		rec.Auth = s.AuthTime.UnixNano()
	}
	if s.Method != s.Authenticator {
		rec.Method = &s.Method
	}
	return json.Marshal(rec)
}

// decodeRecord reads the record of session sid, which lasts ttl.
func decodeRecord(b []byte, sid string, ttl time.Duration) (*Session, bool) {
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil || rec.Account == "" || rec.Exp == 0 {
		return nil, false
	}
	s := &Session{ID: sid, AccountID: rec.Account, ACR: rec.ACR, AMR: rec.AMR, ExpiresAt: time.UnixMilli(rec.Exp).UTC(),
		Authenticator: rec.Authenticator, Method: rec.Authenticator}
	s.CreatedAt = s.ExpiresAt.Add(-ttl)
	if rec.Auth != 0 {
		s.AuthTime = time.Unix(0, rec.Auth).UTC()
	}
	if rec.Method != nil {
		s.Method = *rec.Method
	}
	if s.ACR == ACRJPKI {
		s.JPKIAt = s.AuthTime
	}
	return s, true
}

// Current returns the browser's valid session, if any. A store failure
// reads as "no session" (the resident signs in again) and is logged.
func (m *Manager) Current(r *http.Request) (*Session, bool) {
	op, ok := m.ReadOp(r)
	if !ok {
		return nil, false
	}
	b, err := m.kv.Get(r.Context(), op.Key)
	return m.FromResult(r, store.Result{Val: b, Err: err})
}

// ReadOp is the batch operation (store.KV.Do) that reads the session r
// carries, for a caller that reads it in one round trip with other
// records; false when r carries no session cookie (and has no session).
func (m *Manager) ReadOp(r *http.Request) (store.Op, bool) {
	sid, ok := m.cookieSession(r)
	if !ok {
		return store.Op{}, false
	}
	return store.Get(recordKey(sid)), true
}

// FromResult is Current from the result of ReadOp(r).
func (m *Manager) FromResult(r *http.Request, res store.Result) (*Session, bool) {
	sid, ok := m.cookieSession(r)
	if !ok {
		return nil, false
	}
	if res.Err != nil {
		if !errors.Is(res.Err, store.ErrNotFound) {
			m.log.WarnContext(r.Context(), "session lookup failed", "error", res.Err)
		}
		return nil, false
	}
	sess, ok := decodeRecord(res.Val, sid, m.ttl)
	if !ok || !m.now().Before(sess.ExpiresAt) {
		return nil, false
	}
	if m.blocks != nil {
		blocked, err := m.blocks.SessionBlocked(r.Context(), sess)
		if err != nil {
			m.log.WarnContext(r.Context(), "session block check failed", "error", err)
			return nil, false
		}
		if blocked {
			m.endBlocked(r.Context(), sess)
			return nil, false
		}
	}
	return sess, true
}

// endBlocked ends a session the kill switch caught, and what the same
// authenticator started: its other sessions and its token families.
func (m *Manager) endBlocked(ctx context.Context, sess *Session) {
	ctx = context.WithoutCancel(ctx)
	var err error
	if sess.Authenticator != "" {
		err = m.EndAuthenticator(ctx, sess.AccountID, sess.Authenticator, events.ReasonBlocked)
	} else {
		err = m.endSessions(ctx, sess.AccountID, []member{sess.member()}, nil, events.ReasonBlocked)
	}
	if err != nil {
		m.log.WarnContext(ctx, "blocked session not ended everywhere", "error", err)
		return
	}
	// The authenticator is blocked, not removed: relying parties that
	// follow credential changes hear of it once, with the label.
	typ, ref, _ := strings.Cut(sess.Authenticator, ":")
	if typ != "" && ref != "" {
		c := &events.Credential{Type: typ, Change: "revoke", Ref: ref}
		if kind, label, _ := strings.Cut(sess.Method, ":"); kind == "jpki" {
			c.Label = label
		}
		m.publish(ctx, events.Event{Kind: events.CredentialChanged, AccountID: sess.AccountID, Credential: c})
	}
	m.log.InfoContext(ctx, "session ended: its sign-in is blocked by the operator")
}

// Start stores a new session for a finished sign-in and sets its cookie.
func (m *Manager) Start(ctx context.Context, w http.ResponseWriter, a authreq.Authentication) (*Session, error) {
	return m.Begin(ctx, w, a, "")
}

// Begin is Start for a sign-in made at clientID's request ("" for none):
// the session joins its account's index and a SignedIn event names the
// client, the method and the session. The record and the index take one
// round trip (session index, index.go).
func (m *Manager) Begin(ctx context.Context, w http.ResponseWriter, a authreq.Authentication, clientID string) (*Session, error) {
	if a.AccountID == "" {
		return nil, errors.New("session: sign-in without an account")
	}
	v := m.newCookie(a.AccountID, clientID)
	now := m.now().UTC()
	// The expiry is kept to the millisecond, as the record and the index
	// hold it.
	exp := now.Add(m.ttl).Truncate(time.Millisecond)
	sess := &Session{
		ID:            sessionID(v),
		Method:        a.Method,
		Authenticator: a.Authenticator,
		AccountID:     a.AccountID,
		AuthTime:      a.Time.UTC(),
		ACR:           a.ACR,
		AMR:           slices.Clone(a.AMR),
		CreatedAt:     exp.Add(-m.ttl),
		ExpiresAt:     exp,
	}
	if a.Time.IsZero() {
		sess.AuthTime = time.Time{}
	}
	if a.ACR == ACRJPKI {
		sess.JPKIAt = sess.AuthTime
	}
	var clients []string
	if clientID != "" {
		clients = []string{clientID}
	}
	if err := m.store(ctx, sess, &events.Event{Kind: events.SignedIn, AccountID: sess.AccountID, SessionID: sess.ID,
		ClientIDs: clients, Method: sess.Method, Time: now}); err != nil {
		return nil, err
	}
	m.web.SetCookie(w, m.name, v, 0)
	return sess, nil
}

// member is the session's entry in its account's set.
func (s *Session) member() member {
	return member{raw: newMember(s.ExpiresAt, s.ID, ""), id: s.ID, exp: s.ExpiresAt}
}

// End deletes the browser's session record and cookie: the resident
// signed out. Its tokens stay (a relying party's offline access is its
// own); SessionEnded tells the relying parties that got tokens in it.
// The record, taken, says which account's set to leave: two round trips.
func (m *Manager) End(w http.ResponseWriter, r *http.Request) {
	if sid, ok := m.cookieSession(r); ok {
		ctx := r.Context()
		res, err := m.kv.Do(ctx, store.Take(recordKey(sid)), store.SetMembers(sessRPKey(sid)), store.Delete(sessRPKey(sid)))
		if err == nil {
			err = store.FirstErr(res)
		}
		switch {
		case err != nil:
			m.log.WarnContext(ctx, "session record not deleted", "error", err)
		case res[0].Err == nil:
			if sess, ok := decodeRecord(res[0].Val, sid, m.ttl); ok {
				if err := m.kv.SetRemove(ctx, acctSessKey(sess.AccountID), sess.member().raw); err != nil {
					m.log.WarnContext(ctx, "session index not pruned", "error", err)
				}
				m.announceEnd(ctx, sess.AccountID, sid, res[1].Members, events.ReasonLogout)
			}
		}
	}
	m.web.ClearCookie(w, m.name)
}

// ACRJPKI is the acr of a JPKI certificate sign-in: "aal3", the Digital
// Agency's value for a hardware-bound key unlocked by PIN or biometrics.
const ACRJPKI = "aal3"

// ACRPasskey is the acr of a passkey sign-in: "aal2". NIST SP 800-63B-4
// puts a syncable authenticator at AAL2, and a device-bound one cannot be
// told from it without attestation we do not ask for; only the JPKI
// certificate, a key on a card or phone that no one can copy, is aal3.
const ACRPasskey = "aal2"

// AMR values of a passkey sign-in (RFC 8176): user verification always,
// and hwk for a device-bound key or swk for one its backup flags say may
// be synced.
const (
	AMRUser        = "user"
	AMRHardwareKey = "hwk"
	AMRSoftwareKey = "swk"
)

// NeedsJPKI reports whether only a JPKI sign-in can answer ar: the RP
// asked for aal3 (acr_values) or its tier requires it (MinACR). The login
// page then offers no passkey, and a passkey session does not answer.
func NeedsJPKI(ar *authreq.AuthRequest) bool {
	return !ACRSatisfies(ACRPasskey, ar.ACRValues) || (ar.MinACR != "" && !ACRSatisfies(ACRPasskey, []string{ar.MinACR}))
}

// acrLevels orders the acr values we understand; requested values we do
// not know are ignored (OIDC Core §3.1.2.1: acr_values is voluntary).
var acrLevels = map[string]int{"aal1": 1, "aal2": 2, "aal3": 3}

// ACRSatisfies reports whether a sign-in of acr meets the lowest known
// requested value.
func ACRSatisfies(acr string, requested []string) bool {
	need := 0
	for _, v := range requested {
		if l, ok := acrLevels[v]; ok && (need == 0 || l < need) {
			need = l
		}
	}
	return need == 0 || acrLevels[acr] >= need
}

// Satisfies decides whether sess may answer ar without a new sign-in:
// max_age, acr_values and the subject the RP insists on (subject computes
// the session's sub for the request's client, or fails). A session that
// signed in after the request was made is fresh for it whatever max_age
// says (prompt=login sets max_age to 0, and the sign-in just done for that
// request must count).
func Satisfies(ar *authreq.AuthRequest, sess *Session, now time.Time, subject func(accountID string) (string, error)) bool {
	fresh := !sess.AuthTime.Before(ar.CreatedAt)
	if !fresh {
		if ar.HasPrompt("login") {
			return false
		}
		if ar.MaxAge != nil && now.Sub(sess.AuthTime) > time.Duration(*ar.MaxAge)*time.Second {
			return false
		}
	}
	if !ACRSatisfies(sess.ACR, ar.ACRValues) {
		return false
	}
	if ar.MinACR != "" && !ACRSatisfies(sess.ACR, []string{ar.MinACR}) {
		return false
	}
	if ar.HintSubject != "" {
		sub, err := subject(sess.AccountID)
		if err != nil || sub != ar.HintSubject {
			return false
		}
	}
	return true
}

// LogoutPath is the page that ends the browser's session: reached from
// the end-session endpoint with a signed Logout, or from our own pages.
const LogoutPath = "/logout"

// logoutTTL bounds how long a signed logout value works.
const logoutTTL = 10 * time.Minute

// Logout is a sign-out the end-session endpoint validated, carried to
// /logout in a signed value (SignLogout), so that /logout is never an
// open redirect and never ends a session on a stranger's word.
type Logout struct {
	// Dest is the validated post_logout_redirect_uri (with the RP's
	// state), or "" for our own signed-out page.
	Dest string
	// ClientID is the relying party that asked, "" if none was named.
	ClientID string
	// Confirmed means the RP proved with its id_token_hint that it speaks
	// for the resident of this browser's current session: the session
	// ends without a question. Anyone else's sign-out is asked about
	// (RP-Initiated Logout 1.0 §2).
	Confirmed bool
}

type logoutPayload struct {
	Exp    int64  `json:"e"`
	Dest   string `json:"d,omitempty"`
	Client string `json:"c,omitempty"`
	// Session tags the session a confirmed sign-out is for; empty when
	// the resident must be asked.
	Session string `json:"s,omitempty"`
}

func (m *Manager) logoutMAC(payload []byte) []byte {
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte("watashi logout\x00"))
	h.Write(payload)
	return h.Sum(nil)
}

// sessionTag names the browser's current session cookie in a signed
// logout value, without putting the cookie or the store key in a URL.
func (m *Manager) sessionTag(r *http.Request) string {
	c, err := r.Cookie(m.name)
	if err != nil || c.Value == "" || len(c.Value) > cookieMax {
		return ""
	}
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte("watashi logout session\x00"))
	h.Write([]byte(c.Value))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

// SignLogout signs l for /logout. A confirmed sign-out is bound to the
// session r carries: in any other browser, or after the next sign-in, it
// is asked about again.
func (m *Manager) SignLogout(r *http.Request, l Logout) string {
	p := logoutPayload{Exp: m.now().Add(logoutTTL).Unix(), Dest: l.Dest, Client: l.ClientID}
	if l.Confirmed {
		p.Session = m.sessionTag(r)
	}
	b, _ := json.Marshal(p) // strings and an integer: cannot fail
	return base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(m.logoutMAC(b))
}

// maxLogoutValue bounds what VerifyLogout decodes.
const maxLogoutValue = 4096

// VerifyLogout returns the sign-out SignLogout signed, or false when the
// value was not made by us or has expired. Confirmed holds only in the
// browser and session it was signed for.
func (m *Manager) VerifyLogout(r *http.Request, v string) (Logout, bool) {
	p64, mac64, ok := strings.Cut(v, ".")
	if !ok || len(v) > maxLogoutValue {
		return Logout{}, false
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(p64)
	if err != nil {
		return Logout{}, false
	}
	mac, err := base64.RawURLEncoding.Strict().DecodeString(mac64)
	if err != nil || !hmac.Equal(mac, m.logoutMAC(payload)) {
		return Logout{}, false
	}
	var p logoutPayload
	if err := json.Unmarshal(payload, &p); err != nil || p.Exp == 0 || !m.now().Before(time.Unix(p.Exp, 0)) {
		return Logout{}, false
	}
	tag := m.sessionTag(r)
	return Logout{Dest: p.Dest, ClientID: p.Client, Confirmed: p.Session != "" && tag != "" && hmac.Equal([]byte(p.Session), []byte(tag))}, true
}
