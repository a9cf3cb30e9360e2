package consent

import (
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"reflect"
	"slices"
	"testing"
)

var claimsSeeds = []string{
	``,
	`{}`,
	`{"userinfo":{"given_name":{"essential":true},"nickname":null,"email":{"essential":true}},"id_token":{"auth_time":{"essential":true},"acr":{"values":["urn:mace:incommon:iap:silver"]}}}`,
	`{"id_token":{"birthdate":{"essential":true,"purpose":"年齢確認のため"},"age_over_20":null}}`,
	`{"userinfo":{"gender":{"values":["female","male"]},"address":{"value":{"formatted":"x","country":"JP"}}}}`,
	`{"userinfo":{"verified_claims":{"verification":{"trust_framework":{"value":"jp_jpki"},"time":{"max_age":3600},"evidence":[{"type":{"value":"electronic_signature"},"issuer":null,"serial_number":null,"created_at":null,"signature_type":null}]},"claims":{"name":null,"birthdate":{"essential":true}}}}}`,
	`{"id_token":{"verified_claims":[{"verification":{},"claims":{"name":null}},{"verification":{"time":null},"claims":{"address":null}}]}}`,
	`{"userinfo":{"name":null,"name":null}}`,
	`{"userinfo":{"name":{"essential":"yes"}}}`,
	`{"a":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}`,
	`{"userinfo":{"verified_claims":{"verification":{"time":{"max_age":1.5}},"claims":{}}}}`,
	`[]`, `null`, `{}{}`, `{"userinfo":`,
}

// FuzzParseClaimsRequest: never panics; either a clean invalid_request or
// a request that survives a JSON round trip and flows through Resolve,
// Items and Decide.
func FuzzParseClaimsRequest(f *testing.F) {
	for _, s := range claimsSeeds {
		f.Add([]byte(s))
	}
	full := ClientPolicy{Claims: allClaims, Verified: true, AgeAlternatives: []string{ClaimAgeOver18, ClaimAgeOver20}}
	f.Fuzz(func(t *testing.T, data []byte) {
		cr, err := ParseClaimsRequest(data)
		if err != nil {
			if CodeOf(err) != CodeInvalidRequest || cr != nil {
				t.Fatalf("error %v (code %q) with %v", err, CodeOf(err), cr)
			}
			return
		}
		if cr == nil {
			if len(data) != 0 {
				t.Fatal("nil request for non-empty input")
			}
			return
		}
		out, err := json.Marshal(cr)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if len(out) <= MaxClaimsRequestSize {
			back, err := ParseClaimsRequest(out)
			if err != nil {
				t.Fatalf("re-parse of %s: %v", out, err)
			}
			if !reflect.DeepEqual(cr, back) {
				t.Fatalf("round trip changed the request:\n%+v\n%+v", cr, back)
			}
		}
		req := Resolve([]string{"openid", "profile"}, cr, full)
		items := req.Items()
		d := Decide(nil, req, false)
		if len(d.Items) != len(items) {
			t.Fatalf("no grant, yet %d of %d items asked", len(d.Items), len(items))
		}
		var allow []string
		for _, it := range items {
			allow = append(allow, it.Claim)
		}
		g, err := Apply(nil, req, d, Choice{Allow: allow}, t0)
		if err != nil {
			t.Fatalf("Apply all: %v", err)
		}
		for _, tg := range []Target{TargetIDToken, TargetUserinfo, TargetIntrospection} {
			if _, err := Release(testFacts(), testMeta(), g, req, tg, releaseNow); err != nil {
				t.Fatalf("Release: %v", err)
			}
		}
	})
}

// FuzzReleaseProperty drives the property check of property_test.go
// from fuzzed seeds, so the fuzzer can hunt for a request and choice that
// leak a claim.
func FuzzReleaseProperty(f *testing.F) {
	for _, s := range [][2]uint64{{1, 2}, {20250401, 5}, {0, 0}, {^uint64(0), 42}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		r := rand.New(rand.NewPCG(a, b))
		var st propStats
		for range 8 {
			checkReleaseProperty(t, r, &st)
		}
	})
}

// FuzzApplyForm: any consent form against any request never panics, and a
// grant it accepts holds only claims the request offered.
func FuzzApplyForm(f *testing.F) {
	f.Add(`{"userinfo":{"birthdate":{"essential":true},"age_over_20":null,"gender":null}}`, "claim=birthdate&as.birthdate=age_over_20")
	f.Add(`{"userinfo":{"name":{"essential":true}}}`, "claim=gender")
	f.Add(``, "claim=name&claim=name&as.name=name")
	f.Add(`{"id_token":{"verified_claims":{"verification":{},"claims":{"address":null}}}}`, "claim=verified_claims&claim=address")
	pol := ClientPolicy{Claims: allClaims, Verified: true, AgeAlternatives: []string{ClaimAgeOver18}}
	f.Fuzz(func(t *testing.T, claims, form string) {
		cr, err := ParseClaimsRequest([]byte(claims))
		if err != nil {
			return
		}
		v, err := url.ParseQuery(form)
		if err != nil {
			return
		}
		c, err := ChoiceFromForm(v)
		if err != nil {
			if CodeOf(err) != CodeInvalidChoice {
				t.Fatalf("ChoiceFromForm error %v", err)
			}
			return
		}
		req := Resolve([]string{"name"}, cr, pol)
		d := Decide(nil, req, false)
		g, err := Apply(nil, req, d, c, t0)
		if err != nil {
			if code := CodeOf(err); code != CodeInvalidChoice && code != CodeEssentialRefused {
				t.Fatalf("Apply error %v", err)
			}
			return
		}
		offered := []string{}
		for _, it := range req.Items() {
			offered = append(offered, it.Claim)
			offered = append(offered, it.Alternatives...)
			offered = append(offered, it.Includes...)
			offered = append(offered, it.Parts...)
		}
		for _, cl := range g.Claims {
			if !slices.Contains(offered, cl) {
				t.Fatalf("grant holds %q, which was not offered", cl)
			}
		}
	})
}
