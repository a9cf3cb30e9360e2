package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/backup"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

// benchAccounts is the size of the benchmarks' store: each account is
// three records as the store holds them (a sealed record of about 3 KB,
// its wrapped data key, a certificate link), plus the list of accounts.
const benchAccounts = 5000

func fillAccounts(b *testing.B, kv store.KV, ring *seal.Ring) int {
	b.Helper()
	ctx := context.Background()
	ids := make([]string, benchAccounts)
	for i := range ids {
		id := fmt.Sprintf("acct-%06d", i)
		ids[i] = id
		sealed := make([]byte, 3000)
		_, _ = rand.Read(sealed)
		w, err := ring.Wrap(seal.NewDataKey(), []byte("acctkey:"+id))
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range []store.Record{
			{Key: "acct:" + id, Kind: store.KindValue, Value: sealed},
			{Key: "acctkey:" + id, Kind: store.KindValue, Value: w},
			{Key: "link:" + id, Kind: store.KindValue, Value: []byte(id)},
		} {
			if err := kv.Restore(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := kv.Restore(ctx, store.Record{Key: "accts", Kind: store.KindSet, Members: ids}); err != nil {
		b.Fatal(err)
	}
	return 3*benchAccounts + 1
}

// BenchmarkBackup is one consistent snapshot of the store, encrypted
// into a backup in memory; BenchmarkRestore writes that backup into an
// empty prefix with the command's eight writers, without replicas and
// with one replica to wait for.
func BenchmarkBackup(b *testing.B) {
	addr := storetest.StartRedis(b)
	kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: "bench:"})
	if err != nil {
		b.Fatal(err)
	}
	defer kv.Close()
	ring := seal.GenerateRing()
	n := fillAccounts(b, kv, ring)
	b.ResetTimer()
	for b.Loop() {
		var buf bytes.Buffer
		w, err := backup.NewWriter(&buf, ring, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if err := kv.Snapshot(context.Background(), "", w.Add); err != nil {
			b.Fatal(err)
		}
		if _, err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkRestore(b *testing.B) {
	for _, replicas := range []int{0, 1} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			nodes := storetest.StartReplicated(b, replicas)
			src, err := store.NewRedis(store.RedisOptions{Addrs: []string{nodes[0].Addr}, Prefix: "src:", WaitReplicas: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer src.Close()
			ring := seal.GenerateRing()
			n := fillAccounts(b, src, ring)
			var file bytes.Buffer
			w, err := backup.NewWriter(&file, ring, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			if err := src.Snapshot(context.Background(), "", w.Add); err != nil {
				b.Fatal(err)
			}
			if _, err := w.Close(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			i := 0
			for b.Loop() {
				i++
				dst, err := store.NewRedis(store.RedisOptions{Addrs: []string{nodes[0].Addr}, Prefix: fmt.Sprintf("dst%d:", i), WaitReplicas: replicas})
				if err != nil {
					b.Fatal(err)
				}
				r, err := backup.NewReader(bytes.NewReader(file.Bytes()), ring)
				if err != nil {
					b.Fatal(err)
				}
				if got, err := restoreRecords(context.Background(), dst, r, 8); err != nil || got != n {
					b.Fatalf("restored %d of %d: %v", got, n, err)
				}
				dst.Close()
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
