// Package factsmon re-checks, on a schedule, whether the signature
// certificate each account's facts were proved with has been revoked. A
// JPKI signature certificate is revoked when its holder moves house or
// changes name, so a revoked one means the facts (address, name ...) the
// provider and its relying parties hold may no longer be true.
//
// The flow: the schedule is cut into rounds (one per Interval). The
// accounts are split into Partitions by a hash of their ID. In each
// round every node, on every tick, looks for a partition that no node
// has finished this round, takes its lease in the store (SetNX with a
// TTL, renewed while it works), and walks its accounts in order from the
// partition's cursor, which it saves as it goes: a node that dies hands
// its partition to the next with at most a few accounts checked twice,
// and no account is checked twice in a round otherwise. Each account is
// asked of the CRL checker first — an in-memory index, free — and only
// what the CRLs leave undecided goes to OCSP, when configured, because
// each OCSP query may cost the operator a fee. A revoked certificate
// marks the facts stale (account.Store.CheckFacts); the monitor then
// publishes FactsStale on the events outbox (the resident's mail and the
// relying parties' events follow from it) and records the announcement,
// so that the event goes out at least once and, but for a crash between
// the two, once.
//
// Metrics: accounts checked, stale facts found, and checks spent per
// source (OCSP queries are the ones that may cost a fee).
package factsmon
