package idp

import (
	"context"
	"maps"
	"slices"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// What leaves the provider about a resident is decided by package
// consent, from data stored with each authorization: the scopes, the raw
// `claims` parameter and the claims the resident granted for it
// (AuthRequest.Granted, copied to the grant record). Every release point
// (ID token, userinfo, introspection) recomputes the request with the
// client's current policy and releases exactly consent.Release's answer;
// sub stays the pairwise subject and acr, amr and auth_time come from
// the sign-in.

// consentStore is the grants, on the provider's store.
func (s *Server) consentStore() *consent.Store { return consent.NewStore(s.kv, store.ErrNotFound) }

// consentRequest resolves what an authorization asks for under the
// client's policy. rawClaims was validated at /authorize; an error here
// means a stored record was tampered with or the parser got stricter.
func consentRequest(c *Client, scopes []string, rawClaims []byte) (consent.Requested, error) {
	cr, err := consent.ParseClaimsRequest(rawClaims)
	if err != nil {
		return consent.Requested{}, err
	}
	return consent.Resolve(scopes, cr, c.consentPolicy()), nil
}

// requestedClaims lists what an auth request asks for, for the login
// page and the wallet ("this service will receive ..."): the consent
// items in display order. It is informative only; nothing is released
// from it.
func (s *Server) requestedClaims(ctx context.Context, ar *AuthRequest) []string {
	c, err := s.client(ctx, ar.ClientID)
	if err != nil {
		return nil
	}
	req, err := consentRequest(c, ar.Scopes, ar.Claims)
	if err != nil {
		return nil
	}
	var out []string
	for _, it := range req.Items() {
		out = append(out, it.Claim)
	}
	return out
}

// releaseClaims builds one target's personal claims for an authorization
// of clientID by accountID: consent.Release over the account's verified
// facts. The account is read only when something was granted. Facts
// that have gone stale, or an account without facts, release nothing:
// the consent step asks for a new proofing before it completes, so this
// only happens when a certificate was found revoked after the code was
// issued, and withholding is the safe answer.
func (s *Server) releaseClaims(ctx context.Context, clientID, accountID string, scopes []string, rawClaims []byte, granted []string, target consent.Target) (map[string]any, error) {
	if len(granted) == 0 {
		return nil, nil
	}
	c, err := s.client(ctx, clientID)
	if err != nil {
		return nil, nil // a client removed from the configuration receives nothing
	}
	req, err := consentRequest(c, scopes, rawClaims)
	if err != nil {
		return nil, err
	}
	a, err := s.accountForRelease(ctx, accountID)
	if err != nil {
		return nil, err
	}
	out, err := consent.Release(a.Facts, a.factsMeta(), &consent.Grant{Claims: granted}, req, target, s.now())
	if needsProofing(err) {
		s.log.WarnContext(ctx, "claims withheld: the facts need a new proofing", "account", accountID,
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
func (st *opStorage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, _ []string) error {
	var client, account string
	var scopes, granted []string
	var raw []byte
	switch r := req.(type) {
	case *AuthRequest:
		client, account, scopes, raw, granted = r.ClientID, r.AccountID, r.Scopes, r.Claims, r.Granted
	case *refreshRequest:
		client, account, scopes, raw, granted = r.grant.ClientID, r.grant.AccountID, r.scopes, r.grant.Claims, r.grant.Granted
		if r.grant.ACR != "" {
			ui.AppendClaims("acr", r.grant.ACR)
		}
	default:
		return oidc.ErrServerError().WithDescription("unexpected token request")
	}
	ui.Subject = req.GetSubject()
	claims, err := st.s.releaseClaims(ctx, client, account, scopes, raw, granted, consent.TargetIDToken)
	if err != nil {
		st.s.log.ErrorContext(ctx, "ID token claims", "error", err)
		return oidc.ErrServerError()
	}
	putClaims(ui, claims)
	return nil
}
