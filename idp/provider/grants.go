package provider

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
)

// A grant is everything one authorization code minted: its access tokens
// and, with offline_access, a family of rotating refresh tokens. The grant
// ID is the auth request's ID. Every token key carries it as a Redis
// Cluster hash tag, and every token use reads the grant record, so that
// revoking a whole family is a single write of that record.
//
// Access tokens are self-contained: the token ID carries the grant, a
// random part, the times it was issued and expires, its scopes and the
// account (so that userinfo reads the account with the grant), and
// the library seals "ID:subject" with AES-256-GCM under the token key
// before an RP sees it, so no one else can make or alter one. No record
// is written per access token. A token is good while its grant is, unless
// it was revoked on its own (RFC 7009): that leaves a marker under the
// grant's hash tag until the token would have expired, read in the same
// round trip as the grant and the account.

// grants stores grants and their tokens.
type grants struct {
	// issued records a new family in the account's session index
	// (session.Manager.TokensIssued) before its tokens leave.
	issued  func(ctx context.Context, sessionID, accountID, authenticator, clientID, grantID string, exp time.Time) error
	kv      store.KV
	ttl     TTLs
	clock   func() time.Time
	log     *slog.Logger
	metrics *providerMetrics
}

func (gr *grants) now() time.Time { return gr.clock() }

func grantKey(grant string) string { return "grant:{" + grant + "}" }

// accessRevokedKey marks one access token revoked before its time.
func accessRevokedKey(grant, rnd string) string { return "atrev:{" + grant + "}:" + rnd }

func refreshKey(grant, hash string) string { return "rt:{" + grant + "}:" + hash }

func accountGrantsKey(acct, client string) string { return "acctgrants:" + acct + ":" + client }

// tokenSep joins the grant ID and the random part of access token IDs
// and refresh token values; neither part can contain it (base64url).
const tokenSep = "."

type grantRecord struct {
	ID        string   `json:"id"`
	ClientID  string   `json:"client_id"`
	AccountID string   `json:"account_id"`
	Subject   string   `json:"sub"`
	Scopes    []string `json:"scopes"`
	// Claims is the `claims` request parameter of the authorization and
	// Granted what the resident let it release: with the scopes of the
	// token at hand, what every later release resolves the request from.
	Claims   *consent.ClaimsRequest `json:"claims,omitempty"`
	Granted  []string               `json:"granted,omitempty"`
	ACR      string                 `json:"acr,omitempty"`
	AMR      []string               `json:"amr,omitempty"`
	AuthTime time.Time              `json:"auth_time,omitzero"`
	// SessionID is the SSO session the code came from: the ID token's
	// sid derives from it, refreshed ones included.
	SessionID string `json:"session_id,omitempty"`
	// Method is how the resident signed in ("jpki:<token label>" or
	// "passkey:<id>"): a family whose label the operator blocks refreshes
	// no more.
	Method  string `json:"method,omitempty"`
	Revoked bool   `json:"revoked,omitempty"`
	// Exp ends the family: refresh tokens do not slide it, so a resident
	// signs in with the card again at least once per RefreshTokenTTL.
	Exp time.Time `json:"exp"`
	// Code is the digest of the code that minted the grant (codeDigest):
	// the record is the code's tombstone, and a second presentation of
	// the code revokes it only when it comes from the code's own client
	// with its redirect URI and PKCE verifier.
	Code string `json:"code,omitempty"`
}

// accessRecord is an access token as its ID and its grant describe it.
type accessRecord struct {
	Grant    string
	Account  string
	ClientID string
	Subject  string
	Scopes   []string
	Issued   time.Time
	Exp      time.Time
}

// accessID is the ID of an access token: grant, random part, issued and
// expiry (Unix seconds, base 36), scopes (base64url of the
// space-separated list) and account, joined by tokenSep.
func accessID(grant, rnd string, iat, exp time.Time, scopes []string, acct string) string {
	return strings.Join([]string{grant, rnd, strconv.FormatInt(iat.Unix(), 36), strconv.FormatInt(exp.Unix(), 36),
		base64.RawURLEncoding.EncodeToString([]byte(strings.Join(scopes, " "))), acct}, tokenSep)
}

// parseAccessID reads an access token ID. Only IDs the provider sealed
// reach it, but it checks every part anyway.
func parseAccessID(id string) (rec accessRecord, rnd string, ok bool) {
	if len(id) > maxAccessID || strings.ContainsAny(id, ":{}") {
		return accessRecord{}, "", false
	}
	parts := strings.Split(id, tokenSep)
	if len(parts) != 6 || parts[0] == "" || parts[1] == "" || parts[5] == "" {
		return accessRecord{}, "", false
	}
	iat, err1 := strconv.ParseInt(parts[2], 36, 64)
	exp, err2 := strconv.ParseInt(parts[3], 36, 64)
	sc, err3 := base64.RawURLEncoding.DecodeString(parts[4])
	if err1 != nil || err2 != nil || err3 != nil || iat <= 0 || exp < iat {
		return accessRecord{}, "", false
	}
	rec = accessRecord{Grant: parts[0], Account: parts[5], Issued: time.Unix(iat, 0).UTC(), Exp: time.Unix(exp, 0).UTC()}
	if len(sc) > 0 {
		rec.Scopes = strings.Split(string(sc), " ")
	}
	return rec, parts[1], true
}

// maxAccessID bounds an access token ID: a grant ID, a short random
// part, two times and the scopes a client may hold.
const maxAccessID = 1024

type refreshRecord struct {
	Grant  string    `json:"grant"`
	Used   bool      `json:"used,omitempty"`
	Issued time.Time `json:"iat"`
}

// splitToken returns the grant of an access token ID or refresh token.
func splitToken(v string) (grant, rest string, ok bool) {
	grant, rest, ok = strings.Cut(v, tokenSep)
	if !ok || grant == "" || rest == "" || len(v) > 256 || strings.ContainsAny(v, ":{}") {
		return "", "", false
	}
	return grant, rest, true
}

func ttlUntil(now, exp time.Time) time.Duration {
	return max(exp.Sub(now), time.Second)
}

// newGrant is the grant of a code exchange as built before anything is
// written: the record, and with offline its first refresh token.
type newGrant struct {
	g   *grantRecord
	b   []byte        // the record as stored
	ttl time.Duration // the record's lifetime in the store
	rt  string        // the first refresh token, "" without offline
	rtw store.Op      // the write of its record
}

// prepare builds the grant of a code exchange of ar. code is the digest
// of the spent code (codeDigest): the record is also the code's
// tombstone, so it lives at least as long as the code could be
// presented again.
func (gr *grants) prepare(ar *authreq.AuthRequest, offline bool, code string) (*newGrant, error) {
	now := gr.now().UTC()
	ttl := gr.ttl.AccessToken
	if offline {
		ttl = max(gr.ttl.RefreshToken, gr.ttl.AccessToken)
	}
	// auth_time to the second, as ID tokens carry it; the expiry to the
	// millisecond, as the account's index orders grants by it (a second
	// would leave the families of one busy second in no order, and
	// pruning might take a new one for the oldest).
	g := &grantRecord{
		ID: ar.ID, ClientID: ar.ClientID, AccountID: ar.AccountID, Subject: ar.Subject,
		Scopes: ar.Scopes, Claims: ar.Claims, Granted: ar.Granted, ACR: ar.ACR, AMR: ar.AMR, AuthTime: ar.AuthTime.Truncate(time.Second),
		SessionID: ar.SessionID, Method: ar.Method, Exp: now.Add(ttl).Truncate(time.Millisecond), Code: code,
	}
	b, err := json.Marshal(g)
	if err != nil {
		return nil, err
	}
	ng := &newGrant{g: g, b: b, ttl: max(ttl, gr.ttl.Code)}
	if offline {
		if ng.rt, ng.rtw, err = gr.newRefresh(g); err != nil {
			return nil, err
		}
	}
	return ng, nil
}

// The positions of a new grant's writes in the batch of writeOps.
const (
	opIndex = iota
	opGrant
	opRefresh
)

// writeOps is the batch that writes ng, in this order: the grant joins
// its account's index for the client first, so that a withdrawal running
// meanwhile sees it (and its revoked record then stops this exchange),
// and the index's size after the add says whether to prune it
// (prunes); the record is written with
// SetNX, which is the single-use point of the code (of any number of
// exchanges of one code, exactly one writes it, and a replay's or a
// withdrawal's revoked record written before it stops the exchange);
// last the first refresh token.
func (gr *grants) writeOps(ng *newGrant) []store.Op {
	g, ttl := ng.g, max(gr.ttl.RefreshToken, gr.ttl.AccessToken)
	ops := []store.Op{
		store.SetAdd(accountGrantsKey(g.AccountID, g.ClientID), ttl, indexMember(g)),
		store.SetNX(grantKey(g.ID), ng.b, ng.ttl),
	}
	if ng.rt != "" {
		ops = append(ops, ng.rtw)
	}
	return ops
}

// undoOps removes what writeOps wrote besides the grant record: the
// refresh token and the index member.
func (gr *grants) undoOps(ng *newGrant) []store.Op {
	ops := []store.Op{store.SetRemove(accountGrantsKey(ng.g.AccountID, ng.g.ClientID), indexMember(ng.g))}
	if ng.rt != "" {
		ops = append(ops, store.Delete(ng.rtw.Key))
	}
	return ops
}

// The index acctgrants:<account>:<client> lists an account's grants for
// one client, so that withdrawing the client revokes them. Each member
// carries its grant's expiry ("<unix ms exp>:<grant>"). A new grant that
// brings the index to maxLiveGrants + indexSlack members prunes it: the
// expired members go, and the oldest live grants beyond maxLiveGrants are
// revoked. So the index never holds more than maxLiveGrants + indexSlack
// - 1 members after an exchange, at most that many grants live, and an
// exchange lists it only once in indexSlack when it is full (a resident
// who signs in a few times a day at an RP never lists it). Its TTL is the
// longest a grant lives, from the newest grant.
const (
	maxLiveGrants = 32
	indexSlack    = 8
)

// prunes reports whether an index of n members after an add is pruned.
func prunes(n int64) bool { return n >= maxLiveGrants+indexSlack }

func indexMember(g *grantRecord) string { return strconv.FormatInt(g.Exp.UnixMilli(), 10) + ":" + g.ID }

// indexed is one member of the index.
type indexed struct {
	member, grant string
	exp           time.Time
}

// parseMember reads a member; ok is false for one that is not ours.
func parseMember(m string) (indexed, bool) {
	exp, grant, ok := strings.Cut(m, ":")
	unix, err := strconv.ParseInt(exp, 10, 64)
	if !ok || err != nil || grant == "" || strings.ContainsAny(grant, ":{}") {
		return indexed{}, false
	}
	return indexed{member: m, grant: grant, exp: time.UnixMilli(unix)}, true
}

// prune drops the expired members of g's index and revokes the oldest
// live grants beyond maxLiveGrants, never g itself.
func (gr *grants) prune(ctx context.Context, g *grantRecord) error {
	key := accountGrantsKey(g.AccountID, g.ClientID)
	members, err := gr.kv.SetMembers(ctx, key)
	if err != nil {
		return fmt.Errorf("provider: list grants: %w", err)
	}
	live, dead := gr.sortIndex(ctx, members)
	if over := len(live) - maxLiveGrants; over > 0 {
		// The oldest go, never the one being made: a resident who signed
		// in this often at one RP has abandoned them (each sign-in is a
		// new family).
		others := slices.DeleteFunc(live, func(it indexed) bool { return it.grant == g.ID })
		var old []string
		for _, it := range others[:min(over, len(others))] {
			old = append(old, it.grant)
			dead = append(dead, it.member)
		}
		if err := gr.revokeAll(ctx, old); err != nil {
			return err
		}
	}
	if len(dead) > 0 {
		if err := gr.kv.SetRemove(ctx, key, dead...); err != nil {
			// The next pruning drops them; nothing is wrong meanwhile.
			gr.log.WarnContext(ctx, "expired grants not pruned from the index", "error", err)
		}
	}
	return nil
}

// sortIndex splits members into live grants, oldest first, and members
// to drop: expired, or not grants at all. A bare grant ID is a member
// written before members carried their expiry: its record says whether
// it still lives.
func (gr *grants) sortIndex(ctx context.Context, members []string) (live []indexed, dead []string) {
	now := gr.now()
	for _, m := range members {
		it, ok := parseMember(m)
		if !ok {
			if it, ok = gr.legacyMember(ctx, m); !ok {
				dead = append(dead, m)
				continue
			}
		}
		if !now.Before(it.exp) {
			dead = append(dead, m)
			continue
		}
		live = append(live, it)
	}
	slices.SortFunc(live, func(a, b indexed) int {
		if c := a.exp.Compare(b.exp); c != 0 {
			return c
		}
		return strings.Compare(a.grant, b.grant)
	})
	return live, dead
}

// legacyMember reads the expiry of a bare grant ID from its record. A
// record that cannot be read is taken to live as long as any grant may,
// so that a withdrawal still revokes it.
func (gr *grants) legacyMember(ctx context.Context, m string) (indexed, bool) {
	if m == "" || strings.ContainsAny(m, ":{}") {
		return indexed{}, false
	}
	b, err := gr.kv.Get(ctx, grantKey(m))
	if errors.Is(err, store.ErrNotFound) {
		return indexed{}, false
	}
	var g grantRecord
	if err != nil || json.Unmarshal(b, &g) != nil {
		return indexed{member: m, grant: m, exp: gr.now().Add(max(gr.ttl.RefreshToken, gr.ttl.AccessToken))}, true
	}
	if g.Revoked {
		return indexed{}, false
	}
	return indexed{member: m, grant: m, exp: g.Exp}, true
}

// loadGrant returns a live grant: present, not revoked, not expired.
func (gr *grants) load(ctx context.Context, id string) (*grantRecord, error) {
	b, err := gr.kv.Get(ctx, grantKey(id))
	return gr.decode(b, err)
}

// decode checks a grant record as read.
func (gr *grants) decode(b []byte, err error) (*grantRecord, error) {
	if errors.Is(err, store.ErrNotFound) {
		return nil, errTokenInactive
	}
	if err != nil {
		return nil, fmt.Errorf("provider: load grant: %w", err)
	}
	g := new(grantRecord)
	if err := json.Unmarshal(b, g); err != nil {
		return nil, fmt.Errorf("provider: grant record: %w", err)
	}
	if g.Revoked {
		return nil, errGrantRevoked
	}
	if !gr.now().Before(g.Exp) {
		return nil, errTokenInactive
	}
	return g, nil
}

// revokeGrant marks a grant revoked: one write kills every access and
// refresh token it minted. A grant not written yet (its code exchange is
// still running) gets a revoked record, which makes the exchange fail.
func (gr *grants) revoke(ctx context.Context, id string) error {
	return gr.revokeAll(ctx, []string{id})
}

// revokeAll is revoke of several grants in two round trips per
// store.MaxBatch of them: their records are read together, then the
// revoked ones written together.
func (gr *grants) revokeAll(ctx context.Context, ids []string) error {
	for chunk := range slices.Chunk(ids, store.MaxBatch) {
		if err := gr.revokeBatch(ctx, chunk); err != nil {
			return err
		}
	}
	return nil
}

func (gr *grants) revokeBatch(ctx context.Context, ids []string) error {
	now := gr.now().UTC()
	reads := make([]store.Op, len(ids))
	for i, id := range ids {
		reads[i] = store.Get(grantKey(id))
	}
	res, err := gr.kv.Do(ctx, reads...)
	if err != nil {
		return fmt.Errorf("provider: load grant: %w", err)
	}
	var writes []store.Op
	for i, id := range ids {
		g := &grantRecord{ID: id, Exp: now.Add(gr.ttl.Code + gr.ttl.AccessToken)}
		switch err := res[i].Err; {
		case err == nil:
			if err := json.Unmarshal(res[i].Val, g); err != nil {
				return fmt.Errorf("provider: grant record: %w", err)
			}
			if g.Revoked {
				continue
			}
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("provider: load grant: %w", err)
		}
		g.Revoked = true
		b, err := json.Marshal(g)
		if err != nil {
			return err
		}
		writes = append(writes, store.Set(grantKey(id), b, ttlUntil(now, g.Exp)))
	}
	if len(writes) == 0 {
		return nil
	}
	res, err = gr.kv.Do(ctx, writes...)
	if err == nil {
		err = store.FirstErr(res)
	}
	if err != nil {
		return fmt.Errorf("provider: revoke grant: %w", err)
	}
	gr.metrics.revoked.Add(float64(len(writes)))
	return nil
}

// revokeAccountClient revokes every live grant an account gave a client,
// e.g. when the resident withdraws consent for that RP: at most
// maxLiveGrants records are written, expired grants are only dropped from
// the index.
func (gr *grants) revokeAccountClient(ctx context.Context, accountID, clientID string) error {
	key := accountGrantsKey(accountID, clientID)
	members, err := gr.kv.SetMembers(ctx, key)
	if err != nil {
		return fmt.Errorf("provider: list grants: %w", err)
	}
	live, _ := gr.sortIndex(ctx, members)
	ids := make([]string, len(live))
	for i, it := range live {
		ids[i] = it.grant
	}
	if err := gr.revokeAll(ctx, ids); err != nil {
		return err
	}
	if len(members) == 0 {
		return nil
	}
	if err := gr.kv.SetRemove(ctx, key, members...); err != nil {
		return fmt.Errorf("provider: clear grant index: %w", err)
	}
	return nil
}

// mintAccess makes an access token of g for scopes: nothing is written.
func (gr *grants) mintAccess(_ context.Context, g *grantRecord, scopes []string) (string, time.Time, error) {
	now := gr.now().UTC().Truncate(time.Second)
	exp := now.Add(gr.ttl.AccessToken)
	if g.Exp.Before(exp) {
		exp = g.Exp.Truncate(time.Second)
	}
	gr.metrics.tokens.WithLabelValues("access").Inc()
	return accessID(g.ID, ids.Short(), now, exp, scopes, g.AccountID), exp, nil
}

// newRefresh makes the next refresh token of g and the batch operation
// that stores it.
func (gr *grants) newRefresh(g *grantRecord) (string, store.Op, error) {
	now := gr.now().UTC()
	value := g.ID + tokenSep + ids.Long()
	b, err := json.Marshal(refreshRecord{Grant: g.ID, Issued: now})
	if err != nil {
		return "", store.Op{}, err
	}
	return value, store.Set(refreshKey(g.ID, ids.Hash(value)), b, ttlUntil(now, g.Exp)), nil
}

// liveAccess resolves an access token ID to its record and live grant,
// reading in one round trip the grant, the token's revocation marker and
// whatever extra names (reads of the token's account: extra gets the
// account ID and its results come back last).
func (gr *grants) liveAccess(ctx context.Context, tokenID string, extra func(acct string) []store.Op) (*accessRecord, *grantRecord, []store.Result, error) {
	at, rnd, ok := parseAccessID(tokenID)
	if !ok || !gr.now().Before(at.Exp) {
		return nil, nil, nil, errTokenInactive
	}
	ops := []store.Op{store.Get(grantKey(at.Grant)), store.Get(accessRevokedKey(at.Grant, rnd))}
	if extra != nil {
		ops = append(ops, extra(at.Account)...)
	}
	res, err := gr.kv.Do(ctx, ops...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("provider: load grant: %w", err)
	}
	g, err := gr.decode(res[0].Val, res[0].Err)
	if err != nil {
		return nil, nil, nil, err
	}
	switch {
	case res[1].Err == nil:
		return nil, nil, nil, errTokenInactive
	case !errors.Is(res[1].Err, store.ErrNotFound):
		return nil, nil, nil, fmt.Errorf("provider: load access token revocation: %w", res[1].Err)
	}
	if g.AccountID != at.Account {
		return nil, nil, nil, errTokenInactive
	}
	at.ClientID, at.Subject = g.ClientID, g.Subject
	return &at, g, res[2:], nil
}

// revokeAccess revokes one access token of clientID, leaving its grant
// alone (RFC 7009 §2.1): a marker lives as long as the token would have.
// A token of another client is notYours; an inactive one is nothing to do.
func (gr *grants) revokeAccess(ctx context.Context, clientID, tokenID string) error {
	at, rnd, ok := parseAccessID(tokenID)
	now := gr.now()
	if !ok || !now.Before(at.Exp) {
		return nil
	}
	g, err := gr.load(ctx, at.Grant)
	if errors.Is(err, errTokenInactive) || errors.Is(err, errGrantRevoked) {
		return nil
	}
	if err != nil {
		return err
	}
	if g.ClientID != clientID {
		return notYours()
	}
	if err := gr.kv.Set(ctx, accessRevokedKey(at.Grant, rnd), []byte("1"), ttlUntil(now, at.Exp)); err != nil {
		return fmt.Errorf("provider: revoke access token: %w", err)
	}
	return nil
}
