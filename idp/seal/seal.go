package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// KeySize is the size of every key here: AES-256.
const KeySize = 32

// Format tags and the current version. The tag tells a sealed message from
// a wrapped key (and from anything written before encryption, such as
// JSON, which starts with '{').
const (
	tagMessage    byte = 'S'
	tagWrappedKey byte = 'K'
	version1      byte = 1

	nonceSize  = 12
	tagSize    = 16
	headerSize = 2
	// MessageOverhead is what Seal adds to the plaintext.
	MessageOverhead = headerSize + nonceSize + tagSize
)

var (
	// ErrMalformed: the bytes are not a ciphertext of this package (wrong
	// tag, unknown version, truncated), such as a record written before
	// encryption at rest.
	ErrMalformed = errors.New("seal: not a sealed value of a known format")
	// ErrOpen: the ciphertext does not authenticate: another key, altered
	// bytes, or associated data of another record.
	ErrOpen = errors.New("seal: does not open: wrong key, altered, or bound to another record")
)

// Sealer encrypts and decrypts with one data key. It is safe for
// concurrent use.
type Sealer struct{ aead cipher.AEAD }

// NewSealer returns a Sealer for a 32-byte data key.
func NewSealer(dek []byte) (*Sealer, error) {
	aead, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal: a key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// NewDataKey returns a fresh random data key.
func NewDataKey() []byte {
	k := make([]byte, KeySize)
	_, _ = rand.Read(k) // crypto/rand never fails on supported platforms
	return k
}

// Seal encrypts plaintext bound to aad (which is authenticated, not
// stored: Open needs the same).
func (s *Sealer) Seal(plaintext, aad []byte) []byte {
	out := make([]byte, headerSize+nonceSize, MessageOverhead+len(plaintext))
	out[0], out[1] = tagMessage, version1
	_, _ = rand.Read(out[headerSize:])
	return s.aead.Seal(out, out[headerSize:], plaintext, withHeader(out[:headerSize], aad))
}

// Open decrypts a message made by Seal with the same key and aad. It
// returns ErrMalformed for bytes that are not such a message and ErrOpen
// when they do not authenticate.
func (s *Sealer) Open(msg, aad []byte) ([]byte, error) {
	if len(msg) < MessageOverhead || msg[0] != tagMessage {
		return nil, ErrMalformed
	}
	if msg[1] != version1 {
		return nil, fmt.Errorf("%w: message version %d", ErrMalformed, msg[1])
	}
	nonce := msg[headerSize : headerSize+nonceSize]
	pt, err := s.aead.Open(nil, nonce, msg[headerSize+nonceSize:], withHeader(msg[:headerSize], aad))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// withHeader is the associated data actually authenticated: the format
// header (fixed length, so no ambiguity) followed by the caller's.
func withHeader(header, aad []byte) []byte {
	out := make([]byte, 0, len(header)+len(aad))
	return append(append(out, header...), aad...)
}
