package keys

import (
	"context"
	"encoding/json"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// SignJWT signs claims as a compact JWS with the current key of alg,
// typ in the header (logout+jwt, secevent+jwt): the provider's other
// tokens — logout tokens, security event tokens — are signed by the
// same ring as ID tokens, so relying parties verify them against the one
// JWKS. The explicit typ keeps one kind of token from passing for
// another (RFC 8725 §3.11).
func (m *Manager) SignJWT(ctx context.Context, alg jose.SignatureAlgorithm, typ string, claims any) (string, error) {
	k, err := m.Current(ctx, alg)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("keys: claims: %w", err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.ID(), Algorithm: string(alg)}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		return "", fmt.Errorf("keys: signer: %w", err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("keys: sign: %w", err)
	}
	return jws.CompactSerialize()
}
