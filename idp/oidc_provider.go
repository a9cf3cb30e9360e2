package idp

import (
	"context"
	"net/http"
)

// oidcState is owned by the provider files (oidc_*.go).
type oidcState struct{}

func (s *Server) initOIDC(ctx context.Context) error { s.oidc = &oidcState{}; return nil }
func (s *Server) mountOIDC(mux *http.ServeMux)       {}
