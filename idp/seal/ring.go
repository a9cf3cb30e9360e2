package seal

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

const (
	idSize         = 8
	wrappedKeySize = headerSize + idSize + nonceSize + KeySize + tagSize
)

// ErrUnknownKEK: a wrapped key names a KEK the ring does not hold (an old
// KEK removed too early, or another deployment's store).
var ErrUnknownKEK = errors.New("seal: wrapped by a key-encryption key that is not configured")

// KEK is a key-encryption key.
type KEK struct {
	id   [idSize]byte
	aead cipher.AEAD
}

// ParseKEK makes a KEK of 32 key bytes.
func ParseKEK(key []byte) (*KEK, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("watashi seal: key-encryption key ID v1"))
	k := &KEK{aead: aead}
	copy(k.id[:], m.Sum(nil))
	return k, nil
}

// ID names the KEK in wrapped keys and in operators' tools: 16 hex
// digits, a keyed hash that reveals nothing of the key.
func (k *KEK) ID() string { return hex.EncodeToString(k.id[:]) }

// Ring is the current KEK and the previous ones still accepted for
// unwrapping.
type Ring struct {
	current *KEK
	all     []*KEK
}

// NewRing returns a ring that wraps with current and unwraps with any of
// current and previous. The same key twice is refused: it is a
// configuration slip.
func NewRing(current *KEK, previous ...*KEK) (*Ring, error) {
	if current == nil {
		return nil, errors.New("seal: a ring needs a current key-encryption key")
	}
	r := &Ring{current: current}
	for _, k := range append([]*KEK{current}, previous...) {
		if k == nil {
			return nil, errors.New("seal: nil key-encryption key")
		}
		if r.find(k.id) != nil {
			return nil, fmt.Errorf("seal: key-encryption key %s given twice", k.ID())
		}
		r.all = append(r.all, k)
	}
	return r, nil
}

// GenerateRing returns a ring of one random KEK, for development and
// tests: whatever it seals dies with the process.
func GenerateRing() *Ring {
	k := make([]byte, KeySize)
	_, _ = rand.Read(k)
	kek, err := ParseKEK(k)
	if err != nil {
		panic(err) // the size is right by construction
	}
	return &Ring{current: kek, all: []*KEK{kek}}
}

func (r *Ring) find(id [idSize]byte) *KEK {
	for _, k := range r.all {
		if k.id == id {
			return k
		}
	}
	return nil
}

// CurrentID is the ID of the KEK that wraps.
func (r *Ring) CurrentID() string { return r.current.ID() }

// IDs lists every KEK of the ring, the current one first.
func (r *Ring) IDs() []string {
	out := make([]string, len(r.all))
	for i, k := range r.all {
		out[i] = k.ID()
	}
	return out
}

// Wrap encrypts a data key with the current KEK, bound to aad.
func (r *Ring) Wrap(dek, aad []byte) ([]byte, error) {
	if len(dek) != KeySize {
		return nil, fmt.Errorf("seal: a data key must be %d bytes, got %d", KeySize, len(dek))
	}
	out := make([]byte, headerSize+idSize+nonceSize, wrappedKeySize)
	out[0], out[1] = tagWrappedKey, version1
	copy(out[headerSize:], r.current.id[:])
	_, _ = rand.Read(out[headerSize+idSize:])
	nonce := out[headerSize+idSize:]
	return r.current.aead.Seal(out, nonce, dek, withHeader(out[:headerSize+idSize], aad)), nil
}

// parseWrapped checks the format and returns the KEK ID.
func parseWrapped(w []byte) ([idSize]byte, error) {
	var id [idSize]byte
	if len(w) < headerSize || w[0] != tagWrappedKey {
		return id, ErrMalformed
	}
	if w[1] != version1 {
		return id, fmt.Errorf("%w: wrapped key version %d", ErrMalformed, w[1])
	}
	if len(w) != wrappedKeySize {
		return id, ErrMalformed
	}
	copy(id[:], w[headerSize:])
	return id, nil
}

// WrappedBy returns the ID of the KEK that wrapped w.
func WrappedBy(w []byte) (string, error) {
	id, err := parseWrapped(w)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(id[:]), nil
}

// Unwrap decrypts a wrapped data key with whichever KEK of the ring
// wrapped it.
func (r *Ring) Unwrap(w, aad []byte) ([]byte, error) {
	id, err := parseWrapped(w)
	if err != nil {
		return nil, err
	}
	k := r.find(id)
	if k == nil {
		return nil, fmt.Errorf("%w (%s)", ErrUnknownKEK, hex.EncodeToString(id[:]))
	}
	h := headerSize + idSize
	dek, err := k.aead.Open(nil, w[h:h+nonceSize], w[h+nonceSize:], withHeader(w[:h], aad))
	if err != nil {
		return nil, ErrOpen
	}
	return dek, nil
}

// Rewrap re-wraps w with the current KEK, unless it already is. It
// reports whether it changed anything.
func (r *Ring) Rewrap(w, aad []byte) ([]byte, bool, error) {
	id, err := parseWrapped(w)
	if err != nil {
		return nil, false, err
	}
	if id == r.current.id {
		// Still authenticate it: a rotation must not certify a damaged
		// key as done.
		if _, err := r.Unwrap(w, aad); err != nil {
			return nil, false, err
		}
		return w, false, nil
	}
	dek, err := r.Unwrap(w, aad)
	if err != nil {
		return nil, false, err
	}
	out, err := r.Wrap(dek, aad)
	clear(dek)
	return out, err == nil, err
}

// NewSealer makes a fresh data key and returns its Sealer and the key
// wrapped under aad, for the caller to store.
func (r *Ring) NewSealer(aad []byte) (*Sealer, []byte, error) {
	dek := NewDataKey()
	defer clear(dek)
	w, err := r.Wrap(dek, aad)
	if err != nil {
		return nil, nil, err
	}
	s, err := NewSealer(dek)
	if err != nil {
		return nil, nil, err
	}
	return s, w, nil
}

// OpenSealer unwraps a stored data key and returns its Sealer.
func (r *Ring) OpenSealer(w, aad []byte) (*Sealer, error) {
	dek, err := r.Unwrap(w, aad)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	return NewSealer(dek)
}

// Census counts the wrapped keys a rotation found, by the ID of the KEK
// that wrapped each, and how many it re-wrapped.
type Census struct {
	ByKEK     map[string]int `json:"by_kek"`
	Rewrapped int            `json:"rewrapped"`
}

// Count records one wrapped key.
func (c *Census) Count(w []byte) {
	id, err := WrappedBy(w)
	if err != nil {
		id = "malformed"
	}
	if c.ByKEK == nil {
		c.ByKEK = map[string]int{}
	}
	c.ByKEK[id]++
}

// Add merges o into c.
func (c *Census) Add(o Census) {
	for id, n := range o.ByKEK {
		if c.ByKEK == nil {
			c.ByKEK = map[string]int{}
		}
		c.ByKEK[id] += n
	}
	c.Rewrapped += o.Rewrapped
}
