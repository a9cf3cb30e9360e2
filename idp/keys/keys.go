package keys

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/internal/metrics"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
)

// Signing keys live in the store so that every node signs with the same
// key and publishes the same JWKS. Each algorithm has a ring of three:
// "next" is published before it signs anything, so that RPs caching the
// JWKS already know it when it becomes "current"; "previous" stays
// published after it stops signing, so that ID tokens it signed (and
// id_token_hint values) still verify. Key records are durable (TTL 0).
const (
	StateNext     = "next"
	StateCurrent  = "current"
	StatePrevious = "previous"

	keySetKey   = "keys"      // set of kids
	keysChannel = "keys"      // pub/sub: "the ring changed, reload"
	keyLockKey  = "keys:lock" // one writer of the ring at a time
	keyLockTTL  = 30 * time.Second
	// keyCacheTTL bounds how long a node signs with a ring another node
	// has rotated, should the pub/sub message be lost.
	keyCacheTTL = 30 * time.Second
	rsaKeyBits  = 2048
)

// Algs are the ID token algorithms: ES256 by default, RS256 for
// clients that ask for it (id_token_signed_response_alg).
var Algs = []jose.SignatureAlgorithm{jose.ES256, jose.RS256}

func keyRecordKey(kid string) string { return "key:" + kid }

// Info describes one signing key without its private part, for
// `watashi keys list` and operators' dashboards.
type Info struct {
	KID       string    `json:"kid"`
	Alg       string    `json:"alg"`
	State     string    `json:"state"`
	Created   time.Time `json:"created"`
	Activated time.Time `json:"activated,omitzero"`
}

// Record is a key as the Manager handles it. The private key is sealed
// before it is stored (see stored).
type Record struct {
	KID       string
	Alg       string
	State     string
	Private   []byte // PKCS#8 DER; nil for a record loaded from the store
	Created   time.Time
	Activated time.Time

	// sealed is the key material as loaded, reused when only the state
	// changes.
	sealed *stored
}

// stored is the form of a key in the store ("key:<kid>"): the private key
// sealed under a data key of its own, the data key wrapped by the KEK,
// each bound to the kid (and the key to its algorithm), so that key
// material moved to another record, or relabelled, does not open.
type stored struct {
	KID       string    `json:"kid"`
	Alg       string    `json:"alg"`
	State     string    `json:"state"`
	DataKey   []byte    `json:"data_key"`
	Private   []byte    `json:"private_sealed"`
	Created   time.Time `json:"created"`
	Activated time.Time `json:"activated,omitzero"`
}

func dataKeyAAD(kid string) []byte      { return []byte("key:" + kid) }
func privateAAD(kid, alg string) []byte { return []byte("key:" + kid + "\x00" + alg) }

// seal makes the stored form of rec, with a fresh data key unless rec
// was loaded and only its state or times changed.
func (m *Manager) seal(rec *Record) (*stored, error) {
	st := &stored{KID: rec.KID, Alg: rec.Alg, State: rec.State, Created: rec.Created, Activated: rec.Activated}
	if old := rec.sealed; old != nil && old.KID == rec.KID && old.Alg == rec.Alg {
		st.DataKey, st.Private = old.DataKey, old.Private
		return st, nil
	}
	if len(rec.Private) == 0 {
		return nil, fmt.Errorf("keys: %s: no private key to store", rec.KID)
	}
	sealer, w, err := m.kek.NewSealer(dataKeyAAD(rec.KID))
	if err != nil {
		return nil, err
	}
	st.DataKey = w
	st.Private = sealer.Seal(rec.Private, privateAAD(rec.KID, rec.Alg))
	return st, nil
}

// open returns the record of st with its private key (PKCS#8 DER).
func (m *Manager) open(st *stored) (*Record, error) {
	if len(st.DataKey) == 0 || len(st.Private) == 0 {
		// A record from before encryption at rest carries the key in the
		// clear: refused, as accepting it would let whoever can write the
		// store choose the signing key.
		return nil, fmt.Errorf("keys: %s: the private key is not sealed", st.KID)
	}
	sealer, err := m.kek.OpenSealer(st.DataKey, dataKeyAAD(st.KID))
	if err != nil {
		return nil, fmt.Errorf("keys: %s: data key: %w", st.KID, err)
	}
	der, err := sealer.Open(st.Private, privateAAD(st.KID, st.Alg))
	if err != nil {
		return nil, fmt.Errorf("keys: %s: private key: %w", st.KID, err)
	}
	rec := st.record()
	rec.Private = der
	return rec, nil
}

func (st *stored) record() *Record {
	return &Record{KID: st.KID, Alg: st.Alg, State: st.State, Created: st.Created, Activated: st.Activated, sealed: st}
}

// SigningKey is a loaded key; it implements op.SigningKey.
type SigningKey struct {
	rec  Record
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func (k *SigningKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *SigningKey) Key() any                                    { return k.priv }
func (k *SigningKey) ID() string                                  { return k.rec.KID }

func (k *SigningKey) info() Info {
	return Info{KID: k.rec.KID, Alg: k.rec.Alg, State: k.rec.State, Created: k.rec.Created, Activated: k.rec.Activated}
}

// publicKey is the JWKS view of a key (op.Key). Key returns a pointer to
// the public key only: the library type-switches on *ecdsa.PublicKey and
// *rsa.PublicKey, and nothing private can leak through it.
type publicKey struct{ k *SigningKey }

func (p publicKey) ID() string                         { return p.k.rec.KID }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return p.k.alg }
func (p publicKey) Use() string                        { return oidc.KeyUseSignature }
func (p publicKey) Key() any                           { return p.k.priv.Public() }

// keyring is one consistent reading of the stored keys.
type keyring struct {
	loaded    time.Time
	current   map[jose.SignatureAlgorithm]*SigningKey
	next      map[jose.SignatureAlgorithm]*SigningKey
	all       []*SigningKey // every stored key, JWKS order
	published []op.Key
}

func (r *keyring) complete() bool {
	for _, a := range Algs {
		if r.current[a] == nil || r.next[a] == nil {
			return false
		}
	}
	return true
}

// Manager reads, creates and rotates the keys. It needs only the KV, so
// that `watashi keys` can use it without building a whole Server.
type Manager struct {
	kv  store.KV
	kek *seal.Ring
	now func() time.Time
	log *slog.Logger
	gen func(jose.SignatureAlgorithm) (crypto.Signer, error)

	cache  atomic.Pointer[keyring]
	parsed sync.Map // kid -> crypto.Signer; key material never changes
	// rotated counts rotations (nil without a metrics registry).
	rotated *prometheus.CounterVec
	// activated is when each algorithm's current key began signing, as
	// this node last read the ring (nil without a metrics registry).
	activated *prometheus.GaugeVec
}

// Options configure a Manager; every field may be left zero.
type Options struct {
	// KEK wraps the data keys that seal the private keys (required).
	KEK    *seal.Ring
	Now    func() time.Time
	Logger *slog.Logger
	// Metrics receives the rotation counter and the activation time of
	// the current keys.
	Metrics prometheus.Registerer
}

// New returns a Manager of the keys held in kv.
func New(kv store.KV, o Options) (*Manager, error) {
	if o.KEK == nil {
		return nil, errors.New("keys: Options.KEK is required: private keys are stored encrypted")
	}
	m := &Manager{kv: kv, kek: o.KEK, now: o.Now, log: o.Logger, gen: generateSigningKey}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if o.Metrics != nil {
		rot, err := metrics.Register(o.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watashi_signing_key_rotations_total",
			Help: "Signing key rotations performed by this node, by algorithm.",
		}, []string{"alg"}))
		if err != nil {
			return nil, err
		}
		m.rotated = rot
		act, err := metrics.Register(o.Metrics, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "watashi_signing_key_activated_timestamp_seconds",
			Help: "When the current signing key of each algorithm began signing (Unix time), as this node last read the keys: time() minus it is the key's age.",
		}, []string{"alg"}))
		if err != nil {
			return nil, err
		}
		m.activated = act
	}
	return m, nil
}

func generateSigningKey(alg jose.SignatureAlgorithm) (crypto.Signer, error) {
	switch alg {
	case jose.ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256:
		return rsa.GenerateKey(rand.Reader, rsaKeyBits)
	}
	return nil, fmt.Errorf("keys: unsupported algorithm %q", alg)
}

// newRecord makes a fresh key in the given state. The kid is the RFC 7638
// thumbprint, so it is unique and says nothing about when it was made.
func (m *Manager) newRecord(alg jose.SignatureAlgorithm, state string) (*Record, error) {
	priv, err := m.gen(alg)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	tp, err := (&jose.JSONWebKey{Key: priv.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	now := m.now().UTC()
	rec := &Record{
		KID:     base64.RawURLEncoding.EncodeToString(tp),
		Alg:     string(alg),
		State:   state,
		Private: der,
		Created: now,
	}
	if state == StateCurrent {
		rec.Activated = now
	}
	m.parsed.Store(rec.KID, priv)
	return rec, nil
}

// put writes the record before listing it, so that a reader never finds a
// kid without its key.
func (m *Manager) put(ctx context.Context, rec *Record) error {
	st, err := m.seal(rec)
	if err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := m.kv.Set(ctx, keyRecordKey(rec.KID), b, 0); err != nil {
		return fmt.Errorf("keys: write %s: %w", rec.KID, err)
	}
	if err := m.kv.SetAdd(ctx, keySetKey, 0, rec.KID); err != nil {
		return fmt.Errorf("keys: list %s: %w", rec.KID, err)
	}
	return nil
}

func (m *Manager) retire(ctx context.Context, kid string) error {
	if err := m.kv.SetRemove(ctx, keySetKey, kid); err != nil {
		return err
	}
	m.parsed.Delete(kid)
	return m.kv.Delete(ctx, keyRecordKey(kid))
}

// parse returns the signing key of a stored record, unsealing and
// parsing its private key unless this process already has.
func (m *Manager) parse(st *stored) (*SigningKey, error) {
	alg := jose.SignatureAlgorithm(st.Alg)
	if v, ok := m.parsed.Load(st.KID); ok {
		rec := st.record()
		return &SigningKey{rec: *rec, alg: alg, priv: v.(crypto.Signer)}, nil
	}
	rec, err := m.open(st)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(rec.Private)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: private key is not PKCS#8", rec.KID)
	}
	var priv crypto.Signer
	switch alg {
	case jose.ES256:
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok || ek.Curve != elliptic.P256() {
			return nil, fmt.Errorf("keys: %s: ES256 needs a P-256 key", rec.KID)
		}
		priv = ek
	case jose.RS256:
		rk, ok := k.(*rsa.PrivateKey)
		if !ok || rk.N.BitLen() < rsaKeyBits {
			return nil, fmt.Errorf("keys: %s: RS256 needs an RSA key of at least %d bits", rec.KID, rsaKeyBits)
		}
		priv = rk
	default:
		return nil, fmt.Errorf("keys: %s: unsupported algorithm %q", rec.KID, rec.Alg)
	}
	m.parsed.Store(rec.KID, priv)
	rec.Private = nil // the parsed key is what signs; the DER need not stay around
	return &SigningKey{rec: *rec, alg: alg, priv: priv}, nil
}

var keyStateOrder = map[string]int{StateCurrent: 0, StateNext: 1, StatePrevious: 2}

// load reads the ring from the store. While another node is half-way
// through a rotation two keys may both say "current": the one activated
// last signs, and every stored key stays published, so that no reader
// ever signs with or drops a key it should not.
func (m *Manager) load(ctx context.Context) (*keyring, error) {
	kids, err := m.kv.SetMembers(ctx, keySetKey)
	if err != nil {
		return nil, fmt.Errorf("keys: list: %w", err)
	}
	r := &keyring{
		loaded:  time.Now(),
		current: map[jose.SignatureAlgorithm]*SigningKey{},
		next:    map[jose.SignatureAlgorithm]*SigningKey{},
	}
	for _, kid := range kids {
		b, err := m.kv.Get(ctx, keyRecordKey(kid))
		if errors.Is(err, store.ErrNotFound) {
			continue // retired between the two reads
		}
		if err != nil {
			return nil, fmt.Errorf("keys: read %s: %w", kid, err)
		}
		var st stored
		if err := json.Unmarshal(b, &st); err != nil || st.KID != kid {
			return nil, fmt.Errorf("keys: %s: bad record", kid)
		}
		k, err := m.parse(&st)
		if err != nil {
			return nil, err
		}
		rec := k.rec
		r.all = append(r.all, k)
		switch rec.State {
		case StateCurrent:
			if c := r.current[k.alg]; c == nil || rec.Activated.After(c.rec.Activated) {
				r.current[k.alg] = k
			}
		case StateNext:
			if n := r.next[k.alg]; n == nil || rec.Created.After(n.rec.Created) {
				r.next[k.alg] = k
			}
		}
	}
	algIndex := func(a jose.SignatureAlgorithm) int {
		if i := slices.Index(Algs, a); i >= 0 {
			return i
		}
		return len(Algs)
	}
	slices.SortFunc(r.all, func(a, b *SigningKey) int {
		return cmp.Or(
			cmp.Compare(algIndex(a.alg), algIndex(b.alg)),
			cmp.Compare(keyStateOrder[a.rec.State], keyStateOrder[b.rec.State]),
			b.rec.Created.Compare(a.rec.Created),
			cmp.Compare(a.rec.KID, b.rec.KID))
	})
	for _, k := range r.all {
		r.published = append(r.published, publicKey{k})
	}
	if m.activated != nil {
		for alg, k := range r.current {
			if !k.rec.Activated.IsZero() {
				m.activated.WithLabelValues(string(alg)).Set(float64(k.rec.Activated.UnixMilli()) / 1e3)
			}
		}
	}
	return r, nil
}

// ring returns the cached ring, reloading it when it is older than
// keyCacheTTL or was invalidated by a rotation message.
func (m *Manager) ring(ctx context.Context) (*keyring, error) {
	if r := m.cache.Load(); r != nil && time.Since(r.loaded) < keyCacheTTL {
		return r, nil
	}
	r, err := m.load(ctx)
	if err != nil {
		return nil, err
	}
	m.cache.Store(r)
	return r, nil
}

func (m *Manager) invalidate() { m.cache.Store(nil) }

// withLock runs fn while holding the ring lock. Another holder is waited
// for (the lock expires on its own if that node died).
func (m *Manager) withLock(ctx context.Context, fn func() error) error {
	token := []byte(ids.Long())
	deadline := time.Now().Add(keyLockTTL + 5*time.Second)
	for {
		ok, err := m.kv.SetNX(ctx, keyLockKey, token, keyLockTTL)
		if err != nil {
			return fmt.Errorf("keys: lock: %w", err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("keys: another node holds the key lock")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	defer func() {
		// Release only our own lock: if it expired and another node took
		// it, the compare fails and theirs stays.
		if ok, _ := m.kv.CompareAndSwap(context.WithoutCancel(ctx), keyLockKey, token, []byte("released")); ok {
			_ = m.kv.Delete(context.WithoutCancel(ctx), keyLockKey)
		}
	}()
	return fn()
}

// ensure makes sure every algorithm has a current and a next key. Nodes
// starting together serialise on the lock and re-read under it, so only
// the first creates anything.
func (m *Manager) ensure(ctx context.Context) error {
	r, err := m.load(ctx)
	if err != nil {
		return err
	}
	if r.complete() {
		m.cache.Store(r)
		return nil
	}
	err = m.withLock(ctx, func() error {
		r, err := m.load(ctx)
		if err != nil {
			return err
		}
		for _, alg := range Algs {
			if r.current[alg] == nil {
				if n := r.next[alg]; n != nil {
					rec := n.rec
					rec.State, rec.Activated = StateCurrent, m.now().UTC()
					if err := m.put(ctx, &rec); err != nil {
						return err
					}
					r.next[alg] = nil
				} else {
					rec, err := m.newRecord(alg, StateCurrent)
					if err != nil {
						return err
					}
					if err := m.put(ctx, rec); err != nil {
						return err
					}
				}
				m.log.Info("signing key created", "alg", string(alg), "state", StateCurrent)
			}
			if r.next[alg] == nil {
				rec, err := m.newRecord(alg, StateNext)
				if err != nil {
					return err
				}
				if err := m.put(ctx, rec); err != nil {
					return err
				}
				m.log.Info("signing key created", "alg", string(alg), "state", StateNext, "kid", rec.KID)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	m.invalidate()
	m.notify(ctx)
	return nil
}

// rotate moves every algorithm's ring one step (previous ← current ←
// next ← new), or only those whose current key is at least maxAge old
// when force is false. It reports the algorithms rotated.
func (m *Manager) rotate(ctx context.Context, force bool, maxAge time.Duration) ([]string, error) {
	var done []string
	err := m.withLock(ctx, func() error {
		r, err := m.load(ctx)
		if err != nil {
			return err
		}
		for _, alg := range Algs {
			if cur := r.current[alg]; !force && cur != nil && m.now().Sub(cur.rec.Activated) < maxAge {
				continue
			}
			if err := m.rotateAlg(ctx, r, alg); err != nil {
				return err
			}
			done = append(done, string(alg))
		}
		return nil
	})
	if err != nil {
		return done, err
	}
	if len(done) > 0 {
		m.invalidate()
		m.notify(ctx)
		if m.rotated != nil {
			for _, a := range done {
				m.rotated.WithLabelValues(a).Inc()
			}
		}
		m.log.Info("signing keys rotated", "algs", done)
	}
	return done, nil
}

// rotateAlg writes in an order that keeps every intermediate state
// readable (see load): promote next, demote the old current, add a new
// next, and only then drop the keys that were already previous.
func (m *Manager) rotateAlg(ctx context.Context, r *keyring, alg jose.SignatureAlgorithm) error {
	now := m.now().UTC()
	var promoted string
	if n := r.next[alg]; n != nil {
		rec := n.rec
		rec.State, rec.Activated = StateCurrent, now
		if err := m.put(ctx, &rec); err != nil {
			return err
		}
		promoted = rec.KID
	} else {
		rec, err := m.newRecord(alg, StateCurrent)
		if err != nil {
			return err
		}
		if err := m.put(ctx, rec); err != nil {
			return err
		}
		promoted = rec.KID
	}
	var stale []string
	for _, k := range r.all {
		if k.alg != alg || k.rec.KID == promoted {
			continue
		}
		switch k.rec.State {
		case StateCurrent, StateNext: // next: a stray from an interrupted run
			rec := k.rec
			rec.State = StatePrevious
			if err := m.put(ctx, &rec); err != nil {
				return err
			}
		case StatePrevious:
			stale = append(stale, k.rec.KID)
		}
	}
	rec, err := m.newRecord(alg, StateNext)
	if err != nil {
		return err
	}
	if err := m.put(ctx, rec); err != nil {
		return err
	}
	for _, kid := range stale {
		if err := m.retire(ctx, kid); err != nil {
			return fmt.Errorf("keys: retire %s: %w", kid, err)
		}
	}
	return nil
}

func (m *Manager) notify(ctx context.Context) {
	if err := m.kv.Publish(ctx, keysChannel, []byte("changed")); err != nil {
		m.log.Warn("signing keys: cannot notify other nodes; they reload within the cache period", "error", err)
	}
}

func (m *Manager) list(ctx context.Context) ([]Info, error) {
	r, err := m.load(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(r.all))
	for _, k := range r.all {
		out = append(out, k.info())
	}
	return out, nil
}

// Rewrap re-wraps the data key of every signing key with the ring's
// current KEK (with dryRun false), under the ring lock, and counts the
// keys by the KEK that wrapped them before. The private keys and the
// ring's states are untouched.
func (m *Manager) Rewrap(ctx context.Context, dryRun bool) (seal.Census, error) {
	var c seal.Census
	err := m.withLock(ctx, func() error {
		kids, err := m.kv.SetMembers(ctx, keySetKey)
		if err != nil {
			return fmt.Errorf("keys: list: %w", err)
		}
		for _, kid := range kids {
			b, err := m.kv.Get(ctx, keyRecordKey(kid))
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("keys: read %s: %w", kid, err)
			}
			var st stored
			if err := json.Unmarshal(b, &st); err != nil || st.KID != kid {
				return fmt.Errorf("keys: %s: bad record", kid)
			}
			if len(st.DataKey) == 0 {
				return fmt.Errorf("keys: %s: the private key is not sealed", kid)
			}
			w, changed, err := m.kek.Rewrap(st.DataKey, dataKeyAAD(kid))
			if err != nil {
				return fmt.Errorf("keys: %s: %w", kid, err)
			}
			c.Count(st.DataKey)
			if dryRun || !changed {
				continue
			}
			st.DataKey = w
			nb, err := json.Marshal(&st)
			if err != nil {
				return err
			}
			// Under the lock nothing else writes key records; the swap
			// still refuses to overwrite a record that changed.
			ok, err := m.kv.CompareAndSwap(ctx, keyRecordKey(kid), b, nb)
			if err != nil {
				return fmt.Errorf("keys: write %s: %w", kid, err)
			}
			if !ok {
				return fmt.Errorf("keys: %s changed during the rewrap; run it again", kid)
			}
			c.Rewrapped++
		}
		return nil
	})
	return c, err
}

// NewRecord makes a fresh key record in the given state, for seeding a
// store (an import, a test fixture) without a Manager.
func NewRecord(alg jose.SignatureAlgorithm, state string, now time.Time) (*Record, error) {
	m := &Manager{now: func() time.Time { return now }, gen: generateSigningKey}
	return m.newRecord(alg, state)
}

// Put stores a record made by NewRecord.
func (m *Manager) Put(ctx context.Context, rec *Record) error { return m.put(ctx, rec) }

// Ensure makes sure every algorithm has a current and a next key.
func (m *Manager) Ensure(ctx context.Context) error { return m.ensure(ctx) }

// Rotate rotates every algorithm's keys now (operator action or a
// suspected compromise of the current key).
func (m *Manager) Rotate(ctx context.Context) ([]string, error) { return m.rotate(ctx, true, 0) }

// List lists the keys without their private parts.
func (m *Manager) List(ctx context.Context) ([]Info, error) { return m.list(ctx) }

// Current is the signing key of alg.
func (m *Manager) Current(ctx context.Context, alg jose.SignatureAlgorithm) (*SigningKey, error) {
	r, err := m.ring(ctx)
	if err != nil {
		return nil, err
	}
	k := r.current[alg]
	if k == nil {
		return nil, fmt.Errorf("keys: no current %s key", alg)
	}
	return k, nil
}

// Published is the JWKS: next, current and previous of every algorithm.
func (m *Manager) Published(ctx context.Context) ([]op.Key, error) {
	r, err := m.ring(ctx)
	if err != nil {
		return nil, err
	}
	return r.published, nil
}

// Ready reports whether every algorithm has a current key (readiness).
func (m *Manager) Ready(ctx context.Context) error {
	r, err := m.ring(ctx)
	if err != nil {
		return err
	}
	for _, a := range Algs {
		if r.current[a] == nil {
			return fmt.Errorf("no current %s signing key", a)
		}
	}
	return nil
}

// RotateIfDue rotates the algorithms whose current key is older than
// period (negative: never). Every node may call it: the check is repeated
// under the ring lock, so a period is rotated once however many nodes
// notice it.
func (m *Manager) RotateIfDue(ctx context.Context, period time.Duration) ([]string, error) {
	if period < 0 {
		return nil, nil
	}
	r, err := m.load(ctx)
	if err != nil {
		return nil, err
	}
	due := false
	for _, alg := range Algs {
		if cur := r.current[alg]; cur == nil || m.now().Sub(cur.rec.Activated) >= period {
			due = true
		}
	}
	if !due {
		return nil, nil
	}
	return m.rotate(ctx, false, period)
}

// RotationCheckEvery is how often Run looks at the key age.
func RotationCheckEvery(period time.Duration) time.Duration {
	return min(max(period/24, time.Minute), time.Hour)
}

// Run does the ring's background work until ctx ends: scheduled rotation
// every period, and reloading the keys as soon as another node rotates
// them. It blocks; run it in its own goroutine.
func (m *Manager) Run(ctx context.Context, period time.Duration) {
	var sub <-chan []byte
	subscribe := func() {
		ch, err := m.kv.Subscribe(ctx, keysChannel)
		if err != nil {
			m.log.Warn("signing keys: no rotation notifications; relying on the cache period", "error", err)
			return
		}
		sub = ch
		m.invalidate() // anything published while we were not listening
	}
	subscribe()
	check := func() {
		if _, err := m.RotateIfDue(ctx, period); err != nil && ctx.Err() == nil {
			m.log.Error("signing keys: scheduled rotation failed", "error", err)
		}
	}
	check()
	t := time.NewTicker(RotationCheckEvery(period))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-sub:
			if !ok {
				sub = nil
				continue
			}
			m.invalidate()
		case <-t.C:
			if sub == nil {
				subscribe()
			}
			check()
		}
	}
}
