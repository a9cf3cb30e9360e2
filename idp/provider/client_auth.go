package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/internal/ids"
)

// Client assertions may be at most this old (iat), with this much clock
// leeway; the jti of each is remembered for that window.
const (
	assertionMaxAge = 5 * time.Minute
	assertionLeeway = 10 * time.Second
)

func jtiKey(client, jti string) string { return "jti:" + ids.Hash(client+"\x00"+jti) }

// invalidClient is invalid_client, answered with a 401 and a Basic
// challenge (RFC 6749 §5.2).
func invalidClient(desc string) *oidc.Error {
	return oidc.ErrInvalidClient().WithDescription("%s", desc)
}

// lookupClient is clients.Lookup as the API endpoints answer it: a client
// the registry refuses is invalid_client, a registry that cannot be asked
// is an outage (503), never a refusal.
func (s *Server) lookupClient(ctx context.Context, id string) (*clients.Entry, error) {
	e, err := s.clients.Lookup(ctx, id)
	switch {
	case err == nil:
		return e, nil
	case errors.Is(err, clients.ErrUnavailable):
		return nil, err
	}
	return nil, invalidClient("unknown client, or one not approved to act now")
}

// authenticate authenticates the client of the token, introspection and
// revocation endpoints: client_secret_basic against the Argon2id hash,
// private_key_jwt with our own assertion checks, or none for public
// clients, each only for a client registered for that method.
func (s *Server) authenticate(ctx context.Context, cc credentials) (*clients.Entry, error) {
	if cc.assertion != "" {
		e, err := s.verifyAssertion(ctx, cc.assertion)
		if err != nil {
			return nil, err
		}
		if cc.clientID != "" && cc.clientID != e.Client.ID {
			return nil, invalidClient("client_id does not match the client assertion")
		}
		return e, nil
	}
	e, err := s.lookupClient(ctx, cc.clientID)
	if err != nil {
		return nil, err
	}
	switch e.Client.AuthMethod {
	case clients.AuthNone:
		return e, nil
	case clients.AuthPrivateKeyJWT:
		return nil, invalidClient("this client authenticates with private_key_jwt")
	}
	if cc.secret == "" || !s.clients.VerifySecret(ctx, e, cc.secret) {
		return nil, invalidClient("invalid client credentials")
	}
	return e, nil
}

// verifyAssertion checks a private_key_jwt client assertion (RFC 7523):
// signed by a key of the client it names, for us as audience (the issuer
// or the token endpoint: OIDC Core §9 names the latter), fresh, and seen
// once. The jti is recorded only after the signature verifies, so that a
// forged assertion cannot burn a real one's jti.
func (s *Server) verifyAssertion(ctx context.Context, assertion string) (*clients.Entry, error) {
	unverified := new(oidc.JWTTokenRequest)
	if _, err := oidc.ParseToken(assertion, unverified); err != nil {
		return nil, invalidClient("the client assertion is not a JWT")
	}
	issuer := s.web.Issuer()
	aud := issuer
	if tokenURL := strings.TrimSuffix(issuer, "/") + tokenPath; !slices.Contains(unverified.Audience, issuer) && slices.Contains(unverified.Audience, tokenURL) {
		aud = tokenURL
	}
	ks := assertionKeySet{s: s}
	req, err := op.VerifyJWTAssertion(ctx, assertion, op.NewJWTProfileVerifierKeySet(ks, aud, assertionMaxAge, assertionLeeway))
	if err != nil {
		// The library turns every failure into a refusal; an outage
		// behind it must stay one.
		if errors.Is(err, errUnavailable) || errors.Is(err, clients.ErrUnavailable) {
			return nil, err
		}
		var oerr *oidc.Error
		if errors.As(err, &oerr) && oerr.ErrorType == oidc.InvalidClient {
			return nil, clean(oerr)
		}
		return nil, invalidClient("the client assertion is not valid")
	}
	return s.lookupClient(ctx, req.Issuer)
}

// assertionKeySet verifies a client assertion with its client's keys and
// then records its jti, so that a captured assertion cannot be replayed.
type assertionKeySet struct{ s *Server }

func (k assertionKeySet) VerifySignature(ctx context.Context, jws *jose.JSONWebSignature) ([]byte, error) {
	var claims struct {
		Issuer string `json:"iss"`
		JTI    string `json:"jti"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &claims); err != nil {
		return nil, errors.New("client assertion payload is not JSON")
	}
	e, err := k.s.clients.Lookup(ctx, claims.Issuer)
	if errors.Is(err, clients.ErrUnavailable) {
		return nil, err
	}
	if err != nil || e.Client.AuthMethod != clients.AuthPrivateKeyJWT {
		return nil, errors.New("client is not registered for private_key_jwt")
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("client assertion must carry one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, err := k.s.clients.AssertionKeys(ctx, e, kid)
	if err != nil {
		return nil, fmt.Errorf("client keys: %w", err)
	}
	var payload []byte
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		if p, err := jws.Verify(&keys[i]); err == nil {
			payload = p
			break
		}
	}
	if payload == nil {
		return nil, errors.New("client assertion signature does not verify")
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.JTI == "" || len(claims.JTI) > 256 {
		return nil, oidc.ErrInvalidClient().WithDescription("client assertion needs a jti")
	}
	fresh, err := k.s.kv.SetNX(ctx, jtiKey(e.Client.ID, claims.JTI), []byte("1"), assertionMaxAge+2*assertionLeeway)
	if err != nil {
		return nil, fmt.Errorf("%w: record jti: %w", errUnavailable, err)
	}
	if !fresh {
		return nil, oidc.ErrInvalidClient().WithDescription("client assertion jti replayed")
	}
	return payload, nil
}
