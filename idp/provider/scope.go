package provider

import (
	"slices"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/consent"
)

// tokenScopes is the scope a token response reports: what was granted,
// not what was asked for (RFC 6749 §3.3). openid and offline_access stand
// as asked (the resident signed in, and a refresh token is issued with
// offline_access); a claim scope stands only if the resident granted at
// least one of the claims it stands for. A scope whose claims were all
// refused, or answered only by a narrower stand-in (an age check instead
// of the birth date), is left out. What is released does not depend on
// this list: it is computed from the request and the granted claims.
func tokenScopes(scopes, granted []string) oidc.SpaceDelimitedArray {
	out := make([]string, 0, len(scopes))
	for _, sc := range scopes {
		switch {
		case slices.Contains(out, sc):
		case sc == oidc.ScopeOpenID, sc == oidc.ScopeOfflineAccess:
			out = append(out, sc)
		default:
			for _, c := range consent.ClaimsForScopes([]string{sc}) {
				if slices.Contains(granted, c) {
					out = append(out, sc)
					break
				}
			}
		}
	}
	return out
}
