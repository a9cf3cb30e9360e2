package provider

import (
	"net/http"
	"slices"

	"github.com/rs/cors"
	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/idp/web"
)

// backChannel refuses, before anything is parsed further, the request
// shapes the token, introspection and revocation endpoints do not take:
// another method than POST, and parameters in the query (they end up in
// logs). Responses are never cached. The endpoints' own parsers
// (parseTokenRequest, parseCredentials) do the rest.
func backChannel(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		web.NoStore(w.Header())
		if r.Method == http.MethodOptions {
			next.ServeHTTP(w, r) // a CORS preflight, answered by the CORS layer
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.RawQuery != "" {
			web.WriteJSON(w, http.StatusBadRequest, oidc.ErrInvalidRequest().WithDescription("parameters belong in the request body"))
			return
		}
		if err := r.ParseForm(); err != nil {
			web.WriteJSON(w, http.StatusBadRequest, oidc.ErrInvalidRequest().WithDescription("cannot parse the form body"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// corsOptions replace the library's default, which reflects any origin
// with credentials. Metadata is public; the endpoints an SPA calls accept
// the configured origins; nothing sends credentials cross-origin.
func (s *Server) corsOptions() *cors.Options {
	allowed := slices.Clone(s.origins)
	return &cors.Options{
		AllowOriginVaryRequestFunc: func(r *http.Request, origin string) (bool, []string) {
			switch r.URL.Path {
			case oidc.DiscoveryEndpoint, keysPath:
				return true, nil
			case tokenPath, userinfoPath, revokePath:
				return slices.Contains(allowed, origin), nil
			}
			return false, nil
		},
		AllowedMethods:   []string{http.MethodGet, http.MethodPost},
		AllowedHeaders:   []string{"Authorization", "Content-Type"},
		AllowCredentials: false,
	}
}
