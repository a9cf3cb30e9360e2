package pkibridge

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
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

var jpkiFacts = [...]fact{
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
	if values, ok := sanFactsFast(extValue); ok {
		return buildAttributes(&values)
	}
	values, err := sanFacts(extValue)
	if err != nil {
		return nil, err
	}
	return buildAttributes(&values)
}

// factValues holds the facts found, indexed like jpkiFacts.
type factValues [len(jpkiFacts)]struct {
	s  string
	ok bool
}

// Indexes into jpkiFacts and factValues.
const (
	factName = iota
	factNameSubstitution
	factGender
	factBirthdate
	factAddress
	factAddressSubstitution
)

// sanFacts reads the facts with encoding/asn1, which decides every
// question of form and words the errors.
func sanFacts(extValue []byte) (factValues, error) {
	var values factValues
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(extValue, &seq)
	if err != nil {
		return values, Wrap(ReasonAttributes, err, "subjectAltName is not valid DER")
	}
	if len(rest) != 0 {
		return values, Fail(ReasonAttributes, "subjectAltName has trailing data")
	}
	if seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return values, Fail(ReasonAttributes, "subjectAltName is not a SEQUENCE")
	}
	for in, i := seq.Bytes, 1; len(in) > 0; i++ {
		var gn asn1.RawValue
		in, err = asn1.Unmarshal(in, &gn)
		if err != nil {
			return values, Wrap(ReasonAttributes, err, "subjectAltName entry %d is not valid DER", i)
		}
		if gn.Class != asn1.ClassContextSpecific || gn.Tag != 0 {
			continue // not an otherName: DNS, email, directoryName... ignored
		}
		if !gn.IsCompound {
			return values, Fail(ReasonAttributes, "subjectAltName entry %d: otherName is not constructed", i)
		}
		typeID, raw, err := parseOtherName(gn.Bytes)
		if err != nil {
			return values, Wrap(ReasonAttributes, err, "subjectAltName entry %d: malformed otherName", i)
		}
		fi := lookupFact(typeID)
		if fi < 0 {
			continue
		}
		f := jpkiFacts[fi]
		if values[fi].ok {
			return values, Fail(ReasonAttributes, "%s: given more than once", f.field)
		}
		s, err := factString(f, raw)
		if err != nil {
			return values, err
		}
		values[fi].s, values[fi].ok = s, true
	}
	return values, nil
}

// jpkiFactOIDs are the DER contents of the jpkiFacts type-ids.
var jpkiFactOIDs = func() (out [len(jpkiFacts)][]byte) {
	for i, f := range jpkiFacts {
		der, err := asn1.Marshal(f.oid)
		if err != nil || len(der) < 2 || int(der[1]) != len(der)-2 {
			panic("pkibridge: fact OID does not encode")
		}
		out[i] = der[2:]
	}
	return out
}()

// sanFactsFast reads a well-formed SubjectAltName of the JPKI shape without
// reflection: every element in short or minimal long form, the six facts
// as otherNames with their exact type-ids, and no other otherName. It
// reports ok only when it is sure sanFacts would find the same values
// without an error; anything unusual, wrong or merely unknown (a high tag
// number, another otherName type-id, a duplicate, a bad string) goes to
// sanFacts, which judges it and words the error.
func sanFactsFast(extValue []byte) (values factValues, ok bool) {
	in := cryptobyte.String(extValue)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return values, false
	}
	for !seq.Empty() {
		var gn cryptobyte.String
		var tag cbasn1.Tag
		if !seq.ReadAnyASN1(&gn, &tag) {
			return values, false
		}
		switch tag {
		case cbasn1.Tag(0).ContextSpecific().Constructed():
		case cbasn1.Tag(0).ContextSpecific():
			return values, false // a primitive otherName: an error
		default:
			continue // DNS, email, directoryName...: ignored either way
		}
		var oid, wrapper, inner cryptobyte.String
		var innerTag cbasn1.Tag
		if !gn.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) ||
			!gn.ReadASN1(&wrapper, cbasn1.Tag(0).ContextSpecific().Constructed()) || !gn.Empty() ||
			!wrapper.ReadAnyASN1(&inner, &innerTag) || !wrapper.Empty() {
			return values, false
		}
		fi := -1
		for i, der := range jpkiFactOIDs {
			if bytes.Equal(oid, der) {
				fi = i
				break
			}
		}
		// Universal and primitive; the tag number is checked by factString.
		if fi < 0 || values[fi].ok || innerTag&0xe0 != 0 {
			return values, false
		}
		s, err := factString(jpkiFacts[fi], asn1.RawValue{Class: asn1.ClassUniversal, Tag: int(innerTag), Bytes: inner})
		if err != nil {
			return values, false
		}
		values[fi].s, values[fi].ok = s, true
	}
	return values, true
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

// lookupFact returns the index in jpkiFacts of the fact with type-id oid,
// or -1.
func lookupFact(oid asn1.ObjectIdentifier) int {
	for i, f := range jpkiFacts {
		if oid.Equal(f.oid) {
			return i
		}
	}
	return -1
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

func buildAttributes(values *factValues) (*Attributes, error) {
	a := &Attributes{}

	name, ok := values[factName].s, values[factName].ok
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

	code, ok := values[factGender].s, values[factGender].ok
	if !ok {
		return nil, Fail(ReasonAttributes, "gender: missing")
	}
	g, err := parseGender(code)
	if err != nil {
		return nil, err
	}
	a.Gender, a.GenderCode = g, code

	bd, ok := values[factBirthdate].s, values[factBirthdate].ok
	if !ok {
		return nil, Fail(ReasonAttributes, "birthdate: missing")
	}
	if a.Birthdate, a.BirthdateEra, err = parseBirthdate(bd); err != nil {
		return nil, err
	}

	addr, ok := values[factAddress].s, values[factAddress].ok
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
		fact int
		dst  *string
	}{
		{factNameSubstitution, &a.NameSubstitution},
		{factAddressSubstitution, &a.AddressSubstitution},
	} {
		s := values[fl.fact].s
		if err := checkFlags(jpkiFacts[fl.fact].field, s); err != nil {
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
	// y, m and d are a real date with 1 <= y <= 9999: "2006-01-02" by hand,
	// without time.Format's layout interpretation on every sign-in.
	iso = string([]byte{
		byte('0' + y/1000), byte('0' + y/100%10), byte('0' + y/10%10), byte('0' + y%10), '-',
		byte('0' + m/10), byte('0' + m%10), '-',
		byte('0' + d/10), byte('0' + d%10),
	})
	return iso, era, nil
}
