package consent

// Metadata is this package's part of the discovery document (OIDC
// Discovery §3, OIDC4IDA §8). The provider merges it with its own fields
// and adds the protocol claims (sub, acr, auth_time, ...) to
// claims_supported.
type Metadata struct {
	ClaimsSupported                 []string `json:"claims_supported"`
	ClaimsParameterSupported        bool     `json:"claims_parameter_supported"`
	VerifiedClaimsSupported         bool     `json:"verified_claims_supported"`
	TrustFrameworksSupported        []string `json:"trust_frameworks_supported"`
	EvidenceSupported               []string `json:"evidence_supported"`
	ClaimsInVerifiedClaimsSupported []string `json:"claims_in_verified_claims_supported"`
}

// Discovery returns the metadata. It is derived from the catalogue so
// that what is advertised is exactly what Release can produce.
func Discovery() Metadata {
	var names []string
	for _, c := range catalogue {
		names = append(names, c.Name)
	}
	return Metadata{
		ClaimsSupported:                 names,
		ClaimsParameterSupported:        true,
		VerifiedClaimsSupported:         true,
		TrustFrameworksSupported:        []string{TrustFrameworkJPKI},
		EvidenceSupported:               []string{EvidenceElectronicSignature},
		ClaimsInVerifiedClaimsSupported: append([]string(nil), names...),
	}
}

// Map returns the metadata as discovery fields, for providers that build
// the document as a map or need to merge claims_supported.
func (m Metadata) Map() map[string]any {
	return map[string]any{
		"claims_supported":                    m.ClaimsSupported,
		"claims_parameter_supported":          m.ClaimsParameterSupported,
		"verified_claims_supported":           m.VerifiedClaimsSupported,
		"trust_frameworks_supported":          m.TrustFrameworksSupported,
		"evidence_supported":                  m.EvidenceSupported,
		"claims_in_verified_claims_supported": m.ClaimsInVerifiedClaimsSupported,
	}
}
