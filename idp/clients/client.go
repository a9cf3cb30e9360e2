package clients

import (
	"net/url"
	"slices"

	"github.com/watashi-id/watashi/consent"
)

// Client authentication methods Watashi accepts.
const (
	AuthPrivateKeyJWT = "private_key_jwt"
	AuthSecretBasic   = "client_secret_basic"
	AuthNone          = "none"
)

// Client is a relying party as the provider sees it: a static client of
// the configuration, or a registry record converted by FromWhitelist.
type Client struct {
	ID          string `json:"client_id" yaml:"client_id"`
	DisplayName string `json:"display_name" yaml:"display_name"`
	// Organization is the legal entity behind the RP (a city office, a
	// bank), shown on the consent screen next to DisplayName, because
	// residents decide whom they trust by who is accountable, not by an
	// app's name.
	Organization string `json:"organization,omitempty" yaml:"organization"`
	// SecretHash is the Argon2id hash of the client secret
	// (client_secret_basic); the plain secret is never stored.
	SecretHash string `json:"secret_hash,omitempty" yaml:"-"`
	// AuthMethod: private_key_jwt (preferred), client_secret_basic, none.
	AuthMethod   string   `json:"token_endpoint_auth_method" yaml:"token_endpoint_auth_method"`
	RedirectURIs []string `json:"redirect_uris" yaml:"redirect_uris"`
	PostLogout   []string `json:"post_logout_redirect_uris,omitempty" yaml:"post_logout_redirect_uris"`
	// SectorIdentifierURI, when set, names the pairwise sector; otherwise
	// the single host of RedirectURIs is the sector.
	SectorIdentifierURI string `json:"sector_identifier_uri,omitempty" yaml:"sector_identifier_uri"`
	// Sector is the resolved sector (host), fixed at registration.
	Sector string `json:"sector" yaml:"-"`
	// JWKS holds public keys for private_key_jwt (JSON Web Key Set).
	JWKS []byte `json:"jwks,omitempty" yaml:"-"`
	// Scopes this client may request beyond openid. They are also the
	// upper bound of the claims it may receive, however it asks for them
	// (scopes or the claims parameter): see Policy.
	Scopes []string `json:"scopes" yaml:"scopes"`
	// IDTokenAlg is ES256 (default) or RS256.
	IDTokenAlg string `json:"id_token_signed_response_alg,omitempty" yaml:"id_token_signed_response_alg"`
	// Purpose is shown to residents on the wallet and consent screens.
	Purpose string `json:"purpose,omitempty" yaml:"purpose"`
	// PolicyURI is the RP's privacy policy, linked from the consent
	// screen so that a resident can read what happens to their data
	// before sharing it.
	PolicyURI string `json:"policy_uri,omitempty" yaml:"policy_uri"`
	// LogoURI is the RP's logo (registration metadata logo_uri). Watashi
	// fetches it through the guarded fetcher and serves it from its own
	// origin (LogoPath), so a resident's browser never contacts the RP
	// before consenting.
	LogoURI string `json:"logo_uri,omitempty" yaml:"logo_uri"`
	// BackchannelLogoutURI receives a logout token whenever a session in
	// which the client got tokens ends (OpenID Connect Back-Channel
	// Logout 1.0), posted through the guarded fetcher.
	BackchannelLogoutURI string `json:"backchannel_logout_uri,omitempty" yaml:"backchannel_logout_uri"`
	// AgeAlternatives declares that an age check (age_over_18 or
	// age_over_20) serves this RP wherever it asks for the birth date, so
	// the consent screen offers the resident the narrower answer even
	// when the RP marks the birth date essential. Data minimisation is
	// decided at registration, where the operator can hold the RP to it.
	AgeAlternatives bool `json:"age_alternatives,omitempty" yaml:"age_alternatives"`
	// VerifiedClaims lets the RP receive verified_claims (OpenID Connect
	// for Identity Assurance). They carry the signature certificate's
	// issuer and serial number, which are the same for every RP and so
	// link the resident across RPs: only RPs with a legal duty to keep
	// proofing evidence (know-your-customer rules) should get this.
	VerifiedClaims bool `json:"verified_claims,omitempty" yaml:"verified_claims"`
	// ScopeClaimsInIDToken also puts the claims requested by scope into
	// the ID token. OIDC Core §5.4 returns them from userinfo only; RP
	// libraries that read nothing but the ID token need this.
	ScopeClaimsInIDToken bool `json:"scope_claims_in_id_token,omitempty" yaml:"scope_claims_in_id_token"`

	// ApplicationType is "native" for registered native apps, whose
	// loopback redirects may use any port (RFC 8252 §7.3).
	ApplicationType string `json:"application_type,omitempty" yaml:"-"`
	// TierClaims, when not nil, is the upper bound on the fact claims the
	// client may receive, from its tier, instead of the claims its scopes
	// stand for: a tier grants claims one by one.
	TierClaims []string `json:"tier_claims,omitempty" yaml:"-"`
	// MinACR is the tier's minimum authentication level.
	MinACR string `json:"min_acr,omitempty" yaml:"-"`
}

// ageAlternatives are the age checks AgeAlternatives offers.
var ageAlternatives = []string{consent.ClaimAgeOver18, consent.ClaimAgeOver20}

// Policy is the client's upper bound on claims. Its claims follow from
// its scopes (or its tier), so that a claim the operator did not allow by
// scope cannot be had through the claims parameter either.
func (c *Client) Policy() consent.ClientPolicy {
	p := consent.PolicyForScopes(c.Scopes)
	if c.TierClaims != nil {
		p.Claims = slices.Clone(c.TierClaims)
	}
	p.Verified = c.VerifiedClaims
	p.ScopeClaimsInIDToken = c.ScopeClaimsInIDToken
	if c.AgeAlternatives {
		p.AgeAlternatives = ageAlternatives
	}
	return p
}

// Name is what residents see for the client.
func (c *Client) Name() string {
	if c.DisplayName != "" {
		return c.DisplayName
	}
	return c.ID
}

// LogoPath is where the provider serves client id's logo (a neutral
// mark when it has none).
func LogoPath(id string) string { return "/rp-logo/" + url.PathEscape(id) }

// SelfServiceID names the provider itself when a resident signs in to
// manage their own account. It cannot be named at /authorize: a client ID
// with ':' is refused, for static and registered clients alike.
const SelfServiceID = "watashi:account"

// selfService describes the provider to the login page and the wallet,
// which show who asks for a sign-in.
var selfService = &Client{
	ID:          SelfServiceID,
	DisplayName: "Watashi アカウント / Watashi account",
	Purpose:     "アカウントの管理 / Managing your account",
}
