package account

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
)

// Store keys. Accounts, their data keys and links have no TTL and need a
// durable backend (Redis with AOF in production).
//
// Every account has a data key of its own ("acctkey:<id>", wrapped by
// the KEK) sealing its record ("acct:<id>"). The two are separate records
// so that deleting the data key destroys the facts in every copy of the
// record: crypto-shredding. The associated data of each is its own store
// key, so a record or a data key copied under another account's key
// does not open.
func accountKey(id string) string { return "acct:" + id }
func dataKeyKey(id string) string { return "acctkey:" + id }

// accountsKey is the set of account IDs with a data key: what a KEK
// rotation re-wraps.
const accountsKey = "accts"

// linkKeyKey holds the wrapped key of certificate links (see CertLink).
const linkKeyKey = "linkkey"

// certLinkKey maps a certificate to the account it proves. Both the
// signature and the authentication certificate of a proofing get one.
func certLinkKey(link string) string { return "link:" + link }

// loaded is an account as read, with what a compare-and-swap and a
// re-seal need.
type loaded struct {
	a      *Account
	raw    []byte
	sealer *seal.Sealer
}

// load reads and opens an account. A record without its data key is an
// account being deleted: not found.
func (s *Store) load(ctx context.Context, id string) (*loaded, error) {
	if id == "" {
		return nil, ErrNotFound
	}
	// The record and its data key in one round trip: a login reads an
	// account four times.
	res, err := s.kv.Do(ctx, s.ReadOps(id)...)
	if err != nil {
		return nil, fmt.Errorf("account: load account: %w", err)
	}
	return s.open(id, res)
}

// ReadOps are the batch operations (store.KV.Do) that read account id,
// for a caller that reads it in one round trip with other records.
func (s *Store) ReadOps(id string) []store.Op {
	return []store.Op{store.Get(accountKey(id)), store.Get(dataKeyKey(id))}
}

// open opens an account from the results of ReadOps.
func (s *Store) open(id string, res []store.Result) (*loaded, error) {
	if id == "" || len(res) != 2 {
		return nil, ErrNotFound
	}
	raw, w := res[0].Val, res[1].Val
	for i, what := range []string{"account", "data key"} {
		if errors.Is(res[i].Err, store.ErrNotFound) {
			return nil, ErrNotFound
		}
		if res[i].Err != nil {
			return nil, fmt.Errorf("account: load %s: %w", what, res[i].Err)
		}
	}
	sealer, err := s.ring.OpenSealer(w, []byte(dataKeyKey(id)))
	if err != nil {
		return nil, fmt.Errorf("account: data key: %w", err)
	}
	pt, err := sealer.Open(raw, []byte(accountKey(id)))
	if errors.Is(err, seal.ErrMalformed) {
		// Written before encryption at rest, or not by Watashi: refused,
		// as accepting plaintext would let whoever can write the store
		// forge a resident's facts.
		return nil, fmt.Errorf("account: record is not sealed: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("account: account record: %w", err)
	}
	a := new(Account)
	if err := json.Unmarshal(pt, a); err != nil {
		return nil, fmt.Errorf("account: account record: %w", err)
	}
	if a.ID != id {
		return nil, errors.New("account: account record names another account")
	}
	return &loaded{a: a, raw: raw, sealer: sealer}, nil
}

func sealAccount(sealer *seal.Sealer, a *Account) ([]byte, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	return sealer.Seal(b, []byte(accountKey(a.ID))), nil
}

// replace swaps the record read as l for a, sealed with the same data key.
func (s *Store) replace(ctx context.Context, l *loaded, a *Account) (bool, error) {
	b, err := sealAccount(l.sealer, a)
	if err != nil {
		return false, err
	}
	ok, err := s.kv.CompareAndSwap(ctx, accountKey(a.ID), l.raw, b)
	if err != nil {
		return false, fmt.Errorf("account: update account: %w", err)
	}
	return ok, nil
}

// insert writes a new account under a new data key. It reports false,
// writing nothing, if the ID is taken.
func (s *Store) insert(ctx context.Context, a *Account) (bool, error) {
	sealer, w, err := s.ring.NewSealer([]byte(dataKeyKey(a.ID)))
	if err != nil {
		return false, err
	}
	b, err := sealAccount(sealer, a)
	if err != nil {
		return false, err
	}
	// Listed first, so that a KEK rotation never misses a data key.
	if err := s.kv.SetAdd(ctx, accountsKey, 0, a.ID); err != nil {
		return false, fmt.Errorf("account: list account: %w", err)
	}
	ok, err := s.kv.SetNX(ctx, dataKeyKey(a.ID), w, 0)
	if err != nil || !ok {
		if err != nil {
			return false, fmt.Errorf("account: write data key: %w", err)
		}
		return false, nil
	}
	ok, err = s.kv.SetNX(ctx, accountKey(a.ID), b, 0)
	if err != nil || !ok {
		_ = s.kv.Delete(ctx, dataKeyKey(a.ID))
		if err != nil {
			return false, fmt.Errorf("account: create account: %w", err)
		}
		return false, nil
	}
	return true, nil
}

// Put writes an account as given, replacing any record of its ID and its
// data key: an import, or a test's fixture. Links are not touched.
func (s *Store) Put(ctx context.Context, a *Account) error {
	if a == nil || a.ID == "" {
		return errors.New("account: Put needs an account with an ID")
	}
	if err := s.kv.Delete(ctx, dataKeyKey(a.ID), accountKey(a.ID)); err != nil {
		return fmt.Errorf("account: replace account: %w", err)
	}
	ok, err := s.insert(ctx, a)
	if err == nil && !ok {
		err = errors.New("account: account written concurrently")
	}
	return err
}

// Delete removes an account for good: its data key first, which makes
// the facts unreadable in every copy of the record (replicas, backups
// taken after this moment, anything an attacker kept), then the record,
// the links of its certificates and its place in the account list. A
// certificate that was linked can prove a new account afterwards. The
// error wraps ErrNotFound when there was no such account.
func (s *Store) Delete(ctx context.Context, id string) error {
	if id == "" {
		return ErrNotFound
	}
	var links, passkeyIndexes []string
	l, err := s.load(ctx, id)
	switch {
	case err == nil:
		passkeyIndexes = l.a.passkeyIndexes()
		for _, r := range append(l.a.AuthCerts, l.a.SignCerts...) {
			links = append(links, r.Link)
		}
		if fs := l.a.FactsSource; fs != nil && fs.Link != "" {
			links = append(links, fs.Link)
		}
	case errors.Is(err, ErrNotFound):
		// Gone, or a deletion interrupted after the data key: finish it.
		// Links left behind are dropped when a proofing meets them.
	default:
		return err
	}
	if err := s.kv.Delete(ctx, dataKeyKey(id)); err != nil {
		return fmt.Errorf("account: delete data key: %w", err)
	}
	if err := s.kv.Delete(ctx, accountKey(id)); err != nil {
		return fmt.Errorf("account: delete account: %w", err)
	}
	for _, link := range links {
		if err := s.dropLink(ctx, link, id); err != nil {
			return err
		}
	}
	for _, key := range passkeyIndexes {
		if err := s.dropPasskeyIndex(ctx, key, id); err != nil {
			return err
		}
	}
	if err := s.kv.SetRemove(ctx, accountsKey, id); err != nil {
		return fmt.Errorf("account: unlist account: %w", err)
	}
	if l == nil {
		return ErrNotFound
	}
	return nil
}

// dropLink removes a certificate link if it still points at id.
func (s *Store) dropLink(ctx context.Context, link, id string) error {
	cur, err := s.kv.Get(ctx, certLinkKey(link))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("account: read certificate link: %w", err)
	}
	if string(cur) != id {
		return nil
	}
	if err := s.kv.Delete(ctx, certLinkKey(link)); err != nil {
		return fmt.Errorf("account: delete certificate link: %w", err)
	}
	return nil
}

// CertLink is a certificate's link name: a keyed hash of its DER, so that
// whoever holds a resident's certificate (every service they ever signed
// for) cannot look it up in a copy of the store, or tell from it which
// relying parties the resident uses here. The key is random, stored
// wrapped by the KEK, and the same on every node; it survives KEK
// rotations.
func (s *Store) CertLink(ctx context.Context, c *x509.Certificate) (string, error) {
	key, err := s.loadLinkKey(ctx)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("watashi certificate link v1\x00"))
	m.Write(c.Raw)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

func (s *Store) loadLinkKey(ctx context.Context) ([]byte, error) {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	if s.linkKey != nil {
		return s.linkKey, nil
	}
	aad := []byte(linkKeyKey)
	w, err := s.kv.Get(ctx, linkKeyKey)
	if errors.Is(err, store.ErrNotFound) {
		// The first node to need it makes it; a node racing it reads the
		// winner's.
		nw, werr := s.ring.Wrap(seal.NewDataKey(), aad)
		if werr != nil {
			return nil, werr
		}
		if _, err := s.kv.SetNX(ctx, linkKeyKey, nw, 0); err != nil {
			return nil, fmt.Errorf("account: write link key: %w", err)
		}
		w, err = s.kv.Get(ctx, linkKeyKey)
	}
	if err != nil {
		return nil, fmt.Errorf("account: read link key: %w", err)
	}
	key, err := s.ring.Unwrap(w, aad)
	if err != nil {
		return nil, fmt.Errorf("account: link key: %w", err)
	}
	s.linkKey = key
	return key, nil
}

// IDs lists every account (with a data key), in no order.
func (s *Store) IDs(ctx context.Context) ([]string, error) {
	ids, err := s.kv.SetMembers(ctx, accountsKey)
	if err != nil {
		return nil, fmt.Errorf("account: list accounts: %w", err)
	}
	return ids, nil
}

// Rewrap re-wraps every data key of the accounts, and the link key, with
// the ring's current KEK (all of them with dryRun false), and counts them
// by the KEK that wrapped each before. Run it after every node has the
// new KEK as current; until it has finished, every KEK it found must stay
// configured.
func (s *Store) Rewrap(ctx context.Context, dryRun bool) (seal.Census, error) {
	var c seal.Census
	if err := s.rewrapOne(ctx, &c, linkKeyKey, []byte(linkKeyKey), dryRun); err != nil {
		return c, err
	}
	ids, err := s.IDs(ctx)
	if err != nil {
		return c, err
	}
	for _, id := range ids {
		if err := s.rewrapOne(ctx, &c, dataKeyKey(id), []byte(dataKeyKey(id)), dryRun); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (s *Store) rewrapOne(ctx context.Context, c *seal.Census, key string, aad []byte, dryRun bool) error {
	for range casRetries {
		w, err := s.kv.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil // deleted meanwhile, or never made
		}
		if err != nil {
			return fmt.Errorf("account: read %s: %w", key, err)
		}
		nw, changed, err := s.ring.Rewrap(w, aad)
		if err != nil {
			return fmt.Errorf("account: %s: %w", key, err)
		}
		if dryRun || !changed {
			c.Count(w)
			return nil
		}
		ok, err := s.kv.CompareAndSwap(ctx, key, w, nw)
		if err != nil {
			return fmt.Errorf("account: write %s: %w", key, err)
		}
		if ok {
			c.Count(w)
			c.Rewrapped++
			return nil
		}
	}
	return ErrContention
}
