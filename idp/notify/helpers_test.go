package notify

import (
	"time"

	"github.com/watashi-id/watashi/idp/notify/notifytest"
)

// relayConfig is how a sender under test reaches r.
func relayConfig(r *notifytest.Relay, ca *notifytest.CA) SMTPConfig {
	mode := TLSStartTLS
	if r.Implicit {
		mode = TLSImplicit
	}
	return SMTPConfig{Host: "127.0.0.1", Port: r.Port(), TLS: mode, Username: r.User, From: "no-reply@id.example.jp",
		RootCAs: ca.Pool, Timeout: 5 * time.Second}
}
