package consent

import (
	"net/url"
	"slices"
	"testing"
	"time"
)

var (
	t0 = time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)
	t1 = t0.Add(24 * time.Hour)
)

func resolveT(t testing.TB, scopes []string, claims string, p ClientPolicy) Requested {
	t.Helper()
	var cr *ClaimsRequest
	if claims != "" {
		cr = mustParse(t, claims)
	}
	return Resolve(scopes, cr, p)
}

func itemNames(items []Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Claim)
	}
	return out
}

func TestDecide(t *testing.T) {
	pol := ClientPolicy{Claims: allClaims, Verified: true, AgeAlternatives: []string{ClaimAgeOver20}}
	nameReq := resolveT(t, []string{"name"}, "", pol)
	moreReq := resolveT(t, []string{"name", "gender"}, "", pol)
	bdReq := resolveT(t, []string{"birthdate"}, "", pol)
	essGender := resolveT(t, []string{"name"}, `{"userinfo":{"gender":{"essential":true}}}`, pol)
	bdAgeReq := resolveT(t, nil, `{"userinfo":{"birthdate":null,"age_over_20":null}}`, pol)
	bd18Req := resolveT(t, []string{"birthdate"}, "", ClientPolicy{Claims: allClaims, AgeAlternatives: []string{ClaimAgeOver18}})
	verReq := resolveT(t, []string{"name"}, `{"userinfo":{"verified_claims":{"verification":{},"claims":{"name":null}}}}`, pol)

	familyReq := resolveT(t, nil, `{"userinfo":{"family_name":null}}`, pol)
	essFamily := resolveT(t, []string{"name"}, `{"userinfo":{"family_name":{"essential":true}}}`, pol)

	nameGrant := &Grant{Claims: []string{ClaimName, ClaimFamilyName, ClaimGivenName}}
	nameDeclined := &Grant{Declined: []string{ClaimName}}
	// A grant from the screen that had a box per part: the name
	// unticked, its parts left ticked.
	legacyParts := &Grant{Claims: []string{ClaimFamilyName, ClaimGivenName}, Declined: []string{ClaimName}}
	genderDeclined := &Grant{Claims: []string{ClaimName, ClaimFamilyName, ClaimGivenName}, Declined: []string{ClaimGender}}
	narrowed := &Grant{Claims: []string{ClaimAgeOver20}, Narrowed: map[string]string{ClaimBirthdate: ClaimAgeOver20}}
	bdOnly := &Grant{Claims: []string{ClaimBirthdate}}

	for _, tc := range []struct {
		name     string
		existing *Grant
		req      Requested
		prompt   bool
		outcome  Outcome
		ask      []string
		claims   []string
	}{
		{"no grant asks everything", nil, nameReq, false, AskNew, []string{"name"}, nil},
		{"covered skips", nameGrant, nameReq, false, Skip, nil, []string{"name", "family_name", "given_name"}},
		{"prompt=consent asks all", nameGrant, nameReq, true, AskAll, []string{"name"}, nil},
		{"name without its parts asks again", &Grant{Claims: []string{ClaimName}}, nameReq, false, AskNew, []string{"name"}, nil},
		{"withheld name answers for its parts", nameDeclined, nameReq, false, Skip, nil, nil},
		{"withheld name with parts still granted asks", legacyParts, nameReq, false, AskNew, []string{"name"}, nil},
		{"a part alone is its own line", nameDeclined, familyReq, false, AskNew, []string{"family_name"}, nil},
		{"an essential part is its own line", nameDeclined, essFamily, false, AskNew, []string{"family_name"}, nil},
		{"more asks the difference", nameGrant, moreReq, false, AskNew, []string{"gender"}, nil},
		{"declined optional is answered", genderDeclined, moreReq, false, Skip, nil, []string{"name", "family_name", "given_name"}},
		{"declined then essential asks", genderDeclined, essGender, false, AskNew, []string{"gender"}, nil},
		{"narrowed answer reused", narrowed, bdReq, false, Skip, nil, []string{"age_over_20"}},
		{"narrowed to an age not offered asks", narrowed, bd18Req, false, AskNew, []string{"birthdate"}, nil},
		{"birthdate granted, folded age new", bdOnly, bdAgeReq, false, AskNew, []string{"birthdate"}, nil},
		{"birthdate granted covers plain request", bdOnly, bdReq, false, Skip, nil, []string{"birthdate"}},
		{"verified needs its own item", nameGrant, verReq, false, AskNew, []string{"verified_claims"}, nil},
		{"nothing requested skips", nil, Requested{}, false, Skip, nil, nil},
		{"nothing requested, prompt=consent still asks", nil, Requested{}, true, AskAll, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.existing, tc.req, tc.prompt)
			if d.Outcome != tc.outcome {
				t.Fatalf("Outcome = %s, want %s (%+v)", d.Outcome, tc.outcome, d)
			}
			if got := itemNames(d.Items); !slices.Equal(got, tc.ask) {
				t.Errorf("asks %v, want %v", got, tc.ask)
			}
			if !slices.Equal(d.Claims, tc.claims) {
				t.Errorf("Claims = %v, want %v", d.Claims, tc.claims)
			}
			if d.Ask() != (tc.outcome != Skip) {
				t.Errorf("Ask() = %v", d.Ask())
			}
			if tc.outcome == AskNew && len(d.Items)+len(d.Kept) != len(tc.req.Items()) {
				t.Errorf("asked %d + kept %d != requested %d", len(d.Items), len(d.Kept), len(tc.req.Items()))
			}
		})
	}
}

func TestApply(t *testing.T) {
	pol := ClientPolicy{Claims: allClaims, Verified: true, AgeAlternatives: []string{ClaimAgeOver18}}
	req := resolveT(t, []string{"name", "gender", "address"}, `{"userinfo":{"birthdate":{"essential":true},"age_over_20":null,"name":{"essential":true}}}`, pol)
	// Items: name(E; parts family_name given_name) birthdate(E; alt 18 by
	// policy; includes 20) gender address
	for _, tc := range []struct {
		name     string
		existing *Grant
		prompt   bool
		choice   Choice
		claims   []string
		declined []string
		narrowed map[string]string
		code     Code
	}{
		{"all in full", nil, false, Choice{Allow: []string{"name", "birthdate", "gender", "address"}},
			[]string{"name", "family_name", "given_name", "birthdate", "age_over_20", "gender", "address"}, nil, nil, ""},
		{"optional unticked", nil, false, Choice{Allow: []string{"name", "birthdate"}},
			[]string{"name", "family_name", "given_name", "birthdate", "age_over_20"}, []string{"gender", "address"}, nil, ""},
		{"a part is no line of its own", nil, false, Choice{Allow: []string{"name", "family_name", "birthdate"}}, nil, nil, nil, CodeInvalidChoice},
		{"narrow essential birthdate", nil, false, Choice{Allow: []string{"name", "birthdate"}, Narrow: map[string]string{"birthdate": "age_over_18"}},
			[]string{"name", "family_name", "given_name", "age_over_18"}, []string{"gender", "address"}, map[string]string{"birthdate": "age_over_18"}, ""},
		{"narrow to itself is full", nil, false, Choice{Allow: []string{"name", "birthdate"}, Narrow: map[string]string{"birthdate": "birthdate"}},
			[]string{"name", "family_name", "given_name", "birthdate", "age_over_20"}, []string{"gender", "address"}, nil, ""},
		{"optional age is no alternative to an essential birthdate", nil, false, Choice{Allow: []string{"name", "birthdate"}, Narrow: map[string]string{"birthdate": "age_over_20"}},
			nil, nil, nil, CodeInvalidChoice},
		{"narrowing an unticked line is ignored", nil, false, Choice{Allow: []string{"name", "birthdate"}, Narrow: map[string]string{"gender": "gender"}},
			[]string{"name", "family_name", "given_name", "birthdate", "age_over_20"}, []string{"gender", "address"}, nil, ""},
		{"essential missing", nil, false, Choice{Allow: []string{"birthdate"}}, nil, nil, nil, CodeEssentialRefused},
		{"essential birthdate missing", nil, false, Choice{Allow: []string{"name"}}, nil, nil, nil, CodeEssentialRefused},
		{"unknown claim", nil, false, Choice{Allow: []string{"name", "birthdate", "email"}}, nil, nil, nil, CodeInvalidChoice},
		{"folded alternative is not a line", nil, false, Choice{Allow: []string{"name", "birthdate", "age_over_20"}}, nil, nil, nil, CodeInvalidChoice},
		{"alternative not offered", nil, false, Choice{Allow: []string{"name", "birthdate"}, Narrow: map[string]string{"birthdate": "name"}}, nil, nil, nil, CodeInvalidChoice},
		{"alternative on a line without any", nil, false, Choice{Allow: []string{"name", "birthdate"}, Narrow: map[string]string{"gender": "age_over_18"}}, nil, nil, nil, CodeInvalidChoice},
		{"narrow unknown line", nil, false, Choice{Allow: []string{"name", "birthdate"}, Narrow: map[string]string{"email": "email"}}, nil, nil, nil, CodeInvalidChoice},
		{"only asked lines change", &Grant{Claims: []string{"name", "family_name", "given_name", "birthdate", "age_over_20", "gender"}, Declined: []string{"address"}, At: t0, CreatedAt: t0,
			GrantedAt: map[string]time.Time{"name": t0, "family_name": t0, "given_name": t0, "birthdate": t0, "age_over_20": t0, "gender": t0}},
			false, Choice{Allow: []string{"name", "birthdate"}},
			// Nothing was asked: Apply keeps the grant as it was.
			[]string{"name", "family_name", "given_name", "birthdate", "age_over_20", "gender"}, []string{"address"}, nil, ""},
		{"prompt=consent withdraws", &Grant{Claims: []string{"name", "family_name", "given_name", "birthdate", "age_over_20", "gender", "address"}, At: t0, CreatedAt: t0},
			true, Choice{Allow: []string{"name", "birthdate", "address"}, Narrow: map[string]string{"birthdate": "age_over_18"}},
			[]string{"name", "family_name", "given_name", "age_over_18", "address"}, []string{"gender"}, map[string]string{"birthdate": "age_over_18"}, ""},
		{"full again clears narrowing", &Grant{Claims: []string{"name", "age_over_18"}, Narrowed: map[string]string{"birthdate": "age_over_18"}, Declined: []string{"gender", "address"}},
			true, Choice{Allow: []string{"name", "birthdate", "gender"}},
			[]string{"name", "family_name", "given_name", "birthdate", "age_over_18", "age_over_20", "gender"}, []string{"address"}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before []string
			if tc.existing != nil {
				before = slices.Clone(tc.existing.Claims)
			}
			d := Decide(tc.existing, req, tc.prompt)
			g, err := Apply(tc.existing, req, d, tc.choice, t1)
			if tc.existing != nil && !slices.Equal(tc.existing.Claims, before) {
				t.Fatal("Apply modified the existing grant in place")
			}
			if tc.code != "" {
				if CodeOf(err) != tc.code || g != nil {
					t.Fatalf("Apply = %+v, %v; want code %s", g, err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(g.Claims, tc.claims) {
				t.Errorf("Claims = %v, want %v", g.Claims, tc.claims)
			}
			if !slices.Equal(g.Declined, tc.declined) {
				t.Errorf("Declined = %v, want %v", g.Declined, tc.declined)
			}
			if len(g.Narrowed) != len(tc.narrowed) {
				t.Errorf("Narrowed = %v, want %v", g.Narrowed, tc.narrowed)
			}
			for k, v := range tc.narrowed {
				if g.Narrowed[k] != v {
					t.Errorf("Narrowed = %v, want %v", g.Narrowed, tc.narrowed)
				}
			}
			for _, c := range g.Claims {
				if _, ok := g.GrantedAt[c]; !ok {
					t.Errorf("no GrantedAt for %s", c)
				}
			}
			for c := range g.GrantedAt {
				if !g.Has(c) {
					t.Errorf("GrantedAt kept for withdrawn %s", c)
				}
			}
			if !g.At.Equal(t1) {
				t.Errorf("At = %v", g.At)
			}
			// After Apply, the same request needs no screen.
			if d2 := Decide(g, req, false); d2.Ask() {
				t.Errorf("same request after Apply still asks %v", itemNames(d2.Items))
			}
		})
	}
}

func TestApplyKeepsFirstGrantTime(t *testing.T) {
	req := resolveT(t, []string{"name", "gender"}, "", ClientPolicy{Claims: allClaims})
	g := &Grant{Claims: []string{"name", "family_name", "given_name"}, GrantedAt: map[string]time.Time{"name": t0, "family_name": t0, "given_name": t0}, CreatedAt: t0, At: t0}
	g2, err := Apply(g, req, Decide(g, req, false), Choice{Allow: []string{"gender"}}, t1)
	if err != nil {
		t.Fatal(err)
	}
	if !g2.GrantedAt["name"].Equal(t0) || !g2.GrantedAt["gender"].Equal(t1) || !g2.CreatedAt.Equal(t0) || !g2.At.Equal(t1) {
		t.Errorf("times = %+v", g2)
	}
}

func TestChoiceFromForm(t *testing.T) {
	v := url.Values{
		"claim":        {"name", "birthdate", "name"},
		"as.birthdate": {"age_over_20"},
		"csrf":         {"x"},
	}
	c, err := ChoiceFromForm(v)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Allow, []string{"name", "birthdate"}) || c.Narrow["birthdate"] != "age_over_20" || len(c.Narrow) != 1 {
		t.Errorf("Choice = %+v", c)
	}
	for name, bad := range map[string]url.Values{
		"two alternatives": {"claim": {"birthdate"}, "as.birthdate": {"age_over_18", "age_over_20"}},
		"too many claims":  {"claim": make([]string, 65)},
	} {
		if _, err := ChoiceFromForm(bad); CodeOf(err) != CodeInvalidChoice {
			t.Errorf("%s: %v", name, err)
		}
	}
	many := url.Values{}
	for i := range 70 {
		many.Set("f"+string(rune('a'+i%26))+string(rune('a'+i/26)), "x")
	}
	if _, err := ChoiceFromForm(many); CodeOf(err) != CodeInvalidChoice {
		t.Errorf("too many fields: %v", err)
	}
	if c, err := ChoiceFromForm(url.Values{}); err != nil || len(c.Allow) != 0 {
		t.Errorf("empty form = %+v, %v", c, err)
	}
}

func TestEffective(t *testing.T) {
	pol := ClientPolicy{Claims: allClaims, Verified: true, AgeAlternatives: []string{ClaimAgeOver20, ClaimAgeOver18}}
	req := resolveT(t, []string{"birthdate", "name"}, `{"userinfo":{"verified_claims":{"verification":{},"claims":{"address":null}}}}`, pol)
	for _, tc := range []struct {
		name string
		g    *Grant
		want []string
	}{
		{"nil", nil, nil},
		{"granted and requested only", &Grant{Claims: []string{"name", "gender"}}, []string{"name"}},
		{"implied alternative when narrowed", &Grant{Claims: []string{"age_over_20", "age_over_18"}, Narrowed: map[string]string{"birthdate": "age_over_20"}}, []string{"age_over_20"}},
		{"implied alternative from a snapshot", &Grant{Claims: []string{"age_over_20"}}, []string{"age_over_20"}},
		{"birthdate beats an implied alternative", &Grant{Claims: []string{"birthdate", "age_over_20"}}, []string{"birthdate"}},
		{"verified needs its item", &Grant{Claims: []string{"address"}}, nil},
		{"verified with its item", &Grant{Claims: []string{"address", "verified_claims"}}, []string{"address", "verified_claims"}},
		{"verified item alone releases nothing", &Grant{Claims: []string{"verified_claims"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Effective(tc.g, req)
			if !slices.Equal(got, tc.want) {
				t.Errorf("Effective = %v, want %v", got, tc.want)
			}
			// Idempotent: a snapshot grants what it lists.
			if again := Effective(&Grant{Claims: got}, req); !slices.Equal(again, got) {
				t.Errorf("Effective(snapshot) = %v, want %v", again, got)
			}
		})
	}
}

func TestPreset(t *testing.T) {
	plain := Item{Claim: ClaimName}
	sens := Item{Claim: ClaimGender, Sensitive: true}
	ess := Item{Claim: ClaimAddress, Sensitive: true, Essential: true}
	bd := Item{Claim: ClaimBirthdate, Sensitive: true, Alternatives: []string{ClaimAgeOver20}}
	for _, tc := range []struct {
		name string
		g    *Grant
		it   Item
		tick bool
		as   string
	}{
		{"optional ticked", nil, plain, true, "name"},
		{"sensitive opt-in", nil, sens, false, "gender"},
		{"essential ticked", nil, ess, true, "address"},
		{"essential even if declined before", &Grant{Declined: []string{"address"}}, ess, true, "address"},
		{"declined before", &Grant{Declined: []string{"name"}}, plain, false, "name"},
		{"granted before", &Grant{Claims: []string{"gender"}}, sens, true, "gender"},
		{"narrowed before", &Grant{Claims: []string{"age_over_20"}, Narrowed: map[string]string{"birthdate": "age_over_20"}}, bd, true, "age_over_20"},
		{"narrowed to an age no longer offered", &Grant{Claims: []string{"age_over_18"}, Narrowed: map[string]string{"birthdate": "age_over_18"}}, bd, false, "birthdate"},
	} {
		tick, as := Preset(tc.g, tc.it)
		if tick != tc.tick || as != tc.as {
			t.Errorf("%s: Preset = %v, %q; want %v, %q", tc.name, tick, as, tc.tick, tc.as)
		}
	}
}
