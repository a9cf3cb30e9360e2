package provider

import (
	"context"
	"errors"
	"fmt"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/idp/clients"
)

// ErrClientRefused is AuthenticateClient refusing the credentials; its
// wrapped error says why, for the client.
var ErrClientRefused = errors.New("provider: client authentication failed")

// AuthenticateClient authenticates a confidential client by the
// credentials it uses at the token endpoint — client_secret_basic, or a
// private_key_jwt assertion (fresh, single use, for the issuer as
// audience) — for the provider's other client-facing APIs (the SSF
// stream management API). Public clients are refused: they hold no
// secret. A refusal wraps ErrClientRefused; any other error is an
// outage, never a refusal.
func (s *Server) AuthenticateClient(ctx context.Context, clientID, secret, assertion string) (*clients.Entry, error) {
	e, err := s.authenticate(ctx, credentials{clientID: clientID, secret: secret, assertion: assertion, basic: assertion == ""})
	if err != nil {
		var oerr *oidc.Error
		if errors.As(err, &oerr) && !errors.Is(err, errUnavailable) && !errors.Is(err, clients.ErrUnavailable) {
			return nil, fmt.Errorf("%w: %s", ErrClientRefused, oerr.Description)
		}
		return nil, err
	}
	if e.Client.AuthMethod == clients.AuthNone {
		return nil, fmt.Errorf("%w: a public client cannot use this API", ErrClientRefused)
	}
	return e, nil
}
