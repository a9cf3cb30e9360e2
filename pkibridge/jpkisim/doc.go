// Package jpkisim is a JPKI-profile simulator CA for tests, the demo and
// benchmarks. TEST AND DEVELOPMENT ONLY: its certificates chain to a root
// whose name says SIMULATOR, its keys live in memory, and nothing it issues
// is evidence of anyone's identity. Production deployments trust only the
// J-LIS roots (pkibridge.DefaultAnchors).
//
// A CA issues signature and user-authentication certificates with the card
// profile: RSA keys, critical key usage, the JPKI policy OIDs
// and, for signature certificates, the basic four facts as SubjectAltName
// otherNames. It can revoke, and serve CRL and OCSP over HTTP (server.go).
// It also signs as a card or a wallet does (sign.go: JWS with x5c, CMS,
// raw PKCS#1 v1.5), for the wallet simulator and the verifier's tests;
// production code never signs a resident's challenge.
package jpkisim
