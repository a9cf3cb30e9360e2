package idp

// Client is a registered relying party as the provider sees it. The static
// configuration builds these today; the whitelist registry replaces that.
type Client struct {
	ID          string `json:"client_id" yaml:"client_id"`
	DisplayName string `json:"display_name" yaml:"display_name"`
	// SecretHash is a hash of the client secret (client_secret_basic); the
	// plain secret is never stored.
	SecretHash string `json:"secret_hash,omitempty" yaml:"-"`
	// AuthMethod: private_key_jwt (preferred), client_secret_basic, none.
	AuthMethod   string   `json:"token_endpoint_auth_method" yaml:"token_endpoint_auth_method"`
	RedirectURIs []string `json:"redirect_uris" yaml:"redirect_uris"`
	PostLogout   []string `json:"post_logout_redirect_uris,omitempty" yaml:"post_logout_redirect_uris"`
	// SectorIdentifierURI, when set, names the pairwise sector; otherwise
	// the single host of RedirectURIs is the sector.
	SectorIdentifierURI string `json:"sector_identifier_uri,omitempty" yaml:"sector_identifier_uri"`
	// Sector is the resolved sector (host), computed at load time.
	Sector string `json:"sector" yaml:"-"`
	// JWKS holds public keys for private_key_jwt (JSON Web Key Set).
	JWKS []byte `json:"jwks,omitempty" yaml:"-"`
	// Scopes this client may request beyond openid.
	Scopes []string `json:"scopes" yaml:"scopes"`
	// IDTokenAlg is ES256 (default) or RS256.
	IDTokenAlg string `json:"id_token_signed_response_alg,omitempty" yaml:"id_token_signed_response_alg"`
	// Purpose is shown to residents on the wallet and consent screens.
	Purpose string `json:"purpose,omitempty" yaml:"purpose"`
}
