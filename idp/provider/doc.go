// Package provider is the OpenID provider's protocol side, on
// zitadel/oidc's op.Server. The library routes discovery, the JWKS and
// end_session and mints tokens inside CreateTokenResponse through the
// storage in storage.go; every endpoint whose library behaviour falls
// short is Watashi's own, one file each, with no state passed through
// the request context:
//
//	authorize.go     /authorize: an unknown client or an unregistered
//	                 redirect URI gets a page, never a redirect; a
//	                 registry that cannot be asked gets a "try again"
//	                 page (503); PKCE S256 for every client; the claims
//	                 parameter is parsed once and stored with the
//	                 request, resolved under the client's policy; the
//	                 tier is enforced; the request is bound to the
//	                 browser and counted against the address's rate
//	                 limit in the round trip that stores it; then the
//	                 login page
//	callback.go      the consent step's end: one code per request, for
//	                 the browser that signed in only, recorded in the
//	                 request itself; every response to the RP carries
//	                 iss (RFC 9207)
//	token.go         /oauth/token: parse, authenticate the client, then
//	                 the grant; a failed request changes nothing
//	client_auth.go   client authentication (client_secret_basic against
//	                 an Argon2id hash, private_key_jwt with
//	                 replay-checked assertions, none for public clients)
//	token_code.go    the authorization_code grant: the code must be the
//	                 client's, then redirect_uri, then PKCE, and only
//	                 then is it spent (single use by SetNX of the grant
//	                 it mints, which is its tombstone); the own client's
//	                 replay revokes what it minted
//	token_refresh.go the refresh_token grant, in the same order; families
//	                 rotate and the own client's reuse revokes the family
//	scope.go         the scope a token response reports: what was granted
//	userinfo.go      /userinfo with RFC 6750 Bearer challenges
//	introspection.go /oauth/introspect for authenticated clients, about
//	                 their own tokens
//	revocation.go    /revoke (RFC 7009)
//	errors.go        how the API endpoints answer: OAuth errors as they
//	                 are, anything else (a store outage) as 503
//	                 temporarily_unavailable with Retry-After; no
//	                 internal text ever leaves
//	tokens.go        token minting for the library
//	grants.go        grants, their tokens, and the bounded index of an
//	                 account's live grants per client; access tokens are
//	                 self-contained (no record), checked against their
//	                 grant and a per-token revocation marker
//	claims.go        what leaves about a resident: exactly consent.Release
//	                 of the grant, at every release point
//	discovery.go     Watashi's own metadata (pairwise subjects, S256 only,
//	                 the claims and identity-assurance metadata)
//	endsession.go    RP-initiated logout, handed to the /logout page with
//	                 a signed sign-out that says whether the RP's
//	                 id_token_hint names the current session's resident
//	guards.go        request shapes refused before anything is parsed,
//	                 and CORS
//
// ID tokens are signed with the client's registered algorithm: the token
// endpoints mint through a storage view bound to it (creatorFor).
package provider
