package clients

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/whitelist"
	"github.com/watashi-id/watashi/whitelist/whitelisttest"
)

func TestPairwiseSub(t *testing.T) {
	k1 := []byte("0123456789abcdef0123456789abcdef")
	k2 := []byte("fedcba9876543210fedcba9876543210")
	a := PairwiseSub(k1, "rp.example", "acct-1")
	if a != PairwiseSub(k1, "rp.example", "acct-1") {
		t.Fatal("not stable")
	}
	for name, other := range map[string]string{
		"other sector":  PairwiseSub(k1, "rp2.example", "acct-1"),
		"other account": PairwiseSub(k1, "rp.example", "acct-2"),
		"other key":     PairwiseSub(k2, "rp.example", "acct-1"),
		// The separator keeps sector and account apart.
		"shifted boundary": PairwiseSub(k1, "rp.exampleacct-", "1"),
	} {
		if other == a {
			t.Errorf("%s: same sub", name)
		}
	}
	if len(a) != 43 || strings.ContainsAny(a, "+/=:.") {
		t.Errorf("sub %q is not 43 base64url characters", a)
	}
}

func TestResolveSector(t *testing.T) {
	docs := map[string]string{
		"/good":     `["https://a.example/cb","https://b.example/cb","https://c.example/x"]`,
		"/missing":  `["https://a.example/cb"]`,
		"/notjson":  `<html>hello</html>`,
		"/object":   `{"redirect_uris":["https://a.example/cb","https://b.example/cb"]}`,
		"/numbers":  `[1,2,3]`,
		"/huge":     `["https://a.example/cb","https://b.example/cb",` + `"` + strings.Repeat("x", maxSectorDocument) + `"]`,
		"/redirect": "",
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/good", http.StatusFound)
			return
		}
		d, ok := docs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(d))
	})
	tlsSrv := httptest.NewTLSServer(h)
	defer tlsSrv.Close()
	plain := httptest.NewServer(h)
	defer plain.Close()
	two := []string{"https://a.example/cb", "https://b.example/cb"}

	tests := []struct {
		name   string
		client Client
		dev    bool
		want   string // "" = error
	}{
		{"one host", Client{RedirectURIs: []string{"https://rp.example/cb", "https://RP.example:8443/other"}}, false, "rp.example"},
		{"different hosts", Client{RedirectURIs: two}, false, ""},
		{"no redirect URIs", Client{}, false, ""},
		{"custom scheme without host", Client{RedirectURIs: []string{"com.example.app:/cb"}}, false, ""},
		{"unparseable redirect", Client{RedirectURIs: []string{"https://a.example/%zz"}}, false, ""},
		{"sector document", Client{RedirectURIs: two, SectorIdentifierURI: tlsSrv.URL + "/good"}, false, "127.0.0.1"},
		{"redirect missing from document", Client{RedirectURIs: two, SectorIdentifierURI: tlsSrv.URL + "/missing"}, false, ""},
		{"http outside dev", Client{RedirectURIs: two, SectorIdentifierURI: plain.URL + "/good"}, false, ""},
		{"http in dev", Client{RedirectURIs: two, SectorIdentifierURI: plain.URL + "/good"}, true, "127.0.0.1"},
		{"not JSON", Client{RedirectURIs: two, SectorIdentifierURI: tlsSrv.URL + "/notjson"}, false, ""},
		{"object not array", Client{RedirectURIs: two, SectorIdentifierURI: tlsSrv.URL + "/object"}, false, ""},
		{"array of numbers", Client{RedirectURIs: two, SectorIdentifierURI: tlsSrv.URL + "/numbers"}, false, ""},
		{"oversized", Client{RedirectURIs: two, SectorIdentifierURI: tlsSrv.URL + "/huge"}, false, ""},
		{"404", Client{RedirectURIs: two, SectorIdentifierURI: tlsSrv.URL + "/nope"}, false, ""},
		{"redirect not followed", Client{RedirectURIs: two, SectorIdentifierURI: tlsSrv.URL + "/redirect"}, false, ""},
		{"not a URL", Client{RedirectURIs: two, SectorIdentifierURI: "sector"}, false, ""},
		{"ftp", Client{RedirectURIs: two, SectorIdentifierURI: "ftp://a.example/x"}, true, ""},
		{"fragment", Client{RedirectURIs: two, SectorIdentifierURI: tlsSrv.URL + "/good#x"}, false, ""},
		{"unreachable", Client{RedirectURIs: two, SectorIdentifierURI: "https://127.0.0.1:1/x"}, false, ""},
		{"loopback without an exemption", Client{RedirectURIs: two, SectorIdentifierURI: tlsSrv.URL + "/good"}, false, "guarded"},
	}
	exempt := loopbackFetcher(tlsSrv)
	dev := whitelist.NewFetcher(whitelist.FetcherOptions{Dev: true, TLS: tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig})
	guarded := whitelist.NewFetcher(whitelist.FetcherOptions{TLS: tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.client.ID = "c1"
			var f Fetcher = exempt
			if tc.dev {
				f = dev
			}
			if tc.want == "guarded" {
				// The production fetcher refuses the loopback server.
				_, err := ResolveSector(context.Background(), &tc.client, guarded, false)
				if !errors.Is(err, whitelist.ErrFetchURL) {
					t.Fatalf("loopback sector document: %v", err)
				}
				return
			}
			got, err := ResolveSector(context.Background(), &tc.client, f, tc.dev)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("accepted: %q", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := ResolveSector(context.Background(), nil, nil, false); err == nil {
		t.Fatal("nil client accepted")
	}
}

// The provider refuses to start with a client whose sector cannot be
// derived, rather than hand out per-host subjects; New validates every
// static client as the provider's start did.
func TestLoadClientsSector(t *testing.T) {
	fixtures(t)
	tests := []struct {
		name string
		c    *Client
		ok   bool
	}{
		{"two hosts", &Client{ID: "x", AuthMethod: AuthNone, RedirectURIs: []string{"https://a.example/cb", "https://b.example/cb"}}, false},
		{"explicit sector kept", &Client{ID: "x", AuthMethod: AuthNone, RedirectURIs: []string{"https://a.example/cb", "https://b.example/cb"}, Sector: "a.example"}, true},
		{"bad method", &Client{ID: "x", AuthMethod: "client_secret_post", RedirectURIs: []string{"https://a.example/cb"}}, false},
		{"bad secret hash", &Client{ID: "x", AuthMethod: AuthSecretBasic, SecretHash: "sha256:abc", RedirectURIs: []string{"https://a.example/cb"}}, false},
		// A static client has no jwks_uri: without inline keys it could
		// never authenticate.
		{"pk without JWKS", &Client{ID: "x", AuthMethod: AuthPrivateKeyJWT, RedirectURIs: []string{"https://a.example/cb"}}, false},
		{"pk with private JWKS", &Client{ID: "x", AuthMethod: AuthPrivateKeyJWT, JWKS: privateJWKS(t), RedirectURIs: []string{"https://a.example/cb"}}, false},
		{"pk with empty JWKS", &Client{ID: "x", AuthMethod: AuthPrivateKeyJWT, JWKS: []byte(`{"keys":[]}`), RedirectURIs: []string{"https://a.example/cb"}}, false},
		{"pk with JWKS not JSON", &Client{ID: "x", AuthMethod: AuthPrivateKeyJWT, JWKS: []byte(`keys`), RedirectURIs: []string{"https://a.example/cb"}}, false},
		{"pk with public JWKS", &Client{ID: "x", AuthMethod: AuthPrivateKeyJWT, JWKS: publicJWKS(t), RedirectURIs: []string{"https://a.example/cb"}}, true},
		{"secret", &Client{ID: "x", AuthMethod: AuthSecretBasic, SecretHash: fixtureSecret, RedirectURIs: []string{"https://a.example/cb"}}, true},
		{"bad alg", &Client{ID: "x", AuthMethod: AuthNone, IDTokenAlg: "HS256", RedirectURIs: []string{"https://a.example/cb"}}, false},
		{"RS256", &Client{ID: "x", AuthMethod: AuthNone, IDTokenAlg: "RS256", RedirectURIs: []string{"https://a.example/cb"}}, true},
		{"colon in id", &Client{ID: "x:y", AuthMethod: AuthNone, RedirectURIs: []string{"https://a.example/cb"}}, false},
		{"brace in id", &Client{ID: "x{y}", AuthMethod: AuthNone, RedirectURIs: []string{"https://a.example/cb"}}, false},
		{"no id", &Client{AuthMethod: AuthNone, RedirectURIs: []string{"https://a.example/cb"}}, false},
		{"nil client", nil, false},
		{"no redirect URIs", &Client{ID: "x", AuthMethod: AuthNone}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), Options{Static: []*Client{tc.c}, PairwiseKey: testPairwiseKey})
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v", err)
			}
		})
	}
	dup := []*Client{
		{ID: "x", AuthMethod: AuthNone, RedirectURIs: []string{"https://a.example/cb"}},
		{ID: "x", AuthMethod: AuthNone, RedirectURIs: []string{"https://a.example/cb"}},
	}
	if _, err := New(context.Background(), Options{Static: dup, PairwiseKey: testPairwiseKey}); err == nil {
		t.Fatal("duplicate client accepted")
	}
	one := []*Client{{ID: "x", AuthMethod: AuthNone, RedirectURIs: []string{"https://a.example/cb"}}}
	if _, err := New(context.Background(), Options{Static: one, PairwiseKey: testPairwiseKey[:31]}); err == nil {
		t.Fatal("short pairwise key accepted")
	}
	r, err := New(context.Background(), Options{Static: one, PairwiseKey: testPairwiseKey})
	if err != nil {
		t.Fatal(err)
	}
	if one[0].Sector != "a.example" {
		t.Fatalf("sector %q not resolved", one[0].Sector)
	}
	if got := r.Static(); len(got) != 1 || got[0] != one[0] {
		t.Fatalf("Static = %v", got)
	}
}

// The sub is the same at every endpoint and for every client of a sector,
// different across sectors, and depends on the operator's key.
func TestResolverSubject(t *testing.T) {
	web := &Client{ID: "web", AuthMethod: AuthNone, RedirectURIs: []string{"https://rp.example/cb"}}
	web2 := &Client{ID: "web2", AuthMethod: AuthNone, RedirectURIs: []string{"https://RP.example/other"}}
	other := &Client{ID: "other", AuthMethod: AuthNone, RedirectURIs: []string{"https://other.example/cb"}}
	r := newResolver(t, Options{Static: []*Client{web, web2, other}})
	a := r.Subject(web, "acct-1")
	if a != PairwiseSub(testPairwiseKey, "rp.example", "acct-1") {
		t.Fatal("Subject is not the pairwise sub of the client's sector")
	}
	if r.Subject(web2, "acct-1") != a {
		t.Fatal("two clients of one sector see different subs")
	}
	if r.Subject(other, "acct-1") == a || r.Subject(web, "acct-2") == a {
		t.Fatal("sub shared across sectors or accounts")
	}
	r2 := newResolver(t, Options{Static: []*Client{web}, PairwiseKey: []byte("another-pairwise-key-0123456789abcdef")})
	if r2.Subject(web, "acct-1") == a {
		t.Fatal("sub does not depend on the key")
	}
}

// Without a registry, every client that is not static is unknown, and the
// provider's own sign-in is displayed but cannot be looked up.
func TestResolverLookup(t *testing.T) {
	web := &Client{ID: "web", AuthMethod: AuthNone, RedirectURIs: []string{"https://rp.example/cb"}}
	r := newResolver(t, Options{Static: []*Client{web}})
	ctx := context.Background()
	if r.HasRegistry() {
		t.Fatal("registry without one configured")
	}
	e, err := r.Lookup(ctx, "web")
	if err != nil || e.Client != web || !e.Approved() {
		t.Fatalf("Lookup(web) = %+v, %v", e, err)
	}
	if c, err := r.Get(ctx, "web"); err != nil || c != web {
		t.Fatalf("Get(web) = %v, %v", c, err)
	}
	for _, id := range []string{"", "nope", "WEB", SelfServiceID} {
		if _, err := r.Lookup(ctx, id); !errors.Is(err, ErrUnknown) {
			t.Errorf("Lookup(%q) = %v, want ErrUnknown", id, err)
		}
	}
	if d, err := r.Display(ctx, SelfServiceID); err != nil || d.Client.ID != SelfServiceID || d.Client.Name() == SelfServiceID {
		t.Fatalf("Display(self) = %+v, %v", d, err)
	}
	if _, err := r.Display(ctx, "nope"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Display(nope) = %v", err)
	}
	if Refused(ErrUnknown) {
		t.Fatal("an unknown client reported as refused by the registry")
	}
}

// Redirect URIs match exactly, except a native client's loopback port.
func TestRedirectAllowed(t *testing.T) {
	web := &Entry{Client: &Client{ID: "web", AuthMethod: AuthSecretBasic, RedirectURIs: []string{"https://rp.example/cb", "http://127.0.0.1/cb"}}}
	native := &Entry{Client: &Client{ID: "app", AuthMethod: AuthNone, RedirectURIs: []string{"http://127.0.0.1/cb?x=1", "https://app.example/cb"}}}
	tests := []struct {
		name string
		e    *Entry
		uri  string
		ok   bool
	}{
		{"exact", web, "https://rp.example/cb", true},
		{"trailing slash", web, "https://rp.example/cb/", false},
		{"other path", web, "https://rp.example/cb2", false},
		{"query added", web, "https://rp.example/cb?a=b", false},
		{"case of host", web, "https://RP.example/cb", false},
		{"http for https", web, "http://rp.example/cb", false},
		{"confidential loopback port", web, "http://127.0.0.1:8080/cb", false},
		{"empty", web, "", false},
		{"native exact", native, "http://127.0.0.1/cb?x=1", true},
		{"native any port", native, "http://127.0.0.1:51234/cb?x=1", true},
		{"native other path", native, "http://127.0.0.1:51234/other?x=1", false},
		{"native other query", native, "http://127.0.0.1:51234/cb?x=2", false},
		{"native https loopback", native, "https://127.0.0.1:51234/cb?x=1", false},
		{"native other host", native, "http://127.0.0.2:51234/cb?x=1", false},
		{"native non-loopback port", native, "https://app.example:8443/cb", false},
	}
	for _, tc := range tests {
		if got := tc.e.RedirectAllowed(tc.uri); got != tc.ok {
			t.Errorf("%s: %q allowed = %v", tc.name, tc.uri, got)
		}
	}
	if !native.IsNative() || web.IsNative() {
		t.Error("IsNative")
	}
}

// A client's policy follows its scopes, or its tier's claims.
func TestClientPolicy(t *testing.T) {
	c := &Client{ID: "c", Scopes: []string{"name"}}
	p := c.Policy()
	if !p.Allows(consent.ClaimName) || p.Allows(consent.ClaimAddress) || p.Allows(consent.ClaimVerifiedClaims) || len(p.AgeAlternatives) != 0 {
		t.Fatalf("policy %+v: not what the name scope grants", p)
	}
	tier := &Client{ID: "t", Scopes: []string{"name", "address"}, TierClaims: []string{consent.ClaimAddress}}
	if p := tier.Policy(); p.Allows(consent.ClaimName) || !p.Allows(consent.ClaimAddress) {
		t.Fatalf("tier policy %+v: scopes override the tier", p)
	}
	empty := &Client{ID: "t", Scopes: []string{"name"}, TierClaims: []string{}}
	if p := empty.Policy(); p.Allows(consent.ClaimName) {
		t.Fatalf("an empty tier grants %v", p.Claims)
	}
	if p := (&Client{ID: "v", VerifiedClaims: true, AgeAlternatives: true}).Policy(); !p.Allows(consent.ClaimVerifiedClaims) || len(p.AgeAlternatives) == 0 {
		t.Fatalf("policy %+v drops the client's flags", p)
	}
	if (&Client{ID: "id-only"}).Name() != "id-only" {
		t.Fatal("Name without a display name")
	}
}

func privateJWKS(t *testing.T) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k, KeyID: "k", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"d":`) {
		t.Fatal("fixture has no private part")
	}
	return b
}

func publicJWKS(t *testing.T) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A registered client acts only while the registry approves it; every
// refusal is ErrUnknown, and Refused tells a known client from a stranger.
func TestResolverRegistry(t *testing.T) {
	ctx := context.Background()
	reg, err := whitelist.New(whitelist.Options{Backend: whitelist.KVBackend(store.NewMemory(), store.ErrNotFound)})
	if err != nil {
		t.Fatal(err)
	}
	change := whitelist.Change{Actor: "test", Via: "test", Reason: "clients test"}
	added, err := reg.Add(ctx, whitelist.AddRequest{Metadata: whitelisttest.WebMetadata(t, "reg.example"), Tier: whitelist.TierStandard, Change: change})
	if err != nil {
		t.Fatal(err)
	}
	id := added.Client.ID
	r := newResolver(t, Options{Registry: reg})
	if !r.HasRegistry() {
		t.Fatal("HasRegistry")
	}

	_, err = r.Lookup(ctx, id)
	if !errors.Is(err, ErrUnknown) || !errors.Is(err, whitelist.ErrPending) || !Refused(err) {
		t.Fatalf("pending client: %v", err)
	}
	if _, err := r.Lookup(ctx, "no-such-client"); !errors.Is(err, ErrUnknown) || Refused(err) {
		t.Fatalf("unregistered client: %v", err)
	}

	if _, err := reg.Approve(ctx, id, change); err != nil {
		t.Fatal(err)
	}
	e, err := r.Lookup(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if e.Registry == nil || !e.Approved() || e.Client.Sector != "reg.example" || len(e.Keys) != 1 || e.Client.TierClaims == nil {
		t.Fatalf("entry %+v", e)
	}
	if again, _ := r.Lookup(ctx, id); again != e {
		t.Fatal("unchanged record converted again")
	}
	if !e.RedirectAllowed("https://reg.example/cb") || e.RedirectAllowed("https://reg.example/cb2") {
		t.Fatal("registered client's redirect rule")
	}
	if r.Subject(e.Client, "acct-1") != PairwiseSub(testPairwiseKey, "reg.example", "acct-1") {
		t.Fatal("registered client's sub is not its sector's")
	}

	if _, err := reg.Suspend(ctx, id, change); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Lookup(ctx, id); !errors.Is(err, ErrUnknown) || !errors.Is(err, whitelist.ErrSuspended) || !Refused(err) {
		t.Fatalf("suspended client: %v", err)
	}
	if _, err := reg.Revoke(ctx, id, change); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Display(ctx, id); !errors.Is(err, ErrUnknown) || !Refused(err) {
		t.Fatalf("revoked client displayed: %v", err)
	}
}
