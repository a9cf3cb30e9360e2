package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/watashi-id/watashi/idp/backup"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
)

func init() { subcommands = append(subcommands, newBackupCmd, newRestoreCmd) }

// backupReport is what both commands print.
type backupReport struct {
	File     string         `json:"file"`
	Bytes    int64          `json:"bytes,omitempty"`
	Created  time.Time      `json:"created"`
	FileKEK  string         `json:"file_kek"`
	Records  int            `json:"records"`
	Families map[string]int `json:"families"`
	// DataKEKs counts the data keys in the records by the KEK that wraps
	// them: each must be configured to read what is restored.
	DataKEKs map[string]int `json:"data_keks"`
	Attempts int            `json:"attempts,omitempty"`
	// Restore only.
	DryRun    bool           `json:"dry_run,omitempty"`
	Deleted   int            `json:"deleted,omitempty"`
	Restored  int            `json:"restored,omitempty"`
	Readable  map[string]int `json:"readable_by_kek,omitempty"`
	TookMilli int64          `json:"took_ms"`
}

func newBackupCmd() *cobra.Command {
	f := &keysFlags{}
	var out string
	var attempts int
	cmd := &cobra.Command{
		Use:   "backup --config FILE --out FILE",
		Short: "Write the durable records of the store to an encrypted backup file",
		Long: `backup copies every durable record of the configured store (accounts and
their data keys, certificate links and the link key, consents, relying-party
clients, initial access tokens, the registry's audit log, signing keys, and
any other record written without expiry) into one file, as they all stood
at one instant, while the servers keep running.

The records stay sealed as stored, and the file as a whole is encrypted and
authenticated with a key wrapped by the current KEK (secrets.kek_file): it
reveals nothing without that KEK, and names it. Keep the KEK apart from the
backups. Ephemeral records (sessions, codes, tokens, sign-ins in progress)
are not copied.

The snapshot is optimistic: it never blocks the servers, and when a durable
record changes while it reads, it starts again (--attempts times, waiting a
little longer each time). --out - writes to standard output and the report
to standard error; the first 32 MiB are held in memory so that a snapshot
can start again, beyond that the file streams and a change ends the backup
(what was streamed lacks its end, and restore refuses it).

Exit status: 0 success, 1 the records kept changing (nothing written: try
again at a quieter time), 2 usage, configuration or store failure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageErr("--out is required (a file, or - for standard output)")
			}
			if attempts < 1 {
				return usageErr("--attempts must be at least 1")
			}
			ctx := cmd.Context()
			kv, ring, err := f.openStore(ctx, cmd)
			if err != nil {
				return err
			}
			defer kv.Close()
			return runBackup(ctx, cmd, kv, ring, out, attempts, f.json)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "the backup file to create (never overwritten), or - for standard output")
	cmd.Flags().IntVar(&attempts, "attempts", 10, "snapshots to try before giving up while records keep changing")
	return cmd
}

// backupSink is where one attempt writes: a file it rewinds, or memory.
type backupSink interface {
	io.Writer
	reset() error
}

// streamSink holds the start of a backup in memory, so that a snapshot
// that has to start again can; past streamHold it streams, and a restart
// is no longer possible. A backup cut short lacks its last frame, and
// restore refuses it: what was streamed of a failed attempt is harmless.
type streamSink struct {
	w         io.Writer
	buf       bytes.Buffer
	streaming bool
	n         int64
}

// streamHold bounds what a backup to standard output holds in memory:
// it may run inside a serving pod, whose memory is the servers'. (A
// variable for the tests.)
var streamHold = 32 << 20

var errStreamed = errors.New("records changed after the backup had begun to stream; what was written lacks its end, and restore refuses it: run the backup again, or write it to a file")

func (s *streamSink) Write(p []byte) (int, error) {
	s.n += int64(len(p))
	if s.streaming {
		return s.w.Write(p)
	}
	s.buf.Write(p)
	if s.buf.Len() > streamHold {
		s.streaming = true
		if _, err := s.buf.WriteTo(s.w); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (s *streamSink) reset() error {
	if s.streaming {
		return errStreamed
	}
	s.buf.Reset()
	s.n = 0
	return nil
}

// flush writes what is still held.
func (s *streamSink) flush() error {
	_, err := s.buf.WriteTo(s.w)
	return err
}

type fileSink struct{ *os.File }

func (f fileSink) reset() error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

func runBackup(ctx context.Context, cmd *cobra.Command, kv store.KV, ring *seal.Ring, out string, attempts int, asJSON bool) error {
	start := time.Now()
	var sink backupSink
	var partial *os.File
	report := cmd.OutOrStdout()
	if out == "-" {
		sink, report = &streamSink{w: cmd.OutOrStdout()}, cmd.ErrOrStderr()
	} else {
		if _, err := os.Lstat(out); err == nil {
			return usageErr("%s exists: a backup never replaces a file", out)
		}
		// Beside the target, so that the final rename stays on one file
		// system; O_EXCL: a leftover of an interrupted run is not reused.
		var err error
		partial, err = os.OpenFile(out+".partial", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return usageErr("%v (a leftover of an interrupted backup may be removed)", err)
		}
		defer func() {
			if partial != nil {
				partial.Close()
				os.Remove(partial.Name())
			}
		}()
		sink = fileSink{partial}
	}

	var tr backup.Trailer
	var hdr time.Time
	done := 0
	for attempt := 1; attempt <= attempts; attempt++ {
		if err := sink.reset(); errors.Is(err, errStreamed) {
			return &exitError{code: exitRefused, err: err}
		} else if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		now := time.Now()
		w, err := backup.NewWriter(sink, ring, now)
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		err = kv.Snapshot(ctx, "", w.Add)
		if errors.Is(err, store.ErrSnapshotChanged) {
			fmt.Fprintf(cmd.ErrOrStderr(), "watashi: records changed while they were read (attempt %d of %d)\n", attempt, attempts)
			if attempt < attempts {
				select {
				case <-ctx.Done():
					return &exitError{code: exitUsage, err: ctx.Err()}
				case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
				}
			}
			continue
		}
		if err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("snapshot: %w", err)}
		}
		if tr, err = w.Close(); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		hdr, done = now, attempt
		break
	}
	if done == 0 {
		return &exitError{code: exitRefused, err: fmt.Errorf("the records kept changing during %d snapshots; nothing was written: try again when fewer residents sign up or consent", attempts)}
	}

	rep := &backupReport{File: out, Created: hdr.UTC().Truncate(time.Second), FileKEK: ring.CurrentID(), Records: tr.Records,
		Families: tr.Families, DataKEKs: tr.DataKEKs, Attempts: done}
	if m, ok := sink.(*streamSink); ok {
		rep.Bytes = m.n
		if err := m.flush(); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
	} else {
		if err := partial.Sync(); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		fi, err := partial.Stat()
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		rep.Bytes = fi.Size()
		if err := partial.Close(); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		// Link, not rename: a file that appeared at out meanwhile is
		// never replaced.
		if err := os.Link(partial.Name(), out); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		os.Remove(partial.Name())
		partial = nil
		syncDir(filepath.Dir(out))
	}
	rep.TookMilli = time.Since(start).Milliseconds()
	for id := range tr.DataKEKs {
		if !slices.Contains(ring.IDs(), id) {
			fmt.Fprintf(cmd.ErrOrStderr(), "watashi: warning: %d data keys in the store are wrapped by KEK %s, which is not configured here: they were unreadable already, and a restore needs that KEK to read them\n", tr.DataKEKs[id], id)
		}
	}
	printBackup(report, asJSON, rep)
	return nil
}

// syncDir makes a new directory entry durable; failing that is not worth
// failing a backup that is written and synced.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

func newRestoreCmd() *cobra.Command {
	f := &keysFlags{}
	var in string
	var force, dryRun bool
	var workers int
	cmd := &cobra.Command{
		Use:   "restore --config FILE --in FILE",
		Short: "Write the records of a backup file into the store",
		Long: `restore writes the records of a backup made by "watashi backup" into the
configured store (its prefix may differ from the one backed up).

Before it writes anything it reads the whole file: the KEK that opens it
must be configured (secrets.kek_file or previous_kek_files), every frame
must authenticate and the file must be whole, and every KEK that wraps a
data key inside must be configured too. It refuses a store that holds any
record under its prefix, unless --force: then every record under the prefix
that the backup does not have is deleted (sessions and tokens included),
and the backup's records replace the others, so that the store holds the
backup exactly. Durable writes wait for replicas as the servers' do.

Stop every server using the store first and start them afterwards: servers
cache the signing keys, the link key and the registry. --dry-run reads and
checks the file and the store and writes nothing.

Exit status: 0 success, 1 the file or the target was refused (damaged,
truncated, another format version, a KEK missing, a non-empty store) or the
restored data keys do not open, 2 usage, configuration or store failure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" {
				return usageErr("--in is required (a file, or - for standard input)")
			}
			if workers < 1 || workers > 64 {
				return usageErr("--workers must be between 1 and 64")
			}
			ctx := cmd.Context()
			kv, ring, err := f.openStore(ctx, cmd)
			if err != nil {
				return err
			}
			defer kv.Close()
			var src io.ReadSeeker
			if in == "-" {
				b, err := io.ReadAll(cmd.InOrStdin())
				if err != nil {
					return usageErr("standard input: %v", err)
				}
				src = bytes.NewReader(b)
			} else {
				// One descriptor for both passes: a file renamed over the
				// path meanwhile is not the one restored.
				file, err := os.Open(in)
				if err != nil {
					return usageErr("%v", err)
				}
				defer file.Close()
				src = file
			}
			return runRestore(ctx, cmd, kv, ring, src, in, restoreOptions{force: force, dryRun: dryRun, workers: workers, json: f.json})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&in, "in", "", "the backup file, or - for standard input")
	cmd.Flags().BoolVar(&force, "force", false, "replace whatever the store holds under its prefix")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check the file and the store, write nothing")
	cmd.Flags().IntVar(&workers, "workers", 8, "records written at once")
	return cmd
}

type restoreOptions struct {
	force, dryRun, json bool
	workers             int
}

// restoreRefused is a file or target that restore will not take (status 1).
func restoreRefused(format string, args ...any) error {
	return &exitError{code: exitRefused, err: fmt.Errorf(format, args...)}
}

func runRestore(ctx context.Context, cmd *cobra.Command, kv store.KV, ring *seal.Ring, src io.ReadSeeker, name string, o restoreOptions) error {
	start := time.Now()
	// Pass 1: the whole file, checked, before anything is written.
	r, err := openBackup(src, ring)
	if err != nil {
		return err
	}
	// The backup's keys, for what --force deletes: only then are they
	// worth their memory.
	keys := map[string]struct{}{}
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return restoreRefused("%s: %v", name, err)
		}
		if o.force {
			keys[rec.Key] = struct{}{}
		}
	}
	tr, _ := r.Trailer()
	h := r.Header()
	var missing []string
	for id := range tr.DataKEKs {
		if !slices.Contains(ring.IDs(), id) {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return restoreRefused("%s: data keys inside are wrapped by KEK %v, which is not configured: add its file to secrets.previous_kek_files", name, missing)
	}

	// The target: empty, or --force.
	var extra []string
	nonEmpty := errors.New("non-empty")
	err = kv.Scan(ctx, "", func(k string) error {
		if !o.force {
			return nonEmpty
		}
		if _, ok := keys[k]; !ok {
			extra = append(extra, k)
		}
		return nil
	})
	if errors.Is(err, nonEmpty) {
		return restoreRefused("the store already holds records under its prefix: restore into an empty store, or pass --force to replace them")
	}
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("scan the store: %w", err)}
	}
	rep := &backupReport{File: name, Created: h.Created, FileKEK: h.FileKEK, Records: tr.Records, Families: tr.Families,
		DataKEKs: tr.DataKEKs, DryRun: o.dryRun, Deleted: len(extra)}
	if o.dryRun {
		rep.TookMilli = time.Since(start).Milliseconds()
		printBackup(cmd.OutOrStdout(), o.json, rep)
		return nil
	}

	for batch := range slices.Chunk(extra, 100) {
		if err := kv.Delete(ctx, batch...); err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("delete what the backup does not have: %w", err)}
		}
	}
	// Pass 2: the same file again, each frame authenticated again.
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	r2, err := openBackup(src, ring)
	if err != nil {
		return err
	}
	if !bytes.Equal(r2.Header().FileID, h.FileID) {
		return &exitError{code: exitUsage, err: errors.New("the backup file changed between its two readings")}
	}
	n, err := restoreRecords(ctx, kv, r2, o.workers)
	rep.Restored = n
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("restored %d of %d records, then: %w; run restore --force again", n, tr.Records, err)}
	}
	// What the servers will do first: open every data key with the ring.
	census, err := rewrapAll(ctx, kv, ring, true)
	if err != nil {
		return restoreRefused("restored, but the data keys do not all open with the configured KEKs: %v", err)
	}
	rep.Readable = census.ByKEK
	rep.TookMilli = time.Since(start).Milliseconds()
	printBackup(cmd.OutOrStdout(), o.json, rep)
	fmt.Fprintln(cmd.ErrOrStderr(), "watashi: restored; start (or restart) every server using this store now")
	return nil
}

// openBackup opens a backup for reading, mapping its errors to refusals.
func openBackup(src io.Reader, ring *seal.Ring) (*backup.Reader, error) {
	r, err := backup.NewReader(src, ring)
	if errors.Is(err, backup.ErrUnknownKEK) {
		return nil, restoreRefused("%v: add that KEK's file to secrets.previous_kek_files", err)
	}
	if err != nil {
		return nil, restoreRefused("%v", err)
	}
	return r, nil
}

// restoreRecords writes the records with workers writers: records are
// independent, and each is written whole (a log with its entries in
// order) by one Restore. A write not confirmed by replicas in time is
// tried again: Restore replaces, so a repeat is harmless.
func restoreRecords(ctx context.Context, kv store.KV, r *backup.Reader, workers int) (int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	recs := make(chan store.Record)
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for range workers {
		wg.Go(func() {
			for rec := range recs {
				var err error
				for try := 0; try < 3; try++ {
					if err = kv.Restore(ctx, rec); !errors.Is(err, store.ErrNotReplicated) {
						break
					}
				}
				if err != nil {
					cancel(fmt.Errorf("a record of family %q: %w", store.Family(rec.Key), err))
					return
				}
				mu.Lock()
				n++
				mu.Unlock()
			}
		})
	}
	var readErr error
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		select {
		case recs <- rec:
			continue
		case <-ctx.Done():
		}
		break
	}
	close(recs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return n, err
	}
	if readErr != nil {
		return n, readErr
	}
	return n, ctx.Err()
}

func printBackup(w io.Writer, asJSON bool, rep *backupReport) {
	if rep.Families == nil {
		rep.Families = map[string]int{}
	}
	if rep.DataKEKs == nil {
		rep.DataKEKs = map[string]int{}
	}
	if asJSON {
		writeJSON(w, rep)
		return
	}
	fmt.Fprintf(w, "file: %s", rep.File)
	if rep.Bytes > 0 {
		fmt.Fprintf(w, " (%d bytes)", rep.Bytes)
	}
	fmt.Fprintf(w, "\ntaken: %s, opened by KEK %s\n", rep.Created.Format(time.RFC3339), rep.FileKEK)
	switch {
	case rep.DryRun:
		fmt.Fprintf(w, "dry run: %d records would be restored, %d records of the store deleted\n", rep.Records, rep.Deleted)
	case rep.Restored > 0 || rep.Readable != nil:
		fmt.Fprintf(w, "restored: %d records; deleted: %d\n", rep.Restored, rep.Deleted)
	default:
		fmt.Fprintf(w, "records: %d (snapshot attempts: %d)\n", rep.Records, rep.Attempts)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FAMILY\tRECORDS")
	for _, f := range slices.Sorted(maps.Keys(rep.Families)) {
		fmt.Fprintf(tw, "%s\t%d\n", f, rep.Families[f])
	}
	fmt.Fprintln(tw, "DATA KEYS UNDER KEK\tCOUNT")
	for _, id := range slices.Sorted(maps.Keys(rep.DataKEKs)) {
		fmt.Fprintf(tw, "%s\t%d\n", id, rep.DataKEKs[id])
	}
	tw.Flush()
}
