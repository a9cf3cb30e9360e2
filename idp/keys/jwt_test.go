package keys

import (
	"context"
	"encoding/json"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/watashi-id/watashi/idp/store"
)

// TestSignJWT: the token verifies against the published keys only, names
// its kid and typ, and carries the claims.
func TestSignJWT(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, store.NewMemory(), nil)
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	for _, alg := range Algs {
		tok, err := m.SignJWT(ctx, alg, "logout+jwt", map[string]any{"iss": "https://id.example", "jti": "1"})
		if err != nil {
			t.Fatal(err)
		}
		jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{alg})
		if err != nil {
			t.Fatal(err)
		}
		h := jws.Signatures[0].Header
		if h.ExtraHeaders["typ"] != "logout+jwt" || h.Algorithm != string(alg) {
			t.Fatalf("header %+v", h)
		}
		pub, _ := m.Published(ctx)
		var verified bool
		for _, k := range pub {
			if k.ID() == h.KeyID {
				payload, err := jws.Verify(k.Key())
				var c map[string]any
				if err != nil || json.Unmarshal(payload, &c) != nil || c["jti"] != "1" {
					t.Fatalf("verify: %v %s", err, payload)
				}
				verified = true
			}
		}
		if !verified {
			t.Fatalf("kid %q not published", h.KeyID)
		}
	}
	if _, err := m.SignJWT(ctx, jose.HS256, "x", map[string]any{}); err == nil {
		t.Fatal("signed with an algorithm the ring has no key for")
	}
}
