package ids

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// New returns n random bytes, base64url without padding.
func New(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// Long is 256 random bits: auth requests, refresh tokens, cookies.
func Long() string { return New(32) }

// Short is 128 random bits: records whose ID is not a bearer secret on
// its own (a transaction also needs its binding cookie).
func Short() string { return New(16) }

// Hash is the lowercase hex SHA-256 of v: the store keys secrets by it, so
// that a copy of the store yields no usable cookie, code or token.
func Hash(v string) string {
	h := sha256.Sum256([]byte(v))
	return hex.EncodeToString(h[:])
}
