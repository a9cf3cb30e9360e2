package idp

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"testing"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
)

var testFacts = &pkibridge.Attributes{
	Name: "山田\u3000太郎", FamilyName: "山田", GivenName: "太郎",
	Birthdate: "1980-12-31", BirthdateEra: 3, Gender: "male", GenderCode: "1",
	Address: "東京都千代田区霞が関一丁目1番1号",
}

func putAccount(t testing.TB, o *testOP, id string, facts *pkibridge.Attributes) {
	t.Helper()
	b, err := json.Marshal(&Account{ID: id, Facts: facts})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.kv.Set(context.Background(), accountKey(id), b, 0); err != nil {
		t.Fatal(err)
	}
}

// personal lists the personal claims present in a claim set.
func personal(m map[string]any) []string {
	var out []string
	for _, c := range []string{claimName, claimFamilyName, claimGivenName, claimBirthdate, claimGender, claimAddress} {
		if _, ok := m[c]; ok {
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

func sorted(s ...string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	if out == nil {
		out = []string{}
	}
	return out
}

// Claims are released only when both a scope asks for them and the
// resident granted them, in the ID token and userinfo alike.
func TestClaimsRelease(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	putAccount(t, o, testAccount, testFacts)
	putAccount(t, o, testAccount2, nil) // signed in, never proofed
	ctx := o.ctx()
	prov, err := gooidc.NewProvider(ctx, o.issuer)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		client  string
		account string
		scopes  []string
		granted []string
		want    []string
	}{
		{"name and birthdate granted", "web", testAccount, []string{"name", "birthdate"},
			[]string{"name", "family_name", "given_name", "birthdate"}, sorted("name", "family_name", "given_name", "birthdate")},
		{"birthdate only granted", "web", testAccount, []string{"name", "birthdate"}, []string{"birthdate"}, sorted("birthdate")},
		{"nothing granted", "web", testAccount, []string{"name", "birthdate", "gender", "address"}, nil, sorted()},
		{"granted but not requested", "web", testAccount, []string{"gender"}, []string{"name", "gender"}, sorted("gender")},
		{"address", "web", testAccount, []string{"address"}, []string{"address"}, sorted("address")},
		{"profile", "web", testAccount, []string{"profile"}, []string{"name", "family_name", "given_name", "birthdate", "gender"},
			sorted("name", "family_name", "given_name", "birthdate", "gender")},
		{"client not allowed", "narrow", testAccount, []string{"name", "profile", "address"}, []string{"name", "address"}, sorted()},
		{"account without facts", "web", testAccount2, []string{"name"}, []string{"name"}, sorted()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := o.loginTokens(o.oauth(tc.client, append(tc.scopes, "offline_access")...), tc.account, tc.granted)
			idt, err := prov.Verifier(&gooidc.Config{ClientID: tc.client}).Verify(ctx, tok.Extra("id_token").(string))
			if err != nil {
				t.Fatal(err)
			}
			var ic map[string]any
			_ = idt.Claims(&ic)
			if got := sorted(personal(ic)...); !slices.Equal(got, tc.want) {
				t.Errorf("ID token claims %v, want %v", got, tc.want)
			}
			st, uc := o.userinfo(tok.AccessToken)
			if st != http.StatusOK {
				t.Fatalf("userinfo %d", st)
			}
			if got := sorted(personal(uc)...); !slices.Equal(got, tc.want) {
				t.Errorf("userinfo claims %v, want %v", got, tc.want)
			}
			if uc["sub"] != idt.Subject {
				t.Errorf("userinfo sub differs")
			}
			for _, c := range tc.want {
				if ic[c] == nil || !sameJSON(ic[c], uc[c]) {
					t.Errorf("%s differs: %v vs %v", c, ic[c], uc[c])
				}
			}
			if slices.Contains(tc.want, "name") && ic["name"] != testFacts.Name {
				t.Errorf("name %v", ic["name"])
			}
			if slices.Contains(tc.want, "address") {
				a, _ := ic["address"].(map[string]any)
				if a["formatted"] != testFacts.Address || a["country"] != "JP" {
					t.Errorf("address %v", a)
				}
			}
			if in := o.introspect(tok.AccessToken, tc.client); len(personal(in)) != 0 {
				t.Errorf("introspection releases %v", personal(in))
			}
			if tok.RefreshToken == "" {
				return
			}
			st, r := o.refresh(tc.client, tok.RefreshToken)
			if st != http.StatusOK {
				t.Fatalf("refresh %d %v", st, r)
			}
			idt2, err := prov.Verifier(&gooidc.Config{ClientID: tc.client}).Verify(ctx, r["id_token"].(string))
			if err != nil {
				t.Fatal(err)
			}
			var rc map[string]any
			_ = idt2.Claims(&rc)
			if got := sorted(personal(rc)...); !slices.Equal(got, tc.want) || idt2.Subject != idt.Subject {
				t.Errorf("refreshed ID token claims %v sub %q", got, idt2.Subject)
			}
		})
	}
}

func sameJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestClaimsForScopes(t *testing.T) {
	tests := []struct {
		scopes []string
		want   []string
	}{
		{nil, nil},
		{[]string{"openid", "offline_access"}, nil},
		{[]string{"name"}, []string{"name", "family_name", "given_name"}},
		{[]string{"profile", "name"}, []string{"name", "family_name", "given_name", "birthdate", "gender"}},
		{[]string{"address", "email", "phone"}, []string{"address"}},
	}
	for _, tc := range tests {
		if got := claimsForScopes(tc.scopes); !slices.Equal(got, tc.want) {
			t.Errorf("%v: %v, want %v", tc.scopes, got, tc.want)
		}
	}
	ar := &AuthRequest{Scopes: []string{"openid", "birthdate"}}
	o := &Server{}
	if got := o.requestedClaims(ar); !slices.Equal(got, []string{"birthdate"}) {
		t.Errorf("requestedClaims %v", got)
	}
}

// The library passes profile/address/offline_access for any client;
// grantedScopes removes what a client was not configured for.
func TestGrantedScopes(t *testing.T) {
	c := &Client{Scopes: []string{"name", "offline_access", "email"}}
	got := grantedScopes(c, []string{"openid", "name", "profile", "address", "offline_access", "email", "name"})
	if !slices.Equal(got, []string{"openid", "name", "offline_access"}) {
		t.Fatalf("%v", got)
	}
}
