package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/watashi-id/watashi/cmd/watashi/loadtool"
)

func init() { subcommands = append(subcommands, newLoadCmd) }

func newLoadCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Measure a running provider: full logins, refresh, userinfo, introspection (SIMULATOR certificates)",
		Long: `The load commands measure what a login costs a running Watashi (docs/performance.md).

"setup" writes a directory with simulator CAs, secrets, two clients and a
configuration for "watashi serve --dev --config DIR/watashi.yaml".
"run" drives that provider: every worker is one simulated resident who
signs in with the wallet simulator, every flow a new browser. It prints a
table (and --json writes the figures): flows per second, latency
percentiles, errors by kind, and, from the telemetry listener and Redis
INFO, the provider's CPU, store operations, Redis commands, CPU and bytes
retained per operation.

Never point it at a provider residents use: it trusts only simulator CAs
and fills the store with test accounts.`,
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageErr("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
	cmd.AddCommand(newLoadSetupCmd(), newLoadRunCmd())
	return cmd
}

func newLoadSetupCmd() *cobra.Command {
	var o loadtool.SetupOptions
	cmd := &cobra.Command{
		Use:   "setup --dir DIR [--listen 127.0.0.1:8080] [--telemetry 127.0.0.1:9090] [--redis HOST:PORT]",
		Short: "Write simulator CAs, client credentials and a provider configuration for load runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadtool.Setup(o); err != nil {
				return usageErr("%v", err)
			}
			writeJSON(cmd.OutOrStdout(), map[string]any{"dir": o.Dir, "config": o.Dir + "/" + loadtool.ConfigFile,
				"serve": "watashi serve --dev --config " + o.Dir + "/" + loadtool.ConfigFile})
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Dir, "dir", "", "directory to write (must not hold a configuration yet)")
	cmd.Flags().StringVar(&o.Listen, "listen", "127.0.0.1:8080", "the provider's address; the issuer is http://ADDRESS")
	cmd.Flags().StringVar(&o.Telemetry, "telemetry", "127.0.0.1:9090", "the provider's telemetry (metrics) address")
	cmd.Flags().StringVar(&o.Redis, "redis", "", "redis-server address (empty: memory store)")
	cmd.Flags().StringVar(&o.Prefix, "prefix", "load:", "key prefix in Redis")
	return cmd
}

func newLoadRunCmd() *cobra.Command {
	var (
		o        loadtool.Options
		phases   string
		jsonFile string
	)
	cmd := &cobra.Command{
		Use:   "run --dir DIR [--phases login,refresh,userinfo,introspection] [--concurrency 8] [--duration 30s]",
		Short: "Drive the provider of a setup directory and report the cost per operation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Dir == "" {
				return usageErr("--dir is required")
			}
			o.Phases = strings.Split(phases, ",")
			o.Log = func(format string, args ...any) { fmt.Fprintf(cmd.ErrOrStderr(), "load: "+format+"\n", args...) }
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := loadtool.Run(ctx, o)
			if rep != nil {
				rep.WriteTable(cmd.OutOrStdout())
				if jsonFile != "" {
					f, ferr := os.Create(jsonFile)
					if ferr != nil {
						return usageErr("%v", ferr)
					}
					writeJSON(f, rep)
					if ferr := f.Close(); ferr != nil {
						return usageErr("%v", ferr)
					}
				}
			}
			if err != nil {
				return usageErr("%v", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Dir, "dir", "", "directory written by watashi load setup")
	cmd.Flags().StringVar(&phases, "phases", "login,refresh,userinfo,introspection", "phases to run, in order")
	cmd.Flags().IntVar(&o.Concurrency, "concurrency", 8, "workers (simulated browsers) at once")
	cmd.Flags().IntVar(&o.Residents, "residents", 0, fmt.Sprintf("residents the workers sign in in turn (0: %d per worker)", loadtool.DefaultResidentsPerWorker))
	cmd.Flags().DurationVar(&o.Duration, "duration", 30*time.Second, "length of each phase")
	cmd.Flags().Float64Var(&o.Rate, "rate", 0, "operations per second across all workers (0: as fast as answered)")
	cmd.Flags().StringVar(&o.Auth, "auth", loadtool.AuthSecretBasic, "client authentication: client_secret_basic or private_key_jwt")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 30*time.Second, "bound on one operation")
	cmd.Flags().StringVar(&o.MetricsURL, "metrics", "", "provider metrics URL (default from the configuration; - for none)")
	cmd.Flags().StringVar(&o.Redis, "redis", "", "redis-server to read INFO from (default from the configuration; - for none)")
	cmd.Flags().StringVar(&jsonFile, "json", "", "also write the figures as JSON to this file")
	return cmd
}
