package idp

import (
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// Two provider nodes on one real redis-server, sharing their secrets as a
// deployment does: whatever one node decides about a code or a token
// holds on the other at once, since no node keeps token state of its own.
// visibleWithin is the bound the tests hold revocation to.
const visibleWithin = time.Second

func twoNodes(t *testing.T) (a, b *testOP) {
	kv := redisKV(t)
	return newTestOP(t, kv, nil), newTestOP(t, kv, nil)
}

// eventually polls check on every node until it holds or visibleWithin
// passes.
func eventually(t *testing.T, what string, check func() bool) {
	t.Helper()
	for end := time.Now().Add(visibleWithin); ; time.Sleep(10 * time.Millisecond) {
		if check() {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, visibleWithin)
		}
	}
}

func active(o *testOP, token string) bool { return o.introspect(token, "web")["active"] == true }

// A code minted by one node is spent once across both: the exchange on
// the other node works, a replay on the first fails and revokes what the
// exchange minted, everywhere.
func TestTwoNodesCodeSingleUse(t *testing.T) {
	a, b := twoNodes(t)
	conf := a.oauth("web", "offline_access")
	v := oauth2.GenerateVerifier()
	code := a.login(conf, v, testAccount, nil)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {v}, "redirect_uri": {conf.RedirectURL}}

	st, tok := b.postForm(tokenPath, form, "web", testSecret)
	if st != http.StatusOK {
		t.Fatalf("exchange on the other node: %d %v", st, tok)
	}
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	if !active(a, at) || !active(b, at) {
		t.Fatal("the new access token is not active on both nodes")
	}
	st, again := a.postForm(tokenPath, form, "web", testSecret)
	if st != http.StatusBadRequest || again["error"] != "invalid_grant" {
		t.Fatalf("replay on the first node: %d %v, want invalid_grant", st, again)
	}
	for _, n := range []*testOP{a, b} {
		eventually(t, "the replay's revocation", func() bool {
			code, _ := n.userinfo(at)
			st, _ := n.refresh("web", rt)
			return code == http.StatusUnauthorized && st == http.StatusBadRequest && !active(n, at)
		})
	}
}

// Of two exchanges of one code racing on two nodes, exactly one gets
// tokens, and the loser's replay revokes them.
func TestTwoNodesCodeRace(t *testing.T) {
	a, b := twoNodes(t)
	conf := a.oauth("web")
	for round := range 5 {
		v := oauth2.GenerateVerifier()
		code := a.login(conf, v, testAccount, nil)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {v}, "redirect_uri": {conf.RedirectURL}}
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			tokens []string
		)
		for _, n := range []*testOP{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if st, tok := n.postForm(tokenPath, form, "web", testSecret); st == http.StatusOK {
					mu.Lock()
					tokens = append(tokens, tok["access_token"].(string))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(tokens) > 1 {
			t.Fatalf("round %d: one code exchanged on both nodes", round)
		}
		// A loser that arrived after the winner revoked its grant; one
		// that arrived while the winner was still minting made it fail.
		for _, at := range tokens {
			for _, n := range []*testOP{a, b} {
				eventually(t, "the racing replay's revocation", func() bool { return !active(n, at) })
			}
		}
	}
}

// A refresh token rotated on one node and presented again on the other
// is reuse: the whole family ends on both nodes, the token rotated in
// good faith included.
func TestTwoNodesRefreshReuse(t *testing.T) {
	a, b := twoNodes(t)
	tok := a.loginTokens(a.oauth("web", "offline_access"), testAccount, nil)
	st, next := a.refresh("web", tok.RefreshToken)
	if st != http.StatusOK {
		t.Fatalf("rotation on the first node: %d %v", st, next)
	}
	newAT, newRT := next["access_token"].(string), next["refresh_token"].(string)
	if !active(b, newAT) {
		t.Fatal("the rotated access token is not active on the other node")
	}
	if st, _ := b.refresh("web", tok.RefreshToken); st != http.StatusBadRequest {
		t.Fatalf("reuse on the other node: %d, want 400", st)
	}
	for _, n := range []*testOP{a, b} {
		eventually(t, "the family's revocation", func() bool {
			st, _ := n.refresh("web", newRT)
			return st == http.StatusBadRequest && !active(n, newAT) && !active(n, tok.AccessToken)
		})
	}
}

// Revocation (RFC 7009) on one node shows on the other: an access token
// alone, then a refresh token with its whole grant.
func TestTwoNodesRevocationVisible(t *testing.T) {
	a, b := twoNodes(t)
	tok := a.loginTokens(a.oauth("web", "offline_access"), testAccount, nil)
	st, next := a.refresh("web", tok.RefreshToken)
	if st != http.StatusOK {
		t.Fatalf("rotation: %d %v", st, next)
	}
	sibling := next["access_token"].(string)

	if st, _ := b.postForm(revokePath, url.Values{"token": {tok.AccessToken}}, "web", testSecret); st != http.StatusOK {
		t.Fatalf("revoking the access token on the second node: %d", st)
	}
	eventually(t, "the access token's revocation on the first node", func() bool {
		code, _ := a.userinfo(tok.AccessToken)
		return code == http.StatusUnauthorized && !active(a, tok.AccessToken)
	})
	// Only that token: its sibling of the same grant lives on.
	if code, _ := a.userinfo(sibling); code != http.StatusOK || !active(b, sibling) {
		t.Fatalf("revoking one access token ended its sibling (userinfo %d)", code)
	}

	if st, _ := a.postForm(revokePath, url.Values{"token": {next["refresh_token"].(string)}}, "web", testSecret); st != http.StatusOK {
		t.Fatalf("revoking the refresh token on the first node: %d", st)
	}
	eventually(t, "the grant's revocation on the second node", func() bool {
		code, _ := b.userinfo(sibling)
		return code == http.StatusUnauthorized && !active(b, sibling)
	})
}
