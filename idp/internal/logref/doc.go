// Package logref keeps identifiers that link a resident out of the logs:
// account IDs, and the serial numbers and fingerprints of certificates,
// which are the same at every relying party. Such a value is logged as a
// reference, a keyed hash under a key of this deployment, so that an
// operator can still follow one resident through the lines of one
// deployment, while a leaked log links nobody anywhere else and cannot be
// matched against a known certificate or account.
//
// Call sites attach the value with Account or Cert; the handler Wrap
// installs (once, where the provider builds its logger) turns it into the
// reference. A logger without that handler prints "redacted", never the
// value.
package logref
