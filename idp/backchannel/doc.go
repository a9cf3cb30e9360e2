// Package backchannel tells relying parties that a resident's session
// has ended, by OpenID Connect Back-Channel Logout 1.0.
//
// The flow: the events outbox hands every SessionEnded and
// ConsentWithdrawn event to Handle (one node at a time, at least once).
// For each client named in the event that registered a
// backchannel_logout_uri, Handle queues one job (idp/delivery) keyed by
// the event, so an event handled twice is queued once. Run sends the
// jobs: it builds the logout token at send time — iss, aud, iat, exp,
// jti, the back-channel logout event, the client's pairwise sub and,
// for a session, the sid the client saw in its ID token — signs it with
// the provider's key ring under typ logout+jwt with the client's ID
// token algorithm, and POSTs logout_token=... through the guarded
// fetcher. A 2xx is done; a 4xx other than 408 and 429 means the RP
// refused the token and retrying would not change that; anything else
// is retried with backoff. A token is minted afresh for each attempt
// (same jti), so a retry hours later is not already expired.
//
// Nothing personal is queued: the job holds the client ID, the pairwise
// sub and sid, and the event ID.
package backchannel
