package consent

import "slices"

// Claim names Watashi can release. The first six are OIDC Core §5.1
// standard claims filled from the basic four facts of a JPKI signature
// certificate; the age checks are derived from the birth date so that an
// RP which only needs "is this person an adult" never learns the date.
const (
	ClaimName       = "name"
	ClaimFamilyName = "family_name"
	ClaimGivenName  = "given_name"
	ClaimBirthdate  = "birthdate"
	ClaimGender     = "gender"
	ClaimAddress    = "address"
	ClaimAgeOver18  = "age_over_18"
	ClaimAgeOver20  = "age_over_20"

	// ClaimVerifiedClaims is not a fact but the consent item for the
	// verified_claims element (OIDC4IDA): the verification metadata
	// (trust framework, proofing time, the certificate's issuer and serial
	// number). A certificate serial is the same for every RP and so links
	// the resident across them; it is released only with its own tick.
	ClaimVerifiedClaims = "verified_claims"
)

// Kind is the JSON type of a claim's value, for rendering and for
// checking `value` constraints.
type Kind string

const (
	KindString Kind = "string"
	KindBool   Kind = "boolean"
	KindObject Kind = "object"
)

// ClaimInfo describes one releasable claim.
type ClaimInfo struct {
	Name string
	Kind Kind
	// Sensitive claims can expose a person to discrimination or let them
	// be found (gender, birth date, home address), or link them across
	// RPs (the certificate serial in verified_claims). The screen leaves
	// an optional sensitive claim unticked until the resident ticks it,
	// and marks it.
	Sensitive bool
	// NarrowerOf names the claim this one can stand in for with less
	// disclosure (age_over_20 for birthdate): the data-minimisation
	// alternative a resident may pick when the RP allows it.
	NarrowerOf string
	// AgeThreshold is N for age_over_N.
	AgeThreshold int
	// PartOf names the claim this one is a part of (name for family_name
	// and given_name). The whole reveals its parts, so a resident who
	// withholds the whole withholds the parts asked for with it: the
	// screen shows them as one choice (Item.Parts).
	PartOf string
}

// catalogue is in display order; Grant.Claims and every list this package
// returns follow it, so screens and golden files are stable.
var catalogue = []ClaimInfo{
	{Name: ClaimName, Kind: KindString},
	{Name: ClaimFamilyName, Kind: KindString, PartOf: ClaimName},
	{Name: ClaimGivenName, Kind: KindString, PartOf: ClaimName},
	{Name: ClaimBirthdate, Kind: KindString, Sensitive: true},
	{Name: ClaimAgeOver18, Kind: KindBool, NarrowerOf: ClaimBirthdate, AgeThreshold: 18},
	{Name: ClaimAgeOver20, Kind: KindBool, NarrowerOf: ClaimBirthdate, AgeThreshold: 20},
	{Name: ClaimGender, Kind: KindString, Sensitive: true},
	{Name: ClaimAddress, Kind: KindObject, Sensitive: true},
}

// verifiedItem is the catalogue entry of the verified_claims consent item.
var verifiedItem = ClaimInfo{Name: ClaimVerifiedClaims, Kind: KindObject, Sensitive: true}

// Catalogue lists the releasable claims in display order.
func Catalogue() []ClaimInfo { return slices.Clone(catalogue) }

// Lookup finds a claim (or the verified_claims item) by name.
func Lookup(name string) (ClaimInfo, bool) {
	if name == ClaimVerifiedClaims {
		return verifiedItem, true
	}
	for _, c := range catalogue {
		if c.Name == name {
			return c, true
		}
	}
	return ClaimInfo{}, false
}

// IsClaim reports whether name is a releasable fact claim (not the
// verified_claims item).
func IsClaim(name string) bool {
	_, ok := Lookup(name)
	return ok && name != ClaimVerifiedClaims
}

// order is the sort key of a consent item name: catalogue position, then
// verified_claims, then anything else (which never reaches a grant).
func order(name string) int {
	for i, c := range catalogue {
		if c.Name == name {
			return i
		}
	}
	if name == ClaimVerifiedClaims {
		return len(catalogue)
	}
	return len(catalogue) + 1
}

// sortNames sorts claim names in catalogue order and removes duplicates.
func sortNames(names []string) []string {
	slices.SortStableFunc(names, func(a, b string) int {
		if d := order(a) - order(b); d != 0 {
			return d
		}
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	})
	return slices.Compact(names)
}

// Scopes are the scope shortcuts for claims. name, birthdate, gender and
// address are the scopes the Digital Agency's authentication app uses;
// profile and address are OIDC Core §5.4's, with profile limited to what a
// JPKI certificate proves (no nickname, picture, etc.).
var scopeClaims = map[string][]string{
	"name":      {ClaimName, ClaimFamilyName, ClaimGivenName},
	"birthdate": {ClaimBirthdate},
	"gender":    {ClaimGender},
	"address":   {ClaimAddress},
	"profile":   {ClaimName, ClaimFamilyName, ClaimGivenName, ClaimBirthdate, ClaimGender},
}

// ScopesSupported are the claim scopes, for discovery's scopes_supported
// and for deciding which scopes a client may be given at all: the one
// list of them (the provider adds openid and offline_access).
func ScopesSupported() []string {
	return []string{"profile", "name", "birthdate", "gender", "address"}
}

// ClaimsForScopes lists the claims the scopes stand for, in catalogue
// order; unknown scopes (openid, offline_access, an RP's own) add nothing.
func ClaimsForScopes(scopes []string) []string {
	var out []string
	for _, sc := range scopes {
		out = append(out, scopeClaims[sc]...)
	}
	return sortNames(out)
}
