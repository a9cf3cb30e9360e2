package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/watashi-id/watashi/idp/config"
	"github.com/watashi-id/watashi/whitelist"
)

func init() { subcommands = append(subcommands, newBlockCmd, newUnblockCmd) }

const blockLong = `The kill switch. A block takes effect on every running server within a
second and stays until "watashi unblock":

  label   a JPKI token label as the wallet reports it: JPKIAPICCTOKEN2 (the
          card), JPKIAPGPSETOKEN (an Android phone), JPKIAPIOSTOKEN (an iPhone).
          New sign-ins with it are refused. The label is the wallet's own
          report, so a block stops honest wallets of that kind, not a forged one.
  aaguid  a passkey authenticator model (8-4-4-4-12 hex). Sign-ins and new
          registrations with it are refused.
  client  a relying party, static or registered: every endpoint refuses it.

Every block and unblock goes into the block list's audit log with --actor
(default $USER) and --reason; "watashi block history" shows it.

Exit status: 0 done, 1 refused (already blocked, not blocked, list full),
2 usage (unknown kind, malformed value), configuration or store failure.`

// withBlocklist runs fn with the block list of the configured store.
func (f *clientFlags) withBlocklist(cmd *cobra.Command, fn func(ctx context.Context, l *whitelist.Blocklist) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), clientTimeout)
	defer cancel()
	if f.config == "" {
		return usageErr("--config is required")
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		return usageErr("%v", err)
	}
	cfg.SetLogOutput(cmd.ErrOrStderr())
	if cfg.Store.Type != "redis" {
		return usageErr("the configured store is memory: a block would exist only inside this command; configure redis")
	}
	kv, err := cfg.OpenStore(ctx, f.dev)
	if err != nil {
		return usageErr("%v", err)
	}
	defer kv.Close()
	l, err := cfg.NewBlocklist(kv, cfg.NewLogger(cmd.ErrOrStderr()))
	if err != nil {
		return usageErr("%v", err)
	}
	return fn(ctx, l)
}

func blockRefusal(err error) error {
	switch {
	case errors.Is(err, whitelist.ErrAlreadyBlocked), errors.Is(err, whitelist.ErrNotBlocked), errors.Is(err, whitelist.ErrTooManyBlocks):
		return &exitError{code: exitRefused, err: err}
	}
	return refusal(err)
}

func kindAndValue(cmd *cobra.Command, args []string) error {
	if len(args) != 2 {
		return usageErr("%s needs a kind (label, aaguid or client) and a value", cmd.CommandPath())
	}
	// Checked before the store is opened: bad input changes nothing and
	// needs no configuration to be told.
	if _, _, err := whitelist.ParseBlock(args[0], args[1]); err != nil {
		return refusal(err)
	}
	return nil
}

func newBlockCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "block --config FILE (label|aaguid|client) VALUE [--reason TEXT] [--actor NAME]",
		Short: "Block a JPKI token label, a passkey model or a client on every node at once",
		Long:  blockLong,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			return kindAndValue(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return f.withBlocklist(cmd, func(ctx context.Context, l *whitelist.Blocklist) error {
				blk, err := l.Add(ctx, args[0], args[1], f.change())
				if blk == nil {
					return blockRefusal(err)
				}
				out := map[string]any{"block": blk}
				partial(cmd, err, out)
				if f.json {
					writeJSON(cmd.OutOrStdout(), out)
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\tblocked\n", blk.Kind, blk.Value)
				return nil
			})
		},
	}
	f.register(cmd, true)
	cmd.AddCommand(newBlockListCmd(), newBlockHistoryCmd())
	return cmd
}

func newUnblockCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "unblock --config FILE (label|aaguid|client) VALUE [--reason TEXT] [--actor NAME]",
		Short: "Lift a block on every node at once",
		Args:  kindAndValue,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withBlocklist(cmd, func(ctx context.Context, l *whitelist.Blocklist) error {
				k, v, _ := whitelist.ParseBlock(args[0], args[1])
				err := l.Remove(ctx, args[0], args[1], f.change())
				if err != nil && !errors.Is(err, whitelist.ErrPartial) {
					return blockRefusal(err)
				}
				out := map[string]any{"unblocked": map[string]string{"kind": string(k), "value": v}}
				partial(cmd, err, out)
				if f.json {
					writeJSON(cmd.OutOrStdout(), out)
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\tunblocked\n", k, v)
				return nil
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

func newBlockListCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "list --config FILE",
		Short: "Show what is blocked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withBlocklist(cmd, func(ctx context.Context, l *whitelist.Blocklist) error {
				bs, err := l.List(ctx)
				if err != nil {
					return blockRefusal(err)
				}
				if f.json {
					writeJSON(cmd.OutOrStdout(), map[string]any{"blocks": bs})
					return nil
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "KIND\tVALUE\tSINCE\tACTOR\tVIA\tREASON")
				for _, b := range bs {
					since := "-"
					if !b.At.IsZero() {
						since = b.At.UTC().Format(time.RFC3339)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Kind, b.Value, since, cell(b.Actor), cell(b.Via), cell(b.Reason))
				}
				return w.Flush()
			})
		},
	}
	f.register(cmd, false)
	return cmd
}

func newBlockHistoryCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "history --config FILE",
		Short: "Show the block list's audit log",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withBlocklist(cmd, func(ctx context.Context, l *whitelist.Blocklist) error {
				evs, err := l.History(ctx)
				if err != nil {
					return blockRefusal(err)
				}
				if evs == nil {
					evs = []whitelist.AuditEvent{}
				}
				if f.json {
					writeJSON(cmd.OutOrStdout(), map[string]any{"history": evs})
					return nil
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "TIME\tACTION\tBLOCK\tACTOR\tVIA\tREASON")
				for _, e := range evs {
					kind, value, _ := strings.Cut(e.Block, ":")
					fmt.Fprintf(w, "%s\t%s\t%s %s\t%s\t%s\t%s\n", e.At.UTC().Format(time.RFC3339), e.Action, kind, value,
						cell(e.Actor), cell(e.Via), cell(e.Reason))
				}
				return w.Flush()
			})
		},
	}
	f.register(cmd, false)
	return cmd
}
