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
//	sess:<sid>         the session (session.go), found from the cookie,
//	                   whose hash is the session ID (TTL: the session's)
//	acctsess:<acct>    "<exp ms>:<sid>" of the account's sessions (TTL: the newest session's)
//	sessrp:<sid>       the clients that received tokens in the session (TTL: the session's)
//	acctfam:<acct>     "<exp ms>:<grant>:<authenticator>" of the account's token families
//	                   (TTL: the longest a family lives)
//	acctfamn:<acct>    how many families were added since the key was made
//
// The session ID names the record itself, so ending a session needs no
// reference record from ID to cookie hash: the account's set and the
// ID are enough.
//
// Every member carries its expiry, so the sets hold only what still
// lives: beyond the caps the oldest session is ended and the oldest
// family revoked, as a resident who signs in that often has abandoned
// them. A sign-in adds its session and lists the set in the same round
// trip, so the session cap is exact; when it is passed the oldest are
// ended down to maxSessions-sessionSlack at once, so that an account
// that signs in all the time pays for the endings on one sign-in in
// sessionSlack+1, not on every one. Expired sessions leave the set with
// those endings, or once maxDead of them gathered. Families are pruned
// on every pruneEvery-th addition and on the first one after the counter
// expired (the counter says which), so that a code exchange does not
// read the whole set: the family set holds at most
// maxFamilies+pruneEvery-1.
const (
	maxSessions  = 32
	sessionSlack = 8
	maxDead      = 8
	maxFamilies  = 256
	pruneEvery   = 16
)

func acctSessKey(acct string) string { return "acctsess:" + acct }
func sessRPKey(sid string) string    { return "sessrp:" + sid }
func acctFamKey(acct string) string  { return "acctfam:" + acct }
func acctFamNKey(acct string) string { return "acctfamn:" + acct }

// Tokens revokes a token family (a grant: every access and refresh
// token one authorization code minted) by its ID.
type Tokens interface {
	RevokeGrant(ctx context.Context, grantID string) error
}

// Publisher appends events to the outbox (events.Outbox): alone, or as an
// operation of the batch that makes the change the event tells.
type Publisher interface {
	Publish(ctx context.Context, e events.Event) error
	AppendOp(e events.Event) (store.Op, error)
	Appended(res store.Result) error
}

// SetTokens lets the manager revoke token families; familyTTL is the
// longest one lives. Call once before serving.
func (m *Manager) SetTokens(t Tokens, familyTTL time.Duration) { m.tokens, m.tokenTTL = t, familyTTL }

// SetEvents makes the manager publish SignedIn and SessionEnded. Call
// once before serving.
func (m *Manager) SetEvents(p Publisher) { m.events = p }

// PairwiseSID is the sid a relying party of sector sees for the session
// sessionID. The session ID is a secret as strong as the cookie's 256
// random bits (it is their SHA-256) that never leaves the provider, so a
// hash of it with the sector is as unlinkable across sectors as a keyed
// MAC, and needs no key of its own that every node and the logout tokens
// would have to share.
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

// split sorts a set's raw members into the live ones, oldest first, and
// those to drop (expired or not ours).
func (m *Manager) split(raw []string) (live []member, dead []string) {
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
	return live, dead
}

// members lists a set's live members, oldest first, and the raw members
// to drop.
func (m *Manager) members(ctx context.Context, key string) (live []member, dead []string, err error) {
	raw, err := m.kv.SetMembers(ctx, key)
	if err != nil {
		return nil, nil, fmt.Errorf("session: index: %w", err)
	}
	live, dead = m.split(raw)
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

// store writes a new session and its index entry, and keeps the
// account's sessions within the cap, in one round trip unless the cap
// or the expired entries call for endings. The cookie is not set yet:
// a record written by a sign-in that then fails is one no browser can
// present, and it is removed at once all the same.
func (m *Manager) store(ctx context.Context, sess *Session, event *events.Event) error {
	rec, err := encodeRecord(sess)
	if err != nil {
		return err
	}
	key := acctSessKey(sess.AccountID)
	mine := newMember(sess.ExpiresAt, sess.ID, "")
	ops := []store.Op{
		store.SetAdd(key, m.ttl, mine),
		store.Set(recordKey(sess.ID), rec, m.ttl),
		store.SetMembers(key)}
	// The sign-in's event rides in the same round trip. Should the
	// sign-in then fail, the event still tells a sign-in that the
	// resident's credential made.
	if event != nil && m.events != nil {
		if op, err := m.events.AppendOp(*event); err != nil {
			m.log.ErrorContext(ctx, "event not published", "kind", string(event.Kind), "error", err)
		} else {
			ops = append(ops, op)
		}
	}
	res, err := m.kv.Do(ctx, ops...)
	if err == nil && len(res) > 3 {
		if perr := m.events.Appended(res[3]); perr != nil {
			m.log.ErrorContext(ctx, "event not published", "kind", string(event.Kind), "error", perr)
		}
		res = res[:3]
	}
	if err == nil {
		err = store.FirstErr(res)
	}
	if err != nil {
		m.discard(ctx, sess.ID, key, mine)
		return fmt.Errorf("session: store: %w", err)
	}
	live, dead := m.split(res[2].Members)
	if len(live) <= maxSessions {
		if len(dead) >= maxDead {
			m.prune(ctx, key, dead)
		}
		return nil
	}
	var oldest []member
	for _, it := range live[:len(live)-(maxSessions-sessionSlack)] {
		if it.id != sess.ID {
			oldest = append(oldest, it)
		}
	}
	if err := m.endSessions(ctx, sess.AccountID, oldest, dead, events.ReasonExpired); err != nil {
		m.discard(ctx, sess.ID, key, mine)
		return err
	}
	return nil
}

// discard removes a session whose sign-in failed before its cookie was
// set; a failure leaves records no cookie can reach, which expire.
func (m *Manager) discard(ctx context.Context, sid, key, mine string) {
	ctx = context.WithoutCancel(ctx)
	res, err := m.kv.Do(ctx, store.Delete(recordKey(sid)), store.SetRemove(key, mine))
	if err == nil {
		err = store.FirstErr(res)
	}
	if err != nil {
		m.log.WarnContext(ctx, "failed sign-in's session not removed", "error", err)
	}
}

// TokensIssued records that a token family (grantID, for clientID, living
// until exp) was minted in session sessionID of accountID, so that
// ending the session names the client and ending the account or the
// authenticator revokes the family. authenticator is the session's
// (authreq.Authentication.Authenticator). Called on every code exchange
// before the tokens leave: one round trip, and on one exchange in
// pruneEvery two more.
func (m *Manager) TokensIssued(ctx context.Context, sessionID, accountID, authenticator, clientID, grantID string, exp time.Time) error {
	if accountID == "" || grantID == "" || strings.Contains(grantID, ":") {
		return errors.New("session: tokens issued without an account or grant")
	}
	key, ttl := acctFamKey(accountID), max(m.tokenTTL, m.ttl)
	ops := make([]store.Op, 0, 3)
	if sessionID != "" && clientID != "" {
		ops = append(ops, store.SetAdd(sessRPKey(sessionID), m.ttl, clientID))
	}
	ops = append(ops, store.SetAdd(key, ttl, newMember(exp, grantID, authenticator)), store.Incr(acctFamNKey(accountID), ttl))
	res, err := m.kv.Do(ctx, ops...)
	if err == nil {
		err = store.FirstErr(res)
	}
	if err != nil {
		return fmt.Errorf("session: index: %w", err)
	}
	// The first addition after the counter expired prunes too: the set
	// may have outlived it, with what its last pruneEvery additions left.
	if n := res[len(res)-1].N; n != 1 && n%pruneEvery != 0 {
		return nil
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

// perBatch is how many sessions one batch ends: four operations each
// and the index's removal.
const perBatch = (store.MaxBatch - 1) / 4

// legacyRefKey is where a session made before its record was keyed by
// its ID kept its cookie hash ({"h": hex SHA-256 of the cookie}, as
// "sess:<hash>" keyed the record). Ending a session reads it too, and
// deletes it with the record it names, so that while such sessions live
// on (and nodes that still make them serve), signing out everywhere and
// the caps still reach them.
func legacyRefKey(sid string) string { return "sessref:" + sid }

// legacyRecordKey reads a legacy reference: the record key it names.
func legacyRecordKey(ref []byte) (string, bool) {
	var r struct {
		Hash string `json:"h"`
	}
	if json.Unmarshal(ref, &r) != nil || len(r.Hash) != 64 || strings.Trim(r.Hash, "0123456789abcdef") != "" {
		return "", false
	}
	return "sess:" + r.Hash, true
}

// endSessions ends sessions of accountID, given as members of its set:
// their records, their client lists and their index entries go (with
// the raw members in drop, dead ones), in one round trip per perBatch
// sessions. SessionEnded names the clients that received tokens in each
// session whose record this call took: of two concurrent enders only
// one announces it.
func (m *Manager) endSessions(ctx context.Context, accountID string, sessions []member, drop []string, reason string) error {
	var errs []error
	for len(sessions) > 0 || len(drop) > 0 {
		chunk := sessions[:min(len(sessions), perBatch)]
		sessions = sessions[len(chunk):]
		ops := make([]store.Op, 0, 4*len(chunk)+1)
		gone := drop
		drop = nil
		for _, s := range chunk {
			ops = append(ops, store.Take(recordKey(s.id)), store.SetMembers(sessRPKey(s.id)), store.Delete(sessRPKey(s.id)),
				store.Get(legacyRefKey(s.id)))
			gone = append(gone, s.raw)
		}
		ops = append(ops, store.SetRemove(acctSessKey(accountID), gone...))
		res, err := m.kv.Do(ctx, ops...)
		if err != nil {
			errs = append(errs, fmt.Errorf("session: end: %w", err))
			continue
		}
		var legacy []store.Op
		for i, s := range chunk {
			took, clients, del, ref := res[4*i], res[4*i+1], res[4*i+2], res[4*i+3]
			if err := store.FirstErr([]store.Result{took, clients, del, ref}); err != nil {
				errs = append(errs, fmt.Errorf("session: end: %w", err))
				continue
			}
			if ref.Err == nil {
				if key, ok := legacyRecordKey(ref.Val); ok {
					legacy = append(legacy, store.Delete(key), store.Delete(legacyRefKey(s.id)))
					took.Err = nil
				}
			}
			if took.Err != nil {
				continue // gone already: expired, or ended by a concurrent call
			}
			m.announceEnd(ctx, accountID, s.id, clients.Members, reason)
		}
		if err := res[len(res)-1].Err; err != nil {
			// The records are gone; the entries only count against the
			// cap until they expire or the next ending removes them.
			m.log.WarnContext(ctx, "session index not pruned", "error", err)
		}
		if len(legacy) > 0 {
			res, err := m.kv.Do(ctx, legacy...)
			if err == nil {
				err = store.FirstErr(res)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("session: end: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) announceEnd(ctx context.Context, accountID, sid string, clients []string, reason string) {
	slices.Sort(clients)
	m.publish(ctx, events.Event{Kind: events.SessionEnded, AccountID: accountID, SessionID: sid,
		ClientIDs: clients, Reason: reason})
}

// SignOutEverywhere ends every session of the account and revokes every
// token family it holds, publishing SessionEnded for each session. It
// goes on past a failure and reports every one: what it did end stays
// ended, and the caller may run it again.
func (m *Manager) SignOutEverywhere(ctx context.Context, accountID, reason string) error {
	if accountID == "" {
		return errors.New("session: sign out everywhere without an account")
	}
	return m.end(ctx, accountID, reason, "")
}

// EndAuthenticator ends the sessions of the account that authenticator
// started and revokes the token families they led to (also those of its
// sessions that ended before), publishing SessionEnded for each session.
func (m *Manager) EndAuthenticator(ctx context.Context, accountID, authenticator, reason string) error {
	if accountID == "" || authenticator == "" {
		return errors.New("session: end without an account or authenticator")
	}
	return m.end(ctx, accountID, reason, authenticator)
}

// end ends the account's sessions and families, all of them or
// (authenticator not "") those that authenticator started.
func (m *Manager) end(ctx context.Context, accountID, reason, authenticator string) error {
	match := func(a string) bool { return authenticator == "" || a == authenticator }
	res, err := m.kv.Do(ctx, store.SetMembers(acctSessKey(accountID)), store.SetMembers(acctFamKey(accountID)))
	if err == nil {
		err = store.FirstErr(res)
	}
	if err != nil {
		return fmt.Errorf("session: index: %w", err)
	}
	var errs []error
	sessions, dead := m.split(res[0].Members)
	if authenticator != "" {
		// Which authenticator started a session is in its record.
		dead = nil
		if sessions, err = m.startedBy(ctx, sessions, authenticator); err != nil {
			errs = append(errs, err)
		}
	}
	if err := m.endSessions(ctx, accountID, sessions, dead, reason); err != nil {
		errs = append(errs, err)
	}
	families, _ := m.split(res[1].Members)
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
		"sessions", len(sessions), "token_families", len(revoked), "failures", len(errs))
	return errors.Join(errs...)
}

// startedBy keeps the sessions whose records (or legacy references) say
// authenticator started them, reading them in batches; a session whose
// record is gone has nothing left to end.
func (m *Manager) startedBy(ctx context.Context, sessions []member, authenticator string) ([]member, error) {
	var out []member
	var errs []error
	for chunk := range slices.Chunk(sessions, store.MaxBatch/2) {
		ops := make([]store.Op, 0, 2*len(chunk))
		for _, s := range chunk {
			ops = append(ops, store.Get(recordKey(s.id)), store.Get(legacyRefKey(s.id)))
		}
		res, err := m.kv.Do(ctx, ops...)
		if err != nil {
			errs = append(errs, fmt.Errorf("session: index: %w", err))
			continue
		}
		for i, s := range chunk {
			rec, ref := res[2*i], res[2*i+1]
			if err := store.FirstErr([]store.Result{rec, ref}); err != nil {
				errs = append(errs, fmt.Errorf("session: index: %w", err))
				continue
			}
			var started string
			if rec.Err == nil {
				if sess, ok := decodeRecord(rec.Val, s.id, m.ttl); ok {
					started = sess.Authenticator
				}
			} else if ref.Err == nil {
				var r struct {
					Authenticator string `json:"n"`
				}
				if json.Unmarshal(ref.Val, &r) == nil {
					started = r.Authenticator
				}
			}
			if started == authenticator {
				out = append(out, s)
			}
		}
	}
	return out, errors.Join(errs...)
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
