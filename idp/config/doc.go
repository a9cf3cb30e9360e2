// Package config turns the operator's YAML file into the parts the
// provider runs on. Nearly every decision an operator makes enters here,
// so it is deliberately unforgiving: a mistake found here is a refused
// start, a mistake missed here is a provider running with rules its
// operator believes are on and are not.
//
// The work is three calls, kept apart so that each command stops at the
// step it needs (`watashi keys` and `watashi client` need the store, not
// the secrets or the PKI files):
//
//  1. Load reads the file strictly. An unknown or misspelt field, a value
//     of the wrong type, a key given twice or a second document is an error
//     naming its line, because a silently ignored setting is the worst kind
//     of mistake: nothing fails, and the setting is simply not in force.
//     Relative paths are resolved against the file's directory, so that a
//     config and its secret files can move together. Load then applies the
//     WATASHI_* environment overrides: the few scalar settings in which one
//     deployment of a shared file differs from another (issuer, listeners,
//     Redis address, secret file locations, log level). Load does not
//     validate, because what must hold depends on the command: OpenStore
//     checks only the store settings.
//  2. Validate reports every problem at once, each prefixed with its field
//     path, so that an operator fixes the whole file in one round rather
//     than one restart per mistake. Without --dev the production rules
//     apply and refuse what is only safe on a laptop: an http issuer, the
//     memory store, missing or short keys, revocation off, CORS "*" and
//     http redirect URIs. A file saying dev: true is refused without the
//     flag, so that a development file copied to a server fails loudly
//     instead of running with relaxed rules.
//  3. Options validates again (no caller can build a refused config) and
//     builds the running parts: the store, the certificate verifier with
//     its revocation sources, the static clients with their secrets hashed
//     and sectors resolved, the keys and a metrics registry. Under --dev a
//     missing key is generated at random and the log says so, because
//     everything keyed by it (sessions, pairwise subjects) then dies with
//     the process.
//
// Secrets come from files. A process's environment is visible to more
// tools than a file readable only by its owner (process listings, crash
// reports, container inspection), and a file can be handed over by
// systemd credentials or a mounted container secret without the value ever
// appearing in a unit file, a compose file or a shell history. Inline keys
// and the WATASHI_*_KEY variables exist for development; setting a key both
// inline and as a file is an error rather than a precedence rule nobody
// remembers, and an override of one form clears the other. Keys are read
// as hex or base64 so that `openssl rand` output can be used as is, and no
// error ever echoes key material. A static client's plain secret is hashed
// at start-up and not kept; client_secret_hash keeps it off the server
// entirely.
//
// There is no $VAR expansion inside the file. Expansion would make the
// file's meaning depend on whoever starts the process, turn every '$' in a
// value (a Redis password) into a hazard, and hide which settings the
// environment can change. Instead each overridable setting has exactly one
// named variable, all of them listed in docs/operator-guide.md; lists,
// clients and PKI files have none and belong in the file. An empty
// variable is ignored, because systemd and container tooling often define
// variables empty.
package config
