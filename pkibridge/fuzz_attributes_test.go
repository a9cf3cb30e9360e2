package pkibridge

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseBirthdate checks the EYYYYMMDD parser never panics, that what
// it accepts round-trips, and that its errors never quote the input.
func FuzzParseBirthdate(f *testing.F) {
	for _, s := range []string{
		"319801231", "420000229", "019000229", "319800230", "419801231",
		"118680125", "118680124", "520190501", "520190430", "620200101",
		"H19801231", "31980-231", "31980123", "3198012310", "", "000000101",
		"３19801231", "999999999", "0\x00\x00\x00\x00\x00\x00\x00\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		iso, era, err := parseBirthdate(s)
		if err != nil {
			if ReasonOf(err) != ReasonAttributes {
				t.Fatalf("reason %s", ReasonOf(err))
			}
			if len(s) >= 6 && strings.Trim(s, "0123456789") == "" && strings.Contains(err.Error(), s) {
				t.Fatalf("error %q quotes the input", err)
			}
			return
		}
		d, perr := time.Parse("2006-01-02", iso)
		if perr != nil {
			t.Fatalf("accepted %q as %q, not ISO 8601: %v", s, iso, perr)
		}
		if got := string(rune('0'+era)) + d.Format("20060102"); got != s {
			t.Fatalf("%q round-trips to %q", s, got)
		}
		span := eraSpans[era]
		if n := d.Year()*10000 + int(d.Month())*100 + d.Day(); n < span[0] || n > span[1] {
			t.Fatalf("%q accepted outside its era", s)
		}
	})
}
