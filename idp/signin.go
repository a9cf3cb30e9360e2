package idp

import (
	"context"
	"net/http"
)

// signinState is owned by the sign-in files (signin_*.go).
type signinState struct{}

func (s *Server) initSignin(ctx context.Context) error { s.signin = &signinState{}; return nil }
func (s *Server) mountSignin(mux *http.ServeMux)       {}
