package clients

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/whitelist"
	"github.com/watashi-id/watashi/whitelist/whitelisttest"
)

// A registry that cannot be asked is not a refusal: Lookup says
// ErrUnavailable, never ErrUnknown, for a client it approved as for one
// it never heard of (it cannot tell them apart now), while static
// clients go on working. The outage is a real Redis that stopped.
func TestLookupRegistryUnavailable(t *testing.T) {
	ctx := context.Background()
	kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{storetest.StartRedis(t)}, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	reg, err := whitelist.New(whitelist.Options{Backend: whitelist.KVBackend(kv, store.ErrNotFound)})
	if err != nil {
		t.Fatal(err)
	}
	change := whitelist.Change{Actor: "test", Via: "test", Reason: "clients test"}
	added, err := reg.Add(ctx, whitelist.AddRequest{Metadata: whitelisttest.WebMetadata(t, "reg.example"), Tier: whitelist.TierStandard, Change: change})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Approve(ctx, added.Client.ID, change); err != nil {
		t.Fatal(err)
	}
	fixtures(t)
	r := newResolver(t, Options{Registry: reg, Static: []*Client{{ID: "static", AuthMethod: AuthSecretBasic, SecretHash: fixtureSecret,
		RedirectURIs: []string{"https://static.example/cb"}}}})

	// Shut the server down; the client was never looked up, so nothing
	// is cached.
	_ = kv.Client().ShutdownNoSave(ctx).Err() // the server hangs up rather than answer
	if kv.Ping(ctx) == nil {
		t.Fatal("the store still answers")
	}
	for _, id := range []string{added.Client.ID, "never-registered"} {
		_, err := r.Lookup(ctx, id)
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnknown) || Refused(err) {
			t.Fatalf("Lookup(%s) with the store down: %v, want ErrUnavailable only", id, err)
		}
	}
	if _, err := r.Lookup(ctx, "static"); err != nil {
		t.Fatalf("a static client with the store down: %v", err)
	}
	// An empty or malformed client_id needs no store to be refused.
	if _, err := r.Lookup(ctx, ""); !errors.Is(err, ErrUnknown) {
		t.Fatalf("empty client_id: %v", err)
	}
}
