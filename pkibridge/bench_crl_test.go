package pkibridge

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// The 1M-entry CRL is built only by the benchmarks (never by plain
// `go test`), at most once per process, and cached under os.TempDir() so
// repeated runs skip the ~10 s (and ~800 MB) x509.CreateRevocationList
// takes. Peak RSS of loading it through a CRLSource:
//
//	go test -c -o /tmp/p.test ./pkibridge/
//	/usr/bin/time -v /tmp/p.test -test.run '^$' -test.bench 'CRLCheck1M$' -test.benchtime 1x

const revBenchEntries = 1_000_000

var (
	revBenchOnce                sync.Once
	revBenchCAPath, revBenchCRL string
	revBenchErr                 error
)

// revBenchFiles makes sure the cached CA and CRL files exist and returns
// their paths; nothing stays in memory, so a benchmark that loads the CRL
// through a CRLSource measures only that.
func revBenchFiles(b *testing.B) (caPath, crlPath string) {
	b.Helper()
	revBenchOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), "watashi-bench-crl-1m-v1")
		revBenchCAPath, revBenchCRL = filepath.Join(dir, "ca.der"), filepath.Join(dir, "crl.der")
		if _, err := os.Stat(revBenchCRL); err == nil {
			if _, err := os.Stat(revBenchCAPath); err == nil {
				return
			}
		}
		revBenchErr = revBenchBuild(dir, revBenchCAPath, revBenchCRL)
	})
	if revBenchErr != nil {
		b.Fatal(revBenchErr)
	}
	return revBenchCAPath, revBenchCRL
}

func revBenchLoad(b *testing.B) (*x509.Certificate, []byte) {
	b.Helper()
	caPath, crlPath := revBenchFiles(b)
	caDER, err := os.ReadFile(caPath)
	if err != nil {
		b.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		b.Fatal(err)
	}
	der, err := os.ReadFile(crlPath)
	if err != nil {
		b.Fatal(err)
	}
	return ca, der
}

func revBenchBuild(dir, caPath, crlPath string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Country: []string{"JP"}, Organization: []string{"JPKI-BENCH"}, OrganizationalUnit: []string{"JPKI for digital signature"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(20, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          []byte("bench-crl-ca-key"),
	}
	caDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	rng := mrand.New(mrand.NewChaCha8([32]byte{'w', 'a', 't', 'a', 's', 'h', 'i'}))
	entries := make([]x509.RevocationListEntry, revBenchEntries)
	var serial [16]byte
	for i := range entries {
		for j := range serial {
			serial[j] = byte(rng.Uint32())
		}
		serial[0] &= 0x7f
		entries[i] = x509.RevocationListEntry{
			SerialNumber:   new(big.Int).SetBytes(serial[:]),
			RevocationTime: now.Add(-time.Duration(i) * time.Minute),
		}
		if i%3 == 0 {
			entries[i].ReasonCode = 1 + i%5
		}
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(1),
		ThisUpdate:                now,
		NextUpdate:                now.AddDate(10, 0, 0), // the cache outlives many runs
		RevokedCertificateEntries: entries,
	}, ca, key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// CRL last: its presence marks a complete cache.
	if err := os.WriteFile(caPath, caDER, 0o600); err != nil {
		return err
	}
	tmp := crlPath + ".tmp"
	if err := os.WriteFile(tmp, der, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, crlPath)
}

// BenchmarkCRLParse1M measures verify+index of a 1,000,000-entry CRL and
// reports the heap the finished index keeps (index-MB) and the heap the
// parse allocated in total (alloc-MB/op).
func BenchmarkCRLParse1M(b *testing.B) {
	ca, der := revBenchLoad(b)
	cands := []*x509.Certificate{ca}
	var retained float64
	var ms runtime.MemStats
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		b.StartTimer()
		idx, _, err := parseCRL(der, cands)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if idx.len() != revBenchEntries {
			b.Fatalf("indexed %d entries, want %d", idx.len(), revBenchEntries)
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		retained = float64(ms.HeapAlloc-before) / (1 << 20)
		runtime.KeepAlive(idx)
		b.StartTimer()
	}
	b.ReportMetric(retained, "index-MB")
}

// BenchmarkCRLParse1MStdlib is the baseline parseCRL replaces.
func BenchmarkCRLParse1MStdlib(b *testing.B) {
	ca, der := revBenchLoad(b)
	b.ReportAllocs()
	for b.Loop() {
		rl, err := x509.ParseRevocationList(der)
		if err != nil {
			b.Fatal(err)
		}
		if err := rl.CheckSignatureFrom(ca); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCRLLookup1M(b *testing.B) {
	ca, der := revBenchLoad(b)
	idx, _, err := parseCRL(der, []*x509.Certificate{ca})
	if err != nil {
		b.Fatal(err)
	}
	const probes = 4096
	hits := make([]*big.Int, probes)
	misses := make([]*big.Int, probes)
	rng := mrand.New(mrand.NewPCG(1, 2))
	var all [][]byte
	idx.forEach(func(k []byte, _ int64, _ int8) bool { all = append(all, k); return true })
	for i := range hits {
		hits[i] = new(big.Int).SetBytes(all[rng.IntN(len(all))])
		var s [16]byte
		for j := range s {
			s[j] = byte(rng.Uint32())
		}
		s[0] &= 0x7f // same length as the fixture's serials, so misses probe the table
		misses[i] = new(big.Int).SetBytes(s[:])
	}
	run := func(serials []*big.Int, want bool) func(*testing.B) {
		return func(b *testing.B) {
			var kb [crlSerialBuf]byte
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				_, _, ok := idx.lookup(crlSerialKey(serials[i%probes], kb[:0]))
				if ok != want {
					b.Fatalf("lookup = %v, want %v", ok, want)
				}
				i++
			}
		}
	}
	b.Run("hit", run(hits, true))
	b.Run("miss", run(misses, false))
}

// BenchmarkCRLCheck1M is the whole CRLSource.CheckRevocation path on a
// loaded 1M-entry CRL: issuer match, freshness, scope and lookup.
func BenchmarkCRLCheck1M(b *testing.B) {
	caPath, crlPath := revBenchFiles(b)
	caDER, err := os.ReadFile(caPath)
	if err != nil {
		b.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		b.Fatal(err)
	}
	src, err := NewCRLSource(crlPath, ca, CRLOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if err := src.Refresh(b.Context()); err != nil {
		b.Fatal(err)
	}
	var hit []byte
	n := 0
	src.cur.forEach(func(k []byte, _ int64, _ int8) bool { hit = k; n++; return n < 12345 })
	leaf := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(hit),
		RawIssuer:    ca.RawSubject,
	}
	b.ReportAllocs()
	for b.Loop() {
		info, err := src.CheckRevocation(b.Context(), leaf, ca)
		if err != nil || info.Status != StatusRevoked {
			b.Fatalf("CheckRevocation = %+v, %v", info, err)
		}
	}
}
