package clients

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/watashi-id/watashi/whitelist"
)

// maxSectorDocument bounds the JSON array of redirect URIs. A few
// hundred URIs fit; anything larger is a mistake or an attack.
const maxSectorDocument = 64 << 10

// PairwiseSub derives the subject an RP sees. An HMAC keyed with a secret
// makes the value stable per (sector, account), unlinkable across sectors,
// and irreversible for anyone but us (OIDC Core §8.1). The 0x00 separator
// keeps "a.example"+"bc" apart from "a.exampleb"+"c".
func PairwiseSub(key []byte, sector, accountID string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sector))
	m.Write([]byte{0})
	m.Write([]byte(accountID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Subject is the sub of accountID for client c: the same value in the ID
// token, userinfo, introspection and at end_session.
func (r *Resolver) Subject(c *Client, accountID string) string {
	return PairwiseSub(r.pairwise, c.Sector, accountID)
}

// ResolveSector computes the pairwise sector of c. Without a
// sector_identifier_uri every redirect URI must share one host, because a
// client spanning hosts would otherwise get a sub per host. With one, the
// document is fetched through f (https only unless dev, no redirects, no
// internal address, 64 KiB at most) and must list every redirect URI, so
// that a client cannot claim another organisation's sector and correlate
// its users. f may be nil when c has no sector_identifier_uri.
func ResolveSector(ctx context.Context, c *Client, f Fetcher, dev bool) (string, error) {
	if c == nil {
		return "", errors.New("clients: sector: no client")
	}
	if len(c.RedirectURIs) == 0 {
		return "", fmt.Errorf("clients: sector: client %q has no redirect URIs", c.ID)
	}
	if c.SectorIdentifierURI == "" {
		return commonRedirectHost(c)
	}
	u, err := url.Parse(c.SectorIdentifierURI)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", fmt.Errorf("clients: sector: client %q: sector_identifier_uri is not an absolute URL", c.ID)
	}
	if u.Scheme != "https" && !dev {
		return "", fmt.Errorf("clients: sector: client %q: sector_identifier_uri must use https", c.ID)
	}
	if u.Fragment != "" {
		return "", fmt.Errorf("clients: sector: client %q: sector_identifier_uri must not have a fragment", c.ID)
	}
	if f == nil {
		return "", fmt.Errorf("clients: sector: client %q: no fetcher for its sector_identifier_uri", c.ID)
	}
	body, err := f.Fetch(ctx, u.String(), whitelist.FetchOptions{Accept: "application/json", MaxBytes: maxSectorDocument})
	if err != nil {
		return "", fmt.Errorf("clients: sector: client %q: sector_identifier_uri: %w", c.ID, err)
	}
	var list []string
	if err := json.Unmarshal(body, &list); err != nil {
		return "", fmt.Errorf("clients: sector: client %q: sector_identifier_uri document is not a JSON array of URL strings", c.ID)
	}
	for _, r := range c.RedirectURIs {
		if !slices.Contains(list, r) {
			return "", fmt.Errorf("clients: sector: client %q: redirect URI %q is not listed in its sector_identifier_uri", c.ID, r)
		}
	}
	return strings.ToLower(u.Hostname()), nil
}

// commonRedirectHost is the sector of a client without a
// sector_identifier_uri.
func commonRedirectHost(c *Client) (string, error) {
	host := ""
	for _, r := range c.RedirectURIs {
		u, err := url.Parse(r)
		if err != nil {
			return "", fmt.Errorf("clients: sector: client %q: redirect URI %q does not parse", c.ID, r)
		}
		h := strings.ToLower(u.Hostname())
		if h == "" {
			return "", fmt.Errorf("clients: sector: client %q: redirect URI %q has no host; register a sector_identifier_uri", c.ID, r)
		}
		if host != "" && h != host {
			return "", fmt.Errorf("clients: sector: client %q: redirect URIs span hosts %q and %q; register a sector_identifier_uri", c.ID, host, h)
		}
		host = h
	}
	return host, nil
}
