// Package idp assembles the OpenID provider. It holds no flow of its own:
// New builds each part once, Handler is the one place that mounts their
// routes behind the web middleware, TelemetryHandler serves health and
// metrics on the operator's listener, and Run does the background work
// (key rotation, the whitelist's change feed).
//
// The parts, and what each owns (docs/architecture.md walks one login
// through them):
//
//	web          middleware, cookies, CSRF, client address, rate limits,
//	             page rendering, error pages, language
//	authreq      the /authorize request record and the flow's URLs
//	clients      static and registered clients behind one resolver;
//	             secrets, client keys, sectors and pairwise subjects
//	keys         the ID token signing key ring
//	account      residents, their facts and linked certificates
//	session      the SSO session and signed sign-out
//	signin       /login, sign-in transactions, the wallet protocol
//	consentflow  /consent
//	accountpage  /account
//	provider     the OIDC endpoints on zitadel/oidc's op.Server
//	config       the operator's YAML and WATASHI_* overrides
//
// Handler packages (signin, consentflow, accountpage, provider) never
// import one another; they share the domain packages, each declaring the
// small interface it needs of them. Nothing below idp imports it:
// pkibridge, consent, whitelist and templates know nothing of the
// provider. All state lives in a store.KV: ephemeral records with TTLs,
// durable ones (accounts, links, keys, consents, clients) needing Redis
// with AOF.
package idp
