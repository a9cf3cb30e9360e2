package idp

import (
	"context"
	"net/http"
)

// webState is owned by the web files (web_*.go): middleware, security
// headers, CSRF, rate limits, request IDs, telemetry.
type webState struct{}

func (s *Server) initWeb(ctx context.Context) error      { s.web = &webState{}; return nil }
func (s *Server) wrapPublic(h http.Handler) http.Handler { return h }
