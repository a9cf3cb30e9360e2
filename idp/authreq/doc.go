// Package authreq holds one /authorize request from the moment the
// provider accepts it until its code is exchanged, and the URLs that lead
// a browser through the flow that answers it.
//
// The life of a request:
//
//  1. The provider's /authorize validates the RP's parameters, resolves
//     the claims it asks for under the client's policy (once: the result
//     is stored with the request) and Creates the record with a TTL longer
//     than a sign-in transaction's, so that a slow card tap never outlives
//     the request it belongs to.
//  2. It is bound to the browser that opened it: the SHA-256 of a random
//     cookie (EnsureBinding). /authorize records the binding in the new
//     record when it can (a GET, which carries the browser's cookie), else
//     the login page Binds it. Every later step (the login page, consent,
//     the callback) checks the cookie, so knowing the request ID never
//     lets another browser finish it.
//  3. The consent step Completes it once with the account, the pairwise
//     subject, acr, amr and the claims the resident granted, and sends the
//     browser to the provider's callback, which mints exactly one code:
//     its hash goes into the record, whose lifetime becomes the code's.
//  4. A request that cannot go on is Failed: the RP hears the OAuth error
//     at its redirect URI and the record is deleted.
//
// Changes are compare-and-swap on the stored bytes, so that of two
// concurrent transitions (two callbacks, two completions) exactly one
// wins.
//
// Anyone may create a request, so limits.go bounds what one can make the
// store hold: each parameter's length, the whole request, the encoded
// record (checked on every write), and how many requests one client
// address may create per minute.
package authreq
