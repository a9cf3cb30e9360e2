package clients_test

import (
	"testing"

	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/whitelist"
)

// A registered client's back-channel logout URI reaches the provider's
// view of it, where logout tokens are sent from.
func TestFromWhitelistBackchannelLogout(t *testing.T) {
	wc := &whitelist.Client{ID: "c", Metadata: whitelist.Metadata{BackchannelLogoutURI: "https://rp.example/bcl", BackchannelLogoutSessionRequired: true}}
	if got := clients.FromWhitelist(wc).BackchannelLogoutURI; got != "https://rp.example/bcl" {
		t.Fatalf("BackchannelLogoutURI %q", got)
	}
}
