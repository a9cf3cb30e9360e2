package whitelist

import (
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Status is where a client is in its lifecycle:
//
//	pending ──approve──▶ approved ──suspend──▶ suspended
//	                        ▲                      │
//	                        └───────resume─────────┘
//	any of them ──revoke──▶ revoked (terminal)
//
// Only approved clients pass Authorize.
type Status string

const (
	StatusPending   Status = "pending"
	StatusApproved  Status = "approved"
	StatusSuspended Status = "suspended"
	StatusRevoked   Status = "revoked"
)

// Token endpoint authentication methods a client may register.
const (
	AuthPrivateKeyJWT     = "private_key_jwt"
	AuthClientSecretBasic = "client_secret_basic"
	AuthNone              = "none"
)

// Application types (OIDC Dynamic Client Registration §2).
const (
	AppWeb    = "web"
	AppNative = "native"
)

// Metadata is what a client registers (RFC 7591 §2, OIDC Dynamic Client
// Registration §2) after validation. Fields marked as extensions are
// Watashi's: organization_name is shown to residents next to client_name,
// and claims narrows the tier's claims to those the client will ask for.
type Metadata struct {
	RedirectURIs            []string `json:"redirect_uris"`
	PostLogoutRedirectURIs  []string `json:"post_logout_redirect_uris,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	// TokenEndpointAuthSigningAlg restricts private_key_jwt assertions.
	TokenEndpointAuthSigningAlg string   `json:"token_endpoint_auth_signing_alg,omitempty"`
	GrantTypes                  []string `json:"grant_types"`
	ResponseTypes               []string `json:"response_types"`
	ApplicationType             string   `json:"application_type"`
	ClientName                  string   `json:"client_name"`
	OrganizationName            string   `json:"organization_name"` // extension
	Contacts                    []string `json:"contacts,omitempty"`
	ClientURI                   string   `json:"client_uri,omitempty"`
	LogoURI                     string   `json:"logo_uri,omitempty"`
	PolicyURI                   string   `json:"policy_uri,omitempty"`
	TOSURI                      string   `json:"tos_uri,omitempty"`
	// JWKS is the client's public key set (private_key_jwt), verbatim.
	JWKS                     json.RawMessage `json:"jwks,omitempty"`
	JWKSURI                  string          `json:"jwks_uri,omitempty"`
	SectorIdentifierURI      string          `json:"sector_identifier_uri,omitempty"`
	IDTokenSignedResponseAlg string          `json:"id_token_signed_response_alg"`
	// Scope is the space-separated subset of the tier's scopes the client
	// asks for; empty means all of them.
	Scope string `json:"scope,omitempty"`
	// Claims is the subset of the tier's claims the client asks for;
	// empty means all of them (extension).
	Claims          []string `json:"claims,omitempty"`
	SoftwareID      string   `json:"software_id,omitempty"`
	SoftwareVersion string   `json:"software_version,omitempty"`
	// BackchannelLogoutURI receives logout tokens when a resident's
	// session ends (OpenID Connect Back-Channel Logout 1.0 §2.2). Watashi
	// posts to it through the guarded fetcher, so it must be https and
	// public like every URL an integrator controls.
	BackchannelLogoutURI string `json:"backchannel_logout_uri,omitempty"`
	// BackchannelLogoutSessionRequired asks for sid in every logout token.
	// Watashi always sends sid when the session is known; the flag is kept
	// so that an integrator reads back what it registered.
	BackchannelLogoutSessionRequired bool `json:"backchannel_logout_session_required,omitempty"`
}

// Client is a registered relying party: its metadata, its standing and
// what its tier allows. Records returned by the Registry are copies.
type Client struct {
	ID string `json:"client_id"`
	Metadata
	// Sector is the pairwise subject sector (OIDC Core §8.1), fixed at
	// registration: the host of the sector_identifier_uri or of the
	// redirect URIs, or "client:<id>" for native apps that have neither.
	Sector string `json:"sector"`
	// SoftwareStatementIssuer is the trusted issuer that vouched for the
	// metadata, if any.
	SoftwareStatementIssuer string `json:"software_statement_issuer,omitempty"`

	Tier          string   `json:"tier"`
	AllowedScopes []string `json:"allowed_scopes"`
	AllowedClaims []string `json:"allowed_claims"`
	MinACR        string   `json:"min_acr"`

	Status          Status    `json:"status"`
	StatusReason    string    `json:"status_reason,omitempty"`
	StatusChangedAt time.Time `json:"status_changed_at"`
	StatusChangedBy string    `json:"status_changed_by,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// RegisteredWith is the ID of the initial access token used, or
	// "operator" for clients added by an operator.
	RegisteredWith string `json:"registered_with,omitempty"`

	// SecretHash is the argon2id PHC string of the client secret
	// (client_secret_basic), the same format as idp.HashClientSecret.
	SecretHash string `json:"secret_hash,omitempty"`
	// RegistrationTokenHash is the SHA-256 (hex) of the RFC 7592
	// registration access token.
	RegistrationTokenHash string `json:"registration_access_token_hash,omitempty"`
}

// clone copies c deeply enough that the caller may modify it without
// touching the registry's cache.
func (c *Client) clone() *Client {
	cp := *c
	cp.RedirectURIs = slices.Clone(c.RedirectURIs)
	cp.PostLogoutRedirectURIs = slices.Clone(c.PostLogoutRedirectURIs)
	cp.GrantTypes = slices.Clone(c.GrantTypes)
	cp.ResponseTypes = slices.Clone(c.ResponseTypes)
	cp.Contacts = slices.Clone(c.Contacts)
	cp.JWKS = slices.Clone(c.JWKS)
	cp.Claims = slices.Clone(c.Claims)
	cp.AllowedScopes = slices.Clone(c.AllowedScopes)
	cp.AllowedClaims = slices.Clone(c.AllowedClaims)
	return &cp
}

// AllowsScope reports whether the client's tier lets it request scope.
// The provider answers invalid_scope for a scope that is not allowed
// (RFC 6749 §4.1.2.1) rather than silently dropping it, so that the
// integrator notices.
func (c *Client) AllowsScope(scope string) bool {
	return slices.Contains(c.AllowedScopes, scope)
}

// FilterClaims keeps the claim names the client may receive, in their
// order: those of its tier and the protocol claims (sub, acr, ...) that
// every token needs. OIDC Core §5.5 says an unavailable claim is simply
// omitted, so the provider drops the rest without an error.
func (c *Client) FilterClaims(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if slices.Contains(c.AllowedClaims, n) || slices.Contains(protocolClaims, n) {
			out = append(out, n)
		}
	}
	return out
}

// MeetsACR reports whether an authentication of level acr may be released
// to this client. Unknown levels meet nothing.
func (c *Client) MeetsACR(acr string) bool {
	have := acrLevels[acr]
	if c.MinACR == "" {
		return have > 0
	}
	return have > 0 && have >= acrLevels[c.MinACR]
}

// RedirectAllowed is the exact-match rule for redirect_uri at authorize
// (OAuth 2.0 Security BCP §4.1.3), with the single exception RFC 8252
// §7.3 requires: a native app's loopback redirect may use any port.
func (c *Client) RedirectAllowed(uri string) bool {
	if slices.Contains(c.RedirectURIs, uri) {
		return true
	}
	if c.ApplicationType != AppNative {
		return false
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "http" || !isLoopbackIP(u.Hostname()) {
		return false
	}
	for _, r := range c.RedirectURIs {
		ru, err := url.Parse(r)
		if err != nil || ru.Scheme != "http" || !isLoopbackIP(ru.Hostname()) {
			continue
		}
		if ru.Hostname() == u.Hostname() && ru.EscapedPath() == u.EscapedPath() && ru.RawQuery == u.RawQuery &&
			u.User == nil && u.Fragment == "" {
			return true
		}
	}
	return false
}

// PostLogoutRedirectAllowed is the exact-match rule for
// post_logout_redirect_uri.
func (c *Client) PostLogoutRedirectAllowed(uri string) bool {
	return slices.Contains(c.PostLogoutRedirectURIs, uri)
}

// PublicKeys returns the client's inline JWKS (private_key_jwt), signing
// keys only. A client registered with jwks_uri has none here: the
// provider fetches that URI itself.
func (c *Client) PublicKeys() ([]jose.JSONWebKey, error) {
	if len(c.JWKS) == 0 {
		return nil, nil
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(c.JWKS, &set); err != nil {
		return nil, errors.New("whitelist: stored jwks does not parse")
	}
	var out []jose.JSONWebKey
	for _, k := range set.Keys {
		if !k.IsPublic() || !k.Valid() {
			return nil, errors.New("whitelist: stored jwks holds a non-public key")
		}
		if k.Use == "" || k.Use == "sig" {
			out = append(out, k)
		}
	}
	return out, nil
}

// IsPublic reports whether the client has no credentials of its own
// (token_endpoint_auth_method none): the provider must then insist on
// PKCE (RFC 8252 §8.1).
func (c *Client) IsPublic() bool { return c.TokenEndpointAuthMethod == AuthNone }

func isLoopbackIP(host string) bool {
	return host == "127.0.0.1" || host == "::1"
}

func scopeList(scope string) []string { return strings.Fields(scope) }
