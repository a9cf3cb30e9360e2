package provider

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/internal/logref"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/store"
)

// What leaves the provider about a resident is decided by package
// consent, from what is stored with each authorization: the scopes, the
// claims parameter and the claims the resident granted for it. Every
// release point (ID token, userinfo, introspection) resolves the request
// again with the scopes of the token at hand (a refresh may narrow them)
// and the client's policy of the day, and releases exactly
// consent.Release's answer; sub stays the pairwise subject and acr, amr
// and auth_time come from the sign-in.

// releaseClaims builds one target's personal claims for an authorization
// of clientID by accountID: consent.Release over the account's verified
// facts. The account is read only when something was granted. Facts that
// have gone stale, or an account without facts, release nothing: the
// consent step asks for a new proofing before it completes, so this only
// happens when a certificate was found revoked after the code was issued,
// and withholding is the safe answer.
func (s *Server) releaseClaims(ctx context.Context, clientID, accountID string, scopes []string, claims *consent.ClaimsRequest, granted []string, target consent.Target) (map[string]any, error) {
	return s.releaseClaimsFrom(ctx, clientID, accountID, nil, scopes, claims, granted, target)
}

// releaseClaimsFrom is releaseClaims with the account read already, when
// read is not nil: the results of Accounts.ReadOps.
func (s *Server) releaseClaimsFrom(ctx context.Context, clientID, accountID string, read []store.Result, scopes []string, claims *consent.ClaimsRequest, granted []string, target consent.Target) (map[string]any, error) {
	if len(granted) == 0 {
		return nil, nil
	}
	c, err := s.clients.Get(ctx, clientID)
	if errors.Is(err, clients.ErrUnavailable) {
		// Not a verdict on the client: releasing nothing now would look
		// like a refusal the resident never made.
		return nil, err
	}
	if err != nil {
		return nil, nil // a client no longer allowed to act receives nothing
	}
	req := consent.Resolve(scopes, claims, c.Policy())
	var a *account.Account
	if read != nil {
		a, err = s.accounts.ForReleaseFrom(accountID, read)
	} else {
		a, err = s.accounts.ForRelease(ctx, accountID)
	}
	if err != nil {
		return nil, err
	}
	out, err := consent.Release(a.Facts, a.FactsMeta(), &consent.Grant{Claims: granted}, req, target, s.now())
	if account.NeedsProofing(err) {
		s.log.WarnContext(ctx, "claims withheld: the facts need a new proofing", logref.Account(accountID),
			"client", clientID, "target", string(target), "reason", string(consent.CodeOf(err)))
		return nil, nil
	}
	return out, err
}

// putClaims copies released claims into a userinfo or ID token claim set.
func putClaims(ui *oidc.UserInfo, claims map[string]any) {
	for _, k := range slices.Sorted(maps.Keys(claims)) {
		ui.AppendClaims(k, claims[k])
	}
}

// SetUserinfoFromRequest fills the ID token: the pairwise sub always (the
// library copies this Subject over the token's sub), and the claims
// released for the ID token. A refreshed ID token gets acr here, since
// the library takes acr only from an auth request.
func (st *storage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, _ []string) error {
	var client, account, sid string
	var scopes, granted []string
	var claims *consent.ClaimsRequest
	var read []store.Result
	switch r := req.(type) {
	case *codeRequest:
		client, account, scopes, claims, granted, sid = r.ClientID, r.AccountID, r.Scopes, r.Claims, r.Granted, r.SessionID
		read = r.acct
	case *refreshRequest:
		client, account, scopes, claims, granted, sid = r.grant.ClientID, r.grant.AccountID, r.scopes, r.grant.Claims, r.grant.Granted, r.grant.SessionID
		read = r.acct
		if r.grant.ACR != "" {
			ui.AppendClaims("acr", r.grant.ACR)
		}
	default:
		return oidc.ErrServerError().WithDescription("unexpected token request")
	}
	ui.Subject = req.GetSubject()
	if sid != "" {
		// The session as this relying party's sector sees it, for
		// back-channel logout and session management.
		c, err := st.s.clients.Get(ctx, client)
		if errors.Is(err, clients.ErrUnavailable) {
			return fmt.Errorf("provider: ID token sid: %w", err)
		}
		if err == nil {
			ui.AppendClaims("sid", session.PairwiseSID(sid, c.Sector))
		}
	}
	released, err := st.s.releaseClaimsFrom(ctx, client, account, read, scopes, claims, granted, consent.TargetIDToken)
	if err != nil {
		return fmt.Errorf("provider: ID token claims: %w", err)
	}
	putClaims(ui, released)
	return nil
}
