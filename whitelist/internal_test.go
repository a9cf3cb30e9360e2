package whitelist

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// A hash written by the provider's idp.HashClientSecret (same format,
// separate code) must verify here, and ours must parse with the same
// rules, so that either side can write what the other checks.
func TestSecretFormatMatchesProvider(t *testing.T) {
	const fromProvider = "$argon2id$v=19$m=19456,t=2,p=1$lCxDZlr8t4xuWhCIesDhkw$/LMfUDft3odfw/UrIhRqIm7zYxcUrMzKVRqmB3BNiuo"
	c := &Client{Metadata: Metadata{TokenEndpointAuthMethod: AuthClientSecretBasic}, SecretHash: fromProvider}
	if !c.VerifySecret("correct horse battery staple") || c.VerifySecret("correct horse battery stapler") {
		t.Fatal("provider-made hash does not verify")
	}
	h, err := HashSecret("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`).MatchString(h) {
		t.Fatalf("hash %q is not in the provider's format", h)
	}
	c.SecretHash = h
	if !c.VerifySecret("s3cret") {
		t.Fatal("own hash does not verify")
	}
	c.TokenEndpointAuthMethod = AuthPrivateKeyJWT
	if c.VerifySecret("s3cret") {
		t.Fatal("a private_key_jwt client verified a secret")
	}
	for _, bad := range []string{
		"", "plain", "$argon2i$v=19$m=19456,t=2,p=1$lCxDZlr8t4xuWhCIesDhkw$/LMfUDft3odfw/UrIhRqIm7zYxcUrMzKVRqmB3BNiuo",
		"$argon2id$v=19$m=4194304,t=2,p=1$lCxDZlr8t4xuWhCIesDhkw$/LMfUDft3odfw/UrIhRqIm7zYxcUrMzKVRqmB3BNiuo",
		"$argon2id$v=19$m=19456,t=99,p=1$lCxDZlr8t4xuWhCIesDhkw$/LMfUDft3odfw/UrIhRqIm7zYxcUrMzKVRqmB3BNiuo",
		"$argon2id$v=19$m=19456,t=2,p=1$!!$/LMfUDft3odfw/UrIhRqIm7zYxcUrMzKVRqmB3BNiuo",
		"$argon2id$v=19$m=19456,t=2,p=1,x=1$lCxDZlr8t4xuWhCIesDhkw$/LMfUDft3odfw/UrIhRqIm7zYxcUrMzKVRqmB3BNiuo",
	} {
		if _, err := ParseSecretHash(bad); err == nil {
			t.Errorf("ParseSecretHash(%q) accepted", bad)
		}
	}
}

func TestTokenMatches(t *testing.T) {
	h := tokenHash("tok")
	cases := []struct {
		tok, hash string
		want      bool
	}{
		{"tok", h, true}, {"tok2", h, false}, {"", tokenHash(""), false}, {"tok", "", false},
		{"tok", strings.ToUpper(h), true}, {"tok", h[:62], false}, {"tok", "zz" + h[2:], false},
	}
	for _, c := range cases {
		if got := tokenMatches(c.tok, c.hash); got != c.want {
			t.Errorf("tokenMatches(%q, %q) = %v", c.tok, c.hash, got)
		}
	}
}

func TestCatalogueValidation(t *testing.T) {
	ok := Tier{Name: "x", Scopes: []string{"openid"}, Claims: []string{"name"}, MinACR: "aal2"}
	cases := map[string][]Tier{
		"bad name":      {{Name: "X Y", Scopes: []string{"openid"}, MinACR: "aal3"}},
		"duplicate":     {ok, ok},
		"no openid":     {{Name: "y", Scopes: []string{"name"}, MinACR: "aal3"}},
		"unknown acr":   {{Name: "y", Scopes: []string{"openid"}, MinACR: "gold"}},
		"empty acr":     {{Name: "y", Scopes: []string{"openid"}}},
		"bad claim":     {{Name: "y", Scopes: []string{"openid"}, Claims: []string{"a b"}, MinACR: "aal3"}},
		"blank scope":   {{Name: "y", Scopes: []string{"openid", ""}, MinACR: "aal3"}},
		"name too long": {{Name: strings.Repeat("a", 40), Scopes: []string{"openid"}, MinACR: "aal3"}},
	}
	for name, tiers := range cases {
		if _, err := newCatalogue(tiers); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	cat, err := newCatalogue([]Tier{ok})
	if err != nil || len(cat.list()) != 1 {
		t.Fatalf("valid catalogue: %v", err)
	}
	def, err := newCatalogue(nil)
	if err != nil || len(def.order) != 3 {
		t.Fatalf("default catalogue: %v", err)
	}
}

func TestMeetsACRAndScopes(t *testing.T) {
	cat, _ := newCatalogue(nil)
	c := &Client{Tier: TierBasic}
	resolveAccess(c, cat.tiers[TierBasic])
	for acr, want := range map[string]bool{"aal3": true, "aal2": false, "aal1": false, "": false, "AAL3": false, "gold": false} {
		if c.MeetsACR(acr) != want {
			t.Errorf("MeetsACR(%q) != %v", acr, want)
		}
	}
	if !c.AllowsScope("openid") || !c.AllowsScope("name") || c.AllowsScope("birthdate") || c.AllowsScope("") {
		t.Errorf("AllowsScope with %v", c.AllowedScopes)
	}
	// A registered subset narrows the tier; the tier bounds the subset.
	c = &Client{Metadata: Metadata{Scope: "openid birthdate", Claims: []string{"birthdate", "address"}}}
	resolveAccess(c, cat.tiers[TierStandard])
	if strings.Join(c.AllowedScopes, " ") != "openid birthdate" || strings.Join(c.AllowedClaims, " ") != "birthdate" {
		t.Errorf("subset: %v %v", c.AllowedScopes, c.AllowedClaims)
	}
	// A tier that lost a scope takes it from the client too.
	c = &Client{Metadata: Metadata{Scope: "name"}}
	resolveAccess(c, cat.tiers[TierBasic])
	if strings.Join(c.AllowedScopes, " ") != "openid name" {
		t.Errorf("openid not implied: %v", c.AllowedScopes)
	}
}

func TestQuoteBoundsEcho(t *testing.T) {
	long := strings.Repeat("あ", 500)
	if q := quote(long); len([]rune(q)) > 110 || !strings.HasSuffix(q, "…\"") {
		t.Fatalf("quote did not shorten: %d runes", len([]rune(q)))
	}
	if quote("a\nb") != `"a\nb"` {
		t.Fatal("control characters echoed raw")
	}
}

// FuzzMetadata runs arbitrary bodies through the parser and the
// validator: neither may panic, and whatever they accept must satisfy
// the invariants the provider relies on.
func FuzzMetadata(f *testing.F) {
	seeds := []string{
		`{"client_name":"A","organization_name":"B","redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}`,
		`{"client_name":"A","organization_name":"B","application_type":"native","token_endpoint_auth_method":"none","redirect_uris":["http://127.0.0.1/cb","com.example.app:/cb"]}`,
		`{"client_name":"A","organization_name":"B","redirect_uris":["https://a.example/cb#x"]}`,
		`{"redirect_uris":"x","jwks":{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA","d":"AAAA"}]}}`,
		`{"jwks":[],"scope":"openid name","claims":["name"],"grant_types":["refresh_token"]}`,
		`{"client_name":null,"redirect_uris":[null,1]}`,
		`[]`, `null`, `{"a":1}{`, "\xff",
	}
	for _, s := range seeds {
		f.Add([]byte(s), false, uint8(0))
	}
	cat, err := newCatalogue(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, dev bool, tierIdx uint8) {
		m, err := ParseMetadata(data)
		if err != nil {
			if CodeOf(err) == "" {
				t.Fatalf("parse error without a code: %v", err)
			}
			return
		}
		tier := cat.tiers[cat.order[int(tierIdx)%len(cat.order)]]
		if e := validateMetadata(&m, tier, cat, dev); e != nil {
			if e.Code != CodeInvalidClientMetadata && e.Code != CodeInvalidRedirectURI || e.Description == "" {
				t.Fatalf("bad error %+v", e)
			}
			return
		}
		if len(m.RedirectURIs) == 0 || len(m.RedirectURIs) > maxRedirectURIs || m.ClientName == "" {
			t.Fatalf("accepted %+v", m)
		}
		for _, u := range m.RedirectURIs {
			if strings.ContainsAny(u, "#*") || (!dev && strings.HasPrefix(u, "http:") && m.ApplicationType != AppNative) {
				t.Fatalf("accepted redirect %q", u)
			}
		}
		if m.TokenEndpointAuthMethod == AuthNone && m.ApplicationType != AppNative {
			t.Fatal("accepted none for a web app")
		}
		if m.IDTokenSignedResponseAlg != "ES256" && m.IDTokenSignedResponseAlg != "RS256" {
			t.Fatalf("accepted alg %q", m.IDTokenSignedResponseAlg)
		}
		if len(m.JWKS) > 0 && !json.Valid(m.JWKS) {
			t.Fatal("accepted invalid jwks JSON")
		}
		for _, s := range scopeList(m.Scope) {
			if !strings.Contains(" "+strings.Join(tier.Scopes, " ")+" ", " "+s+" ") {
				t.Fatalf("accepted scope %q outside tier %s", s, tier.Name)
			}
		}
	})
}
