package consent

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"slices"
	"unicode/utf8"
)

// Limits on the `claims` parameter. It arrives from the RP through the
// resident's browser, so it is bounded before any decoding: a real
// request for every claim Watashi has, with a purpose for each, is well
// under 4 KiB.
const (
	MaxClaimsRequestSize = 16 << 10 // bytes of JSON
	maxClaimsPerMember   = 64       // individual claims in id_token or userinfo
	maxValues            = 32       // entries of a `values` array
	maxVerified          = 4        // verified_claims requests per member
	maxEvidence          = 4        // evidence requests per verification
	maxDepth             = 16       // JSON nesting
	minPurpose           = 3        // IDA §6.1: purpose is 3..300 characters
	maxPurpose           = 300
	maxMaxAge            = 200 * 365 * 24 * 60 * 60 // seconds; anything larger is a mistake
)

// Target is where a claim goes.
type Target string

// Targets of a release. Introspection answers for the access token, so it
// carries what userinfo carries (the claims param has no member for it).
const (
	TargetIDToken       Target = "id_token"
	TargetUserinfo      Target = "userinfo"
	TargetIntrospection Target = "introspection"
)

// ClaimSpec is an individual claim request (OIDC Core §5.5.1), with the
// purpose member OIDC4IDA §6.1 adds. The zero value is `null`: "please
// return this claim, voluntarily".
type ClaimSpec struct {
	Essential bool `json:"essential,omitempty"`
	// Value and Values ask for the claim only with that value (or one of
	// those). A claim whose value does not match is left out, not faked:
	// OIDC Core §5.5.1 lets the OP omit any claim without an error.
	Value   any    `json:"value,omitempty"`
	Values  []any  `json:"values,omitempty"`
	Purpose string `json:"purpose,omitempty"`
}

// MarshalJSON writes the claims-parameter form: null for a plain
// request, and an empty `values` kept as [] (it matches nothing, which is
// not the same as no constraint).
func (s ClaimSpec) MarshalJSON() ([]byte, error) {
	if s.isZero() {
		return []byte("null"), nil
	}
	m := map[string]any{}
	if s.Essential {
		m["essential"] = true
	}
	if s.Value != nil {
		m["value"] = s.Value
	}
	if s.Values != nil {
		m["values"] = s.Values
	}
	if s.Purpose != "" {
		m["purpose"] = s.Purpose
	}
	return json.Marshal(m)
}

func (s ClaimSpec) isZero() bool {
	return !s.Essential && s.Value == nil && s.Values == nil && s.Purpose == ""
}

// merge combines two requests for one claim at one place (a scope and the
// claims parameter): essential if either is, and the claims parameter's
// constraints, which are the only ones that can exist.
func (s ClaimSpec) merge(o ClaimSpec) ClaimSpec {
	out := s
	out.Essential = s.Essential || o.Essential
	if o.Value != nil {
		out.Value = o.Value
	}
	if o.Values != nil {
		out.Values = o.Values
	}
	if o.Purpose != "" {
		out.Purpose = o.Purpose
	}
	return out
}

// TargetRequest is one member (id_token or userinfo) of the claims
// parameter.
type TargetRequest struct {
	// Claims are the individual claim requests by name, including names
	// this package does not know (acr, sub, an RP's typo): OIDC Core
	// §5.5 says unknown claims are ignored, and Resolve ignores them, but
	// the provider still reads acr and sub from here.
	Claims map[string]ClaimSpec `json:"claims,omitempty"`
	// Verified are the verified_claims requests (OIDC4IDA §6); one
	// request object becomes a list of one.
	Verified []VerifiedRequest `json:"verified_claims,omitempty"`
}

// VerifiedRequest is one verified_claims request: the verification data
// wanted and the claims to return as verified.
type VerifiedRequest struct {
	Verification VerificationRequest  `json:"verification"`
	Claims       map[string]ClaimSpec `json:"claims"`
}

// VerificationRequest is the verification element of a verified_claims
// request. Only the members Watashi can answer are kept; the others
// (assurance_level, verifier, ...) are ignored, which IDA allows.
type VerificationRequest struct {
	// TrustFramework constrains trust_framework (value/values); it is
	// returned in every verified_claims element because IDA requires it.
	TrustFramework ClaimSpec `json:"trust_framework"`
	// Time is non-nil when the RP asked for the proofing time.
	Time *TimeRequest `json:"time,omitempty"`
	// Evidence is non-nil when the RP asked for evidence.
	Evidence []EvidenceRequest `json:"evidence,omitempty"`
}

// TimeRequest asks for the proofing time, optionally no older than MaxAge
// seconds (IDA §6.3): older facts leave verified_claims out.
type TimeRequest struct {
	MaxAge    int64 `json:"max_age,omitempty"`
	Essential bool  `json:"essential,omitempty"`
}

// EvidenceRequest asks for one evidence entry: its type constraint and the
// electronic_signature members the RP wants (IDA asks RPs to request each
// member explicitly, which is what keeps the certificate serial out of
// responses that do not need it).
type EvidenceRequest struct {
	Type   ClaimSpec `json:"type"`
	Fields []string  `json:"fields,omitempty"`
}

// Members of an electronic_signature evidence entry (IDA §5.1.1.4).
const (
	EvidenceSignatureType = "signature_type"
	EvidenceIssuer        = "issuer"
	EvidenceSerialNumber  = "serial_number"
	EvidenceCreatedAt     = "created_at"
)

var evidenceFields = []string{EvidenceSignatureType, EvidenceIssuer, EvidenceSerialNumber, EvidenceCreatedAt}

// ClaimsRequest is a parsed `claims` request parameter.
type ClaimsRequest struct {
	IDToken  TargetRequest
	Userinfo TargetRequest
}

// member returns the request for a target; introspection reads userinfo's.
func (c *ClaimsRequest) member(t Target) *TargetRequest {
	if c == nil {
		return nil
	}
	switch t {
	case TargetIDToken:
		return &c.IDToken
	case TargetUserinfo, TargetIntrospection:
		return &c.Userinfo
	}
	return nil
}

// ACR returns the acr values an RP asks for in the ID token (OIDC Core
// §5.5.1.1) and whether it marked them essential, for the provider, which
// owns authentication levels. ok is false when acr was not requested.
func (c *ClaimsRequest) ACR() (values []string, essential, ok bool) {
	if c == nil {
		return nil, false, false
	}
	s, ok := c.IDToken.Claims["acr"]
	if !ok {
		return nil, false, false
	}
	if v, isStr := s.Value.(string); isStr {
		values = append(values, v)
	}
	for _, v := range s.Values {
		if v, isStr := v.(string); isStr {
			values = append(values, v)
		}
	}
	return values, s.Essential, true
}

// Subject returns a sub value the RP insists on (OIDC Core §5.5.1: the OP
// must not answer successfully for another subject), from either member.
func (c *ClaimsRequest) Subject() (string, bool) {
	if c == nil {
		return "", false
	}
	for _, m := range []*TargetRequest{&c.IDToken, &c.Userinfo} {
		if s, ok := m.Claims["sub"]; ok {
			if v, ok := s.Value.(string); ok {
				return v, true
			}
		}
	}
	return "", false
}

// ParseClaimsRequest parses the `claims` request parameter. Absent (empty)
// means no request: nil, nil. Malformed JSON, a wrong member type, a
// duplicate key, oversize input or an IDA rule broken is an *Error with
// CodeInvalidRequest, which the provider returns as invalid_request.
// Unknown top-level members and unknown members of claim requests are
// ignored, as OIDC Core §5.5 requires for extensibility.
func ParseClaimsRequest(data []byte) (*ClaimsRequest, error) {
	if len(data) == 0 {
		return nil, nil
	}
	if len(data) > MaxClaimsRequestSize {
		return nil, fail(CodeInvalidRequest, "claims parameter is larger than %d bytes", MaxClaimsRequestSize)
	}
	if err := checkJSON(data); err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		return nil, fail(CodeInvalidRequest, "claims parameter is not a JSON object")
	}
	cr := new(ClaimsRequest)
	for _, m := range []struct {
		name string
		dst  *TargetRequest
	}{{"id_token", &cr.IDToken}, {"userinfo", &cr.Userinfo}} {
		raw, ok := top[m.name]
		if !ok {
			continue
		}
		tr, err := parseTarget(m.name, raw)
		if err != nil {
			return nil, err
		}
		*m.dst = tr
	}
	return cr, nil
}

// MarshalJSON writes the claims request parameter form, so that an RP
// (the demo RP, tests) can build one and a parsed request round-trips.
func (c *ClaimsRequest) MarshalJSON() ([]byte, error) {
	out := map[string]any{}
	for _, m := range []struct {
		name string
		tr   TargetRequest
	}{{"id_token", c.IDToken}, {"userinfo", c.Userinfo}} {
		if m.tr.Claims == nil && m.tr.Verified == nil {
			continue
		}
		obj := map[string]any{}
		for k, s := range m.tr.Claims {
			obj[k] = s
		}
		switch len(m.tr.Verified) {
		case 0:
		case 1:
			obj[ClaimVerifiedClaims] = m.tr.Verified[0]
		default:
			obj[ClaimVerifiedClaims] = m.tr.Verified
		}
		out[m.name] = obj
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads the claims request parameter form, with every check
// of ParseClaimsRequest: the provider stores a request it validated in
// this form, and reads it back typed, never as raw bytes to re-parse at
// each use.
func (c *ClaimsRequest) UnmarshalJSON(b []byte) error {
	p, err := ParseClaimsRequest(b)
	if err != nil {
		return err
	}
	if p == nil {
		p = new(ClaimsRequest)
	}
	*c = *p
	return nil
}

// MarshalJSON writes the IDA request form of a verification element.
func (v VerificationRequest) MarshalJSON() ([]byte, error) {
	m := map[string]any{"trust_framework": v.TrustFramework}
	if v.Time != nil {
		t := map[string]any{}
		if v.Time.MaxAge > 0 {
			t["max_age"] = v.Time.MaxAge
		}
		if v.Time.Essential {
			t["essential"] = true
		}
		if len(t) == 0 {
			m["time"] = nil
		} else {
			m["time"] = t
		}
	}
	if v.Evidence != nil {
		list := make([]map[string]any, 0, len(v.Evidence))
		for _, e := range v.Evidence {
			em := map[string]any{"type": e.Type}
			for _, f := range e.Fields {
				em[f] = nil
			}
			list = append(list, em)
		}
		m["evidence"] = list
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads the form MarshalJSON writes (a stored Requested).
func (v *VerificationRequest) UnmarshalJSON(b []byte) error {
	p, err := parseVerification("verification", b)
	if err != nil {
		return err
	}
	*v = p
	return nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// object decodes raw as a JSON object; null gives an empty map when
// nullOK, an error otherwise.
func object(raw json.RawMessage, what string, nullOK bool) (map[string]json.RawMessage, error) {
	if isNull(raw) {
		if nullOK {
			return map[string]json.RawMessage{}, nil
		}
		return nil, fail(CodeInvalidRequest, "%s must be an object, not null", what)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fail(CodeInvalidRequest, "%s must be an object", what)
	}
	return m, nil
}

func parseTarget(member string, raw json.RawMessage) (TargetRequest, error) {
	var tr TargetRequest
	m, err := object(raw, member, true)
	if err != nil {
		return tr, err
	}
	if len(m) > maxClaimsPerMember {
		return tr, fail(CodeInvalidRequest, "%s requests more than %d claims", member, maxClaimsPerMember)
	}
	for _, name := range sortedKeys(m) {
		if name == ClaimVerifiedClaims {
			vr, err := parseVerified(member, m[name])
			if err != nil {
				return tr, err
			}
			tr.Verified = vr
			continue
		}
		spec, err := parseSpec(member+"."+safeName(name), m[name])
		if err != nil {
			return tr, err
		}
		if tr.Claims == nil {
			tr.Claims = map[string]ClaimSpec{}
		}
		tr.Claims[name] = spec
	}
	return tr, nil
}

// safeName keeps an RP-chosen claim name printable and short in error
// details.
func safeName(s string) string {
	if len(s) > 40 || !utf8.ValidString(s) {
		return "(claim)"
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "(claim)"
		}
	}
	return s
}

func parseSpec(what string, raw json.RawMessage) (ClaimSpec, error) {
	var s ClaimSpec
	m, err := object(raw, what, true)
	if err != nil {
		return s, err
	}
	if r, ok := m["essential"]; ok && !isNull(r) {
		if err := json.Unmarshal(r, &s.Essential); err != nil {
			return s, fail(CodeInvalidRequest, "%s.essential must be a boolean", what)
		}
	}
	if r, ok := m["value"]; ok && !isNull(r) {
		if err := json.Unmarshal(r, &s.Value); err != nil {
			return s, fail(CodeInvalidRequest, "%s.value is not valid JSON", what)
		}
	}
	if r, ok := m["values"]; ok && !isNull(r) {
		var vs []any
		if err := json.Unmarshal(r, &vs); err != nil {
			return s, fail(CodeInvalidRequest, "%s.values must be an array", what)
		}
		if len(vs) > maxValues {
			return s, fail(CodeInvalidRequest, "%s.values has more than %d entries", what, maxValues)
		}
		if vs == nil {
			vs = []any{}
		}
		s.Values = vs
	}
	if r, ok := m["purpose"]; ok && !isNull(r) {
		if err := json.Unmarshal(r, &s.Purpose); err != nil {
			return s, fail(CodeInvalidRequest, "%s.purpose must be a string", what)
		}
		// IDA §6.1: outside 3..300 characters the OP must refuse.
		if n := utf8.RuneCountInString(s.Purpose); n < minPurpose || n > maxPurpose {
			return s, fail(CodeInvalidRequest, "%s.purpose must be %d to %d characters", what, minPurpose, maxPurpose)
		}
	}
	return s, nil
}

func parseVerified(member string, raw json.RawMessage) ([]VerifiedRequest, error) {
	what := member + ".verified_claims"
	var list []json.RawMessage
	switch t := firstByte(raw); t {
	case '{':
		list = []json.RawMessage{raw}
	case '[':
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fail(CodeInvalidRequest, "%s must be an object or an array", what)
		}
		if len(list) == 0 {
			return nil, fail(CodeInvalidRequest, "%s is an empty array", what)
		}
		if len(list) > maxVerified {
			return nil, fail(CodeInvalidRequest, "%s has more than %d requests", what, maxVerified)
		}
	default:
		return nil, fail(CodeInvalidRequest, "%s must be an object or an array", what)
	}
	out := make([]VerifiedRequest, 0, len(list))
	for _, r := range list {
		m, err := object(r, what, false)
		if err != nil {
			return nil, err
		}
		// IDA §6: verification and claims are both required, and claims
		// must not be empty.
		vraw, ok := m["verification"]
		if !ok {
			return nil, fail(CodeInvalidRequest, "%s lacks verification", what)
		}
		v, err := parseVerification(what+".verification", vraw)
		if err != nil {
			return nil, err
		}
		craw, ok := m["claims"]
		if !ok {
			return nil, fail(CodeInvalidRequest, "%s lacks claims", what)
		}
		cm, err := object(craw, what+".claims", false)
		if err != nil {
			return nil, err
		}
		if len(cm) == 0 {
			return nil, fail(CodeInvalidRequest, "%s.claims is empty", what)
		}
		if len(cm) > maxClaimsPerMember {
			return nil, fail(CodeInvalidRequest, "%s.claims requests more than %d claims", what, maxClaimsPerMember)
		}
		vr := VerifiedRequest{Verification: v, Claims: map[string]ClaimSpec{}}
		for _, name := range sortedKeys(cm) {
			spec, err := parseSpec(what+".claims."+safeName(name), cm[name])
			if err != nil {
				return nil, err
			}
			vr.Claims[name] = spec
		}
		out = append(out, vr)
	}
	return out, nil
}

func parseVerification(what string, raw json.RawMessage) (VerificationRequest, error) {
	var v VerificationRequest
	m, err := object(raw, what, false)
	if err != nil {
		return v, err
	}
	if r, ok := m["trust_framework"]; ok {
		if v.TrustFramework, err = parseSpec(what+".trust_framework", r); err != nil {
			return v, err
		}
	}
	if r, ok := m["time"]; ok {
		tm, err := object(r, what+".time", true)
		if err != nil {
			return v, err
		}
		t := &TimeRequest{}
		if r, ok := tm["max_age"]; ok && !isNull(r) {
			var f float64
			if err := json.Unmarshal(r, &f); err != nil || f < 0 || f != math.Trunc(f) || f > maxMaxAge {
				return v, fail(CodeInvalidRequest, "%s.time.max_age must be a non-negative whole number of seconds", what)
			}
			t.MaxAge = int64(f)
		}
		if r, ok := tm["essential"]; ok && !isNull(r) {
			if err := json.Unmarshal(r, &t.Essential); err != nil {
				return v, fail(CodeInvalidRequest, "%s.time.essential must be a boolean", what)
			}
		}
		v.Time = t
	}
	if r, ok := m["evidence"]; ok && !isNull(r) {
		var list []json.RawMessage
		if firstByte(r) != '[' || json.Unmarshal(r, &list) != nil {
			return v, fail(CodeInvalidRequest, "%s.evidence must be an array", what)
		}
		if len(list) > maxEvidence {
			return v, fail(CodeInvalidRequest, "%s.evidence has more than %d entries", what, maxEvidence)
		}
		v.Evidence = []EvidenceRequest{}
		for _, er := range list {
			em, err := object(er, what+".evidence", false)
			if err != nil {
				return v, err
			}
			var e EvidenceRequest
			if r, ok := em["type"]; ok {
				if e.Type, err = parseSpec(what+".evidence.type", r); err != nil {
					return v, err
				}
			}
			for _, f := range evidenceFields {
				if r, ok := em[f]; ok {
					if _, err := parseSpec(what+".evidence."+f, r); err != nil {
						return v, err
					}
					e.Fields = append(e.Fields, f)
				}
			}
			v.Evidence = append(v.Evidence, e)
		}
	}
	return v, nil
}

func firstByte(raw json.RawMessage) byte {
	b := bytes.TrimLeft(raw, " \t\r\n")
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkJSON refuses what encoding/json would accept but read ambiguously:
// duplicate object keys (json keeps the last; another parser in front of
// us may keep the first), trailing values, a non-object top level, and
// nesting deeper than any real request needs.
func checkJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		obj     bool
		wantKey bool
		keys    map[string]struct{}
	}
	var stack []*frame
	started := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if !started || len(stack) != 0 {
				return fail(CodeInvalidRequest, "claims parameter is not complete JSON")
			}
			return nil
		}
		if err != nil {
			return fail(CodeInvalidRequest, "claims parameter is not valid JSON")
		}
		if started && len(stack) == 0 {
			return fail(CodeInvalidRequest, "claims parameter has data after the object")
		}
		if !started {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return fail(CodeInvalidRequest, "claims parameter is not a JSON object")
			}
		}
		started = true
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			k, _ := tok.(string)
			if _, dup := top.keys[k]; dup {
				return fail(CodeInvalidRequest, "claims parameter repeats a key")
			}
			top.keys[k] = struct{}{}
			top.wantKey = false
			continue
		}
		switch d, _ := tok.(json.Delim); d {
		case '{', '[':
			if top != nil && top.obj {
				top.wantKey = true
			}
			if len(stack) >= maxDepth {
				return fail(CodeInvalidRequest, "claims parameter nests deeper than %d", maxDepth)
			}
			f := &frame{obj: d == '{', wantKey: d == '{'}
			if f.obj {
				f.keys = map[string]struct{}{}
			}
			stack = append(stack, f)
		case ']':
			stack = stack[:len(stack)-1]
		default: // a scalar value
			if top != nil && top.obj {
				top.wantKey = true
			}
		}
	}
}
