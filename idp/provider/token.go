package provider

import (
	"encoding/base64"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/idp/web"
)

// handleToken is the token endpoint (RFC 6749 §3.2), Watashi's own so
// that the order of its checks is ours: the request is parsed, then the
// client authenticated (401 invalid_client with a Basic challenge), and
// only then is the grant looked at. Every check of the grant happens
// before it is consumed, so a request that fails changes nothing.
// backChannel has refused the shapes the endpoint does not take.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	// The library mints the ID token with the issuer it finds here.
	ctx := op.ContextWithIssuer(r.Context(), s.web.Issuer())
	tr, oerr := parseTokenRequest(r.PostForm, r.Header.Get("Authorization"))
	if oerr != nil {
		s.errs.write(w, r, oerr, s.errs.basicChallenge())
		return
	}
	e, err := s.authenticate(ctx, tr.cred)
	if err != nil {
		s.errs.write(w, r, err, s.errs.basicChallenge())
		return
	}
	client := s.opClient(e)
	var resp *oidc.AccessTokenResponse
	switch tr.grant {
	case oidc.GrantTypeCode:
		resp, err = s.exchangeCode(ctx, client, tr)
	default:
		resp, err = s.refresh(ctx, client, tr)
	}
	if err != nil {
		s.errs.write(w, r, err, s.errs.basicChallenge())
		return
	}
	web.WriteJSON(w, http.StatusOK, resp)
}

// tokenRequest is a token endpoint request as it reads before anything
// is looked up.
type tokenRequest struct {
	grant oidc.GrantType
	// authorization_code
	code, redirectURI, verifier string
	// refresh_token, with the scopes the RP narrows this call to
	refreshToken string
	scopes       []string
	cred         credentials
}

// credentials are how a client says who it is: client_secret_basic
// (secret set, basic true), private_key_jwt (assertion set) or, for a
// public client, its client_id alone.
type credentials struct {
	clientID  string
	secret    string
	assertion string
	// basic is set when the client used the Authorization header.
	basic bool
}

// Bounds on what the token, introspection and revocation endpoints read.
// Every value Watashi issues is far shorter; the bounds keep hostile
// input from costing more than a hash.
const (
	maxParam     = 2048 // codes, tokens, URIs, verifiers, client IDs
	maxAssertion = 8192 // a signed JWT with a certificate chain fits
)

// parseTokenRequest reads the token endpoint's form and credentials
// (RFC 6749 §4.1.3, §6; PKCE RFC 7636 §4.5). It looks nothing up.
func parseTokenRequest(form url.Values, authorization string) (*tokenRequest, *oidc.Error) {
	if oerr := checkForm(form); oerr != nil {
		return nil, oerr
	}
	cred, oerr := parseCredentials(form, authorization)
	if oerr != nil {
		return nil, oerr
	}
	tr := &tokenRequest{grant: oidc.GrantType(form.Get("grant_type")), cred: cred}
	switch tr.grant {
	case oidc.GrantTypeCode:
		tr.code, tr.redirectURI, tr.verifier = form.Get("code"), form.Get("redirect_uri"), form.Get("code_verifier")
		switch {
		case tr.code == "":
			return nil, oidc.ErrInvalidRequest().WithDescription("code is missing")
		case tr.redirectURI == "":
			return nil, oidc.ErrInvalidRequest().WithDescription("redirect_uri is missing")
		case tr.verifier == "":
			return nil, oidc.ErrInvalidRequest().WithDescription("code_verifier is missing (PKCE is required)")
		case !validVerifier(tr.verifier):
			return nil, oidc.ErrInvalidRequest().WithDescription("code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636 §4.1)")
		}
	case oidc.GrantTypeRefreshToken:
		tr.refreshToken = form.Get("refresh_token")
		if tr.refreshToken == "" {
			return nil, oidc.ErrInvalidRequest().WithDescription("refresh_token is missing")
		}
		tr.scopes = strings.Fields(form.Get("scope"))
	case "":
		return nil, oidc.ErrInvalidRequest().WithDescription("grant_type is missing")
	default:
		return nil, oidc.ErrUnsupportedGrantType().WithDescription("only authorization_code and refresh_token are supported")
	}
	return tr, nil
}

// checkForm refuses repeated parameters (RFC 6749 §3.1, §3.2: none may
// appear more than once) and values longer than any we issue. The names
// in descriptions are ours, never the client's values.
func checkForm(form url.Values) *oidc.Error {
	for _, k := range slices.Sorted(maps.Keys(form)) {
		v := form[k]
		if len(v) > 1 {
			return oidc.ErrInvalidRequest().WithDescription("a parameter is repeated: %s", safeName(k))
		}
		limit := maxParam
		if k == "client_assertion" {
			limit = maxAssertion
		}
		if len(v) == 1 && len(v[0]) > limit {
			return oidc.ErrInvalidRequest().WithDescription("a parameter is too long: %s", safeName(k))
		}
	}
	return nil
}

// safeName echoes a parameter name only if it is one a client may send
// here; anything else is named generically.
func safeName(k string) string {
	switch k {
	case "grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope", "client_id",
		"client_secret", "client_assertion", "client_assertion_type", "token", "token_type_hint":
		return k
	}
	return "(unknown parameter)"
}

// parseCredentials reads the client's authentication: one method, never
// two (RFC 6749 §2.3). The secret goes in HTTP Basic only, whose user and
// password are form-encoded (§2.3.1); a client_id in the body must then
// name the same client.
func parseCredentials(form url.Values, authorization string) (credentials, *oidc.Error) {
	if form.Get("client_secret") != "" {
		return credentials{}, oidc.ErrInvalidClient().WithDescription("send the client secret with HTTP Basic authentication (client_secret_basic)")
	}
	cc := credentials{clientID: form.Get("client_id"), assertion: form.Get("client_assertion")}
	if cc.assertion != "" && form.Get("client_assertion_type") != oidc.ClientAssertionTypeJWTAssertion {
		return credentials{}, oidc.ErrInvalidRequest().WithDescription("client_assertion_type must be %s", oidc.ClientAssertionTypeJWTAssertion)
	}
	if authorization != "" {
		id, secret, oerr := parseBasic(authorization)
		if oerr != nil {
			return credentials{}, oerr
		}
		if cc.assertion != "" {
			return credentials{}, oidc.ErrInvalidRequest().WithDescription("client authentication must use one method only")
		}
		if cc.clientID != "" && cc.clientID != id {
			return credentials{}, oidc.ErrInvalidRequest().WithDescription("client_id does not match the HTTP Basic user")
		}
		cc.clientID, cc.secret, cc.basic = id, secret, true
	}
	if cc.clientID == "" && cc.assertion == "" {
		return credentials{}, oidc.ErrInvalidClient().WithDescription("client authentication is required")
	}
	return cc, nil
}

// parseBasic reads "Basic base64(urlencode(id):urlencode(secret))".
func parseBasic(h string) (id, secret string, oerr *oidc.Error) {
	bad := oidc.ErrInvalidClient().WithDescription("malformed HTTP Basic credentials")
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", "", oidc.ErrInvalidClient().WithDescription("only HTTP Basic client authentication is accepted in the Authorization header")
	}
	if len(rest) > 2*maxParam {
		return "", "", bad
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", bad
	}
	u, p, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", bad
	}
	if id, err = url.QueryUnescape(u); err != nil || id == "" {
		return "", "", bad
	}
	if secret, err = url.QueryUnescape(p); err != nil {
		return "", "", bad
	}
	return id, secret, nil
}

// validVerifier is RFC 7636 §4.1: 43 to 128 unreserved characters.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}
