package whitelist

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters for client secrets, identical to the provider's
// (idp.HashClientSecret): OWASP's minimum of 19 MiB and 2 passes. The
// format is a PHC string "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>"
// with unpadded standard base64, 16-byte salt and 32-byte key, so that
// the provider verifies what the registry stores without knowing which
// one wrote it.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// HashSecret produces Client.SecretHash. Generated secrets have 256 bits
// of entropy, but an operator may set one by hand, so a slow hash keeps a
// leaked store from giving the secrets away.
func HashSecret(secret string) (string, error) {
	if secret == "" {
		return "", errors.New("whitelist: empty client secret")
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(secret), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// SecretHash is a parsed Argon2id PHC string. The provider verifies
// configured and registered secrets with it, so the format has one
// implementation.
type SecretHash struct {
	Time, Memory uint32
	Threads      uint8
	Salt, Key    []byte
}

// ParseSecretHash accepts only parameters that are safe to run: a stored
// record or a config file must not make verification allocate gigabytes.
func ParseSecretHash(v string) (*SecretHash, error) {
	bad := errors.New("secret hash is not an argon2id PHC string from HashSecret")
	parts := strings.Split(v, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return nil, bad
	}
	var t, m, p uint32
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || n != 3 ||
		parts[3] != fmt.Sprintf("m=%d,t=%d,p=%d", m, t, p) {
		return nil, bad
	}
	if m < 8*1024 || m > 256*1024 || t < 1 || t > 10 || p < 1 || p > 8 {
		return nil, errors.New("secret hash argon2id parameters are out of range")
	}
	h := &SecretHash{Time: t, Memory: m, Threads: uint8(p)}
	var err error
	if h.Salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(h.Salt) < 8 {
		return nil, bad
	}
	if h.Key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(h.Key) < 16 || len(h.Key) > 64 {
		return nil, bad
	}
	return h, nil
}

// Matches runs Argon2id over secret and compares in constant time
// (~20 ms of CPU with the default parameters).
func (h *SecretHash) Matches(secret string) bool {
	got := argon2.IDKey([]byte(secret), h.Salt, h.Time, h.Memory, h.Threads, uint32(len(h.Key)))
	return subtle.ConstantTimeCompare(got, h.Key) == 1
}

// VerifySecret checks a client secret against the stored hash in
// constant time. It costs ~20 ms of CPU; the provider keeps its own
// cache of recent successes in front of it.
func (c *Client) VerifySecret(secret string) bool {
	if c.TokenEndpointAuthMethod != AuthClientSecretBasic || secret == "" {
		return false
	}
	h, err := ParseSecretHash(c.SecretHash)
	if err != nil {
		return false
	}
	return h.Matches(secret)
}

// randomToken returns n random bytes, base64url without padding.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("whitelist: crypto/rand failed: " + err.Error()) // never returns an error since Go 1.24
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// tokenHash is how bearer tokens we issue (registration access tokens,
// initial access tokens, the admin token) are stored. They carry 256
// random bits, so a fast hash loses nothing and keeps every request cheap.
func tokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// tokenMatches compares a presented token with a stored hash in constant
// time.
func tokenMatches(token, storedHash string) bool {
	if token == "" || len(storedHash) != sha256.Size*2 {
		return false
	}
	want, err := hex.DecodeString(storedHash)
	if err != nil {
		return false
	}
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}
