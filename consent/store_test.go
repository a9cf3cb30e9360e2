package consent_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/consent/consenttest"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
)

func TestStoreMemory(t *testing.T) {
	consenttest.RunStore(t, func(t *testing.T) consent.KV { return store.NewMemory() }, store.ErrNotFound)
}

var prefixSeq atomic.Int64

func TestStoreRedis(t *testing.T) {
	addr := storetest.StartRedis(t)
	consenttest.RunStore(t, func(t *testing.T) consent.KV {
		r, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: fmt.Sprintf("c%d:", prefixSeq.Add(1))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}, store.ErrNotFound)
}
