package seal

import (
	"bytes"
	"errors"
	"testing"
)

func mustKEK(t testing.TB, b byte) *KEK {
	t.Helper()
	k, err := ParseKEK(bytes.Repeat([]byte{b}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustRing(t testing.TB, cur *KEK, prev ...*KEK) *Ring {
	t.Helper()
	r, err := NewRing(cur, prev...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSealOpen(t *testing.T) {
	s, err := NewSealer(NewDataKey())
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewSealer(NewDataKey())
	pt := []byte(`{"name":"山田太郎"}`)
	aad := []byte("acct:A")
	msg := s.Seal(pt, aad)
	if len(msg) != len(pt)+MessageOverhead || msg[0] != 'S' || msg[1] != 1 {
		t.Fatalf("format: % x", msg[:2])
	}
	if bytes.Contains(msg, []byte("山田")) {
		t.Fatal("plaintext visible in the message")
	}
	if got, err := s.Open(msg, aad); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if again := s.Seal(pt, aad); bytes.Equal(again[:headerSize+nonceSize], msg[:headerSize+nonceSize]) {
		t.Fatal("nonce repeated")
	}
	if got, err := s.Open(s.Seal(nil, nil), nil); err != nil || len(got) != 0 {
		t.Fatalf("empty plaintext: %q %v", got, err)
	}

	flip := func(i int) []byte { m := bytes.Clone(msg); m[i] ^= 1; return m }
	tests := []struct {
		name string
		msg  []byte
		aad  []byte
		s    *Sealer
		want error
	}{
		{"another record", msg, []byte("acct:B"), s, ErrOpen},
		{"no associated data", msg, nil, s, ErrOpen},
		{"another key", msg, aad, other, ErrOpen},
		{"nonce altered", flip(headerSize), aad, s, ErrOpen},
		{"ciphertext altered", flip(headerSize + nonceSize), aad, s, ErrOpen},
		{"tag altered", flip(len(msg) - 1), aad, s, ErrOpen},
		{"version 2", func() []byte { m := bytes.Clone(msg); m[1] = 2; return m }(), aad, s, ErrMalformed},
		{"version 0", func() []byte { m := bytes.Clone(msg); m[1] = 0; return m }(), aad, s, ErrMalformed},
		{"wrapped-key tag", func() []byte { m := bytes.Clone(msg); m[0] = 'K'; return m }(), aad, s, ErrMalformed},
		{"plaintext JSON", []byte(`{"id":"A","facts":{"name":"x"}}`), aad, s, ErrMalformed},
		{"truncated", msg[:MessageOverhead-1], aad, s, ErrMalformed},
		{"empty", nil, aad, s, ErrMalformed},
		{"tail cut", msg[:len(msg)-1], aad, s, ErrOpen},
		{"tail added", append(bytes.Clone(msg), 0), aad, s, ErrOpen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.s.Open(tc.msg, tc.aad)
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("Open = %q, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestKeySizes(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		if _, err := NewSealer(make([]byte, n)); err == nil {
			t.Errorf("NewSealer accepted %d bytes", n)
		}
		if _, err := ParseKEK(make([]byte, n)); err == nil {
			t.Errorf("ParseKEK accepted %d bytes", n)
		}
	}
	r := GenerateRing()
	if _, err := r.Wrap(make([]byte, 16), nil); err == nil {
		t.Error("Wrap accepted a 16-byte data key")
	}
}

func TestRing(t *testing.T) {
	k1, k2, k3 := mustKEK(t, 1), mustKEK(t, 2), mustKEK(t, 3)
	if k1.ID() == k2.ID() || len(k1.ID()) != 16 {
		t.Fatalf("IDs %s %s", k1.ID(), k2.ID())
	}
	if again := mustKEK(t, 1); again.ID() != k1.ID() {
		t.Fatal("the ID is not a function of the key")
	}
	old := mustRing(t, k1)
	dek := NewDataKey()
	aad := []byte("acctkey:A")
	w1, err := old.Wrap(dek, aad)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := WrappedBy(w1); err != nil || id != k1.ID() {
		t.Fatalf("WrappedBy = %s, %v", id, err)
	}
	if bytes.Contains(w1, dek) {
		t.Fatal("data key visible in its wrapping")
	}

	// During a rotation: k2 wraps, k1 still unwraps.
	both := mustRing(t, k2, k1)
	if both.CurrentID() != k2.ID() || len(both.IDs()) != 2 || both.IDs()[1] != k1.ID() {
		t.Fatalf("ring IDs %v", both.IDs())
	}
	if got, err := both.Unwrap(w1, aad); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("old KEK through the ring: %v", err)
	}
	w2, changed, err := both.Rewrap(w1, aad)
	if err != nil || !changed {
		t.Fatalf("Rewrap = %v %v", changed, err)
	}
	if id, _ := WrappedBy(w2); id != k2.ID() {
		t.Fatalf("rewrapped by %s", id)
	}
	if w3, changed, err := both.Rewrap(w2, aad); err != nil || changed || !bytes.Equal(w3, w2) {
		t.Fatalf("second Rewrap = %v %v", changed, err)
	}
	// After the rotation the old KEK is gone: only the re-wrapped key opens.
	onlyNew := mustRing(t, k2)
	if got, err := onlyNew.Unwrap(w2, aad); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("new KEK: %v", err)
	}
	if _, err := onlyNew.Unwrap(w1, aad); !errors.Is(err, ErrUnknownKEK) {
		t.Fatalf("old wrapping after the old KEK is gone: %v", err)
	}
	if _, _, err := onlyNew.Rewrap(w1, aad); !errors.Is(err, ErrUnknownKEK) {
		t.Fatalf("Rewrap without the old KEK: %v", err)
	}

	flip := func(w []byte, i int) []byte { m := bytes.Clone(w); m[i] ^= 1; return m }
	tests := []struct {
		name string
		w    []byte
		aad  []byte
		r    *Ring
		want error
	}{
		{"another record", w2, []byte("acctkey:B"), onlyNew, ErrOpen},
		{"KEK ID altered", flip(w2, headerSize), aad, both, ErrUnknownKEK},
		{"KEK ID of another ring key", func() []byte { m := bytes.Clone(w2); copy(m[headerSize:], k1.id[:]); return m }(), aad, both, ErrOpen},
		{"nonce altered", flip(w2, headerSize+idSize), aad, onlyNew, ErrOpen},
		{"key altered", flip(w2, headerSize+idSize+nonceSize), aad, onlyNew, ErrOpen},
		{"unrelated ring", w2, aad, mustRing(t, k3), ErrUnknownKEK},
		{"version 2", func() []byte { m := bytes.Clone(w2); m[1] = 2; return m }(), aad, onlyNew, ErrMalformed},
		{"message tag", func() []byte { m := bytes.Clone(w2); m[0] = 'S'; return m }(), aad, onlyNew, ErrMalformed},
		{"short", w2[:wrappedKeySize-1], aad, onlyNew, ErrMalformed},
		{"long", append(bytes.Clone(w2), 0), aad, onlyNew, ErrMalformed},
		{"empty", nil, aad, onlyNew, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := tc.r.Unwrap(tc.w, tc.aad); !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("Unwrap = %x, %v; want %v", got, err, tc.want)
			}
			if _, _, err := tc.r.Rewrap(tc.w, tc.aad); err == nil {
				t.Fatal("Rewrap accepted it")
			}
		})
	}

	if _, err := NewRing(k1, k2, k1); err == nil {
		t.Error("a KEK twice accepted")
	}
	if _, err := NewRing(nil); err == nil {
		t.Error("a ring without a current KEK accepted")
	}
	if _, err := NewRing(k1, nil); err == nil {
		t.Error("a nil previous KEK accepted")
	}
}

// A message sealed under a DEK from the ring opens with the DEK unwrapped
// again, and with nothing else.
func TestRingSealers(t *testing.T) {
	r := GenerateRing()
	s, w, err := r.NewSealer([]byte("acctkey:A"))
	if err != nil {
		t.Fatal(err)
	}
	msg := s.Seal([]byte("facts"), []byte("acct:A"))
	s2, err := r.OpenSealer(w, []byte("acctkey:A"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Open(msg, []byte("acct:A")); err != nil || string(got) != "facts" {
		t.Fatalf("Open = %q %v", got, err)
	}
	if _, err := r.OpenSealer(w, []byte("acctkey:B")); !errors.Is(err, ErrOpen) {
		t.Fatalf("a data key moved to another record: %v", err)
	}
	if _, err := GenerateRing().OpenSealer(w, []byte("acctkey:A")); !errors.Is(err, ErrUnknownKEK) {
		t.Fatalf("another deployment's ring: %v", err)
	}
}

func TestCensus(t *testing.T) {
	k1, k2 := mustKEK(t, 1), mustKEK(t, 2)
	w1, _ := mustRing(t, k1).Wrap(NewDataKey(), nil)
	w2, _ := mustRing(t, k2).Wrap(NewDataKey(), nil)
	var c Census
	c.Count(w1)
	c.Count(w1)
	c.Count(w2)
	c.Count([]byte("junk"))
	var d Census
	d.Count(w2)
	d.Rewrapped = 3
	c.Add(d)
	if c.ByKEK[k1.ID()] != 2 || c.ByKEK[k2.ID()] != 2 || c.ByKEK["malformed"] != 1 || c.Rewrapped != 3 {
		t.Fatalf("%+v", c)
	}
}
