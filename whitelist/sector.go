package whitelist

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Limits for fetching a sector_identifier_uri document.
const (
	maxSectorDocument  = 64 << 10
	sectorFetchTimeout = 10 * time.Second
)

// nativeSectorPrefix marks the sector of a native app whose redirect URIs
// name no web host (loopback and private-use schemes only). Any app can
// claim 127.0.0.1 or a scheme, so such apps get a sector of their own
// rather than one they could share with another client and correlate
// residents through.
const nativeSectorPrefix = "client:"

// resolveSector computes the pairwise sector (OIDC Core §8.1): the host of
// the sector_identifier_uri, whose document must list every redirect URI;
// otherwise the one web host of the redirect URIs.
func (r *Registry) resolveSector(ctx context.Context, m *Metadata, clientID string) (string, *Error) {
	if m.SectorIdentifierURI != "" {
		u, err := url.Parse(m.SectorIdentifierURI)
		if err != nil {
			return "", metaErr("sector_identifier_uri", "does not parse")
		}
		list, err := r.fetchSectorDocument(ctx, m.SectorIdentifierURI)
		if err != nil {
			return "", &Error{Code: CodeInvalidClientMetadata, Field: "sector_identifier_uri",
				Description: "sector_identifier_uri: " + err.Error(), Err: err}
		}
		for _, ru := range m.RedirectURIs {
			if !slices.Contains(list, ru) {
				return "", &Error{Code: CodeInvalidClientMetadata, Field: "sector_identifier_uri",
					Description: fmt.Sprintf("sector_identifier_uri: the document does not list the redirect URI %s; it must be a JSON array containing every redirect URI (OIDC Dynamic Client Registration §5)", quote(ru))}
			}
		}
		return strings.ToLower(u.Hostname()), nil
	}
	var hosts []string
	for _, ru := range m.RedirectURIs {
		u, err := url.Parse(ru)
		if err != nil {
			return "", redirectErr("redirect_uris", "%s does not parse", quote(ru))
		}
		if u.Scheme != "https" && u.Scheme != "http" {
			continue // private-use scheme
		}
		h := strings.ToLower(u.Hostname())
		if m.ApplicationType == AppNative && u.Scheme == "http" && isLoopbackIP(h) {
			continue
		}
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	switch len(hosts) {
	case 0:
		return nativeSectorPrefix + clientID, nil
	case 1:
		return hosts[0], nil
	default:
		return "", redirectErr("redirect_uris", "the redirect URIs span several hosts (%s); register a sector_identifier_uri: an https URL serving a JSON array of all your redirect URIs (OIDC Core §8.1)", strings.Join(hosts, ", "))
	}
}

func (r *Registry) fetchSectorDocument(ctx context.Context, uri string) ([]string, error) {
	hc := r.httpClient
	cp := *hc
	// A redirect could leave https or the registered host: refuse it.
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if cp.Timeout == 0 || cp.Timeout > sectorFetchTimeout {
		cp.Timeout = sectorFetchTimeout
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, errors.New("is not a URL that can be fetched")
	}
	req.Header.Set("Accept", "application/json")
	res, err := cp.Do(req)
	if err != nil {
		return nil, fmt.Errorf("could not be fetched (%s); it must be reachable over https from Watashi", fetchProblem(err))
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("answered HTTP %d; it must answer 200 with a JSON array of your redirect URIs (redirects are not followed)", res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxSectorDocument+1))
	if err != nil {
		return nil, errors.New("could not be read to the end")
	}
	if len(body) > maxSectorDocument {
		return nil, fmt.Errorf("document is larger than %d bytes", maxSectorDocument)
	}
	var list []string
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, errors.New("document is not a JSON array of URI strings")
	}
	return list, nil
}

// fetchProblem names the failure class without echoing internal
// addresses or resolver details to the integrator.
func fetchProblem(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, errForbiddenAddress):
		return "its host resolves to a private or loopback address"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "certificate"):
		return "TLS certificate not trusted"
	default:
		return "connection failed"
	}
}

var errForbiddenAddress = errors.New("whitelist: address not allowed")

// defaultHTTPClient fetches integrators' documents. Outside development it
// refuses to connect to loopback, private and link-local addresses: the
// URL comes from a registration request, and Watashi must not become a
// way to probe the operator's internal network.
func defaultHTTPClient(dev bool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if !dev {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return errForbiddenAddress
			}
			a := ap.Addr().Unmap()
			if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
				a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast() {
				return errForbiddenAddress
			}
			return nil
		}
	}
	tr := &http.Transport{
		DialContext:            d.DialContext,
		TLSHandshakeTimeout:    5 * time.Second,
		ResponseHeaderTimeout:  5 * time.Second,
		MaxResponseHeaderBytes: 16 << 10,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{Transport: tr, Timeout: sectorFetchTimeout}
}
