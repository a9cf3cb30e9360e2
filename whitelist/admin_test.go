package whitelist_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/watashi-id/watashi/whitelist"
)

type adminEnv struct {
	t     *testing.T
	r     *whitelist.Registry
	srv   *httptest.Server
	token string
}

func newAdminEnv(t *testing.T) *adminEnv {
	r := newNode(t, memoryBackend(t))
	token, line := whitelist.NewAdminToken()
	file := filepath.Join(t.TempDir(), "admin.hash")
	if err := os.WriteFile(file, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := r.AdminHandler(whitelist.AdminOptions{TokenHashFile: file, Prefix: "/whitelist"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &adminEnv{t: t, r: r, srv: srv, token: token}
}

func (a *adminEnv) call(method, path, token string, body any) (int, map[string]any) {
	a.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, a.srv.URL+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		a.t.Fatalf("%s %s: response is not JSON: %v", method, path, err)
	}
	return res.StatusCode, out
}

func TestAdminHandlerOptions(t *testing.T) {
	r := newNode(t, memoryBackend(t))
	if _, err := r.AdminHandler(whitelist.AdminOptions{}); !errors.Is(err, whitelist.ErrAdminDisabled) {
		t.Fatalf("no token: %v", err)
	}
	for _, bad := range []string{"plain-token", "sha256:abcd", strings.Repeat("g", 64)} {
		if _, err := r.AdminHandler(whitelist.AdminOptions{TokenHash: bad}); err == nil {
			t.Errorf("hash %q accepted", bad)
		}
	}
	if _, err := r.AdminHandler(whitelist.AdminOptions{TokenHashFile: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestAdminAPI(t *testing.T) {
	a := newAdminEnv(t)
	ctx := context.Background()

	for _, tc := range []struct{ name, token string }{{"none", ""}, {"wrong", a.token + "x"}, {"hash itself", "sha256:x"}} {
		if code, out := a.call("GET", "/whitelist/clients", tc.token, nil); code != 401 || out["error"] != "unauthorized" {
			t.Errorf("%s token: %d %v", tc.name, code, out)
		}
	}

	meta := webMeta(t, "admin.example")
	meta["token_endpoint_auth_method"] = "client_secret_basic"
	delete(meta, "jwks")
	code, out := a.call("POST", "/whitelist/clients", a.token, map[string]any{
		"metadata": meta, "tier": "basic", "actor": "alice", "reason": "ticket 7"})
	if code != 201 || out["client_secret"] == "" {
		t.Fatalf("add: %d %v", code, out)
	}
	client := out["client"].(map[string]any)
	id := client["client_id"].(string)
	if _, ok := client["secret_hash"]; ok {
		t.Fatal("admin API shows the secret hash")
	}

	steps := []struct {
		method, path string
		body         any
		want         int
		status       string
	}{
		{"POST", "/whitelist/clients/" + id + "/suspend", nil, 409, ""}, // pending cannot be suspended
		{"POST", "/whitelist/clients/" + id + "/approve", map[string]any{"actor": "alice", "reason": "ok"}, 200, "approved"},
		{"POST", "/whitelist/clients/" + id + "/suspend", map[string]any{"reason": "incident"}, 200, "suspended"},
		{"POST", "/whitelist/clients/" + id + "/resume", nil, 200, "approved"},
		{"POST", "/whitelist/clients/" + id + "/explode", nil, 404, ""},
		{"POST", "/whitelist/clients/nobody/approve", nil, 404, ""},
		{"POST", "/whitelist/clients/" + id + "/approve", map[string]any{"unknown_field": 1}, 400, ""},
	}
	for _, s := range steps {
		code, out := a.call(s.method, s.path, a.token, s.body)
		if code != s.want {
			t.Fatalf("%s %s: %d %v, want %d", s.method, s.path, code, out, s.want)
		}
		if s.status != "" && out["client"].(map[string]any)["status"] != s.status {
			t.Fatalf("%s: status %v", s.path, out["client"])
		}
	}
	code, out = a.call("POST", "/whitelist/clients/"+id+"/rotate-secret", a.token, nil)
	if code != 200 || out["client_secret"] == "" {
		t.Fatalf("rotate: %d %v", code, out)
	}
	c, err := a.r.Authorize(ctx, id)
	if err != nil || !c.VerifySecret(out["client_secret"].(string)) {
		t.Fatalf("rotated secret: %v", err)
	}
	code, out = a.call("GET", "/whitelist/clients/"+id+"/history", a.token, nil)
	hist, _ := out["history"].([]any)
	if code != 200 || len(hist) != 5 {
		t.Fatalf("history: %d %v", code, out)
	}
	first := hist[0].(map[string]any)
	if first["actor"] != "alice" || first["via"] != "admin-api" || first["reason"] != "ticket 7" {
		t.Fatalf("audit entry %v", first)
	}
	if h := hist[2].(map[string]any); h["actor"] != "admin-api" || h["reason"] != "incident" {
		t.Fatalf("default actor: %v", h)
	}

	code, out = a.call("POST", "/whitelist/tokens", a.token, map[string]any{"tier": "standard", "ttl": "48h", "one_time": true})
	if code != 201 || !strings.HasPrefix(out["initial_access_token"].(string), "iat_") {
		t.Fatalf("issue token: %d %v", code, out)
	}
	tokID := out["token"].(map[string]any)["id"].(string)
	if _, ok := out["token"].(map[string]any)["hash"]; ok && out["token"].(map[string]any)["hash"] != "" {
		t.Fatal("token hash shown")
	}
	for _, bad := range []map[string]any{{"tier": "gold"}, {"tier": "basic", "ttl": "forever"}, {"tier": "basic", "ttl": "100000h"}} {
		if code, out := a.call("POST", "/whitelist/tokens", a.token, bad); code != 400 {
			t.Errorf("issue %v: %d %v", bad, code, out)
		}
	}
	code, out = a.call("GET", "/whitelist/tokens", a.token, nil)
	if toks, _ := out["tokens"].([]any); code != 200 || len(toks) != 1 || toks[0].(map[string]any)["state"] != "active" {
		t.Fatalf("list tokens: %d %v", code, out)
	}
	if code, out := a.call("DELETE", "/whitelist/tokens/"+tokID, a.token, nil); code != 200 || out["state"] != "revoked" {
		t.Fatalf("revoke token: %d %v", code, out)
	}
	if code, _ := a.call("DELETE", "/whitelist/tokens/"+tokID, a.token, nil); code != 409 {
		t.Fatalf("revoke twice: %d", code)
	}
	if code, out := a.call("GET", "/whitelist/tiers", a.token, nil); code != 200 || len(out["tiers"].([]any)) != 3 {
		t.Fatalf("tiers: %d %v", code, out)
	}
	if code, _ := a.call("POST", "/whitelist/clients", a.token, map[string]any{"metadata": map[string]any{"client_name": "x"}, "tier": "basic"}); code != 400 {
		t.Fatalf("invalid metadata: %d", code)
	}
	if code, out := a.call("DELETE", "/whitelist/clients/"+id+"?actor=bob&reason=gone", a.token, nil); code != 200 {
		t.Fatalf("delete: %d %v", code, out)
	}
	if _, err := a.r.Authorize(ctx, id); !errors.Is(err, whitelist.ErrUnknownClient) {
		t.Fatalf("deleted: %v", err)
	}
	h, _ := a.r.History(ctx, id)
	if last := h[len(h)-1]; last.Actor != "bob" || last.Reason != "gone" {
		t.Fatalf("delete audit %+v", last)
	}
	if code, _ := a.call("GET", "/elsewhere/clients", a.token, nil); code != 404 {
		t.Fatalf("outside prefix: %d", code)
	}
}

func TestAdminBlocks(t *testing.T) {
	b := memoryBackend(t)
	r := newNode(t, b)
	l := newBlocklist(t, b, whitelist.BlocklistOptions{})
	token, line := whitelist.NewAdminToken()
	h, err := r.AdminHandler(whitelist.AdminOptions{TokenHash: line, Prefix: "/whitelist", Blocks: l})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	a := &adminEnv{t: t, r: r, srv: srv, token: token}
	ctx := context.Background()

	if code, out := a.call("POST", "/whitelist/blocks", "", map[string]any{"kind": "label", "value": "JPKIAPGPSETOKEN"}); code != 401 {
		t.Fatalf("unauthenticated block: %d %v", code, out)
	}
	code, out := a.call("POST", "/whitelist/blocks", a.token, map[string]any{"kind": "aaguid", "value": strings.ToUpper(aaguidYubiKey), "actor": "alice", "reason": "CVE"})
	if code != 201 {
		t.Fatalf("block: %d %v", code, out)
	}
	if blk := out["block"].(map[string]any); blk["value"] != aaguidYubiKey || blk["actor"] != "alice" || blk["via"] != "admin-api" {
		t.Fatalf("block record %v", blk)
	}
	if code, out := a.call("POST", "/whitelist/blocks", a.token, map[string]any{"kind": "label", "value": "JPKIAPGPSETOKEN"}); code != 201 {
		t.Fatalf("block label: %d %v", code, out)
	}

	// Bad input: a clear error and nothing changed.
	for _, bad := range []struct {
		method, path string
		body         any
		want         int
		msg          string
	}{
		{"POST", "/whitelist/blocks", map[string]any{"kind": "model", "value": "x"}, 400, "unknown kind"},
		{"POST", "/whitelist/blocks", map[string]any{"kind": "aaguid", "value": "cb69481e8ff7"}, 400, "UUID"},
		{"POST", "/whitelist/blocks", map[string]any{"kind": "label", "value": ""}, 400, "label is required"},
		{"POST", "/whitelist/blocks", map[string]any{"kind": "label"}, 400, "label is required"},
		{"POST", "/whitelist/blocks", map[string]any{"kind": "label", "value": "JPKIAPGPSETOKEN"}, 409, "already blocked"},
		{"POST", "/whitelist/blocks", map[string]any{"kind": "label", "value": "X", "extra": 1}, 400, "expected JSON"},
		{"POST", "/whitelist/blocks", map[string]any{"kind": "label", "value": "X", "actor": "a\nb"}, 400, "actor"},
		{"DELETE", "/whitelist/blocks/label/JPKIAPIOSTOKEN", nil, 404, "not blocked"},
		{"DELETE", "/whitelist/blocks/model/x", nil, 400, "unknown kind"},
		{"DELETE", "/whitelist/blocks/aaguid/nope", nil, 400, "UUID"},
		{"DELETE", "/whitelist/blocks/label", nil, 404, "no such admin route"},
		{"PUT", "/whitelist/blocks", nil, 404, "no such admin route"},
	} {
		code, out := a.call(bad.method, bad.path, a.token, bad.body)
		if code != bad.want || !strings.Contains(fmt.Sprint(out["error_description"]), bad.msg) {
			t.Errorf("%s %s %v: %d %v; want %d %q", bad.method, bad.path, bad.body, code, out, bad.want, bad.msg)
		}
	}
	if code, out := a.call("GET", "/whitelist/blocks/history", a.token, nil); code != 200 || len(out["history"].([]any)) != 2 {
		t.Fatalf("history after refusals: %d %v", code, out)
	}
	code, out = a.call("GET", "/whitelist/blocks", a.token, nil)
	if bs, _ := out["blocks"].([]any); code != 200 || len(bs) != 2 {
		t.Fatalf("list: %d %v", code, out)
	}
	if blocked, _ := l.LabelBlocked(ctx, "JPKIAPGPSETOKEN"); !blocked {
		t.Fatal("label not blocked")
	}

	if code, out := a.call("DELETE", "/whitelist/blocks/label/JPKIAPGPSETOKEN?reason=fixed", a.token, nil); code != 200 {
		t.Fatalf("unblock: %d %v", code, out)
	}
	if blocked, _ := l.LabelBlocked(ctx, "JPKIAPGPSETOKEN"); blocked {
		t.Fatal("label still blocked")
	}
	_, out = a.call("GET", "/whitelist/blocks/history", a.token, nil)
	hist := out["history"].([]any)
	last := hist[len(hist)-1].(map[string]any)
	if last["action"] != "unblock" || last["block"] != "label:JPKIAPGPSETOKEN" || last["via"] != "admin-api" || last["reason"] != "fixed" {
		t.Fatalf("audit entry %v", last)
	}

	// A server without a block list says so.
	h2, _ := r.AdminHandler(whitelist.AdminOptions{TokenHash: line})
	srv2 := httptest.NewServer(h2)
	t.Cleanup(srv2.Close)
	a2 := &adminEnv{t: t, r: r, srv: srv2, token: token}
	if code, out := a2.call("GET", "/blocks", a.token, nil); code != 404 || !strings.Contains(fmt.Sprint(out["error_description"]), "not configured") {
		t.Fatalf("no block list: %d %v", code, out)
	}
}
