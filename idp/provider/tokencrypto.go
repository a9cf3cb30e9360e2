package provider

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
)

// tokenCrypto seals what the library hands it to make an access token
// ("<token ID>:<subject>") with AES-256-GCM under the token key, in a
// compact form: "<key ID>.<base64url(nonce ‖ ciphertext)>". The library's
// own form is a JWE whose JSON header a userinfo request spent most of its
// CPU parsing. Since access tokens are self-contained, this seal is what
// vouches for them: the key ID and a label are authenticated with them,
// and the key ID names the token key so that a rotation can keep the old
// one as a decrypter.
type tokenCrypto struct {
	kid  string
	aead cipher.AEAD
}

// maxSealedToken bounds what Decrypt reads: a token ID with its scopes,
// a subject and the envelope fit well within it.
const maxSealedToken = 4096

const tokenLabel = "watashi-access-token\x00"

var errSealedToken = errors.New("provider: not an access token of this key")

func newTokenCrypto(key [32]byte, kid string) (*tokenCrypto, error) {
	if kid == "" || strings.Contains(kid, ".") {
		return nil, errors.New("provider: token key ID must be non-empty without '.'")
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &tokenCrypto{kid: kid, aead: aead}, nil
}

func (c *tokenCrypto) ad() []byte { return []byte(tokenLabel + c.kid) }

// Encrypt seals s with a random nonce.
func (c *tokenCrypto) Encrypt(s string) (string, error) {
	n := c.aead.NonceSize()
	buf := make([]byte, n, n+len(s)+c.aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	sealed := c.aead.Seal(buf, buf[:n], []byte(s), c.ad())
	return c.kid + "." + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Decrypt opens a token Encrypt made with this key; anything else, and
// anything altered, is an error.
func (c *tokenCrypto) Decrypt(tok string) (string, error) {
	if len(tok) > maxSealedToken {
		return "", errSealedToken
	}
	kid, body, ok := strings.Cut(tok, ".")
	if !ok || kid != c.kid {
		return "", errSealedToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	n := c.aead.NonceSize()
	if err != nil || len(raw) < n+c.aead.Overhead() {
		return "", errSealedToken
	}
	plain, err := c.aead.Open(nil, raw[:n], raw[n:], c.ad())
	if err != nil {
		return "", errSealedToken
	}
	return string(plain), nil
}
