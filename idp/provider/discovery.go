package provider

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/session"
)

// Advertised values, pinned by testdata/discovery.golden.json. The
// personal claims and the identity-assurance metadata are the consent
// package's (consent.Discovery), derived from what Release can produce.
var (
	claimsSupported = append([]string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp"},
		consent.Discovery().ClaimsSupported...)
	// acrValuesSupported: a JPKI sign-in is aal3, a passkey sign-in
	// aal2 (docs/rp-integration.md). Asking for aal2 is always
	// answerable, if need be by the JPKI sign-in.
	acrValuesSupported = []string{session.ACRJPKI, session.ACRPasskey}
	// assertionAlgs sign private_key_jwt client assertions.
	assertionAlgs = []string{string(jose.ES256), string(jose.RS256), string(jose.PS256)}
)

// discoveryDocument is our own metadata: the library's hard-codes
// "public" subjects, the implicit and jwt-bearer grants and more that we
// do not offer. Field order is the golden file's.
type discoveryDocument struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	UserinfoEndpoint                           string   `json:"userinfo_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	EndSessionEndpoint                         string   `json:"end_session_endpoint"`
	RegistrationEndpoint                       string   `json:"registration_endpoint,omitempty"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	SubjectTypesSupported                      []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported           []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	// RFC 8414 §2: introspection serves authenticated clients only.
	IntrospectionEndpointAuthMethodsSupported          []string `json:"introspection_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthSigningAlgValuesSupported []string `json:"introspection_endpoint_auth_signing_alg_values_supported"`
	RevocationEndpointAuthMethodsSupported             []string `json:"revocation_endpoint_auth_methods_supported"`
	RevocationEndpointAuthSigningAlgValuesSupported    []string `json:"revocation_endpoint_auth_signing_alg_values_supported"`
	// RFC 9207: every authorization response carries iss.
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	ClaimsSupported                            []string `json:"claims_supported"`
	ACRValuesSupported                         []string `json:"acr_values_supported"`
	UILocalesSupported                         []string `json:"ui_locales_supported"`
	ClaimsParameterSupported                   bool     `json:"claims_parameter_supported"`
	RequestParameterSupported                  bool     `json:"request_parameter_supported"`
	RequestURIParameterSupported               bool     `json:"request_uri_parameter_supported"`
	// OpenID Connect for Identity Assurance 1.0 §8.
	VerifiedClaimsSupported         bool     `json:"verified_claims_supported"`
	TrustFrameworksSupported        []string `json:"trust_frameworks_supported"`
	EvidenceSupported               []string `json:"evidence_supported"`
	ClaimsInVerifiedClaimsSupported []string `json:"claims_in_verified_claims_supported"`
	// OpenID Connect Back-Channel Logout 1.0 §2.1: logout tokens carry
	// sid whenever the session is known.
	BackchannelLogoutSupported        bool `json:"backchannel_logout_supported"`
	BackchannelLogoutSessionSupported bool `json:"backchannel_logout_session_supported"`
}

func (s *Server) discovery() *discoveryDocument {
	iss := s.web.Issuer()
	abs := func(path string) string { return strings.TrimSuffix(iss, "/") + path }
	md := consent.Discovery()
	return &discoveryDocument{
		Issuer:                                     iss,
		AuthorizationEndpoint:                      abs(authorizePath),
		TokenEndpoint:                              abs(tokenPath),
		UserinfoEndpoint:                           abs(userinfoPath),
		JWKSURI:                                    abs(keysPath),
		RevocationEndpoint:                         abs(revokePath),
		IntrospectionEndpoint:                      abs(introspectPath),
		EndSessionEndpoint:                         abs(endSessionPath),
		RegistrationEndpoint:                       s.registrationEndpoint(),
		ScopesSupported:                            SupportedScopes(),
		ResponseTypesSupported:                     []string{string(oidc.ResponseTypeCode)},
		ResponseModesSupported:                     []string{string(oidc.ResponseModeQuery)},
		GrantTypesSupported:                        []string{string(oidc.GrantTypeCode), string(oidc.GrantTypeRefreshToken)},
		SubjectTypesSupported:                      []string{"pairwise"},
		IDTokenSigningAlgValuesSupported:           []string{string(jose.ES256), string(jose.RS256)},
		TokenEndpointAuthMethodsSupported:          []string{clients.AuthPrivateKeyJWT, clients.AuthSecretBasic, clients.AuthNone},
		TokenEndpointAuthSigningAlgValuesSupported: assertionAlgs,
		IntrospectionEndpointAuthMethodsSupported:  []string{clients.AuthPrivateKeyJWT, clients.AuthSecretBasic},
		IntrospectionEndpointAuthSigningAlgValuesSupported: assertionAlgs,
		RevocationEndpointAuthMethodsSupported:             []string{clients.AuthPrivateKeyJWT, clients.AuthSecretBasic, clients.AuthNone},
		RevocationEndpointAuthSigningAlgValuesSupported:    assertionAlgs,
		AuthorizationResponseIssParameterSupported:         true,
		CodeChallengeMethodsSupported:                      []string{string(oidc.CodeChallengeMethodS256)},
		ClaimsSupported:                                    claimsSupported,
		ACRValuesSupported:                                 acrValuesSupported,
		UILocalesSupported:                                 []string{"ja", "en"},
		ClaimsParameterSupported:                           md.ClaimsParameterSupported,
		VerifiedClaimsSupported:                            md.VerifiedClaimsSupported,
		TrustFrameworksSupported:                           md.TrustFrameworksSupported,
		EvidenceSupported:                                  md.EvidenceSupported,
		ClaimsInVerifiedClaimsSupported:                    md.ClaimsInVerifiedClaimsSupported,
		BackchannelLogoutSupported:                         true,
		BackchannelLogoutSessionSupported:                  true,
	}
}

// Discovery is Watashi's own metadata document.
func (s *Server) Discovery(_ context.Context, r *op.Request[struct{}]) (*op.Response, error) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return nil, op.NewStatusError(oidc.ErrInvalidRequest().WithDescription("method not allowed"), http.StatusMethodNotAllowed)
	}
	resp := op.NewResponse(s.discovery())
	resp.Header.Set("Cache-Control", "public, max-age=300")
	return resp, nil
}

// registrationEndpoint is advertised in discovery when registration is on.
func (s *Server) registrationEndpoint() string {
	if s.registration == nil {
		return ""
	}
	u, err := url.JoinPath(s.web.Issuer(), RegistrationPath)
	if err != nil {
		return ""
	}
	return u
}
