package consent

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/pkibridge"
)

// Test persons are invented; no real resident's data.
func testFacts() *pkibridge.Attributes {
	return &pkibridge.Attributes{
		Name: "渡志　花子", FamilyName: "渡志", GivenName: "花子",
		Birthdate: "2006-04-01", Gender: "female", GenderCode: "2",
		Address: "東京都千代田区霞が関一丁目1番1号",
	}
}

var (
	proofed  = time.Date(2025, 1, 10, 3, 0, 0, 0, time.UTC)
	signedAt = time.Date(2025, 1, 10, 2, 59, 30, 0, time.UTC)
	// 2024-03-31 23:59 JST: the test person is 17 for one more minute.
	beforeBirthday = time.Date(2024, 3, 31, 14, 59, 0, 0, time.UTC)
	// 2025-06-01: 19 years old.
	releaseNow = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
)

func testMeta() FactsMeta {
	return FactsMeta{
		ProofedAt: proofed, SignedAt: signedAt,
		CertIssuer:      "OU=Japan Agency for Local Authority Information Systems,OU=JPKI for digital signature,O=JPKI,C=JP",
		CertSerial:      "123456789",
		CertFingerprint: "ab12",
	}
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sameJSON(t *testing.T, got any, want string) bool {
	t.Helper()
	var a, b any
	if err := json.Unmarshal([]byte(asJSON(t, got)), &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		t.Fatalf("bad want %s: %v", want, err)
	}
	return reflect.DeepEqual(a, b)
}

func TestRelease(t *testing.T) {
	pol := ClientPolicy{Claims: allClaims, Verified: true, AgeAlternatives: []string{ClaimAgeOver20}}
	polID := pol
	polID.ScopeClaimsInIDToken = true
	all := &Grant{Claims: []string{"name", "family_name", "given_name", "birthdate", "age_over_18", "age_over_20", "gender", "address", "verified_claims"}}
	for _, tc := range []struct {
		name   string
		scopes []string
		claims string
		policy ClientPolicy
		grant  *Grant
		target Target
		now    time.Time
		facts  *pkibridge.Attributes
		want   string
	}{
		{"scope claims in userinfo", []string{"openid", "name", "address"}, "", pol, all, TargetUserinfo, releaseNow, nil,
			`{"name":"渡志　花子","family_name":"渡志","given_name":"花子","address":{"formatted":"東京都千代田区霞が関一丁目1番1号","country":"JP"}}`},
		{"scope claims not in the ID token", []string{"name"}, "", pol, all, TargetIDToken, releaseNow, nil, `{}`},
		{"scope claims in the ID token by policy", []string{"gender"}, "", polID, all, TargetIDToken, releaseNow, nil, `{"gender":"female"}`},
		{"introspection mirrors userinfo", []string{"gender"}, `{"id_token":{"name":null}}`, pol, all, TargetIntrospection, releaseNow, nil, `{"gender":"female"}`},
		{"only granted", []string{"profile"}, "", pol, &Grant{Claims: []string{"given_name", "address"}}, TargetUserinfo, releaseNow, nil, `{"given_name":"花子"}`},
		{"only requested", []string{"name"}, "", pol, all, TargetUserinfo, releaseNow, nil, `{"name":"渡志　花子","family_name":"渡志","given_name":"花子"}`},
		{"per-target placement", nil, `{"id_token":{"birthdate":null},"userinfo":{"gender":null}}`, pol, all, TargetIDToken, releaseNow, nil, `{"birthdate":"2006-04-01"}`},
		{"age checks computed", nil, `{"id_token":{"age_over_18":null,"age_over_20":null}}`, pol, all, TargetIDToken, releaseNow, nil, `{"age_over_18":true,"age_over_20":false}`},
		{"age check the minute before", nil, `{"id_token":{"age_over_18":null}}`, pol, all, TargetIDToken, beforeBirthday, nil, `{"age_over_18":false}`},
		{"age check at the birthday", nil, `{"id_token":{"age_over_18":null}}`, pol, all, TargetIDToken, beforeBirthday.Add(time.Minute), nil, `{"age_over_18":true}`},
		{"value matches", nil, `{"userinfo":{"gender":{"value":"female"},"age_over_18":{"value":true}}}`, pol, all, TargetUserinfo, releaseNow, nil, `{"gender":"female","age_over_18":true}`},
		{"value mismatch omitted", nil, `{"userinfo":{"gender":{"value":"male"},"age_over_20":{"value":true},"name":{"essential":true,"value":"別人"}}}`, pol, all, TargetUserinfo, releaseNow, nil, `{}`},
		{"values", nil, `{"userinfo":{"gender":{"values":["male","female"]},"birthdate":{"values":[]}}}`, pol, all, TargetUserinfo, releaseNow, nil, `{"gender":"female"}`},
		{"typed comparison", nil, `{"userinfo":{"age_over_18":{"value":"true"}}}`, pol, all, TargetUserinfo, releaseNow, nil, `{}`},
		{"address value compares members", nil, `{"userinfo":{"address":{"value":{"country":"JP","formatted":"東京都千代田区霞が関一丁目1番1号"}}}}`, pol, all, TargetUserinfo, releaseNow, nil,
			`{"address":{"formatted":"東京都千代田区霞が関一丁目1番1号","country":"JP"}}`},
		{"missing fact omitted", []string{"name", "address"}, "", pol, all, TargetUserinfo, releaseNow, &pkibridge.Attributes{Name: "渡志　花子", Birthdate: "bad"},
			`{"name":"渡志　花子"}`},
		{"bad birth date gives no age check", nil, `{"userinfo":{"age_over_18":null}}`, pol, all, TargetUserinfo, releaseNow, &pkibridge.Attributes{Birthdate: "2006-13-01"}, `{}`},
		{"implied alternative replaces birthdate", []string{"birthdate"}, "", pol,
			&Grant{Claims: []string{"age_over_20"}, Narrowed: map[string]string{"birthdate": "age_over_20"}}, TargetUserinfo, releaseNow, nil, `{"age_over_20":false}`},
		{"implied alternative not where birthdate is not", []string{"birthdate"}, "", pol,
			&Grant{Claims: []string{"age_over_20"}, Narrowed: map[string]string{"birthdate": "age_over_20"}}, TargetIDToken, releaseNow, nil, `{}`},
		{"implied alternative needs the narrowing", []string{"birthdate"}, "", pol,
			&Grant{Claims: []string{"age_over_20", "age_over_18"}, Narrowed: map[string]string{"birthdate": "age_over_18"}}, TargetUserinfo, releaseNow, nil, `{}`},
		{"nothing granted", []string{"profile"}, "", pol, &Grant{}, TargetUserinfo, releaseNow, nil, `{}`},
		{"nil grant", []string{"profile"}, "", pol, nil, TargetUserinfo, releaseNow, nil, `{}`},
		{"verified claims", []string{"name"}, `{"userinfo":{"verified_claims":{
			"verification":{"trust_framework":null,"time":null,"evidence":[{"type":{"value":"electronic_signature"},"signature_type":null,"issuer":null,"serial_number":null,"created_at":null}]},
			"claims":{"family_name":null,"birthdate":null,"gender":null}}}}`, pol,
			&Grant{Claims: []string{"name", "family_name", "given_name", "birthdate", "verified_claims"}}, TargetUserinfo, releaseNow, nil,
			`{"name":"渡志　花子","family_name":"渡志","given_name":"花子","verified_claims":{
			  "verification":{"trust_framework":"jp_jpki","time":"2025-01-10T03:00:00Z","evidence":[{"type":"electronic_signature","signature_type":"jpki_signature",
			    "issuer":"OU=Japan Agency for Local Authority Information Systems,OU=JPKI for digital signature,O=JPKI,C=JP","serial_number":"123456789","created_at":"2025-01-10T02:59:30Z"}]},
			  "claims":{"family_name":"渡志","birthdate":"2006-04-01"}}}`},
		{"verified minimal: only what was asked", nil, `{"id_token":{"verified_claims":{"verification":{},"claims":{"name":null}}}}`, pol, all, TargetIDToken, releaseNow, nil,
			`{"verified_claims":{"verification":{"trust_framework":"jp_jpki"},"claims":{"name":"渡志　花子"}}}`},
		{"verified only in its target", nil, `{"id_token":{"verified_claims":{"verification":{},"claims":{"name":null}}}}`, pol, all, TargetUserinfo, releaseNow, nil, `{}`},
		{"verified without its item", nil, `{"userinfo":{"verified_claims":{"verification":{},"claims":{"name":null}}}}`, pol,
			&Grant{Claims: []string{"name"}}, TargetUserinfo, releaseNow, nil, `{}`},
		{"verified claims need their own grant", nil, `{"userinfo":{"verified_claims":{"verification":{},"claims":{"name":null,"gender":null}}}}`, pol,
			&Grant{Claims: []string{"name", "verified_claims"}}, TargetUserinfo, releaseNow, nil, `{"verified_claims":{"verification":{"trust_framework":"jp_jpki"},"claims":{"name":"渡志　花子"}}}`},
		{"verified trust framework mismatch", nil, `{"userinfo":{"verified_claims":{"verification":{"trust_framework":{"value":"de_aml"}},"claims":{"name":null}}}}`, pol, all, TargetUserinfo, releaseNow, nil, `{}`},
		{"verified trust framework values", nil, `{"userinfo":{"verified_claims":{"verification":{"trust_framework":{"values":["de_aml","jp_jpki"]}},"claims":{"name":null}}}}`, pol, all, TargetUserinfo, releaseNow, nil,
			`{"verified_claims":{"verification":{"trust_framework":"jp_jpki"},"claims":{"name":"渡志　花子"}}}`},
		{"verified max_age met", nil, `{"userinfo":{"verified_claims":{"verification":{"time":{"max_age":31536000}},"claims":{"name":null}}}}`, pol, all, TargetUserinfo, releaseNow, nil,
			`{"verified_claims":{"verification":{"trust_framework":"jp_jpki","time":"2025-01-10T03:00:00Z"},"claims":{"name":"渡志　花子"}}}`},
		{"verified max_age exceeded", nil, `{"userinfo":{"verified_claims":{"verification":{"time":{"max_age":86400}},"claims":{"name":null}}}}`, pol, all, TargetUserinfo, releaseNow, nil, `{}`},
		{"verified evidence type mismatch", nil, `{"userinfo":{"verified_claims":{"verification":{"evidence":[{"type":{"value":"document"}}]},"claims":{"name":null}}}}`, pol, all, TargetUserinfo, releaseNow, nil, `{}`},
		{"verified claim value mismatch leaves nothing", nil, `{"userinfo":{"verified_claims":{"verification":{},"claims":{"gender":{"value":"male"}}}}}`, pol, all, TargetUserinfo, releaseNow, nil, `{}`},
		{"two verified requests make an array", nil, `{"userinfo":{"verified_claims":[{"verification":{},"claims":{"name":null}},{"verification":{"time":null},"claims":{"address":null}}]}}`, pol, all, TargetUserinfo, releaseNow, nil,
			`{"verified_claims":[{"verification":{"trust_framework":"jp_jpki"},"claims":{"name":"渡志　花子"}},
			  {"verification":{"trust_framework":"jp_jpki","time":"2025-01-10T03:00:00Z"},"claims":{"address":{"formatted":"東京都千代田区霞が関一丁目1番1号","country":"JP"}}}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := resolveT(t, tc.scopes, tc.claims, tc.policy)
			facts := tc.facts
			if facts == nil {
				facts = testFacts()
			}
			got, err := Release(facts, testMeta(), tc.grant, req, tc.target, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if !sameJSON(t, got, tc.want) {
				t.Errorf("Release =\n %s\nwant\n %s", asJSON(t, got), tc.want)
			}
			// The per-authorization snapshot releases the same.
			snap, err := Release(facts, testMeta(), &Grant{Claims: Effective(tc.grant, req)}, req, tc.target, tc.now)
			if err != nil || !reflect.DeepEqual(snap, got) {
				t.Errorf("snapshot release = %v, %v; want %v", snap, err, got)
			}
		})
	}
}

func TestReleaseRefusesStaleOrMissingFacts(t *testing.T) {
	req := resolveT(t, []string{"name"}, `{"id_token":{"verified_claims":{"verification":{},"claims":{"gender":null}}}}`, ClientPolicy{Claims: allClaims, Verified: true})
	stale := testMeta()
	stale.Stale = true
	g := &Grant{Claims: []string{"name", "family_name", "given_name"}}
	gv := &Grant{Claims: []string{"gender", "verified_claims"}}
	for _, tc := range []struct {
		name   string
		facts  *pkibridge.Attributes
		meta   FactsMeta
		g      *Grant
		target Target
		want   error
	}{
		{"stale", testFacts(), stale, g, TargetUserinfo, ErrStaleFacts},
		{"stale verified", testFacts(), stale, gv, TargetIDToken, ErrStaleFacts},
		{"no facts", nil, testMeta(), g, TargetUserinfo, ErrNoFacts},
		{"no facts, verified", nil, testMeta(), gv, TargetIDToken, ErrNoFacts},
		{"stale but nothing to release", testFacts(), stale, g, TargetIDToken, nil},
		{"no facts and nothing granted", nil, testMeta(), &Grant{}, TargetUserinfo, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Release(tc.facts, tc.meta, tc.g, req, tc.target, releaseNow)
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Fatalf("Release error = %v, want %v", err, tc.want)
			}
			if tc.want != nil && out != nil {
				t.Fatalf("Release returned claims with the error: %v", out)
			}
			if tc.want == nil && len(out) != 0 {
				t.Fatalf("Release = %v, want nothing", out)
			}
			var ce *Error
			if tc.want != nil && (!errors.As(err, &ce) || ce.Code != CodeOf(tc.want)) {
				t.Fatalf("error %v is not a typed *Error", err)
			}
		})
	}
	if err := Ready(testFacts(), stale, g, req); !errors.Is(err, ErrStaleFacts) {
		t.Errorf("Ready(stale) = %v", err)
	}
	if err := Ready(nil, testMeta(), g, req); !errors.Is(err, ErrNoFacts) {
		t.Errorf("Ready(nil) = %v", err)
	}
	if err := Ready(testFacts(), testMeta(), g, req); err != nil {
		t.Errorf("Ready(fresh) = %v", err)
	}
	if err := Ready(nil, stale, &Grant{}, req); err != nil {
		t.Errorf("Ready(nothing granted) = %v", err)
	}
	if errors.Is(ErrStaleFacts, ErrNoFacts) || errors.Is(fail(CodeStaleFacts, "x"), ErrNoFacts) || !errors.Is(fail(CodeStaleFacts, "x"), ErrStaleFacts) {
		t.Error("error identity is wrong")
	}
}

func TestReleaseUnknownTarget(t *testing.T) {
	req := resolveT(t, []string{"name"}, "", ClientPolicy{Claims: allClaims})
	if out, err := Release(testFacts(), testMeta(), &Grant{Claims: []string{"name"}}, req, "access_token", releaseNow); err == nil || out != nil {
		t.Fatalf("Release(bad target) = %v, %v", out, err)
	}
}

// Facts never reach an error message.
func TestReleaseErrorsCarryNoFacts(t *testing.T) {
	req := resolveT(t, []string{"name", "address"}, "", ClientPolicy{Claims: allClaims})
	stale := testMeta()
	stale.Stale = true
	_, err := Release(testFacts(), stale, &Grant{Claims: []string{"name", "address"}}, req, TargetUserinfo, releaseNow)
	f := testFacts()
	for _, v := range []string{f.Name, f.FamilyName, f.Address, f.Birthdate} {
		if err == nil || strings.Contains(err.Error(), v) {
			t.Errorf("error %v carries a fact", err)
		}
	}
}

func TestDiscovery(t *testing.T) {
	d := Discovery()
	want := `{"claims_supported":["name","family_name","given_name","birthdate","age_over_18","age_over_20","gender","address"],
	  "claims_parameter_supported":true,"verified_claims_supported":true,"trust_frameworks_supported":["jp_jpki"],
	  "evidence_supported":["electronic_signature"],
	  "claims_in_verified_claims_supported":["name","family_name","given_name","birthdate","age_over_18","age_over_20","gender","address"]}`
	if !sameJSON(t, d, want) {
		t.Errorf("Discovery = %s", asJSON(t, d))
	}
	if !sameJSON(t, d.Map(), asJSON(t, d)) {
		t.Errorf("Map = %v differs from the struct", d.Map())
	}
	// Everything advertised can be released, and nothing else.
	facts := testFacts()
	for _, c := range d.ClaimsSupported {
		if _, ok := claimValue(facts, c, releaseNow); !ok {
			t.Errorf("advertised %s has no value", c)
		}
	}
	for _, c := range d.ClaimsInVerifiedClaimsSupported {
		if !IsClaim(c) {
			t.Errorf("advertised verified %s is not a claim", c)
		}
	}
	// Mutating the result does not change the next one.
	d.ClaimsSupported[0] = "x"
	if Discovery().ClaimsSupported[0] != ClaimName {
		t.Error("Discovery shares its slices")
	}
}

func TestClaimValue(t *testing.T) {
	f := testFacts()
	for _, tc := range []struct {
		claim string
		want  string
		ok    bool
	}{
		{ClaimName, `"渡志　花子"`, true},
		{ClaimAddress, `{"formatted":"東京都千代田区霞が関一丁目1番1号","country":"JP"}`, true},
		{ClaimAgeOver20, `false`, true},
		{ClaimAgeOver18, `true`, true},
		{ClaimVerifiedClaims, `null`, false},
		{"email", `null`, false},
	} {
		v, ok := ClaimValue(f, tc.claim, releaseNow)
		if ok != tc.ok || !sameJSON(t, v, tc.want) {
			t.Errorf("ClaimValue(%s) = %v, %v; want %s, %v", tc.claim, v, ok, tc.want, tc.ok)
		}
	}
	if _, ok := ClaimValue(nil, ClaimName, releaseNow); ok {
		t.Error("ClaimValue(nil facts) answered")
	}
}
