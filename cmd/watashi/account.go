package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/config"
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
	cmd.AddCommand(newAccountDeleteCmd(), newAccountFindCmd())
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

The account ID is found from a relying party's pairwise sub with
'watashi account find' (docs/operator-guide.md, "Deleting an account").`,
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

// maxSubject bounds the --sub value: a pairwise sub is 43 characters.
const maxSubject = 256

func newAccountFindCmd() *cobra.Command {
	f := &keysFlags{}
	var clientID, sub string
	cmd := &cobra.Command{
		Use:   "find --config FILE --client CLIENT_ID --sub SUB",
		Short: "Find the account a relying party knows by a pairwise sub",
		Long: `find turns the sub a relying party holds back into the account it names,
for a resident's request that reaches the operator through that RP (a
deletion, a complaint). Watashi keeps no index from subs to accounts, so
that its store cannot be read backwards: find derives the client's sub
of every account with the configured pairwise key and compares. It needs
the same pairwise key and the client's sector as the server.

Exit status: 0 found, 1 no account has that sub at that client, 2 usage,
configuration or store failure, or an unknown client.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case clientID == "":
				return usageErr("--client is required")
			case sub == "":
				return usageErr("--sub is required")
			case len(sub) > maxSubject || len(clientID) > maxSubject:
				return usageErr("--sub and --client take at most %d bytes", maxSubject)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), accountTimeout)
			defer cancel()
			kv, ring, err := f.openStore(ctx, cmd)
			if err != nil {
				return err
			}
			defer kv.Close()
			cfg, err := config.Load(f.config)
			if err != nil {
				return usageErr("%v", err)
			}
			cfg.SetLogOutput(cmd.ErrOrStderr())
			subjects, err := cfg.Subjects()
			if err != nil {
				return usageErr("%v", err)
			}
			sector, err := subjects.Sector(ctx, kv, clientID, f.dev, cfg.NewLogger(cmd.ErrOrStderr()))
			if err != nil {
				return usageErr("client %q: %v", clientID, err)
			}
			accounts, err := account.New(kv, account.Options{KEK: ring})
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			ids, err := accounts.IDs(ctx)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			found := ""
			for _, id := range ids {
				if subjects.Sub(sector, id) == sub {
					found = id
					break
				}
			}
			if found == "" {
				return &exitError{code: exitRefused, err: fmt.Errorf("no account has sub %q at client %q (%d accounts searched)", sub, clientID, len(ids)), quiet: f.json}
			}
			if f.json {
				writeJSON(cmd.OutOrStdout(), map[string]any{"account": found, "client": clientID, "sub": sub})
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), found)
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&clientID, "client", "", "the relying party's client_id")
	cmd.Flags().StringVar(&sub, "sub", "", "the sub that relying party holds")
	return cmd
}
