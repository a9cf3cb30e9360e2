package logref

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func logLine(t *testing.T, key []byte, f func(l *slog.Logger)) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	var h slog.Handler = slog.NewJSONHandler(&buf, nil)
	if key != nil {
		h = Wrap(h, key)
	}
	f(slog.New(h))
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if strings.Contains(buf.String(), "acct-123") || strings.Contains(buf.String(), "1004") {
		t.Fatalf("raw identifier logged: %s", buf.String())
	}
	return m
}

func TestReferences(t *testing.T) {
	k1, k2 := Key([]byte("deployment one cookie key 0123456789")), Key([]byte("deployment two cookie key 0123456789"))
	line := func(key []byte) map[string]any {
		return logLine(t, key, func(l *slog.Logger) {
			l.Info("facts marked stale", Account("acct-123"), Cert("1004"), "client", "web")
		})
	}
	a, b, other := line(k1), line(k1), line(k2)
	ref, _ := a["account_ref"].(string)
	if len(ref) != 11 || a["cert_ref"] == nil || a["client"] != "web" {
		t.Fatalf("line %v", a)
	}
	if a["account_ref"] != b["account_ref"] || a["cert_ref"] != b["cert_ref"] {
		t.Fatal("one deployment gives one value two references")
	}
	if a["account_ref"] == other["account_ref"] || a["cert_ref"] == other["cert_ref"] {
		t.Fatal("two deployments give one value the same reference")
	}
	if a["account_ref"] == a["cert_ref"] {
		t.Fatal("kinds share a reference space")
	}
	// A logger without the handler never prints the value.
	if m := line(nil); m["account_ref"] != "redacted" || m["cert_ref"] != "redacted" {
		t.Fatalf("unwrapped logger: %v", m)
	}
}

// References survive With, groups and nested groups.
func TestReferencesInGroupsAndWith(t *testing.T) {
	k := Key([]byte("cookie key 0123456789 0123456789"))
	plain := logLine(t, k, func(l *slog.Logger) { l.Info("x", Account("acct-123")) })["account_ref"]
	m := logLine(t, k, func(l *slog.Logger) {
		l.With(Account("acct-123")).WithGroup("g").Info("x", slog.Group("inner", Cert("1004"), "n", 1))
	})
	if m["account_ref"] != plain {
		t.Fatalf("With: %v", m)
	}
	g, _ := m["g"].(map[string]any)
	inner, _ := g["inner"].(map[string]any)
	if c, _ := inner["cert_ref"].(string); len(c) != 11 || inner["n"] != float64(1) {
		t.Fatalf("group: %v", m)
	}
	// Lines without references pass through unchanged.
	if m := logLine(t, k, func(l *slog.Logger) { l.Info("x", "a", 1) }); m["a"] != float64(1) {
		t.Fatalf("%v", m)
	}
}
