// Package keys is the ring of ID token signing keys. The keys live in the
// store, so that every node signs with the same key and publishes the
// same JWKS, and they rotate on a schedule without any RP seeing a token
// it cannot verify:
//
//   - each algorithm (ES256 by default, RS256 for clients that ask) has a
//     "next" key published before it signs anything, a "current" key that
//     signs, and a "previous" key still published for the tokens it
//     signed;
//   - a rotation (Rotate, or RotateIfDue from Run) promotes next, demotes
//     current and makes a new next under a lock in the store, in an order
//     that keeps every intermediate state readable;
//   - the ring is cached per node and reloaded when another node announces
//     a rotation over pub/sub, or after 30 s should the message be lost.
//
// Each private key is sealed (package seal) under a data key of its own,
// wrapped by the KEK and bound to the kid and algorithm; Rewrap re-wraps
// the data keys after a KEK change. Key records are durable and need a
// persistent store.
package keys
