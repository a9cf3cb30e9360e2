package whitelist

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// maxSectorDocument bounds a sector_identifier_uri document.
const maxSectorDocument = 64 << 10

// nativeSectorPrefix marks the sector of a native app whose redirect URIs
// name no web host (loopback and private-use schemes only). Any app can
// claim 127.0.0.1 or a scheme, so such apps get a sector of their own
// rather than one they could share with another client and correlate
// residents through.
const nativeSectorPrefix = "client:"

// checkFetchTargets refuses, at registration, the URLs Watashi will
// fetch later that the Fetcher would refuse then: jwks_uri (fetched at
// the token endpoint), logo_uri and sector_identifier_uri. They are
// checked again at every fetch, because DNS may change in between.
func checkFetchTargets(ctx context.Context, f *Fetcher, m *Metadata) *Error {
	for _, u := range []struct{ field, val string }{
		{"jwks_uri", m.JWKSURI}, {"sector_identifier_uri", m.SectorIdentifierURI}, {"logo_uri", m.LogoURI},
	} {
		if u.val == "" {
			continue
		}
		if err := f.CheckURL(ctx, u.val); err != nil {
			reason := "cannot be fetched"
			var fe *FetchError
			if errors.As(err, &fe) {
				reason = fe.Reason
			}
			return &Error{Code: CodeInvalidClientMetadata, Field: u.field, Description: fmt.Sprintf("%s: %s %s", u.field, quote(u.val), reason), Err: err}
		}
	}
	return nil
}

// resolveSector computes the pairwise sector (OIDC Core §8.1): the host of
// the sector_identifier_uri, whose document must list every redirect URI;
// otherwise the one web host of the redirect URIs.
func resolveSector(ctx context.Context, f *Fetcher, m *Metadata, clientID string) (string, *Error) {
	if m.SectorIdentifierURI != "" {
		u, err := url.Parse(m.SectorIdentifierURI)
		if err != nil {
			return "", metaErr("sector_identifier_uri", "does not parse")
		}
		list, err := fetchSectorDocument(ctx, f, m.SectorIdentifierURI)
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

func fetchSectorDocument(ctx context.Context, f *Fetcher, uri string) ([]string, error) {
	body, err := f.Fetch(ctx, uri, FetchOptions{Accept: "application/json", MaxBytes: maxSectorDocument})
	if err != nil {
		var fe *FetchError
		if errors.As(err, &fe) {
			if errors.Is(err, ErrFetchStatus) || errors.Is(err, ErrFetchRedirect) {
				return nil, fmt.Errorf("%s; it must answer 200 with a JSON array of your redirect URIs", fe.Reason)
			}
			return nil, errors.New(fe.Reason)
		}
		return nil, errors.New("could not be fetched")
	}
	var list []string
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, errors.New("document is not a JSON array of URI strings")
	}
	return list, nil
}
