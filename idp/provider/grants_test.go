package provider

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/store"
	"golang.org/x/oauth2"
)

func TestParseMember(t *testing.T) {
	for _, tc := range []struct {
		m     string
		grant string
		ms    int64
		ok    bool
	}{
		{"1700000000123:g1", "g1", 1700000000123, true},
		{"0:g", "g", 0, true},
		{"", "", 0, false},
		{"g1", "", 0, false},
		{":g1", "", 0, false},
		{"12:", "", 0, false},
		{"x:g1", "", 0, false},
		{"12:g:1", "", 0, false},
		{"12:{g}", "", 0, false},
		{"99999999999999999999:g", "", 0, false},
	} {
		it, ok := parseMember(tc.m)
		if ok != tc.ok || it.grant != tc.grant || (ok && it.exp.UnixMilli() != tc.ms) || (ok && it.member != tc.m) {
			t.Errorf("parseMember(%q) = %+v, %v", tc.m, it, ok)
		}
	}
}

// Members written before they carried their expiry (a bare grant ID) are
// read through their record: a live one stays and is revoked on
// withdrawal, a gone or revoked one leaves the index.
func TestGrantIndexLegacyMembers(t *testing.T) {
	s := newTestServer(t)
	ctx := context.Background()
	gr := s.grants
	now := gr.now()
	put := func(id string, exp time.Time, revoked bool) {
		t.Helper()
		b, _ := json.Marshal(grantRecord{ID: id, ClientID: "web", AccountID: "a1", Exp: exp, Revoked: revoked})
		if err := s.kv.Set(ctx, grantKey(id), b, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	put("legacy-live", now.Add(time.Hour), false)
	put("legacy-revoked", now.Add(time.Hour), true)
	put("legacy-expired", now.Add(-time.Minute), false)
	key := accountGrantsKey("a1", "web")
	if err := s.kv.SetAdd(ctx, key, time.Hour, "legacy-live", "legacy-revoked", "legacy-expired", "legacy-gone"); err != nil {
		t.Fatal(err)
	}
	ng, err := gr.prepare(&authreq.AuthRequest{ID: "new", ClientID: "web", AccountID: "a1"}, false, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.kv.Do(ctx, gr.writeOps(ng)...); err != nil {
		t.Fatal(err)
	}
	g := ng.g
	if err := gr.prune(ctx, g); err != nil {
		t.Fatal(err)
	}
	members, _ := s.kv.SetMembers(ctx, key)
	slices.Sort(members)
	if want := []string{indexMember(g), "legacy-live"}; !slices.Equal(members, want) {
		t.Fatalf("index %v, want %v", members, want)
	}
	if err := gr.revokeAccountClient(ctx, "a1", "web"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"legacy-live", "new"} {
		if _, err := gr.load(ctx, id); err != errGrantRevoked {
			t.Errorf("%s after withdrawal: %v", id, err)
		}
	}
	if members, _ := s.kv.SetMembers(ctx, key); len(members) != 0 {
		t.Fatalf("index after withdrawal: %v", members)
	}
}

func TestAccessID(t *testing.T) {
	iat := time.Unix(1_800_000_000, 0).UTC()
	exp := iat.Add(time.Hour)
	id := accessID("grantID", "rnd", iat, exp, []string{"openid", "name"}, "acct")
	rec, rnd, ok := parseAccessID(id)
	if !ok || rnd != "rnd" || rec.Grant != "grantID" || rec.Account != "acct" || !rec.Issued.Equal(iat) || !rec.Exp.Equal(exp) ||
		!slices.Equal(rec.Scopes, []string{"openid", "name"}) {
		t.Fatalf("round trip of %q: %+v %q %v", id, rec, rnd, ok)
	}
	if rec, _, ok := parseAccessID(accessID("g", "r", iat, exp, nil, "a")); !ok || rec.Scopes != nil {
		t.Fatalf("no scopes: %+v %v", rec, ok)
	}
	for _, bad := range []string{
		"",
		"g.r.1.2.b3Blbmlk",         // no account
		"g.r.1.2.b3Blbmlk.a.extra", // too many parts
		".r.1.2.b3Blbmlk.a",        // no grant
		"g..1.2.b3Blbmlk.a",        // no random part
		"g.r.1.2.b3Blbmlk.",        // empty account
		"g.r.x!.2.b3Blbmlk.a",      // issued not base 36
		"g.r.1.y!.b3Blbmlk.a",      // expiry not base 36
		"g.r.2.1.b3Blbmlk.a",       // expires before issued
		"g.r.0.1.b3Blbmlk.a",       // issued at zero
		"g.r.1.2.***.a",            // scopes not base64url
		"g:x.r.1.2.b3Blbmlk.a",     // a store key separator
		"{g}.r.1.2.b3Blbmlk.a",     // a hash tag
		strings.Repeat("g", 1100) + ".r.1.2.b3Blbmlk.a",
	} {
		if rec, _, ok := parseAccessID(bad); ok {
			t.Errorf("parseAccessID(%q) accepted: %+v", bad, rec)
		}
	}
}

func FuzzParseAccessID(f *testing.F) {
	f.Add(accessID("g", "r", time.Unix(1_800_000_000, 0), time.Unix(1_800_003_600, 0), []string{"openid"}, "a"))
	f.Add("g.r.1.2.b3Blbmlk.a")
	f.Fuzz(func(t *testing.T, id string) {
		rec, rnd, ok := parseAccessID(id)
		if !ok {
			return
		}
		if rec.Grant == "" || rnd == "" || rec.Account == "" || rec.Exp.Before(rec.Issued) {
			t.Fatalf("accepted %q as %+v", id, rec)
		}
		// What parses is what accessID writes.
		if again := accessID(rec.Grant, rnd, rec.Issued, rec.Exp, rec.Scopes, rec.Account); again != id {
			if r2, _, ok2 := parseAccessID(again); !ok2 || r2.Grant != rec.Grant || !slices.Equal(r2.Scopes, rec.Scopes) {
				t.Fatalf("%q re-encoded as %q", id, again)
			}
		}
	})
}

// A grant record keeps what its tokens need and the code's digest, no
// more: no creation time, no offline flag (the scopes say it), auth_time
// to the second and the expiry to the millisecond, and never the
// redirect URI or the challenge.
func TestGrantRecordSmall(t *testing.T) {
	s := newTestServer(t)
	ar := &authreq.AuthRequest{
		ID: strings.Repeat("g", 43), ClientID: "web", RedirectURI: testRedirect, AccountID: strings.Repeat("a", 22), Subject: strings.Repeat("s", 43),
		Scopes: []string{"openid", "offline_access", "name"}, Granted: []string{"name"}, ACR: "aal3", AMR: []string{"hwk", "pin"},
		AuthTime: time.Now(), SessionID: strings.Repeat("x", 43), Method: "jpki:" + strings.Repeat("l", 16), Challenge: strings.Repeat("c", 43),
	}
	use := codeUse{ClientID: ar.ClientID, RedirectURI: ar.RedirectURI, Challenge: ar.Challenge}
	ng, err := s.grants.prepare(ar, true, codeDigest(ids.Hash("code"), use))
	if err != nil {
		t.Fatal(err)
	}
	rec := string(ng.b)
	for _, never := range []string{`"created"`, `"offline"`, testRedirect, ar.Challenge} {
		if strings.Contains(rec, never) {
			t.Errorf("the record holds %s: %s", never, rec)
		}
	}
	const most = 460 // with IDs of real length; 334 in TestLoginRoundTrips
	if len(rec) > most {
		t.Errorf("grant record of %d bytes, want at most %d: %s", len(rec), most, rec)
	}
	var back grantRecord
	if err := json.Unmarshal(ng.b, &back); err != nil || back.ID != ar.ID || len(back.Code) != 22 || !back.Exp.Equal(back.Exp.Truncate(time.Millisecond)) || !back.AuthTime.Equal(back.AuthTime.Truncate(time.Second)) {
		t.Fatalf("record read back: %+v %v", back, err)
	}
	if ng.ttl < s.ttl.Code || ng.rt == "" {
		t.Fatalf("ttl %v, refresh token %q", ng.ttl, ng.rt)
	}
	t.Logf("grant record: %d bytes", len(rec))
}

// The digest of a code matches a presentation only with the code, the
// client, the redirect URI and a verifier of the challenge all the same.
func TestCodeDigest(t *testing.T) {
	const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	challenge := oauth2.S256ChallengeFromVerifier(verifier)
	h := ids.Hash("req.code")
	stored := codeDigest(h, codeUse{ClientID: "web", RedirectURI: testRedirect, Challenge: challenge})
	for _, c := range []struct {
		name   string
		h      string
		client string
		tr     tokenRequest
		match  bool
	}{
		{"the code's own client", h, "web", tokenRequest{redirectURI: testRedirect, verifier: verifier}, true},
		{"another client", h, "other", tokenRequest{redirectURI: testRedirect, verifier: verifier}, false},
		{"another redirect URI", h, "web", tokenRequest{redirectURI: testRedirect + "x", verifier: verifier}, false},
		{"no redirect URI", h, "web", tokenRequest{verifier: verifier}, false},
		{"another verifier", h, "web", tokenRequest{redirectURI: testRedirect, verifier: verifier + "x"}, false},
		{"no verifier", h, "web", tokenRequest{redirectURI: testRedirect}, false},
		{"another code", ids.Hash("req.other"), "web", tokenRequest{redirectURI: testRedirect, verifier: verifier}, false},
		// The parts are separated: moving bytes from one to the next
		// is another digest.
		{"parts shifted", h, "we", tokenRequest{redirectURI: "b" + testRedirect, verifier: verifier}, false},
	} {
		if got := presentedDigest(c.h, c.client, &c.tr) == stored; got != c.match {
			t.Errorf("%s: match %v, want %v", c.name, got, c.match)
		}
	}
}

// revokeAll revokes live, missing and revoked grants alike, two round
// trips per store.MaxBatch, and leaves a revoked record alone.
func TestRevokeAll(t *testing.T) {
	kv, ops := countedStore(t, store.NewMemory())
	s := newTestServerOn(t, kv)
	ctx := context.Background()
	now := s.grants.now()
	var all []string
	for i := range store.MaxBatch + 6 {
		id := "g" + strconv.Itoa(i)
		all = append(all, id)
		switch i % 3 {
		case 0: // missing: a revoked record stops its exchange
		case 1:
			b, _ := json.Marshal(grantRecord{ID: id, ClientID: "web", AccountID: "a1", Exp: now.Add(time.Hour)})
			if err := kv.Set(ctx, grantKey(id), b, time.Hour); err != nil {
				t.Fatal(err)
			}
		case 2:
			b, _ := json.Marshal(grantRecord{ID: id, ClientID: "web", AccountID: "a1", Exp: now.Add(time.Hour), Revoked: true})
			if err := kv.Set(ctx, grantKey(id), b, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := ops()
	if err := s.grants.revokeAll(ctx, all); err != nil {
		t.Fatal(err)
	}
	if got := ops() - before; got != 4 {
		t.Errorf("%d round trips for %d grants, want 4", got, len(all))
	}
	for _, id := range all {
		if _, err := s.grants.load(ctx, id); err != errGrantRevoked {
			t.Errorf("%s: %v, want revoked", id, err)
		}
	}
	if err := s.grants.revokeAll(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

func TestPrunes(t *testing.T) {
	for n, want := range map[int64]bool{1: false, maxLiveGrants: false, maxLiveGrants + indexSlack - 1: false, maxLiveGrants + indexSlack: true, 100: true} {
		if prunes(n) != want {
			t.Errorf("prunes(%d) = %v", n, !want)
		}
	}
}
