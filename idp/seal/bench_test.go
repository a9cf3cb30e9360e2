package seal

import (
	"bytes"
	"fmt"
	"testing"
)

// An account record is about 1.5 KiB of JSON; a PKCS#8 RSA-2048 key
// about 1.2 KiB.
func BenchmarkSeal(b *testing.B) {
	s, _ := NewSealer(NewDataKey())
	aad := []byte("acct:0123456789abcdefghij")
	for _, n := range []int{256, 1536, 8192} {
		pt := bytes.Repeat([]byte("x"), n)
		b.Run(fmt.Sprintf("seal/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				s.Seal(pt, aad)
			}
		})
		msg := s.Seal(pt, aad)
		b.Run(fmt.Sprintf("open/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := s.Open(msg, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnwrap is what reading a record costs on top of Open: the
// data key unwrapped and its cipher set up.
func BenchmarkUnwrap(b *testing.B) {
	r := GenerateRing()
	aad := []byte("acctkey:0123456789abcdefghij")
	_, w, err := r.NewSealer(aad)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("wrap", func(b *testing.B) {
		b.ReportAllocs()
		dek := NewDataKey()
		for b.Loop() {
			if _, err := r.Wrap(dek, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open-sealer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.OpenSealer(w, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
}
