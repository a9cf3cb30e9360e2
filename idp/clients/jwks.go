package clients

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/watashi-id/watashi/whitelist"
)

// Key sets of private_key_jwt clients registered with a jwks_uri
// (RFC 7591 §2) are fetched on first use and cached briefly, so that an RP
// rotating its keys is picked up within minutes while a burst of token
// requests costs one fetch.
const (
	jwksURITTL      = 5 * time.Minute
	jwksURIRetry    = 30 * time.Second // minimum gap between refetches on a kid miss
	jwksURIMaxBytes = 64 << 10
	jwksURIMaxSets  = 1024
)

type jwksCache struct {
	mu      sync.Mutex
	entries map[string]jwksEntry
}

type jwksEntry struct {
	keys    []jose.JSONWebKey
	fetched time.Time // when keys were fetched; zero when no set was ever good
	tried   time.Time // the last attempt, good or not
	err     error     // the last attempt's failure
}

// AssertionKeys are the keys a client assertion of e may be signed with:
// the inline ones, or those served at its jwks_uri. When kid is set and
// missing from a cached set, the set is refetched (at most every
// jwksURIRetry), which is how an RP's new key becomes usable.
func (r *Resolver) AssertionKeys(ctx context.Context, e *Entry, kid string) ([]jose.JSONWebKey, error) {
	if e.Client.AuthMethod != AuthPrivateKeyJWT {
		return nil, errors.New("client is not registered for private_key_jwt")
	}
	if len(e.Keys) > 0 || e.Registry == nil || e.Registry.JWKSURI == "" {
		return e.Keys, nil
	}
	return r.keysFromURI(ctx, e.Registry.JWKSURI, kid)
}

// keysFromURI serves the cached set, and fetches at most once per
// jwksURIRetry per URI whatever happens: anyone can send a token request
// naming a client, and a failing or slow jwks_uri must not turn each one
// into a fetch.
func (r *Resolver) keysFromURI(ctx context.Context, uri, kid string) ([]jose.JSONWebKey, error) {
	c := &r.jwks
	now := r.now()
	c.mu.Lock()
	e, ok := c.entries[uri]
	c.mu.Unlock()
	fresh := ok && !e.fetched.IsZero() && now.Sub(e.fetched) < jwksURITTL
	recent := ok && now.Sub(e.tried) < jwksURIRetry
	switch {
	case fresh && (kid == "" || hasKID(e.keys, kid) || recent):
		return e.keys, nil
	case !fresh && recent && e.err != nil:
		return nil, e.err // failed a moment ago: not again yet
	}
	keys, err := r.fetchJWKS(ctx, uri)
	c.mu.Lock()
	if c.entries == nil || len(c.entries) >= jwksURIMaxSets {
		c.entries = map[string]jwksEntry{}
	}
	cur := c.entries[uri]
	cur.tried, cur.err = now, err
	if err == nil {
		cur.keys, cur.fetched = keys, now
	}
	c.entries[uri] = cur
	c.mu.Unlock()
	if err != nil {
		if fresh {
			return e.keys, nil // keep serving the last good set within its TTL
		}
		return nil, err
	}
	return keys, nil
}

func hasKID(keys []jose.JSONWebKey, kid string) bool {
	for _, k := range keys {
		if k.KeyID == kid {
			return true
		}
	}
	return false
}

// fetchJWKS downloads a key set through the guarded fetcher (which
// checks the URL and the address again, whatever was checked at
// registration) and keeps its public signing keys.
func (r *Resolver) fetchJWKS(ctx context.Context, uri string) ([]jose.JSONWebKey, error) {
	body, err := r.fetcher.Fetch(ctx, uri, whitelist.FetchOptions{Accept: "application/json, application/jwk-set+json", MaxBytes: jwksURIMaxBytes})
	if err != nil {
		return nil, fmt.Errorf("jwks_uri: %w", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, errors.New("jwks_uri document is not a JSON Web Key Set")
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if !k.Valid() || !k.IsPublic() {
			return nil, errors.New("jwks_uri document holds a non-public or invalid key")
		}
		if k.Use == "" || k.Use == "sig" {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks_uri document has no signing keys")
	}
	return keys, nil
}
