package idp

import (
	"context"
	"slices"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Claims Watashi can release: the basic four facts of the signature
// certificate, in OIDC Core's standard claim names.
const (
	claimName       = "name"
	claimFamilyName = "family_name"
	claimGivenName  = "given_name"
	claimBirthdate  = "birthdate"
	claimGender     = "gender"
	claimAddress    = "address"
)

// scopeClaims maps a scope to the claims it requests. name, birthdate and
// gender are the Digital Agency's scopes; profile and address are OIDC
// Core §5.4's, restricted to what a JPKI certificate proves.
var scopeClaims = map[string][]string{
	"name":      {claimName, claimFamilyName, claimGivenName},
	"birthdate": {claimBirthdate},
	"gender":    {claimGender},
	"address":   {claimAddress},
	"profile":   {claimName, claimFamilyName, claimGivenName, claimBirthdate, claimGender},
}

// claimsForScopes lists the claims the scopes ask for, without duplicates,
// in a stable order.
func claimsForScopes(scopes []string) []string {
	var out []string
	for _, sc := range scopes {
		for _, c := range scopeClaims[sc] {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// requestedClaims are the claims an auth request asks for (its scopes,
// already limited to what the client may ask). The consent step shows
// these and passes the ones the resident accepts to completeAuthRequest.
func (s *Server) requestedClaims(ar *AuthRequest) []string {
	return claimsForScopes(ar.Scopes)
}

// releasedClaims are those both requested by the scopes in force and
// granted by the resident.
func releasedClaims(scopes, granted []string) []string {
	var out []string
	for _, c := range claimsForScopes(scopes) {
		if slices.Contains(granted, c) {
			out = append(out, c)
		}
	}
	return out
}

// setClaims copies the released facts of accountID into ui. The account
// is read only when something is to be released.
func (s *Server) setClaims(ctx context.Context, ui *oidc.UserInfo, accountID string, scopes, granted []string) error {
	release := releasedClaims(scopes, granted)
	if len(release) == 0 {
		return nil
	}
	f, err := s.accountFacts(ctx, accountID)
	if err != nil {
		return err
	}
	if f == nil {
		return nil // an account without proofed facts has nothing to release
	}
	for _, c := range release {
		switch c {
		case claimName:
			ui.Name = f.Name
		case claimFamilyName:
			ui.FamilyName = f.FamilyName
		case claimGivenName:
			ui.GivenName = f.GivenName
		case claimBirthdate:
			ui.Birthdate = f.Birthdate
		case claimGender:
			ui.Gender = oidc.Gender(f.Gender)
		case claimAddress:
			if f.Address != "" {
				ui.Address = &oidc.UserInfoAddress{Formatted: f.Address, Country: "JP"}
			}
		}
	}
	return nil
}

// accountFacts returns the verified facts of an account (nil when the
// account has none yet).
func (s *Server) accountFacts(ctx context.Context, accountID string) (*pkibridge.Attributes, error) {
	a, err := s.account(ctx, accountID)
	if err != nil {
		return nil, err
	}
	return a.Facts, nil
}

// SetUserinfoFromRequest fills the ID token: the pairwise sub always (the
// library copies this Subject over the token's sub), and the granted
// claims. A refreshed ID token gets acr here, since the library takes acr
// only from an auth request.
func (st *opStorage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, _ []string) error {
	var account string
	var scopes, granted []string
	switch r := req.(type) {
	case *AuthRequest:
		account, scopes, granted = r.AccountID, r.Scopes, r.Granted
	case *refreshRequest:
		account, scopes, granted = r.grant.AccountID, r.scopes, r.grant.Granted
		if r.grant.ACR != "" {
			ui.AppendClaims("acr", r.grant.ACR)
		}
	default:
		return oidc.ErrServerError().WithDescription("unexpected token request")
	}
	ui.Subject = req.GetSubject()
	if err := st.s.setClaims(ctx, ui, account, scopes, granted); err != nil {
		st.s.log.ErrorContext(ctx, "ID token claims", "error", err)
		return oidc.ErrServerError()
	}
	return nil
}
