package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/watashi-id/watashi/idp"
	"github.com/watashi-id/watashi/idp/config"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/whitelist"
)

func init() { subcommands = append(subcommands, newServeCmd) }

// Server timeouts. There is no write timeout: the login page follows its
// transaction with server-sent events for as long as the transaction
// lives. Slow clients are bounded by the header timeout instead.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	// shutdownGrace lets in-flight requests finish; open event streams
	// are cut after it.
	shutdownGrace = 15 * time.Second
)

func newServeCmd() *cobra.Command {
	var cfgPath string
	var dev bool
	cmd := &cobra.Command{
		Use:   "serve --config FILE [--dev]",
		Short: "Run the OpenID provider",
		Long: `serve runs the OpenID provider from a YAML config file (see deploy/watashi.example.yaml
and docs/operator-guide.md), with WATASHI_* environment overrides.

Every configuration problem is printed at once, one per line, and the exit status is 2.
Production rules apply unless --dev is given: https issuer, Redis storage, all three secrets,
revocation checking, no permissive CORS.

Logs are JSON lines on standard error. SIGINT or SIGTERM shuts down gracefully.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				return usageErr("--config is required")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, serveParams{config: cfgPath, dev: dev, stderr: cmd.ErrOrStderr()})
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "YAML config file (required)")
	cmd.Flags().BoolVar(&dev, "dev", false, "allow development settings (http issuer, memory store, generated secrets)")
	return cmd
}

type serveParams struct {
	config string
	dev    bool
	stderr io.Writer
	// ready, when set, is told the bound addresses once both listeners
	// accept connections (tests listen on port 0).
	ready func(public, telemetry net.Addr)
	// adminReady, when set, is told the admin listener's address.
	adminReady func(admin net.Addr)
}

// serve runs until ctx ends, then shuts down gracefully. Configuration
// and start-up failures are exit status 2.
func serve(ctx context.Context, p serveParams) error {
	cfg, err := config.Load(p.config)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if err := cfg.Validate(p.dev); err != nil {
		fmt.Fprintf(p.stderr, "watashi: %s: invalid configuration:\n", p.config)
		for _, e := range flatten(err) {
			fmt.Fprintf(p.stderr, "  %v\n", e)
		}
		return &exitError{code: exitUsage, err: err, quiet: true}
	}
	cfg.SetLogOutput(p.stderr)
	opts, err := cfg.Options(ctx, p.dev)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	logger := opts.Logger
	// The OIDC library logs through slog's default logger: send it the
	// same way, in the configured format and with request IDs.
	slog.SetDefault(web.NewLogger(logger))
	defer opts.Store.Close()
	if p.dev {
		logger.Warn("running with --dev: development settings are allowed; never expose this instance")
	}

	srv, err := idp.New(ctx, opts)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	pubAddr, telAddr := cfg.ListenAddrs()
	pubLn, err := net.Listen("tcp", pubAddr)
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("listen: %w", err)}
	}
	telLn, err := net.Listen("tcp", telAddr)
	if err != nil {
		pubLn.Close()
		return &exitError{code: exitUsage, err: fmt.Errorf("telemetry_listen: %w", err)}
	}

	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	public := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes, ErrorLog: errLog}
	telemetry := &http.Server{Handler: srv.TelemetryHandler(), ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes, ErrorLog: errLog}
	servers := []*http.Server{public, telemetry}
	listeners := []net.Listener{pubLn, telLn}
	// The whitelist's admin API has a listener of its own, only when the
	// operator configured both its address and its token hash.
	if adminAddr, hashFile := cfg.WhitelistAdmin(); adminAddr != "" && opts.Registry != nil {
		h, err := opts.Registry.AdminHandler(whitelist.AdminOptions{TokenHashFile: hashFile, Prefix: "/whitelist", Blocks: srv.Blocks()})
		if err != nil {
			pubLn.Close()
			telLn.Close()
			return &exitError{code: exitUsage, err: err}
		}
		admLn, err := net.Listen("tcp", adminAddr)
		if err != nil {
			pubLn.Close()
			telLn.Close()
			return &exitError{code: exitUsage, err: fmt.Errorf("whitelist.admin_listen: %w", err)}
		}
		servers = append(servers, &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes, ErrorLog: errLog})
		listeners = append(listeners, admLn)
		logger.Info("whitelist admin API listening", "admin_listen", admLn.Addr().String())
		if p.adminReady != nil {
			p.adminReady(admLn.Addr())
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Fetch and pair the CRLs now rather than on the first sign-in; a
	// failure is logged, and the first check retries it.
	if chk, ok := opts.Verifier.Revocation.(*pkibridge.Checker); ok && len(chk.CRLs) > 0 {
		go func() {
			if err := chk.Refresh(runCtx); err != nil {
				logger.Warn("CRL refresh at start-up failed; sign-ins will retry", "error", err)
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Run(runCtx); err != nil {
			logger.Error("background work stopped", "error", err)
		}
	}()
	serveErr := make(chan error, len(servers))
	for i := range servers {
		go func() { serveErr <- servers[i].Serve(listeners[i]) }()
	}
	logger.Info("watashi serving", "issuer", opts.Issuer, "listen", pubLn.Addr().String(), "telemetry_listen", telLn.Addr().String())
	if p.ready != nil {
		p.ready(pubLn.Addr(), telLn.Addr())
	}

	var failure error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err := <-serveErr:
		failure = err
		logger.Error("listener failed", "error", err)
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			logger.Warn("forced shutdown", "error", err)
			s.Close()
		}
	}
	<-done
	if failure != nil && !errors.Is(failure, http.ErrServerClosed) {
		return &exitError{code: exitUsage, err: failure}
	}
	logger.Info("stopped")
	return nil
}

// flatten lists the errors of an errors.Join, one per problem.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
