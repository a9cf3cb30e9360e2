// Package whitelist is Watashi's relying-party registry: who may ask the
// provider for a resident's identity, and for what.
//
// Watashi verifies JPKI certificates on behalf of many relying parties
// (RPs), so it must know each of them. A Client records an RP's metadata
// (RFC 7591 / OIDC Dynamic Client Registration), its pairwise sector, its
// tier (the scopes, claims and minimum acr it is granted) and its status:
//
//	pending ──approve──▶ approved ──suspend──▶ suspended ──resume──▶ approved
//	any ──revoke──▶ revoked (terminal)
//
// Every status change, update, secret rotation and deletion is appended
// to a per-client audit log (Redis Streams in the Redis backend) with
// who, when, why and through which channel (cli, admin-api,
// registration). Invalid transitions change nothing.
//
// # Flows
//
// Integrators register themselves at RegistrationHandler (RFC 7591) with
// an initial access token an operator issued (IssueToken): the token
// fixes the tier and whether the client starts approved. An optional
// software statement from a TrustedIssuer overrides the request's
// fields. The answer carries a registration access token for RFC 7592
// management (read, full re-validated update, delete) below the
// registration endpoint. Operators use the `watashi client` commands or
// AdminHandler for the same actions.
//
// The provider calls Authorize at every endpoint that acts for a client.
// Approved clients are cached in memory; Run keeps the cache correct
// across nodes by subscribing to ChangedChannel (a suspension reaches
// every node in about a millisecond) and polling a change counter (a
// dropped message costs at most PollInterval), and without a working
// subscription cached entries live only FallbackTTL (1 s).
//
// # The kill switch
//
// Blocklist is the operators' runtime block list: JPKI token labels,
// passkey authenticator models (AAGUIDs) and clients that sign no one
// in until unblocked (`watashi block`, the admin API's /blocks). Every
// change is audited under "wl:log:blocks" and announced on
// BlocksChangedChannel; each node holds the whole list (at most
// MaxBlocks entries) in memory and rereads it after an announced change,
// polls a change counter against lost messages, and rereads it every
// FallbackTTL without a subscription, so a block holds on every node
// within a second. The provider's parts ask it through one-method
// interfaces of their own (LabelBlocked, AAGUIDBlocked, ClientBlocked).
//
// # Fetching integrators' URLs
//
// Fetcher is the one way Watashi requests a URL an integrator chose (a
// sector identifier document, a jwks_uri key set, later logos and
// back-channel endpoints): https only, no redirects, bounded size and
// time, no proxy, and the address checked after DNS resolution where the
// connection is made, against a deny list of loopback, private,
// link-local, carrier-grade NAT, multicast, reserved and documentation
// networks in every form (Denied). Registration applies the same rules to
// jwks_uri, sector_identifier_uri and logo_uri; every fetch applies them
// again.
//
// # Storage
//
// The package does not import the provider or its store: Store is the
// narrow, plain-typed part of idp/store.KV it needs, and AuditLog the
// append-only log. KVBackend adapts store.Memory or store.Redis in one
// call. Records are durable JSON under "wl:client:<id>" (index
// "wl:clients"), initial access tokens under "wl:iat:<id>" (index
// "wl:iats"), logs under "wl:log:client:<id>" and "wl:log:iat". Secrets
// are never stored: client secrets as argon2id PHC strings (the provider's
// format), bearer tokens as SHA-256. The conformance suite in
// whitelisttest runs against every backend.
package whitelist
