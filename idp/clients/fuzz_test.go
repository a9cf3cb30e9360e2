package clients

import (
	"testing"

	"github.com/watashi-id/watashi/whitelist"
)

func FuzzParseSecretHash(f *testing.F) {
	fixtures(f)
	for _, v := range []string{fixtureSecret, "", "$argon2id$v=19$m=999999999,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=19456,t=2,p=1$$", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h, err := whitelist.ParseSecretHash(v)
		if err != nil {
			return
		}
		if h.Memory > 256*1024 || h.Time > 10 || h.Threads > 8 || len(h.Key) > 64 {
			t.Fatalf("accepted unsafe parameters from %q", v)
		}
	})
}
