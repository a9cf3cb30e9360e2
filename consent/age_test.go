package consent

import (
	"testing"
	"time"
)

func jstTime(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04:05", s, jst)
	if err != nil {
		panic(err)
	}
	return t
}

func TestAgeReachedDate(t *testing.T) {
	for _, tc := range []struct {
		birth string
		n     int
		want  string
	}{
		// The school-year rule: born April 1 reaches 18 on March 31.
		{"2006-04-01", 18, "2024-03-31"},
		{"2006-04-02", 18, "2024-04-01"},
		// Born January 1 reaches the age on December 31 of the year before.
		{"2005-01-01", 20, "2024-12-31"},
		// Born February 29: Civil Code Art. 143(2), no Feb 29 in a
		// common year, so the period ends on the last day of February.
		{"2004-02-29", 18, "2022-02-28"},
		{"2004-02-29", 20, "2024-02-28"}, // leap year: the day before Feb 29
		{"2004-03-01", 18, "2022-02-28"},
		{"2000-12-31", 1, "2001-12-30"},
	} {
		got, err := AgeReachedDate(tc.birth, tc.n)
		if err != nil {
			t.Fatalf("AgeReachedDate(%s, %d): %v", tc.birth, tc.n, err)
		}
		if got.Format(time.DateOnly) != tc.want {
			t.Errorf("AgeReachedDate(%s, %d) = %s, want %s", tc.birth, tc.n, got.Format(time.DateOnly), tc.want)
		}
	}
}

func TestAgeAt(t *testing.T) {
	for _, tc := range []struct {
		birth string
		now   time.Time
		want  int
	}{
		// Born April 1: 17 through March 31, 18 from 24:00 that day.
		{"2006-04-01", jstTime("2024-03-31 23:59:59"), 17},
		{"2006-04-01", jstTime("2024-04-01 00:00:00"), 18},
		// The same instant seen from UTC (15:00Z is midnight in Tokyo).
		{"2006-04-01", time.Date(2024, 3, 31, 14, 59, 59, 0, time.UTC), 17},
		{"2006-04-01", time.Date(2024, 3, 31, 15, 0, 0, 0, time.UTC), 18},
		// Born Feb 29: older from March 1 in common years...
		{"2004-02-29", jstTime("2022-02-28 23:59:59"), 17},
		{"2004-02-29", jstTime("2022-03-01 00:00:00"), 18},
		// ...and from Feb 29 in leap years.
		{"2004-02-29", jstTime("2024-02-28 23:59:59"), 19},
		{"2004-02-29", jstTime("2024-02-29 00:00:00"), 20},
		{"2000-06-15", jstTime("2000-06-15 00:00:00"), 0},
		{"1950-01-01", jstTime("2025-06-01 12:00:00"), 75},
	} {
		got, err := AgeAt(tc.birth, tc.now)
		if err != nil {
			t.Fatalf("AgeAt(%s, %v): %v", tc.birth, tc.now, err)
		}
		if got != tc.want {
			t.Errorf("AgeAt(%s, %v) = %d, want %d", tc.birth, tc.now, got, tc.want)
		}
	}
}

func TestAgeMalformed(t *testing.T) {
	now := jstTime("2025-01-01 00:00:00")
	for _, b := range []string{"", "2000-02-30", "2000-2-01", "20000101", "2000/01/01", "2000-01-01T00:00:00Z", " 2000-01-01", "2026-01-01", "2025-01-02"} {
		if _, err := AgeAt(b, now); err == nil {
			t.Errorf("AgeAt(%q) accepted", b)
		}
		if _, ok := ageOver(b, 18, now); ok {
			t.Errorf("ageOver(%q) answered", b)
		}
	}
	for _, b := range []string{"", "2000-02-30", "x"} {
		if _, err := AgeReachedDate(b, 18); err == nil {
			t.Errorf("AgeReachedDate(%q) accepted", b)
		}
	}
}

func TestAgeOverThresholds(t *testing.T) {
	for _, tc := range []struct {
		birth      string
		now        time.Time
		n          int
		over, okay bool
	}{
		{"2006-04-01", jstTime("2024-03-31 12:00:00"), 18, false, true},
		{"2006-04-01", jstTime("2024-04-01 00:00:00"), 18, true, true},
		{"2006-04-01", jstTime("2024-04-01 00:00:00"), 20, false, true},
		{"2004-04-01", jstTime("2024-04-01 00:00:00"), 20, true, true},
		{"bad", jstTime("2024-04-01 00:00:00"), 20, false, false},
	} {
		over, ok := ageOver(tc.birth, tc.n, tc.now)
		if over != tc.over || ok != tc.okay {
			t.Errorf("ageOver(%s, %d, %v) = %v, %v; want %v, %v", tc.birth, tc.n, tc.now, over, ok, tc.over, tc.okay)
		}
	}
}
