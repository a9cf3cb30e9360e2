package consent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// KV is the part of a key-value store the grants need: plain types only,
// so that idp/store's memory and Redis backends satisfy it without this
// package importing the provider. Get returns an error matching the
// store's not-found error (given to NewStore) for a missing key.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, error)
	SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error)
	Delete(ctx context.Context, keys ...string) error
	SetAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error
	SetMembers(ctx context.Context, key string) ([]string, error)
	SetRemove(ctx context.Context, key string, members ...string) error
}

// Store keeps grants durably (no TTL: a consent lasts until the resident
// revokes it), under "consent:<account>:<client>", with the set
// "consents:<account>" of client IDs for the account page.
type Store struct {
	kv       KV
	notFound error
}

// NewStore wraps a KV; notFound is the error its Get wraps for a missing
// key (store.ErrNotFound for idp/store).
func NewStore(kv KV, notFound error) *Store { return &Store{kv: kv, notFound: notFound} }

// GrantKey is the grant's key. Account IDs are base64url (no ':'), so
// the first ':' after the prefix ends the account whatever the client ID.
func GrantKey(account, client string) string { return "consent:" + account + ":" + client }

// IndexKey is the set of client IDs an account has granted to.
func IndexKey(account string) string { return "consents:" + account }

// maxIDLen bounds IDs that become key parts.
const maxIDLen = 256

func checkIDs(account, client string) error {
	if account == "" || len(account) > maxIDLen || strings.ContainsAny(account, ":\x00\r\n") {
		return fail(CodeInvalidKey, "account ID is empty, too long or contains ':' or control characters")
	}
	if client == "" || len(client) > maxIDLen || strings.ContainsAny(client, "\x00\r\n") {
		return fail(CodeInvalidKey, "client ID is empty, too long or contains control characters")
	}
	return nil
}

func (s *Store) load(ctx context.Context, account, client string) (*Grant, []byte, error) {
	b, err := s.kv.Get(ctx, GrantKey(account, client))
	return s.decode(account, client, b, err)
}

// FromRecord is Get from a read of GrantKey(account, client) the caller
// made itself (b and err as the store's Get returned them), for a
// caller that reads the grant in one round trip with other records.
func (s *Store) FromRecord(account, client string, b []byte, err error) (*Grant, error) {
	if err := checkIDs(account, client); err != nil {
		return nil, err
	}
	g, _, err := s.decode(account, client, b, err)
	return g, err
}

func (s *Store) decode(account, client string, b []byte, err error) (*Grant, []byte, error) {
	if s.notFound != nil && errors.Is(err, s.notFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("consent: load grant: %w", err)
	}
	g := new(Grant)
	if err := json.Unmarshal(b, g); err != nil {
		return nil, nil, &Error{Code: CodeCorrupt, Detail: "grant record does not decode", Err: err}
	}
	// The key is the truth: an old record may lack these.
	g.Account, g.Client = account, client
	return g, b, nil
}

// Get returns the grant, or nil and no error when there is none.
func (s *Store) Get(ctx context.Context, account, client string) (*Grant, error) {
	if err := checkIDs(account, client); err != nil {
		return nil, err
	}
	g, _, err := s.load(ctx, account, client)
	return g, err
}

// maxUpdateTries bounds the compare-and-swap loop; only a resident
// submitting in several tabs at once can make it retry.
const maxUpdateTries = 8

// Update changes a grant atomically: fn gets the current grant (nil if
// none) and returns the new one, or an error that aborts with nothing
// written. Two concurrent updates never lose each other's claims: each
// write is a compare-and-swap on the value fn saw, retried on conflict.
// The index is written before the grant, so a crash leaves at worst an
// index entry without a grant, which List repairs.
func (s *Store) Update(ctx context.Context, account, client string, fn func(cur *Grant) (*Grant, error)) (*Grant, error) {
	if err := checkIDs(account, client); err != nil {
		return nil, err
	}
	indexed := false
	for range maxUpdateTries {
		cur, raw, err := s.load(ctx, account, client)
		if err != nil {
			return nil, err
		}
		next, err := fn(cur)
		if err != nil {
			return nil, err
		}
		if next == nil {
			return nil, errors.New("consent: update returned no grant")
		}
		next = next.clone()
		next.Account, next.Client = account, client
		next.normalise()
		b, err := json.Marshal(next)
		if err != nil {
			return nil, fmt.Errorf("consent: encode grant: %w", err)
		}
		if !indexed {
			if err := s.kv.SetAdd(ctx, IndexKey(account), 0, client); err != nil {
				return nil, fmt.Errorf("consent: index grant: %w", err)
			}
			indexed = true
		}
		var ok bool
		if raw == nil {
			ok, err = s.kv.SetNX(ctx, GrantKey(account, client), b, 0)
		} else {
			ok, err = s.kv.CompareAndSwap(ctx, GrantKey(account, client), raw, b)
		}
		if err != nil {
			return nil, fmt.Errorf("consent: save grant: %w", err)
		}
		if ok {
			return next, nil
		}
	}
	return nil, fail(CodeContention, "grant changed %d times during one update", maxUpdateTries)
}

// Consent records a resident's answer on the screen: it decides and
// applies against the grant as stored at the moment of writing, so a
// submission from a second tab merges instead of overwriting. It returns
// the new grant; Effective(grant, req) is what the authorization may
// release.
func (s *Store) Consent(ctx context.Context, account, client string, req Requested, promptConsent bool, c Choice, now time.Time) (*Grant, error) {
	return s.Update(ctx, account, client, func(cur *Grant) (*Grant, error) {
		return Apply(cur, req, Decide(cur, req, promptConsent), c, now)
	})
}

// Revoke deletes the grant and returns it (nil if there was none), so the
// caller can revoke the client's tokens for the account. The grant goes
// before its index entry, so the account page never shows a revoked RP
// as connected.
func (s *Store) Revoke(ctx context.Context, account, client string) (*Grant, error) {
	if err := checkIDs(account, client); err != nil {
		return nil, err
	}
	g, _, err := s.load(ctx, account, client)
	if CodeOf(err) == CodeCorrupt {
		g, err = &Grant{Account: account, Client: client}, nil // still delete it
	}
	if err != nil {
		return nil, err
	}
	if err := s.kv.Delete(ctx, GrantKey(account, client)); err != nil {
		return nil, fmt.Errorf("consent: delete grant: %w", err)
	}
	if err := s.kv.SetRemove(ctx, IndexKey(account), client); err != nil {
		return nil, fmt.Errorf("consent: unindex grant: %w", err)
	}
	return g, nil
}

// List returns the account's grants ordered by client ID, for the account
// page. An index entry whose grant is gone (a crash between the two
// writes) is removed. A grant that does not decode is listed with no
// claims rather than failing the page, so the resident can still revoke
// it.
func (s *Store) List(ctx context.Context, account string) ([]*Grant, error) {
	if err := checkIDs(account, "-"); err != nil {
		return nil, err
	}
	clients, err := s.kv.SetMembers(ctx, IndexKey(account))
	if err != nil {
		return nil, fmt.Errorf("consent: list grants: %w", err)
	}
	slices.Sort(clients)
	var out []*Grant
	var gone []string
	for _, c := range clients {
		if checkIDs(account, c) != nil {
			gone = append(gone, c)
			continue
		}
		g, _, err := s.load(ctx, account, c)
		if CodeOf(err) == CodeCorrupt {
			g, err = &Grant{Account: account, Client: c}, nil
		}
		if err != nil {
			return nil, err
		}
		if g == nil {
			gone = append(gone, c)
			continue
		}
		out = append(out, g)
	}
	if len(gone) > 0 {
		if err := s.kv.SetRemove(ctx, IndexKey(account), gone...); err != nil {
			return nil, fmt.Errorf("consent: repair index: %w", err)
		}
	}
	return out, nil
}

// DeleteAccount revokes every grant of an account (account deletion) and
// returns them, for token revocation.
func (s *Store) DeleteAccount(ctx context.Context, account string) ([]*Grant, error) {
	gs, err := s.List(ctx, account)
	if err != nil {
		return nil, err
	}
	for _, g := range gs {
		if _, err := s.Revoke(ctx, account, g.Client); err != nil {
			return nil, err
		}
	}
	if err := s.kv.Delete(ctx, IndexKey(account)); err != nil {
		return nil, fmt.Errorf("consent: delete index: %w", err)
	}
	return gs, nil
}
