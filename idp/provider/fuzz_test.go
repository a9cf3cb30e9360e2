package provider

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/internal/ids"
)

func FuzzParseClaimsParam(f *testing.F) {
	for _, s := range []string{`{}`, `{"userinfo":{"name":null}}`, `{"id_token":{"acr":{"essential":true,"values":["aal3"]}}}`,
		`[]`, `null`, `{"userinfo":[]}`, `{`, strings.Repeat("{", 5000), `{"a":1,"a":2}`, ` `, `{"userinfo":{"<<<":null}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		cr, oerr := parseClaimsParam(v)
		if (cr == nil) == (oerr == nil) {
			t.Fatalf("exactly one of result and error: %v %v", cr, oerr)
		}
		if oerr != nil {
			if oerr.ErrorType != oidc.InvalidRequest || oerr.Description == "" {
				t.Fatalf("refusal %+v", oerr)
			}
			return
		}
		// The request is stored typed (in the auth request and the grant):
		// its stored form must be a JSON object that loads again, within
		// the size limit, to the same request.
		out, err := json.Marshal(cr)
		if err != nil {
			t.Fatalf("accepted %q cannot be stored: %v", v, err)
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(out, &obj) != nil || obj == nil || len(out) > consent.MaxClaimsRequestSize {
			t.Fatalf("accepted %q as %q", v, out)
		}
		again, err := consent.ParseClaimsRequest(out)
		if err != nil {
			t.Fatalf("stored form %q does not parse: %v", out, err)
		}
		var loaded consent.ClaimsRequest
		if err := json.Unmarshal(out, &loaded); err != nil {
			t.Fatalf("stored form %q does not load: %v", out, err)
		}
		b, _ := json.Marshal(again)
		c, _ := json.Marshal(&loaded)
		if string(out) != string(b) || string(out) != string(c) {
			t.Fatalf("stored form changes the request: %s vs %s vs %s", out, b, c)
		}
	})
}

func FuzzSplitToken(f *testing.F) {
	for _, v := range []string{"a.b", ".b", "a.", "a.b.c", "a:b.c", "{a}.b", "", ids.Long() + "." + ids.Short()} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		g, rest, ok := splitToken(v)
		if !ok {
			return
		}
		if g+tokenSep+rest != v || g == "" || rest == "" || strings.ContainsAny(v, ":{}") || strings.Contains(g, tokenSep) || len(v) > 256 {
			t.Fatalf("split %q into %q / %q", v, g, rest)
		}
	})
}

// Token values split at the first separator; anything a store key could
// be confused by is refused.
func TestSplitToken(t *testing.T) {
	grant := ids.Long()
	for _, c := range []struct {
		v, grant, rest string
		ok             bool
	}{
		{grant + "." + "r", grant, "r", true},
		{"a.b.c", "a", "b.c", true},
		{"", "", "", false},
		{"ab", "", "", false},
		{".b", "", "", false},
		{"a.", "", "", false},
		{"a:b.c", "", "", false},
		{"a.b:c", "", "", false},
		{"{a}.b", "", "", false},
		{"a.{b}", "", "", false},
		{"a." + strings.Repeat("b", 255), "", "", false},
		{"a." + strings.Repeat("b", 254), "a", strings.Repeat("b", 254), true},
	} {
		g, rest, ok := splitToken(c.v)
		if g != c.grant || rest != c.rest || ok != c.ok {
			t.Errorf("splitToken(%.20q) = %q, %.20q, %v", c.v, g, rest, ok)
		}
	}
}

// A malformed claims parameter is invalid_request at /authorize, with a
// description that names structure, never the RP's values.
func TestParseClaimsParamRefusals(t *testing.T) {
	for _, v := range []string{
		"", " ", "\t\n",
		`[]`, `null`, `"x"`, `1`, `{`, `{"a":1,"a":2}`,
		`{"userinfo":[]}`, `{"id_token":"x"}`,
		`{"userinfo":{"name":{"essential":"yes"}}}`,
		strings.Repeat("{", 5000),
		`{"userinfo":{"x":"` + strings.Repeat("s", consent.MaxClaimsRequestSize) + `"}}`,
	} {
		cr, err := parseClaimsParam(v)
		if cr != nil || err == nil || err.ErrorType != oidc.InvalidRequest {
			t.Errorf("%.40q: %v, %v", v, cr, err)
			continue
		}
		if strings.Contains(err.Description, "consent:") {
			t.Errorf("%.40q: internal prefix in %q", v, err.Description)
		}
	}
	cr, err := parseClaimsParam(`{"userinfo":{"name":{"essential":true}},"id_token":{"acr":{"values":["aal3"]}},"unknown":1}`)
	if err != nil || cr == nil {
		t.Fatalf("valid request refused: %v", err)
	}
	if vals, _, ok := cr.ACR(); !ok || !slices.Equal(vals, []string{"aal3"}) {
		t.Fatalf("acr request lost: %v %v", vals, ok)
	}
}

// The library passes profile/address/offline_access for any client;
// grantedScopes removes what a client was not configured for.
func TestGrantedScopes(t *testing.T) {
	c := &clients.Client{Scopes: []string{"name", "offline_access", "email"}}
	got := grantedScopes(c, []string{"openid", "name", "profile", "address", "offline_access", "email", "name"})
	if !slices.Equal(got, []string{"openid", "name", "offline_access"}) {
		t.Fatalf("%v", got)
	}
	// openid is always kept, and nothing is granted to a client without
	// scopes.
	if got := grantedScopes(&clients.Client{}, []string{"name", "openid", "openid", "offline_access"}); !slices.Equal(got, []string{"openid"}) {
		t.Fatalf("%v", got)
	}
	if got := grantedScopes(c, nil); len(got) != 0 {
		t.Fatalf("%v", got)
	}
}

// Every advertised scope is openid, offline_access or a claim scope of
// package consent.
func TestSupportedScopes(t *testing.T) {
	s := SupportedScopes()
	if s[0] != oidc.ScopeOpenID || !slices.Contains(s, oidc.ScopeOfflineAccess) {
		t.Fatalf("%v", s)
	}
	for _, sc := range consent.ScopesSupported() {
		if !slices.Contains(s, sc) {
			t.Errorf("%s not advertised", sc)
		}
	}
	for _, sc := range s {
		if sc != oidc.ScopeOpenID && sc != oidc.ScopeOfflineAccess && len(consent.ClaimsForScopes([]string{sc})) == 0 {
			t.Errorf("advertises %s, which stands for no claim", sc)
		}
	}
}
