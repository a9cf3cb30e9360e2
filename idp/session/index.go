package session

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/internal/logref"
	"github.com/watashi-id/watashi/idp/store"
)

// The session index lets the provider end what a resident cannot reach
// from one browser: every session of the account, or those one
// authenticator started, and every token family they led to.
//
//	sessref:<sid>      the session's cookie hash, account and authenticator (TTL: the session's)
//	acctsess:<acct>    "<exp ms>:<sid>" of the account's sessions (TTL: the newest session's)
//	sessrp:<sid>       the clients that received tokens in the session (TTL: the session's)
//	acctfam:<acct>     "<exp ms>:<grant>:<authenticator>" of the account's token families
//	                   (TTL: the longest a family lives)
//
// Every member carries its expiry, so the sets hold only what still
// lives: each addition drops the expired members, and beyond the caps the
// oldest session is ended and the oldest family revoked, as a resident
// who signs in that often has abandoned them.
const (
	maxSessions = 32
	maxFamilies = 256
)

func refKey(sid string) string       { return "sessref:" + sid }
func acctSessKey(acct string) string { return "acctsess:" + acct }
func sessRPKey(sid string) string    { return "sessrp:" + sid }
func acctFamKey(acct string) string  { return "acctfam:" + acct }

// Tokens revokes a token family (a grant: every access and refresh
// token one authorization code minted) by its ID.
type Tokens interface {
	RevokeGrant(ctx context.Context, grantID string) error
}

// Publisher appends events to the outbox (events.Outbox).
type Publisher interface {
	Publish(ctx context.Context, e events.Event) error
}

// SetTokens lets the manager revoke token families; familyTTL is the
// longest one lives. Call once before serving.
func (m *Manager) SetTokens(t Tokens, familyTTL time.Duration) { m.tokens, m.tokenTTL = t, familyTTL }

// SetEvents makes the manager publish SignedIn and SessionEnded. Call
// once before serving.
func (m *Manager) SetEvents(p Publisher) { m.events = p }

// PairwiseSID is the sid a relying party of sector sees for the session
// sessionID. The session ID is a secret of 256 random bits that never
// leaves the provider, so a hash of it with the sector is as unlinkable
// across sectors as a keyed MAC, and needs no key of its own that every
// node and the logout tokens would have to share.
func PairwiseSID(sessionID, sector string) string {
	if sessionID == "" {
		return ""
	}
	h := sha256.New()
	h.Write([]byte("watashi sid\x00"))
	h.Write([]byte(sector))
	h.Write([]byte{0})
	h.Write([]byte(sessionID))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:18])
}

type sessionRef struct {
	Hash          string    `json:"h"`
	AccountID     string    `json:"a"`
	Authenticator string    `json:"n,omitempty"`
	Exp           time.Time `json:"x"`
}

// member is one "<exp ms>:<id>[:<rest>]" entry of an index set.
type member struct {
	raw, id, rest string
	exp           time.Time
}

func newMember(exp time.Time, id, rest string) string {
	m := strconv.FormatInt(exp.UnixMilli(), 10) + ":" + id
	if rest != "" {
		m += ":" + rest
	}
	return m
}

func parseMember(raw string) (member, bool) {
	exp, tail, ok := strings.Cut(raw, ":")
	ms, err := strconv.ParseInt(exp, 10, 64)
	if !ok || err != nil {
		return member{}, false
	}
	id, rest, _ := strings.Cut(tail, ":")
	if id == "" {
		return member{}, false
	}
	return member{raw: raw, id: id, rest: rest, exp: time.UnixMilli(ms)}, true
}

// members lists a set's live members, oldest first, and the raw members
// to drop (expired or not ours).
func (m *Manager) members(ctx context.Context, key string) (live []member, dead []string, err error) {
	raw, err := m.kv.SetMembers(ctx, key)
	if err != nil {
		return nil, nil, fmt.Errorf("session: index: %w", err)
	}
	now := m.now()
	for _, r := range raw {
		it, ok := parseMember(r)
		if !ok || !now.Before(it.exp) {
			dead = append(dead, r)
			continue
		}
		live = append(live, it)
	}
	slices.SortFunc(live, func(a, b member) int {
		if c := a.exp.Compare(b.exp); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	return live, dead, nil
}

// prune drops dead members; failing only delays it to the next addition.
func (m *Manager) prune(ctx context.Context, key string, dead []string) {
	if len(dead) == 0 {
		return
	}
	if err := m.kv.SetRemove(ctx, key, dead...); err != nil {
		m.log.WarnContext(ctx, "session index not pruned", "error", err)
	}
}

// indexSession records a new session before its cookie record exists.
func (m *Manager) indexSession(ctx context.Context, sess *Session, hash string) error {
	ref, err := json.Marshal(sessionRef{Hash: hash, AccountID: sess.AccountID, Authenticator: sess.Authenticator, Exp: sess.ExpiresAt})
	if err != nil {
		return err
	}
	if err := m.kv.Set(ctx, refKey(sess.ID), ref, m.ttl); err != nil {
		return fmt.Errorf("session: index: %w", err)
	}
	key := acctSessKey(sess.AccountID)
	if err := m.kv.SetAdd(ctx, key, m.ttl, newMember(sess.ExpiresAt, sess.ID, "")); err != nil {
		return fmt.Errorf("session: index: %w", err)
	}
	live, dead, err := m.members(ctx, key)
	if err != nil {
		return err
	}
	for i := 0; i < len(live)-maxSessions; i++ {
		if live[i].id == sess.ID {
			continue
		}
		if err := m.endSession(ctx, sess.AccountID, live[i].id, events.ReasonExpired, true); err != nil {
			return err
		}
	}
	m.prune(ctx, key, dead)
	return nil
}

// TokensIssued records that a token family (grantID, for clientID, living
// until exp) was minted in session sessionID of accountID, so that
// ending the session names the client and ending the account or the
// authenticator revokes the family. authenticator is the session's
// (authreq.Authentication.Authenticator). Called on every code exchange
// before the tokens leave.
func (m *Manager) TokensIssued(ctx context.Context, sessionID, accountID, authenticator, clientID, grantID string, exp time.Time) error {
	if accountID == "" || grantID == "" || strings.Contains(grantID, ":") {
		return errors.New("session: tokens issued without an account or grant")
	}
	if sessionID != "" && clientID != "" {
		if err := m.kv.SetAdd(ctx, sessRPKey(sessionID), m.ttl, clientID); err != nil {
			return fmt.Errorf("session: index: %w", err)
		}
	}
	key := acctFamKey(accountID)
	if err := m.kv.SetAdd(ctx, key, max(m.tokenTTL, m.ttl), newMember(exp, grantID, authenticator)); err != nil {
		return fmt.Errorf("session: index: %w", err)
	}
	live, dead, err := m.members(ctx, key)
	if err != nil {
		return err
	}
	for i := 0; i < len(live)-maxFamilies; i++ {
		if live[i].id == grantID {
			continue
		}
		if err := m.revoke(ctx, live[i].id); err != nil {
			return err
		}
		dead = append(dead, live[i].raw)
	}
	m.prune(ctx, key, dead)
	return nil
}

func (m *Manager) revoke(ctx context.Context, grantID string) error {
	if m.tokens == nil {
		return errors.New("session: no token revocation wired")
	}
	return m.tokens.RevokeGrant(ctx, grantID)
}

// endSession deletes one session's records and its index entries and
// publishes SessionEnded with the clients that received tokens in it.
// deleteRecord is false when the caller deletes the cookie's record
// itself (logout).
func (m *Manager) endSession(ctx context.Context, accountID, sid, reason string, deleteRecord bool) error {
	var ref sessionRef
	b, err := m.kv.Get(ctx, refKey(sid))
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Gone already: expired, or ended by a concurrent call.
	case err != nil:
		return fmt.Errorf("session: index: %w", err)
	default:
		if err := json.Unmarshal(b, &ref); err != nil {
			return fmt.Errorf("session: index record: %w", err)
		}
	}
	if ref.AccountID != "" && ref.AccountID != accountID {
		return errors.New("session: index names another account")
	}
	clients, err := m.kv.SetMembers(ctx, sessRPKey(sid))
	if err != nil {
		return fmt.Errorf("session: index: %w", err)
	}
	keys := []string{refKey(sid), sessRPKey(sid)}
	if deleteRecord && ref.Hash != "" {
		keys = append(keys, recordKey(ref.Hash))
	}
	if err := m.kv.Delete(ctx, keys...); err != nil {
		return fmt.Errorf("session: end: %w", err)
	}
	if raw, err := m.kv.SetMembers(ctx, acctSessKey(accountID)); err == nil {
		var gone []string
		for _, r := range raw {
			if it, ok := parseMember(r); ok && it.id == sid {
				gone = append(gone, r)
			}
		}
		m.prune(ctx, acctSessKey(accountID), gone)
	}
	if ref.Hash == "" {
		return nil // nothing ended here, nothing to announce
	}
	slices.Sort(clients)
	m.publish(ctx, events.Event{Kind: events.SessionEnded, AccountID: accountID, SessionID: sid,
		ClientIDs: clients, Reason: reason})
	return nil
}

// SignOutEverywhere ends every session of the account and revokes every
// token family it holds, publishing SessionEnded for each session. It
// goes on past a failure and reports every one: what it did end stays
// ended, and the caller may run it again.
func (m *Manager) SignOutEverywhere(ctx context.Context, accountID, reason string) error {
	if accountID == "" {
		return errors.New("session: sign out everywhere without an account")
	}
	return m.end(ctx, accountID, reason, func(string) bool { return true })
}

// EndAuthenticator ends the sessions of the account that authenticator
// started and revokes the token families they led to (also those of its
// sessions that ended before), publishing SessionEnded for each session.
func (m *Manager) EndAuthenticator(ctx context.Context, accountID, authenticator, reason string) error {
	if accountID == "" || authenticator == "" {
		return errors.New("session: end without an account or authenticator")
	}
	return m.end(ctx, accountID, reason, func(a string) bool { return a == authenticator })
}

func (m *Manager) end(ctx context.Context, accountID, reason string, match func(authenticator string) bool) error {
	var errs []error
	sessions, _, err := m.members(ctx, acctSessKey(accountID))
	if err != nil {
		return err
	}
	ended := 0
	for _, s := range sessions {
		var ref sessionRef
		if b, err := m.kv.Get(ctx, refKey(s.id)); err == nil {
			if json.Unmarshal(b, &ref) != nil {
				continue
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		if !match(ref.Authenticator) {
			continue
		}
		if err := m.endSession(ctx, accountID, s.id, reason, true); err != nil {
			errs = append(errs, err)
			continue
		}
		ended++
	}
	families, _, err := m.members(ctx, acctFamKey(accountID))
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	var revoked []string
	for _, f := range families {
		if !match(f.rest) {
			continue
		}
		if err := m.revoke(ctx, f.id); err != nil {
			errs = append(errs, err)
			continue
		}
		revoked = append(revoked, f.raw)
	}
	m.prune(ctx, acctFamKey(accountID), revoked)
	m.log.InfoContext(ctx, "sessions ended", logref.Account(accountID), "reason", reason,
		"sessions", ended, "token_families", len(revoked), "failures", len(errs))
	return errors.Join(errs...)
}

// publish appends an event; a failure is logged, never the resident's:
// the session ended whether or not the outbox heard of it.
func (m *Manager) publish(ctx context.Context, e events.Event) {
	if m.events == nil {
		return
	}
	if err := m.events.Publish(ctx, e); err != nil {
		m.log.ErrorContext(ctx, "event not published", "kind", string(e.Kind), "error", err)
	}
}
