package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/watashi-id/watashi/idp"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/demorp"
	"github.com/watashi-id/watashi/idp/passkey"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
	"github.com/watashi-id/watashi/whitelist"
)

func init() { subcommands = append(subcommands, newDemoCmd) }

const (
	defaultDemoAddr = "localhost:8080"
	demoClientID    = "demo-rp"
)

func newDemoCmd() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "demo [--addr HOST:PORT]",
		Short: "Run the provider, a relying party and a phone simulator in one process",
		Long: `demo runs everything needed to click through a sign-in in one browser, with nothing to configure:
the provider (issuer http://HOST:PORT, memory store, development mode), two simulated J-LIS CAs
with their OCSP responders, a demo relying party and a phone simulator that holds simulated keys.

Nothing here is real: the CAs, certificates and secrets are generated at start and forgotten
at exit, and the certificates are marked SIMULATOR. Never use the demo for real residents.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, addr, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&addr, "addr", defaultDemoAddr, "address to listen on; also the issuer's host, so use the one your browser will open")
	return cmd
}

// demo is the assembled demo: one handler serving the provider at /, the
// relying party at /rp/, the simulator's revocation server at /sim/ and
// the phone simulator at /phone/.
type demo struct {
	issuer   string
	handler  http.Handler
	server   *idp.Server
	store    store.KV
	registry *whitelist.Registry
	// iat is an initial access token for the registry (tier standard,
	// auto-approved), printed by guide so that a registration can be
	// tried with curl.
	iat           string
	sigCA, authCA *jpkisim.CA
	// kek seals the demo's accounts and keys; like everything else here it
	// is forgotten at exit.
	kek  *seal.Ring
	logs *slog.Logger
	// passkeys is whether the demo offers passkeys (its host is a name).
	passkeys bool
	// mailbox shows the notification mails at /mail/ instead of sending
	// them.
	mailbox *demoMailbox
}

// newDemoWith builds the demo for a browser reaching it at addr. The
// issuer, and with it every URL the provider and RP exchange, is
// http://addr, so addr must be what the browser opens: a concrete host,
// not 0.0.0.0.
func newDemoWith(addr string, logger *slog.Logger) (*demo, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" || port == "0" {
		return nil, usageErr("--addr %q: want HOST:PORT with a fixed port", addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return nil, usageErr("--addr %q: give the host your browser will use (e.g. localhost:8080), not a wildcard: it becomes the issuer URL", addr)
	}
	issuer := "http://" + net.JoinHostPort(host, port)
	d := &demo{issuer: issuer, logs: logger}

	if d.sigCA, err = jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindSignature}); err != nil {
		return nil, err
	}
	if d.authCA, err = jpkisim.NewCA(jpkisim.CAOptions{Kind: pkibridge.KindAuthentication}); err != nil {
		return nil, err
	}
	anchors, err := pkibridge.NewAnchors(d.sigCA.Cert, d.authCA.Cert)
	if err != nil {
		return nil, err
	}
	// The provider reaches the RP's discovery, the simulator's OCSP and
	// the phone reaches the provider, all through the listening address.
	hc := &http.Client{Timeout: 10 * time.Second}
	// The responders are indexed as NewRevocationServer's arguments.
	checker, err := pkibridge.NewChecker(nil, []string{issuer + "/sim/ocsp/0", issuer + "/sim/ocsp/1"}, nil,
		pkibridge.CheckerOptions{OCSP: pkibridge.OCSPOptions{HTTPClient: hc}, Logger: logger})
	if err != nil {
		return nil, err
	}
	verifier := &pkibridge.Verifier{
		Anchors:    anchors, // only the simulator: no real card is accepted here
		Policy:     pkibridge.DefaultPolicy(),
		Revocation: checker,
		Mode:       pkibridge.RevocationRequire,
		Logger:     logger,
	}

	secret := randomKey(32)
	hash, err := clients.HashSecret(base64.RawURLEncoding.EncodeToString(secret))
	if err != nil {
		return nil, err
	}
	rpBase := issuer + "/rp"
	client := &clients.Client{
		ID:           demoClientID,
		DisplayName:  "Watashi demo RP",
		SecretHash:   hash,
		AuthMethod:   "client_secret_basic",
		RedirectURIs: []string{rpBase + "/callback"},
		PostLogout:   []string{rpBase + "/"},
		Scopes:       []string{"name", "birthdate", "gender", "address"},
		Purpose:      "Demonstration: sign in with a simulated JPKI smartphone certificate",
		// The provider fetches it through its guarded fetcher, as it
		// would a registered RP's, and shows it on its pages.
		LogoURI: rpBase + "/logo.png",
	}
	var tokenKey [32]byte
	copy(tokenKey[:], randomKey(32))
	reg := prometheus.NewRegistry()
	d.store = store.NewMemory()
	// The whitelist registry, in memory like everything else here.
	if d.registry, err = whitelist.New(whitelist.Options{Backend: whitelist.KVBackend(d.store, store.ErrNotFound), Dev: true, Logger: logger}); err != nil {
		return nil, err
	}
	if d.iat, _, err = d.registry.IssueToken(context.Background(), whitelist.TokenRequest{Tier: whitelist.TierStandard, TTL: 24 * time.Hour,
		AutoApprove: true, Note: "watashi demo", Change: whitelist.Change{Actor: "watashi demo", Via: "demo"}}); err != nil {
		return nil, err
	}
	d.kek = seal.GenerateRing()
	d.mailbox = &demoMailbox{}
	// Browsers accept passkeys for a host name only: the demo at
	// localhost has them, at 127.0.0.1 not.
	_, rpErr := passkey.RPID(issuer)
	d.passkeys = rpErr == nil
	d.server, err = idp.New(context.Background(), idp.Options{
		KEK:           d.kek,
		Registry:      d.registry,
		Issuer:        issuer,
		Dev:           true,
		Store:         d.store,
		Verifier:      verifier,
		Clients:       []*clients.Client{client},
		PairwiseKey:   randomKey(32),
		TokenKey:      tokenKey,
		CookieKey:     randomKey(32),
		DemoWalletURL: issuer + "/phone/",
		Passkeys:      idp.PasskeyOptions{Enabled: d.passkeys},
		Notify:        idp.NotifyOptions{Enabled: true, Mailer: d.mailbox},
		Logger:        logger,
		Metrics:       reg,
		Gatherer:      reg,
	})
	if err != nil {
		return nil, err
	}
	rp, err := demorp.New(demorp.Config{
		Issuer:       issuer,
		ClientID:     demoClientID,
		ClientSecret: base64.RawURLEncoding.EncodeToString(secret),
		BaseURL:      rpBase,
		Scopes:       append([]string{"openid"}, client.Scopes...),
		HTTPClient:   hc,
		Logger:       logger,
	})
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.Handle("/", d.server.Handler())
	mux.Handle("/rp/", http.StripPrefix("/rp", rp))
	mux.Handle("/sim/", http.StripPrefix("/sim", jpkisim.NewRevocationServer(d.sigCA, d.authCA)))
	mux.Handle("/phone/", walletsim.PhoneHandler(d.sigCA, d.authCA, hc))
	mux.Handle("GET /mail/", d.mailbox)
	mux.Handle("/telemetry/", http.StripPrefix("/telemetry", d.server.TelemetryHandler()))
	d.handler = mux
	return d, nil
}

// listenError says why the demo cannot listen on addr in words that lead
// somewhere: a busy port names the way out (another --addr).
func listenError(addr string, err error) error {
	host, port, _ := net.SplitHostPort(addr)
	next := "8081"
	if n, perr := strconv.Atoi(port); perr == nil && n < 65535 {
		next = strconv.Itoa(n + 1)
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("demo: %s is already in use: another program (perhaps another watashi demo) listens there. "+
			"Stop it, or start the demo on another port: watashi demo --addr localhost:%s (and open http://localhost:%s/rp/)", addr, next, next)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("demo: not allowed to listen on %s (ports below 1024 need privileges): try watashi demo --addr localhost:8080", addr)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("demo: %s is not an address of this machine: try watashi demo --addr localhost:%s", host, port)
	}
	return fmt.Errorf("demo: listen on %s: %w", addr, err)
}

func randomKey(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// guide is printed at start: the one page a new user reads.
func (d *demo) guide(w io.Writer) {
	fmt.Fprintf(w, `Watashi demo (everything simulated, nothing persisted)

  Open %[1]s/rp/ in your browser.

  1. Click "Sign in with Watashi". The provider's login page offers the
     wallet app on this device and, for another phone, a QR code.
  2. The first time, choose "First time (verify identity)"
     (はじめての方（本人確認）): the first sign-in proves identity with the
     signature certificate and links the authentication certificate for
     later sign-ins.
  3. Click "Open in the wallet app" (ウォレットアプリで開く): it opens the
     phone simulator, %[1]s/phone/. Enrol once by typing
     the basic four facts (name, birth date, gender, address); the
     simulator issues certificates from the demo CAs. Approve: the
     simulator takes you back to the login page, which carries on by
     itself. ("Decline" and "The codes differ" end the sign-in at once, and
     the login page offers a retry. The code matters when another phone
     scans the QR code: it must match the login page's.)
  4. On the consent screen choose what to share and press Allow: the
     relying party shows the claims it received, its ID token and
     userinfo (pairwise sub included). Later sign-ins skip step 2 and use
     the authentication certificate alone. Your account page,
     %[1]s/account, lists what each service receives, and offers sign-in
     notices by mail: the demo sends no mail but shows it at %[1]s/mail/
     (confirm the address there, then sign in again and use "this wasn't me").
%[3]s
  Register your own RP (RFC 7591; approved at once in the demo):
    curl -s %[1]s/register -H 'Authorization: Bearer %[2]s' \
      -H 'Content-Type: application/json' \
      -d '{"redirect_uris":["http://127.0.0.1:9999/cb"],"client_name":"My RP","organization_name":"Me",
           "token_endpoint_auth_method":"client_secret_basic"}'

  Provider:  %[1]s/.well-known/openid-configuration
  Telemetry: %[1]s/telemetry/metrics, /telemetry/readyz (same port in the demo only)
  Stop with Ctrl-C.
`, d.issuer, d.iat, d.passkeyGuide())
}

// passkeyGuide is the guide's passkey step, or how to get one.
func (d *demo) passkeyGuide() string {
	if !d.passkeys {
		return `
  Passkeys need a host name: start with --addr localhost:8080 and open
  http://localhost:8080/rp/ to add one after step 4 and sign in with it.
`
	}
	return `  5. After the certificate sign-in, "Sign in faster next time" offers a
     passkey (パスキーを追加): the browser asks for this device's screen lock.
     Next time, "Sign in with a passkey" (パスキーでサインイン) on the login
     page signs in without the phone (acr aal2); "Sign in with the
     certificate (aal3)" on the RP still asks for the certificate. Your
     passkeys are listed on ` + d.issuer + `/account.
`
}

func runDemo(ctx context.Context, addr string, stdout, stderr io.Writer) error {
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	// The OIDC library logs through slog's default logger: one format.
	slog.SetDefault(web.NewLogger(logger))
	d, err := newDemoWith(addr, logger)
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			return err
		}
		return &exitError{code: exitUsage, err: fmt.Errorf("demo: %w", err)}
	}
	defer d.store.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return &exitError{code: exitUsage, err: listenError(addr, err)}
	}
	hs := &http.Server{Handler: d.handler, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout,
		ErrorLog: slog.NewLogLogger(d.logs.Handler(), slog.LevelWarn)}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		if err := d.server.Run(runCtx); err != nil {
			d.logs.Error("background work stopped", "error", err)
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	d.guide(stdout)
	select {
	case <-ctx.Done():
	case err := <-errc:
		return &exitError{code: exitUsage, err: fmt.Errorf("demo: %w", err)}
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	return nil
}
