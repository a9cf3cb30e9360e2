package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/config"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/pkibridge"
)

// storeConfig writes a dev config on a real Redis deployment: one
// address, a Sentinel master name with the sentinels' addresses, or a
// Cluster's seeds. Replicated topologies get the HA tests' room for a
// loaded machine.
func storeConfig(t *testing.T, addrs []string, masterName, prefix string, keks ...string) string {
	t.Helper()
	extra := ""
	if masterName != "" {
		extra += "\n    master_name: " + masterName
	}
	if masterName != "" || len(addrs) > 1 {
		extra += "\n    timeout: 5s\n    wait_timeout: 2s"
	}
	prev := ""
	if len(keks) > 1 {
		prev = "\n  previous_kek_files: [" + strings.Join(keks[1:], ", ") + "]"
	}
	return writeConfig(t, `issuer: http://127.0.0.1:8080
dev: true
store:
  type: redis
  redis:
    addrs: ["`+strings.Join(addrs, `", "`)+`"]
    prefix: "`+prefix+`"`+extra+`
secrets:
  kek_file: `+keks[0]+prev+`
pki:
  revocation:
    mode: "off"
`)
}

// resident is what populate made for one person.
type resident struct {
	id, name string
}

// populated is a store with a record of every durable family.
type populated struct {
	residents []resident
	client    string
}

// Facts a backup must never show in the clear.
const (
	birthdate = "1980-12-31"
	address   = "東京都千代田区霞が関一丁目1番1号"
)

// populate fills the store of cfg the way the servers and the operator
// do: two residents proved (accounts, data keys, certificate links, the
// link key), a consent each, the signing keys, a relying party added and
// approved (the registry's records and audit log) and an initial access
// token; plus an ephemeral record, which a backup leaves out.
func populate(t *testing.T, cfg string) populated {
	t.Helper()
	ctx := context.Background()
	accounts, kv := openAccounts(t, cfg)
	grants := consent.NewStore(kv, store.ErrNotFound)
	var p populated
	for _, name := range []string{"山田\u3000太郎", "佐藤\u3000花子"} {
		sig := &pkibridge.Result{Kind: pkibridge.KindSignature, Leaf: mustCert(t),
			Attributes: &pkibridge.Attributes{Name: name, Birthdate: birthdate, Address: address, Gender: "female"}}
		auth := &pkibridge.Result{Kind: pkibridge.KindAuthentication, Leaf: mustCert(t)}
		id, _, err := accounts.Proof(ctx, sig, auth, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := grants.Consent(ctx, id, "web", consent.Requested{}, false, consent.Choice{}, time.Now()); err != nil {
			t.Fatal(err)
		}
		p.residents = append(p.residents, resident{id, name})
	}
	base := []string{"--config", cfg, "--dev", "--json"}
	runJSON(t, append([]string{"keys", "rotate"}, base...)...)
	out := runJSON(t, append([]string{"client", "add", "--tier", "basic", "--name", "Example RP", "--org", "Example KK",
		"--redirect-uri", "https://rp.example/cb", "--auth-method", "client_secret_basic", "--actor", "alice", "--reason", "ticket 1"}, base...)...)
	p.client = out["client"].(map[string]any)["client_id"].(string)
	runJSON(t, append([]string{"client", "approve", p.client, "--actor", "alice", "--reason", "contract signed"}, base...)...)
	runJSON(t, append([]string{"client", "token", "issue", "--tier", "basic", "--note", "for Example KK"}, base...)...)
	if err := kv.Set(ctx, "sess:ephemeral", []byte("a session"), time.Hour); err != nil {
		t.Fatal(err)
	}
	return p
}

// durableFamilies are the families of durable records Watashi writes
// today; a backup of a populated store holds each.
var durableFamilies = []string{"acct", "acctkey", "accts", "link", "linkkey", "consent", "consents", "key", "keys", "wl"}

func openStore(t *testing.T, cfg string) (store.KV, *seal.Ring) {
	t.Helper()
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := c.OpenStore(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	ring, err := c.RequireKEK(true)
	if err != nil {
		t.Fatal(err)
	}
	return kv, ring
}

// records is a store's durable records, sorted.
func records(t *testing.T, kv store.KV) []store.Record {
	t.Helper()
	var out []store.Record
	for attempt := 0; ; attempt++ {
		out = out[:0]
		err := kv.Snapshot(context.Background(), "", func(r store.Record) error { out = append(out, r); return nil })
		if errors.Is(err, store.ErrSnapshotChanged) && attempt < 5 {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		storetest.SortRecords(out)
		return out
	}
}

// runCmd runs a command line and returns its status and output; stdin
// feeds a restore from standard input.
func runCmd(t *testing.T, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	root := newRootCmd()
	root.SetIn(bytes.NewReader(stdin))
	var out, errb bytes.Buffer
	code := execute(root, args, &out, &errb)
	return code, out.String(), errb.String()
}

func decodeReport(t *testing.T, s string) backupReport {
	t.Helper()
	var r backupReport
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		t.Fatalf("not a report: %v\n%s", err, s)
	}
	return r
}

// roundTrip backs up a populated store and restores it under another
// prefix of the same deployment, then checks that the copy is the
// original: every durable record byte for byte (stream IDs included),
// nothing ephemeral, and the copy works: the accounts open with the KEK,
// the keys, consents, clients and audit log read the same.
func roundTrip(t *testing.T, addrs []string, masterName string) (src, dst string, p populated, file string) {
	t.Helper()
	dir := t.TempDir()
	kek, _ := opensslRand(t, dir, "kek.key")
	src = storeConfig(t, addrs, masterName, "live:", kek)
	dst = storeConfig(t, addrs, masterName, "copy:", kek)
	p = populate(t, src)

	file = filepath.Join(dir, "watashi.wbk")
	code, out, errs := runKeys(t, "backup", "--config", src, "--dev", "--out", file, "--json")
	if code != 0 {
		t.Fatalf("backup: %d\n%s\n%s", code, out, errs)
	}
	rep := decodeReport(t, out)
	for _, f := range durableFamilies {
		if rep.Families[f] == 0 {
			t.Errorf("the backup holds no %s record: %v", f, rep.Families)
		}
	}
	if rep.Families["sess"] != 0 {
		t.Error("the backup holds an ephemeral record")
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != rep.Bytes {
		t.Fatalf("backup file: %v, %v (report says %d bytes)", fi, err, rep.Bytes)
	}
	if _, err := os.Stat(file + ".partial"); !os.IsNotExist(err) {
		t.Errorf("the partial file is left: %v", err)
	}
	// Every data key is counted under its KEK, as `kek status` counts the
	// store's.
	code, status, _ := runKEK(t, "kek", "status", "--config", src, "--dev", "--json")
	if code != 0 || !mapsEqual(status.ByKEK, rep.DataKEKs) {
		t.Errorf("backup counts data keys %v, kek status %v", rep.DataKEKs, status.ByKEK)
	}

	code, out, errs = runKeys(t, "restore", "--config", dst, "--dev", "--in", file, "--json")
	if code != 0 {
		t.Fatalf("restore: %d\n%s\n%s", code, out, errs)
	}
	if r := decodeReport(t, out); r.Restored != rep.Records || !mapsEqual(r.Readable, rep.DataKEKs) {
		t.Errorf("restore report %+v, backup %+v", r, rep)
	}
	srcKV, _ := openStore(t, src)
	dstKV, _ := openStore(t, dst)
	want, got := records(t, srcKV), records(t, dstKV)
	for i := range want {
		if want[i].Key == "sess:ephemeral" {
			t.Fatal("a snapshot holds an ephemeral record")
		}
	}
	if !storetest.EqualRecords(got, want) {
		t.Fatalf("the copy holds %d records, the original %d, and they differ", len(got), len(want))
	}
	if _, err := dstKV.Get(context.Background(), "sess:ephemeral"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an ephemeral record was restored: %v", err)
	}

	accounts, _ := openAccounts(t, dst)
	for _, r := range p.residents {
		a, err := accounts.Get(context.Background(), r.id)
		if err != nil || a.Facts == nil || a.Facts.Name != r.name || a.Facts.Address != address {
			t.Errorf("restored account %s: %+v, %v", r.id, a, err)
		}
		if gs, err := consent.NewStore(dstKV, store.ErrNotFound).List(context.Background(), r.id); err != nil || len(gs) != 1 {
			t.Errorf("restored consents of %s: %v, %v", r.id, gs, err)
		}
	}
	for _, args := range [][]string{{"keys", "list"}, {"client", "history", p.client}, {"client", "list"}, {"client", "token", "list"}} {
		_, a, _ := runKeys(t, append(args, "--config", src, "--dev", "--json")...)
		_, b, _ := runKeys(t, append(args, "--config", dst, "--dev", "--json")...)
		if a != b || len(a) < 10 {
			t.Errorf("%v differs between the original and the copy:\n%s\n%s", args, a, b)
		}
	}
	return src, dst, p, file
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestBackupRestore(t *testing.T) {
	addr := storetest.StartRedis(t)
	src, dst, p, file := roundTrip(t, []string{addr}, "")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("NothingReadable", func(t *testing.T) {
		// No fact, no identifier, no key name: nothing of a resident or
		// a relying party is in the clear, in any usual encoding.
		secrets := []string{birthdate, address, "1980", "Example RP", "Example KK", "rp.example", p.client, "acct:", "consent:", "wl:", "alice", "ticket 1"}
		for _, r := range p.residents {
			secrets = append(secrets, r.id, r.name, strings.Fields(strings.ReplaceAll(r.name, "\u3000", " "))[0])
		}
		for _, s := range secrets {
			for _, enc := range []string{s, hexOf(s), b64Of(s)} {
				if len(enc) >= 4 && bytes.Contains(data, []byte(enc)) {
					t.Errorf("the backup holds %q in the clear (as %q)", s, enc)
				}
			}
		}
	})

	t.Run("StandardOutputAndInput", func(t *testing.T) {
		code, out, errs := runCmd(t, nil, "backup", "--config", src, "--dev", "--out", "-", "--json")
		if code != 0 || !strings.Contains(errs, `"records"`) {
			t.Fatalf("backup to stdout: %d %s", code, errs)
		}
		third := storeConfig(t, []string{addr}, "", "stdin:", kekOf(t, src))
		code, _, errs = runCmd(t, []byte(out), "restore", "--config", third, "--dev", "--in", "-")
		if code != 0 {
			t.Fatalf("restore from stdin: %d %s", code, errs)
		}
		a, _ := openStore(t, src)
		b, _ := openStore(t, third)
		if !storetest.EqualRecords(records(t, a), records(t, b)) {
			t.Fatal("the copy through stdout and stdin differs")
		}
	})

	t.Run("TargetMustBeEmpty", func(t *testing.T) {
		dstKV, _ := openStore(t, dst)
		before := records(t, dstKV)
		code, _, errs := runKeys(t, "restore", "--config", dst, "--dev", "--in", file)
		if code != 1 || !strings.Contains(errs, "--force") {
			t.Fatalf("restore over a store in use: %d %s", code, errs)
		}
		// A store with an ephemeral record only is in use too.
		onlySession := storeConfig(t, []string{addr}, "", "sessions-only:", kekOf(t, src))
		sKV, _ := openStore(t, onlySession)
		if err := sKV.Set(context.Background(), "sess:x", []byte("x"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if code, _, _ := runKeys(t, "restore", "--config", onlySession, "--dev", "--in", file); code != 1 {
			t.Fatalf("restore over a store with a session: %d", code)
		}
		// --dry-run says what --force would do, and does nothing.
		ctx := context.Background()
		if err := dstKV.Set(ctx, "acct:stray", []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
		if err := dstKV.Set(ctx, "sess:stray", []byte("x"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := dstKV.Delete(ctx, "keys"); err != nil {
			t.Fatal(err)
		}
		code, out, errs := runKeys(t, "restore", "--config", dst, "--dev", "--in", file, "--force", "--dry-run", "--json")
		if r := decodeReport(t, out); code != 0 || !r.DryRun || r.Deleted != 2 || r.Restored != 0 {
			t.Fatalf("dry run: %d %+v %s", code, r, errs)
		}
		if _, err := dstKV.Get(ctx, "acct:stray"); err != nil {
			t.Fatal("the dry run deleted a record")
		}
		// --force: the store holds the backup exactly.
		code, out, errs = runKeys(t, "restore", "--config", dst, "--dev", "--in", file, "--force", "--json")
		if r := decodeReport(t, out); code != 0 || r.Deleted != 2 {
			t.Fatalf("forced restore: %d %+v %s", code, r, errs)
		}
		if !storetest.EqualRecords(records(t, dstKV), before) {
			t.Fatal("after a forced restore the store is not the backup")
		}
		if _, err := dstKV.Get(ctx, "sess:stray"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a forced restore kept an ephemeral record: %v", err)
		}
	})

	t.Run("NeverOverwrites", func(t *testing.T) {
		code, _, errs := runKeys(t, "backup", "--config", src, "--dev", "--out", file)
		if code != 2 || !strings.Contains(errs, "exists") {
			t.Fatalf("backup over an existing file: %d %s", code, errs)
		}
		if got, _ := os.ReadFile(file); !bytes.Equal(got, data) {
			t.Fatal("the existing file changed")
		}
	})
}

// A restore refuses, before writing anything, a file that is not whole
// and intact, that needs a KEK the configuration lacks, or that is of
// another format version.
func TestRestoreRefuses(t *testing.T) {
	addr := storetest.StartRedis(t)
	dir := t.TempDir()
	kekOld, _ := opensslRand(t, dir, "old.key")
	kekNew, _ := opensslRand(t, dir, "new.key")
	// Accounts under the old KEK, then every node moves to the new one
	// (the old still configured): the backup is opened by the new KEK
	// and holds data keys of both.
	src := storeConfig(t, []string{addr}, "", "src:", kekOld)
	populate(t, src)
	rotating := storeConfig(t, []string{addr}, "", "src:", kekNew, kekOld)
	accounts, _ := openAccounts(t, rotating)
	if err := accounts.Put(context.Background(), &account.Account{ID: "acct-new", Facts: &pkibridge.Attributes{Name: "新\u3000一郎"}}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "b.wbk")
	if code, out, errs := runKeys(t, "backup", "--config", rotating, "--dev", "--out", file); code != 0 {
		t.Fatalf("backup: %d %s %s", code, out, errs)
	}
	good, _ := os.ReadFile(file)
	idOf := func(kek string) string {
		_, ring := openStore(t, storeConfig(t, []string{addr}, "", "ids:", kek))
		return ring.CurrentID()
	}

	variant := func(name string, mutate func([]byte) []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, mutate(bytes.Clone(good)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mid := len(good) / 2
	for _, tc := range []struct {
		name, file string
		keks       []string
		want       string
	}{
		{"tampered", variant("tampered", func(b []byte) []byte { b[mid] ^= 1; return b }), []string{kekNew, kekOld}, "damaged or was altered"},
		{"truncated", variant("truncated", func(b []byte) []byte { return b[:mid] }), []string{kekNew, kekOld}, "truncated"},
		{"a byte appended", variant("appended", func(b []byte) []byte { return append(b, 0) }), []string{kekNew, kekOld}, "damaged"},
		{"version 2", variant("v2", func(b []byte) []byte { b[8] = 2; return b }), []string{kekNew, kekOld}, "version 2"},
		{"not a backup", variant("text", func([]byte) []byte { return []byte("appendonly yes\n") }), []string{kekNew, kekOld}, "not a watashi backup"},
		{"the file's KEK missing", file, []string{kekOld}, "KEK " + idOf(kekNew)},
		{"a data key's KEK missing", file, []string{kekNew}, idOf(kekOld)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := storeConfig(t, []string{addr}, "", "dst-"+strings.ReplaceAll(tc.name, " ", "-")+":", tc.keks...)
			code, out, errs := runKeys(t, "restore", "--config", dst, "--dev", "--in", tc.file)
			if code != 1 || !strings.Contains(errs, tc.want) {
				t.Fatalf("restore: %d, want 1 and %q\n%s%s", code, tc.want, out, errs)
			}
			kv, _ := openStore(t, dst)
			n := 0
			if err := kv.Scan(context.Background(), "", func(string) error { n++; return nil }); err != nil || n != 0 {
				t.Fatalf("the refused restore wrote %d records (%v)", n, err)
			}
		})
	}
	for _, args := range [][]string{
		{"restore", "--dev"},
		{"restore", "--config", src, "--dev"},
		{"restore", "--config", src, "--dev", "--in", filepath.Join(dir, "none.wbk")},
		{"restore", "--config", src, "--dev", "--in", file, "--workers", "0"},
		{"backup", "--config", src, "--dev"},
		{"backup", "--config", src, "--dev", "--out", filepath.Join(dir, "x"), "--attempts", "0"},
		{"backup", "--config", src, "--dev", "--out", filepath.Join(dir, "no-such-dir", "x")},
	} {
		if code, _, _ := runKeys(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// writers stands for servers writing durable records while a backup
// reads: its Snapshot writes one in the middle of the first few
// snapshots, through the real store, whose change tracking must notice.
type writers struct {
	store.KV
	busy int
}

func (w *writers) Snapshot(ctx context.Context, prefix string, fn func(store.Record) error) error {
	first := true
	return w.KV.Snapshot(ctx, prefix, func(r store.Record) error {
		if first && w.busy > 0 {
			first = false
			w.busy--
			if err := w.KV.Set(ctx, "consent:new:web", fmt.Appendf(nil, "%d", w.busy), 0); err != nil {
				return err
			}
		}
		return fn(r)
	})
}

func TestBackupRetriesWhileRecordsChange(t *testing.T) {
	addr := storetest.StartRedis(t)
	dir := t.TempDir()
	kek, _ := opensslRand(t, dir, "kek.key")
	cfg := storeConfig(t, []string{addr}, "", "busy:", kek)
	populate(t, cfg)
	kv, ring := openStore(t, cfg)

	run := func(busy, attempts int, out string) (int, string, string) {
		cmd := &cobra.Command{}
		var stdout, stderr bytes.Buffer
		cmd.SetOut(&stdout)
		cmd.SetErr(&stderr)
		err := runBackup(context.Background(), cmd, &writers{KV: kv, busy: busy}, ring, out, attempts, true)
		code := 0
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
			fmt.Fprintln(&stderr, ee.err)
		} else if err != nil {
			code = -1
		}
		return code, stdout.String(), stderr.String()
	}
	ok := filepath.Join(dir, "ok.wbk")
	code, out, errs := run(2, 3, ok)
	if code != 0 || decodeReport(t, out).Attempts != 3 || strings.Count(errs, "records changed") != 2 {
		t.Fatalf("busy twice, three attempts: %d %s %s", code, out, errs)
	}
	// The backup is of the state after the last change.
	dst := storeConfig(t, []string{addr}, "", "busy-copy:", kek)
	if code, _, errs := runKeys(t, "restore", "--config", dst, "--dev", "--in", ok); code != 0 {
		t.Fatalf("restore: %s", errs)
	}
	dstKV, _ := openStore(t, dst)
	if !storetest.EqualRecords(records(t, dstKV), records(t, kv)) {
		t.Fatal("the backup is not the state after the writes")
	}

	// To standard output: a change once the file has begun to stream ends
	// the backup, and what was streamed does not restore.
	defer func(h int) { streamHold = h }(streamHold)
	streamHold = 16 // the header alone starts the stream
	code, out, errs = run(1, 3, "-")
	if code != 1 || !strings.Contains(errs, "begun to stream") || len(out) <= streamHold {
		t.Fatalf("a change while streaming: %d, %d bytes out, %s", code, len(out), errs)
	}
	cut := storeConfig(t, []string{addr}, "", "busy-cut:", kek)
	if code, _, errs := runCmd(t, []byte(out), "restore", "--config", cut, "--dev", "--in", "-"); code != 1 || !strings.Contains(errs, "truncated") {
		t.Fatalf("restore of a cut stream: %d %s", code, errs)
	}
	code, out, errs = run(0, 3, "-")
	if code != 0 || !strings.HasPrefix(out, "WTSH-BKP") {
		t.Fatalf("streamed backup: %d %s", code, errs)
	}
	if code, _, errs := runCmd(t, []byte(out), "restore", "--config", cut, "--dev", "--in", "-"); code != 0 {
		t.Fatalf("restore of a streamed backup: %d %s", code, errs)
	}

	gaveUp := filepath.Join(dir, "gave-up.wbk")
	code, _, errs = run(5, 2, gaveUp)
	if code != 1 || !strings.Contains(errs, "kept changing") {
		t.Fatalf("busy throughout: %d %s", code, errs)
	}
	for _, f := range []string{gaveUp, gaveUp + ".partial"} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s is left: %v", f, err)
		}
	}
}

func TestBackupRestoreSentinel(t *testing.T) {
	s := storetest.StartSentinel(t, 2, 3)
	_, dst, _, _ := roundTrip(t, s.SentinelAddrs, s.MasterName)
	// Each restored record waited for a replica: it is on one already.
	kv, _ := openStore(t, dst)
	master, err := s.MasterAddr(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	onReplicas(t, kv, "copy:", func() []*storetest.Node {
		var out []*storetest.Node
		for _, n := range s.Data {
			if n.Addr != master {
				out = append(out, n)
			}
		}
		return out
	}())
}

func TestBackupRestoreCluster(t *testing.T) {
	c := storetest.StartCluster(t, 3, 1)
	_, dst, _, _ := roundTrip(t, c.Addrs(), "")
	kv, _ := openStore(t, dst)
	masters, _ := c.Masters(t)
	var replicas []*storetest.Node
	for _, n := range c.Nodes {
		if !slices.Contains(masters, n) {
			replicas = append(replicas, n)
		}
	}
	onReplicas(t, kv, "copy:", replicas)
}

// onReplicas checks that every durable record of kv is on at least one
// of the replicas, read there directly.
func onReplicas(t *testing.T, kv store.KV, prefix string, replicas []*storetest.Node) {
	t.Helper()
	ctx := context.Background()
	recs := records(t, kv)
	if len(recs) == 0 || len(replicas) == 0 {
		t.Fatalf("%d records, %d replicas", len(recs), len(replicas))
	}
	for _, r := range recs {
		found := false
		for _, n := range replicas {
			conn := n.Client().Conn()
			// A Cluster replica answers reads of its master's slots once
			// told READONLY; a Sentinel replica answers anyway.
			_ = conn.ReadOnly(ctx).Err()
			got, err := conn.Exists(ctx, prefix+r.Key).Result()
			conn.Close()
			if err == nil && got == 1 {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("restored record of family %s is on no replica", store.Family(r.Key))
		}
	}
}

func readFileString(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// kekOf is the KEK file a config written by storeConfig names.
func kekOf(t *testing.T, cfg string) string {
	t.Helper()
	s := readFileString(t, cfg)
	return strings.SplitN(strings.SplitN(s, "kek_file: ", 2)[1], "\n", 2)[0]
}

func hexOf(s string) string { return fmt.Sprintf("%x", s) }

func b64Of(s string) string {
	b, _ := json.Marshal([]byte(s))
	return strings.Trim(string(b), `"=`)
}
