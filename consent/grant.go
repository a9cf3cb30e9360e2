package consent

import (
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
)

// grantVersion is the record format; a reader that sees a newer one
// still decodes the fields it knows.
const grantVersion = 1

// Grant is what a resident has let one client receive, remembered per
// (account, client) so that the next sign-in to the same RP can skip the
// screen. Its JSON form is also readable from the first idp consent
// record ({"claims": [...], "at": ...}).
type Grant struct {
	Version int    `json:"v,omitempty"`
	Account string `json:"account,omitempty"`
	Client  string `json:"client,omitempty"`
	// Claims are the claims granted, in catalogue order; verified_claims
	// among them means the verification data may go with them.
	Claims []string `json:"claims"`
	// Narrowed records that the resident answered a request for a claim
	// with a narrower one (birthdate → age_over_20), so that the same
	// request next time counts as answered and releases the narrower one.
	Narrowed map[string]string `json:"narrowed,omitempty"`
	// Declined are optional claims the resident unticked. Remembering the
	// "no" is what stops an RP from asking for it at every sign-in; an
	// RP that makes the claim essential, or prompt=consent, asks again.
	Declined []string `json:"declined,omitempty"`
	// GrantedAt is when each granted claim was first granted (the account
	// page shows it).
	GrantedAt map[string]time.Time `json:"granted_at,omitempty"`
	CreatedAt time.Time            `json:"created_at,omitzero"`
	// At is the last change.
	At time.Time `json:"at"`
}

// Has reports whether claim is granted.
func (g *Grant) Has(claim string) bool { return g != nil && slices.Contains(g.Claims, claim) }

func (g *Grant) clone() *Grant {
	if g == nil {
		return &Grant{Version: grantVersion}
	}
	c := *g
	c.Claims = slices.Clone(g.Claims)
	c.Declined = slices.Clone(g.Declined)
	c.Narrowed = maps.Clone(g.Narrowed)
	c.GrantedAt = maps.Clone(g.GrantedAt)
	c.Version = grantVersion
	return &c
}

func (g *Grant) add(claim string, now time.Time) {
	if !g.Has(claim) {
		g.Claims = append(g.Claims, claim)
		if g.GrantedAt == nil {
			g.GrantedAt = map[string]time.Time{}
		}
		g.GrantedAt[claim] = now
	}
	g.Declined = slices.DeleteFunc(g.Declined, func(s string) bool { return s == claim })
}

func (g *Grant) remove(claims ...string) {
	g.Claims = slices.DeleteFunc(g.Claims, func(s string) bool { return slices.Contains(claims, s) })
	for _, c := range claims {
		delete(g.GrantedAt, c)
	}
}

func (g *Grant) normalise() {
	g.Claims = sortNames(g.Claims)
	g.Declined = sortNames(g.Declined)
	if len(g.Narrowed) == 0 {
		g.Narrowed = nil
	}
	if len(g.GrantedAt) == 0 {
		g.GrantedAt = nil
	}
}

// answered reports whether the grant already holds the resident's answer
// to an item, in a form this request can use: shared in full (the claim
// and whatever it includes), narrowed to an alternative this request
// still offers, or declined when the item is optional.
func answered(g *Grant, it Item) bool {
	if g == nil {
		return false
	}
	with := it.with()
	if g.Has(it.Claim) && !slices.ContainsFunc(with, func(c string) bool { return !g.Has(c) }) {
		return true
	}
	if a := g.Narrowed[it.Claim]; a != "" && !g.Has(it.Claim) && slices.Contains(it.Alternatives, a) && g.Has(a) {
		return true
	}
	// A "no" to the whole answers for its parts only if none of them is
	// still granted: a grant that withholds the name but shares its parts
	// (as the screen once allowed, with a box per part) is asked again
	// rather than read either way.
	return !it.Essential && slices.Contains(g.Declined, it.Claim) && !slices.ContainsFunc(it.Parts, g.Has)
}

// with lists what sharing the item in full also shares: the age checks
// it includes and the parts of it that were asked for.
func (it Item) with() []string {
	return append(slices.Clone(it.Includes), it.Parts...)
}

// Outcome is what the consent step does.
type Outcome string

const (
	// Skip: everything requested was answered before and prompt=consent
	// is absent; no screen.
	Skip Outcome = "skip"
	// AskNew: show only the items not answered before.
	AskNew Outcome = "ask_new"
	// AskAll: prompt=consent; show everything, pre-set from the grant.
	AskAll Outcome = "ask_all"
)

// Decision tells the consent step what to show.
type Decision struct {
	Outcome Outcome `json:"outcome"`
	// Items are the lines to ask about (none for Skip).
	Items []Item `json:"items,omitempty"`
	// Kept are requested items answered before and not asked again; the
	// screen may list them as "already shared".
	Kept []Item `json:"kept,omitempty"`
	// Claims are what this authorization may release when Outcome is
	// Skip: Effective(existing, req).
	Claims []string `json:"claims,omitempty"`
}

// Ask reports whether the screen must be shown. With prompt=none the
// provider answers consent_required instead.
func (d Decision) Ask() bool { return d.Outcome != Skip }

// Decide compares a request with the remembered grant (nil if none).
// prompt=consent always asks about everything (OIDC Core §3.1.2.1). A
// request that asks nothing (scope openid only) skips the screen: the
// RP learns only the pairwise subject the resident chose to sign in with.
func Decide(existing *Grant, req Requested, promptConsent bool) Decision {
	items := req.Items()
	if promptConsent {
		return Decision{Outcome: AskAll, Items: items}
	}
	var d Decision
	for _, it := range items {
		if answered(existing, it) {
			d.Kept = append(d.Kept, it)
		} else {
			d.Items = append(d.Items, it)
		}
	}
	if len(d.Items) == 0 {
		d.Outcome = Skip
		d.Claims = Effective(existing, req)
		return d
	}
	d.Outcome = AskNew
	return d
}

// Choice is a resident's answer on the consent screen.
type Choice struct {
	// Allow are the items left ticked (item claim names; a narrower
	// alternative is chosen through Narrow, not listed here).
	Allow []string `json:"allow"`
	// Narrow maps an allowed item to the alternative the resident picked
	// (birthdate → age_over_20); mapping it to itself means "in full".
	Narrow map[string]string `json:"narrow,omitempty"`
}

// Form field names of the consent screen. Each line is a checkbox
// `claim=<item>`; a locked essential line is a checked, disabled checkbox
// plus a hidden `claim=<item>`, so the form works without JavaScript. A
// line with alternatives adds radio buttons `as.<item>=<item|alternative>`.
const (
	FormClaim        = "claim"
	FormNarrowPrefix = "as."
)

// maxChoice bounds a submission: the catalogue has fewer than 16 items.
const maxChoice = 64

// ChoiceFromForm reads a consent form. It only shapes the data; Apply
// judges it.
func ChoiceFromForm(v url.Values) (Choice, error) {
	var c Choice
	if len(v[FormClaim]) > maxChoice || len(v) > maxChoice {
		return c, fail(CodeInvalidChoice, "too many fields")
	}
	for _, a := range v[FormClaim] {
		if !slices.Contains(c.Allow, a) {
			c.Allow = append(c.Allow, a)
		}
	}
	for k, vals := range v {
		item, ok := strings.CutPrefix(k, FormNarrowPrefix)
		if !ok {
			continue
		}
		if len(vals) != 1 {
			return c, fail(CodeInvalidChoice, "more than one alternative for %q", safeName(item))
		}
		if c.Narrow == nil {
			c.Narrow = map[string]string{}
		}
		c.Narrow[item] = vals[0]
	}
	return c, nil
}

// Apply turns a submission into the new grant. Only the items the
// decision asked about change; items answered before keep their answer.
// It refuses, changing nothing, a submission that names a claim the
// request did not ask for (CodeInvalidChoice), picks an alternative not
// offered (CodeInvalidChoice), or leaves out an essential item
// (CodeEssentialRefused) — see CodeEssentialRefused for why that is not
// treated as a denial.
//
// Sharing in full grants the item, what it includes and its parts;
// narrowing grants only the alternative and withdraws the item and its
// other alternatives; unticking withdraws all of them, parts included, and
// remembers the "no". So a withheld name is never released through its
// family or given name, whatever was granted before.
func Apply(existing *Grant, req Requested, d Decision, c Choice, now time.Time) (*Grant, error) {
	if len(c.Allow) > maxChoice || len(c.Narrow) > maxChoice {
		return nil, fail(CodeInvalidChoice, "too many fields")
	}
	all := map[string]Item{}
	for _, it := range req.Items() {
		all[it.Claim] = it
	}
	for _, a := range c.Allow {
		if _, ok := all[a]; !ok {
			return nil, fail(CodeInvalidChoice, "%q was not requested", safeName(a))
		}
	}
	for k, v := range c.Narrow {
		it, ok := all[k]
		if !ok {
			return nil, fail(CodeInvalidChoice, "%q was not requested", safeName(k))
		}
		if v != k && !slices.Contains(it.Alternatives, v) {
			return nil, fail(CodeInvalidChoice, "%q is not offered instead of %q", safeName(v), k)
		}
	}
	g := existing.clone()
	// Records from before per-claim times date their claims by At.
	for _, c := range g.Claims {
		if _, ok := g.GrantedAt[c]; !ok {
			if g.GrantedAt == nil {
				g.GrantedAt = map[string]time.Time{}
			}
			g.GrantedAt[c] = g.At
			if g.At.IsZero() {
				g.GrantedAt[c] = now
			}
		}
	}
	for _, it := range d.Items {
		if !slices.Contains(c.Allow, it.Claim) {
			if it.Essential {
				return nil, fail(CodeEssentialRefused, "%q is essential", it.Claim)
			}
			g.remove(append(append([]string{it.Claim}, it.Alternatives...), it.with()...)...)
			delete(g.Narrowed, it.Claim)
			if !slices.Contains(g.Declined, it.Claim) {
				g.Declined = append(g.Declined, it.Claim)
			}
			continue
		}
		if alt := c.Narrow[it.Claim]; alt != "" && alt != it.Claim {
			var others []string
			for _, o := range append(append([]string{it.Claim}, it.Alternatives...), it.with()...) {
				if o != alt {
					others = append(others, o)
				}
			}
			g.remove(others...)
			g.add(alt, now)
			if g.Narrowed == nil {
				g.Narrowed = map[string]string{}
			}
			g.Narrowed[it.Claim] = alt
			g.Declined = slices.DeleteFunc(g.Declined, func(s string) bool { return s == it.Claim })
			continue
		}
		g.add(it.Claim, now)
		for _, inc := range it.with() {
			g.add(inc, now)
		}
		delete(g.Narrowed, it.Claim)
	}
	if g.CreatedAt.IsZero() {
		g.CreatedAt = now
	}
	g.At = now
	g.normalise()
	return g, nil
}

// Effective lists the claims an authorization under grant g may release
// for req, over every target: what the provider records on the auth
// request (AuthRequest.Granted) so that tokens minted later release
// exactly this, whatever happens to the remembered grant meanwhile.
// Release with &Grant{Claims: Effective(g, req)} equals Release with g.
func Effective(g *Grant, req Requested) []string {
	var out []string
	for _, t := range []Target{TargetIDToken, TargetUserinfo} {
		m := req.member(t)
		for _, p := range plan(g, req, m.Claims) {
			out = append(out, p.name)
		}
		if g.Has(ClaimVerifiedClaims) {
			for _, vr := range m.Verified {
				if ps := plan(g, req, vr.Claims); len(ps) > 0 {
					out = append(out, ClaimVerifiedClaims)
					for _, p := range ps {
						out = append(out, p.name)
					}
				}
			}
		}
	}
	return sortNames(out)
}

// Preset is how the screen first shows an item: ticked or not, and which
// of the item and its alternatives is selected. A previous answer wins
// (prompt=consent shows what the resident chose last time); otherwise
// essential items are ticked (and locked), sensitive optional items are
// left unticked so the resident opts in, and other optional items are
// ticked for the resident to untick, as the consent design asks.
func Preset(g *Grant, it Item) (tick bool, as string) {
	as = it.Claim
	switch {
	case g.Has(it.Claim):
		return true, as
	case g != nil && g.Narrowed[it.Claim] != "" && slices.Contains(it.Alternatives, g.Narrowed[it.Claim]) && g.Has(g.Narrowed[it.Claim]):
		return true, g.Narrowed[it.Claim]
	case it.Essential:
		return true, as
	case g != nil && slices.Contains(g.Declined, it.Claim):
		return false, as
	}
	return !it.Sensitive, as
}
