package session

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/whitelist"
)

// labelBlocks asks the real block list about a JPKI session's label, as
// the provider's wiring does.
type labelBlocks struct{ l *whitelist.Blocklist }

func (b labelBlocks) SessionBlocked(ctx context.Context, s *Session) (bool, error) {
	kind, label, _ := strings.Cut(s.Method, ":")
	if kind != "jpki" {
		return false, nil
	}
	return b.l.LabelBlocked(ctx, label)
}

// A session whose token label the operator blocks ends when its browser
// comes back, with the other sessions and the token families of the same
// certificate; other certificates and accounts keep theirs.
func TestBlockedSessionEnds(t *testing.T) {
	stores(t, func(t *testing.T, kv store.KV) {
		ctx := context.Background()
		e := newIndexEnv(t, kv)
		l, err := whitelist.NewBlocklist(whitelist.BlocklistOptions{Backend: whitelist.KVBackend(kv, store.ErrNotFound)})
		if err != nil {
			t.Fatal(err)
		}
		e.m.SetBlocks(labelBlocks{l})
		phone, phoneC := e.start(t, "alice", "jpki:L1", "rp1") // JPKIAPGPSETOKEN
		other, otherC := e.start(t, "alice", "jpki:L1", "")    // the same phone, another browser
		bob, bobC := e.start(t, "bob", "jpki:L9", "rp1")       // JPKIAPGPSETOKEN too, not back yet
		e.issue(t, phone, "rp1", "g1")
		e.issue(t, other, "rp2", "g2")
		e.issue(t, bob, "rp1", "g9")
		if !e.current(phoneC) {
			t.Fatal("no session before the block")
		}
		if _, err := l.Add(ctx, "label", "JPKIAPGPSETOKEN", whitelist.Change{Actor: "ops"}); err != nil {
			t.Fatal(err)
		}
		if e.current(phoneC) {
			t.Fatal("the blocked session still signs in")
		}
		if e.current(otherC) {
			t.Fatal("the same certificate's other session survived")
		}
		if got := e.tokens.list(); !slices.Equal(got, []string{"g1", "g2"}) {
			t.Fatalf("revoked %v, want g1 g2", got)
		}
		evs := published(t, kv)
		var changes []string
		for _, ev := range evs {
			if ev.Kind == events.CredentialChanged {
				c := ev.Credential
				changes = append(changes, ev.AccountID+" "+c.Type+" "+c.Change+" "+c.Ref+" "+c.Label)
			}
		}
		if want := []string{"alice jpki revoke L1 JPKIAPGPSETOKEN"}; !slices.Equal(changes, want) {
			t.Fatalf("CredentialChanged %v, want %v", changes, want)
		}
		end := ended(evs)
		if ev := end[phone.ID]; ev.Reason != events.ReasonBlocked || ev.AccountID != "alice" {
			t.Fatalf("SessionEnded %+v", end)
		}
		if _, ok := end[bob.ID]; ok {
			t.Fatal("bob's session ended before his browser came back")
		}
		if err := l.Remove(ctx, "label", "JPKIAPGPSETOKEN", whitelist.Change{Actor: "ops"}); err != nil {
			t.Fatal(err)
		}
		if !e.current(bobC) {
			t.Fatal("bob's session ended after the block was lifted")
		}
	})
}
