package clients

import (
	"context"

	"github.com/watashi-id/watashi/whitelist"
)

// Fetcher gets a document from a URL an integrator registered (a sector
// identifier document, a jwks_uri key set). whitelist.Fetcher is the one
// to use: https only, no redirects, bounded size and time, and no
// loopback, private or other internal address, checked where the
// connection is made.
type Fetcher interface {
	Fetch(ctx context.Context, rawURL string, o whitelist.FetchOptions) ([]byte, error)
}
