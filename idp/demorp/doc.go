// Package demorp is the relying party of `watashi demo`: a deliberately
// ordinary OpenID Connect client built only on golang.org/x/oauth2 and
// github.com/coreos/go-oidc/v3, with none of Watashi's code, so that the
// demo proves what any RP written against those libraries would see.
//
// It runs the authorization code flow with PKCE (S256), state and nonce,
// verifies the ID token (signature, issuer, audience, expiry, nonce and
// at_hash when present), calls userinfo, shows both claim sets, and logs
// out through the provider's end_session endpoint.
//
// Its state lives in memory, bounded, keyed by random cookies: it is a
// demonstration, not a template for production session handling.
package demorp
