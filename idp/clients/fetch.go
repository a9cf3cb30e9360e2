package clients

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// fetchDocument GETs a document an integrator registered (a sector
// identifier, a key set): no redirects (one could leave HTTPS or the
// registered host), bounded time and size, 200 only.
func fetchDocument(ctx context.Context, hc *http.Client, uri, what, accept string, maxBytes int, timeout time.Duration) ([]byte, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	cp := *hc
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if cp.Timeout == 0 || cp.Timeout > timeout {
		cp.Timeout = timeout
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	res, err := cp.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", what, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: status %d", what, res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, int64(maxBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if len(body) > maxBytes {
		return nil, fmt.Errorf("%s document exceeds %d bytes", what, maxBytes)
	}
	return body, nil
}
