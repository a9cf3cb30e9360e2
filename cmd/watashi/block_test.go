package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/whitelist"
)

// The kill switch from the command line against a real Redis, with a
// "server" node's block list (with Run, as the provider holds one)
// watching the same store.
func TestBlockCommands(t *testing.T) {
	addr := storetest.StartRedis(t)
	cfg := clientConfig(t, addr, "blk:")
	base := []string{"--config", cfg, "--dev"}
	args := func(a ...string) []string { return append(a, base...) }

	kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: "blk:"})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	node, err := whitelist.NewBlocklist(whitelist.BlocklistOptions{Backend: whitelist.KVBackend(kv, store.ErrNotFound)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = node.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for !node.Live() {
		time.Sleep(time.Millisecond)
	}
	if blocked, err := node.LabelBlocked(ctx, "JPKIAPGPSETOKEN"); err != nil || blocked {
		t.Fatal(blocked, err)
	}

	out := runJSON(t, args("block", "label", "JPKIAPGPSETOKEN", "--json", "--actor", "alice", "--reason", "applet CVE")...)
	if blk := out["block"].(map[string]any); blk["kind"] != "label" || blk["value"] != "JPKIAPGPSETOKEN" || blk["actor"] != "alice" || blk["via"] != "cli" {
		t.Fatalf("block: %v", out)
	}
	start := time.Now()
	for {
		if blocked, _ := node.LabelBlocked(ctx, "JPKIAPGPSETOKEN"); blocked {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("the server node did not see the block within 1 s")
		}
		time.Sleep(time.Millisecond)
	}
	if code, o, e := runKeys(t, args("block", "aaguid", "CB69481E-8FF7-4039-93EC-0A2729A154A8")...); code != 0 || !strings.Contains(o, "aaguid\tcb69481e-8ff7-4039-93ec-0a2729a154a8\tblocked") {
		t.Fatalf("block aaguid: %d %q %q", code, o, e)
	}
	if code, _, e := runKeys(t, args("block", "client", "rp.example")...); code != 0 {
		t.Fatalf("block client: %d %q", code, e)
	}

	// Bad input: the right exit status, a clear message, nothing changed.
	for _, bad := range []struct {
		args []string
		code int
		msg  string
	}{
		{args("block", "model", "X"), 2, "unknown kind"},
		{args("block", "aaguid", "cb69481e8ff7403993ec0a2729a154a8"), 2, "UUID"},
		{args("block", "label", ""), 2, "label is required"},
		{args("block", "label", "jpkiapgpsetoken"), 2, "capital letters"},
		{args("block", "label"), 2, "needs a kind"},
		{args("block", "label", "A", "B"), 2, "needs a kind"},
		{args("block", "label", "JPKIAPGPSETOKEN"), 1, "already blocked"},
		{args("block", "label", "JPKIAPIOSTOKEN", "--actor", "a\nb"), 2, "actor"},
		{args("unblock", "label", "JPKIAPIOSTOKEN"), 1, "not blocked"},
		{args("unblock", "model", "X"), 2, "unknown kind"},
		{[]string{"block", "label", "JPKIAPIOSTOKEN"}, 2, "--config is required"},
	} {
		code, o, e := runKeys(t, bad.args...)
		if code != bad.code || !strings.Contains(e, bad.msg) {
			t.Errorf("%v: exit %d, %q %q; want %d and %q", bad.args, code, o, e, bad.code, bad.msg)
		}
	}
	list := runJSON(t, args("block", "list", "--json")...)
	if bs := list["blocks"].([]any); len(bs) != 3 {
		t.Fatalf("list after refusals: %v", list)
	}
	hist := runJSON(t, args("block", "history", "--json")...)
	if hs := hist["history"].([]any); len(hs) != 3 {
		t.Fatalf("history after refusals: %v", hist)
	}
	if code, o, _ := runKeys(t, args("block", "list")...); code != 0 || !strings.Contains(o, "label   JPKIAPGPSETOKEN") || !strings.Contains(o, "applet CVE") {
		t.Fatalf("list table: %q", o)
	}

	if code, o, e := runKeys(t, args("unblock", "label", "JPKIAPGPSETOKEN", "--reason", "patched")...); code != 0 || !strings.Contains(o, "unblocked") {
		t.Fatalf("unblock: %d %q %q", code, o, e)
	}
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		if blocked, _ := node.LabelBlocked(ctx, "JPKIAPGPSETOKEN"); !blocked {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("the server node kept the lifted block for 1 s")
		}
	}
	code, o, _ := runKeys(t, args("block", "history")...)
	if code != 0 || !strings.Contains(o, "unblock  label JPKIAPGPSETOKEN") || !strings.Contains(o, "patched") {
		t.Fatalf("history table: %q", o)
	}
}
