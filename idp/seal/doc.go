// Package seal is envelope encryption for what the provider keeps at
// rest: residents' facts and the private signing keys.
//
//   - A data key (DEK) is 32 random bytes; a Sealer encrypts records
//     with it under AES-256-GCM, a fresh 96-bit nonce from crypto/rand
//     per message.
//   - A key-encryption key (KEK) comes from a file the operator holds,
//     never from the store. It only wraps DEKs (AES-256-GCM as well). Its
//     ID is an HMAC of the key, so that a wrapped DEK names the KEK it
//     needs without saying anything about it.
//   - A Ring holds the current KEK, which wraps, and the previous ones,
//     which still unwrap: every node keeps reading while a rotation
//     re-wraps the stored DEKs (Rewrap) from the old KEK to the new.
//
// Every ciphertext is bound to its record by associated data chosen by
// the caller (the store key, the account ID): a ciphertext copied into
// another record does not open. The formats begin with a tag and a version
// byte, both authenticated:
//
//	message:     'S' 0x01 | nonce (12) | AES-GCM(DEK, plaintext) | tag (16)
//	wrapped DEK: 'K' 0x01 | KEK ID (8) | nonce (12) | AES-GCM(KEK, DEK) | tag (16)
//
// Random nonces bound each key to about 2^32 messages; a DEK seals one
// record a handful of times over its life, and a KEK wraps one DEK per
// account and per signing key, far below that.
package seal
