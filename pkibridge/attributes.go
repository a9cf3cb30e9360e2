package pkibridge

import (
	"crypto/x509"
	"encoding/asn1"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on the basic four facts. The address limit is the JPKI format's
// (200 characters); the name limit is only a bound on what we store, far
// above any real name.
const (
	MaxAddressRunes = 200
	MaxNameRunes    = 256
	// maxSANBytes bounds the SubjectAltName before parsing; the whole
	// certificate is already bounded by the envelope size.
	maxSANBytes = 16 << 10
)

// ideographicSpace (U+3000) separates family and given name in the JPKI
// name field.
const ideographicSpace = '\u3000'

// fact describes one otherName of the basic four facts.
type fact struct {
	oid   asn1.ObjectIdentifier
	field string // name used in error details; never the value
	ascii bool   // value is ASCII-only: PrintableString and IA5String are accepted too
}

var jpkiFacts = []fact{
	{OIDName, "name", false},
	{OIDNameSubstitution, "name substitution flags", true},
	{OIDGender, "gender", true},
	{OIDBirthdate, "birthdate", true},
	{OIDAddress, "address", false},
	{OIDAddressSubstitution, "address substitution flags", true},
}

// ParseAttributes reads the basic four facts from a signature
// certificate's SubjectAltName. It is the only place personal data enters
// the system, so it is strict about form: every failure is
// ReasonAttributes with a detail that names the field and the problem,
// never the value.
func ParseAttributes(cert *x509.Certificate) (*Attributes, error) {
	if cert == nil {
		return nil, Fail(ReasonMalformed, "no certificate")
	}
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidExtSubjectAltName) {
			return ParseSAN(e.Value)
		}
	}
	return nil, Fail(ReasonAttributes, "certificate has no subjectAltName extension")
}

// ParseSAN parses the value of a 2.5.29.17 extension as the JPKI basic
// four facts: one otherName per fact (type-id 1.2.392.200149.8.5.5.1-6,
// value [0] EXPLICIT UTF8String). It is liberal only where real cards
// might differ: other GeneralName forms and unknown otherName type-ids are
// ignored, and the ASCII-only facts may also be PrintableString or
// IA5String. A fact given twice is refused, since we could not tell which
// one the card holder's record says.
//
// Name is split at the first U+3000 into FamilyName and GivenName; a name
// without U+3000 is all FamilyName (GivenName ""), which is how single-part
// names are written. Name, gender, birth date and address are required.
func ParseSAN(extValue []byte) (*Attributes, error) {
	if len(extValue) > maxSANBytes {
		return nil, Fail(ReasonAttributes, "subjectAltName of %d bytes exceeds the limit of %d", len(extValue), maxSANBytes)
	}
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(extValue, &seq)
	if err != nil {
		return nil, Wrap(ReasonAttributes, err, "subjectAltName is not valid DER")
	}
	if len(rest) != 0 {
		return nil, Fail(ReasonAttributes, "subjectAltName has trailing data")
	}
	if seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return nil, Fail(ReasonAttributes, "subjectAltName is not a SEQUENCE")
	}
	values := make(map[string]string, len(jpkiFacts))
	for in, i := seq.Bytes, 1; len(in) > 0; i++ {
		var gn asn1.RawValue
		in, err = asn1.Unmarshal(in, &gn)
		if err != nil {
			return nil, Wrap(ReasonAttributes, err, "subjectAltName entry %d is not valid DER", i)
		}
		if gn.Class != asn1.ClassContextSpecific || gn.Tag != 0 {
			continue // not an otherName: DNS, email, directoryName... ignored
		}
		if !gn.IsCompound {
			return nil, Fail(ReasonAttributes, "subjectAltName entry %d: otherName is not constructed", i)
		}
		typeID, raw, err := parseOtherName(gn.Bytes)
		if err != nil {
			return nil, Wrap(ReasonAttributes, err, "subjectAltName entry %d: malformed otherName", i)
		}
		f, ok := lookupFact(typeID)
		if !ok {
			continue
		}
		if _, dup := values[f.field]; dup {
			return nil, Fail(ReasonAttributes, "%s: given more than once", f.field)
		}
		s, err := factString(f, raw)
		if err != nil {
			return nil, err
		}
		values[f.field] = s
	}
	return buildAttributes(values)
}

// parseOtherName splits the contents of otherName ::= SEQUENCE {
// type-id OID, value [0] EXPLICIT ANY } (the SEQUENCE tag itself is
// replaced by the GeneralName [0]).
func parseOtherName(b []byte) (asn1.ObjectIdentifier, asn1.RawValue, error) {
	var oid asn1.ObjectIdentifier
	rest, err := asn1.Unmarshal(b, &oid)
	if err != nil {
		return nil, asn1.RawValue{}, err
	}
	var wrapper asn1.RawValue
	rest, err = asn1.Unmarshal(rest, &wrapper)
	if err != nil {
		return nil, asn1.RawValue{}, err
	}
	if len(rest) != 0 {
		return nil, asn1.RawValue{}, asn1.SyntaxError{Msg: "trailing data after the value"}
	}
	if wrapper.Class != asn1.ClassContextSpecific || wrapper.Tag != 0 || !wrapper.IsCompound {
		return nil, asn1.RawValue{}, asn1.StructuralError{Msg: "value is not [0] EXPLICIT"}
	}
	var inner asn1.RawValue
	rest, err = asn1.Unmarshal(wrapper.Bytes, &inner)
	if err != nil {
		return nil, asn1.RawValue{}, err
	}
	if len(rest) != 0 {
		return nil, asn1.RawValue{}, asn1.SyntaxError{Msg: "trailing data inside [0]"}
	}
	return oid, inner, nil
}

func lookupFact(oid asn1.ObjectIdentifier) (fact, bool) {
	for _, f := range jpkiFacts {
		if oid.Equal(f.oid) {
			return f, true
		}
	}
	return fact{}, false
}

// factString checks the ASN.1 string type and the text itself: valid
// UTF-8, no control characters.
func factString(f fact, v asn1.RawValue) (string, error) {
	if v.Class != asn1.ClassUniversal || v.IsCompound {
		return "", Fail(ReasonAttributes, "%s: value is not a character string", f.field)
	}
	switch v.Tag {
	case asn1.TagUTF8String:
	case asn1.TagPrintableString, asn1.TagIA5String:
		if !f.ascii {
			return "", Fail(ReasonAttributes, "%s: value is not a UTF8String", f.field)
		}
		for _, c := range v.Bytes {
			if c >= utf8.RuneSelf {
				return "", Fail(ReasonAttributes, "%s: non-ASCII byte in an ASCII string type", f.field)
			}
		}
	default:
		return "", Fail(ReasonAttributes, "%s: value has ASN.1 string tag %d, want UTF8String", f.field, v.Tag)
	}
	if !utf8.Valid(v.Bytes) {
		return "", Fail(ReasonAttributes, "%s: value is not valid UTF-8", f.field)
	}
	s := string(v.Bytes)
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", Fail(ReasonAttributes, "%s: value contains a control character", f.field)
		}
	}
	return s, nil
}

func buildAttributes(values map[string]string) (*Attributes, error) {
	a := &Attributes{}

	name, ok := values["name"]
	switch {
	case !ok:
		return nil, Fail(ReasonAttributes, "name: missing")
	case name == "":
		return nil, Fail(ReasonAttributes, "name: empty")
	case utf8.RuneCountInString(name) > MaxNameRunes:
		return nil, Fail(ReasonAttributes, "name: longer than %d characters", MaxNameRunes)
	}
	a.Name = name
	a.FamilyName, a.GivenName = splitName(name)

	code, ok := values["gender"]
	if !ok {
		return nil, Fail(ReasonAttributes, "gender: missing")
	}
	g, err := parseGender(code)
	if err != nil {
		return nil, err
	}
	a.Gender, a.GenderCode = g, code

	bd, ok := values["birthdate"]
	if !ok {
		return nil, Fail(ReasonAttributes, "birthdate: missing")
	}
	if a.Birthdate, a.BirthdateEra, err = parseBirthdate(bd); err != nil {
		return nil, err
	}

	addr, ok := values["address"]
	switch {
	case !ok:
		return nil, Fail(ReasonAttributes, "address: missing")
	case addr == "":
		return nil, Fail(ReasonAttributes, "address: empty")
	case utf8.RuneCountInString(addr) > MaxAddressRunes:
		return nil, Fail(ReasonAttributes, "address: longer than %d characters", MaxAddressRunes)
	}
	a.Address = addr

	for _, fl := range []struct {
		field string
		dst   *string
	}{
		{"name substitution flags", &a.NameSubstitution},
		{"address substitution flags", &a.AddressSubstitution},
	} {
		s := values[fl.field]
		if err := checkFlags(fl.field, s); err != nil {
			return nil, err
		}
		*fl.dst = s
	}
	return a, nil
}

// splitName splits at the first U+3000. Without one the whole name is the
// family name and the given name is empty.
func splitName(name string) (family, given string) {
	for i, r := range name {
		if r == ideographicSpace {
			return name[:i], name[i+utf8.RuneLen(r):]
		}
	}
	return name, ""
}

func parseGender(code string) (string, error) {
	switch code {
	case "1":
		return "male", nil
	case "2":
		return "female", nil
	case "3":
		return "not_known", nil
	}
	return "", Fail(ReasonAttributes, "gender: code is not 1, 2 or 3")
}

func checkFlags(field, s string) error {
	if len(s) > MaxAddressRunes*4 {
		return Fail(ReasonAttributes, "%s: too long", field)
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '0' && s[i] != '1' {
			return Fail(ReasonAttributes, "%s: contains a character other than 0 or 1", field)
		}
	}
	return nil
}

// eraSpans are the Gregorian days of each Japanese era, inclusive, as
// YYYYMMDD numbers. Era 0 (unknown) accepts any date.
var eraSpans = [6][2]int{
	0: {0, 99991231},
	1: {18680125, 19120729}, // Meiji
	2: {19120730, 19261224}, // Taisho
	3: {19261225, 19890107}, // Showa
	4: {19890108, 20190430}, // Heisei
	5: {20190501, 99991231}, // Reiwa
}

// parseBirthdate turns the JPKI EYYYYMMDD form into ISO 8601 and the era
// digit, checking that the date exists and that the era covers it. Its
// errors never quote the input.
func parseBirthdate(s string) (iso string, era int, err error) {
	if len(s) != 9 {
		return "", 0, Fail(ReasonAttributes, "birthdate: want 9 ASCII digits (EYYYYMMDD), got %d bytes", len(s))
	}
	n := 0
	for i := 1; i < 9; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return "", 0, Fail(ReasonAttributes, "birthdate: non-digit in the date part")
		}
		n = n*10 + int(c-'0')
	}
	if s[0] < '0' || s[0] > '9' {
		return "", 0, Fail(ReasonAttributes, "birthdate: era is not a digit")
	}
	era = int(s[0] - '0')
	if era > 5 {
		return "", 0, Fail(ReasonAttributes, "birthdate: era digit is not 0-5")
	}
	y, m, d := n/10000, n/100%100, n%100
	if y < 1 || m < 1 || m > 12 || d < 1 || d > 31 {
		return "", 0, Fail(ReasonAttributes, "birthdate: not a calendar date")
	}
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if t.Year() != y || int(t.Month()) != m || t.Day() != d {
		return "", 0, Fail(ReasonAttributes, "birthdate: not a calendar date")
	}
	if span := eraSpans[era]; n < span[0] || n > span[1] {
		return "", 0, Fail(ReasonAttributes, "birthdate: era digit does not match the Gregorian date")
	}
	return t.Format("2006-01-02"), era, nil
}
