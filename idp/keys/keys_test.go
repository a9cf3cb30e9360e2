package keys

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

// Key generation (RSA above all) is slow: the fixtures are made once per
// test binary. fixtureKeys holds, per algorithm of Algs, a current then a
// next record.
var (
	fixtureOnce sync.Once
	fixtureKeys []Record
)

func fixtures(t testing.TB) {
	t.Helper()
	fixtureOnce.Do(func() {
		for _, alg := range Algs {
			for _, st := range []string{StateCurrent, StateNext} {
				rec, err := NewRecord(alg, st, time.Now())
				if err != nil {
					panic(err)
				}
				fixtureKeys = append(fixtureKeys, *rec)
			}
		}
	})
}

func memoryKV(testing.TB) store.KV { return store.NewMemory() }

var redisPrefix atomic.Int64

// redisKV starts a private redis-server (storetest decides whether its
// absence skips or fails) and returns a store on a fresh prefix.
func redisKV(t testing.TB) store.KV {
	addr := storetest.StartRedis(t)
	kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: fmt.Sprintf("keys%d:", redisPrefix.Add(1))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	return kv
}

// backends runs f against the memory store and a real Redis.
func backends(t *testing.T, f func(t *testing.T, newKV func(testing.TB) store.KV)) {
	t.Run("memory", func(t *testing.T) { f(t, memoryKV) })
	t.Run("redis", func(t *testing.T) { f(t, redisKV) })
}

// testKEK seals every test's keys: the fixtures are shared.
var testKEK = seal.GenerateRing()

func newManager(t testing.TB, kv store.KV, now func() time.Time) *Manager {
	t.Helper()
	m, err := New(kv, Options{KEK: testKEK, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// statesByAlg summarises a key listing as alg -> state -> count.
func statesByAlg(keys []Info) map[string]map[string]int {
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
				m, err := New(kv, Options{KEK: testKEK})
				if err == nil {
					err = m.Ensure(ctx)
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		keys, err := newManager(t, kv, nil).List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 4 {
			t.Fatalf("%d keys: %+v", len(keys), keys)
		}
		for _, alg := range []string{"ES256", "RS256"} {
			if s := statesByAlg(keys)[alg]; s[StateCurrent] != 1 || s[StateNext] != 1 {
				t.Fatalf("%s: %v", alg, s)
			}
		}
		if v, err := kv.Get(ctx, keyLockKey); err == nil {
			t.Fatalf("lock left behind: %q", v)
		}
	})
}

// Scheduled rotation happens once per period, however often (and on how
// many nodes) it is checked.
func TestRotateIfDue(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		const period = 24 * time.Hour
		kv := newKV(t)
		ctx := context.Background()
		var mu sync.Mutex
		now := time.Now()
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
		m := newManager(t, kv, clock)
		if err := m.Ensure(ctx); err != nil {
			t.Fatal(err)
		}

		if done, err := m.RotateIfDue(ctx, period); err != nil || len(done) != 0 {
			t.Fatalf("fresh keys rotated: %v %v", done, err)
		}
		advance(23 * time.Hour)
		if done, err := m.RotateIfDue(ctx, period); err != nil || len(done) != 0 {
			t.Fatalf("rotated early: %v %v", done, err)
		}
		advance(2 * time.Hour)
		// Several nodes (Managers sharing the store and the clock) notice
		// the same due rotation.
		var wg sync.WaitGroup
		results := make([][]string, 3)
		errs := make([]error, 3)
		for i := range results {
			node := m
			if i > 0 {
				node = newManager(t, kv, clock)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = node.RotateIfDue(ctx, period)
			}()
		}
		wg.Wait()
		total := 0
		for i, r := range results {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			total += len(r)
		}
		if total != 2 {
			t.Fatalf("rotations across concurrent checks: %v", results)
		}
		if done, _ := m.RotateIfDue(ctx, period); len(done) != 0 {
			t.Fatalf("rotated twice in one period: %v", done)
		}
		keys, err := m.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, alg := range []string{"ES256", "RS256"} {
			if s := statesByAlg(keys)[alg]; s[StateCurrent] != 1 || s[StateNext] != 1 || s[StatePrevious] != 1 {
				t.Fatalf("%s after one rotation: %v", alg, s)
			}
		}
		advance(1000 * time.Hour)
		if done, _ := m.RotateIfDue(ctx, -1); len(done) != 0 {
			t.Fatal("rotated although disabled")
		}
	})
}

// Rotate moves the ring one step and retires the keys that were already
// previous: the JWKS never grows beyond three keys per algorithm, and the
// old next key becomes the signing key.
func TestRotateRetiresPrevious(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, store.NewMemory(), nil)
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 3; round++ {
		r, err := m.load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		next := r.next[jose.ES256].ID()
		done, err := m.Rotate(ctx)
		if err != nil || len(done) != len(Algs) {
			t.Fatalf("round %d: %v %v", round, done, err)
		}
		cur, err := m.Current(ctx, jose.ES256)
		if err != nil {
			t.Fatal(err)
		}
		if cur.ID() != next {
			t.Fatalf("round %d: signing with %s, want the former next %s", round, cur.ID(), next)
		}
		keys, err := m.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 6 {
			t.Fatalf("round %d: %d keys: %+v", round, len(keys), keys)
		}
		pub, err := m.Published(ctx)
		if err != nil || len(pub) != 6 {
			t.Fatalf("round %d: %d published keys, %v", round, len(pub), err)
		}
		for _, k := range pub {
			switch k.Key().(type) {
			case *rsa.PublicKey, *ecdsa.PublicKey:
			default:
				t.Fatalf("published %T, want a public key", k.Key())
			}
		}
	}
}

// Without keys the node is not ready and cannot sign.
func TestKeysEmptyStore(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, store.NewMemory(), nil)
	if err := m.Ready(ctx); err == nil {
		t.Fatal("ready without keys")
	}
	if _, err := m.Current(ctx, jose.ES256); err == nil {
		t.Fatal("current key in an empty store")
	}
	if keys, err := m.List(ctx); err != nil || len(keys) != 0 {
		t.Fatalf("List = %v, %v", keys, err)
	}
}

// Ensure completes a ring a store import left half-made: a lone next key
// is promoted rather than replaced.
func TestEnsurePromotesNext(t *testing.T) {
	fixtures(t)
	ctx := context.Background()
	kv := store.NewMemory()
	m := newManager(t, kv, nil)
	es := fixtureKeys[1] // ES256 next
	if es.State != StateNext || es.Alg != "ES256" {
		t.Fatalf("fixture order: %+v", es)
	}
	if err := m.Put(ctx, &es); err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(ctx); err == nil {
		t.Fatal("ready with only a next key")
	}
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	cur, err := m.Current(ctx, jose.ES256)
	if err != nil || cur.ID() != es.KID {
		t.Fatalf("current = %v, %v; want the former next %s", cur, err, es.KID)
	}
	if err := m.Ready(ctx); err != nil {
		t.Fatal(err)
	}
}

// A kid listed without its record (retired between the two reads of
// load) is skipped, not an error.
func TestKeysLoadSkipsRetired(t *testing.T) {
	fixtures(t)
	ctx := context.Background()
	kv := store.NewMemory()
	m := newManager(t, kv, nil)
	for i := range fixtureKeys {
		rec := fixtureKeys[i]
		if err := m.Put(ctx, &rec); err != nil {
			t.Fatal(err)
		}
	}
	_ = kv.SetAdd(ctx, keySetKey, 0, "gone")
	r, err := m.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.all) != len(fixtureKeys) || !r.complete() {
		t.Fatalf("%d keys, complete %v", len(r.all), r.complete())
	}
}

// Half-way through another node's rotation two keys say "current": the
// one activated last signs, and both stay published.
func TestKeysLoadTwoCurrent(t *testing.T) {
	fixtures(t)
	ctx := context.Background()
	kv := store.NewMemory()
	m := newManager(t, kv, nil)
	older, newer := fixtureKeys[0], fixtureKeys[1] // ES256
	older.State, newer.State = StateCurrent, StateCurrent
	older.Activated = time.Now().Add(-time.Hour).UTC()
	newer.Activated = time.Now().UTC()
	for _, rec := range []*Record{&newer, &older} {
		if err := m.Put(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	r, err := m.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.current[jose.ES256].ID(); got != newer.KID {
		t.Fatalf("signing with %s, want the later activated %s", got, newer.KID)
	}
	if len(r.published) != 2 {
		t.Fatalf("%d keys published, want both", len(r.published))
	}
}

// The ring is cached, and a rotation by this Manager is seen at once.
func TestKeysRingCache(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, store.NewMemory(), nil)
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	r1, err := m.ring(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r2, _ := m.ring(ctx); r2 != r1 {
		t.Fatal("ring reloaded within the cache period")
	}
	if _, err := m.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if m.cache.Load() == r1 {
		t.Fatal("rotation did not invalidate the cache")
	}
	r3, _ := m.ring(ctx)
	if r3 == r1 || r3.current[jose.ES256].ID() == r1.current[jose.ES256].ID() {
		t.Fatal("signing with the pre-rotation key")
	}
}

// Damaged or foreign key records stop the node rather than sign with a
// wrong key: a plaintext record from before encryption at rest, sealed
// material moved to another kid or relabelled with another algorithm,
// another deployment's KEK, keys of the wrong kind or size.
func TestKeysLoadRejectsBadRecords(t *testing.T) {
	fixtures(t)
	es := fixtureKeys[0] // ES256
	rs := fixtureKeys[2] // RS256
	if es.Alg != "ES256" || rs.Alg != "RS256" {
		t.Fatalf("fixture order: %s %s", es.Alg, rs.Alg)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallDER, err := x509.MarshalPKCS8PrivateKey(small)
	if err != nil {
		t.Fatal(err)
	}
	m := newManager(t, store.NewMemory(), nil)
	// sealed stores r under the kid "bad" as the Manager would.
	sealed := func(r Record, mutate func(*stored)) []byte {
		r.KID = "bad"
		st, err := m.seal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if mutate != nil {
			mutate(st)
		}
		b, _ := json.Marshal(st)
		return b
	}
	other, err := New(store.NewMemory(), Options{KEK: seal.GenerateRing()})
	if err != nil {
		t.Fatal(err)
	}
	otherES := es
	otherES.KID = "bad"
	otherSt, err := other.seal(&otherES)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		rec  []byte
	}{
		{"not JSON", []byte("{")},
		{"plaintext PKCS#8 of before", func() []byte {
			b, _ := json.Marshal(map[string]any{"kid": "bad", "alg": "ES256", "state": "current",
				"private_pkcs8": base64.StdEncoding.EncodeToString(es.Private)})
			return b
		}()},
		{"kid of another record", func() []byte { r := es; st, _ := m.seal(&r); b, _ := json.Marshal(st); return b }()},
		{"sealed under another kid", sealed(es, func(st *stored) {
			r := es
			r.KID = "elsewhere"
			o, _ := m.seal(&r)
			st.DataKey, st.Private = o.DataKey, o.Private
		})},
		{"relabelled RS256", sealed(es, func(st *stored) { st.Alg = "RS256" })},
		{"private key altered", sealed(es, func(st *stored) { st.Private[len(st.Private)-1] ^= 1 })},
		{"data key altered", sealed(es, func(st *stored) { st.DataKey[len(st.DataKey)-1] ^= 1 })},
		{"no data key", sealed(es, func(st *stored) { st.DataKey = nil })},
		{"another deployment's KEK", func() []byte { b, _ := json.Marshal(otherSt); return b }()},
		{"not PKCS#8", sealed(Record{Alg: "ES256", Private: []byte("AAAA")}, nil)},
		{"RSA key as ES256", sealed(Record{Alg: "ES256", Private: rs.Private}, nil)},
		{"EC key as RS256", sealed(Record{Alg: "RS256", Private: es.Private}, nil)},
		{"unknown alg", sealed(Record{Alg: "HS256", Private: es.Private}, nil)},
		{"short RSA key", sealed(Record{Alg: "RS256", Private: smallDER}, nil)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kv := store.NewMemory()
			ctx := context.Background()
			_ = kv.Set(ctx, keyRecordKey("bad"), tc.rec, 0)
			_ = kv.SetAdd(ctx, keySetKey, 0, "bad")
			m := newManager(t, kv, time.Now)
			if _, err := m.load(ctx); err == nil {
				t.Fatal("loaded")
			}
			if err := m.Ready(ctx); err == nil {
				t.Fatal("ready")
			}
		})
	}
	// The same record, well formed, loads: the refusals above are the
	// damage, not the harness.
	kv := store.NewMemory()
	ctx := context.Background()
	_ = kv.Set(ctx, keyRecordKey("bad"), sealed(es, nil), 0)
	_ = kv.SetAdd(ctx, keySetKey, 0, "bad")
	if _, err := newManager(t, kv, time.Now).load(ctx); err != nil {
		t.Fatalf("the well-formed record: %v", err)
	}
}

// The stored record holds no private key material in any readable form.
func TestKeysStoredSealed(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	m := newManager(t, kv, nil)
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	for _, alg := range Algs {
		k, err := m.Current(ctx, alg)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k.Key())
		if err != nil {
			t.Fatal(err)
		}
		raw, err := kv.Get(ctx, keyRecordKey(k.ID()))
		if err != nil {
			t.Fatal(err)
		}
		var scalar []byte
		switch p := k.Key().(type) {
		case *ecdsa.PrivateKey:
			scalar, _ = p.Bytes()
		case *rsa.PrivateKey:
			scalar = p.Primes[0].Bytes()
		}
		for name, secret := range map[string][]byte{
			"PKCS#8": der, "PKCS#8 base64": []byte(base64.StdEncoding.EncodeToString(der)),
			"private scalar or prime": scalar, "scalar base64": []byte(base64.StdEncoding.EncodeToString(scalar)),
		} {
			if bytes.Contains(raw, secret) || bytes.Contains(raw, secret[8:24]) {
				t.Errorf("%s: %s visible in the stored record", alg, name)
			}
		}
		if strings.Contains(string(raw), "private_pkcs8") {
			t.Errorf("%s: old field in the stored record", alg)
		}
	}
}

// KEK rotation re-wraps the keys' data keys and nothing else: the ring
// and the kids stay, and the node reads them with the new KEK alone.
func TestKeysRewrap(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	rotating, err := seal.NewRing(mustKEKOf(t, 2), mustKEKOf(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	old, err := seal.NewRing(mustKEKOf(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	newOnly, _ := seal.NewRing(mustKEKOf(t, 2))
	m1, _ := New(kv, Options{KEK: old})
	if err := m1.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	before, _ := m1.List(ctx)
	m2, _ := New(kv, Options{KEK: rotating})
	c, err := m2.Rewrap(ctx, true)
	if err != nil || c.Rewrapped != 0 || c.ByKEK[mustKEKOf(t, 1).ID()] != 4 {
		t.Fatalf("dry run %+v %v", c, err)
	}
	c, err = m2.Rewrap(ctx, false)
	if err != nil || c.Rewrapped != 4 || c.ByKEK[mustKEKOf(t, 1).ID()] != 4 {
		t.Fatalf("rewrap %+v %v", c, err)
	}
	m3, _ := New(kv, Options{KEK: newOnly})
	after, err := m3.List(ctx)
	if err != nil || fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("ring changed: %v %v / %v", err, before, after)
	}
	if c, err := m3.Rewrap(ctx, false); err != nil || c.Rewrapped != 0 || c.ByKEK[mustKEKOf(t, 2).ID()] != 4 {
		t.Fatalf("second rewrap %+v %v", c, err)
	}
	if _, err := New(kv, Options{}); err == nil {
		t.Fatal("a Manager without a KEK")
	}
	if _, err := m1.Rewrap(ctx, false); err == nil {
		t.Fatal("rewrap with the old KEK alone")
	}
}

func mustKEKOf(t *testing.T, b byte) *seal.KEK {
	t.Helper()
	k, err := seal.ParseKEK(bytes.Repeat([]byte{b}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRotationCheckEvery(t *testing.T) {
	for _, tc := range []struct{ period, want time.Duration }{
		{30 * 24 * time.Hour, time.Hour},
		{24 * time.Hour, time.Hour},
		{2 * time.Hour, 5 * time.Minute},
		{time.Second, time.Minute},
	} {
		if got := RotationCheckEvery(tc.period); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.period, got, tc.want)
		}
	}
}

// gaugeValues reads watashi_signing_key_activated_timestamp_seconds by
// algorithm.
func gaugeValues(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "watashi_signing_key_activated_timestamp_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	return out
}

// The activation time of every algorithm's current key is a gauge, so
// that an alert can tell a rotation that stopped happening; a node learns
// of another's rotation when it next reads the keys.
func TestKeysActivatedGauge(t *testing.T) {
	kv := store.NewMemory()
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	reg, other := prometheus.NewRegistry(), prometheus.NewRegistry()
	m, err := New(kv, Options{KEK: testKEK, Now: clock, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	if got := gaugeValues(t, reg); len(got) != 0 {
		t.Fatalf("gauge before any key: %v", got)
	}
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	first := float64(now.Unix())
	if got := gaugeValues(t, reg); got["ES256"] != first || got["RS256"] != first || len(got) != 2 {
		t.Fatalf("gauge after the first keys: %v, want %v for both", got, first)
	}
	n2, err := New(kv, Options{KEK: testKEK, Now: clock, Metrics: other})
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Ready(ctx); err != nil {
		t.Fatal(err)
	}

	now = now.Add(31 * 24 * time.Hour)
	if _, err := m.RotateIfDue(ctx, 30*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	second := float64(now.Unix())
	if got := gaugeValues(t, reg); got["ES256"] != second || got["RS256"] != second {
		t.Fatalf("gauge after a rotation: %v, want %v", got, second)
	}
	// The other node reads the ring again (a rotation message, or its
	// cache period): its gauge follows.
	if got := gaugeValues(t, other); got["ES256"] != first {
		t.Fatalf("the other node's gauge before it reads again: %v", got)
	}
	n2.invalidate()
	if err := n2.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	if got := gaugeValues(t, other); got["ES256"] != second || got["RS256"] != second {
		t.Fatalf("the other node's gauge after it reads again: %v", got)
	}
}
