package provider

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
)

// A code has no record of its own: its auth request carries its hash
// (callback.go) until the exchange, and the grant it mints, keyed by the
// request's ID, is its tombstone. Writing that record with SetNX is the
// single-use point: of any number of exchanges of one code, exactly one
// writes it. Everything before it only reads, so that a request that
// fails a check changes nothing; a holder of a stolen code without the
// client's credentials and verifier can neither spend it nor revoke what
// it minted.
//
// An exchange is two round trips and the session index's: the request
// with the grant that would be its tombstone; then, the checks passed,
// the grant, its index, its first refresh token, the deletion of the
// request and the account the ID token releases claims of, in one batch.

// codeUse is what an exchange of a code checks: the code's client, its
// redirect URI and its PKCE challenge.
type codeUse struct {
	ClientID    string `json:"client_id"`
	RedirectURI string `json:"redirect_uri"`
	Challenge   string `json:"challenge"`
}

// spentCode is the tombstone of a code spent by the previous version of
// the provider (usedcode:<hash>), read only when a code's grant carries
// no digest: a replay of such a code is still recognized.
type spentCode struct {
	Grant string `json:"grant"`
	codeUse
}

func usedCodeKey(hash string) string { return "usedcode:" + hash }

// codeDigest is what a grant keeps of the code that minted it: the
// SHA-256 of the code's hash and what its exchange checked, cut to 128
// bits (22 bytes in the record instead of the client, the redirect URI of
// up to 2 KiB and the challenge; finding another presentation with the
// same digest is a second preimage of 128 bits). Presented again, the
// code matches it only from the same client, with the same redirect URI
// and a verifier of the same challenge.
func codeDigest(h string, u codeUse) string {
	d := sha256.New()
	for _, part := range []string{h, u.ClientID, u.RedirectURI, u.Challenge} {
		d.Write([]byte(part))
		d.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(d.Sum(nil)[:16])
}

// presentedDigest is codeDigest of a presentation: the presenter's
// client, redirect URI and the challenge of its verifier.
func presentedDigest(h, clientID string, tr *tokenRequest) string {
	v := sha256.Sum256([]byte(tr.verifier))
	return codeDigest(h, codeUse{ClientID: clientID, RedirectURI: tr.redirectURI, Challenge: base64.RawURLEncoding.EncodeToString(v[:])})
}

// invalidCode is every refusal of a code that does not say whether it
// exists: unknown, expired, or another client's.
func invalidCode() *oidc.Error {
	return oidc.ErrInvalidGrant().WithDescription("the authorization code is invalid, expired, or was issued to another client")
}

// codeRequest is a code's auth request as the library mints from it:
// the grant the exchange wrote, its first refresh token, and the account
// as read in the same batch, so that minting reads and writes nothing.
type codeRequest struct {
	*authreq.AuthRequest
	grant *newGrant
	// acct is the result of Accounts.ReadOps, nil when nothing was
	// granted (no claims to release, no account to read).
	acct []store.Result
}

// exchangeCode is the authorization_code grant (RFC 6749 §4.1.3) for a
// client authenticated already: the code must be this client's, then
// redirect_uri must match, then PKCE; only then is the code spent.
func (s *Server) exchangeCode(ctx context.Context, client *opClient, tr *tokenRequest) (*oidc.AccessTokenResponse, error) {
	h := ids.Hash(tr.code)
	ar, err := s.spends.peekCode(ctx, h, client.GetID(), tr)
	if err != nil {
		return nil, err
	}
	use := codeUse{ClientID: ar.ClientID, RedirectURI: ar.RedirectURI, Challenge: ar.Challenge}
	if err := checkCodeUse(use, client.GetID(), tr); err != nil {
		return nil, err
	}
	// Every client may refresh (opClient.GrantTypes): offline_access
	// alone decides, as it does for the library.
	ng, err := s.grants.prepare(ar, slices.Contains(ar.Scopes, oidc.ScopeOfflineAccess), codeDigest(h, use))
	if err != nil {
		return nil, err
	}
	g := ng.g
	if s.grants.issued != nil {
		// The family is in the session index before any of it is
		// written, so that ending the session, the account or the
		// authenticator meanwhile reaches it.
		if err := s.grants.issued(ctx, g.SessionID, g.AccountID, ar.Authenticator, g.ClientID, g.ID, g.Exp); err != nil {
			return nil, fmt.Errorf("provider: session index: %w", err)
		}
	}
	ops := append(s.grants.writeOps(ng), s.requests.DeleteOp(ar.ID))
	nw := len(ops)
	if len(ar.Granted) > 0 {
		ops = append(ops, s.accounts.ReadOps(ar.AccountID)...)
	}
	res, err := s.kv.Do(ctx, ops...)
	if err != nil {
		// What was written is unknown: at worst the code stays spent.
		return nil, fmt.Errorf("provider: spend code: %w", err)
	}
	switch spend := res[opGrant]; {
	case spend.Err != nil:
		s.spends.unspend(ctx, ar, ng)
		return nil, fmt.Errorf("provider: store grant: %w", spend.Err)
	case !spend.OK:
		return nil, s.spends.lost(ctx, ar.ID, ng)
	}
	for _, i := range []int{opIndex, opRefresh} {
		if i < nw-1 && res[i].Err != nil {
			// A grant missing from its index would escape a withdrawal;
			// a family without its refresh token is no family.
			s.spends.unspend(ctx, ar, ng)
			return nil, fmt.Errorf("provider: store grant: %w", res[i].Err)
		}
	}
	if err := res[nw-1].Err; err != nil {
		// The request lives no longer than its code, and the grant
		// answers for the code meanwhile.
		s.log.WarnContext(ctx, "spent code's request not deleted", "error", err)
	}
	if prunes(res[opIndex].N) {
		if err := s.grants.prune(ctx, g); err != nil {
			// The next pruning catches up.
			s.log.WarnContext(ctx, "grant index not pruned", "error", err)
		}
	}
	if ng.rt != "" {
		s.metrics.tokens.WithLabelValues("refresh").Inc()
	}
	cr := &codeRequest{AuthRequest: ar, grant: ng}
	if len(ar.Granted) > 0 {
		cr.acct = res[nw:]
	}
	resp, err := op.CreateTokenResponse(ctx, cr, client, s.creatorFor(client), true, tr.code, "")
	if err != nil {
		if temporary(err) {
			s.spends.unspend(ctx, ar, ng)
		}
		return nil, err
	}
	resp.Scope = tokenScopes(ar.Scopes, ar.Granted)
	return resp, nil
}

// unspend gives a code back when its exchange failed for a passing reason
// after the code was spent (the store failing mid-exchange): the RP was
// told 503, try again, and its retry must work. What was minted goes
// with the grant record (tokens without their grant are inactive) in one
// round trip; only then is the request, with the code's hash, written
// back as it was read. If a step fails, the code stays spent.
func (sp *spends) unspend(ctx context.Context, ar *authreq.AuthRequest, ng *newGrant) {
	res, err := sp.kv.Do(ctx, append([]store.Op{store.Delete(grantKey(ng.g.ID))}, sp.grants.undoOps(ng)...)...)
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		sp.log.WarnContext(ctx, "failed exchange: the code stays spent", "error", err)
		return
	}
	restore, err := sp.requests.RestoreOp(ar, sp.codeTTL)
	if err == nil {
		res, err = sp.kv.Do(ctx, restore)
		if err == nil {
			err = res[0].Err
		}
	}
	if err != nil {
		sp.log.WarnContext(ctx, "failed exchange: the code stays spent", "error", err)
		return
	}
	sp.log.InfoContext(ctx, "failed exchange: the code was given back for a retry")
}

// lost answers an exchange whose grant record was there before it: an
// exchange of the same code, which passed the same checks, wrote it a
// moment ago (two parties hold code and verifier: a replay, which
// revokes the grant), or a replay or a withdrawal revoked the grant
// before it was minted. What this exchange wrote beside the record goes.
func (sp *spends) lost(ctx context.Context, grant string, ng *newGrant) error {
	res, err := sp.kv.Do(ctx, append([]store.Op{store.Get(grantKey(grant))}, sp.grants.undoOps(ng)...)...)
	if err == nil {
		err = store.FirstErr(res)
	}
	if err != nil {
		sp.log.WarnContext(ctx, "lost exchange not undone; its refresh token dies with its grant", "error", err)
	}
	if err == nil && res[0].Err == nil {
		var g grantRecord
		if json.Unmarshal(res[0].Val, &g) == nil && g.Revoked {
			return oidc.ErrInvalidGrant().WithDescription("grant revoked")
		}
	}
	return sp.codeReplayed(ctx, grant)
}

// peekCode reads a code without spending it: its completed auth request
// while unspent. A spent code, whose grant exists, is answered here:
// presentedAgain. A store failure is an error of its own, never
// "invalid code". The code names its request (newCode), so the request
// and the grant it would mint are read in one round trip.
func (sp *spends) peekCode(ctx context.Context, h, clientID string, tr *tokenRequest) (*authreq.AuthRequest, error) {
	arID, _, named := strings.Cut(tr.code, codeSep)
	if !named || arID == "" || len(arID) > 64 || strings.ContainsAny(arID, ":{}") {
		return nil, invalidCode()
	}
	res, err := sp.kv.Do(ctx, sp.requests.ReadOp(arID), store.Get(grantKey(arID)))
	if err == nil {
		err = store.FirstErr(res)
	}
	if err != nil {
		return nil, fmt.Errorf("provider: read code: %w", err)
	}
	ar, err := sp.requests.FromResult(arID, res[0])
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if res[1].Err == nil {
		// The grant exists: the code was spent, by an exchange that may
		// still be running, or its grant revoked before it was minted.
		return nil, sp.presentedAgain(ctx, arID, h, res[1].Val, clientID, tr)
	}
	if ar == nil {
		return nil, sp.legacySpent(ctx, h, clientID, tr)
	}
	if !ar.Completed || subtle.ConstantTimeCompare([]byte(ar.CodeHash), []byte(h)) != 1 {
		return nil, invalidCode()
	}
	return ar, nil
}

// checkCodeUse runs the checks of an exchange on a code, in order: its
// client, its redirect URI, its PKCE challenge.
func checkCodeUse(c codeUse, clientID string, tr *tokenRequest) error {
	if subtle.ConstantTimeCompare([]byte(c.ClientID), []byte(clientID)) != 1 {
		return invalidCode()
	}
	if tr.redirectURI != c.RedirectURI {
		return oidc.ErrInvalidGrant().WithDescription("redirect_uri does not match the authorization request")
	}
	if c.Challenge == "" {
		// Every request was made with S256 (authorize.go); a code without
		// a challenge is not ours to honour.
		return invalidCode()
	}
	return op.AuthorizeCodeChallenge(tr.verifier, &oidc.CodeChallenge{Challenge: c.Challenge, Method: oidc.CodeChallengeMethodS256})
}

// presentedAgain answers a spent code, whose grant record is raw. Only
// its own client, passing every check an exchange would, is a replay
// that revokes what the code minted (RFC 6749 §4.1.2): the grant's
// digest of the code says so. Anyone else learns nothing and changes
// nothing.
func (sp *spends) presentedAgain(ctx context.Context, grant, h string, raw []byte, clientID string, tr *tokenRequest) error {
	var g grantRecord
	if err := json.Unmarshal(raw, &g); err != nil {
		return fmt.Errorf("provider: grant record: %w", err)
	}
	if g.Code == "" {
		// A grant of the previous version, or a revoked record written
		// before the code's own grant: a tombstone of old may speak.
		return sp.legacySpent(ctx, h, clientID, tr)
	}
	if subtle.ConstantTimeCompare([]byte(g.Code), []byte(presentedDigest(h, clientID, tr))) != 1 {
		return invalidCode()
	}
	return sp.codeReplayed(ctx, grant)
}

// legacySpent answers a code with neither a request nor a grant that
// knows it: unknown, or spent by the previous version, whose tombstone
// (spentCode) says by whom.
func (sp *spends) legacySpent(ctx context.Context, h, clientID string, tr *tokenRequest) error {
	b, err := sp.kv.Get(ctx, usedCodeKey(h))
	if errors.Is(err, store.ErrNotFound) {
		return invalidCode()
	}
	if err != nil {
		return fmt.Errorf("provider: read code tombstone: %w", err)
	}
	var spent spentCode
	if err := json.Unmarshal(b, &spent); err != nil {
		return fmt.Errorf("provider: code tombstone: %w", err)
	}
	if err := checkCodeUse(spent.codeUse, clientID, tr); err != nil {
		return err
	}
	return sp.codeReplayed(ctx, spent.Grant)
}

// codeReplayed revokes a replayed code's grant. A grant not minted yet
// (the first exchange is still running) gets a revoked record, which
// makes that exchange fail too.
func (sp *spends) codeReplayed(ctx context.Context, grant string) error {
	sp.reuse.WithLabelValues("code").Inc()
	sp.log.WarnContext(ctx, "authorization code replayed; revoking its grant")
	if err := sp.grants.revoke(ctx, grant); err != nil {
		return err
	}
	return oidc.ErrInvalidGrant().WithDescription("the authorization code was already used; the tokens it issued are revoked")
}

// AuthRequestByCode is never called: the code exchange is Watashi's own.
func (st *storage) AuthRequestByCode(context.Context, string) (op.AuthRequest, error) {
	return nil, errOwnEndpoint
}
