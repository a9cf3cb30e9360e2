package passkey

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
)

// KV is the part of the store ceremonies use.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, error)
	SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	Take(ctx context.Context, key string) ([]byte, error)
}

// Ceremony kinds.
const (
	kindLogin    = "login"
	kindRegister = "register"
)

// ceremonyTTL is how long a started ceremony may be finished: the
// browser's own timeout (the options say the same) and a little more.
const ceremonyTTL = 5 * time.Minute

// maxCeremonyID bounds what a client may send as a ceremony ID.
const maxCeremonyID = 64

// ceremony is a started registration or sign-in: the challenge and what
// it is bound to.
type ceremony struct {
	Kind string `json:"k"`
	// Binding is the hash of the browser's binding cookie.
	Binding string `json:"b"`
	// Request is the authorization request a sign-in answers, or the one
	// a registration offered after sign-in goes back to.
	Request string `json:"r,omitempty"`
	// Account is who registers (the session's account at the start).
	Account string `json:"a,omitempty"`
	// Next is where a registration started on the account page returns.
	Next string               `json:"n,omitempty"`
	Data webauthn.SessionData `json:"d"`
}

func ceremonyKey(id string) string { return "pkc:" + ids.Hash(id) }

type ceremonies struct{ kv KV }

// start stores c and returns its ID, which the browser sends back.
func (cs ceremonies) start(ctx context.Context, c *ceremony) (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	id := ids.Long()
	ok, err := cs.kv.SetNX(ctx, ceremonyKey(id), b, ceremonyTTL)
	if err != nil {
		return "", fmt.Errorf("passkey: store ceremony: %w", err)
	}
	if !ok {
		return "", errors.New("passkey: ceremony ID collision")
	}
	return id, nil
}

// errCeremony: no such ceremony, or not this browser's, or not of this
// kind. Nothing was consumed.
var errCeremony = errors.New("passkey: unknown ceremony")

// peek reads a ceremony without consuming it and checks that it is of
// kind and belongs to the browser whose binding hash is binding, so that
// a stranger's request never spends it.
func (cs ceremonies) peek(ctx context.Context, id, kind, binding string) (*ceremony, error) {
	if id == "" || len(id) > maxCeremonyID || binding == "" {
		return nil, errCeremony
	}
	b, err := cs.kv.Get(ctx, ceremonyKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errCeremony
	}
	if err != nil {
		return nil, fmt.Errorf("passkey: read ceremony: %w", err)
	}
	var c ceremony
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("passkey: ceremony record: %w", err)
	}
	if c.Kind != kind || subtle.ConstantTimeCompare([]byte(c.Binding), []byte(binding)) != 1 {
		return nil, errCeremony
	}
	return &c, nil
}

// take consumes the ceremony: of two concurrent finishes one gets it.
func (cs ceremonies) take(ctx context.Context, id string) error {
	_, err := cs.kv.Take(ctx, ceremonyKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return errCeremony
	}
	if err != nil {
		return fmt.Errorf("passkey: take ceremony: %w", err)
	}
	return nil
}
