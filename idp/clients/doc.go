// Package clients answers one question for every endpoint that acts for a
// relying party: who is this client, may it act now, and how does it prove
// itself. The static clients of the operator's configuration and the
// whitelist registry stand behind one Resolver.
//
//   - Lookup returns a static client, or asks the registry, which answers
//     only for approved clients: an unknown, pending, suspended or revoked
//     client is refused everywhere exactly as an unknown one is, and a
//     suspension reaches every node within the registry's propagation time.
//     A registry record is converted once per change (keys parsed, policy
//     built) and memoised by its update time. A registry that cannot be
//     asked (its store is down) is ErrUnavailable, never a refusal: the
//     endpoints answer "try again", not "unknown client".
//   - A client authenticates with an Argon2id-hashed secret
//     (VerifySecret, which remembers recent successes so that a busy RP pays
//     the hash once) or with private_key_jwt, whose keys are inline or
//     fetched from its jwks_uri through the guarded whitelist.Fetcher
//     (AssertionKeys: cached, refetched on an unknown kid, and asked at most
//     once per retry gap, failures included).
//   - Subject derives the pairwise sub of an account for the client's
//     sector, the same value at every endpoint. The sector is fixed when the
//     client is registered: the one host of its redirect URIs, or the host
//     of a sector_identifier_uri whose document lists them all.
//   - Policy is the client's upper bound on claims, which package consent
//     applies to every request and every release.
package clients
