// Package loadtool drives a running Watashi the way residents and relying
// parties do, and reports what each login costs the provider and its
// store.
//
// Setup writes what a provider under test needs: simulator CAs (their
// certificates are the provider's only trust anchors), secrets, two
// clients (client_secret_basic and private_key_jwt) and a configuration
// for `watashi serve`. Run then starts workers, each with its own
// simulated resident (fresh RSA keys from those CAs, proofed on its first
// login) and, for every flow, a new browser: a new cookie jar and a new
// client address (X-Forwarded-For, believed because the configuration
// trusts the loopback proxy), so that the per-address limits see many
// residents, as in production. A login flow is authorize, the login page
// (a sign-in transaction), the wallet's fetch, RSA signature and
// submission, the status poll, finish, consent (remembered after the
// first), the callback, the code exchange and userinfo. The other phases
// repeat one request alone: the refresh grant, userinfo, introspection.
//
// Before and after each phase it reads the provider's telemetry listener
// (process CPU, store operations) and Redis INFO (commands, CPU, memory),
// so that the report divides what the provider and Redis spent by the
// work done. Latencies are the client's; the wallet's RSA signing happens
// in the tool and is not the provider's cost.
package loadtool
