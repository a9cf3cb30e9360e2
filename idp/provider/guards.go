package provider

import (
	"net/http"
	"slices"

	"github.com/rs/cors"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/idp/web"
)

// backChannel refuses, before the library parses anything, the request
// shapes the token, introspection and revocation endpoints do not take:
// another method than POST, parameters in the query (they end up in
// logs), a client secret in the body (RFC 6749 §2.3.1 lets us require
// HTTP Basic), and grant types Watashi does not offer. Responses are
// never cached.
func backChannel(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		web.NoStore(w.Header())
		if r.Method == http.MethodOptions {
			next.ServeHTTP(w, r) // a CORS preflight, answered by the library's CORS layer
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.RawQuery != "" {
			op.RequestError(w, r, oidc.ErrInvalidRequest().WithDescription("parameters belong in the request body"), nil)
			return
		}
		if err := r.ParseForm(); err != nil {
			op.RequestError(w, r, oidc.ErrInvalidRequest().WithDescription("cannot parse the form body"), nil)
			return
		}
		if r.PostForm.Get("client_secret") != "" {
			op.RequestError(w, r, oidc.ErrInvalidClient().WithDescription("send the client secret with HTTP Basic authentication (client_secret_basic)"), nil)
			return
		}
		if r.URL.Path == introspectPath {
			// Introspection answers authenticated clients only (RFC 7662
			// §2.1): a secret or an assertion, never a client_id alone.
			if _, secret, ok := r.BasicAuth(); (!ok || secret == "") && r.PostForm.Get("client_assertion") == "" {
				web.WriteJSON(w, http.StatusUnauthorized, oidc.ErrInvalidClient().WithDescription("client must be authenticated"))
				return
			}
		}
		if r.URL.Path == tokenPath {
			switch oidc.GrantType(r.PostForm.Get("grant_type")) {
			case oidc.GrantTypeCode, oidc.GrantTypeRefreshToken:
			default:
				op.RequestError(w, r, oidc.ErrUnsupportedGrantType().WithDescription("only authorization_code and refresh_token are supported"), nil)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// userinfoGuard keeps the access token out of URLs, where it would reach
// logs and Referer headers, and the answer out of caches.
func (s *Server) userinfoGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		web.NoStore(w.Header())
		if r.URL.Query().Has("access_token") {
			op.RequestError(w, r, oidc.ErrInvalidRequest().WithDescription("send the access token in the Authorization header"), nil)
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
