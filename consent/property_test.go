package consent

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// This file checks the promise of the package as a property: over random
// requests (scopes, claims parameter with essential and optional claims,
// value constraints, verified_claims), random client policies, random
// earlier grants and random consent choices, every released claim in the
// ID token, userinfo and introspection is granted, requested for that
// target and allowed, and every such claim the facts can supply (and the
// RP's value constraint admits) is released. The model below recomputes
// "requested" from the generated inputs, not from Resolve.
//
// It also checks what the resident meant, which no grant bookkeeping can
// define: a whole withheld is withheld with its parts. The name holds the
// family and the given name; a resident who unticks the name's line has
// said "not my name", and neither part may leave unless the resident
// ticked that part on a line of its own (an essential part the RP asks for
// separately), on that screen or a later one, or sees it listed there as
// shared before on a line of its own.

// genSpec is the generator's own record of one claim request.
type genSpec struct {
	essential bool
	value     any   // nil: none
	values    []any // nil: none
}

func (s genSpec) json() any {
	m := map[string]any{}
	if s.essential {
		m["essential"] = true
	}
	if s.value != nil {
		m["value"] = s.value
	}
	if s.values != nil {
		m["values"] = s.values
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

type genVerified struct {
	tf       any // nil or a trust framework value constraint
	time     int // 0 none, 1 null, 2 max_age short, 3 max_age long
	evidence int // 0 none, 1 electronic_signature, 2 document
	claims   map[string]genSpec
}

type genCase struct {
	scopes   []string
	member   map[Target]map[string]genSpec
	verified map[Target][]genVerified
	policy   ClientPolicy
	now      time.Time
}

var (
	propScopes = []string{"openid", "name", "birthdate", "gender", "address", "profile", "email", "offline_access"}
	propNames  = []string{ClaimName, ClaimFamilyName, ClaimGivenName, ClaimBirthdate, ClaimAgeOver18, ClaimAgeOver20, ClaimGender, ClaimAddress, "email", "sub", "acr"}
	propAges   = []string{ClaimAgeOver18, ClaimAgeOver20}
	// Around the test person's 18th birthday (2024-04-01 JST) and later.
	propNows = []time.Time{beforeBirthday, beforeBirthday.Add(time.Minute), releaseNow, time.Date(2026, 4, 1, 0, 0, 0, 0, jst)}
)

func subset[T any](r *rand.Rand, xs []T, p float64) []T {
	var out []T
	for _, x := range xs {
		if r.Float64() < p {
			out = append(out, x)
		}
	}
	return out
}

// trueValue is the test person's value of a claim at now.
func trueValue(name string, now time.Time) any {
	v, _ := claimValue(testFacts(), name, now)
	return v
}

func genClaimSpec(r *rand.Rand, name string, now time.Time) genSpec {
	var s genSpec
	s.essential = r.IntN(3) == 0
	wrong := any("別の値")
	if info, _ := Lookup(name); info.Kind == KindBool {
		tv, _ := trueValue(name, now).(bool)
		wrong = !tv
	}
	switch r.IntN(6) {
	case 0:
		s.value = trueValue(name, now)
	case 1:
		s.value = wrong
	case 2:
		s.values = []any{wrong, trueValue(name, now)}
	case 3:
		s.values = []any{wrong}
	}
	return s
}

func genRequest(r *rand.Rand) genCase {
	c := genCase{
		scopes:   subset(r, propScopes, 0.3),
		member:   map[Target]map[string]genSpec{},
		verified: map[Target][]genVerified{},
		now:      propNows[r.IntN(len(propNows))],
	}
	c.policy = ClientPolicy{
		Claims:               subset(r, append(slices.Clone(allClaims), propAges...), 0.6),
		Verified:             r.IntN(2) == 0,
		AgeAlternatives:      subset(r, propAges, 0.5),
		ScopeClaimsInIDToken: r.IntN(3) == 0,
	}
	if r.IntN(10) < 7 {
		for _, t := range []Target{TargetIDToken, TargetUserinfo} {
			if r.IntN(10) < 6 {
				m := map[string]genSpec{}
				for _, n := range subset(r, propNames, 0.3) {
					m[n] = genClaimSpec(r, n, c.now)
				}
				c.member[t] = m
			}
			if r.IntN(10) < 4 {
				for range 1 + r.IntN(2) {
					v := genVerified{time: r.IntN(4), evidence: r.IntN(3), claims: map[string]genSpec{}}
					switch r.IntN(3) {
					case 1:
						v.tf = TrustFrameworkJPKI
					case 2:
						v.tf = "de_aml"
					}
					for _, n := range subset(r, propNames, 0.4) {
						v.claims[n] = genClaimSpec(r, n, c.now)
					}
					if len(v.claims) == 0 {
						v.claims[ClaimName] = genSpec{}
					}
					c.verified[t] = append(c.verified[t], v)
				}
			}
		}
	}
	return c
}

// claimsJSON serialises the generated claims parameter ("" when none).
func (c genCase) claimsJSON() string {
	top := map[string]any{}
	for _, t := range []Target{TargetIDToken, TargetUserinfo} {
		m, hasM := c.member[t]
		vs := c.verified[t]
		if !hasM && len(vs) == 0 {
			continue
		}
		obj := map[string]any{}
		for n, s := range m {
			obj[n] = s.json()
		}
		var list []any
		for _, v := range vs {
			ver := map[string]any{}
			if v.tf != nil {
				ver["trust_framework"] = map[string]any{"value": v.tf}
			} else {
				ver["trust_framework"] = nil
			}
			switch v.time {
			case 1:
				ver["time"] = nil
			case 2:
				ver["time"] = map[string]any{"max_age": 60}
			case 3:
				ver["time"] = map[string]any{"max_age": 100000000}
			}
			switch v.evidence {
			case 1:
				ver["evidence"] = []any{map[string]any{"type": map[string]any{"value": "electronic_signature"}, "serial_number": nil}}
			case 2:
				ver["evidence"] = []any{map[string]any{"type": map[string]any{"value": "document"}}}
			}
			cl := map[string]any{}
			for n, s := range v.claims {
				cl[n] = s.json()
			}
			list = append(list, map[string]any{"verification": ver, "claims": cl})
		}
		if len(list) > 0 {
			obj["verified_claims"] = list
		}
		top[string(t)] = obj
	}
	if len(top) == 0 {
		return ""
	}
	b, _ := json.Marshal(top)
	return string(b)
}

func specMatches(s genSpec, v any) bool {
	if s.value != nil && !jsonEqual(v, s.value) {
		return false
	}
	if s.values != nil {
		return slices.ContainsFunc(s.values, func(x any) bool { return jsonEqual(v, x) })
	}
	return true
}

// model computes what Release must return for target t, from the
// generated inputs, the policy and the grant.
func (c genCase) model(g *Grant, t Target) map[string]any {
	if t == TargetIntrospection {
		t = TargetUserinfo
	}
	p := c.policy
	scopeClaims := ClaimsForScopes(c.scopes)
	// Plain requests at t, with their constraint.
	plain := map[string]genSpec{}
	if t == TargetUserinfo || p.ScopeClaimsInIDToken {
		for _, n := range scopeClaims {
			if p.Allows(n) {
				plain[n] = genSpec{}
			}
		}
	}
	for n, s := range c.member[t] {
		if IsClaim(n) && p.Allows(n) {
			plain[n] = s
		}
	}
	// Anywhere, for implied alternatives.
	askedAnywhere := func(name string) bool {
		if !p.Allows(name) {
			return false
		}
		if slices.Contains(scopeClaims, name) {
			return true
		}
		for _, tt := range []Target{TargetIDToken, TargetUserinfo} {
			if _, ok := c.member[tt][name]; ok {
				return true
			}
			if p.Verified {
				for _, v := range c.verified[tt] {
					if _, ok := v.claims[name]; ok {
						return true
					}
				}
			}
		}
		return false
	}
	var implied []string
	if askedAnywhere(ClaimBirthdate) {
		for _, a := range p.AgeAlternatives {
			if p.Allows(a) && !askedAnywhere(a) {
				implied = append(implied, a)
			}
		}
	}
	release := func(req map[string]genSpec, out map[string]any) {
		for n, s := range req {
			if g.Has(n) {
				if v, ok := claimValue(testFacts(), n, c.now); ok && specMatches(s, v) {
					out[n] = v
				}
			}
		}
		if _, ok := req[ClaimBirthdate]; ok && !g.Has(ClaimBirthdate) {
			for _, a := range implied {
				if n := g.Narrowed[ClaimBirthdate]; g.Has(a) && (n == "" || n == a) {
					v, _ := claimValue(testFacts(), a, c.now)
					out[a] = v
				}
			}
		}
	}
	out := map[string]any{}
	release(plain, out)
	if p.Verified && g.Has(ClaimVerifiedClaims) {
		var elems []any
		for _, v := range c.verified[t] {
			if v.tf != nil && v.tf != TrustFrameworkJPKI || v.time == 2 || v.evidence == 2 {
				continue
			}
			req := map[string]genSpec{}
			for n, s := range v.claims {
				if IsClaim(n) && p.Allows(n) {
					req[n] = s
				}
			}
			cl := map[string]any{}
			release(req, cl)
			if len(cl) > 0 {
				elems = append(elems, cl)
			}
		}
		switch len(elems) {
		case 0:
		case 1:
			out[ClaimVerifiedClaims] = elems[0]
		default:
			out[ClaimVerifiedClaims] = elems
		}
	}
	return out
}

// verifiedClaimsOnly strips verification metadata, leaving the claims of
// each verified_claims element, for comparison with the model.
func verifiedClaimsOnly(out map[string]any) map[string]any {
	vc, ok := out[ClaimVerifiedClaims]
	if !ok {
		return out
	}
	cp := map[string]any{}
	for k, v := range out {
		cp[k] = v
	}
	claimsOf := func(e any) any { return e.(map[string]any)["claims"] }
	switch x := vc.(type) {
	case []any:
		var list []any
		for _, e := range x {
			list = append(list, claimsOf(e))
		}
		cp[ClaimVerifiedClaims] = list
	default:
		cp[ClaimVerifiedClaims] = claimsOf(x)
	}
	return cp
}

// randomChoice ticks, unticks and narrows the asked items at random;
// essential items are occasionally unticked, which Apply must refuse.
func randomChoice(r *rand.Rand, d Decision) Choice {
	var c Choice
	for _, it := range d.Items {
		if it.Essential && r.IntN(20) != 0 || !it.Essential && r.IntN(2) == 0 {
			c.Allow = append(c.Allow, it.Claim)
		}
		if len(it.Alternatives) > 0 && r.IntN(2) == 0 {
			if c.Narrow == nil {
				c.Narrow = map[string]string{}
			}
			c.Narrow[it.Claim] = it.Alternatives[r.IntN(len(it.Alternatives))]
		}
	}
	return c
}

// propStats counts what the scenarios reached, so that a generator that
// stopped producing releases cannot make the property pass vacuously.
type propStats struct{ applied, released, verified, implied, nameWithheld, partsAsked int }

// wholeOf maps each part to the whole that contains it. It is the
// test's own statement of the fact, not read from the catalogue.
var wholeOf = map[string]string{ClaimFamilyName: ClaimName, ClaimGivenName: ClaimName}

// screenAnswer is what one consent screen tells about the name: whether
// it was on the screen and withheld, and which parts the resident ticked
// on lines of their own.
type screenAnswer struct {
	nameShown, nameWithheld bool
	ownPartsAllowed         []string
}

func answerOf(d Decision, c Choice) screenAnswer {
	var a screenAnswer
	for _, it := range d.Items {
		if it.Claim == ClaimName {
			a.nameShown, a.nameWithheld = true, !slices.Contains(c.Allow, it.Claim)
		}
	}
	for _, it := range d.Items {
		// A ticked part says "share it" only where it cannot be read as
		// part of the name's answer: locked because the RP needs it, or
		// asked without the name.
		if wholeOf[it.Claim] != "" && slices.Contains(c.Allow, it.Claim) && (it.Essential || !a.nameShown) {
			a.ownPartsAllowed = append(a.ownPartsAllowed, it.Claim)
		}
	}
	// A part shared earlier on a line of its own is listed as already
	// shared: the resident sees it go.
	for _, it := range d.Kept {
		if wholeOf[it.Claim] != "" {
			a.ownPartsAllowed = append(a.ownPartsAllowed, it.Claim)
		}
	}
	return a
}

// checkOneChoice fails when a screen shows the name and an optional part
// of it as separate boxes: two boxes for one fact undo each other.
func checkOneChoice(t testing.TB, d Decision, raw string) {
	t.Helper()
	if !slices.ContainsFunc(d.Items, func(it Item) bool { return it.Claim == ClaimName }) {
		return
	}
	for _, it := range d.Items {
		if wholeOf[it.Claim] != "" && !it.Essential {
			t.Fatalf("the screen shows the name and its part %s as separate choices: %v\nrequest %s", it.Claim, itemNames(d.Items), raw)
		}
	}
}

// checkReleaseProperty runs one random scenario.
func checkReleaseProperty(t testing.TB, r *rand.Rand, st *propStats) {
	// History: an earlier consent to a different random request.
	var existing *Grant
	var before screenAnswer
	if r.IntN(2) == 0 {
		h := genRequest(r)
		hr, err := ParseClaimsRequest([]byte(h.claimsJSON()))
		if err != nil {
			t.Fatalf("generated claims parameter rejected: %v\n%s", err, h.claimsJSON())
		}
		hreq := Resolve(h.scopes, hr, h.policy)
		hd := Decide(nil, hreq, false)
		checkOneChoice(t, hd, h.claimsJSON())
		hc := randomChoice(r, hd)
		if existing, _ = Apply(nil, hreq, hd, hc, t0); existing != nil {
			before = answerOf(hd, hc)
		}
	}
	c := genRequest(r)
	raw := c.claimsJSON()
	cr, err := ParseClaimsRequest([]byte(raw))
	if err != nil {
		t.Fatalf("generated claims parameter rejected: %v\n%s", err, raw)
	}
	req := Resolve(c.scopes, cr, c.policy)
	prompt := r.IntN(4) == 0
	d := Decide(existing, req, prompt)
	checkOneChoice(t, d, raw)
	choice := randomChoice(r, d)
	g, err := Apply(existing, req, d, choice, t1)
	if err != nil {
		// Only an unticked essential item may be refused.
		refused := slices.ContainsFunc(d.Items, func(it Item) bool { return it.Essential && !slices.Contains(choice.Allow, it.Claim) })
		if !refused || CodeOf(err) != CodeEssentialRefused {
			t.Fatalf("Apply refused a valid choice: %v\nrequest %s\nchoice %+v", err, raw, choice)
		}
		return
	}
	st.applied++
	if d2 := Decide(g, req, false); d2.Ask() {
		t.Fatalf("after Apply the same request still asks %v\nrequest %s scopes %v\ngrant %+v", itemNames(d2.Items), raw, c.scopes, g)
	}
	// What the resident refused on this screen never leaves.
	var refusedNow []string
	for _, it := range d.Items {
		if !slices.Contains(choice.Allow, it.Claim) {
			refusedNow = append(refusedNow, append(append([]string{it.Claim}, it.Alternatives...), it.Includes...)...)
		} else if a := choice.Narrow[it.Claim]; a != "" && a != it.Claim {
			refusedNow = append(refusedNow, it.Claim)
		}
	}
	// A withheld name withholds its parts: the latest screen that showed
	// the name decides, and a part may leave only if the resident ticked
	// it on a line of its own on that screen or the one after.
	now := answerOf(d, choice)
	var partsAllowed []string
	nameWithheld := false
	switch {
	case now.nameShown:
		nameWithheld, partsAllowed = now.nameWithheld, now.ownPartsAllowed
	case before.nameShown:
		nameWithheld, partsAllowed = before.nameWithheld, append(slices.Clone(before.ownPartsAllowed), now.ownPartsAllowed...)
	}
	if nameWithheld {
		st.nameWithheld++
		for part := range wholeOf {
			if !slices.Contains(partsAllowed, part) {
				refusedNow = append(refusedNow, part)
			}
		}
	}
	for _, it := range d.Items {
		if it.Claim == ClaimName && len(it.Parts) > 0 {
			st.partsAsked++
		}
	}
	snapshot := &Grant{Claims: Effective(g, req)}
	facts := testFacts()
	meta := testMeta()
	meta.ProofedAt = c.now.Add(-time.Hour) // max_age 60 fails, 1e8 passes
	for _, target := range []Target{TargetIDToken, TargetUserinfo, TargetIntrospection} {
		out, err := Release(facts, meta, g, req, target, c.now)
		if err != nil {
			t.Fatalf("Release(%s): %v", target, err)
		}
		if len(out) > 0 {
			st.released++
		}
		if _, ok := out[ClaimVerifiedClaims]; ok {
			st.verified++
		}
		for _, a := range req.Implied {
			if _, ok := out[a]; ok {
				st.implied++
			}
		}
		want := c.model(g, target)
		if !jsonEqual(verifiedClaimsOnly(out), want) {
			t.Fatalf("Release(%s) =\n %v\nmodel\n %v\nscopes %v claims %s\npolicy %+v\ngrant %+v", target, out, want, c.scopes, raw, c.policy, g)
		}
		for k := range out {
			if !g.Has(k) && !(k != ClaimVerifiedClaims && slices.Contains(req.Implied, k)) {
				t.Fatalf("Release(%s) has ungranted %s", target, k)
			}
			if !c.policy.Allows(k) {
				t.Fatalf("Release(%s) has %s, which the policy does not allow", target, k)
			}
			if slices.Contains(refusedNow, k) {
				t.Fatalf("Release(%s) has %s, which the resident refused\nrequest %s scopes %v\nscreen %+v\nchoice %+v\nbefore %+v now %+v\nearlier grant %+v\ngrant %+v",
					target, k, raw, c.scopes, d.Items, choice, before, now, existing, g)
			}
		}
		snap, err := Release(facts, meta, snapshot, req, target, c.now)
		if err != nil || !jsonEqual(snap, out) {
			t.Fatalf("snapshot Release(%s) = %v, %v; want %v", target, snap, err, out)
		}
		// Stale facts never leave: whenever this target would release
		// something, a stale release is refused.
		stale := meta
		stale.Stale = true
		if sout, err := Release(facts, stale, g, req, target, c.now); len(out) > 0 && (CodeOf(err) != CodeStaleFacts || sout != nil) {
			t.Fatalf("Release(%s) of stale facts = %v, %v", target, sout, err)
		}
	}
}

func TestReleaseProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(20250401, 5))
	var st propStats
	const n = 2000
	for range n {
		checkReleaseProperty(t, r, &st)
	}
	// The generator must reach every kind of release, or the property
	// holds vacuously.
	if st.applied < n*3/4 || st.released < n/2 || st.verified < n/50 || st.implied < n/100 || st.nameWithheld < n/20 || st.partsAsked < n/10 {
		t.Fatalf("scenarios too weak: %+v of %d", st, n)
	}
	t.Logf("%+v of %d scenarios", st, n)
}
