package idp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// Issue 5: "nothing leaves without consent", as a property over the real
// HTTP flow. Random RPs ask with random scopes and random claims
// parameters (id_token and userinfo members, essential flags, value
// constraints, verified_claims), sometimes under prompt=consent; random
// residents answer the screen with random ticks and alternatives, or
// deny. Every response (ID token, userinfo, introspection, the refreshed
// ID token) must carry exactly what consent.Release computes from the
// stored grant, only claims the grant holds, nothing the resident just
// unticked, and nothing at all when nothing was granted.
func TestConsentProperty(t *testing.T) {
	const cases = 50
	o := newConsentOP(t, store.NewMemory(), nil)
	ctx := context.Background()
	young := jpkisim.Facts{Name: "鈴木\u3000一郎", Gender: "1", Birthdate: "420100601", Address: "北海道札幌市中央区北一条西二丁目"}
	residents := []*browser{o.proofed(o.pki.wallet(t, factsTaro)), o.proofed(o.pki.wallet(t, young))}
	clients := []string{"web", "ida", "kids", "narrow", "ida"}
	scopes := []string{"name", "birthdate", "gender", "address", "profile", "offline_access"}
	r := rand.New(rand.NewPCG(5, 2026))

	var stats struct{ screens, skips, denials, released, empty int }
	for i := range cases {
		b := residents[r.IntN(len(residents))]
		acct := b.sessionAccount()
		a, err := o.s.accounts.Get(ctx, acct)
		if err != nil {
			t.Fatal(err)
		}
		client := clients[r.IntN(len(clients))]
		sc := pick(r, scopes, 0.4)
		claims := genClaimsParam(r, a, o.s.opts.Now())
		var extra []oauth2.AuthCodeOption
		if r.IntN(3) == 0 { // re-answer, so that grants keep changing
			extra = append(extra, oauth2.SetAuthURLParam("prompt", "consent"))
		}
		label := fmt.Sprintf("case %d: %s scopes=%v claims=%s extra=%d", i, client, sc, claims, len(extra))
		ar, conf, verifier := b.request(client, sc, claims, extra...)
		before := o.grantOf(acct, client)

		var unticked []string
		code, loc, page := b.get(authreq.ConsentURL(ar))
		switch code {
		case http.StatusSeeOther:
			stats.skips++
		case http.StatusOK:
			stats.screens++
			action, fields := pageForm(t, page, "consent")
			fields = randomChoice(r, fields)
			locked := map[string]bool{}
			for _, f := range fields {
				if f.Type == "checkbox" && !f.Disabled && !f.Checked {
					unticked = append(unticked, f.Value)
				}
				if f.Type == "checkbox" && f.Disabled {
					locked[f.Value] = true
				}
			}
			// An unticked name withholds its parts, unless the RP needs a
			// part and the screen showed it locked on its own line.
			if slices.Contains(unticked, consent.ClaimName) {
				for _, part := range []string{consent.ClaimFamilyName, consent.ClaimGivenName} {
					if !locked[part] {
						unticked = append(unticked, part)
					}
				}
			}
			v := submission(fields)
			if r.IntN(6) == 0 {
				v.Set("action", "deny")
				code, loc, _ = b.post(action, v)
				u, _ := url.Parse(loc)
				if code != http.StatusFound || u.Query().Get("error") != "access_denied" {
					t.Fatalf("%s: deny: %d %q", label, code, loc)
				}
				if after := o.grantOf(acct, client); !sameJSON(after, before) {
					t.Fatalf("%s: deny changed the grant", label)
				}
				stats.denials++
				continue
			}
			v.Set("action", "allow")
			if code, loc, page = b.post(action, v); code != http.StatusSeeOther {
				t.Fatalf("%s: consent post %d\n%s", label, code, page)
			}
		default:
			t.Fatalf("%s: consent page %d\n%s", label, code, page)
		}
		tok := o.tokens(conf, verifier, b.callback(loc))

		// What the grant allows, computed independently of the provider's
		// release path from the stored grant and the request.
		c, _ := o.s.clients.Get(ctx, client)
		g := o.grantOf(acct, client)
		cr, err := consent.ParseClaimsRequest(compact(t, claims))
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		req := consent.Resolve(allowedScopes(c, sc), cr, c.Policy())
		granted := consent.Effective(g, req)
		want := map[consent.Target]map[string]any{}
		for _, target := range []consent.Target{consent.TargetIDToken, consent.TargetUserinfo, consent.TargetIntrospection} {
			out, err := consent.Release(a.Facts, a.FactsMeta(), &consent.Grant{Claims: granted}, req, target, o.s.opts.Now())
			if err != nil {
				t.Fatalf("%s: release %s: %v", label, target, err)
			}
			want[target] = out
		}

		st, ui := o.userinfo(tok.AccessToken)
		if st != http.StatusOK {
			t.Fatalf("%s: userinfo %d", label, st)
		}
		got := map[string]map[string]any{
			"id_token":      personalOf(idClaims(t, tok)),
			"userinfo":      personalOf(ui),
			"introspection": personalOf(o.introspect(tok.AccessToken, client)),
		}
		check := func(where string, resp, exp map[string]any) {
			if !sameJSON(resp, exp) {
				t.Fatalf("%s: %s carries %v, consent.Release says %v (grant %+v)", label, where, resp, exp, g)
			}
			for _, name := range releasedNames(resp) {
				if !g.Has(name) {
					t.Fatalf("%s: %s releases %s, which the grant %v does not hold", label, where, name, g.Claims)
				}
				if slices.Contains(unticked, name) {
					t.Fatalf("%s: %s releases %s, which the resident just unticked", label, where, name)
				}
			}
			if g == nil || len(g.Claims) == 0 {
				if len(resp) != 0 {
					t.Fatalf("%s: %s releases %v with nothing granted", label, where, resp)
				}
			}
		}
		check("ID token", got["id_token"], want[consent.TargetIDToken])
		check("userinfo", got["userinfo"], want[consent.TargetUserinfo])
		check("introspection", got["introspection"], want[consent.TargetIntrospection])
		if len(got["userinfo"])+len(got["id_token"]) > 0 {
			stats.released++
		} else {
			stats.empty++
		}
		if tok.RefreshToken != "" {
			st, rt := o.refresh(client, tok.RefreshToken)
			if st != http.StatusOK {
				t.Fatalf("%s: refresh %d %v", label, st, rt)
			}
			check("refreshed ID token", personalOf(idTokenClaims(t, fmt.Sprint(rt["id_token"]))), want[consent.TargetIDToken])
		}
	}
	t.Logf("%d cases: %d screens, %d skipped, %d denied; %d released claims, %d released nothing",
		cases, stats.screens, stats.skips, stats.denials, stats.released, stats.empty)
	// The generator must exercise every branch, or the property says little.
	if stats.screens == 0 || stats.skips == 0 || stats.denials == 0 || stats.released == 0 || stats.empty == 0 {
		t.Fatalf("the random cases missed a branch: %+v", stats)
	}
}

// releasedNames are the claims a response releases, including those
// inside verified_claims (and the verified_claims item itself).
func releasedNames(resp map[string]any) []string {
	var out []string
	for k, v := range resp {
		out = append(out, k)
		if k != consent.ClaimVerifiedClaims {
			continue
		}
		elems, ok := v.([]any)
		if !ok {
			elems = []any{v}
		}
		for _, e := range elems {
			m, _ := e.(map[string]any)
			cl, _ := m["claims"].(map[string]any)
			for n := range cl {
				out = append(out, n)
			}
		}
	}
	return out
}

func pick[T any](r *rand.Rand, xs []T, p float64) []T {
	var out []T
	for _, x := range xs {
		if r.Float64() < p {
			out = append(out, x)
		}
	}
	return out
}

// genClaimsParam builds a random claims parameter ("" half the time)
// whose value constraints sometimes match the resident's facts.
func genClaimsParam(r *rand.Rand, a *account.Account, now time.Time) string {
	if r.IntN(2) == 0 {
		return ""
	}
	names := []string{"name", "family_name", "given_name", "birthdate", "age_over_18", "age_over_20", "gender", "address", "email", "sub", "acr"}
	spec := func(name string) any {
		if name == "sub" {
			return nil
		}
		if name == "acr" {
			return map[string]any{"essential": true, "values": []string{"aal3"}}
		}
		truth, _ := consent.ClaimValue(a.Facts, name, now)
		wrong := any("別の値")
		if b, ok := truth.(bool); ok {
			wrong = !b
		}
		switch r.IntN(7) {
		case 0, 1:
			return nil
		case 2:
			return map[string]any{"essential": true}
		case 3:
			return map[string]any{"value": truth}
		case 4:
			return map[string]any{"value": wrong}
		case 5:
			return map[string]any{"values": []any{wrong, truth}, "essential": r.IntN(2) == 0}
		}
		return map[string]any{"purpose": "ご本人確認のため"}
	}
	top := map[string]any{}
	for _, member := range []string{"id_token", "userinfo"} {
		if r.IntN(3) == 0 {
			continue
		}
		m := map[string]any{}
		for _, n := range pick(r, names, 0.3) {
			m[n] = spec(n)
		}
		if r.IntN(3) == 0 {
			vc := map[string]any{}
			for _, n := range pick(r, names[:8], 0.4) {
				vc[n] = spec(n)
			}
			if len(vc) == 0 {
				vc["name"] = nil
			}
			verification := map[string]any{"trust_framework": nil}
			switch r.IntN(4) {
			case 0:
				verification["trust_framework"] = map[string]any{"value": consent.TrustFrameworkJPKI}
			case 1:
				verification["trust_framework"] = map[string]any{"value": "eidas"}
			case 2:
				verification["evidence"] = []any{map[string]any{"type": map[string]any{"value": "electronic_signature"},
					"issuer": nil, "serial_number": nil, "created_at": nil}}
				verification["time"] = nil
			}
			m["verified_claims"] = map[string]any{"verification": verification, "claims": vc}
		}
		top[member] = m
	}
	b, _ := json.Marshal(top)
	return string(b)
}

// randomChoice ticks and unticks the free checkboxes and picks one radio
// per group at random.
func randomChoice(r *rand.Rand, fields []formField) []formField {
	out := slices.Clone(fields)
	groups := map[string][]int{}
	for i, f := range out {
		switch {
		case f.Type == "checkbox" && !f.Disabled:
			out[i].Checked = r.IntN(2) == 0
		case f.Type == "radio":
			groups[f.Name] = append(groups[f.Name], i)
		}
	}
	for _, idx := range groups {
		choice := idx[r.IntN(len(idx))]
		for _, i := range idx {
			out[i].Checked = i == choice
		}
	}
	return out
}

// compact is the stored form of a claims parameter.
func compact(t testing.TB, claims string) []byte {
	t.Helper()
	if claims == "" {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(claims)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// allowedScopes is the model of the scopes a client keeps: openid and the
// claim scopes it was configured for.
func allowedScopes(c *clients.Client, asked []string) []string {
	out := []string{"openid"}
	for _, sc := range asked {
		if slices.Contains(c.Scopes, sc) && slices.Contains(consent.ScopesSupported(), sc) && !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out
}
