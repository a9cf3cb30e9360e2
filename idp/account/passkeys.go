package account

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/watashi-id/watashi/idp/store"
)

// Passkey is a WebAuthn credential registered to the account: what
// verifying its next assertion needs (the public key, the signature
// counter, the backup flags it was made with) and what the account page
// shows. It lives inside the sealed account record, so a copy of the
// store neither shows it nor lets whoever can write the store slip in a
// public key of their own: the record would not open.
type Passkey struct {
	// ID is the credential ID the authenticator chose.
	ID []byte `json:"id"`
	// PublicKey is the COSE key of the credential.
	PublicKey []byte `json:"public_key"`
	// AAGUID names the authenticator model as the authenticator itself
	// reported it (attested only when the attestation was verified).
	AAGUID            []byte `json:"aaguid,omitempty"`
	AttestationFormat string `json:"attestation_format,omitempty"`
	AttestationType   string `json:"attestation_type,omitempty"`
	// SignCount is the last signature counter seen (0 for authenticators
	// that keep none, as synced passkeys do).
	SignCount uint32 `json:"sign_count"`
	// BackupEligible is fixed at registration: a key that may be synced
	// stays one. BackupState is whether it was synced at the last use.
	BackupEligible bool     `json:"backup_eligible"`
	BackupState    bool     `json:"backup_state"`
	Transports     []string `json:"transports,omitempty"`
	// Name is the resident's own label for it.
	Name       string    `json:"name"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	// Disabled, when set, is why the credential signs no one in any
	// more (PasskeyCounterRegressed, PasskeyFlagsInconsistent); the
	// account page tells the resident.
	Disabled   string    `json:"disabled,omitempty"`
	DisabledAt time.Time `json:"disabled_at,omitzero"`
}

// Why a passkey was disabled.
const (
	// PasskeyCounterRegressed: the signature counter went back, the sign
	// of a cloned authenticator.
	PasskeyCounterRegressed = "counter"
	// PasskeyFlagsInconsistent: the backup flags contradict what the
	// credential was registered with.
	PasskeyFlagsInconsistent = "backup_flags"
)

// Synced reports whether the key was last seen backed up (a syncable
// passkey): RFC 8176's swk rather than hwk.
func (p *Passkey) Synced() bool { return p.BackupEligible || p.BackupState }

// Limits of a passkey record, so that neither a resident nor a client can
// grow an account without bound.
const (
	MaxPasskeys        = 10
	MaxPasskeyNameLen  = 64 // runes
	maxCredentialID    = 1023
	maxPasskeyKeyBytes = 2048
	passkeyHandleLen   = 32
)

// Passkey errors.
var (
	// ErrPasskeyNotFound: the account has no such credential.
	ErrPasskeyNotFound = fmt.Errorf("account: passkey not found: %w", store.ErrNotFound)
	// ErrPasskeyLimit: the account already has MaxPasskeys.
	ErrPasskeyLimit = errors.New("account: too many passkeys")
	// ErrPasskeyInvalid: the record or the name is not acceptable.
	ErrPasskeyInvalid = errors.New("account: invalid passkey")
)

// The passkey indexes. Both are single keys (no multi-key operation
// touches them), so they need no Cluster hash tag.
//
// pkuser maps the WebAuthn user handle, random per account, to the
// account: a discoverable sign-in names only the handle. pkcred holds
// every registered credential ID (hashed: IDs may be long) so that a
// credential cannot be registered to two accounts.
func passkeyUserKey(handle []byte) string {
	return "pkuser:" + base64.RawURLEncoding.EncodeToString(handle)
}

func passkeyCredKey(id []byte) string {
	h := sha256.Sum256(id)
	return "pkcred:" + base64.RawURLEncoding.EncodeToString(h[:])
}

// CleanPasskeyName trims a label and checks it: at most MaxPasskeyNameLen
// characters, no control characters. An empty name is refused.
func CleanPasskeyName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxPasskeyNameLen {
		return "", fail(ErrPasskeyInvalid, "a name of 1 to 64 characters is needed")
	}
	if strings.IndexFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError }) >= 0 {
		return "", fail(ErrPasskeyInvalid, "the name has control or formatting characters")
	}
	return name, nil
}

func validPasskey(p *Passkey) error {
	switch {
	case len(p.ID) == 0 || len(p.ID) > maxCredentialID:
		return fail(ErrPasskeyInvalid, "credential ID length")
	case len(p.PublicKey) == 0 || len(p.PublicKey) > maxPasskeyKeyBytes:
		return fail(ErrPasskeyInvalid, "public key length")
	case len(p.AAGUID) != 0 && len(p.AAGUID) != 16:
		return fail(ErrPasskeyInvalid, "AAGUID length")
	case len(p.Transports) > 8:
		return fail(ErrPasskeyInvalid, "too many transports")
	}
	_, err := CleanPasskeyName(p.Name)
	return err
}

// Passkey returns the account's credential id, or ErrPasskeyNotFound.
func (a *Account) Passkey(id []byte) (*Passkey, bool) {
	i := slices.IndexFunc(a.Passkeys, func(p Passkey) bool { return bytes.Equal(p.ID, id) })
	if i < 0 {
		return nil, false
	}
	return &a.Passkeys[i], true
}

// PasskeyHandle returns the account's WebAuthn user handle, making one
// the first time: 32 random bytes, never the account ID, so that an
// authenticator's list of passkeys says nothing about the account.
func (s *Store) PasskeyHandle(ctx context.Context, id string) ([]byte, error) {
	for range casRetries {
		l, err := s.load(ctx, id)
		if err != nil {
			return nil, err
		}
		if len(l.a.PasskeyHandle) != 0 {
			return l.a.PasskeyHandle, nil
		}
		h := make([]byte, passkeyHandleLen)
		_, _ = rand.Read(h)
		// The index first: a record naming a handle always has its index.
		if ok, err := s.kv.SetNX(ctx, passkeyUserKey(h), []byte(id), 0); err != nil {
			return nil, fmt.Errorf("account: index passkey handle: %w", err)
		} else if !ok {
			continue // 256 random bits collided: draw again
		}
		a := *l.a
		a.PasskeyHandle = h
		a.UpdatedAt = s.now().UTC()
		ok, err := s.replace(ctx, l, &a)
		if err != nil || !ok {
			_ = s.kv.Delete(ctx, passkeyUserKey(h))
			if err != nil {
				return nil, err
			}
			continue
		}
		return h, nil
	}
	return nil, ErrContention
}

// ByPasskeyHandle returns the account whose user handle is handle, or an
// error wrapping ErrNotFound.
func (s *Store) ByPasskeyHandle(ctx context.Context, handle []byte) (*Account, error) {
	if len(handle) != passkeyHandleLen {
		return nil, ErrNotFound
	}
	b, err := s.kv.Get(ctx, passkeyUserKey(handle))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("account: read passkey handle: %w", err)
	}
	l, err := s.load(ctx, string(b))
	if err != nil {
		return nil, err
	}
	// The index is not sealed: only the sealed record decides.
	if subtle.ConstantTimeCompare(l.a.PasskeyHandle, handle) != 1 {
		return nil, ErrNotFound
	}
	return l.a, nil
}

// AddPasskey registers p to account id, which must already have its
// handle (PasskeyHandle). A credential ID registered to any account
// (this one included) is ErrConflict; an account with MaxPasskeys is
// ErrPasskeyLimit. Nothing is written on refusal.
func (s *Store) AddPasskey(ctx context.Context, id string, p Passkey) (*Account, error) {
	if err := validPasskey(&p); err != nil {
		return nil, err
	}
	p.Name, _ = CleanPasskeyName(p.Name)
	l, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(l.a.PasskeyHandle) == 0 {
		return nil, fail(ErrPasskeyInvalid, "the account has no passkey handle")
	}
	if len(l.a.Passkeys) >= MaxPasskeys {
		return nil, ErrPasskeyLimit
	}
	ok, err := s.kv.SetNX(ctx, passkeyCredKey(p.ID), []byte(id), 0)
	if err != nil {
		return nil, fmt.Errorf("account: index passkey: %w", err)
	}
	if !ok {
		return nil, fail(ErrConflict, "the credential is already registered")
	}
	for range casRetries {
		a := *l.a
		if len(a.Passkeys) >= MaxPasskeys {
			err = ErrPasskeyLimit
			break
		}
		a.Passkeys = append(slices.Clone(a.Passkeys), p)
		a.UpdatedAt = s.now().UTC()
		var won bool
		if won, err = s.replace(ctx, l, &a); err != nil {
			break
		} else if won {
			return &a, nil
		}
		if l, err = s.load(ctx, id); err != nil {
			break
		}
		err = ErrContention
	}
	_ = s.kv.Delete(ctx, passkeyCredKey(p.ID))
	return nil, err
}

// UpdatePasskey applies fn to the account's credential cred with
// compare-and-swap and returns the account as written. fn may be called
// more than once; an error from it writes nothing and is returned.
func (s *Store) UpdatePasskey(ctx context.Context, id string, cred []byte, fn func(*Passkey) error) (*Account, error) {
	for range casRetries {
		l, err := s.load(ctx, id)
		if err != nil {
			return nil, err
		}
		a := *l.a
		a.Passkeys = slices.Clone(a.Passkeys)
		p, ok := a.Passkey(cred)
		if !ok {
			return nil, ErrPasskeyNotFound
		}
		if err := fn(p); err != nil {
			return nil, err
		}
		if err := validPasskey(p); err != nil {
			return nil, err
		}
		a.UpdatedAt = s.now().UTC()
		if won, err := s.replace(ctx, l, &a); err != nil {
			return nil, err
		} else if won {
			return &a, nil
		}
	}
	return nil, ErrContention
}

// RenamePasskey sets the resident's label of a credential.
func (s *Store) RenamePasskey(ctx context.Context, id string, cred []byte, name string) error {
	name, err := CleanPasskeyName(name)
	if err != nil {
		return err
	}
	_, err = s.UpdatePasskey(ctx, id, cred, func(p *Passkey) error { p.Name = name; return nil })
	return err
}

// RemovePasskey deletes a credential from the account for good: it signs
// no one in afterwards, and its ID may be registered again.
func (s *Store) RemovePasskey(ctx context.Context, id string, cred []byte) error {
	for range casRetries {
		l, err := s.load(ctx, id)
		if err != nil {
			return err
		}
		a := *l.a
		i := slices.IndexFunc(a.Passkeys, func(p Passkey) bool { return bytes.Equal(p.ID, cred) })
		if i < 0 {
			return ErrPasskeyNotFound
		}
		a.Passkeys = slices.Delete(slices.Clone(a.Passkeys), i, i+1)
		a.UpdatedAt = s.now().UTC()
		won, err := s.replace(ctx, l, &a)
		if err != nil {
			return err
		}
		if won {
			return s.dropPasskeyIndex(ctx, passkeyCredKey(cred), id)
		}
	}
	return ErrContention
}

// passkeyIndexes are the index keys an account's passkeys own.
func (a *Account) passkeyIndexes() []string {
	var keys []string
	if len(a.PasskeyHandle) != 0 {
		keys = append(keys, passkeyUserKey(a.PasskeyHandle))
	}
	for _, p := range a.Passkeys {
		keys = append(keys, passkeyCredKey(p.ID))
	}
	return keys
}

// dropPasskeyIndex removes an index entry if it still points at id.
func (s *Store) dropPasskeyIndex(ctx context.Context, key, id string) error {
	cur, err := s.kv.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("account: read passkey index: %w", err)
	}
	if string(cur) != id {
		return nil
	}
	if err := s.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("account: delete passkey index: %w", err)
	}
	return nil
}
