package consent

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/watashi-id/watashi/pkibridge"
)

// Identity-assurance vocabulary (OIDC4IDA 1.0).
const (
	// TrustFrameworkJPKI names the framework the facts were verified
	// under: the JPKI Act (電子署名等に係る地方公共団体情報システム機構の認証
	// 業務に関する法律, 公的個人認証法), whose signature certificates carry the
	// basic four facts as J-LIS recorded them from the resident register.
	// The OpenID eKYC-IDA registry has no entry for JPKI (jp_aml is the
	// Act on Prevention of Transfer of Criminal Proceeds, whose JPKI
	// method an RP applies itself), so Watashi defines this value and
	// lists it in trust_frameworks_supported.
	TrustFrameworkJPKI = "jp_jpki"
	// EvidenceElectronicSignature is the only evidence Watashi has: the
	// resident's signature with their JPKI signature certificate.
	EvidenceElectronicSignature = "electronic_signature"
	// SignatureTypeJPKI is the signature_type of that evidence.
	SignatureTypeJPKI = "jpki_signature"
)

// FactsMeta is where the facts came from and whether they still hold.
type FactsMeta struct {
	// ProofedAt is when Watashi verified the signature that yielded the
	// facts (verification.time).
	ProofedAt time.Time
	// SignedAt is when the resident made that signature (the evidence's
	// created_at); zero means ProofedAt.
	SignedAt time.Time
	// CertIssuer is the issuing CA's name (RFC 2253 DN), CertSerial the
	// certificate serial (decimal), CertFingerprint its SHA-256 (hex).
	CertIssuer      string
	CertSerial      string
	CertFingerprint string
	// Stale is set when that certificate was revoked after proofing: a
	// JPKI signature certificate is revoked when the address or name
	// changes, so its facts may be out of date. Expiry alone (the fifth
	// birthday) does not make facts stale: they were true and unchanged.
	Stale bool
}

// planned is a claim to release at one place and the constraint on it.
type planned struct {
	name string
	spec ClaimSpec
}

// plan lists the claims of one request map that g lets go: a requested
// claim when granted; and where the birth date is requested but not
// granted, the age check the resident gave instead, when the policy
// offered it (Requested.Implied). It reads no facts.
func plan(g *Grant, req Requested, claims map[string]ClaimSpec) []planned {
	if g == nil {
		return nil
	}
	var out []planned
	for _, name := range sortedKeys(claims) {
		if IsClaim(name) && g.Has(name) {
			out = append(out, planned{name, claims[name]})
		}
	}
	if _, ok := claims[ClaimBirthdate]; ok && !g.Has(ClaimBirthdate) {
		for _, a := range req.Implied {
			_, explicit := claims[a]
			if n := g.Narrowed[ClaimBirthdate]; !explicit && g.Has(a) && (n == "" || n == a) {
				out = append(out, planned{a, ClaimSpec{}})
			}
		}
	}
	return out
}

// Ready reports whether the facts can serve what g releases for req:
// ErrNoFacts or ErrStaleFacts means "ask the resident to prove their
// identity again" before completing the authorization, which is kinder
// than failing at the token endpoint.
func Ready(facts *pkibridge.Attributes, meta FactsMeta, g *Grant, req Requested) error {
	if len(Effective(g, req)) == 0 {
		return nil
	}
	if facts == nil {
		return ErrNoFacts
	}
	if meta.Stale {
		return ErrStaleFacts
	}
	return nil
}

// Release builds the claims for one target: exactly the claims that are
// both requested for that target and granted, with values from the
// verified facts; a claim whose fact is missing or whose value does not
// meet the RP's value/values constraint is left out (OIDC Core §5.5.1).
// verified_claims appears only when requested through the claims
// parameter, granted (with its own item), and its verification
// constraints (trust framework, max_age, evidence type) are met.
// Introspection carries what userinfo carries.
//
// Stale facts are refused with ErrStaleFacts and absent facts with
// ErrNoFacts, but only when something would be released: a grant of
// nothing needs no facts.
func Release(facts *pkibridge.Attributes, meta FactsMeta, g *Grant, req Requested, target Target, now time.Time) (map[string]any, error) {
	m := req.member(target)
	if m == nil {
		return nil, fmt.Errorf("consent: unknown release target %q", target)
	}
	plain := plan(g, req, m.Claims)
	var verified [][]planned
	if g.Has(ClaimVerifiedClaims) {
		for _, vr := range m.Verified {
			verified = append(verified, plan(g, req, vr.Claims))
		}
	}
	out := map[string]any{}
	if len(plain) == 0 && !anyPlanned(verified) {
		return out, nil
	}
	if facts == nil {
		return nil, ErrNoFacts
	}
	if meta.Stale {
		return nil, ErrStaleFacts
	}
	for _, p := range plain {
		if v, ok := claimValue(facts, p.name, now); ok && matches(v, p.spec) {
			out[p.name] = v
		}
	}
	var elems []any
	for i, ps := range verified {
		if len(ps) == 0 {
			continue
		}
		if e, ok := verifiedElement(facts, meta, m.Verified[i].Verification, ps, now); ok {
			elems = append(elems, e)
		}
	}
	switch len(elems) {
	case 0:
	case 1:
		out[ClaimVerifiedClaims] = elems[0]
	default:
		out[ClaimVerifiedClaims] = elems
	}
	return out, nil
}

func anyPlanned(v [][]planned) bool {
	for _, ps := range v {
		if len(ps) > 0 {
			return true
		}
	}
	return false
}

// ClaimValue is the value Release would give a claim, for showing it on
// the consent screen ("this is what they will receive"). ok is false when
// the fact is missing or the claim unknown.
func ClaimValue(f *pkibridge.Attributes, claim string, now time.Time) (any, bool) {
	if f == nil {
		return nil, false
	}
	return claimValue(f, claim, now)
}

// claimValue reads one claim from the facts; ok is false when the fact is
// missing, so that nothing empty or guessed is released.
func claimValue(f *pkibridge.Attributes, name string, now time.Time) (any, bool) {
	str := func(s string) (any, bool) { return s, s != "" }
	switch name {
	case ClaimName:
		return str(f.Name)
	case ClaimFamilyName:
		return str(f.FamilyName)
	case ClaimGivenName:
		return str(f.GivenName)
	case ClaimBirthdate:
		return str(f.Birthdate)
	case ClaimGender:
		return str(f.Gender)
	case ClaimAddress:
		if f.Address == "" {
			return nil, false
		}
		// OIDC Core §5.1.1; the certificate holds the address as one
		// string, without postcode, always in Japan.
		return map[string]any{"formatted": f.Address, "country": "JP"}, true
	}
	if info, ok := Lookup(name); ok && info.AgeThreshold > 0 {
		over, ok := ageOver(f.Birthdate, info.AgeThreshold, now)
		return over, ok
	}
	return nil, false
}

// matches applies value/values. Both sides are compared as JSON values,
// so "true" never equals true and an address object compares by members.
func matches(v any, s ClaimSpec) bool {
	if s.Value != nil && !jsonEqual(v, s.Value) {
		return false
	}
	if s.Values != nil {
		for _, x := range s.Values {
			if jsonEqual(v, x) {
				return true
			}
		}
		return false
	}
	return true
}

func jsonEqual(a, b any) bool {
	na, ok1 := normalise(a)
	nb, ok2 := normalise(b)
	return ok1 && ok2 && reflect.DeepEqual(na, nb)
}

func normalise(v any) (any, bool) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, false
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return nil, false
	}
	return out, true
}

// idaTime is the IDA time format (ISO 8601, UTC, seconds).
func idaTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// verifiedElement builds one verified_claims element. ok is false when a
// verification constraint cannot be met or no claim survives: IDA has the
// OP omit the element rather than return one the RP did not ask for.
func verifiedElement(f *pkibridge.Attributes, meta FactsMeta, vr VerificationRequest, ps []planned, now time.Time) (map[string]any, bool) {
	if !matches(TrustFrameworkJPKI, vr.TrustFramework) {
		return nil, false
	}
	v := map[string]any{"trust_framework": TrustFrameworkJPKI}
	if vr.Time != nil {
		if vr.Time.MaxAge > 0 && (meta.ProofedAt.IsZero() || now.Sub(meta.ProofedAt) > time.Duration(vr.Time.MaxAge)*time.Second) {
			return nil, false
		}
		if !meta.ProofedAt.IsZero() {
			v["time"] = idaTime(meta.ProofedAt)
		}
	}
	if vr.Evidence != nil {
		var list []any
		for _, er := range vr.Evidence {
			if !matches(EvidenceElectronicSignature, er.Type) {
				return nil, false
			}
			e := map[string]any{"type": EvidenceElectronicSignature}
			for _, field := range er.Fields {
				switch field {
				case EvidenceSignatureType:
					e[field] = SignatureTypeJPKI
				case EvidenceIssuer:
					if meta.CertIssuer != "" {
						e[field] = meta.CertIssuer
					}
				case EvidenceSerialNumber:
					if meta.CertSerial != "" {
						e[field] = meta.CertSerial
					}
				case EvidenceCreatedAt:
					at := meta.SignedAt
					if at.IsZero() {
						at = meta.ProofedAt
					}
					if !at.IsZero() {
						e[field] = idaTime(at)
					}
				}
			}
			list = append(list, e)
		}
		if len(list) > 0 {
			v["evidence"] = list
		}
	}
	claims := map[string]any{}
	for _, p := range ps {
		if val, ok := claimValue(f, p.name, now); ok && matches(val, p.spec) {
			claims[p.name] = val
		}
	}
	if len(claims) == 0 {
		return nil, false
	}
	return map[string]any{"verification": v, "claims": claims}, true
}
