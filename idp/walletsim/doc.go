// Package walletsim is a simulated JPKI smartphone wallet: it holds a
// signature key and certificate and a user-authentication key and
// certificate issued by a jpkisim CA, fetches sign-in transactions from
// a Watashi provider and answers them, speaking the protocol in
// docs/wallet-protocol.md exactly as a phone app would.
//
// SIMULATOR ONLY: its keys are ordinary software keys and its CAs are the
// simulator's. It exists so that the command-line wallet, the demo's
// phone page and the end-to-end tests exercise the same client code, and
// so that a phone team has a working reference to compare against.
package walletsim
