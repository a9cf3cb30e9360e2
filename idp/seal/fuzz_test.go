package seal

import (
	"bytes"
	"testing"
)

// FuzzOpen feeds arbitrary bytes and associated data to the message and
// wrapped-key parsers: they never panic, and nothing but what was sealed
// under the same key and associated data ever opens.
func FuzzOpen(f *testing.F) {
	dek := bytes.Repeat([]byte{7}, KeySize)
	s, err := NewSealer(dek)
	if err != nil {
		f.Fatal(err)
	}
	kek, _ := ParseKEK(bytes.Repeat([]byte{9}, KeySize))
	r, _ := NewRing(kek)
	// Keyed by plaintext and associated data, not by message: the
	// fuzzing workers rerun this setup with other nonces.
	sealed := map[string]bool{}
	add := func(pt, aad []byte) {
		sealed[string(pt)+"\x00"+string(aad)] = true
		f.Add(s.Seal(pt, aad), aad)
	}
	add([]byte(`{"name":"x"}`), []byte("acct:A"))
	add(nil, nil)
	add(bytes.Repeat([]byte("a"), 300), []byte("key:kid\x00ES256"))
	w, _ := r.Wrap(dek, []byte("acctkey:A"))
	f.Add(w, []byte("acctkey:A"))
	f.Add([]byte(`{"id":"A"}`), []byte("acct:A"))
	f.Add([]byte{'S', 1}, []byte{})
	f.Add([]byte{'K', 1, 0, 0, 0, 0, 0, 0, 0, 0}, []byte{})
	f.Fuzz(func(t *testing.T, msg, aad []byte) {
		pt, err := s.Open(msg, aad)
		if err == nil {
			if !sealed[string(pt)+"\x00"+string(aad)] {
				t.Fatalf("opened something never sealed: %x", msg)
			}
		} else if pt != nil {
			t.Fatal("plaintext returned with an error")
		}
		k, err := r.Unwrap(msg, aad)
		if err == nil && (!bytes.Equal(k, dek) || string(aad) != "acctkey:A") {
			t.Fatalf("unwrapped something never wrapped: %x", msg)
		}
		if id, err := WrappedBy(msg); err == nil && len(id) != 2*idSize {
			t.Fatalf("KEK ID %q", id)
		}
	})
}
