package consent

import "slices"

// ClientPolicy is what a client's registration (its tier on the
// whitelist) lets it receive. It is the upper bound: a request can ask for
// less, never more.
type ClientPolicy struct {
	// Claims are the fact claims the client may receive. An age check is
	// allowed wherever the birth date is, since it says strictly less.
	Claims []string `json:"claims,omitempty" yaml:"claims"`
	// Verified lets the client receive verified_claims (OIDC4IDA), which
	// carries the certificate's serial number and issuer.
	Verified bool `json:"verified,omitempty" yaml:"verified"`
	// AgeAlternatives are age checks (age_over_18, age_over_20) the
	// resident may give instead of the birth date whenever this client
	// asks for the birth date: the RP declares at registration that, say,
	// "over 20" serves its purpose. An RP can also signal this per request
	// by asking for an age check as an optional claim next to birthdate.
	AgeAlternatives []string `json:"age_alternatives,omitempty" yaml:"age_alternatives"`
	// ScopeClaimsInIDToken also puts scope-requested claims into the ID
	// token. OIDC Core §5.4 returns them from userinfo only when an access
	// token is issued (always, in the code flow), which keeps them out of
	// front-channel tokens; some RP libraries read only the ID token, so
	// a registration may opt in.
	ScopeClaimsInIDToken bool `json:"scope_claims_in_id_token,omitempty" yaml:"scope_claims_in_id_token"`
}

// PolicyForScopes builds the policy of a client registered with claim
// scopes (the idp Client.Scopes list), for registrations that predate
// per-claim tiers.
func PolicyForScopes(scopes []string) ClientPolicy {
	return ClientPolicy{Claims: ClaimsForScopes(scopes)}
}

// Allows reports whether the policy lets the client receive claim.
func (p ClientPolicy) Allows(claim string) bool {
	if claim == ClaimVerifiedClaims {
		return p.Verified
	}
	info, ok := Lookup(claim)
	if !ok {
		return false
	}
	if slices.Contains(p.Claims, claim) {
		return true
	}
	return info.NarrowerOf != "" && slices.Contains(p.Claims, info.NarrowerOf)
}

// Dropped is a requested claim the client's policy does not allow. OIDC
// Core §5.5.1 has the OP leave out claims it will not return without an
// error, so Resolve reports them (for the audit log and the RP's
// operator), and the flow goes on.
type Dropped struct {
	Claim  string `json:"claim"`
	Reason string `json:"reason"`
}

// Reasons a claim is dropped.
const (
	DropNotAllowed = "not_allowed" // the client's tier does not include it
)

// Requested is what an authorization asks for after the client's policy:
// per target, each claim with its constraints, plus the verified_claims
// requests. It is derived data: the provider recomputes it from the
// stored scopes and claims parameter with the client's current policy,
// or stores it as JSON.
type Requested struct {
	IDToken  TargetRequest `json:"id_token,omitzero"`
	Userinfo TargetRequest `json:"userinfo,omitzero"`
	// Implied are age checks the policy offers in place of the birth date
	// without the RP asking: released only if the resident picks one
	// instead of the birth date, and only where the birth date was asked.
	Implied []string  `json:"implied,omitempty"`
	Dropped []Dropped `json:"dropped,omitempty"`
}

// member returns the request for a target; introspection reads userinfo's.
func (r *Requested) member(t Target) *TargetRequest {
	switch t {
	case TargetIDToken:
		return &r.IDToken
	case TargetUserinfo, TargetIntrospection:
		return &r.Userinfo
	}
	return nil
}

// Empty reports whether nothing at all is requested (scope openid only):
// there is then nothing to consent to.
func (r Requested) Empty() bool { return len(r.Items()) == 0 }

// Resolve combines the scopes and the claims parameter (nil when absent)
// under the client's policy. Scope claims go to userinfo (and the ID token
// when the policy says so); claims-parameter claims go where the RP put
// them; a claim asked in both places is essential if either says so.
// Unknown claims are ignored (OIDC Core §5.5); known claims the policy
// does not allow are dropped and reported, never an error.
func Resolve(scopes []string, cr *ClaimsRequest, p ClientPolicy) Requested {
	var r Requested
	dropped := map[Dropped]bool{}
	drop := func(c string) { dropped[Dropped{Claim: c, Reason: DropNotAllowed}] = true }
	add := func(t Target, name string, s ClaimSpec) {
		m := r.member(t)
		if m.Claims == nil {
			m.Claims = map[string]ClaimSpec{}
		}
		m.Claims[name] = m.Claims[name].merge(s)
	}
	for _, c := range ClaimsForScopes(scopes) {
		if !p.Allows(c) {
			drop(c)
			continue
		}
		add(TargetUserinfo, c, ClaimSpec{})
		if p.ScopeClaimsInIDToken {
			add(TargetIDToken, c, ClaimSpec{})
		}
	}
	for _, t := range []Target{TargetIDToken, TargetUserinfo} {
		in := cr.member(t)
		if in == nil {
			continue
		}
		for _, name := range sortedKeys(in.Claims) {
			switch {
			case !IsClaim(name):
				// sub, acr, auth_time are the provider's; others unknown.
			case !p.Allows(name):
				drop(name)
			default:
				add(t, name, in.Claims[name])
			}
		}
		for _, vr := range in.Verified {
			if !p.Verified {
				drop(ClaimVerifiedClaims)
				continue
			}
			out := VerifiedRequest{Verification: vr.Verification, Claims: map[string]ClaimSpec{}}
			for _, name := range sortedKeys(vr.Claims) {
				switch {
				case !IsClaim(name):
				case !p.Allows(name):
					drop(name)
				default:
					out.Claims[name] = vr.Claims[name]
				}
			}
			if len(out.Claims) > 0 {
				m := r.member(t)
				m.Verified = append(m.Verified, out)
			}
		}
	}
	if r.asks(ClaimBirthdate) {
		for _, a := range p.AgeAlternatives {
			if info, ok := Lookup(a); ok && info.NarrowerOf == ClaimBirthdate && p.Allows(a) && !r.asks(a) {
				r.Implied = append(r.Implied, a)
			}
		}
		r.Implied = sortNames(r.Implied)
	}
	for d := range dropped {
		r.Dropped = append(r.Dropped, d)
	}
	slices.SortFunc(r.Dropped, func(a, b Dropped) int {
		if d := order(a.Claim) - order(b.Claim); d != 0 {
			return d
		}
		switch {
		case a.Reason < b.Reason:
			return -1
		case a.Reason > b.Reason:
			return 1
		}
		return 0
	})
	return r
}

// specs lists every request for a claim, plain and verified, in a fixed
// order (ID token first).
func (r *Requested) specs(name string) []ClaimSpec {
	var out []ClaimSpec
	for _, t := range []Target{TargetIDToken, TargetUserinfo} {
		m := r.member(t)
		if s, ok := m.Claims[name]; ok {
			out = append(out, s)
		}
		for _, vr := range m.Verified {
			if s, ok := vr.Claims[name]; ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// asks reports whether name is requested anywhere.
func (r *Requested) asks(name string) bool { return len(r.specs(name)) > 0 }

// targets lists where name is requested.
func (r *Requested) targets(name string) []Target {
	var out []Target
	for _, t := range []Target{TargetIDToken, TargetUserinfo} {
		m := r.member(t)
		_, ok := m.Claims[name]
		for _, vr := range m.Verified {
			_, in := vr.Claims[name]
			ok = ok || in || name == ClaimVerifiedClaims
		}
		if ok {
			out = append(out, t)
		}
	}
	return out
}

// Item is one line of the consent screen: a claim (or the verified_claims
// element), whether the resident may untick it, and the narrower claims
// they may pick instead.
type Item struct {
	Claim     string `json:"claim"`
	Essential bool   `json:"essential,omitempty"`
	Sensitive bool   `json:"sensitive,omitempty"`
	// Alternatives are narrower claims the resident may share instead
	// (age_over_20 for birthdate), offered because the RP asked for them
	// next to birthdate or its policy lists them.
	Alternatives []string `json:"alternatives,omitempty"`
	// Includes are claims the RP asked for that sharing this item in full
	// also shares: the age checks asked for next to birthdate, which the
	// birth date reveals anyway. The screen says so.
	Includes []string `json:"includes,omitempty"`
	// Parts are the parts of this claim the RP asked for next to it
	// (family_name and given_name with name). They are one choice with
	// the whole: shared with it, withheld with it, because the whole
	// contains them and two boxes for one fact would undo each other.
	Parts []string `json:"parts,omitempty"`
	// Targets are where the claim goes (id_token, userinfo).
	Targets []Target `json:"targets,omitempty"`
	// Verified is set when the RP asked for this claim as verified data.
	Verified bool `json:"verified,omitempty"`
	// Purpose is the RP's stated reason (IDA purpose), if any. It is RP
	// text: the template escapes it.
	Purpose string `json:"purpose,omitempty"`
}

// Items are the consent screen's lines for everything requested, in
// catalogue order. Optional age checks asked next to the birth date are
// folded into its line: shared with it in full (the date reveals them
// anyway), and offered instead of it when the birth date is optional too.
// An essential age check stays its own locked line: the RP needs it
// whatever happens to the birth date.
//
// Likewise the parts of the name (family_name, given_name) asked next to
// the name are folded into its line as Parts: the name is one fact, and
// the resident shares or withholds it whole. A part the RP marks
// essential stays its own locked line, like an essential age check; a
// part asked without the name is a line of its own.
func (r Requested) Items() []Item {
	var names []string
	for _, t := range []Target{TargetIDToken, TargetUserinfo} {
		m := r.member(t)
		names = append(names, sortedKeys(m.Claims)...)
		for _, vr := range m.Verified {
			names = append(names, sortedKeys(vr.Claims)...)
		}
	}
	names = sortNames(names)
	essential := func(name string) bool {
		return slices.ContainsFunc(r.specs(name), func(s ClaimSpec) bool { return s.Essential })
	}
	purpose := func(specs []ClaimSpec) string {
		for _, s := range specs {
			if s.Purpose != "" {
				return s.Purpose
			}
		}
		return ""
	}
	var folded, parts []string
	if slices.Contains(names, ClaimBirthdate) {
		for _, n := range names {
			if info, _ := Lookup(n); info.NarrowerOf == ClaimBirthdate && !essential(n) {
				folded = append(folded, n)
			}
		}
	}
	if slices.Contains(names, ClaimName) {
		for _, n := range names {
			if info, _ := Lookup(n); info.PartOf == ClaimName && !essential(n) {
				parts = append(parts, n)
			}
		}
	}
	var items []Item
	for _, n := range names {
		if slices.Contains(folded, n) || slices.Contains(parts, n) {
			continue
		}
		info, ok := Lookup(n)
		if !ok || n == ClaimVerifiedClaims {
			continue // Resolve keeps only catalogue claims; be safe anyway
		}
		it := Item{
			Claim:     n,
			Essential: essential(n),
			Sensitive: info.Sensitive,
			Targets:   r.targets(n),
			Verified:  r.verifiedAsks(n),
			Purpose:   purpose(r.specs(n)),
		}
		if n == ClaimName {
			it.Parts = slices.Clone(parts)
			for _, p := range parts {
				it.Verified = it.Verified || r.verifiedAsks(p)
				if it.Purpose == "" {
					it.Purpose = purpose(r.specs(p))
				}
			}
		}
		if n == ClaimBirthdate {
			it.Includes = slices.Clone(folded)
			// An optional age check next to an optional birth date says
			// "either will do". Next to an essential birth date it says
			// only "this too", so the birth date stays locked; the
			// policy's alternatives, stated at registration, apply anyway.
			var alts []string
			if !it.Essential {
				alts = slices.Clone(folded)
			}
			it.Alternatives = sortNames(append(alts, r.Implied...))
		}
		items = append(items, it)
	}
	if len(r.IDToken.Verified)+len(r.Userinfo.Verified) > 0 {
		it := Item{Claim: ClaimVerifiedClaims, Sensitive: true, Targets: r.targets(ClaimVerifiedClaims), Verified: true}
		var tf []ClaimSpec
		for _, t := range []Target{TargetIDToken, TargetUserinfo} {
			for _, vr := range r.member(t).Verified {
				tf = append(tf, vr.Verification.TrustFramework)
				// Verified data the RP cannot do without makes the
				// verification itself essential.
				it.Essential = it.Essential || vr.Verification.TrustFramework.Essential ||
					(vr.Verification.Time != nil && vr.Verification.Time.Essential)
				for _, s := range vr.Claims {
					it.Essential = it.Essential || s.Essential
				}
			}
		}
		it.Purpose = purpose(tf)
		items = append(items, it)
	}
	return items
}

func (r *Requested) verifiedAsks(name string) bool {
	for _, t := range []Target{TargetIDToken, TargetUserinfo} {
		for _, vr := range r.member(t).Verified {
			if _, ok := vr.Claims[name]; ok {
				return true
			}
		}
	}
	return false
}
