package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/whitelist"
)

// ErrUnknownClient is returned by Sector for a client that is
// neither configured nor registered.
var ErrUnknownClient = errors.New("no such client")

// Subjects derives the subs relying parties hold, as the server does,
// so that the operator can turn one back into the account it names.
type Subjects struct {
	c   *Config
	key []byte
}

// Subjects needs the configured pairwise key. A key generated for one
// --dev process is not one: the subjects it made died with it, so a
// missing key is an error here even under --dev.
func (c *Config) Subjects() (*Subjects, error) {
	spec := c.secretSpecs()[0]
	k, err := spec.load()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.path, err)
	}
	if k == nil {
		return nil, fmt.Errorf("%s is not configured: the subjects of a generated key cannot be traced", spec.path)
	}
	return &Subjects{c: c, key: k}, nil
}

// Sub is the sub of accountID in sector.
func (s *Subjects) Sub(sector, accountID string) string {
	return clients.PairwiseSub(s.key, sector, accountID)
}

// Sector returns the pairwise sector of the client id: a configured
// client's as the server resolves it (its sector_identifier_uri fetched
// through the guarded fetcher), or a registered client's as approved.
func (s *Subjects) Sector(ctx context.Context, kv store.KV, id string, dev bool, logger *slog.Logger) (string, error) {
	c := s.c
	for i, cc := range c.Clients {
		if cc.ID != id {
			continue
		}
		cl := cc.Client
		f := whitelist.NewFetcher(whitelist.FetcherOptions{Dev: dev})
		s, err := clients.ResolveSector(ctx, &cl, f, dev)
		if err != nil {
			return "", fmt.Errorf("clients[%d]: %w", i, err)
		}
		return s, nil
	}
	if !c.Whitelist.Enabled {
		return "", ErrUnknownClient
	}
	reg, err := c.NewRegistry(kv, dev, logger)
	if err != nil {
		return "", err
	}
	cl, err := reg.Get(ctx, id)
	if errors.Is(err, whitelist.ErrUnknownClient) {
		return "", ErrUnknownClient
	}
	if err != nil {
		return "", fmt.Errorf("whitelist: %w", err)
	}
	if cl.Sector == "" {
		return "", fmt.Errorf("client %q has no sector yet (not approved)", id)
	}
	return cl.Sector, nil
}
