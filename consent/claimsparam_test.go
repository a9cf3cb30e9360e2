package consent

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseClaimsRequest(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    string
		check func(t *testing.T, cr *ClaimsRequest)
	}{
		{"absent", ``, func(t *testing.T, cr *ClaimsRequest) {
			if cr != nil {
				t.Fatalf("got %+v, want nil", cr)
			}
		}},
		{"empty object", `{}`, func(t *testing.T, cr *ClaimsRequest) {
			if cr == nil || cr.IDToken.Claims != nil || cr.Userinfo.Claims != nil {
				t.Fatalf("got %+v", cr)
			}
		}},
		{"OIDC Core 5.5 example", `{
		  "userinfo": {"given_name": {"essential": true}, "nickname": null,
		    "email": {"essential": true}, "email_verified": {"essential": true},
		    "picture": null, "http://example.info/claims/groups": null},
		  "id_token": {"auth_time": {"essential": true},
		    "acr": {"values": ["urn:mace:incommon:iap:silver"]}}}`, func(t *testing.T, cr *ClaimsRequest) {
			if s := cr.Userinfo.Claims["given_name"]; !s.Essential {
				t.Errorf("given_name = %+v", s)
			}
			if s, ok := cr.Userinfo.Claims["nickname"]; !ok || !s.isZero() {
				t.Errorf("nickname = %+v, %v", s, ok)
			}
			vals, ess, ok := cr.ACR()
			if !ok || ess || !reflect.DeepEqual(vals, []string{"urn:mace:incommon:iap:silver"}) {
				t.Errorf("ACR = %v %v %v", vals, ess, ok)
			}
		}},
		{"value and values", `{"id_token":{"sub":{"value":"abc"},"gender":{"values":["female","not_known"]},"age_over_20":{"value":true}}}`, func(t *testing.T, cr *ClaimsRequest) {
			if sub, ok := cr.Subject(); !ok || sub != "abc" {
				t.Errorf("Subject = %q %v", sub, ok)
			}
			if s := cr.IDToken.Claims["gender"]; !reflect.DeepEqual(s.Values, []any{"female", "not_known"}) {
				t.Errorf("gender = %+v", s)
			}
			if s := cr.IDToken.Claims["age_over_20"]; s.Value != true {
				t.Errorf("age_over_20 = %+v", s)
			}
		}},
		{"null members and fields", `{"id_token":null,"userinfo":{"name":{"essential":null,"value":null,"values":null,"purpose":null}}}`, func(t *testing.T, cr *ClaimsRequest) {
			if s, ok := cr.Userinfo.Claims["name"]; !ok || !s.isZero() {
				t.Errorf("name = %+v", s)
			}
		}},
		{"unknown members ignored", `{"future":{"x":1},"userinfo":{"name":{"essential":true,"x-extension":[1,2]}}}`, func(t *testing.T, cr *ClaimsRequest) {
			if !cr.Userinfo.Claims["name"].Essential {
				t.Errorf("name = %+v", cr.Userinfo.Claims["name"])
			}
		}},
		{"purpose", `{"userinfo":{"birthdate":{"purpose":"年齢確認のため"}}}`, func(t *testing.T, cr *ClaimsRequest) {
			if cr.Userinfo.Claims["birthdate"].Purpose != "年齢確認のため" {
				t.Errorf("purpose = %q", cr.Userinfo.Claims["birthdate"].Purpose)
			}
		}},
		{"verified_claims object", `{"userinfo":{"verified_claims":{
		    "verification":{"trust_framework":{"value":"jp_jpki"},"time":{"max_age":3600},
		      "evidence":[{"type":{"value":"electronic_signature"},"issuer":null,"serial_number":null,"x":null}]},
		    "claims":{"name":null,"birthdate":{"essential":true}}}}}`, func(t *testing.T, cr *ClaimsRequest) {
			if len(cr.Userinfo.Verified) != 1 {
				t.Fatalf("verified = %+v", cr.Userinfo.Verified)
			}
			v := cr.Userinfo.Verified[0]
			if v.Verification.TrustFramework.Value != "jp_jpki" || v.Verification.Time == nil || v.Verification.Time.MaxAge != 3600 {
				t.Errorf("verification = %+v", v.Verification)
			}
			if len(v.Verification.Evidence) != 1 || !reflect.DeepEqual(v.Verification.Evidence[0].Fields, []string{"issuer", "serial_number"}) ||
				v.Verification.Evidence[0].Type.Value != "electronic_signature" {
				t.Errorf("evidence = %+v", v.Verification.Evidence)
			}
			if !v.Claims["birthdate"].Essential {
				t.Errorf("claims = %+v", v.Claims)
			}
			if _, ok := cr.Userinfo.Claims["verified_claims"]; ok {
				t.Error("verified_claims also parsed as a plain claim")
			}
		}},
		{"verified_claims array, null time", `{"id_token":{"verified_claims":[
		    {"verification":{"trust_framework":null,"time":null},"claims":{"name":null}},
		    {"verification":{},"claims":{"address":null}}]}}`, func(t *testing.T, cr *ClaimsRequest) {
			if len(cr.IDToken.Verified) != 2 || cr.IDToken.Verified[0].Verification.Time == nil || cr.IDToken.Verified[1].Verification.Time != nil {
				t.Errorf("verified = %+v", cr.IDToken.Verified)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cr, err := ParseClaimsRequest([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cr)
		})
	}
}

func TestParseClaimsRequestRejects(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 20) + `1` + strings.Repeat(`}`, 20)
	many := `{"userinfo":{` + strings.Repeat(`"c":null,`, 0)
	for i := range 65 {
		many += `"c` + strings.Repeat("x", i) + `":null,`
	}
	many = strings.TrimSuffix(many, ",") + `}}`
	for _, tc := range []struct{ name, in string }{
		{"not JSON", `{"userinfo":`},
		{"garbage", `claims`},
		{"top-level array", `[]`},
		{"top-level string", `"x"`},
		{"top-level null", `null`},
		{"trailing value", `{}{}`},
		{"trailing garbage", `{} x`},
		{"duplicate top key", `{"userinfo":{},"userinfo":{"name":null}}`},
		{"duplicate claim", `{"userinfo":{"name":null,"name":{"essential":true}}}`},
		{"duplicate nested", `{"userinfo":{"name":{"essential":true,"essential":false}}}`},
		{"member not object", `{"userinfo":["name"]}`},
		{"member string", `{"id_token":"name"}`},
		{"claim not object", `{"userinfo":{"name":true}}`},
		{"claim array", `{"userinfo":{"name":[]}}`},
		{"essential string", `{"userinfo":{"name":{"essential":"true"}}}`},
		{"values not array", `{"userinfo":{"gender":{"values":"male"}}}`},
		{"too many values", `{"userinfo":{"gender":{"values":[` + strings.TrimSuffix(strings.Repeat(`"a",`, 33), ",") + `]}}}`},
		{"purpose not string", `{"userinfo":{"name":{"purpose":5}}}`},
		{"purpose too short", `{"userinfo":{"name":{"purpose":"ab"}}}`},
		{"purpose too long", `{"userinfo":{"name":{"purpose":"` + strings.Repeat("あ", 301) + `"}}}`},
		{"too deep", `{"userinfo":{"name":{"value":` + deep + `}}}`},
		{"too many claims", many},
		{"too large", `{"userinfo":{"name":{"value":"` + strings.Repeat("a", MaxClaimsRequestSize) + `"}}}`},
		{"verified not object", `{"userinfo":{"verified_claims":"yes"}}`},
		{"verified null", `{"userinfo":{"verified_claims":null}}`},
		{"verified empty array", `{"userinfo":{"verified_claims":[]}}`},
		{"verified array of strings", `{"userinfo":{"verified_claims":["x"]}}`},
		{"verified too many", `{"userinfo":{"verified_claims":[` + strings.TrimSuffix(strings.Repeat(`{"verification":{},"claims":{"name":null}},`, 5), ",") + `]}}`},
		{"verified lacks verification", `{"userinfo":{"verified_claims":{"claims":{"name":null}}}}`},
		{"verified lacks claims", `{"userinfo":{"verified_claims":{"verification":{}}}}`},
		{"verified empty claims", `{"userinfo":{"verified_claims":{"verification":{},"claims":{}}}}`},
		{"verified null claims", `{"userinfo":{"verified_claims":{"verification":{},"claims":null}}}`},
		{"verification null", `{"userinfo":{"verified_claims":{"verification":null,"claims":{"name":null}}}}`},
		{"trust_framework string", `{"userinfo":{"verified_claims":{"verification":{"trust_framework":"jp_jpki"},"claims":{"name":null}}}}`},
		{"time string", `{"userinfo":{"verified_claims":{"verification":{"time":"now"},"claims":{"name":null}}}}`},
		{"max_age negative", `{"userinfo":{"verified_claims":{"verification":{"time":{"max_age":-1}},"claims":{"name":null}}}}`},
		{"max_age fraction", `{"userinfo":{"verified_claims":{"verification":{"time":{"max_age":1.5}},"claims":{"name":null}}}}`},
		{"max_age string", `{"userinfo":{"verified_claims":{"verification":{"time":{"max_age":"60"}},"claims":{"name":null}}}}`},
		{"max_age huge", `{"userinfo":{"verified_claims":{"verification":{"time":{"max_age":1e300}},"claims":{"name":null}}}}`},
		{"evidence object", `{"userinfo":{"verified_claims":{"verification":{"evidence":{"type":null}},"claims":{"name":null}}}}`},
		{"evidence entry string", `{"userinfo":{"verified_claims":{"verification":{"evidence":["x"]},"claims":{"name":null}}}}`},
		{"evidence too many", `{"userinfo":{"verified_claims":{"verification":{"evidence":[{},{},{},{},{}]},"claims":{"name":null}}}}`},
		{"evidence field bad", `{"userinfo":{"verified_claims":{"verification":{"evidence":[{"issuer":true}]},"claims":{"name":null}}}}`},
		{"verified claim bad", `{"userinfo":{"verified_claims":{"verification":{},"claims":{"name":{"essential":1}}}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cr, err := ParseClaimsRequest([]byte(tc.in))
			if err == nil {
				t.Fatalf("accepted: %+v", cr)
			}
			if CodeOf(err) != CodeInvalidRequest {
				t.Fatalf("error %v has code %q, want invalid_request", err, CodeOf(err))
			}
			if cr != nil {
				t.Fatalf("returned a request with the error: %+v", cr)
			}
		})
	}
}

// Error details name structure, never the values an RP sent (which could
// be a resident's data echoed back) nor long or control-character names.
func TestParseErrorsDoNotEcho(t *testing.T) {
	for _, in := range []string{
		`{"userinfo":{"name":{"purpose":"x"}}}`,
		`{"userinfo":{"山田太郎\n":{"essential":"yes"}}}`,
		`{"userinfo":{"` + strings.Repeat("z", 100) + `":{"essential":"yes"}}}`,
		`{"userinfo":{"address":{"value":"東京都千代田区","essential":3}}}`,
	} {
		_, err := ParseClaimsRequest([]byte(in))
		if err == nil {
			t.Fatalf("accepted %s", in)
		}
		for _, leak := range []string{"山田", "千代田", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "\n"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("error %q echoes %q", err, leak)
			}
		}
	}
}

func TestClaimsRequestRoundTrip(t *testing.T) {
	for _, in := range []string{
		`{"userinfo":{"name":null,"gender":{"essential":true,"values":[]},"age_over_20":{"value":true,"purpose":"お酒の販売"}}}`,
		`{"id_token":{"acr":{"values":["a","b"],"essential":true},"verified_claims":[
		   {"verification":{"trust_framework":{"values":["jp_jpki"]},"time":{"max_age":60,"essential":true},"evidence":[]},"claims":{"name":null}},
		   {"verification":{"evidence":[{"type":{"value":"electronic_signature"},"created_at":null,"signature_type":null}]},"claims":{"address":{"essential":true}}}]}}`,
	} {
		a, err := ParseClaimsRequest([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		out, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ParseClaimsRequest(out)
		if err != nil {
			t.Fatalf("re-parse %s: %v", out, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("round trip changed the request:\n%+v\n%+v\n(%s)", a, b, out)
		}
		// Stored typed inside a record and read back: the same request.
		type record struct {
			Claims *ClaimsRequest `json:"claims,omitempty"`
		}
		rec, err := json.Marshal(record{Claims: a})
		if err != nil {
			t.Fatal(err)
		}
		var got record
		if err := json.Unmarshal(rec, &got); err != nil {
			t.Fatalf("unmarshal stored %s: %v", rec, err)
		}
		if !reflect.DeepEqual(a, got.Claims) {
			t.Errorf("stored request changed:\n%+v\n%+v", a, got.Claims)
		}
	}
}

// A stored claims request is read back through the parameter's own
// validation: a record that no longer passes is an error, not a request.
func TestClaimsRequestUnmarshalRejects(t *testing.T) {
	for _, in := range []string{
		`{"claims":"x"}`,
		`{"claims":{"userinfo":{"name":{"essential":"yes"}}}}`,
		`{"claims":{"userinfo":{"a":null,"a":null}}}`,
		`{"claims":[]}`,
	} {
		var rec struct {
			Claims *ClaimsRequest `json:"claims"`
		}
		if err := json.Unmarshal([]byte(in), &rec); err == nil {
			t.Errorf("accepted %s: %+v", in, rec.Claims)
		}
	}
}

func TestCheckJSONAcceptsNesting(t *testing.T) {
	// Objects inside arrays inside objects, and keys repeated in sibling
	// objects, are fine.
	in := `{"a":[{"k":1},{"k":2}],"b":{"k":[[],{}]},"c":"}"}`
	if err := checkJSON([]byte(in)); err != nil {
		t.Fatal(err)
	}
}

// A stored Requested is read back through the same validation.
func TestVerificationUnmarshalRejects(t *testing.T) {
	for _, in := range []string{
		`{"userinfo":{"verified_claims":[{"verification":null,"claims":{"name":null}}]}}`,
		`{"userinfo":{"verified_claims":[{"verification":{"time":{"max_age":-5}},"claims":{"name":null}}]}}`,
		`{"userinfo":{"verified_claims":[{"verification":{"evidence":"x"},"claims":{"name":null}}]}}`,
		`{"userinfo":{"verified_claims":[{"verification":[],"claims":{"name":null}}]}}`,
	} {
		var r Requested
		if err := json.Unmarshal([]byte(in), &r); err == nil {
			t.Errorf("accepted %s: %+v", in, r)
		}
	}
	var r Requested
	ok := `{"userinfo":{"verified_claims":[{"verification":{"trust_framework":{"value":"jp_jpki"},"time":null},"claims":{"name":null}}]}}`
	if err := json.Unmarshal([]byte(ok), &r); err != nil || r.Userinfo.Verified[0].Verification.Time == nil {
		t.Errorf("valid stored request: %+v, %v", r, err)
	}
}
