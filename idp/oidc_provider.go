package idp

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/cors"
	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/whitelist"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// The provider's routes (the library's defaults; never changed with
// WithCustom*Endpoint, which would mutate a package-level variable).
const (
	authorizePath  = "/authorize"
	callbackPath   = "/authorize/callback"
	tokenPath      = "/oauth/token"
	introspectPath = "/oauth/introspect"
	userinfoPath   = "/userinfo"
	revokePath     = "/revoke"
	endSessionPath = "/end_session"
	keysPath       = "/keys"
)

// oidcState is owned by the provider files (oidc_*.go, keys.go).
type oidcState struct {
	provider *op.Provider
	endpoint opEndpoint
	storage  *opStorage
	clients  map[string]*clientEntry
	// registry memoises whitelisted clients' entries (whitelist.go);
	// register serves /register when there is a registry.
	registry registryClients
	register http.Handler
	keys     *keyManager
	secrets  *secretVerifier
	jwksURI  jwksURICache
	metrics  oidcMetrics
}

type oidcMetrics struct {
	authRequests prometheus.Counter
	tokens       *prometheus.CounterVec
	reuse        *prometheus.CounterVec
	revoked      prometheus.Counter
}

func (s *Server) initOIDCMetrics() (oidcMetrics, *prometheus.CounterVec, error) {
	reg := s.opts.Metrics
	var m oidcMetrics
	var err error
	if m.authRequests, err = registerMetric(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "watashi_oidc_auth_requests_total",
		Help: "Authorization requests accepted and stored.",
	})); err != nil {
		return m, nil, err
	}
	if m.tokens, err = registerMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_oidc_tokens_issued_total",
		Help: "Access and refresh tokens issued, by kind.",
	}, []string{"kind"})); err != nil {
		return m, nil, err
	}
	if m.reuse, err = registerMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_oidc_token_reuse_total",
		Help: "Replayed authorization codes and reused refresh tokens (each revokes a grant), by kind.",
	}, []string{"kind"})); err != nil {
		return m, nil, err
	}
	if m.revoked, err = registerMetric(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "watashi_oidc_grants_revoked_total",
		Help: "Grants (token families) revoked.",
	})); err != nil {
		return m, nil, err
	}
	rot, err := registerMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "watashi_signing_key_rotations_total",
		Help: "Signing key rotations performed by this node, by algorithm.",
	}, []string{"alg"}))
	return m, rot, err
}

// devSecret fills a missing secret in development only, as the web layer
// does for the cookie key: the demo forgets everything on exit anyway.
func (s *Server) devSecret(name string, b []byte) error {
	if !s.opts.Dev {
		return fmt.Errorf("idp: Options.%s must be set (at least 32 bytes)", name)
	}
	if _, err := rand.Read(b); err != nil {
		return err
	}
	s.log.Warn("generated a random secret for this process (dev only)", "option", name)
	return nil
}

func (s *Server) initOIDC(ctx context.Context) error {
	if len(s.opts.PairwiseKey) == 0 {
		s.opts.PairwiseKey = make([]byte, 32)
		if err := s.devSecret("PairwiseKey", s.opts.PairwiseKey); err != nil {
			return err
		}
	} else if len(s.opts.PairwiseKey) < 32 {
		return errors.New("idp: Options.PairwiseKey must be at least 32 bytes")
	}
	if s.opts.TokenKey == ([32]byte{}) {
		if err := s.devSecret("TokenKey", s.opts.TokenKey[:]); err != nil {
			return err
		}
	}
	if len(s.opts.CookieKey) < 32 {
		return errors.New("idp: Options.CookieKey must be at least 32 bytes")
	}
	st := &oidcState{secrets: newSecretVerifier()}
	s.oidc = st
	var rot *prometheus.CounterVec
	var err error
	if st.metrics, rot, err = s.initOIDCMetrics(); err != nil {
		return err
	}
	if st.clients, err = s.loadClients(ctx); err != nil {
		return err
	}
	st.keys = newKeyManager(s.kv, s.now, s.log)
	st.keys.rotated = rot
	if err := st.keys.ensure(ctx); err != nil {
		return err
	}
	st.storage = &opStorage{s: s}
	if st.register, err = s.registrationHandler(); err != nil {
		return err
	}

	cfg := &op.Config{
		CryptoKey:                s.opts.TokenKey,
		DefaultLogoutRedirectURI: logoutPath,
		CodeMethodS256:           true,
		AuthMethodPrivateKeyJWT:  true,
		GrantTypeRefreshToken:    true,
		SupportedUILocales:       []language.Tag{language.Japanese, language.English},
		SupportedScopes:          supportedScopes,
		SupportedClaims:          claimsSupported,
	}
	// The key ID names the token key, so that a later rotation can keep
	// the old one as a decrypter (op.NewCompositeCrypto).
	tk := sha256Hex(string(s.opts.TokenKey[:]))[:8]
	opts := []op.Option{
		op.WithCrypto(op.NewAES256GCMCrypto(s.opts.TokenKey, tk)),
		op.WithCORSOptions(s.corsOptions()),
		op.WithHttpInterceptors(s.oidcInterceptor),
		// Our access tokens are opaque: never accept a JWT (an ID token,
		// say) where an access token is expected.
		op.WithAccessTokenKeySet(refuseKeySet{}),
		op.WithIDTokenHintVerifierOpts(op.WithSupportedIDTokenHintSigningAlgorithms(string(jose.ES256), string(jose.RS256))),
	}
	if s.opts.Dev {
		opts = append(opts, op.WithAllowInsecure())
	}
	p, err := op.NewProvider(cfg, whitelistStorage{st.storage}, op.StaticIssuer(s.opts.Issuer), opts...)
	if err != nil {
		return fmt.Errorf("idp: provider: %w", err)
	}
	st.provider = p
	st.endpoint = opEndpoint{Provider: p, s: s}
	return nil
}

// mountOIDC gives the provider every path nobody else claimed.
func (s *Server) mountOIDC(mux *http.ServeMux) {
	mux.Handle("/", s.oidc.provider)
	if s.oidc.register != nil {
		mux.Handle(registrationPath, s.oidc.register)
		mux.Handle(registrationPath+"/", s.oidc.register)
	}
}

// signingKeyReady reports whether every algorithm has a current key
// (readiness).
func (s *Server) signingKeyReady(ctx context.Context) error {
	r, err := s.oidc.keys.ring(ctx)
	if err != nil {
		return err
	}
	for _, a := range signingAlgs {
		if r.current[a] == nil {
			return fmt.Errorf("no current %s signing key", a)
		}
	}
	return nil
}

// authError ends an auth request with an OAuth error sent to the RP
// (login_required, access_denied, ...). The request is deleted: it cannot
// be resumed after the RP was told it failed.
func (s *Server) authError(w http.ResponseWriter, r *http.Request, ar *AuthRequest, err error) {
	op.AuthRequestError(w, r, ar, err, s.oidc.provider)
	if ar != nil {
		if derr := s.kv.Delete(r.Context(), authRequestKey(ar.ID)); derr != nil {
			s.log.WarnContext(r.Context(), "auth request not deleted after error", "error", derr)
		}
	}
}

type refuseKeySet struct{}

func (refuseKeySet) VerifySignature(context.Context, *jose.JSONWebSignature) ([]byte, error) {
	return nil, errors.New("JWT access tokens are not accepted")
}

// ---- per-request holder ----

// reqScope carries what one provider request learns on the way down to
// the storage calls that need it: the library passes them only a context.
type reqScope struct {
	// clientID is the client a token request acts for (set when its code
	// or refresh token resolves); SigningKey picks its algorithm.
	clientID string
	// client memoises GetClientByClientID, called several times a request.
	client *clientEntry
	// claims is the raw `claims` parameter of /authorize, which the
	// library's decoder drops.
	claims     string
	hasClaims  bool
	requestURI bool
	// assertionAud is the (unverified) aud of a client assertion, to pick
	// which of our identifiers to verify it against.
	assertionAud []string
	// ar and arRaw memoise the auth request this request works on.
	ar    *AuthRequest
	arRaw []byte
}

// remember keeps a private copy of an auth request as last read or
// written by this request (nil forgets it).
func (rs *reqScope) remember(ar *AuthRequest, raw []byte) {
	if rs == nil {
		return
	}
	if ar == nil {
		rs.ar, rs.arRaw = nil, nil
		return
	}
	cp := *ar
	rs.ar, rs.arRaw = &cp, raw
}

type reqScopeKey struct{}

func requestScope(ctx context.Context) *reqScope {
	rs, _ := ctx.Value(reqScopeKey{}).(*reqScope)
	return rs
}

func noteClient(ctx context.Context, clientID string) {
	if rs := requestScope(ctx); rs != nil {
		rs.clientID = clientID
	}
}

// ---- interceptor ----

func noStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// oidcInterceptor runs inside the provider's router (after CORS and the
// issuer interceptor) and fills the library's gaps per endpoint.
func (s *Server) oidcInterceptor(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs := &reqScope{}
		r = r.WithContext(context.WithValue(r.Context(), reqScopeKey{}, rs))
		switch r.URL.Path {
		case "/healthz", "/ready", "/device_authorization":
			// Health lives on the telemetry listener; no device grant.
			http.NotFound(w, r)
			return
		case oidc.DiscoveryEndpoint:
			s.serveDiscovery(w, r)
			return
		case keysPath:
			w.Header().Set("Cache-Control", "public, max-age=300")
		case authorizePath:
			w = &authorizeErrorWriter{ResponseWriter: w, s: s, r: r}
			if !s.preAuthorize(w, r, rs) {
				return
			}
		case callbackPath:
			w = &authorizeErrorWriter{ResponseWriter: w, s: s, r: r}
			if !s.checkBinding(w, r) {
				return
			}
		case userinfoPath:
			noStore(w.Header())
			if r.URL.Query().Has("access_token") {
				op.RequestError(w, r, oidc.ErrInvalidRequest().WithDescription("send the access token in the Authorization header"), nil)
				return
			}
		case tokenPath, introspectPath, revokePath:
			s.serveBackChannel(w, r, rs)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// serveBackChannel handles the token, introspection and revocation
// endpoints: POST with a form body only, secrets in the Authorization
// header only, no caching, and our private_key_jwt verifier.
func (s *Server) serveBackChannel(w http.ResponseWriter, r *http.Request, rs *reqScope) {
	noStore(w.Header())
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
	if a := r.PostForm.Get("client_assertion"); a != "" {
		req := new(oidc.JWTTokenRequest)
		if _, err := oidc.ParseToken(a, req); err == nil {
			rs.assertionAud = req.Audience
		}
	}
	switch r.URL.Path {
	case tokenPath:
		switch oidc.GrantType(r.PostForm.Get("grant_type")) {
		case oidc.GrantTypeCode, oidc.GrantTypeRefreshToken:
			op.Exchange(w, r, s.oidc.endpoint)
		default:
			op.RequestError(w, r, oidc.ErrUnsupportedGrantType().WithDescription("only authorization_code and refresh_token are supported"), nil)
		}
	case introspectPath:
		op.Introspect(w, r, s.oidc.endpoint)
	case revokePath:
		op.Revoke(w, r, s.oidc.endpoint)
	}
}

// preAuthorize checks client_id and redirect_uri before the library does,
// because the library answers a bad one with a plain-text 400: we show a
// page instead, and never redirect to an unregistered URI. It also keeps
// the parameters the library's decoder drops.
func (s *Server) preAuthorize(w http.ResponseWriter, r *http.Request, rs *reqScope) bool {
	if err := r.ParseForm(); err != nil {
		s.renderOIDCError(w, r, http.StatusBadRequest, "bad_request")
		return false
	}
	e, err := s.clientEntry(r.Context(), r.Form.Get("client_id"))
	if err != nil {
		code := "unknown_client"
		if errors.Is(err, whitelist.ErrPending) || errors.Is(err, whitelist.ErrSuspended) ||
			errors.Is(err, whitelist.ErrRevoked) || errors.Is(err, whitelist.ErrTierUnavailable) {
			code = "client_not_allowed"
		}
		s.renderOIDCError(w, r, http.StatusBadRequest, code)
		return false
	}
	// The library compares after one more unescape; do the same.
	ru, err := url.QueryUnescape(r.Form.Get("redirect_uri"))
	if err != nil || ru == "" || !redirectRegistered(e, ru) {
		s.renderOIDCError(w, r, http.StatusBadRequest, "invalid_redirect_uri")
		return false
	}
	if !s.checkTier(w, r, e, ru) {
		return false
	}
	if v, ok := r.Form["claims"]; ok {
		rs.hasClaims = true
		if len(v) == 1 {
			rs.claims = v[0]
		}
	}
	rs.requestURI = r.Form.Has("request_uri")
	return true
}

// redirectRegistered is an exact match, except that a native (public)
// client's loopback redirect may use any port (RFC 8252 §7.3), as the
// library then allows. Registry clients follow the registry's rule.
func redirectRegistered(e *clientEntry, uri string) bool {
	if e.wl != nil {
		return e.wl.RedirectAllowed(uri)
	}
	c := e.c
	if slices.Contains(c.RedirectURIs, uri) {
		return true
	}
	if c.AuthMethod != authNone {
		return false
	}
	u, ok := op.HTTPLoopbackOrLocalhost(uri)
	if !ok || u.Scheme != "http" {
		return false
	}
	for _, reg := range c.RedirectURIs {
		if ru, ok := op.HTTPLoopbackOrLocalhost(reg); ok && ru.Scheme == "http" &&
			ru.Hostname() == u.Hostname() && ru.Path == u.Path && ru.RawQuery == u.RawQuery {
			return true
		}
	}
	return false
}

// checkBinding lets only the browser that signed in pick up the code: the
// callback needs the binding cookie whose SHA-256 the login recorded.
func (s *Server) checkBinding(w http.ResponseWriter, r *http.Request) bool {
	ar, err := s.authRequest(r.Context(), r.FormValue("id"))
	if err != nil {
		s.renderOIDCError(w, r, http.StatusBadRequest, "unknown_request")
		return false
	}
	c, err := r.Cookie(s.cookieName("bind"))
	if err != nil || ar.Binding == "" || subtle.ConstantTimeCompare([]byte(sha256Hex(c.Value)), []byte(ar.Binding)) != 1 {
		s.renderOIDCError(w, r, http.StatusForbidden, "foreign_browser")
		return false
	}
	return true
}

// authorizeErrorWriter turns the library's plain-text 400s on /authorize
// (parse errors, which carry internal details) into our error page.
type authorizeErrorWriter struct {
	http.ResponseWriter
	s        *Server
	r        *http.Request
	replaced bool
}

func (w *authorizeErrorWriter) WriteHeader(code int) {
	if code == http.StatusBadRequest && strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		w.replaced = true
		w.s.renderOIDCError(w.ResponseWriter, w.r, code, "bad_request")
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *authorizeErrorWriter) Write(b []byte) (int, error) {
	if w.replaced {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *authorizeErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ---- error page ----

var oidcErrorMessages = map[string][2]string{ // code -> {ja, en}
	"bad_request":          {"リクエストが正しくありません。", "The request is not valid."},
	"unknown_client":       {"このサービスは登録されていません。", "This service is not registered with us."},
	"client_not_allowed":   {"このサービスは現在、このサインインを利用できません。サービスの提供者にお問い合わせください。", "This service is not currently allowed to use this sign-in. Please contact the service provider."},
	"invalid_redirect_uri": {"このサービスの戻り先が登録と一致しません。", "This service's return address does not match its registration."},
	"unknown_request":      {"サインイン要求が見つからないか、期限切れです。利用中のサービスからやり直してください。", "The sign-in request was not found or has expired. Please start again from the service you were using."},
	"foreign_browser":      {"このサインインは別のブラウザで開始されました。そちらで続けるか、サービスからやり直してください。", "This sign-in was started in another browser. Continue there, or start again from the service."},
}

var oidcErrorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>エラー / Error - Watashi</title></head>
<body><main>
<h1>エラー / Error</h1>
<p lang="ja">{{.JA}}</p>
<p lang="en">{{.EN}}</p>
{{if .RequestID}}<p><small>参照番号 / Reference: <code>{{.RequestID}}</code></small></p>{{end}}
</main></body></html>
`))

// renderOIDCError shows a protocol error that must not be redirected to
// the RP. It never has a Location header.
func (s *Server) renderOIDCError(w http.ResponseWriter, r *http.Request, status int, code string) {
	msg, ok := oidcErrorMessages[code]
	if !ok {
		msg = oidcErrorMessages["bad_request"]
	}
	h := w.Header()
	h.Del("Location")
	h.Set("Content-Type", "text/html; charset=utf-8")
	noStore(h)
	w.WriteHeader(status)
	id := RequestIDFrom(r.Context())
	if !validRequestID(id) {
		id = ""
	}
	_ = oidcErrorPage.Execute(w, struct{ JA, EN, RequestID string }{msg[0], msg[1], id})
	s.log.InfoContext(r.Context(), "authorization error page", "code", code, "status", status)
}

// ---- CORS ----

// corsOptions replace the library's default, which reflects any origin
// with credentials. Metadata is public; the endpoints an SPA calls
// accept the configured origins; nothing sends credentials cross-origin.
func (s *Server) corsOptions() *cors.Options {
	allowed := slices.Clone(s.opts.AllowedOrigins)
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

// ---- discovery ----

// Advertised values, pinned by testdata/discovery.golden.json. The
// personal claims and the identity-assurance metadata are the consent
// package's (consent.Discovery), derived from what Release can produce.
var (
	claimsSupported = append([]string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp"},
		consent.Discovery().ClaimsSupported...)
	acrValuesSupported = []string{"aal3"}
)

// discoveryDocument is our own metadata: the library's hard-codes
// "public" subjects, the implicit and jwt-bearer grants and more that we
// do not offer. Field order is the golden file's.
type discoveryDocument struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	UserinfoEndpoint                           string   `json:"userinfo_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	EndSessionEndpoint                         string   `json:"end_session_endpoint"`
	RegistrationEndpoint                       string   `json:"registration_endpoint,omitempty"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	SubjectTypesSupported                      []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported           []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	ClaimsSupported                            []string `json:"claims_supported"`
	ACRValuesSupported                         []string `json:"acr_values_supported"`
	UILocalesSupported                         []string `json:"ui_locales_supported"`
	ClaimsParameterSupported                   bool     `json:"claims_parameter_supported"`
	RequestParameterSupported                  bool     `json:"request_parameter_supported"`
	RequestURIParameterSupported               bool     `json:"request_uri_parameter_supported"`
	// OpenID Connect for Identity Assurance 1.0 §8.
	VerifiedClaimsSupported         bool     `json:"verified_claims_supported"`
	TrustFrameworksSupported        []string `json:"trust_frameworks_supported"`
	EvidenceSupported               []string `json:"evidence_supported"`
	ClaimsInVerifiedClaimsSupported []string `json:"claims_in_verified_claims_supported"`
}

func (s *Server) discovery() *discoveryDocument {
	iss := s.opts.Issuer
	abs := func(path string) string { return strings.TrimSuffix(iss, "/") + path }
	md := consent.Discovery()
	return &discoveryDocument{
		Issuer:                                     iss,
		AuthorizationEndpoint:                      abs(authorizePath),
		TokenEndpoint:                              abs(tokenPath),
		UserinfoEndpoint:                           abs(userinfoPath),
		JWKSURI:                                    abs(keysPath),
		RevocationEndpoint:                         abs(revokePath),
		IntrospectionEndpoint:                      abs(introspectPath),
		EndSessionEndpoint:                         abs(endSessionPath),
		RegistrationEndpoint:                       s.registrationEndpoint(),
		ScopesSupported:                            supportedScopes,
		ResponseTypesSupported:                     []string{string(oidc.ResponseTypeCode)},
		ResponseModesSupported:                     []string{string(oidc.ResponseModeQuery)},
		GrantTypesSupported:                        []string{string(oidc.GrantTypeCode), string(oidc.GrantTypeRefreshToken)},
		SubjectTypesSupported:                      []string{"pairwise"},
		IDTokenSigningAlgValuesSupported:           []string{string(jose.ES256), string(jose.RS256)},
		TokenEndpointAuthMethodsSupported:          []string{authPrivateKeyJWT, authSecretBasic, authNone},
		TokenEndpointAuthSigningAlgValuesSupported: []string{string(jose.ES256), string(jose.RS256), string(jose.PS256)},
		CodeChallengeMethodsSupported:              []string{string(oidc.CodeChallengeMethodS256)},
		ClaimsSupported:                            claimsSupported,
		ACRValuesSupported:                         acrValuesSupported,
		UILocalesSupported:                         []string{"ja", "en"},
		ClaimsParameterSupported:                   md.ClaimsParameterSupported,
		VerifiedClaimsSupported:                    md.VerifiedClaimsSupported,
		TrustFrameworksSupported:                   md.TrustFrameworksSupported,
		EvidenceSupported:                          md.EvidenceSupported,
		ClaimsInVerifiedClaimsSupported:            md.ClaimsInVerifiedClaimsSupported,
	}
}

func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.discovery())
}

// bindingHash is what the login stores for a binding cookie value.
func bindingHash(cookieValue string) string { return sha256Hex(cookieValue) }
