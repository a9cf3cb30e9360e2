package whitelist

import (
	"fmt"
	"regexp"
	"slices"
)

// Tier is a level of access an operator grants a relying party: which
// scopes it may ask for, which claims it may receive and how strong the
// resident's authentication must be. Clients name a tier rather than
// listing scopes themselves, so that granting and reviewing access is
// one decision per client and a catalogue change reaches every client of
// the tier at once.
type Tier struct {
	Name        string   `json:"name" yaml:"name"`
	Description string   `json:"description,omitempty" yaml:"description"`
	Scopes      []string `json:"scopes" yaml:"scopes"`
	Claims      []string `json:"claims" yaml:"claims"`
	// MinACR is the weakest authentication (aal1 < aal2 < aal3) whose
	// result may reach the client.
	MinACR string `json:"min_acr" yaml:"min_acr"`
}

// Tier names of the default catalogue.
const (
	TierBasic    = "basic"
	TierStandard = "standard"
	TierFull     = "full"
)

var (
	nameClaims = []string{"name", "family_name", "given_name"}
	ageClaims  = []string{"age_over_18", "age_over_20"}
)

// DefaultTiers is the catalogue used when the operator configures none.
// Every tier demands aal3: every Watashi sign-in is a JPKI certificate
// signature, and a client must not be able to accept less.
func DefaultTiers() []Tier {
	return []Tier{
		{
			Name:        TierBasic,
			Description: "Identity only: the resident's name.",
			Scopes:      []string{"openid", "name"},
			Claims:      slices.Clone(nameClaims),
			MinACR:      "aal3",
		},
		{
			Name:        TierStandard,
			Description: "Name, birth date, gender and age checks; refresh tokens.",
			Scopes:      []string{"openid", "name", "birthdate", "gender", "offline_access"},
			Claims:      append(append(slices.Clone(nameClaims), "birthdate", "gender"), ageClaims...),
			MinACR:      "aal3",
		},
		{
			Name:        TierFull,
			Description: "All four basic facts including the address, with verified_claims; refresh tokens.",
			Scopes:      []string{"openid", "name", "birthdate", "gender", "address", "profile", "offline_access"},
			Claims:      append(append(slices.Clone(nameClaims), "birthdate", "gender", "address", "verified_claims"), ageClaims...),
			MinACR:      "aal3",
		},
	}
}

// acrLevels orders the authentication levels Watashi knows (NIST SP
// 800-63B, as the Digital Agency uses them). An unknown value has level 0
// and so meets no minimum.
var acrLevels = map[string]int{"aal1": 1, "aal2": 2, "aal3": 3}

var tierNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// protocolClaims are never personal data and pass FilterClaims whatever
// the tier says: without them no ID token is valid.
var protocolClaims = []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp",
	"at_hash", "c_hash", "sid", "jti", "nbf", "scope", "client_id", "token_type", "active"}

// catalogue is a validated tier list.
type catalogue struct {
	tiers  map[string]Tier
	order  []string
	scopes []string // every scope of some tier
	claims []string // every claim of some tier
}

func newCatalogue(tiers []Tier) (*catalogue, error) {
	if len(tiers) == 0 {
		tiers = DefaultTiers()
	}
	c := &catalogue{tiers: map[string]Tier{}}
	for i, t := range tiers {
		if !tierNameRE.MatchString(t.Name) {
			return nil, fmt.Errorf("whitelist: tier %d: name %q must match %s", i, t.Name, tierNameRE)
		}
		if _, dup := c.tiers[t.Name]; dup {
			return nil, fmt.Errorf("whitelist: tier %q is defined twice", t.Name)
		}
		if !slices.Contains(t.Scopes, "openid") {
			return nil, fmt.Errorf("whitelist: tier %q: scopes must include openid", t.Name)
		}
		if acrLevels[t.MinACR] == 0 {
			return nil, fmt.Errorf("whitelist: tier %q: min_acr %q is not one of aal1, aal2, aal3", t.Name, t.MinACR)
		}
		for _, s := range append(slices.Clone(t.Scopes), t.Claims...) {
			if !scopeTokenRE.MatchString(s) {
				return nil, fmt.Errorf("whitelist: tier %q: %q is not a valid scope or claim name", t.Name, s)
			}
		}
		t.Scopes, t.Claims = slices.Clone(t.Scopes), slices.Clone(t.Claims)
		c.tiers[t.Name] = t
		c.order = append(c.order, t.Name)
		for _, s := range t.Scopes {
			if !slices.Contains(c.scopes, s) {
				c.scopes = append(c.scopes, s)
			}
		}
		for _, s := range t.Claims {
			if !slices.Contains(c.claims, s) {
				c.claims = append(c.claims, s)
			}
		}
	}
	return c, nil
}

func (c *catalogue) list() []Tier {
	out := make([]Tier, 0, len(c.order))
	for _, n := range c.order {
		t := c.tiers[n]
		t.Scopes, t.Claims = slices.Clone(t.Scopes), slices.Clone(t.Claims)
		out = append(out, t)
	}
	return out
}

// scopeTokenRE is RFC 6749 §3.3's scope-token, narrowed to what a claim
// name can also be.
var scopeTokenRE = regexp.MustCompile(`^[A-Za-z0-9_.:/-]{1,64}$`)
