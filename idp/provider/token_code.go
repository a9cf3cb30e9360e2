package provider

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
)

// A code is two records: code:<hash> names its auth request while it is
// unspent, and usedcode:<hash> (the tombstone) says it was spent, by
// whom, and what it minted, for as long as that may live. Writing the
// tombstone with SetNX is the single-use point: of any number of
// exchanges of one code, exactly one writes it. Everything before it only
// reads, so that a request that fails a check changes nothing; a holder
// of a stolen code without the client's credentials and verifier can
// neither spend it nor revoke what it minted.

// spentCode is the tombstone of a code: enough to check that a second
// presentation comes from the code's own client, with its redirect URI
// and its PKCE verifier, before that replay revokes the grant (RFC 6749
// §4.1.2).
type spentCode struct {
	Grant       string `json:"grant"`
	ClientID    string `json:"client_id"`
	RedirectURI string `json:"redirect_uri"`
	Challenge   string `json:"challenge"`
}

// invalidCode is every refusal of a code that does not say whether it
// exists: unknown, expired, or another client's.
func invalidCode() *oidc.Error {
	return oidc.ErrInvalidGrant().WithDescription("the authorization code is invalid, expired, or was issued to another client")
}

// exchangeCode is the authorization_code grant (RFC 6749 §4.1.3) for a
// client authenticated already: the code must be this client's, then
// redirect_uri must match, then PKCE; only then is the code spent.
func (s *Server) exchangeCode(ctx context.Context, client *opClient, tr *tokenRequest) (*oidc.AccessTokenResponse, error) {
	h := ids.Hash(tr.code)
	ar, spent, err := s.spends.peekCode(ctx, h, tr.code)
	if err != nil {
		return nil, err
	}
	if spent != nil {
		return nil, s.spends.presentedAgain(ctx, client.GetID(), spent, tr)
	}
	tomb := spentCode{Grant: ar.ID, ClientID: ar.ClientID, RedirectURI: ar.RedirectURI, Challenge: ar.Challenge}
	if err := checkCodeUse(tomb, client.GetID(), tr); err != nil {
		return nil, err
	}
	b, err := json.Marshal(tomb)
	if err != nil {
		return nil, err
	}
	// The tombstone outlives the code, whatever the TTLs, so that the code
	// cannot be spent twice.
	first, err := s.kv.SetNX(ctx, usedCodeKey(h), b, max(s.grantTTL(ar), s.ttl.Code+codeExchangeMargin))
	if err != nil {
		return nil, fmt.Errorf("provider: spend code: %w", err)
	}
	if !first {
		// Another exchange of this code, which passed the same checks,
		// spent it a moment ago: two parties hold code and verifier.
		return nil, s.spends.codeReplayed(ctx, ar.ID)
	}
	resp, err := op.CreateTokenResponse(ctx, ar, client, s.creatorFor(client), true, tr.code, "")
	if err != nil {
		if temporary(err) {
			s.spends.unspend(ctx, h, ar)
		}
		return nil, err
	}
	// The spent code's record and its request go together; the tombstone
	// rules meanwhile, and whatever is not deleted expires soon.
	if res, err := s.kv.Do(ctx, store.Delete(codeKey(h)), s.requests.DeleteOp(ar.ID)); err != nil || store.FirstErr(res) != nil {
		s.log.WarnContext(ctx, "spent code or its request not deleted", "error", errors.Join(err, store.FirstErr(res)))
	}
	resp.Scope = tokenScopes(ar.Scopes, ar.Granted)
	return resp, nil
}

// unspend gives a code back when its exchange failed for a passing reason
// after the code was spent (the store failing mid-exchange): the RP was
// told 503, try again, and its retry must work. Whatever was minted goes
// with the grant record (tokens without their grant are inactive), then
// the code is live again, and last the tombstone goes. Each step leaves a
// consistent state if the next fails: at worst the code stays spent.
func (sp *spends) unspend(ctx context.Context, h string, ar *authreq.AuthRequest) {
	if err := sp.kv.Delete(ctx, grantKey(ar.ID)); err != nil {
		sp.log.WarnContext(ctx, "failed exchange: the code stays spent", "error", err)
		return
	}
	if err := sp.kv.Set(ctx, codeKey(h), []byte(ar.ID), sp.codeTTL); err != nil {
		sp.log.WarnContext(ctx, "failed exchange: the code stays spent", "error", err)
		return
	}
	if err := sp.kv.Delete(ctx, usedCodeKey(h)); err != nil {
		sp.log.WarnContext(ctx, "failed exchange: the code stays spent", "error", err)
		return
	}
	sp.log.InfoContext(ctx, "failed exchange: the code was given back for a retry")
}

// peekCode reads a code without spending it: its completed auth request
// while unspent, else its tombstone. A store failure is an error of its
// own, never "invalid code". The code names its request (newCode), so
// both are read in one round trip.
func (sp *spends) peekCode(ctx context.Context, h, code string) (*authreq.AuthRequest, *spentCode, error) {
	arID, _, named := strings.Cut(code, codeSep)
	ops := []store.Op{store.Get(codeKey(h))}
	if named {
		ops = append(ops, sp.requests.ReadOp(arID))
	}
	res, err := sp.kv.Do(ctx, ops...)
	if err != nil {
		return nil, nil, fmt.Errorf("provider: read code: %w", err)
	}
	if errors.Is(res[0].Err, store.ErrNotFound) {
		return sp.tombstone(ctx, h)
	}
	if res[0].Err != nil {
		return nil, nil, fmt.Errorf("provider: read code: %w", res[0].Err)
	}
	var ar *authreq.AuthRequest
	if named && string(res[0].Val) == arID {
		ar, err = sp.requests.FromResult(arID, res[1])
	} else {
		ar, err = sp.requests.Load(ctx, string(res[0].Val))
	}
	if errors.Is(err, store.ErrNotFound) {
		// An exchange running at the same moment spent the code and
		// deleted its request between our two reads: its tombstone says
		// so, and this is a replay, not an unknown code.
		return sp.tombstone(ctx, h)
	}
	if err != nil {
		return nil, nil, err
	}
	if !ar.Completed || subtle.ConstantTimeCompare([]byte(ar.CodeHash), []byte(h)) != 1 {
		return nil, nil, invalidCode()
	}
	return ar, nil, nil
}

// tombstone reads a spent code's record; no record is an unknown code.
func (sp *spends) tombstone(ctx context.Context, h string) (*authreq.AuthRequest, *spentCode, error) {
	b, err := sp.kv.Get(ctx, usedCodeKey(h))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, invalidCode()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("provider: read code tombstone: %w", err)
	}
	spent := new(spentCode)
	if err := json.Unmarshal(b, spent); err != nil {
		return nil, nil, fmt.Errorf("provider: code tombstone: %w", err)
	}
	return nil, spent, nil
}

// checkCodeUse runs the checks of an exchange on a code, in order: its
// client, its redirect URI, its PKCE challenge.
func checkCodeUse(c spentCode, clientID string, tr *tokenRequest) error {
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

// presentedAgain answers a spent code. Only its own client, passing every
// check an exchange would, is a replay that revokes what the code minted
// (RFC 6749 §4.1.2); anyone else learns nothing and changes nothing.
func (sp *spends) presentedAgain(ctx context.Context, clientID string, spent *spentCode, tr *tokenRequest) error {
	if err := checkCodeUse(*spent, clientID, tr); err != nil {
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

// grantTTL is how long what a request mints may live: the refresh family
// when offline_access was granted, else the access token.
func (s *Server) grantTTL(ar *authreq.AuthRequest) time.Duration {
	if slices.Contains(ar.Scopes, oidc.ScopeOfflineAccess) {
		return max(s.ttl.RefreshToken, s.ttl.AccessToken)
	}
	return s.ttl.AccessToken
}
