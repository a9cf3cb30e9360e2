// Command watashi is the single binary of the Watashi identity provider:
// the OpenID Connect server, its operator tools and the PKI bridge's
// command-line face.
//
// Each subcommand lives in its own file and registers itself in
// newRootCmd, so that the server, the wallet simulator and the key tools
// can grow without touching one another.
//
// # watashi pki
//
// `watashi pki inspect FILE` and `watashi pki verify ...` expose package
// pkibridge to shell scripts and operators: what the bridge would decide
// about a certificate or a signature, without running a server. Both print
// exactly one JSON object on standard output and signal the outcome through
// the exit status, which is a contract other tools script against:
//
//	0  the certificate or signature is accepted
//	1  the input was read but refused; "reason" holds a pkibridge.Reason
//	   (bad_signature, untrusted, expired, not_yet_valid, revoked,
//	   revocation_unknown, key_usage, malformed, weak_key, weak_algorithm,
//	   attributes) and "error" the detail
//	2  usage error, unreadable input or configuration (missing file, no
//	   --anchor, conflicting flags, bad --revocation value), or an internal
//	   failure; "error" holds the detail
//
// inspect prints {"certificate": {...}, "attributes": {...}}. The
// certificate object has kind ("signature", "authentication" or null when
// the profile is refused), subject and issuer (RFC 2253), serial (decimal)
// and serial_hex (lowercase), not_before and not_after (RFC 3339, UTC),
// policy_oids, key_usage (RFC 5280 names), public_key {algorithm, bits} and
// sha256_fingerprint (lowercase hex of the DER). attributes holds the basic
// four facts of a signature certificate (name, family_name, given_name,
// birthdate as YYYY-MM-DD, birthdate_era, gender, gender_code, address,
// name_substitution, address_substitution) and is absent for
// authentication certificates. A refused certificate still gets its
// certificate object, plus "reason" and "error", and exit status 1.
//
// verify prints {"valid": bool, ...} with "reason" and "error" when
// invalid, "certificate" and "attributes" whenever the leaf could be
// parsed, "revocation" {status, source, soft_fail, ...} once revocation was
// asked, and "format", "algorithm", "kind" and "chain" (subjects, leaf to
// anchor) when valid. Envelope inputs (--jws, --cms, --sig, --cert) are
// bounded to 1 MiB and --data to 16 MiB; a larger file is refused as
// malformed (status 1). CRL files get no CLI bound: national CRLs are
// large, and pkibridge applies its own CRLOptions.MaxBytes (256 MiB).
//
// Personal attributes are printed only inside "attributes", the explicit
// output the operator asked for; errors never contain them.
//
// # watashi load
//
// `watashi load setup` and `watashi load run` (package loadtool) measure a
// running provider from the outside, as residents, their phones and
// relying parties load it, and divide what the provider and Redis spent
// by the logins done. Unlike the other commands, run prints a table for
// people; --json writes the figures. docs/performance.md has the commands
// and the repository's figures.
package main
