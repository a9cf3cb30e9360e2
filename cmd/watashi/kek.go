package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/keys"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
)

func init() { subcommands = append(subcommands, newKEKCmd) }

func newKEKCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kek",
		Short: "Inspect and rotate the key-encryption key",
		Long: `The store keeps residents' facts and the private signing keys encrypted, each
account and each signing key under a data key of its own. The data keys are
wrapped by the key-encryption key (KEK) of secrets.kek_file, which never
enters the store.

Rotating the KEK (docs/operator-guide.md, "Encryption at rest"):
  1. Make a new KEK file (openssl rand -hex 32).
  2. On every node, set secrets.kek_file to the new file and list the old one
     in secrets.previous_kek_files; restart the nodes. They now wrap with the
     new KEK and still read with the old.
  3. Run "watashi kek rotate": it re-wraps every data key with the new KEK.
  4. When "watashi kek status" shows nothing under the old KEK, remove it
     from previous_kek_files on every node. Keep the old file only as long
     as you need to restore backups taken before step 3.

Exit status: 0 success, 1 rotation incomplete (data keys remain under
another KEK: a node still has the old configuration), 2 usage,
configuration or store failure.`,
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageErr("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
	cmd.AddCommand(newKEKRunCmd("status", "Count the data keys by the KEK that wraps them", true),
		newKEKRunCmd("rotate", "Re-wrap every data key with the current KEK", false))
	return cmd
}

// kekReport is the output of both commands.
type kekReport struct {
	Current string `json:"current_kek"`
	// KEKs lists every configured KEK, current first.
	KEKs []string `json:"configured_keks"`
	// ByKEK counts the data keys by the KEK that wrapped them before the
	// command ran.
	ByKEK     map[string]int `json:"by_kek"`
	Rewrapped int            `json:"rewrapped"`
	// Remaining counts the data keys not under the current KEK after the
	// command ran.
	Remaining int `json:"remaining"`
}

func newKEKRunCmd(name, short string, dryRun bool) *cobra.Command {
	f := &keysFlags{}
	cmd := &cobra.Command{
		Use:   name + " --config FILE",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// No deadline of its own: a store of many accounts takes a
			// while, and each store command has its own timeout.
			ctx := cmd.Context()
			kv, ring, err := f.openStore(ctx, cmd)
			if err != nil {
				return err
			}
			defer kv.Close()
			rep, err := rewrapAll(ctx, kv, ring, dryRun)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if !dryRun {
				after, err := rewrapAll(ctx, kv, ring, true)
				if err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				rep.Remaining = after.Remaining
			}
			printKEK(cmd, f.json, rep)
			if rep.Remaining > 0 && !dryRun {
				return &exitError{code: exitRefused, err: fmt.Errorf("%d data keys are still wrapped by another KEK: a node still wraps with it; update every node's configuration and run again", rep.Remaining)}
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

// rewrapAll re-wraps (or with dryRun only counts) the data keys of the
// accounts and of the signing keys.
func rewrapAll(ctx context.Context, kv store.KV, ring *seal.Ring, dryRun bool) (*kekReport, error) {
	accounts, err := account.New(kv, account.Options{KEK: ring})
	if err != nil {
		return nil, err
	}
	signing, err := keys.New(kv, keys.Options{KEK: ring})
	if err != nil {
		return nil, err
	}
	var total seal.Census
	c, err := accounts.Rewrap(ctx, dryRun)
	total.Add(c)
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	c, err = signing.Rewrap(ctx, dryRun)
	total.Add(c)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	rep := &kekReport{Current: ring.CurrentID(), KEKs: ring.IDs(), ByKEK: total.ByKEK, Rewrapped: total.Rewrapped}
	if rep.ByKEK == nil {
		rep.ByKEK = map[string]int{}
	}
	for id, n := range rep.ByKEK {
		if id != rep.Current {
			rep.Remaining += n
		}
	}
	if !dryRun {
		rep.Remaining -= rep.Rewrapped
	}
	return rep, nil
}

func printKEK(cmd *cobra.Command, asJSON bool, rep *kekReport) {
	if asJSON {
		writeJSON(cmd.OutOrStdout(), rep)
		return
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KEK\tROLE\tDATA KEYS")
	role := func(id string) string {
		switch i := slices.Index(rep.KEKs, id); {
		case i == 0:
			return "current"
		case i > 0:
			return "previous"
		}
		return "not configured"
	}
	ids := slices.Sorted(maps.Keys(rep.ByKEK))
	for _, id := range rep.KEKs {
		if _, ok := rep.ByKEK[id]; !ok {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		fmt.Fprintf(w, "%s\t%s\t%d\n", id, role(id), rep.ByKEK[id])
	}
	w.Flush()
	fmt.Fprintf(cmd.OutOrStdout(), "rewrapped: %d, remaining under other KEKs: %d\n", rep.Rewrapped, rep.Remaining)
}
