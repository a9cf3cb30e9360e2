package idp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/watashi-id/watashi/idp/store"
)

// statesByAlg summarises a key listing as alg -> state -> count.
func statesByAlg(keys []SigningKeyInfo) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, k := range keys {
		if out[k.Alg] == nil {
			out[k.Alg] = map[string]int{}
		}
		out[k.Alg][k.State]++
	}
	return out
}

// Nodes starting together on an empty store create one current and one
// next key per algorithm between them, not one set each.
func TestKeysEnsureConcurrent(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		kv := newKV(t)
		ctx := context.Background()
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = newKeyManager(kv, time.Now, nil).ensure(ctx)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		keys, err := ListSigningKeys(ctx, kv)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 4 {
			t.Fatalf("%d keys: %+v", len(keys), keys)
		}
		for _, alg := range []string{"ES256", "RS256"} {
			if s := statesByAlg(keys)[alg]; s[keyStateCurrent] != 1 || s[keyStateNext] != 1 {
				t.Fatalf("%s: %v", alg, s)
			}
		}
		if v, err := kv.Get(ctx, keyLockKey); err == nil {
			t.Fatalf("lock left behind: %q", v)
		}
	})
}

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
		list, err := ListSigningKeys(ctx, o.kv)
		if err != nil {
			t.Fatal(err)
		}
		for _, alg := range []string{"ES256", "RS256"} {
			s := statesByAlg(list)[alg]
			if s[keyStateNext] != 1 || s[keyStateCurrent] != 1 || s[keyStatePrevious] != 1 || len(s) != 3 {
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
			if k.KID == kid && (k.State != keyStateCurrent || k.Alg != "ES256") {
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
	if raw, _ := json.Marshal(mustList(t, o.kv)); strings.Contains(string(raw), "private") {
		t.Fatal("listing carries private material")
	}
}

func mustList(t *testing.T, kv store.KV) []SigningKeyInfo {
	l, err := ListSigningKeys(context.Background(), kv)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func kidOf(t testing.TB, jwt string) string {
	jws, err := jose.ParseSigned(jwt, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Header.KeyID
}

// Scheduled rotation happens once per period, however often (and on how
// many nodes) it is checked.
func TestRotateIfDue(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), func(o *Options) { o.KeyRotation = 24 * time.Hour })
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Now()
	o.s.oidc.keys.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	if done, err := o.s.rotateIfDue(ctx); err != nil || len(done) != 0 {
		t.Fatalf("fresh keys rotated: %v %v", done, err)
	}
	advance(23 * time.Hour)
	if done, err := o.s.rotateIfDue(ctx); err != nil || len(done) != 0 {
		t.Fatalf("rotated early: %v %v", done, err)
	}
	advance(2 * time.Hour)
	var wg sync.WaitGroup
	results := make([][]string, 3)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = o.s.rotateIfDue(ctx)
		}()
	}
	wg.Wait()
	total := 0
	for _, r := range results {
		total += len(r)
	}
	if total != 2 {
		t.Fatalf("rotations across concurrent checks: %v", results)
	}
	if done, _ := o.s.rotateIfDue(ctx); len(done) != 0 {
		t.Fatalf("rotated twice in one period: %v", done)
	}
	o.s.opts.KeyRotation = -1
	advance(1000 * time.Hour)
	if done, _ := o.s.rotateIfDue(ctx); len(done) != 0 {
		t.Fatal("rotated although disabled")
	}
}

// A node notices another node's rotation: at once through pub/sub while
// Run is running, and at the latest when its cache expires.
func TestKeysMultiNode(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		kv := newKV(t)
		a := newTestOP(t, kv, nil)
		b := newTestOP(t, kv, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()

		sk, err := b.s.oidc.storage.SigningKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.s.RotateKeys(ctx); err != nil {
			t.Fatal(err)
		}
		if again, _ := b.s.oidc.storage.SigningKey(ctx); again.ID() != sk.ID() {
			t.Fatal("cache not used")
		}
		// Expired cache: reload.
		r := b.s.oidc.keys.cache.Load()
		stale := *r
		stale.loaded = time.Now().Add(-keyCacheTTL - time.Second)
		b.s.oidc.keys.cache.Store(&stale)
		want := currentKID(t, a, jose.ES256)
		if got, _ := b.s.oidc.storage.SigningKey(ctx); got.ID() != want {
			t.Fatalf("after cache expiry: %s, want %s", got.ID(), want)
		}

		// Pub/sub: b's Run invalidates its cache on a's rotation.
		done := make(chan error, 1)
		go func() { done <- b.s.Run(ctx) }()
		if err := a.s.RotateKeys(ctx); err != nil {
			t.Fatal(err)
		}
		want = currentKID(t, a, jose.ES256)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if got, _ := b.s.oidc.storage.SigningKey(ctx); got.ID() == want {
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
	for _, k := range mustList(t, o.kv) {
		if k.Alg == string(alg) && k.State == keyStateCurrent {
			return k.KID
		}
	}
	t.Fatal("no current key")
	return ""
}

// Damaged key records stop the node rather than sign with a wrong key.
func TestKeysLoadRejectsBadRecords(t *testing.T) {
	fixtures(t)
	es := fixtureKeys[0] // ES256
	rs := fixtureKeys[2] // RS256
	tests := []struct {
		name string
		rec  func() []byte
	}{
		{"not JSON", func() []byte { return []byte("{") }},
		{"not base64", func() []byte { r := es; r.KID = "x1"; r.Private = "%%%"; b, _ := json.Marshal(r); return b }},
		{"not PKCS#8", func() []byte { r := es; r.KID = "x2"; r.Private = "AAAA"; b, _ := json.Marshal(r); return b }},
		{"RSA key as ES256", func() []byte { r := rs; r.KID = "x3"; r.Alg = "ES256"; b, _ := json.Marshal(r); return b }},
		{"EC key as RS256", func() []byte { r := es; r.KID = "x4"; r.Alg = "RS256"; b, _ := json.Marshal(r); return b }},
		{"unknown alg", func() []byte { r := es; r.KID = "x5"; r.Alg = "HS256"; b, _ := json.Marshal(r); return b }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kv := store.NewMemory()
			ctx := context.Background()
			_ = kv.Set(ctx, keyRecordKey("bad"), tc.rec(), 0)
			_ = kv.SetAdd(ctx, keySetKey, 0, "bad")
			if _, err := newKeyManager(kv, time.Now, nil).load(ctx); err == nil {
				t.Fatal("loaded")
			}
		})
	}
}

func TestRotationCheckEvery(t *testing.T) {
	for _, tc := range []struct{ period, want time.Duration }{
		{30 * 24 * time.Hour, time.Hour},
		{24 * time.Hour, time.Hour},
		{2 * time.Hour, 5 * time.Minute},
		{time.Second, time.Minute},
	} {
		if got := rotationCheckEvery(tc.period); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.period, got, tc.want)
		}
	}
}
