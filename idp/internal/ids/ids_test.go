package ids

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestIDs(t *testing.T) {
	for _, c := range []struct {
		name  string
		gen   func() string
		bytes int
	}{{"Long", Long, 32}, {"Short", Short, 16}} {
		seen := map[string]bool{}
		for range 100 {
			v := c.gen()
			b, err := base64.RawURLEncoding.DecodeString(v)
			if err != nil || len(b) != c.bytes {
				t.Fatalf("%s: %q decodes to %d bytes, %v", c.name, v, len(b), err)
			}
			// Store keys and token formats use these as separators.
			if strings.ContainsAny(v, ":.{}=+/") {
				t.Fatalf("%s: %q holds a separator", c.name, v)
			}
			if seen[v] {
				t.Fatalf("%s: %q repeated", c.name, v)
			}
			seen[v] = true
		}
	}
	if New(0) != "" {
		t.Fatal("New(0)")
	}
}

func TestHash(t *testing.T) {
	// SHA-256 of the empty string and of "abc" (FIPS 180-2).
	if got := Hash(""); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatal(got)
	}
	if got := Hash("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatal(got)
	}
	if Hash("a") == Hash("A") {
		t.Fatal("case-insensitive hash")
	}
}
