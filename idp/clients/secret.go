package clients

import (
	"context"
	"crypto/sha256"
	"runtime"
	"sync"
	"time"

	"github.com/watashi-id/watashi/whitelist"
)

// HashSecret produces Client.SecretHash for a client_secret_basic client:
// an Argon2id PHC string (whitelist.HashSecret, the one implementation of
// the format, shared with registered clients). The plain secret is never
// stored; verification costs ~20 ms of CPU.
func HashSecret(secret string) (string, error) { return whitelist.HashSecret(secret) }

// VerifySecret checks a client_secret_basic client's secret. A client
// registered for another method never passes, whatever it sends.
func (r *Resolver) VerifySecret(ctx context.Context, e *Entry, secret string) bool {
	if e.Client.AuthMethod != AuthSecretBasic {
		return false
	}
	return r.secrets.verify(ctx, e.Client.SecretHash, secret)
}

// secretVerifier remembers recent successes, so that a busy RP pays the
// Argon2 cost once rather than per token request. Only SHA-256(hash,
// secret) of a correct pair is kept, in memory. Argon2 runs are bounded
// by a semaphore, so that a flood of wrong secrets costs CPU and memory
// at most NumCPU at a time.
type secretVerifier struct {
	mu  sync.Mutex
	ok  map[[32]byte]time.Time
	sem chan struct{}
}

func newSecretVerifier() secretVerifier {
	return secretVerifier{sem: make(chan struct{}, runtime.NumCPU())}
}

const (
	secretCacheSize = 1024
	secretCacheTTL  = 10 * time.Minute
)

func (v *secretVerifier) verify(ctx context.Context, stored, secret string) bool {
	memo := sha256.Sum256([]byte(stored + "\x00" + secret))
	v.mu.Lock()
	if t, hit := v.ok[memo]; hit && time.Since(t) < secretCacheTTL {
		v.mu.Unlock()
		return true
	}
	v.mu.Unlock()
	h, err := whitelist.ParseSecretHash(stored)
	if err != nil {
		return false
	}
	select {
	case v.sem <- struct{}{}:
		defer func() { <-v.sem }()
	case <-ctx.Done():
		return false
	}
	if !h.Matches(secret) {
		return false
	}
	v.mu.Lock()
	if v.ok == nil || len(v.ok) >= secretCacheSize {
		v.ok = make(map[[32]byte]time.Time)
	}
	v.ok[memo] = time.Now()
	v.mu.Unlock()
	return true
}
