package pkibridge_test

import (
	"encoding/asn1"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// Hand-made DER for what jpkisim.SANExtension cannot produce: other string
// types, duplicates, other GeneralName forms and broken structure.

func attrTLV(tag byte, content []byte) []byte {
	n := len(content)
	var hdr []byte
	switch {
	case n < 0x80:
		hdr = []byte{tag, byte(n)}
	case n < 0x100:
		hdr = []byte{tag, 0x81, byte(n)}
	default:
		hdr = []byte{tag, 0x82, byte(n >> 8), byte(n)}
	}
	return append(hdr, content...)
}

func attrOID(oid asn1.ObjectIdentifier) []byte {
	b, err := asn1.Marshal(oid)
	if err != nil {
		panic(err)
	}
	return b
}

// attrOtherName is GeneralName [0] { type-id, [0] EXPLICIT value }.
func attrOtherName(oid asn1.ObjectIdentifier, value []byte) []byte {
	return attrTLV(0xa0, append(attrOID(oid), attrTLV(0xa0, value)...))
}

func attrUTF8(s string) []byte { return attrTLV(0x0c, []byte(s)) }

func attrSAN(names ...[]byte) []byte {
	var body []byte
	for _, n := range names {
		body = append(body, n...)
	}
	return attrTLV(0x30, body)
}

// attrValid is a complete, valid SAN built by hand, in a different order
// from jpkisim's.
func attrValid(extra ...[]byte) [][]byte {
	return append([][]byte{
		attrOtherName(pkibridge.OIDAddress, attrUTF8("北海道札幌市中央区北１条西２丁目")),
		attrOtherName(pkibridge.OIDBirthdate, attrUTF8("420000229")),
		attrOtherName(pkibridge.OIDGender, attrUTF8("2")),
		attrOtherName(pkibridge.OIDName, attrUTF8("佐藤\u3000花子")),
	}, extra...)
}

func attrSANExt(t testing.TB, f jpkisim.Facts) []byte {
	t.Helper()
	ext, err := jpkisim.SANExtension(f)
	if err != nil {
		t.Fatal(err)
	}
	return ext.Value
}

func TestParseSANFacts(t *testing.T) {
	base := func(mut func(*jpkisim.Facts)) jpkisim.Facts {
		f := *coreFacts()
		if mut != nil {
			mut(&f)
		}
		return f
	}
	date := func(y int, m time.Month, d int) string {
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Format("20060102")
	}
	cases := []struct {
		name   string
		facts  jpkisim.Facts
		want   pkibridge.Reason
		detail string // substring of the error detail
		check  func(t *testing.T, a *pkibridge.Attributes)
	}{
		{name: "valid", facts: base(nil), check: func(t *testing.T, a *pkibridge.Attributes) {
			if a.FamilyName != "山田" || a.GivenName != "太郎" || a.Birthdate != "1980-12-31" || a.BirthdateEra != 3 || a.Gender != "male" || a.GenderCode != "1" {
				t.Errorf("got %+v", a)
			}
		}},
		{name: "name without U+3000 is all family name", facts: base(func(f *jpkisim.Facts) { f.Name = "JOHN SMITH" }), check: func(t *testing.T, a *pkibridge.Attributes) {
			if a.FamilyName != "JOHN SMITH" || a.GivenName != "" {
				t.Errorf("split %q / %q", a.FamilyName, a.GivenName)
			}
		}},
		{name: "name split at the first U+3000", facts: base(func(f *jpkisim.Facts) { f.Name = "A\u3000B\u3000C" }), check: func(t *testing.T, a *pkibridge.Attributes) {
			if a.FamilyName != "A" || a.GivenName != "B\u3000C" {
				t.Errorf("split %q / %q", a.FamilyName, a.GivenName)
			}
		}},
		{name: "gender 2", facts: base(func(f *jpkisim.Facts) { f.Gender = "2" }), check: func(t *testing.T, a *pkibridge.Attributes) {
			if a.Gender != "female" || a.GenderCode != "2" {
				t.Errorf("gender %q %q", a.Gender, a.GenderCode)
			}
		}},
		{name: "gender 3", facts: base(func(f *jpkisim.Facts) { f.Gender = "3" }), check: func(t *testing.T, a *pkibridge.Attributes) {
			if a.Gender != "not_known" || a.GenderCode != "3" {
				t.Errorf("gender %q %q", a.Gender, a.GenderCode)
			}
		}},
		{name: "substitution flags absent", facts: base(func(f *jpkisim.Facts) { f.NameSubstitution, f.AddressSubstitution = "", "" })},
		{name: "address of 200 characters", facts: base(func(f *jpkisim.Facts) { f.Address = strings.Repeat("町", 200) })},
		{name: "leap day", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "4" + date(2000, 2, 29) })},
		{name: "era 0 accepts any date", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "0" + date(1980, 12, 31) })},
		{name: "era 0 before Meiji", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "018500101" })},
		{name: "Meiji first day", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "118680125" })},
		{name: "Meiji last day", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "119120729" })},
		{name: "Taisho first day", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "219120730" })},
		{name: "Taisho last day", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "219261224" })},
		{name: "Showa first day", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "319261225" })},
		{name: "Showa last day", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "319890107" })},
		{name: "Heisei first day", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "419890108" })},
		{name: "Heisei last day", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "420190430" })},
		{name: "Reiwa first day", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "520190501" })},

		{name: "name missing", facts: base(func(f *jpkisim.Facts) { f.Name = "" }), want: pkibridge.ReasonAttributes, detail: "name: missing"},
		{name: "gender missing", facts: base(func(f *jpkisim.Facts) { f.Gender = "" }), want: pkibridge.ReasonAttributes, detail: "gender: missing"},
		{name: "birthdate missing", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "" }), want: pkibridge.ReasonAttributes, detail: "birthdate: missing"},
		{name: "address missing", facts: base(func(f *jpkisim.Facts) { f.Address = "" }), want: pkibridge.ReasonAttributes, detail: "address: missing"},
		{name: "all missing", facts: jpkisim.Facts{NameSubstitution: "0"}, want: pkibridge.ReasonAttributes, detail: "name: missing"},
		{name: "gender 0", facts: base(func(f *jpkisim.Facts) { f.Gender = "0" }), want: pkibridge.ReasonAttributes, detail: "gender:"},
		{name: "gender 4", facts: base(func(f *jpkisim.Facts) { f.Gender = "4" }), want: pkibridge.ReasonAttributes, detail: "gender:"},
		{name: "gender x", facts: base(func(f *jpkisim.Facts) { f.Gender = "x" }), want: pkibridge.ReasonAttributes, detail: "gender:"},
		{name: "gender 11", facts: base(func(f *jpkisim.Facts) { f.Gender = "11" }), want: pkibridge.ReasonAttributes, detail: "gender:"},
		{name: "era mismatch", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "419801231" }), want: pkibridge.ReasonAttributes, detail: "era digit does not match"},
		{name: "Meiji day before it began", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "118680124" }), want: pkibridge.ReasonAttributes, detail: "era digit does not match"},
		{name: "Meiji day after it ended", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "119120730" }), want: pkibridge.ReasonAttributes, detail: "era digit does not match"},
		{name: "Showa after it ended", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "319890108" }), want: pkibridge.ReasonAttributes, detail: "era digit does not match"},
		{name: "Heisei after it ended", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "420190501" }), want: pkibridge.ReasonAttributes, detail: "era digit does not match"},
		{name: "Reiwa before it began", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "520190430" }), want: pkibridge.ReasonAttributes, detail: "era digit does not match"},
		{name: "era 6", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "620200101" }), want: pkibridge.ReasonAttributes, detail: "era digit is not 0-5"},
		{name: "era not a digit", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "H19801231" }), want: pkibridge.ReasonAttributes, detail: "era is not a digit"},
		{name: "Feb 30", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "319800230" }), want: pkibridge.ReasonAttributes, detail: "not a calendar date"},
		{name: "Feb 29 in a common year", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "019000229" }), want: pkibridge.ReasonAttributes, detail: "not a calendar date"},
		{name: "month 13", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "319801301" }), want: pkibridge.ReasonAttributes, detail: "not a calendar date"},
		{name: "day 00", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "319801200" }), want: pkibridge.ReasonAttributes, detail: "not a calendar date"},
		{name: "year 0000", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "000000101" }), want: pkibridge.ReasonAttributes, detail: "not a calendar date"},
		{name: "non-digit in date", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "31980-231" }), want: pkibridge.ReasonAttributes, detail: "non-digit"},
		{name: "full-width digits", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "３19801231" }), want: pkibridge.ReasonAttributes, detail: "birthdate:"},
		{name: "ISO form instead of EYYYYMMDD", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "1980-12-31" }), want: pkibridge.ReasonAttributes, detail: "want 9 ASCII digits"},
		{name: "birthdate too short", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "31980123" }), want: pkibridge.ReasonAttributes, detail: "want 9 ASCII digits"},
		{name: "birthdate too long", facts: base(func(f *jpkisim.Facts) { f.Birthdate = "3198012310" }), want: pkibridge.ReasonAttributes, detail: "want 9 ASCII digits"},
		{name: "address of 201 characters", facts: base(func(f *jpkisim.Facts) { f.Address = strings.Repeat("町", 201) }), want: pkibridge.ReasonAttributes, detail: "address: longer than 200"},
		{name: "name too long", facts: base(func(f *jpkisim.Facts) { f.Name = strings.Repeat("名", pkibridge.MaxNameRunes+1) }), want: pkibridge.ReasonAttributes, detail: "name: longer"},
		{name: "name substitution not 0/1", facts: base(func(f *jpkisim.Facts) { f.NameSubstitution = "0102" }), want: pkibridge.ReasonAttributes, detail: "name substitution flags"},
		{name: "address substitution not 0/1", facts: base(func(f *jpkisim.Facts) { f.AddressSubstitution = "00 1" }), want: pkibridge.ReasonAttributes, detail: "address substitution flags"},
		{name: "control character in name", facts: base(func(f *jpkisim.Facts) { f.Name = "山田\u3000太\x07郎" }), want: pkibridge.ReasonAttributes, detail: "name: value contains a control character"},
		{name: "newline in address", facts: base(func(f *jpkisim.Facts) { f.Address = "東京都\n千代田区" }), want: pkibridge.ReasonAttributes, detail: "address: value contains a control character"},
		{name: "C1 control in address", facts: base(func(f *jpkisim.Facts) { f.Address = "東京都\u0085千代田区" }), want: pkibridge.ReasonAttributes, detail: "control character"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := pkibridge.ParseSAN(attrSANExt(t, c.facts))
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if a.Name != c.facts.Name || a.Address != c.facts.Address || a.NameSubstitution != c.facts.NameSubstitution || a.AddressSubstitution != c.facts.AddressSubstitution {
					t.Fatalf("got %+v", a)
				}
				if a.FamilyName+a.GivenName != strings.Replace(a.Name, "\u3000", "", 1) {
					t.Fatalf("split %q / %q loses characters", a.FamilyName, a.GivenName)
				}
				if want := c.facts.Birthdate[1:5] + "-" + c.facts.Birthdate[5:7] + "-" + c.facts.Birthdate[7:]; a.Birthdate != want {
					t.Fatalf("birthdate %s, want %s", a.Birthdate, want)
				}
				if a.BirthdateEra != int(c.facts.Birthdate[0]-'0') {
					t.Fatalf("era %d", a.BirthdateEra)
				}
				if c.check != nil {
					c.check(t, a)
				}
				return
			}
			coreWantReason(t, err, c.want)
			if a != nil {
				t.Fatal("attributes returned with an error")
			}
			if !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("detail %q does not say %q", err, c.detail)
			}
			attrNoValues(t, err.Error(), c.facts)
		})
	}
}

// attrNoValues fails if msg quotes any non-trivial fact value.
func attrNoValues(t *testing.T, msg string, f jpkisim.Facts) {
	t.Helper()
	for _, v := range []string{f.Name, f.Address, f.Birthdate, f.NameSubstitution, f.AddressSubstitution} {
		if utf8.RuneCountInString(v) >= 3 && strings.Contains(msg, v) {
			t.Fatalf("error %q quotes a value", msg)
		}
	}
	if f.Gender != "" && strings.Contains(msg, `"`+f.Gender+`"`) {
		t.Fatalf("error %q quotes the gender code", msg)
	}
}

// TestParseSANEraDateAgrees checks the parser accepts what the simulator's
// era table produces across every era boundary, one day either side.
func TestParseSANEraDateAgrees(t *testing.T) {
	for _, b := range []string{"1868-01-25", "1912-07-30", "1926-12-25", "1989-01-08", "2019-05-01"} {
		day, err := time.Parse("2006-01-02", b)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []time.Time{day.AddDate(0, 0, -1), day, day.AddDate(0, 0, 1)} {
			f := *coreFacts()
			f.Birthdate = jpkisim.EraDate(d)
			a, err := pkibridge.ParseSAN(attrSANExt(t, f))
			if err != nil {
				t.Fatalf("%s: %v", d.Format("2006-01-02"), err)
			}
			if a.Birthdate != d.Format("2006-01-02") {
				t.Fatalf("%s parsed as %s", d.Format("2006-01-02"), a.Birthdate)
			}
		}
	}
}

func TestParseSANEncoding(t *testing.T) {
	dnsName := attrTLV(0x82, []byte("example.jp"))
	dirName := attrTLV(0xa4, attrTLV(0x30, nil))
	unknownOther := attrOtherName(asn1.ObjectIdentifier{1, 2, 392, 200149, 8, 5, 5, 99}, attrUTF8("x"))
	cases := []struct {
		name   string
		der    []byte
		want   pkibridge.Reason
		detail string
	}{
		{name: "valid, hand-built", der: attrSAN(attrValid()...)},
		{name: "other GeneralNames ignored", der: attrSAN(attrValid(dnsName, dirName)...)},
		{name: "unknown otherName ignored", der: attrSAN(attrValid(unknownOther)...)},
		{name: "PrintableString gender and birthdate", der: attrSAN(
			attrOtherName(pkibridge.OIDName, attrUTF8("佐藤\u3000花子")),
			attrOtherName(pkibridge.OIDGender, attrTLV(0x13, []byte("2"))),
			attrOtherName(pkibridge.OIDBirthdate, attrTLV(0x13, []byte("420000229"))),
			attrOtherName(pkibridge.OIDAddress, attrUTF8("北海道")),
		)},
		{name: "IA5String substitution flags", der: attrSAN(attrValid(attrOtherName(pkibridge.OIDNameSubstitution, attrTLV(0x16, []byte("0100"))))...)},

		{name: "duplicate name", der: attrSAN(attrValid(attrOtherName(pkibridge.OIDName, attrUTF8("佐藤\u3000花子")))...), want: pkibridge.ReasonAttributes, detail: "name: given more than once"},
		{name: "duplicate gender", der: attrSAN(attrValid(attrOtherName(pkibridge.OIDGender, attrUTF8("2")))...), want: pkibridge.ReasonAttributes, detail: "gender: given more than once"},
		{name: "duplicate flags", der: attrSAN(attrValid(attrOtherName(pkibridge.OIDAddressSubstitution, attrUTF8("0")), attrOtherName(pkibridge.OIDAddressSubstitution, attrUTF8("0")))...), want: pkibridge.ReasonAttributes, detail: "given more than once"},
		{name: "PrintableString name", der: attrSAN(append(attrValid()[:3], attrOtherName(pkibridge.OIDName, attrTLV(0x13, []byte("SATO HANAKO"))))...), want: pkibridge.ReasonAttributes, detail: "name: value is not a UTF8String"},
		{name: "BMPString address", der: attrSAN(append(attrValid()[1:], attrOtherName(pkibridge.OIDAddress, attrTLV(0x1e, []byte{0x53, 0x17})))...), want: pkibridge.ReasonAttributes, detail: "address: value has ASN.1 string tag 30"},
		{name: "IA5String with a high byte", der: attrSAN(append(attrValid()[:2], attrOtherName(pkibridge.OIDGender, attrTLV(0x16, []byte{0xb1})), attrValid()[3])...), want: pkibridge.ReasonAttributes, detail: "non-ASCII"},
		{name: "invalid UTF-8", der: attrSAN(append(attrValid()[1:], attrOtherName(pkibridge.OIDAddress, attrTLV(0x0c, []byte{0xe5, 0x8c})))...), want: pkibridge.ReasonAttributes, detail: "address: value is not valid UTF-8"},
		{name: "value is a SEQUENCE", der: attrSAN(append(attrValid()[1:], attrOtherName(pkibridge.OIDAddress, attrTLV(0x30, attrUTF8("x"))))...), want: pkibridge.ReasonAttributes, detail: "not a character string"},
		{name: "value not [0] EXPLICIT", der: attrSAN(append(attrValid()[1:], attrTLV(0xa0, append(attrOID(pkibridge.OIDAddress), attrUTF8("北海道")...)))...), want: pkibridge.ReasonAttributes, detail: "malformed otherName"},
		{name: "two values inside [0]", der: attrSAN(append(attrValid()[1:], attrTLV(0xa0, append(attrOID(pkibridge.OIDAddress), attrTLV(0xa0, append(attrUTF8("a"), attrUTF8("b")...))...)))...), want: pkibridge.ReasonAttributes, detail: "malformed otherName"},
		{name: "otherName primitive", der: attrSAN(attrTLV(0x80, []byte{1})), want: pkibridge.ReasonAttributes, detail: "not constructed"},
		{name: "otherName without OID", der: attrSAN(attrTLV(0xa0, attrTLV(0xa0, attrUTF8("x")))), want: pkibridge.ReasonAttributes, detail: "malformed otherName"},
		{name: "trailing data after SAN", der: append(attrSAN(attrValid()...), 0x00), want: pkibridge.ReasonAttributes, detail: "trailing data"},
		{name: "SET instead of SEQUENCE", der: attrTLV(0x31, nil), want: pkibridge.ReasonAttributes, detail: "not a SEQUENCE"},
		{name: "truncated", der: attrSAN(attrValid()...)[:40], want: pkibridge.ReasonAttributes, detail: "not valid DER"},
		{name: "indefinite length", der: []byte{0x30, 0x80, 0x00, 0x00}, want: pkibridge.ReasonAttributes, detail: "not valid DER"},
		{name: "empty", der: nil, want: pkibridge.ReasonAttributes, detail: "not valid DER"},
		{name: "empty SEQUENCE", der: attrSAN(), want: pkibridge.ReasonAttributes, detail: "name: missing"},
		{name: "only a DNS name", der: attrSAN(dnsName), want: pkibridge.ReasonAttributes, detail: "name: missing"},
		{name: "oversized", der: attrTLV(0x30, make([]byte, 20000)), want: pkibridge.ReasonAttributes, detail: "exceeds the limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := pkibridge.ParseSAN(c.der)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if a.Name != "佐藤\u3000花子" || a.FamilyName != "佐藤" || a.GivenName != "花子" || a.Gender != "female" || a.Birthdate != "2000-02-29" || a.BirthdateEra != 4 {
					t.Fatalf("got %+v", a)
				}
				return
			}
			coreWantReason(t, err, c.want)
			if !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("detail %q does not say %q", err, c.detail)
			}
			for _, v := range []string{"佐藤", "花子", "北海道", "420000229", "SATO"} {
				if strings.Contains(err.Error(), v) {
					t.Fatalf("error %q quotes a value", err)
				}
			}
		})
	}
}

func TestParseAttributes(t *testing.T) {
	e := coreSetup(t)
	if _, err := pkibridge.ParseAttributes(nil); pkibridge.ReasonOf(err) != pkibridge.ReasonMalformed {
		t.Fatalf("nil certificate: %v", err)
	}
	auth := coreIssue(t, e.authCA, jpkisim.LeafOptions{})
	if _, err := pkibridge.ParseAttributes(auth); pkibridge.ReasonOf(err) != pkibridge.ReasonAttributes || !strings.Contains(err.Error(), "no subjectAltName") {
		t.Fatalf("certificate without SAN: %v", err)
	}
	a, err := pkibridge.ParseAttributes(coreIssue(t, e.sigCA, jpkisim.LeafOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != coreFacts().Name {
		t.Fatal("name not read from the certificate")
	}
}

// TestParseAttributesOpenSSL reads SubjectAltNames encoded by an
// independent implementation: OpenSSL's otherName syntax, which writes
// the value as [0] EXPLICIT exactly as RFC 5280 says.
func TestParseAttributesOpenSSL(t *testing.T) {
	jpkisim.RequireOpenSSL(t)
	const (
		name = "otherName.1 = 1.2.392.200149.8.5.5.1;FORMAT:UTF8,UTF8:鈴木　一郎\n"
		rest = "otherName.2 = 1.2.392.200149.8.5.5.3;UTF8:3\n" +
			"otherName.3 = 1.2.392.200149.8.5.5.4;PRINTABLESTRING:520200131\n" +
			"otherName.4 = 1.2.392.200149.8.5.5.5;FORMAT:UTF8,UTF8:大阪府大阪市北区\n" +
			"otherName.5 = 1.2.392.200149.8.5.5.2;IA5STRING:0000\n" +
			"DNS.1 = example.jp\n"
	)
	cases := []struct {
		name   string
		san    string
		want   pkibridge.Reason
		detail string
	}{
		{"valid", name + rest, "", ""},
		{"BMPString name", "otherName.1 = 1.2.392.200149.8.5.5.1;BMPSTRING:Suzuki\n" + rest, pkibridge.ReasonAttributes, "name: value has ASN.1 string tag 30"},
		{"duplicate name", name + name[:len("otherName.")] + "9" + name[len("otherName.1"):] + rest, pkibridge.ReasonAttributes, "name: given more than once"},
		// Without FORMAT:UTF8, OpenSSL reads the bytes as Latin-1 and
		// encodes them again: mojibake full of C1 control characters.
		{"double-encoded UTF-8", strings.Replace(name, "FORMAT:UTF8,", "", 1) + rest, pkibridge.ReasonAttributes, "name: value contains a control character"},
		{"INTEGER gender", name + strings.Replace(rest, "UTF8:3", "INTEGER:3", 1), pkibridge.ReasonAttributes, "gender: value has ASN.1 string tag 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cnf := "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = ext\nutf8 = yes\n" +
				"[dn]\nC = JP\nCN = openssl-fixture\n" +
				"[ext]\nsubjectAltName = @san\nkeyUsage = critical,digitalSignature,nonRepudiation\n" +
				"[san]\n" + c.san
			if err := os.WriteFile(filepath.Join(dir, "san.cnf"), []byte(cnf), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
				"-keyout", filepath.Join(dir, "k.pem"), "-out", filepath.Join(dir, "c.pem"), "-days", "1",
				"-config", filepath.Join(dir, "san.cnf")).CombinedOutput()
			if err != nil {
				t.Fatalf("openssl: %v\n%s", err, out)
			}
			data, err := os.ReadFile(filepath.Join(dir, "c.pem"))
			if err != nil {
				t.Fatal(err)
			}
			certs, err := pkibridge.ParseCertificates(data)
			if err != nil {
				t.Fatal(err)
			}
			a, err := pkibridge.ParseAttributes(certs[0])
			if c.want != "" {
				coreWantReason(t, err, c.want)
				if !strings.Contains(err.Error(), c.detail) {
					t.Fatalf("detail %q does not say %q", err, c.detail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := pkibridge.Attributes{
				Name: "鈴木　一郎", FamilyName: "鈴木", GivenName: "一郎",
				Birthdate: "2020-01-31", BirthdateEra: 5, Gender: "not_known", GenderCode: "3",
				Address: "大阪府大阪市北区", NameSubstitution: "0000",
			}
			if *a != want {
				t.Fatalf("got %+v, want %+v", *a, want)
			}
		})
	}
}

func FuzzParseSAN(f *testing.F) {
	valid, err := jpkisim.SANExtension(*coreFacts())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid.Value)
	f.Add(attrSAN(attrValid()...))
	f.Add(attrSAN(attrValid(attrOtherName(pkibridge.OIDName, attrUTF8("x")))...))
	f.Add(attrSAN(attrValid(attrTLV(0x82, []byte("example.jp")))...))
	f.Add(attrSAN(attrOtherName(pkibridge.OIDBirthdate, attrTLV(0x13, []byte("319800230")))))
	f.Add(attrSAN(attrTLV(0xa0, attrTLV(0xa0, attrUTF8("x")))))
	f.Add(attrSAN(attrValid()...)[:40])
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, der []byte) {
		a, err := pkibridge.ParseSAN(der)
		if err != nil {
			var pe *pkibridge.Error
			if !errors.As(err, &pe) || pe.Reason != pkibridge.ReasonAttributes {
				t.Fatalf("error %v is not ReasonAttributes", err)
			}
			if a != nil {
				t.Fatal("attributes returned with an error")
			}
			return
		}
		if a.Name == "" || a.Address == "" || utf8.RuneCountInString(a.Address) > pkibridge.MaxAddressRunes {
			t.Fatalf("accepted name/address out of bounds: %+v", a)
		}
		want := a.FamilyName
		if strings.ContainsRune(a.Name, '\u3000') {
			want += "\u3000" + a.GivenName
		}
		if want != a.Name {
			t.Fatalf("split %q / %q does not rebuild %q", a.FamilyName, a.GivenName, a.Name)
		}
		if _, err := time.Parse("2006-01-02", a.Birthdate); err != nil {
			t.Fatalf("birthdate %q is not ISO 8601: %v", a.Birthdate, err)
		}
		if map[string]string{"1": "male", "2": "female", "3": "not_known"}[a.GenderCode] != a.Gender {
			t.Fatalf("gender %q for code %q", a.Gender, a.GenderCode)
		}
		for _, s := range []string{a.Name, a.Address, a.NameSubstitution, a.AddressSubstitution} {
			if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }) {
				t.Fatalf("accepted a string with a control character or bad UTF-8")
			}
		}
		if strings.Trim(a.NameSubstitution+a.AddressSubstitution, "01") != "" {
			t.Fatalf("accepted substitution flags other than 0/1")
		}
	})
}

// The simulator's SAN has the real cards' shape, which must be read
// without falling back to encoding/asn1; the results are the same either
// way (FuzzSANFastPath), so only speed is at stake.
func TestParseSANSimulatorShapeTakesFastPath(t *testing.T) {
	for _, mut := range []func(*jpkisim.Facts){
		nil,
		func(f *jpkisim.Facts) { f.NameSubstitution, f.AddressSubstitution = "", "" },
	} {
		f := *coreFacts()
		if mut != nil {
			mut(&f)
		}
		ext := attrSANExt(t, f)
		if !pkibridge.SANTakesFastPath(ext) {
			t.Errorf("simulator SAN %x not read by the fast path", ext)
		}
		if _, err := pkibridge.ParseSAN(ext); err != nil {
			t.Fatal(err)
		}
	}
}
