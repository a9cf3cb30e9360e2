package whitelist

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
)

// Limits on registered metadata. They are generous for any real client
// and keep one registration from bloating every node's cache.
const (
	MaxBodyBytes      = 64 << 10
	maxNameRunes      = 200
	maxRedirectURIs   = 20
	maxURILen         = 2000
	maxContacts       = 10
	maxContactLen     = 254
	maxJWKSKeys       = 10
	maxSoftwareID     = 200
	maxSoftwareVer    = 100
	maxScopeTokens    = 32
	maxClaimNames     = 64
	minRSABits        = 2048
	maxTokenFieldRune = 500
)

// fieldSet is a JSON object as decoded for validation: every value is
// still raw, so that a wrong type is reported per field.
type fieldSet map[string]json.RawMessage

// parseObject decodes a JSON object, refusing anything else (an array, a
// string, trailing data).
func parseObject(data []byte) (fieldSet, *Error) {
	if !utf8.Valid(data) {
		return nil, &Error{Code: CodeInvalidClientMetadata, Description: "the body is not valid UTF-8 JSON"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var f fieldSet
	if err := dec.Decode(&f); err != nil || f == nil {
		return nil, &Error{Code: CodeInvalidClientMetadata, Description: "the body must be one JSON object of client metadata (RFC 7591 §2)"}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &Error{Code: CodeInvalidClientMetadata, Description: "the body has data after its JSON object"}
	}
	return f, nil
}

func (f fieldSet) present(name string) bool {
	v, ok := f[name]
	return ok && !bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

func (f fieldSet) str(name string) (string, *Error) {
	if !f.present(name) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(f[name], &s); err != nil {
		return "", typeErr(name, "a string")
	}
	return s, nil
}

func (f fieldSet) strs(name string) ([]string, *Error) {
	if !f.present(name) {
		return nil, nil
	}
	var s []string
	if err := json.Unmarshal(f[name], &s); err != nil {
		return nil, typeErr(name, "an array of strings")
	}
	return s, nil
}

func typeErr(name, want string) *Error {
	e := metaErr(name, "must be %s", want)
	if name == "redirect_uris" || name == "post_logout_redirect_uris" {
		e.Code = CodeInvalidRedirectURI
	}
	return e
}

// ParseMetadata decodes a registration request body into Metadata without
// judging it: types are checked, values are not. Unknown fields are
// ignored as RFC 7591 §2 requires, and so are the read-only fields of a
// GET response (client_id, registration_access_token, status, ...), so
// that an integrator can PUT back what it read.
func ParseMetadata(data []byte) (Metadata, error) {
	f, e := parseObject(data)
	if e != nil {
		return Metadata{}, e
	}
	m, e := f.metadata()
	if e != nil {
		return Metadata{}, e
	}
	return m, nil
}

func (f fieldSet) metadata() (Metadata, *Error) {
	var m Metadata
	var e *Error
	strFields := []struct {
		name string
		dst  *string
	}{
		{"token_endpoint_auth_method", &m.TokenEndpointAuthMethod},
		{"token_endpoint_auth_signing_alg", &m.TokenEndpointAuthSigningAlg},
		{"application_type", &m.ApplicationType},
		{"client_name", &m.ClientName},
		{"organization_name", &m.OrganizationName},
		{"client_uri", &m.ClientURI},
		{"logo_uri", &m.LogoURI},
		{"policy_uri", &m.PolicyURI},
		{"tos_uri", &m.TOSURI},
		{"jwks_uri", &m.JWKSURI},
		{"sector_identifier_uri", &m.SectorIdentifierURI},
		{"id_token_signed_response_alg", &m.IDTokenSignedResponseAlg},
		{"scope", &m.Scope},
		{"software_id", &m.SoftwareID},
		{"software_version", &m.SoftwareVersion},
		{"backchannel_logout_uri", &m.BackchannelLogoutURI},
	}
	for _, s := range strFields {
		if *s.dst, e = f.str(s.name); e != nil {
			return Metadata{}, e
		}
	}
	listFields := []struct {
		name string
		dst  *[]string
	}{
		{"redirect_uris", &m.RedirectURIs},
		{"post_logout_redirect_uris", &m.PostLogoutRedirectURIs},
		{"grant_types", &m.GrantTypes},
		{"response_types", &m.ResponseTypes},
		{"contacts", &m.Contacts},
		{"claims", &m.Claims},
	}
	for _, l := range listFields {
		if *l.dst, e = f.strs(l.name); e != nil {
			return Metadata{}, e
		}
	}
	if f.present("backchannel_logout_session_required") {
		if err := json.Unmarshal(f["backchannel_logout_session_required"], &m.BackchannelLogoutSessionRequired); err != nil {
			return Metadata{}, typeErr("backchannel_logout_session_required", "a boolean")
		}
	}
	if f.present("jwks") {
		raw := bytes.TrimSpace(f["jwks"])
		if len(raw) == 0 || raw[0] != '{' {
			return Metadata{}, metaErr("jwks", `must be a JSON Web Key Set object {"keys": [...]} (RFC 7517 §5)`)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return Metadata{}, metaErr("jwks", "is not valid JSON")
		}
		m.JWKS = buf.Bytes()
	}
	return m, nil
}

// validateMetadata checks m against the rules and the tier and fills the
// defaults. It does no I/O; the sector is resolved afterwards.
func validateMetadata(m *Metadata, tier Tier, cat *catalogue, dev bool) *Error {
	// application_type first: the redirect rules depend on it.
	switch m.ApplicationType {
	case "":
		m.ApplicationType = AppWeb
	case AppWeb, AppNative:
	default:
		return metaErr("application_type", "%s is not supported; use \"web\" (a server-side app) or \"native\" (a mobile or desktop app)", quote(m.ApplicationType))
	}
	native := m.ApplicationType == AppNative

	if e := checkDisplay("client_name", m.ClientName, true); e != nil {
		return e
	}
	if e := checkDisplay("organization_name", m.OrganizationName, true); e != nil {
		return e
	}

	if len(m.RedirectURIs) == 0 {
		return redirectErr("redirect_uris", "at least one redirect URI is required")
	}
	if e := checkURIList("redirect_uris", m.RedirectURIs, native, dev); e != nil {
		return e
	}
	if e := checkURIList("post_logout_redirect_uris", m.PostLogoutRedirectURIs, native, dev); e != nil {
		return e
	}

	if len(m.ResponseTypes) == 0 {
		m.ResponseTypes = []string{"code"}
	}
	for _, rt := range m.ResponseTypes {
		if rt != "code" {
			return metaErr("response_types", "%s is not supported; Watashi offers only the authorization code flow: use [\"code\"]", quote(rt))
		}
	}
	m.ResponseTypes = dedupe(m.ResponseTypes)
	if len(m.GrantTypes) == 0 {
		m.GrantTypes = []string{"authorization_code"}
	}
	for _, gt := range m.GrantTypes {
		switch gt {
		case "authorization_code":
		case "refresh_token":
			if !slices.Contains(tier.Scopes, "offline_access") {
				return metaErr("grant_types", "refresh_token needs the offline_access scope, which tier %q does not include; remove refresh_token or ask the operator for another tier", tier.Name)
			}
		default:
			return metaErr("grant_types", "%s is not supported; use \"authorization_code\" and optionally \"refresh_token\"", quote(gt))
		}
	}
	m.GrantTypes = dedupe(m.GrantTypes)
	if !slices.Contains(m.GrantTypes, "authorization_code") {
		return metaErr("grant_types", "must include \"authorization_code\", which response type \"code\" uses (RFC 7591 §2.1)")
	}

	if e := checkAuth(m, dev); e != nil {
		return e
	}

	switch m.IDTokenSignedResponseAlg {
	case "":
		m.IDTokenSignedResponseAlg = string(jose.ES256)
	case string(jose.ES256), string(jose.RS256):
	case "none":
		return metaErr("id_token_signed_response_alg", "unsigned ID tokens (\"none\") are never issued; use \"ES256\" (default) or \"RS256\"")
	case "HS256", "HS384", "HS512":
		return metaErr("id_token_signed_response_alg", "symmetric algorithms (%s) are not supported; use \"ES256\" (default) or \"RS256\"", m.IDTokenSignedResponseAlg)
	default:
		return metaErr("id_token_signed_response_alg", "%s is not supported; use \"ES256\" (default) or \"RS256\"", quote(m.IDTokenSignedResponseAlg))
	}

	for _, u := range []struct {
		name string
		val  string
	}{{"client_uri", m.ClientURI}, {"logo_uri", m.LogoURI}, {"policy_uri", m.PolicyURI}, {"tos_uri", m.TOSURI}} {
		if u.val == "" {
			continue
		}
		if e := checkWebURI(u.name, u.val, dev, false); e != nil {
			return e
		}
	}
	if m.SectorIdentifierURI != "" {
		if e := checkWebURI("sector_identifier_uri", m.SectorIdentifierURI, dev, true); e != nil {
			return e
		}
	}

	if m.BackchannelLogoutURI != "" {
		// Back-Channel Logout 1.0 §2.2: an absolute URI without a
		// fragment; the query is kept as registered.
		if e := checkWebURI("backchannel_logout_uri", m.BackchannelLogoutURI, dev, true); e != nil {
			return e
		}
	} else if m.BackchannelLogoutSessionRequired {
		return metaErr("backchannel_logout_session_required", "needs a backchannel_logout_uri")
	}

	if len(m.Contacts) > maxContacts {
		return metaErr("contacts", "at most %d contacts", maxContacts)
	}
	for _, c := range m.Contacts {
		if !plausibleEmail(c) {
			return metaErr("contacts", "%s is not an e-mail address", quote(c))
		}
	}
	m.Contacts = dedupe(m.Contacts)

	if e := checkScope(m, tier, cat); e != nil {
		return e
	}
	if e := checkClaims(m, tier, cat); e != nil {
		return e
	}

	if e := checkShort("software_id", m.SoftwareID, maxSoftwareID); e != nil {
		return e
	}
	if e := checkShort("software_version", m.SoftwareVersion, maxSoftwareVer); e != nil {
		return e
	}
	return nil
}

func checkDisplay(field, v string, required bool) *Error {
	if v == "" {
		if required {
			return metaErr(field, "is required: residents see it when they are asked to sign in")
		}
		return nil
	}
	if utf8.RuneCountInString(v) > maxNameRunes {
		return metaErr(field, "is longer than %d characters", maxNameRunes)
	}
	if strings.TrimSpace(v) != v || hasControl(v) {
		return metaErr(field, "must not start or end with spaces or contain control characters")
	}
	return nil
}

func checkShort(field, v string, max int) *Error {
	if utf8.RuneCountInString(v) > max {
		return metaErr(field, "is longer than %d characters", max)
	}
	if hasControl(v) {
		return metaErr(field, "must not contain control characters")
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return true
		}
	}
	return false
}

func checkURIList(field string, list []string, native, dev bool) *Error {
	if len(list) > maxRedirectURIs {
		return redirectErr(field, "at most %d URIs may be registered (got %d)", maxRedirectURIs, len(list))
	}
	seen := map[string]bool{}
	for _, u := range list {
		if seen[u] {
			return redirectErr(field, "%s is listed twice", quote(u))
		}
		seen[u] = true
		if e := checkRedirectURI(field, u, native, dev); e != nil {
			return e
		}
	}
	return nil
}

// forbiddenSchemes run code or read local data in a browser or the OS.
var forbiddenSchemes = []string{"javascript", "data", "file", "vbscript", "blob", "about", "filesystem", "ws", "wss", "ftp"}

// checkRedirectURI applies RFC 6749 §3.1.2, the Security BCP and, for
// native apps, RFC 8252 §7.
func checkRedirectURI(field, raw string, native, dev bool) *Error {
	if raw == "" {
		return redirectErr(field, "an empty string is not a URI")
	}
	if len(raw) > maxURILen {
		return redirectErr(field, "a URI is longer than %d characters", maxURILen)
	}
	if strings.ContainsRune(raw, '*') {
		return redirectErr(field, "%s contains a wildcard; register every redirect URI exactly, patterns are not supported", quote(raw))
	}
	if hasControlOrSpace(raw) {
		return redirectErr(field, "%s contains spaces or control characters", quote(raw))
	}
	if strings.ContainsRune(raw, '#') {
		return redirectErr(field, "%s has a fragment (#...); a redirect URI must not contain one (RFC 6749 §3.1.2)", quote(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return redirectErr(field, "%s does not parse as a URI", quote(raw))
	}
	if !u.IsAbs() {
		return redirectErr(field, "%s is relative; register an absolute URI such as https://rp.example/callback", quote(raw))
	}
	if u.User != nil {
		return redirectErr(field, "%s contains user information (user@host); remove it", quote(raw))
	}
	scheme := strings.ToLower(u.Scheme)
	if slices.Contains(forbiddenSchemes, scheme) {
		return redirectErr(field, "%s uses the scheme %q, which is never allowed", quote(raw), scheme)
	}
	switch scheme {
	case "https":
		if u.Hostname() == "" || u.Opaque != "" {
			return redirectErr(field, "%s has no host", quote(raw))
		}
		return nil
	case "http":
		h := u.Hostname()
		if h == "" || u.Opaque != "" {
			return redirectErr(field, "%s has no host", quote(raw))
		}
		if native && isLoopbackIP(h) {
			return nil // RFC 8252 §7.3, any port
		}
		if dev {
			return nil
		}
		if native && h == "localhost" {
			return redirectErr(field, "%s: use the loopback IP literal http://127.0.0.1:PORT/... or http://[::1]:PORT/... rather than localhost (RFC 8252 §8.3)", quote(raw))
		}
		if native {
			return redirectErr(field, "%s uses http; a native app may use http only for loopback redirects to 127.0.0.1 or [::1] (RFC 8252 §7.3); otherwise use https", quote(raw))
		}
		return redirectErr(field, "%s uses http; redirect URIs must use https (http is allowed only in development)", quote(raw))
	default:
		if !native {
			return redirectErr(field, "%s uses the private-use scheme %q, which only native apps may use: register application_type \"native\", or use an https URI", quote(raw), scheme)
		}
		if !strings.Contains(scheme, ".") {
			return redirectErr(field, "the private-use scheme %q must be a reverse domain name that you control, such as com.example.app (RFC 8252 §7.1)", scheme)
		}
		if u.Opaque != "" || u.Path == "" && u.Host == "" {
			return redirectErr(field, "%s needs a path, as in %s:/callback (RFC 8252 §7.1)", quote(raw), scheme)
		}
		return nil
	}
}

func hasControlOrSpace(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == utf8.RuneError {
			return true
		}
	}
	return false
}

// checkWebURI is for URIs a browser or Watashi will load: logos, policy
// pages, key sets, sector documents. Only https (and http in
// development) can be loaded safely and shown to residents.
func checkWebURI(field, raw string, dev, noFragment bool) *Error {
	if len(raw) > maxURILen {
		return metaErr(field, "is longer than %d characters", maxURILen)
	}
	if hasControlOrSpace(raw) {
		return metaErr(field, "%s contains spaces or control characters", quote(raw))
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return metaErr(field, "%s is not an absolute URL; use https://...", quote(raw))
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && !(scheme == "http" && dev) {
		if scheme == "http" {
			return metaErr(field, "%s uses http; use https (http is allowed only in development)", quote(raw))
		}
		return metaErr(field, "%s uses the scheme %q; only https URLs are accepted", quote(raw), scheme)
	}
	if u.Hostname() == "" || u.Opaque != "" {
		return metaErr(field, "%s has no host", quote(raw))
	}
	if u.User != nil {
		return metaErr(field, "%s contains user information (user@host); remove it", quote(raw))
	}
	if noFragment && u.Fragment != "" {
		return metaErr(field, "%s must not have a fragment", quote(raw))
	}
	return nil
}

func plausibleEmail(s string) bool {
	if len(s) > maxContactLen || hasControlOrSpace(s) || strings.ContainsAny(s, "<>\"(),;:[]\\") {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1 && strings.IndexByte(s, '@') == at && strings.Contains(s[at+1:], ".")
}

// checkAuth validates the token endpoint authentication method and its
// keys.
func checkAuth(m *Metadata, dev bool) *Error {
	if m.TokenEndpointAuthMethod == "" {
		m.TokenEndpointAuthMethod = AuthClientSecretBasic // RFC 7591 §2
	}
	hasKeys := len(m.JWKS) > 0 || m.JWKSURI != ""
	switch m.TokenEndpointAuthMethod {
	case AuthPrivateKeyJWT:
		if len(m.JWKS) > 0 && m.JWKSURI != "" {
			return metaErr("jwks", "jwks and jwks_uri must not both be present (RFC 7591 §2); send one")
		}
		if !hasKeys {
			return metaErr("jwks", "private_key_jwt needs your public keys: send jwks (a key set) or jwks_uri (an https URL serving one)")
		}
		if len(m.JWKS) > 0 {
			if e := checkJWKS(m.JWKS); e != nil {
				return e
			}
		} else if e := checkWebURI("jwks_uri", m.JWKSURI, dev, true); e != nil {
			return e
		}
		switch m.TokenEndpointAuthSigningAlg {
		case "", string(jose.ES256), string(jose.RS256), string(jose.PS256):
		default:
			return metaErr("token_endpoint_auth_signing_alg", "%s is not supported; use ES256, RS256 or PS256", quote(m.TokenEndpointAuthSigningAlg))
		}
	case AuthClientSecretBasic:
		if hasKeys {
			return metaErr("jwks", "jwks and jwks_uri are used only with token_endpoint_auth_method private_key_jwt")
		}
		if m.TokenEndpointAuthSigningAlg != "" {
			return metaErr("token_endpoint_auth_signing_alg", "is used only with private_key_jwt")
		}
	case AuthNone:
		if m.ApplicationType != AppNative {
			return metaErr("token_endpoint_auth_method", "\"none\" is only for native apps (application_type \"native\") that cannot keep a secret and use PKCE; a web application must authenticate, preferably with private_key_jwt")
		}
		if hasKeys {
			return metaErr("jwks", "jwks and jwks_uri are used only with token_endpoint_auth_method private_key_jwt")
		}
		if m.TokenEndpointAuthSigningAlg != "" {
			return metaErr("token_endpoint_auth_signing_alg", "is used only with private_key_jwt")
		}
	case "client_secret_post", "client_secret_jwt":
		return metaErr("token_endpoint_auth_method", "%q is not supported; use private_key_jwt (preferred) or client_secret_basic", m.TokenEndpointAuthMethod)
	default:
		return metaErr("token_endpoint_auth_method", "%s is not supported; use private_key_jwt (preferred), client_secret_basic, or none for native apps", quote(m.TokenEndpointAuthMethod))
	}
	return nil
}

// privateMembers are the JWK members that only private or symmetric keys
// have (RFC 7518 §6.2.2, §6.3.2, §6.4).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

func checkJWKS(raw json.RawMessage) *Error {
	var probe struct {
		Keys []map[string]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return metaErr("jwks", `must be a JSON Web Key Set object {"keys": [...]} (RFC 7517 §5)`)
	}
	if len(probe.Keys) == 0 {
		return metaErr("jwks", "has no keys")
	}
	if len(probe.Keys) > maxJWKSKeys {
		return metaErr("jwks", "has more than %d keys", maxJWKSKeys)
	}
	for i, k := range probe.Keys {
		var kty string
		_ = json.Unmarshal(k["kty"], &kty)
		if kty == "oct" {
			return metaErr("jwks", "key %d is a symmetric key (kty \"oct\"); register a public EC or RSA key", i)
		}
		for _, p := range privateMembers {
			if _, ok := k[p]; ok {
				return metaErr("jwks", "key %d contains private key material (%q); publish only the public key and keep the private key secret", i, p)
			}
		}
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return metaErr("jwks", "a key does not parse as a JWK (RFC 7517): check kty, crv, x, y, n and e")
	}
	kids := map[string]bool{}
	for i, k := range set.Keys {
		if !k.Valid() || !k.IsPublic() {
			return metaErr("jwks", "key %d is not a valid public key", i)
		}
		if k.Use != "" && k.Use != "sig" {
			return metaErr("jwks", "key %d has use %q; keys for private_key_jwt must have use \"sig\" or none", i, k.Use)
		}
		switch pk := k.Key.(type) {
		case *ecdsa.PublicKey:
		case *rsa.PublicKey:
			if pk.N.BitLen() < minRSABits {
				return metaErr("jwks", "key %d is an RSA key of %d bits; at least %d are required", i, pk.N.BitLen(), minRSABits)
			}
		case ed25519.PublicKey:
		default:
			return metaErr("jwks", "key %d has an unsupported key type; use EC (P-256) or RSA", i)
		}
		if len(set.Keys) > 1 {
			if k.KeyID == "" {
				return metaErr("jwks", "key %d has no kid; with several keys each needs a distinct kid", i)
			}
			if kids[k.KeyID] {
				return metaErr("jwks", "kid %s is used twice", quote(k.KeyID))
			}
			kids[k.KeyID] = true
		}
	}
	return nil
}

func checkScope(m *Metadata, tier Tier, cat *catalogue) *Error {
	toks := scopeList(m.Scope)
	if m.Scope != "" && len(toks) == 0 {
		return metaErr("scope", "is blank; omit it to ask for all of tier %q's scopes", tier.Name)
	}
	if len(toks) > maxScopeTokens {
		return metaErr("scope", "lists more than %d scopes", maxScopeTokens)
	}
	for _, s := range toks {
		if !slices.Contains(tier.Scopes, s) {
			if !slices.Contains(cat.scopes, s) {
				return metaErr("scope", "%s is not a scope Watashi offers (offered: %s)", quote(s), strings.Join(cat.scopes, " "))
			}
			return metaErr("scope", "%s is outside tier %q, which allows: %s; ask the operator for a higher tier", quote(s), tier.Name, strings.Join(tier.Scopes, " "))
		}
	}
	if len(toks) > 0 && !slices.Contains(toks, "openid") {
		return metaErr("scope", "must include openid")
	}
	m.Scope = strings.Join(dedupe(toks), " ")
	return nil
}

func checkClaims(m *Metadata, tier Tier, cat *catalogue) *Error {
	if len(m.Claims) > maxClaimNames {
		return metaErr("claims", "lists more than %d claims", maxClaimNames)
	}
	for _, c := range m.Claims {
		if !slices.Contains(tier.Claims, c) {
			if !slices.Contains(cat.claims, c) {
				return metaErr("claims", "%s is not a claim Watashi releases (released: %s)", quote(c), strings.Join(cat.claims, " "))
			}
			return metaErr("claims", "%s is outside tier %q, which allows: %s; ask the operator for a higher tier", quote(c), tier.Name, strings.Join(tier.Claims, " "))
		}
	}
	m.Claims = dedupe(m.Claims)
	return nil
}

func dedupe(in []string) []string {
	var out []string
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// resolveAccess computes what a client may do from its registered
// metadata and its tier in the current catalogue.
func resolveAccess(c *Client, tier Tier) {
	scopes := scopeList(c.Scope)
	if len(scopes) == 0 {
		scopes = tier.Scopes
	}
	c.AllowedScopes = intersect(scopes, tier.Scopes)
	if !slices.Contains(c.AllowedScopes, "openid") {
		c.AllowedScopes = append([]string{"openid"}, c.AllowedScopes...)
	}
	claims := c.Claims
	if len(claims) == 0 {
		claims = tier.Claims
	}
	c.AllowedClaims = intersect(claims, tier.Claims)
	c.MinACR = tier.MinACR
}

func intersect(a, b []string) []string {
	out := []string{}
	for _, s := range a {
		if slices.Contains(b, s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
