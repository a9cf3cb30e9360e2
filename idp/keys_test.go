package idp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/watashi-id/watashi/idp/keys"
	"github.com/watashi-id/watashi/idp/store"
)

// JWKS publishes next, current and previous of every algorithm after
// rotations, and never anything private; tokens are signed with current.
func TestRotateKeysJWKS(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	ctx := context.Background()
	before := o.loginTokens(o.oauth("web"), testAccount, nil)
	oldKID := kidOf(t, before.Extra("id_token").(string))

	for round := 1; round <= 2; round++ {
		if err := o.s.RotateKeys(ctx); err != nil {
			t.Fatal(err)
		}
		list := listKeys(t, o.kv)
		for _, alg := range []string{"ES256", "RS256"} {
			s := statesByAlg(list)[alg]
			if s[keys.StateNext] != 1 || s[keys.StateCurrent] != 1 || s[keys.StatePrevious] != 1 || len(s) != 3 {
				t.Fatalf("round %d %s: %v", round, alg, s)
			}
		}
		res, err := http.Get(o.issuer + keysPath)
		if err != nil {
			t.Fatal(err)
		}
		raw := readBody(t, res)
		var set jose.JSONWebKeySet
		if err := json.Unmarshal([]byte(raw), &set); err != nil {
			t.Fatal(err)
		}
		published := map[string]bool{}
		for _, k := range set.Keys {
			if !k.IsPublic() || k.Use != "sig" {
				t.Fatalf("JWKS key %s is not a public signing key", k.KeyID)
			}
			published[k.KeyID] = true
		}
		var raws []map[string]any
		var wrapper struct {
			Keys []map[string]any `json:"keys"`
		}
		_ = json.Unmarshal([]byte(raw), &wrapper)
		raws = wrapper.Keys
		for _, k := range raws {
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
				if _, ok := k[private]; ok {
					t.Fatalf("JWKS carries private member %q", private)
				}
			}
		}
		if len(set.Keys) != len(list) {
			t.Fatalf("JWKS has %d keys, store %d", len(set.Keys), len(list))
		}
		for _, k := range list {
			if !published[k.KID] {
				t.Fatalf("%s %s not published", k.Alg, k.State)
			}
		}
		tok := o.loginTokens(o.oauth("web"), testAccount, nil)
		kid := kidOf(t, tok.Extra("id_token").(string))
		for _, k := range list {
			if k.KID == kid && (k.State != keys.StateCurrent || k.Alg != "ES256") {
				t.Fatalf("round %d: signed with %s %s", round, k.Alg, k.State)
			}
		}
		if round == 1 && !published[oldKID] {
			t.Fatal("the key that signed before the rotation is not published")
		}
		if round == 2 && published[oldKID] {
			t.Fatal("a key two rotations old is still published")
		}
	}
	// An id_token_hint signed by the previous key still works at logout.
	if err := o.s.RotateKeys(ctx); err != nil {
		t.Fatal(err)
	}
	tok := o.loginTokens(o.oauth("web"), testAccount, nil)
	if err := o.s.RotateKeys(ctx); err != nil {
		t.Fatal(err)
	}
	res := o.get(endSessionPath + "?" + url.Values{"id_token_hint": {tok.Extra("id_token").(string)}}.Encode())
	if res.StatusCode != http.StatusFound {
		t.Fatalf("hint signed by the previous key: %d", res.StatusCode)
	}
	if raw, _ := json.Marshal(listKeys(t, o.kv)); strings.Contains(string(raw), "private") {
		t.Fatal("listing carries private material")
	}
}

func kidOf(t testing.TB, jwt string) string {
	jws, err := jose.ParseSigned(jwt, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Header.KeyID
}

// A node notices another node's rotation at once through pub/sub while
// Run is running (the cache period, the fallback, is the keys package's
// own test).
func TestKeysMultiNode(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		kv := newKV(t)
		a := newTestOP(t, kv, nil)
		b := newTestOP(t, kv, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()

		sk, err := b.s.keys.Current(ctx, jose.ES256)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.s.RotateKeys(ctx); err != nil {
			t.Fatal(err)
		}
		if again, _ := b.s.keys.Current(ctx, jose.ES256); again.ID() != sk.ID() {
			t.Fatal("cache not used")
		}

		// Pub/sub: b's Run invalidates its cache on a's rotation.
		done := make(chan error, 1)
		go func() { done <- b.s.Run(ctx) }()
		if err := a.s.RotateKeys(ctx); err != nil {
			t.Fatal(err)
		}
		want := currentKID(t, a, jose.ES256)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if got, _ := b.s.keys.Current(ctx, jose.ES256); got.ID() == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("node b never picked up the rotation")
			}
			runtime.Gosched()
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}

func currentKID(t *testing.T, o *testOP, alg jose.SignatureAlgorithm) string {
	for _, k := range listKeys(t, o.kv) {
		if k.Alg == string(alg) && k.State == keys.StateCurrent {
			return k.KID
		}
	}
	t.Fatal("no current key")
	return ""
}

// listKeys lists the keys in kv as `watashi keys list` would.
func listKeys(t testing.TB, kv store.KV) []keys.Info {
	t.Helper()
	m, err := keys.New(kv, keys.Options{KEK: testKEK})
	if err != nil {
		t.Fatal(err)
	}
	list, err := m.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// statesByAlg summarises a key listing as alg -> state -> count.
func statesByAlg(list []keys.Info) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, k := range list {
		if out[k.Alg] == nil {
			out[k.Alg] = map[string]int{}
		}
		out[k.Alg][k.State]++
	}
	return out
}
