// Package provider is the OpenID provider's protocol side, on
// zitadel/oidc's op.Server. The library's LegacyServer serves what it does
// well (userinfo, revocation, end_session, the JWKS) through the storage
// in storage.go; every endpoint whose library behaviour falls short is
// overridden with one method in a file of its own, with no state passed
// through the request context:
//
//	authorize.go     /authorize is Watashi's own: an unknown client or an
//	                 unregistered redirect URI gets a page, never a
//	                 redirect; PKCE S256 for every client; the claims
//	                 parameter is parsed once and stored with the request,
//	                 resolved under the client's policy; the tier is
//	                 enforced; then the login page
//	callback.go      the consent step's end: one code per request, for the
//	                 browser that signed in only
//	client_auth.go   client authentication (client_secret_basic against
//	                 an Argon2id hash, private_key_jwt with replay-checked
//	                 assertions, none for public clients), introspection
//	token_code.go    the authorization_code grant; codes are single-use
//	                 and a replay revokes what they minted
//	token_refresh.go the refresh_token grant; families rotate and reuse
//	                 revokes the family
//	tokens.go        grants, opaque access tokens, refresh tokens, and the
//	                 userinfo and introspection answers
//	claims.go        what leaves about a resident: exactly consent.Release
//	                 of the grant, at every release point
//	discovery.go     Watashi's own metadata (pairwise subjects, S256 only,
//	                 the claims and identity-assurance metadata)
//	endsession.go    RP-initiated logout, handed to the /logout page
//	guards.go        request shapes refused before the library parses
//	                 them, and CORS
//
// ID tokens are signed with the client's registered algorithm: the token
// endpoints mint through a storage view bound to it (creatorFor).
package provider
