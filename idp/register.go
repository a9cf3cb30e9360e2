package idp

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/watashi-id/watashi/idp/provider"
	"github.com/watashi-id/watashi/whitelist"
)

// Registration rate limit per client address: registration is cheap to
// call and costs Argon2 hashing and sector document fetches.
const (
	registrationPerIP  = 30
	registrationWindow = time.Minute
)

// registration builds the RFC 7591/7592 endpoint of the whitelist
// registry behind a per-address rate limit, or nil without a registry.
func (s *Server) registration() (http.Handler, error) {
	reg := s.opts.Registry
	if reg == nil {
		return nil, nil
	}
	h, err := reg.RegistrationHandler(whitelist.RegistrationOptions{
		Endpoint:                 strings.TrimSuffix(s.opts.Issuer, "/") + provider.RegistrationPath,
		TrustedIssuers:           s.opts.TrustedSoftwareStatementIssuers,
		RequireSoftwareStatement: s.opts.RequireSoftwareStatement,
	})
	if err != nil {
		return nil, fmt.Errorf("idp: registration endpoint: %w", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.web.Allow(r.Context(), "register", s.web.RateKey(r), registrationPerIP, registrationWindow) {
			w.Header().Set("Retry-After", fmt.Sprint(int(registrationWindow.Seconds())))
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"error":"invalid_request","error_description":"too many registration requests from this address; try again in a minute"}`))
			return
		}
		h.ServeHTTP(w, r)
	}), nil
}
