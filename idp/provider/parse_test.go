package provider

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/authreq"
)

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

const goodVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

// Every refusal of the token endpoint's parser, with the error it is.
func TestParseTokenRequest(t *testing.T) {
	code := "grant_type=authorization_code&code=c&redirect_uri=https%3A%2F%2Frp.example%2Fcb&code_verifier=" + goodVerifier
	tests := []struct {
		name, body, authz string
		err               string // "" when accepted
	}{
		{"code, basic", code, basic("web", "s"), ""},
		{"code, public client", code + "&client_id=public", "", ""},
		{"code, assertion", code + "&client_assertion=a.b.c&client_assertion_type=" + url.QueryEscape(oidc.ClientAssertionTypeJWTAssertion), "", ""},
		{"refresh", "grant_type=refresh_token&refresh_token=r&scope=openid+name", basic("web", "s"), ""},
		{"basic and the same client_id", code + "&client_id=web", basic("web", "s"), ""},

		{"no grant_type", "code=c", basic("web", "s"), string(oidc.InvalidRequest)},
		{"unknown grant", "grant_type=password&username=u", basic("web", "s"), string(oidc.UnsupportedGrantType)},
		{"client_credentials", "grant_type=client_credentials", basic("web", "s"), string(oidc.UnsupportedGrantType)},
		{"no code", "grant_type=authorization_code&redirect_uri=x&code_verifier=" + goodVerifier, basic("web", "s"), string(oidc.InvalidRequest)},
		{"no redirect_uri", "grant_type=authorization_code&code=c&code_verifier=" + goodVerifier, basic("web", "s"), string(oidc.InvalidRequest)},
		{"no verifier", "grant_type=authorization_code&code=c&redirect_uri=x", basic("web", "s"), string(oidc.InvalidRequest)},
		{"short verifier", "grant_type=authorization_code&code=c&redirect_uri=x&code_verifier=abc", basic("web", "s"), string(oidc.InvalidRequest)},
		{"verifier with a bad character", "grant_type=authorization_code&code=c&redirect_uri=x&code_verifier=" + strings.Repeat("a", 42) + "%2B", basic("web", "s"), string(oidc.InvalidRequest)},
		{"long verifier", "grant_type=authorization_code&code=c&redirect_uri=x&code_verifier=" + strings.Repeat("a", 129), basic("web", "s"), string(oidc.InvalidRequest)},
		{"no refresh_token", "grant_type=refresh_token", basic("web", "s"), string(oidc.InvalidRequest)},
		{"repeated code", code + "&code=d", basic("web", "s"), string(oidc.InvalidRequest)},
		{"repeated grant_type", code + "&grant_type=refresh_token", basic("web", "s"), string(oidc.InvalidRequest)},
		{"overlong code", "grant_type=authorization_code&code=" + strings.Repeat("c", maxParam+1) + "&redirect_uri=x&code_verifier=" + goodVerifier, basic("web", "s"), string(oidc.InvalidRequest)},

		{"no client", code, "", string(oidc.InvalidClient)},
		{"secret in the body", code + "&client_id=web&client_secret=s", "", string(oidc.InvalidClient)},
		{"secret in the body and basic", code + "&client_secret=s", basic("web", "s"), string(oidc.InvalidClient)},
		{"bearer header", code, "Bearer x", string(oidc.InvalidClient)},
		{"basic without a colon", code, "Basic " + base64.StdEncoding.EncodeToString([]byte("web")), string(oidc.InvalidClient)},
		{"basic not base64", code, "Basic !!!", string(oidc.InvalidClient)},
		{"basic with an empty user", code, basic("", "s"), string(oidc.InvalidClient)},
		{"basic with a bad escape", code, "Basic " + base64.StdEncoding.EncodeToString([]byte("we%zz:s")), string(oidc.InvalidClient)},
		{"basic scheme alone", code, "Basic", string(oidc.InvalidClient)},
		{"basic and another client_id", code + "&client_id=other", basic("web", "s"), string(oidc.InvalidRequest)},
		{"basic and an assertion", code + "&client_assertion=a.b.c&client_assertion_type=" + url.QueryEscape(oidc.ClientAssertionTypeJWTAssertion), basic("web", "s"), string(oidc.InvalidRequest)},
		{"assertion without its type", code + "&client_assertion=a.b.c", "", string(oidc.InvalidRequest)},
		{"assertion of another type", code + "&client_assertion=a.b.c&client_assertion_type=saml", "", string(oidc.InvalidRequest)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			form, err := url.ParseQuery(tc.body)
			if err != nil {
				t.Fatal(err)
			}
			tr, oerr := parseTokenRequest(form, tc.authz)
			if tc.err == "" {
				if oerr != nil {
					t.Fatalf("refused: %v", oerr)
				}
				return
			}
			if oerr == nil || string(oerr.ErrorType) != tc.err || oerr.Description == "" || tr != nil {
				t.Fatalf("got %+v %v, want %s", tr, oerr, tc.err)
			}
		})
	}
	// What an accepted request reads.
	form, _ := url.ParseQuery(code + "&client_id=web")
	tr, oerr := parseTokenRequest(form, basic("web", "a:b%c"))
	if oerr != nil || tr.code != "c" || tr.redirectURI != "https://rp.example/cb" || tr.verifier != goodVerifier ||
		tr.cred != (credentials{clientID: "web", secret: "a:b%c", basic: true}) {
		t.Fatalf("%+v %v", tr, oerr)
	}
	form, _ = url.ParseQuery("grant_type=refresh_token&refresh_token=r&scope=openid++name")
	tr, oerr = parseTokenRequest(form, basic("web", "s"))
	if oerr != nil || tr.refreshToken != "r" || !slices.Equal(tr.scopes, []string{"openid", "name"}) {
		t.Fatalf("%+v %v", tr, oerr)
	}
}

// The token endpoint's form and credentials: whatever arrives, the parser
// answers exactly one of a request and an OAuth error of the kinds the
// endpoint uses, an accepted request is complete for its grant and names
// its client one way, and no error description echoes the client's
// values.
func FuzzTokenRequest(f *testing.F) {
	code := "grant_type=authorization_code&code=c&redirect_uri=https%3A%2F%2Frp.example%2Fcb&code_verifier=" + goodVerifier
	for _, seed := range [][2]string{
		{code, basic("web", "s")},
		{code + "&client_id=public", ""},
		{code + "&client_assertion=a.b.c&client_assertion_type=" + url.QueryEscape(oidc.ClientAssertionTypeJWTAssertion), ""},
		{"grant_type=refresh_token&refresh_token=r&scope=openid", basic("web", "s")},
		{code + "&code=x", basic("w%3Aeb", "s%25")},
		{code + "&client_secret=s", ""},
		{"grant_type=password", "Bearer x"},
		{"", "Basic !!!"},
		{code, "basic " + base64.StdEncoding.EncodeToString([]byte(":"))},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, body, authz string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return // the endpoint refuses an unparsable body before this
		}
		tr, oerr := parseTokenRequest(form, authz)
		if (tr == nil) == (oerr == nil) {
			t.Fatalf("exactly one of request and error: %+v %v", tr, oerr)
		}
		if oerr != nil {
			switch oerr.ErrorType {
			case oidc.InvalidRequest, oidc.InvalidClient, oidc.UnsupportedGrantType:
			default:
				t.Fatalf("error type %s", oerr.ErrorType)
			}
			if oerr.Description == "" || oerr.Parent != nil {
				t.Fatalf("refusal %+v", oerr)
			}
			// Only the parser's own texts: a parameter it names is one
			// a client may send here.
			for _, prefix := range []string{"a parameter is repeated: ", "a parameter is too long: "} {
				if name, ok := strings.CutPrefix(oerr.Description, prefix); ok && name != "(unknown parameter)" && safeName(name) != name {
					t.Fatalf("description %q names a parameter of the client's", oerr.Description)
				}
			}
			return
		}
		for k, v := range form {
			if len(v) != 1 {
				t.Fatalf("accepted a repeated %q", k)
			}
		}
		switch tr.grant {
		case oidc.GrantTypeCode:
			if tr.code == "" || tr.redirectURI == "" || !validVerifier(tr.verifier) {
				t.Fatalf("incomplete code request %+v", tr)
			}
		case oidc.GrantTypeRefreshToken:
			if tr.refreshToken == "" {
				t.Fatalf("incomplete refresh request %+v", tr)
			}
		default:
			t.Fatalf("accepted grant %q", tr.grant)
		}
		c := tr.cred
		switch {
		case form.Get("client_secret") != "":
			t.Fatal("accepted a secret in the body")
		case c.basic && (c.assertion != "" || c.clientID == "" || authz == ""):
			t.Fatalf("basic credentials %+v", c)
		case !c.basic && (c.secret != "" || c.clientID != form.Get("client_id")):
			t.Fatalf("form credentials %+v", c)
		case c.clientID == "" && c.assertion == "":
			t.Fatal("no client named")
		case c.assertion != "" && form.Get("client_assertion_type") != oidc.ClientAssertionTypeJWTAssertion:
			t.Fatal("assertion of another type")
		}
		if c.basic {
			// The header round-trips: what it carried is what was read.
			id, secret, oerr := parseBasic(basic(c.clientID, c.secret))
			if oerr != nil || id != c.clientID || secret != c.secret {
				t.Fatalf("basic %q %q does not round-trip: %q %q %v", c.clientID, c.secret, id, secret, oerr)
			}
		}
	})
}

// /authorize's parameters of a known client at its registered redirect
// URI: whatever the rest is, the handler answers below 500, either with
// the login page of a stored request that is sound (code flow, openid,
// S256, scopes the client may have, a claims request that stores and
// reloads) or with an error at the redirect URI that carries state and
// iss and no internal text.
func FuzzAuthorizeParams(f *testing.F) {
	s := newTestServer(f)
	for _, q := range []string{
		"response_type=code&scope=openid+name&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=s&nonce=n",
		"response_type=code&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&claims=%7B%22userinfo%22%3A%7B%22name%22%3Anull%7D%7D",
		"response_type=code&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&prompt=none+login&max_age=-1",
		"response_type=code&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&ui_locales=en+%ZZ&max_age=99999999999999999999",
		"response_type=token&scope=openid", "scope=name", "request=x", "request_uri=x", "response_mode=form_post",
		"response_type=code&scope=openid&code_challenge=short&code_challenge_method=S256",
		"response_type=code&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&id_token_hint=a.b.c",
		"response_type=code&scope=openid+openid+offline_access+email&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&acr_values=aal3",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		form, err := url.ParseQuery(q)
		if err != nil {
			return // a page of ours, before any parameter is read
		}
		form.Set("client_id", "web")
		form.Set("redirect_uri", testRedirect)
		rec := httptest.NewRecorder()
		s.handleAuthorize(rec, httptest.NewRequest(http.MethodGet, testIssuer+"/authorize?"+form.Encode(), nil))
		if rec.Code >= 500 {
			t.Fatalf("%q: status %d", q, rec.Code)
		}
		loc := rec.Header().Get("Location")
		if id, ok := strings.CutPrefix(loc, "/login?id="); ok {
			ar, err := s.requests.Load(t.Context(), id)
			if err != nil {
				t.Fatalf("%q: accepted request not stored: %v", q, err)
			}
			checkStoredRequest(t, q, ar)
			return
		}
		u, err := url.Parse(loc)
		if rec.Code != http.StatusFound || err != nil || u.Scheme+"://"+u.Host+u.Path != testRedirect {
			t.Fatalf("%q: %d to %q", q, rec.Code, loc)
		}
		rq := u.Query()
		if rq.Get("error") == "" || rq.Has("code") || rq.Get("iss") != testIssuer || rq.Get("state") != form.Get("state") {
			t.Fatalf("%q: error response %q", q, loc)
		}
		for _, leak := range []string{"provider:", "consent:", "schema", "strconv", "parsing"} {
			if strings.Contains(rq.Get("error_description"), leak) {
				t.Fatalf("%q: description %q", q, rq.Get("error_description"))
			}
		}
	})
}

func checkStoredRequest(t *testing.T, q string, ar *authreq.AuthRequest) {
	t.Helper()
	if ar.ClientID != "web" || ar.RedirectURI != testRedirect || !validChallenge(ar.Challenge) {
		t.Fatalf("%q: stored %+v", q, ar)
	}
	if !slices.Contains(ar.Scopes, oidc.ScopeOpenID) {
		t.Fatalf("%q: scopes %v", q, ar.Scopes)
	}
	allowed := []string{oidc.ScopeOpenID, "name", "birthdate", "gender", "address", "profile", "offline_access"}
	for i, sc := range ar.Scopes {
		if !slices.Contains(allowed, sc) || slices.Contains(ar.Scopes[:i], sc) {
			t.Fatalf("%q: scopes %v", q, ar.Scopes)
		}
	}
	if ar.ResponseMode != "" && ar.ResponseMode != string(oidc.ResponseModeQuery) {
		t.Fatalf("%q: response_mode %q", q, ar.ResponseMode)
	}
	if ar.Claims != nil {
		b, err := json.Marshal(ar.Claims)
		if err != nil {
			t.Fatalf("%q: claims do not store: %v", q, err)
		}
		if _, err := consent.ParseClaimsRequest(b); err != nil {
			t.Fatalf("%q: stored claims %s do not parse: %v", q, b, err)
		}
	}
}
