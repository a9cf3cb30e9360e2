package pkibridge

import (
	"testing"
)

// ParseSAN reads the common shape without reflection (sanFactsFast) and
// everything else with encoding/asn1 (sanFacts). The fast path may decline
// anything, but what it accepts must be exactly what sanFacts finds.

func sanTLV(tag byte, content []byte) []byte {
	n := len(content)
	switch {
	case n < 0x80:
		return append([]byte{tag, byte(n)}, content...)
	case n < 0x100:
		return append([]byte{tag, 0x81, byte(n)}, content...)
	default:
		return append([]byte{tag, 0x82, byte(n >> 8), byte(n)}, content...)
	}
}

func sanOther(fi int, value []byte) []byte {
	oid := sanTLV(0x06, jpkiFactOIDs[fi])
	return sanTLV(0xa0, append(oid, sanTLV(0xa0, value)...))
}

func sanSeq(names ...[]byte) []byte {
	var body []byte
	for _, n := range names {
		body = append(body, n...)
	}
	return sanTLV(0x30, body)
}

func sanFactSeeds() [][]byte {
	full := [][]byte{
		sanOther(factName, sanTLV(0x0c, []byte("山田\u3000太郎"))),
		sanOther(factNameSubstitution, sanTLV(0x0c, []byte("0000"))),
		sanOther(factGender, sanTLV(0x0c, []byte("1"))),
		sanOther(factBirthdate, sanTLV(0x13, []byte("319801231"))),
		sanOther(factAddress, sanTLV(0x0c, []byte("東京都千代田区千代田１−１"))),
		sanOther(factAddressSubstitution, sanTLV(0x16, []byte("00000000000000"))),
	}
	with := func(extra ...[]byte) []byte { return sanSeq(append(append([][]byte{}, full...), extra...)...) }
	unknownOID := sanTLV(0xa0, append(sanTLV(0x06, []byte{0x2a, 0x03, 0x04}), sanTLV(0xa0, sanTLV(0x0c, []byte("x")))...))
	badOID := sanTLV(0xa0, append(sanTLV(0x06, []byte{0x2a, 0x80, 0x04}), sanTLV(0xa0, sanTLV(0x0c, []byte("x")))...))
	longForm := append([]byte{0x30, 0x81, 0x05}, sanTLV(0x82, []byte("a.jp"))[:0]...)
	return [][]byte{
		with(),
		sanSeq(full[4], full[3], full[2], full[0]),
		with(sanTLV(0x82, []byte("example.jp"))),
		with(sanTLV(0xa4, sanSeq())),
		with(sanTLV(0x80, nil)),
		with(full[0]),
		with(unknownOID),
		with(badOID),
		with([]byte{0x9f, 0x1f, 0x00}),
		with([]byte{0xbf, 0x81, 0x00, 0x00}),
		sanSeq(sanOther(factName, sanTLV(0x13, []byte("x")))),
		sanSeq(sanOther(factGender, sanTLV(0x2c, sanTLV(0x0c, []byte("1"))))),
		sanSeq(sanOther(factGender, sanTLV(0x4c, []byte("1")))),
		sanSeq(sanOther(factName, sanTLV(0x0c, []byte("a\x01")))),
		sanSeq(sanOther(factName, sanTLV(0x0c, []byte("a\xff")))),
		sanSeq(sanTLV(0xa0, append(sanTLV(0x06, jpkiFactOIDs[factName]), sanTLV(0xa0, append(sanTLV(0x0c, []byte("x")), 0x05, 0x00))...))),
		sanSeq(sanTLV(0xa0, append(append(sanTLV(0x06, jpkiFactOIDs[factName]), sanTLV(0xa0, sanTLV(0x0c, []byte("x")))...), 0x05, 0x00))),
		sanSeq(sanTLV(0xa0, append(sanTLV(0x06, jpkiFactOIDs[factName]), sanTLV(0xa1, sanTLV(0x0c, []byte("x")))...))),
		sanSeq(sanTLV(0xa0, append(sanTLV(0x26, jpkiFactOIDs[factName]), sanTLV(0xa0, sanTLV(0x0c, []byte("x")))...))),
		append(with(), 0x00),
		longForm,
		{0x30, 0x81, 0x00},
		{0x30, 0x80, 0x00, 0x00},
		{0x31, 0x00},
		{0x30, 0x00},
		{},
	}
}

func sanCompare(t *testing.T, der []byte) (fastOK bool) {
	t.Helper()
	fast, ok := sanFactsFast(der)
	slow, err := sanFacts(der)
	if !ok {
		return false
	}
	if err != nil {
		t.Fatalf("fast path accepted what encoding/asn1 refuses (%v): %x", err, der)
	}
	if fast != slow {
		t.Fatalf("fast path found %+v, encoding/asn1 %+v: %x", fast, slow, der)
	}
	return true
}

func TestSANFastPathMatchesASN1(t *testing.T) {
	seeds := sanFactSeeds()
	for i, der := range seeds {
		ok := sanCompare(t, der)
		// The common shapes must take the fast path, or it is dead code.
		if i < 4 && !ok {
			t.Errorf("seed %d: well-formed SAN not read by the fast path", i)
		}
	}
}

func FuzzSANFastPath(f *testing.F) {
	for _, s := range sanFactSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		if len(der) > maxSANBytes {
			return
		}
		sanCompare(t, der)
	})
}
