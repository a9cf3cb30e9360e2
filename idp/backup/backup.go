package backup

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"time"

	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
)

// Version is the format version this package writes and reads.
const Version = 1

const (
	magic        = "WTSH-BKP"
	prefixSize   = len(magic) + 1 + 4
	fileIDSize   = 16
	defaultChunk = 64 << 10
	minChunk     = 1 << 10
	maxChunk     = 1 << 20
	maxHeader    = 64 << 10
	maxKey       = 4 << 10
	maxValue     = 64 << 20
	maxMember    = 64 << 10
	maxStreamID  = 41 // two 20-digit numbers and the dash
	maxTrailer   = 1 << 20
	maxCount     = 1 << 31
	endMarker    = 0
	flagLast     = 1
	tagSize      = 16
)

var (
	// ErrNotBackup: the file does not begin as a backup does.
	ErrNotBackup = errors.New("backup: not a watashi backup file")
	// ErrVersion: a backup of a format this program does not read.
	ErrVersion = errors.New("backup: unsupported format version")
	// ErrUnknownKEK: the key-encryption key that opens the file is not in
	// the ring.
	ErrUnknownKEK = errors.New("backup: needs a key-encryption key that is not configured")
	// ErrDamaged: the file does not authenticate or is malformed: changed
	// after it was written, or not written by this package.
	ErrDamaged = errors.New("backup: the file is damaged or was altered")
	// ErrTruncated: the file ends before its last frame.
	ErrTruncated = errors.New("backup: the file is truncated")
)

// Header is the part of a backup readable without a key.
type Header struct {
	Version int `json:"-"`
	// Created is when the backup was started (UTC, to the second).
	Created time.Time `json:"created"`
	// FileKEK is the ID of the KEK that wraps the file key.
	FileKEK    string `json:"file_kek"`
	FileID     []byte `json:"file_id"`
	WrappedKey []byte `json:"wrapped_key"`
	ChunkSize  int    `json:"chunk_size"`
}

// Trailer closes the records: what a reader checks it received whole,
// and the KEKs the data keys inside need.
type Trailer struct {
	Records int `json:"records"`
	// Families counts the records by store.Family of their key.
	Families map[string]int `json:"families"`
	// DataKEKs counts the wrapped data keys inside the records by the ID
	// of the KEK that wraps each.
	DataKEKs map[string]int `json:"data_keks"`
}

func newTrailer() Trailer { return Trailer{Families: map[string]int{}, DataKEKs: map[string]int{}} }

func (t *Trailer) count(rec store.Record) {
	t.Records++
	t.Families[store.Family(rec.Key)]++
	if rec.Kind == store.KindValue {
		census(rec.Value, t.DataKEKs)
	}
}

// census counts the wrapped data keys in a stored value: the value
// itself (an account's data key, the link key), or a base64 string
// anywhere in a JSON object (a signing key record's data_key).
func census(v []byte, byKEK map[string]int) {
	if id, err := seal.WrappedBy(v); err == nil {
		byKEK[id]++
		return
	}
	if len(v) == 0 || v[0] != '{' || len(v) > maxChunk {
		return
	}
	var doc any
	if json.Unmarshal(v, &doc) != nil {
		return
	}
	var walk func(any)
	walk = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		case string:
			if len(x) > 128 {
				return
			}
			if b, err := base64.StdEncoding.DecodeString(x); err == nil {
				if id, err := seal.WrappedBy(b); err == nil {
					byKEK[id]++
				}
			}
		}
	}
	walk(doc)
}

func keyAAD(fileID []byte) []byte {
	return append([]byte("watashi backup v1 file key\x00"), fileID...)
}

func frameAAD(fileID []byte, flags byte, prefixHash []byte) []byte {
	b := append([]byte("watashi backup v1 frame\x00"), fileID...)
	b = append(b, flags)
	return append(b, prefixHash...)
}

func nonce(i uint64) []byte {
	n := make([]byte, 12)
	binary.BigEndian.PutUint64(n[4:], i)
	return n
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Writer writes one backup. Add the records, then Close.
type Writer struct {
	w          io.Writer
	aead       cipher.AEAD
	fileID     []byte
	prefixHash []byte
	chunk      int
	frames     uint64
	buf        []byte
	trailer    Trailer
	closed     bool
	err        error
}

// NewWriter writes the header of a new backup to w, its file key wrapped
// by the ring's current KEK.
func NewWriter(w io.Writer, ring *seal.Ring, now time.Time) (*Writer, error) {
	key := seal.NewDataKey()
	defer clear(key)
	fileID := make([]byte, fileIDSize)
	if _, err := rand.Read(fileID); err != nil {
		return nil, err
	}
	wrapped, err := ring.Wrap(key, keyAAD(fileID))
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	h := Header{Created: now.UTC().Truncate(time.Second), FileKEK: ring.CurrentID(), FileID: fileID, WrappedKey: wrapped, ChunkSize: defaultChunk}
	hb, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	prefix := append([]byte(magic), Version)
	prefix = binary.BigEndian.AppendUint32(prefix, uint32(len(hb)))
	prefix = append(prefix, hb...)
	if _, err := w.Write(prefix); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(prefix)
	return &Writer{w: w, aead: aead, fileID: fileID, prefixHash: sum[:], chunk: defaultChunk, trailer: newTrailer()}, nil
}

// Add appends a record. A record that Restore would refuse is refused
// here, so that a backup never holds one.
func (w *Writer) Add(rec store.Record) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("backup: Add after Close")
	}
	if err := rec.Validate(); err != nil {
		return err
	}
	if !fits(rec) {
		return fmt.Errorf("backup: a record of family %q is larger than a backup holds", store.Family(rec.Key))
	}
	w.buf = append(w.buf, byte(rec.Kind))
	w.buf = appendBytes(w.buf, []byte(rec.Key))
	switch rec.Kind {
	case store.KindValue:
		w.buf = appendBytes(w.buf, rec.Value)
	case store.KindSet:
		w.buf = binary.AppendUvarint(w.buf, uint64(len(rec.Members)))
		for _, m := range rec.Members {
			w.buf = appendBytes(w.buf, []byte(m))
		}
	case store.KindStream:
		w.buf = binary.AppendUvarint(w.buf, uint64(len(rec.Entries)))
		for _, e := range rec.Entries {
			w.buf = appendBytes(w.buf, []byte(e.ID))
			w.buf = appendBytes(w.buf, e.Value)
		}
	}
	w.trailer.count(rec)
	// Keep the tail: the last frame is only known at Close.
	for len(w.buf) > w.chunk {
		if err := w.frame(w.buf[:w.chunk], false); err != nil {
			return err
		}
		w.buf = append(w.buf[:0], w.buf[w.chunk:]...)
	}
	return nil
}

// fits reports whether rec is within the bounds a reader accepts.
func fits(rec store.Record) bool {
	if len(rec.Key) > maxKey || len(rec.Value) > maxValue || len(rec.Members) > maxCount || len(rec.Entries) > maxCount {
		return false
	}
	for _, m := range rec.Members {
		if len(m) > maxMember {
			return false
		}
	}
	for _, e := range rec.Entries {
		if len(e.ID) > maxStreamID || len(e.Value) > maxValue {
			return false
		}
	}
	return true
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func (w *Writer) frame(pt []byte, last bool) error {
	var flags byte
	if last {
		flags = flagLast
	}
	ct := w.aead.Seal(nil, nonce(w.frames), pt, frameAAD(w.fileID, flags, w.prefixHash))
	hdr := binary.BigEndian.AppendUint32([]byte{flags}, uint32(len(ct)))
	if _, err := w.w.Write(append(hdr, ct...)); err != nil {
		w.err = err
		return err
	}
	w.frames++
	return nil
}

// Close writes the end marker, the trailer and the last frame, and
// returns the trailer. The underlying writer is not closed.
func (w *Writer) Close() (Trailer, error) {
	if w.err != nil {
		return Trailer{}, w.err
	}
	if w.closed {
		return Trailer{}, errors.New("backup: Close twice")
	}
	w.closed = true
	tb, err := json.Marshal(w.trailer)
	if err != nil {
		return Trailer{}, err
	}
	w.buf = append(w.buf, endMarker)
	w.buf = appendBytes(w.buf, tb)
	for len(w.buf) > w.chunk {
		if err := w.frame(w.buf[:w.chunk], false); err != nil {
			return Trailer{}, err
		}
		w.buf = w.buf[w.chunk:]
	}
	if err := w.frame(w.buf, true); err != nil {
		return Trailer{}, err
	}
	return w.trailer, nil
}

// ReadHeader reads and checks the header only: what a backup says of
// itself without a key.
func ReadHeader(r io.Reader) (Header, []byte, error) {
	prefix := make([]byte, prefixSize)
	if n, err := io.ReadFull(r, prefix); err != nil {
		if n >= len(magic) && string(prefix[:len(magic)]) == magic {
			return Header{}, nil, fmt.Errorf("%w: it ends inside its header", ErrTruncated)
		}
		return Header{}, nil, ErrNotBackup
	}
	if string(prefix[:len(magic)]) != magic {
		return Header{}, nil, ErrNotBackup
	}
	if v := prefix[len(magic)]; v != Version {
		return Header{}, nil, fmt.Errorf("%w: the file is version %d, this watashi reads version %d", ErrVersion, v, Version)
	}
	n := binary.BigEndian.Uint32(prefix[len(magic)+1:])
	if n == 0 || n > maxHeader {
		return Header{}, nil, fmt.Errorf("%w: header of %d bytes", ErrDamaged, n)
	}
	hb := make([]byte, n)
	if _, err := io.ReadFull(r, hb); err != nil {
		return Header{}, nil, fmt.Errorf("%w: it ends inside its header", ErrTruncated)
	}
	var h Header
	dec := json.NewDecoder(bytes.NewReader(hb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil || dec.More() {
		return Header{}, nil, fmt.Errorf("%w: header is not the expected JSON", ErrDamaged)
	}
	h.Version = Version
	if id, err := seal.WrappedBy(h.WrappedKey); err != nil || id != h.FileKEK {
		return Header{}, nil, fmt.Errorf("%w: header's wrapped key", ErrDamaged)
	}
	if _, err := hex.DecodeString(h.FileKEK); err != nil {
		return Header{}, nil, fmt.Errorf("%w: header's KEK ID", ErrDamaged)
	}
	if len(h.FileID) != fileIDSize || h.ChunkSize < minChunk || h.ChunkSize > maxChunk || h.Created.IsZero() {
		return Header{}, nil, fmt.Errorf("%w: header fields", ErrDamaged)
	}
	sum := sha256.Sum256(append(prefix, hb...))
	return h, sum[:], nil
}

// Reader reads one backup: the records with Next, then the trailer.
type Reader struct {
	hdr     Header
	frames  *frameReader
	dec     *bufio.Reader
	got     Trailer
	trailer *Trailer
	err     error
}

// NewReader reads the header of a backup and opens the file key with
// ring. It fails with ErrUnknownKEK, naming the KEK, when the ring does
// not hold the KEK that wrapped it.
func NewReader(r io.Reader, ring *seal.Ring) (*Reader, error) {
	h, prefixHash, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	key, err := ring.Unwrap(h.WrappedKey, keyAAD(h.FileID))
	if errors.Is(err, seal.ErrUnknownKEK) {
		return nil, fmt.Errorf("%w: the file is opened by KEK %s", ErrUnknownKEK, h.FileKEK)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: the file key does not open with KEK %s", ErrDamaged, h.FileKEK)
	}
	defer clear(key)
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	fr := &frameReader{src: r, aead: aead, fileID: h.FileID, prefixHash: prefixHash, maxCT: h.ChunkSize + tagSize}
	return &Reader{hdr: h, frames: fr, dec: bufio.NewReader(fr), got: newTrailer()}, nil
}

// Header is the file's header.
func (r *Reader) Header() Header { return r.hdr }

// Trailer is the file's trailer, once Next has returned io.EOF.
func (r *Reader) Trailer() (Trailer, bool) {
	if r.trailer == nil {
		return Trailer{}, false
	}
	return *r.trailer, true
}

// Next returns the next record. After the last one it checks the trailer
// and the end of the file and returns io.EOF; any error is final.
func (r *Reader) Next() (store.Record, error) {
	if r.err != nil {
		return store.Record{}, r.err
	}
	rec, err := r.next()
	if err != nil {
		r.err = err
		return store.Record{}, err
	}
	return rec, nil
}

func (r *Reader) next() (store.Record, error) {
	kind, err := r.dec.ReadByte()
	if err != nil {
		return store.Record{}, r.cut(err)
	}
	if kind == endMarker {
		return store.Record{}, r.end()
	}
	rec := store.Record{Kind: store.Kind(kind)}
	key, err := r.bytes(maxKey)
	if err != nil {
		return store.Record{}, err
	}
	rec.Key = string(key)
	switch rec.Kind {
	case store.KindValue:
		if rec.Value, err = r.bytes(maxValue); err != nil {
			return store.Record{}, err
		}
	case store.KindSet:
		n, err := r.count(1)
		if err != nil {
			return store.Record{}, err
		}
		for range n {
			m, err := r.bytes(maxMember)
			if err != nil {
				return store.Record{}, err
			}
			rec.Members = append(rec.Members, string(m))
		}
	case store.KindStream:
		n, err := r.count(0)
		if err != nil {
			return store.Record{}, err
		}
		for range n {
			id, err := r.bytes(maxStreamID)
			if err != nil {
				return store.Record{}, err
			}
			v, err := r.bytes(maxValue)
			if err != nil {
				return store.Record{}, err
			}
			rec.Entries = append(rec.Entries, store.StreamEntry{ID: string(id), Value: v})
		}
	default:
		return store.Record{}, fmt.Errorf("%w: record of kind %d", ErrDamaged, kind)
	}
	if err := rec.Validate(); err != nil {
		return store.Record{}, fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	r.got.count(rec)
	return rec, nil
}

// end reads the trailer and checks that it describes what was read and
// that nothing follows it.
func (r *Reader) end() error {
	tb, err := r.bytes(maxTrailer)
	if err != nil {
		return err
	}
	var t Trailer
	dec := json.NewDecoder(bytes.NewReader(tb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil || dec.More() {
		return fmt.Errorf("%w: trailer is not the expected JSON", ErrDamaged)
	}
	if t.Families == nil {
		t.Families = map[string]int{}
	}
	if t.DataKEKs == nil {
		t.DataKEKs = map[string]int{}
	}
	if t.Records != r.got.Records || !maps.Equal(t.Families, r.got.Families) {
		return fmt.Errorf("%w: the trailer counts %d records, the file holds %d", ErrDamaged, t.Records, r.got.Records)
	}
	if _, err := r.dec.ReadByte(); err != io.EOF {
		if err == nil {
			return fmt.Errorf("%w: data after the trailer", ErrDamaged)
		}
		return r.cut(err)
	}
	// Every data key counted, whether the trailer or this reading found it.
	for id, n := range r.got.DataKEKs {
		t.DataKEKs[id] = max(t.DataKEKs[id], n)
	}
	r.trailer = &t
	return io.EOF
}

// cut maps the end of the plaintext inside a record to an error: the
// frames ended properly (io.EOF) but the records did not.
func (r *Reader) cut(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the records end before their end marker", ErrDamaged)
	}
	return err
}

// uvarint reads a length or a count.
func (r *Reader) uvarint() (uint64, error) {
	n, err := binary.ReadUvarint(r.dec)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return 0, r.cut(err)
	case r.frames != nil && r.frames.err != nil:
		return 0, err // the frames' own failure, or the file's
	}
	return 0, fmt.Errorf("%w: a length beyond 64 bits", ErrDamaged)
}

func (r *Reader) count(least uint64) (uint64, error) {
	n, err := r.uvarint()
	if err != nil {
		return 0, err
	}
	if n < least || n > maxCount {
		return 0, fmt.Errorf("%w: a count of %d", ErrDamaged, n)
	}
	return n, nil
}

// bytes reads a length and that many bytes, allocating as they arrive.
func (r *Reader) bytes(limit int) ([]byte, error) {
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: a field of %d bytes (at most %d)", ErrDamaged, n, limit)
	}
	var b bytes.Buffer
	b.Grow(int(min(n, 4096)))
	if _, err := io.CopyN(&b, r.dec, int64(n)); err != nil {
		return nil, r.cut(err)
	}
	return b.Bytes(), nil
}

// frameReader is the plaintext of the frames, one after another. It
// returns io.EOF only after the last frame, with nothing after it.
type frameReader struct {
	src        io.Reader
	aead       cipher.AEAD
	fileID     []byte
	prefixHash []byte
	maxCT      int
	n          uint64
	cur        []byte
	last       bool
	err        error
}

func (f *frameReader) Read(p []byte) (int, error) {
	for len(f.cur) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		if f.last {
			return 0, io.EOF
		}
		f.err = f.next()
	}
	n := copy(p, f.cur)
	f.cur = f.cur[n:]
	return n, nil
}

func (f *frameReader) next() error {
	var hdr [5]byte
	if _, err := io.ReadFull(f.src, hdr[:]); err != nil {
		return truncated(err, "before its last frame")
	}
	flags := hdr[0]
	if flags&^flagLast != 0 {
		return fmt.Errorf("%w: frame %d has unknown flags", ErrDamaged, f.n)
	}
	size := binary.BigEndian.Uint32(hdr[1:])
	if size < tagSize || size > uint32(f.maxCT) {
		return fmt.Errorf("%w: frame %d of %d bytes", ErrDamaged, f.n, size)
	}
	ct := make([]byte, size)
	if _, err := io.ReadFull(f.src, ct); err != nil {
		return truncated(err, "inside a frame")
	}
	pt, err := f.aead.Open(ct[:0], nonce(f.n), ct, frameAAD(f.fileID, flags, f.prefixHash))
	if err != nil {
		return fmt.Errorf("%w: frame %d does not authenticate", ErrDamaged, f.n)
	}
	f.n++
	f.cur = pt
	if flags&flagLast != 0 {
		f.last = true
		var one [1]byte
		if n, _ := io.ReadFull(f.src, one[:]); n > 0 {
			return fmt.Errorf("%w: data after the last frame", ErrDamaged)
		}
	}
	return nil
}

func truncated(err error, where string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: it ends %s", ErrTruncated, where)
	}
	return err
}
