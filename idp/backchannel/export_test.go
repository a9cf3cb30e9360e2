package backchannel

import (
	"time"

	"github.com/watashi-id/watashi/idp/delivery"
)

func (t Token) Sub() string { return t.Subject }
func (t Token) Exp() int64  { return t.Expiry }

// QueueForTest: a first retry after 10 s, so a test can step past it.
func QueueForTest() delivery.Options { return delivery.Options{Backoff: 10 * time.Second} }
