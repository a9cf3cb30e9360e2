package provider

import (
	"strings"
	"testing"
)

func TestTokenCrypto(t *testing.T) {
	key := [32]byte{1, 2, 3}
	c, err := newTokenCrypto(key, "k1")
	if err != nil {
		t.Fatal(err)
	}
	plain := "grant.rnd.1.2.b3Blbmlk.acct:subject"
	tok, err := c.Encrypt(plain)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "k1.") || strings.Contains(tok, "grant") || strings.Contains(tok, "subject") {
		t.Fatalf("sealed token %q shows its key ID wrong or its content", tok)
	}
	if got, err := c.Decrypt(tok); err != nil || got != plain {
		t.Fatalf("Decrypt = %q, %v", got, err)
	}
	again, _ := c.Encrypt(plain)
	if again == tok {
		t.Fatal("two seals of one value are equal (nonce reused)")
	}

	otherKey, _ := newTokenCrypto([32]byte{9}, "k1")
	otherKID, _ := newTokenCrypto(key, "k2")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for name, bad := range map[string]string{
		"another key":    mustSeal(t, otherKey, plain),
		"another key ID": strings.Replace(mustSeal(t, otherKID, plain), "k2.", "k1.", 1),
		"altered body":   flip(tok, len(tok)-5),
		"altered nonce":  flip(tok, 4),
		"no key ID":      strings.TrimPrefix(tok, "k1."),
		"empty":          "",
		"key ID only":    "k1.",
		"short":          "k1.AAAA",
		"not base64url":  "k1.***",
		"too long":       "k1." + strings.Repeat("A", maxSealedToken),
		"a JWE":          "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..AAAA.AAAA.AAAA",
		"a JWT":          "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.AAAA",
	} {
		if got, err := c.Decrypt(bad); err == nil {
			t.Errorf("%s: Decrypt accepted %q as %q", name, bad, got)
		}
	}
	if _, err := newTokenCrypto(key, ""); err == nil {
		t.Error("empty key ID accepted")
	}
	if _, err := newTokenCrypto(key, "a.b"); err == nil {
		t.Error("key ID with the separator accepted")
	}
}

func mustSeal(t *testing.T, c *tokenCrypto, s string) string {
	t.Helper()
	tok, err := c.Encrypt(s)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func FuzzTokenCryptoDecrypt(f *testing.F) {
	c, err := newTokenCrypto([32]byte{7}, "kid")
	if err != nil {
		f.Fatal(err)
	}
	good, _ := c.Encrypt("id:sub")
	f.Add(good)
	f.Add("kid.AAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		plain, err := c.Decrypt(tok)
		if err != nil {
			return
		}
		// Only what this key sealed opens (in any process, "id:sub"
		// alone); the fuzzer cannot forge GCM.
		if plain != "id:sub" {
			t.Fatalf("%q opened as %q", tok, plain)
		}
	})
}
