package backup

import (
	"bytes"
	"errors"
	"testing"

	"github.com/watashi-id/watashi/idp/store"
)

// FuzzReader feeds arbitrary files to the reader: it never panics, every
// failure is one of the package's errors, and a file that reads to the
// end is one this package wrote (the fuzzer cannot forge the frames'
// authentication, so it only ever gets the seeds through).
func FuzzReader(f *testing.F) {
	ring := mustRing(f, mustKEK(f, 1))
	recs := []store.Record{
		{Key: "acct:a", Kind: store.KindValue, Value: []byte("v")},
		{Key: "accts", Kind: store.KindSet, Members: []string{"a", "b"}},
		{Key: "wl:log:iat", Kind: store.KindStream, Entries: []store.StreamEntry{{ID: "5-1", Value: []byte("e")}}},
	}
	good := write(f, ring, recs)
	f.Add(good)
	f.Add(write(f, ring, nil))
	f.Add(good[:len(good)/2])
	f.Add(good[:prefixSize+3])
	f.Add([]byte(magic))
	f.Add(append([]byte(magic), 2, 0, 0, 0, 2, '{', '}'))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, r, err := readAll(data, ring)
		if err != nil {
			for _, known := range []error{ErrNotBackup, ErrVersion, ErrUnknownKEK, ErrDamaged, ErrTruncated} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("unexpected error kind: %v", err)
		}
		if _, ok := r.Trailer(); !ok {
			t.Fatal("read to the end without a trailer")
		}
		for _, rec := range got {
			if err := rec.Validate(); err != nil {
				t.Fatalf("returned an invalid record: %v", err)
			}
		}
	})
}

// FuzzDecodeRecords feeds arbitrary plaintext to the record decoder, the
// part behind the authentication that the frame fuzzer cannot reach: it
// never panics, allocates only as data arrives, returns only records
// Restore accepts, and re-encodes the records it accepted to the same
// bytes (the trailer is JSON, which has more than one spelling).
func FuzzDecodeRecords(f *testing.F) {
	ring := mustRing(f, mustKEK(f, 1))
	f.Add(plain(f, sample(f, ring)[:5]))
	f.Add(plain(f, nil))
	f.Add(plainStream("1-1", "1-2"))
	f.Add([]byte{1, 1, 'k', 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{2, 1, 's', 0xff, 0xff, 0xff, 0xff, 0x07})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodePlain(data)
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		for _, rec := range got {
			if err := rec.Validate(); err != nil {
				t.Fatalf("returned an invalid record: %v", err)
			}
		}
		enc := encodeRecords(t, got)
		if !bytes.HasPrefix(data, enc) || data[len(enc)] != endMarker {
			t.Fatalf("accepted records that do not re-encode to themselves:\n%x\n%x", data, enc)
		}
	})
}
