package idp

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/idp/store"
)

var update = flag.Bool("update", false, "rewrite golden files")

// The discovery document is pinned: any change to what we advertise must
// show up as a diff of testdata/discovery.golden.json.
func TestDiscoveryGolden(t *testing.T) {
	kv := store.NewMemory()
	seedKeys(t, kv)
	o := testOptions(kv, "https://id.example.jp")
	o.Dev = false
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://id.example.jp"+oidc.DiscoveryEndpoint, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var got bytes.Buffer
	if err := json.Indent(&got, rec.Body.Bytes(), "", "  "); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	golden := filepath.Join("testdata", "discovery.golden.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("discovery document differs from %s (run with -update after checking):\n%s", golden, got.String())
	}
	// Independently of the golden file, the properties the issue demands.
	var d map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &d)
	for k, v := range map[string]string{
		"response_types_supported":         `["code"]`,
		"subject_types_supported":          `["pairwise"]`,
		"code_challenge_methods_supported": `["S256"]`,
		"grant_types_supported":            `["authorization_code","refresh_token"]`,
		// RFC 9207: every authorization response carries iss.
		"authorization_response_iss_parameter_supported": `true`,
		// RFC 8414 §2: introspection answers authenticated clients only.
		"introspection_endpoint_auth_methods_supported": `["private_key_jwt","client_secret_basic"]`,
		"revocation_endpoint_auth_methods_supported":    `["private_key_jwt","client_secret_basic","none"]`,
	} {
		if b, _ := json.Marshal(d[k]); string(b) != v {
			t.Errorf("%s = %s, want %s", k, b, v)
		}
	}
}
