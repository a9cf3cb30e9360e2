package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/store"
)

func init() { subcommands = append(subcommands, newAccountCmd) }

// accountTimeout bounds one account command.
const accountTimeout = time.Minute

func newAccountCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "account",
		Short: "Act on residents' accounts",
		Long: `The account commands act on the accounts held in the configured store.

Exit status: 0 success, 1 no such account, 2 usage, configuration or store
failure.`,
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageErr("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
	cmd.AddCommand(newAccountDeleteCmd())
	return cmd
}

func newAccountDeleteCmd() *cobra.Command {
	f := &keysFlags{}
	var id string
	cmd := &cobra.Command{
		Use:   "delete --config FILE --id ACCOUNT_ID",
		Short: "Delete an account for good (its data key is destroyed)",
		Long: `delete destroys the account's data key, which makes its facts unreadable in
every copy of its record, then removes the record, the links of its
certificates and its consents. The resident may prove their identity again
later and gets a new account, with new pairwise subjects.

The account ID is found from a relying party's pairwise sub through the
store (docs/operator-guide.md, "Deleting an account").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if id == "" {
				return usageErr("--id is required")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), accountTimeout)
			defer cancel()
			kv, ring, err := f.openStore(ctx, cmd)
			if err != nil {
				return err
			}
			defer kv.Close()
			accounts, err := account.New(kv, account.Options{KEK: ring})
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			err = accounts.Delete(ctx, id)
			found := !errors.Is(err, account.ErrNotFound)
			if err != nil && found {
				return &exitError{code: exitUsage, err: fmt.Errorf("delete: %w", err)}
			}
			// Consents go either way: an account whose deletion stopped
			// half-way may have left them.
			grants, err := consent.NewStore(kv, store.ErrNotFound).DeleteAccount(ctx, id)
			if err != nil {
				return &exitError{code: exitUsage, err: fmt.Errorf("delete consents: %w", err)}
			}
			out := map[string]any{"account": id, "deleted": found, "consents_deleted": len(grants)}
			if f.json {
				writeJSON(cmd.OutOrStdout(), out)
			} else if found {
				fmt.Fprintf(cmd.OutOrStdout(), "account %s deleted (%d consents)\n", id, len(grants))
			}
			if !found {
				return &exitError{code: exitRefused, err: fmt.Errorf("no account %q", id), quiet: f.json}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&id, "id", "", "the account ID")
	return cmd
}
