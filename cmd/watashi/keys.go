package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/watashi-id/watashi/idp/config"
	"github.com/watashi-id/watashi/idp/keys"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
)

func init() { subcommands = append(subcommands, newKeysCmd) }

// keysTimeout bounds one keys command: a rotation waits at most ~35 s for
// another node's key lock.
const keysTimeout = time.Minute

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "List and rotate the ID token signing keys",
		Long: `The keys commands act on the signing keys held in the configured store,
which every node of the deployment shares.

Each algorithm (ES256, RS256) has a next key (published, not yet signing),
a current key (signing) and a previous key (published, so that tokens it
signed still verify). "rotate" moves every algorithm one step:
previous <- current <- next <- a new key. Running servers notice within
seconds (pub/sub), at the latest within 30 s.

Exit status: 0 success, 2 usage, configuration or store failure.`,
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageErr("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
	cmd.AddCommand(newKeysListCmd(), newKeysRotateCmd())
	return cmd
}

type keysFlags struct {
	config string
	dev    bool
	json   bool
}

func (f *keysFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.config, "config", "", "configuration file (YAML) naming the store")
	cmd.Flags().BoolVar(&f.dev, "dev", false, "accept a development configuration")
	cmd.Flags().BoolVar(&f.json, "json", false, "print JSON instead of a table")
}

// openStore builds the configured store and the KEK ring that opens its
// sealed records. A memory store is refused: its keys exist only inside
// the server process that made them.
func (f *keysFlags) openStore(ctx context.Context, cmd *cobra.Command) (store.KV, *seal.Ring, error) {
	return openSealedStore(ctx, cmd, f.config, f.dev)
}

// openSealedStore is what every command on the stored records needs:
// the store alone (building the whole provider would load anchors and
// fetch relying parties' sector documents for nothing) and the KEKs.
func openSealedStore(ctx context.Context, cmd *cobra.Command, cfgPath string, dev bool) (store.KV, *seal.Ring, error) {
	if cfgPath == "" {
		return nil, nil, usageErr("--config is required")
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, nil, usageErr("%v", err)
	}
	cfg.SetLogOutput(cmd.ErrOrStderr())
	kv, err := cfg.OpenStore(ctx, dev)
	if err != nil {
		return nil, nil, usageErr("%v", err)
	}
	if !kv.Durable() {
		kv.Close()
		return nil, nil, usageErr("the configured store is memory: its records exist only inside a running server")
	}
	if err := kv.Ping(ctx); err != nil {
		kv.Close()
		return nil, nil, usageErr("store unreachable: %v", err)
	}
	ring, err := cfg.RequireKEK(dev)
	if err != nil {
		kv.Close()
		return nil, nil, usageErr("%v", err)
	}
	return kv, ring, nil
}

func newKeysListCmd() *cobra.Command {
	f := &keysFlags{}
	cmd := &cobra.Command{
		Use:   "list --config FILE",
		Short: "List the signing keys (never their private parts)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), keysTimeout)
			defer cancel()
			kv, ring, err := f.openStore(ctx, cmd)
			if err != nil {
				return err
			}
			defer kv.Close()
			m, err := keys.New(kv, keys.Options{KEK: ring})
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			list, err := m.List(ctx)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			printKeys(cmd, f.json, list, nil)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func newKeysRotateCmd() *cobra.Command {
	f := &keysFlags{}
	cmd := &cobra.Command{
		Use:   "rotate --config FILE",
		Short: "Rotate every algorithm's signing keys now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), keysTimeout)
			defer cancel()
			kv, ring, err := f.openStore(ctx, cmd)
			if err != nil {
				return err
			}
			defer kv.Close()
			m, err := keys.New(kv, keys.Options{KEK: ring})
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if _, err := m.Rotate(ctx); err != nil {
				return &exitError{code: exitUsage, err: fmt.Errorf("rotation failed: %w", err)}
			}
			list, err := m.List(ctx)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			rotated := true
			printKeys(cmd, f.json, list, &rotated)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func printKeys(cmd *cobra.Command, asJSON bool, list []keys.Info, rotated *bool) {
	if list == nil {
		list = []keys.Info{}
	}
	if asJSON {
		out := map[string]any{"keys": list}
		if rotated != nil {
			out["rotated"] = *rotated
		}
		writeJSON(cmd.OutOrStdout(), out)
		return
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ALG\tSTATE\tKID\tCREATED\tACTIVATED")
	for _, k := range list {
		act := "-"
		if !k.Activated.IsZero() {
			act = k.Activated.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", k.Alg, k.State, k.KID, k.Created.UTC().Format(time.RFC3339), act)
	}
	w.Flush()
}
