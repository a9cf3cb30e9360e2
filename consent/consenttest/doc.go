// Package consenttest is the grant-storage conformance suite. Every KV
// backend runs it (consent's own tests on idp/store's memory and Redis
// backends, and idp/store's tests may too), so a backend that loses
// a concurrent grant or leaves a revoked RP on the account page fails
// here rather than in production.
package consenttest
