package account

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

// backends are the two stores passkey records must behave the same on:
// the memory store and a real redis-server.
func backends(t *testing.T) map[string]func(t *testing.T) KV {
	return map[string]func(t *testing.T) KV{
		"memory": func(t *testing.T) KV { return store.NewMemory() },
		"redis": func(t *testing.T) KV {
			kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{storetest.StartRedis(t)}, Prefix: "t:"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = kv.Close() })
			return kv
		},
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func testPasskey(name string) Passkey {
	return Passkey{ID: randBytes(32), PublicKey: randBytes(77), AAGUID: randBytes(16), Name: name,
		CreatedAt: time.Now().UTC(), Transports: []string{"internal", "hybrid"}}
}

// TestPasskeyRecords is the passkey records' conformance suite, on both
// backends.
func TestPasskeyRecords(t *testing.T) {
	for name, newKV := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			kv := newKV(t)
			s := newStore(t, kv)
			taro, _, err := s.Proof(ctx, sigResult(t, "山田太郎", "1980-01-01"), authResult(t), "")
			if err != nil {
				t.Fatal(err)
			}
			jiro, _, err := s.Proof(ctx, sigResult(t, "佐藤次郎", "1990-03-03"), authResult(t), "")
			if err != nil {
				t.Fatal(err)
			}

			// Registration needs the handle first.
			if _, err := s.AddPasskey(ctx, taro, testPasskey("phone")); !errors.Is(err, ErrPasskeyInvalid) {
				t.Fatalf("passkey before the handle: %v", err)
			}
			h, err := s.PasskeyHandle(ctx, taro)
			if err != nil || len(h) != passkeyHandleLen {
				t.Fatalf("handle %x %v", h, err)
			}
			if bytes.Contains(h, []byte(taro)) {
				t.Fatal("the handle carries the account ID")
			}
			if again, err := s.PasskeyHandle(ctx, taro); err != nil || !bytes.Equal(again, h) {
				t.Fatalf("handle changed: %x %v", again, err)
			}
			hj, err := s.PasskeyHandle(ctx, jiro)
			if err != nil || bytes.Equal(hj, h) {
				t.Fatalf("second account's handle %x %v", hj, err)
			}
			if a, err := s.ByPasskeyHandle(ctx, h); err != nil || a.ID != taro {
				t.Fatalf("by handle: %v", err)
			}
			for _, bad := range [][]byte{nil, randBytes(32), randBytes(5), []byte(taro)} {
				if _, err := s.ByPasskeyHandle(ctx, bad); !errors.Is(err, ErrNotFound) {
					t.Errorf("by unknown handle %x: %v", bad, err)
				}
			}

			p := testPasskey("  Taro's phone ")
			a, err := s.AddPasskey(ctx, taro, p)
			if err != nil || len(a.Passkeys) != 1 || a.Passkeys[0].Name != "Taro's phone" {
				t.Fatalf("add: %+v %v", a, err)
			}
			// The same credential ID cannot be registered again, to anyone.
			dup := testPasskey("copy")
			dup.ID = p.ID
			for _, acct := range []string{taro, jiro} {
				if _, err := s.AddPasskey(ctx, acct, dup); !errors.Is(err, ErrConflict) {
					t.Fatalf("duplicate credential on %s: %v", acct, err)
				}
			}
			got, err := s.Get(ctx, taro)
			if err != nil || len(got.Passkeys) != 1 || !bytes.Equal(got.Passkeys[0].PublicKey, p.PublicKey) {
				t.Fatalf("after refused duplicate: %+v %v", got, err)
			}
			if g, _ := s.Get(ctx, jiro); len(g.Passkeys) != 0 {
				t.Fatal("a refused passkey landed on the other account")
			}

			// Invalid records and names write nothing.
			for _, bad := range []func(*Passkey){
				func(p *Passkey) { p.ID = nil },
				func(p *Passkey) { p.ID = randBytes(maxCredentialID + 1) },
				func(p *Passkey) { p.PublicKey = nil },
				func(p *Passkey) { p.AAGUID = randBytes(3) },
				func(p *Passkey) { p.Name = "" },
				func(p *Passkey) { p.Name = strings.Repeat("鍵", MaxPasskeyNameLen+1) },
				func(p *Passkey) { p.Name = "a\x00b" },
				func(p *Passkey) { p.Name = "a\u202eb\n" },
			} {
				q := testPasskey("x")
				bad(&q)
				if _, err := s.AddPasskey(ctx, taro, q); !errors.Is(err, ErrPasskeyInvalid) {
					t.Errorf("invalid passkey accepted: %v", err)
				}
				if _, err := kv.Get(ctx, passkeyCredKey(q.ID)); !errors.Is(err, store.ErrNotFound) && len(q.ID) > 0 {
					t.Errorf("refused passkey left its index: %v", err)
				}
			}

			// Update and rename.
			if _, err := s.UpdatePasskey(ctx, taro, p.ID, func(q *Passkey) error { q.SignCount = 7; return nil }); err != nil {
				t.Fatal(err)
			}
			boom := errors.New("boom")
			if _, err := s.UpdatePasskey(ctx, taro, p.ID, func(q *Passkey) error { q.SignCount = 99; return boom }); !errors.Is(err, boom) {
				t.Fatal(err)
			}
			if err := s.RenamePasskey(ctx, taro, p.ID, "iPhone"); err != nil {
				t.Fatal(err)
			}
			if err := s.RenamePasskey(ctx, taro, p.ID, "\t"); !errors.Is(err, ErrPasskeyInvalid) {
				t.Fatalf("empty name: %v", err)
			}
			if err := s.RenamePasskey(ctx, jiro, p.ID, "mine now"); !errors.Is(err, ErrPasskeyNotFound) {
				t.Fatalf("renaming another account's passkey: %v", err)
			}
			got, _ = s.Get(ctx, taro)
			if q, ok := got.Passkey(p.ID); !ok || q.SignCount != 7 || q.Name != "iPhone" {
				t.Fatalf("after update: %+v", q)
			}

			// Another account cannot remove it; its owner can, and the ID is
			// free again.
			if err := s.RemovePasskey(ctx, jiro, p.ID); !errors.Is(err, ErrPasskeyNotFound) {
				t.Fatalf("removing another account's passkey: %v", err)
			}
			if err := s.RemovePasskey(ctx, taro, p.ID); err != nil {
				t.Fatal(err)
			}
			if err := s.RemovePasskey(ctx, taro, p.ID); !errors.Is(err, ErrPasskeyNotFound) {
				t.Fatalf("second removal: %v", err)
			}
			if _, err := s.AddPasskey(ctx, jiro, p); err != nil {
				t.Fatalf("re-registering a removed credential: %v", err)
			}

			// The bound.
			for i := range MaxPasskeys {
				if _, err := s.AddPasskey(ctx, taro, testPasskey(fmt.Sprint("key ", i))); err != nil {
					t.Fatal(i, err)
				}
			}
			extra := testPasskey("one too many")
			if _, err := s.AddPasskey(ctx, taro, extra); !errors.Is(err, ErrPasskeyLimit) {
				t.Fatalf("past the bound: %v", err)
			}
			if _, err := kv.Get(ctx, passkeyCredKey(extra.ID)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("refused passkey left its index: %v", err)
			}

			// Deleting the account drops its handle and credential indexes.
			if err := s.Delete(ctx, jiro); err != nil {
				t.Fatal(err)
			}
			for _, key := range []string{passkeyUserKey(hj), passkeyCredKey(p.ID)} {
				if _, err := kv.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("%s survives the account: %v", key, err)
				}
			}
			if _, err := s.ByPasskeyHandle(ctx, hj); !errors.Is(err, ErrNotFound) {
				t.Fatalf("deleted account by handle: %v", err)
			}
		})
	}
}

// A handle index pointing at another account (a store someone wrote to)
// finds nothing: only the sealed record decides.
func TestPasskeyHandleIndexNotTrusted(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	s := newStore(t, kv)
	taro, _, _ := s.Proof(ctx, sigResult(t, "山田太郎", "1980-01-01"), authResult(t), "")
	jiro, _, _ := s.Proof(ctx, sigResult(t, "佐藤次郎", "1990-03-03"), authResult(t), "")
	h, err := s.PasskeyHandle(ctx, taro)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, passkeyUserKey(h)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.SetNX(ctx, passkeyUserKey(h), []byte(jiro), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ByPasskeyHandle(ctx, h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a forged index entry: %v", err)
	}
}

// Concurrent first uses agree on one handle, and concurrent sign-ins
// updating the counter lose no write.
func TestPasskeyConcurrency(t *testing.T) {
	ctx := context.Background()
	kv := store.NewMemory()
	s := newStore(t, kv)
	taro, _, _ := s.Proof(ctx, sigResult(t, "山田太郎", "1980-01-01"), authResult(t), "")
	var wg sync.WaitGroup
	handles := make([][]byte, 6)
	for i := range handles {
		wg.Go(func() {
			h, err := s.PasskeyHandle(ctx, taro)
			if err != nil {
				t.Error(err)
			}
			handles[i] = h
		})
	}
	wg.Wait()
	for _, h := range handles {
		if !bytes.Equal(h, handles[0]) {
			t.Fatalf("two handles: %x %x", h, handles[0])
		}
	}
	p := testPasskey("phone")
	if _, err := s.AddPasskey(ctx, taro, p); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		wg.Go(func() {
			if _, err := s.UpdatePasskey(ctx, taro, p.ID, func(q *Passkey) error { q.SignCount++; return nil }); err != nil && !errors.Is(err, ErrContention) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	a, _ := s.Get(ctx, taro)
	if q, _ := a.Passkey(p.ID); q.SignCount == 0 || q.SignCount > 6 {
		t.Fatalf("counter %d", q.SignCount)
	}
}

func FuzzCleanPasskeyName(f *testing.F) {
	for _, s := range []string{"iPhone", " 鍵 ", "", "a\x00", "\u202e", strings.Repeat("x", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := CleanPasskeyName(s)
		if err != nil {
			return
		}
		if got == "" || got != strings.TrimSpace(got) || len([]rune(got)) > MaxPasskeyNameLen {
			t.Fatalf("%q cleaned to %q", s, got)
		}
		if again, err := CleanPasskeyName(got); err != nil || again != got {
			t.Fatalf("not idempotent: %q -> %q (%v)", got, again, err)
		}
	})
}
