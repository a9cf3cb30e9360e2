package idp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
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
	if err := o.s.accounts.Put(context.Background(), &account.Account{ID: id, Facts: facts}); err != nil {
		t.Fatal(err)
	}
}

// personal lists the personal claims present in a claim set: every
// claim the consent catalogue can release, and verified_claims.
func personal(m map[string]any) []string {
	var out []string
	for _, c := range consent.Catalogue() {
		if _, ok := m[c.Name]; ok {
			out = append(out, c.Name)
		}
	}
	if _, ok := m[consent.ClaimVerifiedClaims]; ok {
		out = append(out, consent.ClaimVerifiedClaims)
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

// Claims are released only when both the request asks for them and the
// resident granted them. Scope claims go to userinfo (and introspection,
// which answers for the access token) and stay out of the ID token
// unless the client opted in (OIDC Core §5.4); refreshed tokens release
// the same.
func TestClaimsRelease(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), func(o *Options) {
		o.Clients = append(o.Clients, &clients.Client{ID: "idtok", DisplayName: "ID token reader", AuthMethod: clients.AuthSecretBasic,
			SecretHash: fixtureSecret, RedirectURIs: []string{"https://idtok.example/cb"},
			Scopes: []string{"name", "birthdate", "gender", "address", "profile", "offline_access"}, ScopeClaimsInIDToken: true})
	})
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
		want    []string // userinfo and introspection
		wantID  []string // ID token
	}{
		{"name and birthdate granted", "web", testAccount, []string{"name", "birthdate"},
			[]string{"name", "family_name", "given_name", "birthdate"}, sorted("name", "family_name", "given_name", "birthdate"), sorted()},
		{"birthdate only granted", "web", testAccount, []string{"name", "birthdate"}, []string{"birthdate"}, sorted("birthdate"), sorted()},
		{"nothing granted", "web", testAccount, []string{"name", "birthdate", "gender", "address"}, nil, sorted(), sorted()},
		{"granted but not requested", "web", testAccount, []string{"gender"}, []string{"name", "gender"}, sorted("gender"), sorted()},
		{"address", "web", testAccount, []string{"address"}, []string{"address"}, sorted("address"), sorted()},
		{"profile", "web", testAccount, []string{"profile"}, []string{"name", "family_name", "given_name", "birthdate", "gender"},
			sorted("name", "family_name", "given_name", "birthdate", "gender"), sorted()},
		{"client not allowed", "narrow", testAccount, []string{"name", "profile", "address"}, []string{"name", "address"}, sorted(), sorted()},
		{"account without facts", "web", testAccount2, []string{"name"}, []string{"name"}, sorted(), sorted()},
		{"ID token opt-in", "idtok", testAccount, []string{"name", "address"}, []string{"name", "address"},
			sorted("name", "address"), sorted("name", "address")},
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
			if got := sorted(personal(ic)...); !slices.Equal(got, tc.wantID) {
				t.Errorf("ID token claims %v, want %v", got, tc.wantID)
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
			for _, c := range tc.wantID {
				if ic[c] == nil || !sameJSON(ic[c], uc[c]) {
					t.Errorf("%s differs: %v vs %v", c, ic[c], uc[c])
				}
			}
			if slices.Contains(tc.want, "name") && uc["name"] != testFacts.Name {
				t.Errorf("name %v", uc["name"])
			}
			if slices.Contains(tc.want, "address") {
				a, _ := uc["address"].(map[string]any)
				if a["formatted"] != testFacts.Address || a["country"] != "JP" {
					t.Errorf("address %v", a)
				}
			}
			in := o.introspect(tok.AccessToken, tc.client)
			if got := sorted(personal(in)...); !slices.Equal(got, tc.want) {
				t.Errorf("introspection claims %v, want %v", got, tc.want)
			}
			for _, c := range tc.want {
				if !sameJSON(in[c], uc[c]) {
					t.Errorf("introspection %s differs from userinfo", c)
				}
			}
			if in["acr"] != "aal3" || in["sub"] != idt.Subject {
				t.Errorf("introspection acr %v sub %v", in["acr"], in["sub"])
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
			if got := sorted(personal(rc)...); !slices.Equal(got, tc.wantID) || idt2.Subject != idt.Subject {
				t.Errorf("refreshed ID token claims %v sub %q", got, idt2.Subject)
			}
			st, uc2 := o.userinfo(r["access_token"].(string))
			if got := sorted(personal(uc2)...); st != http.StatusOK || !slices.Equal(got, tc.want) {
				t.Errorf("userinfo after refresh %d %v", st, got)
			}
		})
	}
}

func sameJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// requestedClaims (the login page's and wallet's list) follows the
// consent request: scopes and the claims parameter under the client's
// policy, in display order.
func TestRequestedClaims(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	for _, tc := range []struct {
		client string
		scopes []string
		claims string
		want   []string
	}{
		{"web", []string{"openid"}, "", nil},
		{"web", []string{"openid", "birthdate"}, "", []string{"birthdate"}},
		// The parts of the name are one line with it.
		{"web", []string{"openid", "profile", "name"}, "", []string{"name", "birthdate", "gender"}},
		{"web", []string{"openid"}, `{"id_token":{"address":{"essential":true}},"userinfo":{"name":null}}`, []string{"name", "address"}},
		{"web", []string{"openid"}, `{"userinfo":{"email":null,"sub":null}}`, nil}, // unknown and protocol claims
		{"narrow", []string{"openid", "name"}, `{"userinfo":{"name":null}}`, nil},  // not allowed for the client
		{"nope", []string{"openid", "name"}, "", nil},                              // unknown client
	} {
		if got := requestedAt(t, o, tc.client, tc.scopes, tc.claims); !slices.Equal(got, tc.want) {
			t.Errorf("%s %v %s: %v, want %v", tc.client, tc.scopes, tc.claims, got, tc.want)
		}
	}
}

// requestedAt sends /authorize and lists what the stored request asks
// for, in display order: nil when the request is refused.
func requestedAt(t *testing.T, o *testOP, client string, scopes []string, claims string) []string {
	t.Helper()
	q := url.Values{"client_id": {client}, "response_type": {"code"}, "scope": {strings.Join(scopes, " ")},
		"redirect_uri": {"https://rp.example/cb"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
		"code_challenge_method": {"S256"}}
	if client == "narrow" {
		q.Set("redirect_uri", "https://narrow.example/cb")
	}
	if claims != "" {
		q.Set("claims", claims)
	}
	res := o.get(authorizePath + "?" + q.Encode())
	loc, _ := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || loc == nil || loc.Path != authreq.LoginPath {
		return nil
	}
	ar, err := o.s.requests.Load(context.Background(), loc.Query().Get("id"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, it := range ar.Requested.Items() {
		out = append(out, it.Claim)
	}
	return out
}
