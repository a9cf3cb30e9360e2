package backup

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

func mustKEK(t testing.TB, b byte) *seal.KEK {
	t.Helper()
	k, err := seal.ParseKEK(bytes.Repeat([]byte{b}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustRing(t testing.TB, cur *seal.KEK, prev ...*seal.KEK) *seal.Ring {
	t.Helper()
	r, err := seal.NewRing(cur, prev...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sample is a store's worth of records: every kind, binary bytes, a
// value larger than a frame, a log longer than one, and data keys the
// way the store holds them (a wrapped key as the value, and inside a
// signing key's JSON record).
func sample(t testing.TB, ring *seal.Ring) []store.Record {
	t.Helper()
	w1, err := ring.Wrap(seal.NewDataKey(), []byte("acctkey:a1"))
	if err != nil {
		t.Fatal(err)
	}
	w2, err := ring.Wrap(seal.NewDataKey(), []byte("key:k1"))
	if err != nil {
		t.Fatal(err)
	}
	keyRec, _ := json.Marshal(map[string]any{"kid": "k1", "alg": "ES256", "data_key": w2, "private_sealed": []byte("S\x01sealed")})
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB: five frames
	var log []store.StreamEntry
	for i := range 3000 {
		log = append(log, store.StreamEntry{ID: fmt.Sprintf("1700000000000-%d", i+1), Value: fmt.Appendf(nil, `{"event":"approved","n":%d}`, i)})
	}
	return []store.Record{
		{Key: "acct:a1", Kind: store.KindValue, Value: []byte("S\x01\x00\xff sealed facts")},
		{Key: "acctkey:a1", Kind: store.KindValue, Value: w1},
		{Key: "accts", Kind: store.KindSet, Members: []string{"a1", "a2", ""}},
		{Key: "key:k1", Kind: store.KindValue, Value: keyRec},
		{Key: "empty", Kind: store.KindValue},
		{Key: "big", Kind: store.KindValue, Value: big},
		{Key: "wl:log:iat", Kind: store.KindStream, Entries: log},
		{Key: "wl:log:none", Kind: store.KindStream},
	}
}

func write(t testing.TB, ring *seal.Ring, recs []store.Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, ring, time.Date(2026, 12, 1, 3, 4, 5, 600, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readAll reads a whole backup: the records, or the first error.
func readAll(data []byte, ring *seal.Ring) ([]store.Record, *Reader, error) {
	r, err := NewReader(bytes.NewReader(data), ring)
	if err != nil {
		return nil, nil, err
	}
	var out []store.Record
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, r, nil
		}
		if err != nil {
			return out, r, err
		}
		out = append(out, rec)
	}
}

func TestRoundTrip(t *testing.T) {
	old, cur := mustKEK(t, 1), mustKEK(t, 2)
	ringOld := mustRing(t, old)
	recs := sample(t, ringOld)
	// A data key under the new KEK too, as in the middle of a rotation.
	ring := mustRing(t, cur, old)
	w3, _ := ring.Wrap(seal.NewDataKey(), []byte("linkkey"))
	recs = append(recs, store.Record{Key: "linkkey", Kind: store.KindValue, Value: w3})
	data := write(t, ring, recs)

	got, r, err := readAll(data, ring)
	if err != nil {
		t.Fatal(err)
	}
	if !storetest.EqualRecords(got, recs) {
		t.Fatalf("read back %d records, not the %d written", len(got), len(recs))
	}
	h := r.Header()
	if h.Version != 1 || h.FileKEK != cur.ID() || !h.Created.Equal(time.Date(2026, 12, 1, 3, 4, 5, 0, time.UTC)) || h.ChunkSize != 64<<10 {
		t.Errorf("header = %+v", h)
	}
	tr, ok := r.Trailer()
	if !ok || tr.Records != len(recs) || tr.Families["acct"] != 1 || tr.Families["wl"] != 2 || tr.Families["accts"] != 1 {
		t.Errorf("trailer = %+v", tr)
	}
	// Two data keys under the old KEK (an account's, a signing key's
	// inside its JSON), one under the new.
	if tr.DataKEKs[old.ID()] != 2 || tr.DataKEKs[cur.ID()] != 1 || len(tr.DataKEKs) != 2 {
		t.Errorf("data KEKs = %v", tr.DataKEKs)
	}
	// The previous KEK alone cannot open a file the current one wrapped;
	// the ring with both can, and so can one where it is previous.
	if _, _, err := readAll(data, mustRing(t, old)); !errors.Is(err, ErrUnknownKEK) || !strings.Contains(err.Error(), cur.ID()) {
		t.Errorf("with the other KEK only: %v", err)
	}
	if _, _, err := readAll(data, mustRing(t, mustKEK(t, 3), cur)); err != nil {
		t.Errorf("with the file's KEK as previous: %v", err)
	}
	// The header alone is readable without any key.
	hh, _, err := ReadHeader(bytes.NewReader(data))
	if err != nil || hh.FileKEK != cur.ID() {
		t.Errorf("ReadHeader = %+v, %v", hh, err)
	}
}

func TestEmptyBackup(t *testing.T) {
	ring := mustRing(t, mustKEK(t, 1))
	got, r, err := readAll(write(t, ring, nil), ring)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty backup: %v, %v", got, err)
	}
	if tr, ok := r.Trailer(); !ok || tr.Records != 0 {
		t.Fatalf("trailer %+v", tr)
	}
}

// Nothing of a record is readable in the file: not the values, not the
// keys (which carry account and client IDs), not the set members.
func TestNothingReadable(t *testing.T) {
	ring := mustRing(t, mustKEK(t, 1))
	secrets := []string{"山田\u3000太郎", "1980-12-31", "東京都千代田区", "acct-4f2a9c", "city-portal", "https://rp.example.jp/cb"}
	recs := []store.Record{
		{Key: "consent:acct-4f2a9c:city-portal", Kind: store.KindValue, Value: []byte(`{"name":"山田` + "\u3000" + `太郎","birthdate":"1980-12-31","address":"東京都千代田区"}`)},
		{Key: "consents:acct-4f2a9c", Kind: store.KindSet, Members: []string{"city-portal"}},
		{Key: "wl:log:client:city-portal", Kind: store.KindStream, Entries: []store.StreamEntry{{ID: "1-1", Value: []byte(`{"redirect_uris":["https://rp.example.jp/cb"]}`)}}},
	}
	data := write(t, ring, recs)
	for _, s := range append(secrets, "consent:", "wl:log") {
		if bytes.Contains(data, []byte(s)) {
			t.Errorf("the backup holds %q in plaintext", s)
		}
	}
}

// Every way a file can be wrong ends in an error, before a record that
// was not written is returned: a flipped bit anywhere, a cut anywhere,
// bytes appended, frames swapped or dropped.
func TestRefusesDamage(t *testing.T) {
	ring := mustRing(t, mustKEK(t, 1))
	recs := []store.Record{
		{Key: "acct:a", Kind: store.KindValue, Value: []byte("v")},
		{Key: "accts", Kind: store.KindSet, Members: []string{"a"}},
		{Key: "wl:log:iat", Kind: store.KindStream, Entries: []store.StreamEntry{{ID: "5-1", Value: []byte("e")}}},
	}
	data := write(t, ring, recs)
	for i := range data {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(data)
			bad[i] ^= bit
			if _, _, err := readAll(bad, ring); err == nil {
				t.Fatalf("byte %d ^ %#x: read without error", i, bit)
			}
		}
	}
	for n := range len(data) {
		_, _, err := readAll(data[:n], ring)
		if err == nil {
			t.Fatalf("cut at %d of %d: read without error", n, len(data))
		}
		if n >= len(magic) && !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d of %d: %v, want ErrTruncated", n, len(data), err)
		}
	}
	if _, _, err := readAll(append(bytes.Clone(data), 0), ring); !errors.Is(err, ErrDamaged) {
		t.Errorf("a byte appended: %v, want ErrDamaged", err)
	}

	// A file of several frames: swap two, drop one, duplicate one.
	big := []store.Record{{Key: "a", Kind: store.KindValue, Value: bytes.Repeat([]byte("x"), 200<<10)}}
	data = write(t, ring, big)
	hdr, frames := splitFrames(t, data)
	if len(frames) < 3 {
		t.Fatalf("%d frames", len(frames))
	}
	for name, order := range map[string][]int{
		"swapped":        {1, 0, 2, 3},
		"first dropped":  {1, 2, 3},
		"middle dropped": {0, 2, 3},
		"last dropped":   {0, 1, 2},
		"duplicated":     {0, 1, 1, 2, 3},
	} {
		bad := bytes.Clone(hdr)
		for _, i := range order {
			if i < len(frames) {
				bad = append(bad, frames[i]...)
			}
		}
		if _, _, err := readAll(bad, ring); err == nil {
			t.Errorf("frames %s: read without error", name)
		}
	}
	// A frame of another file by the same KEK does not fit either.
	other := write(t, ring, big)
	_, otherFrames := splitFrames(t, other)
	bad := append(bytes.Clone(hdr), frames[0]...)
	for _, f := range otherFrames[1:] {
		bad = append(bad, f...)
	}
	if _, _, err := readAll(bad, ring); !errors.Is(err, ErrDamaged) {
		t.Errorf("frames of another file: %v, want ErrDamaged", err)
	}
}

// splitFrames cuts a file into its header and its frames.
func splitFrames(t *testing.T, data []byte) ([]byte, [][]byte) {
	t.Helper()
	n := prefixSize + int(binary.BigEndian.Uint32(data[len(magic)+1:]))
	hdr, rest := data[:n], data[n:]
	var frames [][]byte
	for len(rest) > 0 {
		size := 5 + int(binary.BigEndian.Uint32(rest[1:5]))
		frames = append(frames, rest[:size])
		rest = rest[size:]
	}
	return hdr, frames
}

func TestHeaderErrors(t *testing.T) {
	ring := mustRing(t, mustKEK(t, 1))
	data := write(t, ring, nil)
	v2 := bytes.Clone(data)
	v2[len(magic)] = 2
	if _, _, err := readAll(v2, ring); !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("version 2: %v", err)
	}
	for name, b := range map[string][]byte{
		"empty":        nil,
		"short":        []byte("WTSH"),
		"other format": []byte("REDIS0011\xfa\x09redis-ver"),
		"text":         []byte("this is not a backup at all, just words"),
	} {
		if _, _, err := readAll(b, ring); !errors.Is(err, ErrNotBackup) {
			t.Errorf("%s: %v, want ErrNotBackup", name, err)
		}
	}
	// Headers that parse as JSON but say the wrong things.
	var h map[string]any
	n := int(binary.BigEndian.Uint32(data[len(magic)+1:]))
	if err := json.Unmarshal(data[prefixSize:prefixSize+n], &h); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(map[string]any){
		"unknown field":     func(h map[string]any) { h["compression"] = "zstd" },
		"KEK differs":       func(h map[string]any) { h["file_kek"] = strings.Repeat("0", 16) },
		"chunk too small":   func(h map[string]any) { h["chunk_size"] = 16 },
		"chunk too large":   func(h map[string]any) { h["chunk_size"] = 1 << 30 },
		"short file ID":     func(h map[string]any) { h["file_id"] = "AAAA" },
		"no date":           func(h map[string]any) { delete(h, "created") },
		"wrapped key gone":  func(h map[string]any) { delete(h, "wrapped_key") },
		"not a wrapped key": func(h map[string]any) { h["wrapped_key"] = "AAAA" },
	} {
		c := map[string]any{}
		for k, v := range h {
			c[k] = v
		}
		change(c)
		hb, _ := json.Marshal(c)
		bad := append([]byte(magic), Version)
		bad = binary.BigEndian.AppendUint32(bad, uint32(len(hb)))
		bad = append(bad, hb...)
		bad = append(bad, data[prefixSize+n:]...)
		if _, _, err := readAll(bad, ring); !errors.Is(err, ErrDamaged) {
			t.Errorf("%s: %v, want ErrDamaged", name, err)
		}
	}
}

func TestWriterRefuses(t *testing.T) {
	ring := mustRing(t, mustKEK(t, 1))
	w, err := NewWriter(io.Discard, ring, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]store.Record{
		"invalid":     {Key: "s", Kind: store.KindSet},
		"long key":    {Key: strings.Repeat("k", maxKey+1), Kind: store.KindValue},
		"long member": {Key: "s", Kind: store.KindSet, Members: []string{strings.Repeat("m", maxMember+1)}},
	} {
		if err := w.Add(r); err == nil {
			t.Errorf("%s: Add accepted it", name)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(store.Record{Key: "k", Kind: store.KindValue}); err == nil {
		t.Error("Add after Close")
	}
}

// decodePlain runs the record decoder on a plaintext stream, as the
// frames deliver it, to the end marker or the first error.
func decodePlain(data []byte) ([]store.Record, error) {
	r := &Reader{dec: bufio.NewReader(bytes.NewReader(data)), got: newTrailer()}
	var out []store.Record
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}

// plain encodes records and a trailer as the frames' plaintext.
func plain(t testing.TB, recs []store.Record) []byte {
	t.Helper()
	w := encoder(t, recs)
	tb, _ := json.Marshal(w.trailer)
	return appendBytes(append(w.buf, endMarker), tb)
}

// encodeRecords is the plaintext of records alone.
func encodeRecords(t testing.TB, recs []store.Record) []byte { return encoder(t, recs).buf }

func encoder(t testing.TB, recs []store.Record) *Writer {
	t.Helper()
	w := &Writer{chunk: 1 << 30, trailer: newTrailer()}
	for _, r := range recs {
		if err := w.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func TestDecodeRecords(t *testing.T) {
	ring := mustRing(t, mustKEK(t, 1))
	recs := sample(t, ring)[:5]
	good := plain(t, recs)
	if got, err := decodePlain(good); err != nil || !storetest.EqualRecords(got, recs) {
		t.Fatalf("decode = %d records, %v", len(got), err)
	}
	lie := func(mutate func(*Trailer)) []byte {
		w := &Writer{chunk: 1 << 30, trailer: newTrailer()}
		for _, r := range recs {
			_ = w.Add(r)
		}
		mutate(&w.trailer)
		tb, _ := json.Marshal(w.trailer)
		return appendBytes(append(w.buf, endMarker), tb)
	}
	for name, b := range map[string][]byte{
		"no end marker":        good[:bytes.LastIndexByte(good[:len(good)-40], endMarker)],
		"trailer counts wrong": lie(func(t *Trailer) { t.Records++ }),
		"families wrong":       lie(func(t *Trailer) { t.Families["acct"] = 7 }),
		"after the trailer":    append(bytes.Clone(good), 1),
		"unknown kind":         append([]byte{9}, good...),
		"empty key":            append([]byte{1, 0, 0}, good...),
		"key too long":         binary.AppendUvarint([]byte{1}, maxKey+1),
		"value too long":       binary.AppendUvarint(appendBytes([]byte{1}, []byte("k")), maxValue+1),
		"set without members":  append(appendBytes([]byte{2}, []byte("k")), 0),
		"count too large":      binary.AppendUvarint(appendBytes([]byte{3}, []byte("k")), maxCount+1),
		"stream ID malformed":  plainStream("x-y"),
		"stream ID 0-0":        plainStream("0-0"),
		"stream IDs unordered": plainStream("2-0", "1-0"),
		"trailer not JSON":     appendBytes([]byte{endMarker}, []byte("{")),
		"trailer extra field":  appendBytes([]byte{endMarker}, []byte(`{"records":0,"signed_by":"me"}`)),
		"truncated varint":     {1, 0x80},
	} {
		if _, err := decodePlain(b); !errors.Is(err, ErrDamaged) {
			t.Errorf("%s: %v, want ErrDamaged", name, err)
		}
	}
}

// plainStream is a stream record with the given IDs, then a trailer.
func plainStream(ids ...string) []byte {
	b := appendBytes([]byte{3}, []byte("log"))
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = appendBytes(b, []byte(id))
		b = appendBytes(b, []byte("v"))
	}
	return append(b, endMarker, 2, '{', '}')
}
