package consent

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

func mustParse(t testing.TB, s string) *ClaimsRequest {
	t.Helper()
	cr, err := ParseClaimsRequest([]byte(s))
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return cr
}

var allClaims = []string{ClaimName, ClaimFamilyName, ClaimGivenName, ClaimBirthdate, ClaimGender, ClaimAddress}

func TestClaimsForScopes(t *testing.T) {
	for _, tc := range []struct {
		scopes []string
		want   []string
	}{
		{nil, nil},
		{[]string{"openid"}, nil},
		{[]string{"openid", "name"}, []string{"name", "family_name", "given_name"}},
		{[]string{"address", "birthdate", "gender"}, []string{"birthdate", "gender", "address"}},
		{[]string{"profile"}, []string{"name", "family_name", "given_name", "birthdate", "gender"}},
		{[]string{"profile", "name", "address", "email", "offline_access"}, []string{"name", "family_name", "given_name", "birthdate", "gender", "address"}},
	} {
		if got := ClaimsForScopes(tc.scopes); !slices.Equal(got, tc.want) {
			t.Errorf("ClaimsForScopes(%v) = %v, want %v", tc.scopes, got, tc.want)
		}
	}
}

func TestPolicyAllows(t *testing.T) {
	p := ClientPolicy{Claims: []string{ClaimName, ClaimBirthdate}}
	for _, tc := range []struct {
		claim string
		want  bool
	}{
		{ClaimName, true}, {ClaimBirthdate, true},
		{ClaimAgeOver18, true}, {ClaimAgeOver20, true}, // narrower than birthdate
		{ClaimGender, false}, {ClaimAddress, false},
		{ClaimVerifiedClaims, false}, {"email", false}, {"", false},
	} {
		if got := p.Allows(tc.claim); got != tc.want {
			t.Errorf("Allows(%q) = %v, want %v", tc.claim, got, tc.want)
		}
	}
	ageOnly := ClientPolicy{Claims: []string{ClaimAgeOver20}, Verified: true}
	if ageOnly.Allows(ClaimBirthdate) || ageOnly.Allows(ClaimAgeOver18) || !ageOnly.Allows(ClaimAgeOver20) || !ageOnly.Allows(ClaimVerifiedClaims) {
		t.Error("an age-only tier must allow exactly its age check (and verified_claims when set)")
	}
}

func TestResolve(t *testing.T) {
	full := ClientPolicy{Claims: allClaims, Verified: true}
	for _, tc := range []struct {
		name   string
		scopes []string
		claims string
		policy ClientPolicy
		want   string // Requested as JSON
	}{
		{"scopes go to userinfo", []string{"openid", "name"}, ``, full,
			`{"userinfo":{"claims":{"family_name":null,"given_name":null,"name":null}}}`},
		{"scopes also in the ID token by policy", []string{"gender"}, ``, ClientPolicy{Claims: allClaims, ScopeClaimsInIDToken: true},
			`{"id_token":{"claims":{"gender":null}},"userinfo":{"claims":{"gender":null}}}`},
		{"claims parameter places claims", nil, `{"id_token":{"birthdate":{"essential":true}},"userinfo":{"address":null}}`, full,
			`{"id_token":{"claims":{"birthdate":{"essential":true}}},"userinfo":{"claims":{"address":null}}}`},
		{"scope and parameter merge", []string{"gender"}, `{"userinfo":{"gender":{"essential":true,"values":["female"]}}}`, full,
			`{"userinfo":{"claims":{"gender":{"essential":true,"values":["female"]}}}}`},
		{"unknown and protocol claims ignored", nil, `{"id_token":{"acr":{"essential":true},"sub":{"value":"x"},"email":null},"userinfo":{"nickname":null}}`, full,
			`{}`},
		{"tier drops and reports", []string{"profile", "address"}, `{"userinfo":{"gender":{"essential":true}}}`, ClientPolicy{Claims: []string{ClaimName}},
			`{"userinfo":{"claims":{"name":null}},"dropped":[{"claim":"family_name","reason":"not_allowed"},{"claim":"given_name","reason":"not_allowed"},{"claim":"birthdate","reason":"not_allowed"},{"claim":"gender","reason":"not_allowed"},{"claim":"address","reason":"not_allowed"}]}`},
		{"age checks allowed with birthdate", nil, `{"userinfo":{"age_over_18":null}}`, ClientPolicy{Claims: []string{ClaimBirthdate}},
			`{"userinfo":{"claims":{"age_over_18":null}}}`},
		{"policy implies age alternatives", []string{"birthdate"}, ``, ClientPolicy{Claims: allClaims, AgeAlternatives: []string{ClaimAgeOver20, ClaimAgeOver18, "name", "bogus"}},
			`{"userinfo":{"claims":{"birthdate":null}},"implied":["age_over_18","age_over_20"]}`},
		{"explicit age request is not implied", []string{"birthdate"}, `{"userinfo":{"age_over_20":null}}`, ClientPolicy{Claims: allClaims, AgeAlternatives: []string{ClaimAgeOver20}},
			`{"userinfo":{"claims":{"age_over_20":null,"birthdate":null}}}`},
		{"no birthdate, nothing implied", []string{"name"}, ``, ClientPolicy{Claims: allClaims, AgeAlternatives: []string{ClaimAgeOver20}},
			`{"userinfo":{"claims":{"family_name":null,"given_name":null,"name":null}}}`},
		{"verified claims kept", nil, `{"userinfo":{"verified_claims":{"verification":{"trust_framework":null},"claims":{"name":null,"email":null,"gender":null}}}}`, ClientPolicy{Claims: []string{ClaimName}, Verified: true},
			`{"userinfo":{"verified_claims":[{"verification":{"trust_framework":null},"claims":{"name":null}}]},"dropped":[{"claim":"gender","reason":"not_allowed"}]}`},
		{"verified claims not allowed", nil, `{"userinfo":{"verified_claims":{"verification":{},"claims":{"name":null}}}}`, ClientPolicy{Claims: allClaims},
			`{"dropped":[{"claim":"verified_claims","reason":"not_allowed"}]}`},
		{"verified request left empty is dropped", nil, `{"id_token":{"verified_claims":{"verification":{},"claims":{"email":null}}}}`, full,
			`{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cr *ClaimsRequest
			if tc.claims != "" {
				cr = mustParse(t, tc.claims)
			}
			got := Resolve(tc.scopes, cr, tc.policy)
			gotJSON, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			_ = json.Unmarshal(gotJSON, &a)
			if err := json.Unmarshal([]byte(tc.want), &b); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("Resolve =\n %s\nwant\n %s", gotJSON, tc.want)
			}
			// Requested survives a JSON round trip (the provider may store it).
			var back Requested
			if err := json.Unmarshal(gotJSON, &back); err != nil {
				t.Fatal(err)
			}
			again, _ := json.Marshal(back)
			if string(again) != string(gotJSON) {
				t.Errorf("round trip:\n %s\n %s", gotJSON, again)
			}
		})
	}
}

func TestItems(t *testing.T) {
	full := ClientPolicy{Claims: allClaims, Verified: true, AgeAlternatives: []string{ClaimAgeOver18}}
	for _, tc := range []struct {
		name   string
		scopes []string
		claims string
		want   []Item
	}{
		{"nothing", []string{"openid"}, ``, nil},
		{"scope items in order, the name one line with its parts", []string{"address", "name"}, ``, []Item{
			{Claim: ClaimName, Targets: []Target{TargetUserinfo}, Parts: []string{ClaimFamilyName, ClaimGivenName}},
			{Claim: ClaimAddress, Sensitive: true, Targets: []Target{TargetUserinfo}},
		}},
		{"an essential part stays its own line", []string{"name"}, `{"id_token":{"given_name":{"essential":true}}}`, []Item{
			{Claim: ClaimName, Targets: []Target{TargetUserinfo}, Parts: []string{ClaimFamilyName}},
			{Claim: ClaimGivenName, Essential: true, Targets: []Target{TargetIDToken, TargetUserinfo}},
		}},
		{"parts without the name are lines of their own", nil, `{"userinfo":{"family_name":null,"given_name":null}}`, []Item{
			{Claim: ClaimFamilyName, Targets: []Target{TargetUserinfo}},
			{Claim: ClaimGivenName, Targets: []Target{TargetUserinfo}},
		}},
		{"a part asked as verified marks the name's line", nil, `{"userinfo":{"name":null,"verified_claims":{"verification":{},"claims":{"family_name":{"purpose":"口座開設のため"}}}}}`, []Item{
			{Claim: ClaimName, Targets: []Target{TargetUserinfo}, Parts: []string{ClaimFamilyName}, Verified: true, Purpose: "口座開設のため"},
			{Claim: ClaimVerifiedClaims, Sensitive: true, Targets: []Target{TargetUserinfo}, Verified: true},
		}},
		{"optional age folded into birthdate", nil, `{"id_token":{"birthdate":{"essential":true,"purpose":"本人確認のため"}},"userinfo":{"age_over_20":null}}`, []Item{
			{Claim: ClaimBirthdate, Essential: true, Sensitive: true, Targets: []Target{TargetIDToken}, Purpose: "本人確認のため",
				Alternatives: []string{ClaimAgeOver18}, Includes: []string{ClaimAgeOver20}},
		}},
		{"optional age next to optional birthdate is an alternative", nil, `{"userinfo":{"birthdate":null,"age_over_20":null}}`, []Item{
			{Claim: ClaimBirthdate, Sensitive: true, Targets: []Target{TargetUserinfo},
				Alternatives: []string{ClaimAgeOver18, ClaimAgeOver20}, Includes: []string{ClaimAgeOver20}},
		}},
		{"essential age stays its own line", []string{"birthdate"}, `{"userinfo":{"age_over_20":{"essential":true}}}`, []Item{
			{Claim: ClaimBirthdate, Sensitive: true, Targets: []Target{TargetUserinfo}, Alternatives: []string{ClaimAgeOver18}},
			{Claim: ClaimAgeOver20, Essential: true, Targets: []Target{TargetUserinfo}},
		}},
		{"age alone", nil, `{"userinfo":{"age_over_18":null}}`, []Item{
			{Claim: ClaimAgeOver18, Targets: []Target{TargetUserinfo}},
		}},
		{"verified", nil, `{"userinfo":{"verified_claims":{"verification":{"trust_framework":{"purpose":"犯収法対応"}},"claims":{"name":{"essential":true}}}}}`, []Item{
			{Claim: ClaimName, Essential: true, Targets: []Target{TargetUserinfo}, Verified: true},
			{Claim: ClaimVerifiedClaims, Essential: true, Sensitive: true, Targets: []Target{TargetUserinfo}, Verified: true, Purpose: "犯収法対応"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cr *ClaimsRequest
			if tc.claims != "" {
				cr = mustParse(t, tc.claims)
			}
			r := Resolve(tc.scopes, cr, full)
			got := r.Items()
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Items =\n %+v\nwant\n %+v", got, tc.want)
			}
			if r.Empty() != (len(tc.want) == 0) {
				t.Errorf("Empty = %v", r.Empty())
			}
		})
	}
}
