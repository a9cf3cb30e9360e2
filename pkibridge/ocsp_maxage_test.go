package pkibridge_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// A "good" answer must not outlive MaxCacheAge, even when the responder's
// nextUpdate is further away: a certificate revoked after a sign-in has to
// stop working within minutes on the node that cached the answer.
func TestOCSPMaxCacheAge(t *testing.T) {
	ca, err := jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindAuthentication})
	if err != nil {
		t.Fatal(err)
	}
	var queries atomic.Int64
	rev := jpkisim.NewRevocationServer(ca)
	srv := httptest.NewServer(countingHandler(&queries, rev))
	defer srv.Close()

	now := time.Now()
	var offset atomic.Int64
	clock := func() time.Time { return now.Add(time.Duration(offset.Load())) }
	ctx := context.Background()

	tests := []struct {
		name    string
		maxAge  time.Duration
		advance time.Duration
		want    pkibridge.RevocationStatus
	}{
		{"within the cap the cached good answer is reused", 5 * time.Minute, 4 * time.Minute, pkibridge.StatusGood},
		{"past the cap the responder is asked again", 5 * time.Minute, 6 * time.Minute, pkibridge.StatusRevoked},
		{"no cap: cached until nextUpdate", -1, 6 * time.Minute, pkibridge.StatusGood},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offset.Store(0)
			leaf, err := ca.Issue(jpkisim.LeafOptions{}) // a fresh, unrevoked certificate per row
			if err != nil {
				t.Fatal(err)
			}
			c, err := pkibridge.NewOCSPClient(srv.URL+"/ocsp/0", pkibridge.OCSPOptions{Now: clock, MaxCacheAge: tt.maxAge})
			if err != nil {
				t.Fatal(err)
			}
			info, err := c.CheckRevocation(ctx, leaf.Cert, ca.Cert)
			if err != nil || info.Status != pkibridge.StatusGood {
				t.Fatalf("first check: %+v %v", info, err)
			}
			ca.Revoke(leaf.Cert.SerialNumber, now, 1)
			offset.Store(int64(tt.advance))
			before := queries.Load()
			info, _ = c.CheckRevocation(ctx, leaf.Cert, ca.Cert)
			if info.Status != tt.want {
				t.Fatalf("after %v: status %s, want %s", tt.advance, info.Status, tt.want)
			}
			if asked := queries.Load() > before; asked != (tt.want == pkibridge.StatusRevoked) {
				t.Fatalf("responder asked again = %v", asked)
			}
		})
	}
}

func countingHandler(n *atomic.Int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}
