package idp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

func TestPairwiseSub(t *testing.T) {
	k1 := []byte("0123456789abcdef0123456789abcdef")
	k2 := []byte("fedcba9876543210fedcba9876543210")
	a := pairwiseSub(k1, "rp.example", "acct-1")
	if a != pairwiseSub(k1, "rp.example", "acct-1") {
		t.Fatal("not stable")
	}
	for name, other := range map[string]string{
		"other sector":  pairwiseSub(k1, "rp2.example", "acct-1"),
		"other account": pairwiseSub(k1, "rp.example", "acct-2"),
		"other key":     pairwiseSub(k2, "rp.example", "acct-1"),
		// The separator keeps sector and account apart.
		"shifted boundary": pairwiseSub(k1, "rp.exampleacct-", "1"),
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.client.ID = "c1"
			got, err := ResolveSector(context.Background(), &tc.client, tlsSrv.Client(), tc.dev)
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
// derived, rather than hand out per-host subjects.
func TestLoadClientsSector(t *testing.T) {
	fixtures(t)
	tests := []struct {
		name string
		c    *Client
		ok   bool
	}{
		{"two hosts", &Client{ID: "x", AuthMethod: authNone, RedirectURIs: []string{"https://a.example/cb", "https://b.example/cb"}}, false},
		{"explicit sector kept", &Client{ID: "x", AuthMethod: authNone, RedirectURIs: []string{"https://a.example/cb", "https://b.example/cb"}, Sector: "a.example"}, true},
		{"bad method", &Client{ID: "x", AuthMethod: "client_secret_post", RedirectURIs: []string{"https://a.example/cb"}}, false},
		{"bad secret hash", &Client{ID: "x", AuthMethod: authSecretBasic, SecretHash: "sha256:abc", RedirectURIs: []string{"https://a.example/cb"}}, false},
		{"pk without JWKS", &Client{ID: "x", AuthMethod: authPrivateKeyJWT, RedirectURIs: []string{"https://a.example/cb"}}, false},
		{"pk with private JWKS", &Client{ID: "x", AuthMethod: authPrivateKeyJWT, JWKS: privateJWKS(t), RedirectURIs: []string{"https://a.example/cb"}}, false},
		{"bad alg", &Client{ID: "x", AuthMethod: authNone, IDTokenAlg: "HS256", RedirectURIs: []string{"https://a.example/cb"}}, false},
		{"colon in id", &Client{ID: "x:y", AuthMethod: authNone, RedirectURIs: []string{"https://a.example/cb"}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{opts: Options{Clients: []*Client{tc.c}}}
			_, err := s.loadClients(context.Background())
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v", err)
			}
		})
	}
	s := &Server{opts: Options{Clients: []*Client{{ID: "x", AuthMethod: authNone, RedirectURIs: []string{"https://a.example/cb"}}, {ID: "x", AuthMethod: authNone, RedirectURIs: []string{"https://a.example/cb"}}}}}
	if _, err := s.loadClients(context.Background()); err == nil {
		t.Fatal("duplicate client accepted")
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
