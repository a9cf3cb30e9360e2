// Package whitelisttest is the registry's conformance suite, run against
// every storage backend (as dex's storage/conformance is): the memory
// and Redis stores from whitelist's own tests, and any future backend
// from its package's tests.
package whitelisttest
