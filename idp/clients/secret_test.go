package clients

import (
	"context"
	"strings"
	"testing"

	"github.com/watashi-id/watashi/whitelist"
)

func TestClientSecretHash(t *testing.T) {
	fixtures(t)
	if _, err := HashSecret(""); err == nil {
		t.Fatal("empty secret hashed")
	}
	other, err := HashSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if other == fixtureSecret || !strings.HasPrefix(other, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q: unsalted or unexpected format", other)
	}
	if strings.Contains(other, testSecret) {
		t.Fatal("hash contains the secret")
	}
	ctx := context.Background()
	v := newSecretVerifier()
	tests := []struct {
		name, stored, secret string
		ok                   bool
	}{
		{"right", fixtureSecret, testSecret, true},
		{"right again (cached)", fixtureSecret, testSecret, true},
		{"other salt", other, testSecret, true},
		{"wrong", fixtureSecret, testSecret + "x", false},
		{"empty", fixtureSecret, "", false},
		{"prefix", fixtureSecret, testSecret[:5], false},
		{"malformed hash", "sha256:" + testSecret, testSecret, false},
		{"plain secret as hash", testSecret, testSecret, false},
	}
	for _, tc := range tests {
		if got := v.verify(ctx, tc.stored, tc.secret); got != tc.ok {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
	// A correct answer cached for one hash never vouches for another.
	if v.verify(ctx, other, testSecret+"x") {
		t.Error("cache confused hashes")
	}
	// With every Argon2 slot taken, a caller gives up with its context.
	busy := &secretVerifier{sem: make(chan struct{}, 1)}
	busy.sem <- struct{}{}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if busy.verify(cctx, other, testSecret) {
		t.Error("verified without a slot")
	}
}

func TestParseSecretHash(t *testing.T) {
	fixtures(t)
	parts := strings.Split(fixtureSecret, "$")
	salt, key := parts[4], parts[5]
	tests := []struct {
		name, v string
		ok      bool
	}{
		{"ours", fixtureSecret, true},
		{"argon2i", "$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key, false},
		{"old version", "$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + key, false},
		{"huge memory", "$argon2id$v=19$m=4194304,t=2,p=1$" + salt + "$" + key, false},
		{"tiny memory", "$argon2id$v=19$m=64,t=2,p=1$" + salt + "$" + key, false},
		{"many passes", "$argon2id$v=19$m=19456,t=100,p=1$" + salt + "$" + key, false},
		{"many threads", "$argon2id$v=19$m=19456,t=2,p=64$" + salt + "$" + key, false},
		{"no salt", "$argon2id$v=19$m=19456,t=2,p=1$$" + key, false},
		{"short key", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$AAAA", false},
		{"bad base64", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$!!!", false},
		{"missing field", "$argon2id$v=19$" + salt + "$" + key, false},
		{"trailing field", fixtureSecret + "$x", false},
		{"junk after params", "$argon2id$v=19$m=19456,t=2,p=1junk$" + salt + "$" + key, false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		if _, err := whitelist.ParseSecretHash(tc.v); (err == nil) != tc.ok {
			t.Errorf("%s: err=%v", tc.name, err)
		}
	}
}

// VerifySecret answers only for client_secret_basic clients: a client
// registered for another method never passes, whatever it sends.
func TestVerifySecret(t *testing.T) {
	fixtures(t)
	r := newResolver(t, Options{})
	ctx := context.Background()
	basic := &Entry{Client: &Client{ID: "web", AuthMethod: AuthSecretBasic, SecretHash: fixtureSecret}}
	if !r.VerifySecret(ctx, basic, testSecret) {
		t.Fatal("right secret refused")
	}
	if r.VerifySecret(ctx, basic, testSecret+" ") || r.VerifySecret(ctx, basic, "") {
		t.Fatal("wrong secret accepted")
	}
	for _, m := range []string{AuthPrivateKeyJWT, AuthNone, "client_secret_post", ""} {
		e := &Entry{Client: &Client{ID: "c", AuthMethod: m, SecretHash: fixtureSecret}}
		if r.VerifySecret(ctx, e, testSecret) {
			t.Errorf("%q client passed with the secret", m)
		}
	}
	// The success cache is per Resolver and keyed by the hash: a client
	// whose hash changed does not pass on the old secret's memo.
	other, err := HashSecret("another secret entirely")
	if err != nil {
		t.Fatal(err)
	}
	rotated := &Entry{Client: &Client{ID: "web", AuthMethod: AuthSecretBasic, SecretHash: other}}
	if r.VerifySecret(ctx, rotated, testSecret) {
		t.Fatal("old secret accepted after the hash changed")
	}
}
