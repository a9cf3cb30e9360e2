package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
)

// refresh is the refresh_token grant for a client authenticated already:
// the family rotates, and presenting a used token revokes all of it. The
// RP may narrow the scopes for this call only.
func (s *Server) refresh(ctx context.Context, client *opClient, tr *tokenRequest) (*oidc.AccessTokenResponse, error) {
	req, err := s.takeRefresh(ctx, client.GetID(), tr.refreshToken, tr.scopes)
	if err != nil {
		return nil, err
	}
	resp, err := op.CreateTokenResponse(ctx, req, client, s.creatorFor(client), true, "", tr.refreshToken)
	if err != nil {
		if temporary(err) {
			// The RP is told 503, try again: its retry must not read as
			// reuse, which would revoke the family. What this call
			// minted stays unknown to anyone and expires with the family.
			s.spends.giveBack(ctx, req)
		}
		return nil, err
	}
	resp.Scope = tokenScopes(req.scopes, req.grant.Granted)
	return resp, nil
}

// invalidRefresh is every refusal of a refresh token that does not say
// whether it exists.
func invalidRefresh() *oidc.Error {
	return oidc.ErrInvalidGrant().WithDescription("the refresh token is invalid, expired, revoked, or was issued to another client")
}

// takeRefresh checks a refresh token for the client and then consumes it
// with compare-and-swap, writing the family's next token in the same
// round trip (the used mark lives as long as the record did). The
// checks only read: another client presenting the token, or the right
// client asking for scopes the family does not have, spends nothing.
// The token's own client presenting a used token means two parties hold
// the family: all of it is revoked (RFC 9700 §4.14.2).
func (s *Server) takeRefresh(ctx context.Context, clientID, token string, scopes []string) (*refreshRequest, error) {
	grant, _, ok := splitToken(token)
	if !ok {
		return nil, invalidRefresh()
	}
	key := refreshKey(grant, ids.Hash(token))
	// The token and its grant in one round trip.
	res, err := s.kv.Do(ctx, store.Get(key), store.Get(grantKey(grant)))
	if err == nil {
		err = res[0].Err
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalidRefresh()
	}
	if err != nil {
		return nil, fmt.Errorf("provider: load refresh token: %w", err)
	}
	old := res[0].Val
	var rec refreshRecord
	if err := json.Unmarshal(old, &rec); err != nil {
		return nil, fmt.Errorf("provider: refresh record: %w", err)
	}
	g, err := s.grants.decode(res[1].Val, res[1].Err)
	if errors.Is(err, errTokenInactive) || errors.Is(err, errGrantRevoked) {
		return nil, invalidRefresh()
	}
	if err != nil {
		return nil, err
	}
	if g.ClientID != clientID || rec.Grant != grant {
		return nil, invalidRefresh()
	}
	if rec.Used {
		return nil, s.spends.refreshReused(ctx, grant)
	}
	if err := s.grants.refuseBlocked(ctx, s.blocks, g); err != nil {
		return nil, err
	}
	req := &refreshRequest{token: token, grant: g, scopes: slices.Clone(g.Scopes)}
	if err := op.ValidateRefreshTokenScopes(scopes, req); err != nil {
		return nil, err
	}
	rec.Used = true
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	// One round trip consumes the token, writes the next one, reads the
	// grant again and the account for the ID token. The swap decides:
	// should it lose, the next token, which no one has seen, goes. The
	// grant is read after the write, so a reuse that revoked the family
	// meanwhile is seen, and the token written dies with the family.
	next, write, err := s.grants.newRefresh(g)
	if err != nil {
		return nil, err
	}
	ops := []store.Op{store.CAS(key, old, b, ttlUntil(s.web.Now(), g.Exp)), write, store.Get(grantKey(grant))}
	if len(g.Granted) > 0 {
		ops = append(ops, s.accounts.ReadOps(g.AccountID)...)
	}
	res, err = s.kv.Do(ctx, ops...)
	if err == nil && (res[0].Err != nil || !res[0].OK) {
		if derr := s.kv.Delete(ctx, write.Key); derr != nil {
			s.log.WarnContext(ctx, "unused next refresh token not deleted", "error", derr)
		}
		if res[0].Err != nil {
			err = res[0].Err
		} else {
			// Another request consumed it first.
			return nil, s.spends.refreshReused(ctx, grant)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("provider: consume refresh token: %w", err)
	}
	req.key, req.unused, req.used = key, old, b
	if err := res[1].Err; err != nil {
		s.spends.giveBack(ctx, req)
		return nil, fmt.Errorf("provider: store refresh token: %w", err)
	}
	cur, err := s.grants.decode(res[2].Val, res[2].Err)
	if errors.Is(err, errTokenInactive) || errors.Is(err, errGrantRevoked) {
		return nil, invalidRefresh()
	}
	if err != nil {
		s.spends.giveBack(ctx, req)
		return nil, err
	}
	req.grant, req.next = cur, next
	if len(g.Granted) > 0 {
		req.acct = res[3:]
	}
	s.metrics.tokens.WithLabelValues("refresh").Inc()
	return req, nil
}

// giveBack marks a refresh token unused again after its rotation failed
// for a passing reason. Compare-and-swap: a token another request has
// touched since is left as it is.
func (sp *spends) giveBack(ctx context.Context, req *refreshRequest) {
	if ok, err := sp.kv.CompareAndSwap(ctx, req.key, req.used, req.unused); err != nil || !ok {
		sp.log.WarnContext(ctx, "failed refresh: the token stays used", "error", err, "changed", err == nil)
		return
	}
	sp.log.InfoContext(ctx, "failed refresh: the token was given back for a retry")
}

func (sp *spends) refreshReused(ctx context.Context, grant string) error {
	sp.reuse.WithLabelValues("refresh").Inc()
	sp.log.WarnContext(ctx, "refresh token reused; revoking its family")
	if err := sp.grants.revoke(ctx, grant); err != nil {
		return err
	}
	return oidc.ErrInvalidGrant().WithDescription("the refresh token was already used; its family is revoked")
}

// TokenRequestByRefreshToken is never called: the refresh grant is
// Watashi's own (takeRefresh).
func (st *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, errOwnEndpoint
}

// refuseBlocked ends a family whose JPKI token label the operator has
// blocked: the session that minted it may never come back to end
// itself, and its RP must not refresh on in the meantime. A block list
// that cannot answer is a temporary failure, never a refusal.
func (gr *grants) refuseBlocked(ctx context.Context, blocks Blocks, g *grantRecord) error {
	kind, label, _ := strings.Cut(g.Method, ":")
	if blocks == nil || kind != "jpki" || label == "" {
		return nil
	}
	blocked, err := blocks.LabelBlocked(ctx, label)
	if err != nil {
		return fmt.Errorf("provider: block list: %w: %w", errUnavailable, err)
	}
	if !blocked {
		return nil
	}
	gr.log.WarnContext(ctx, "refresh refused: the token label that signed in is blocked; revoking the family")
	if err := gr.revoke(ctx, g.ID); err != nil {
		return err
	}
	return invalidRefresh()
}
