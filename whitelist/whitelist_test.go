package whitelist_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/whitelist"
	"github.com/watashi-id/watashi/whitelist/whitelisttest"
)

func memoryBackend(t *testing.T) whitelist.Backend {
	return whitelist.KVBackend(store.NewMemory(), store.ErrNotFound)
}

var redisPrefix atomic.Int64

// redisNode connects a new client (a "node") to addr under prefix.
func redisNode(t testing.TB, addr, prefix string) whitelist.Backend {
	t.Helper()
	kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	return whitelist.KVBackend(kv, store.ErrNotFound)
}

func TestConformanceMemory(t *testing.T) {
	whitelisttest.Run(t, memoryBackend)
}

func TestConformanceRedis(t *testing.T) {
	addr := storetest.StartRedis(t)
	whitelisttest.Run(t, func(t *testing.T) whitelist.Backend {
		return redisNode(t, addr, fmt.Sprintf("wl%d:", redisPrefix.Add(1)))
	})
}
