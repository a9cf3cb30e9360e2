// Package backup is the file format of `watashi backup` and
// `watashi restore`: the durable records of a store (store.Record, as
// store.KV.Snapshot reads them and Restore writes them), encrypted and
// authenticated under a key the KEK ring protects.
//
// Records are copied as stored: what the store keeps sealed (accounts,
// signing keys, the data keys wrapped by the KEK) stays sealed inside
// the file. The rest (consents, clients, certificate links, the audit
// log, set members that are account IDs) is readable in the store, so
// the file as a whole is encrypted as well: without the KEK a backup
// shows nothing but its size, its date and which KEK opens it.
//
// Layout, integers big-endian:
//
//	magic "WTSH-BKP" | version (1 byte, 1)
//	header length (4 bytes) | header (JSON: created, file_kek, file_id,
//	                          wrapped_key, chunk_size)
//	frames: flags (1 byte, bit 0 = last) | length (4 bytes) | ciphertext
//
// A file has a random file key of 32 bytes, wrapped by the ring's
// current KEK (seal.Ring.Wrap, bound to the file ID): the header names
// that KEK by its ID. Frame i is AES-256-GCM under the file key with the
// nonce i and the associated data of the file ID, the frame's flags and
// the SHA-256 of everything before the first frame, so that the header,
// the order of the frames and the place of the last one are all
// authenticated: a changed byte, a frame moved, dropped or added, and a
// file cut short are each refused.
//
// The frames' plaintexts, concatenated, are the records, then an end
// marker and a trailer:
//
//	record:  kind (1 byte: 1 value, 2 set, 3 stream) | key | body
//	value:   bytes
//	set:     count | count × bytes
//	stream:  count | count × (ID, bytes)
//	end:     0 | trailer (JSON: records, families, data_keks)
//
// where bytes, key and ID are a uvarint length and the bytes, count a
// uvarint. The trailer counts the records per family (store.Family) and
// the data keys inside the records per KEK ID that wraps them: a restore
// needs the file's KEK to open it and those KEKs to read what it
// restores, and checks both before it writes anything.
//
// A reader allocates as the data arrives and bounds every length, so
// that a damaged or hostile file costs no more memory than its size.
package backup
