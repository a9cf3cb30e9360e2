// Package events is the durable, ordered outbox of what happened to
// residents' accounts: sign-ins, sessions ended, authenticators changed,
// facts gone stale, consent withdrawn.
//
// Producers (sign-in, logout, the account page, the kill switch, the facts
// monitor) call Publish with the account and what they know; each
// declares its own small interface for it. A producer whose change is
// one store batch adds the event to it (AppendOp, then Appended), so that
// the event costs no round trip of its own. Publish appends the event
// to a store stream (durable writes, replicas awaited in the store) and
// wakes the consumers on every node through the store's pub/sub, once
// per burst: a node gathers what it appends for a tenth of a second and
// then wakes them for all of it, so that a busy node's consumers read
// many events per round trip instead of one.
//
// Consumers (notification mail, back-channel logout, the Shared Signals
// transmitter) run Consume under a name of their own. Each consumer has
// a cursor in the store, the ID of the last event it handled, and a
// lease: of the nodes running the same consumer one holds the lease and
// renews it, the others wait and take over when it is given back or
// lapses (a node that died). The holder reads the stream after the
// cursor, calls the handler for each event in order, and moves the cursor
// by compare-and-swap, so that a node that lost its lease unnoticed
// cannot move the cursor back or past what another handled. A failing
// handler is retried with backoff and the cursor waits: delivery is at
// least once, so handlers are idempotent or queue their own retries.
// Without a wake-up (pub/sub loses messages by design) a consumer polls.
//
// The stream stays bounded: Trim, which consumers run about once an hour,
// drops events older than the retention (7 days by default) that every
// consumer has passed, and events older than the maximum age (30 days)
// even if a consumer never came back for them.
//
// Events carry internal IDs (account, session, link, passkey), never
// personal values or certificate serials; a consumer turns them into what
// its audience may see, such as pairwise subjects.
package events
