// Package ssf is Watashi's Shared Signals Framework 1.0 transmitter: it
// tells relying parties, as signed Security Event Tokens (RFC 8417),
// what happened to the residents who consented to them.
//
// The flow: a relying party reads /.well-known/ssf-configuration and
// creates a stream at the configuration endpoint, authenticating with
// the credentials it uses at the token endpoint (client_secret_basic as
// HTTP Basic, or a fresh private_key_jwt client assertion as a Bearer
// token). A stream is push (RFC 8935: Watashi POSTs each SET to the
// receiver's endpoint_url through the guarded fetcher) or poll (RFC
// 8936: the receiver POSTs to the stream's poll endpoint, acknowledging
// what it got). The events outbox hands every event to Handle, which
// finds the relying parties holding a consent grant for the account
// (and, for a withdrawn consent, the withdrawn one), and for each of
// their enabled streams that asked for the event type queues a SET in
// the store (idp/delivery), one queue per stream: bounded, retried with
// backoff, held while the stream is paused. SETs are signed at delivery
// with the provider's key ring (typ secevent+jwt) and name the resident
// by the relying party's pairwise subject (sub_id format iss_sub).
//
// Events sent: CAEP session-revoked (a session ended, consent
// withdrawn), CAEP credential-change (an authenticator added, removed or
// blocked; the proofing certificate revoked, credential_type x509),
// RISC account-credential-change-required (an authenticator blocked by
// the operator: the resident needs another), and SSF verification.
package ssf
