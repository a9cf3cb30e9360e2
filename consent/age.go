package consent

import (
	"fmt"
	"time"
)

// jst is Japan Standard Time. Japan has kept UTC+9 without daylight
// saving since 1951, so a fixed zone equals Asia/Tokyo for every date an
// age check can fall on, and needs no tzdata on the host.
var jst = time.FixedZone("JST", 9*60*60)

// parseBirthdate reads YYYY-MM-DD strictly (the form pkibridge writes).
func parseBirthdate(s string) (y int, m time.Month, d int, err error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil || t.Format(time.DateOnly) != s {
		return 0, 0, 0, fmt.Errorf("consent: birth date is not YYYY-MM-DD")
	}
	return t.Year(), t.Month(), t.Day(), nil
}

// AgeReachedDate is the calendar day on which a person born on birthdate
// reaches age n (満n歳に達する日), under the Act on Counting Age (年齢計算ニ
// 関スル法律, 1902) with Civil Code Art. 143: age is counted from the day of
// birth, so a year of life ends at the end of the day before the birthday
// anniversary. Someone born on April 1 reaches 18 on March 31 (at 24:00);
// that is why they start school a year earlier than someone born April 2.
// When the anniversary month has no such day (born February 29, a common
// year), Art. 143(2) ends the period on the last day of that month: the
// person reaches the age at the end of February 28.
func AgeReachedDate(birthdate string, n int) (time.Time, error) {
	y, m, d, err := parseBirthdate(birthdate)
	if err != nil {
		return time.Time{}, err
	}
	ty := y + n
	// The anniversary (応当日) in year ty, or none for Feb 29 in a common year.
	anniv := time.Date(ty, m, d, 0, 0, 0, 0, jst)
	if anniv.Month() != m { // normalised past the month's end: no such day
		last := time.Date(ty, m+1, 0, 0, 0, 0, 0, jst) // last day of month m
		return last, nil
	}
	return anniv.AddDate(0, 0, -1), nil
}

// AgeAt is the legal age at the instant now: the number of years n whose
// AgeReachedDate has fully passed (the age goes up at 24:00 Japan time at
// the end of that day). Because that instant is 00:00 of the anniversary
// (or of March 1 for February 29 births in common years), no birthday is
// ever early or late by a time zone: an RP in UTC asking at 15:00Z on
// March 31 gets the Japanese answer for 00:00 on April 1.
func AgeAt(birthdate string, now time.Time) (int, error) {
	y, m, d, err := parseBirthdate(birthdate)
	if err != nil {
		return 0, err
	}
	if now.Before(time.Date(y, m, d, 0, 0, 0, 0, jst)) {
		return 0, fmt.Errorf("consent: birth date is in the future")
	}
	age := now.In(jst).Year() - y
	for age > 0 {
		reached, _ := AgeReachedDate(birthdate, age)
		// The age is reached when the reached day has ended.
		if !now.Before(reached.AddDate(0, 0, 1)) {
			break
		}
		age--
	}
	return age, nil
}

// ageOver answers age_over_n at now; ok is false when the birth date is
// missing or malformed, so the claim is left out rather than guessed.
func ageOver(birthdate string, n int, now time.Time) (over, ok bool) {
	age, err := AgeAt(birthdate, now)
	if err != nil {
		return false, false
	}
	return age >= n, true
}
