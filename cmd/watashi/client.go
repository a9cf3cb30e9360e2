package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/watashi-id/watashi/idp/config"
	"github.com/watashi-id/watashi/whitelist"
)

func init() { subcommands = append(subcommands, newClientCmd) }

// clientTimeout bounds one client command; adding a client may fetch a
// sector_identifier_uri document (10 s at most).
const clientTimeout = time.Minute

func newClientCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "client",
		Short: "Manage the relying-party whitelist and initial access tokens",
		Long: `The client commands act on the whitelist held in the configured store,
which every node of the deployment shares: a suspension takes effect on
every running server within a second.

A client is pending, approved, suspended or revoked:
  pending -approve-> approved -suspend-> suspended -resume-> approved
  any -revoke-> revoked (final)
Every change is recorded in an append-only audit log with --actor
(default $USER) and --reason; "client history ID" shows it.

Integrators register themselves (RFC 7591, see docs/integrators.md) with an
initial access token from "client token issue".

Exit status: 0 done, 1 refused (unknown client, invalid status change,
invalid metadata), 2 usage, configuration or store failure.`,
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageErr("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
	cmd.AddCommand(newClientAddCmd(), newClientListCmd(), newClientShowCmd(), newClientHistoryCmd(),
		newClientDeleteCmd(), newClientRotateCmd(), newClientTokenCmd(), newClientAdminTokenCmd())
	for _, a := range []string{whitelist.ActionApprove, whitelist.ActionSuspend, whitelist.ActionResume, whitelist.ActionRevoke} {
		cmd.AddCommand(newClientTransitionCmd(a))
	}
	return cmd
}

type clientFlags struct {
	config string
	dev    bool
	json   bool
	actor  string
	reason string
}

func (f *clientFlags) register(cmd *cobra.Command, writes bool) {
	cmd.Flags().StringVar(&f.config, "config", "", "configuration file (YAML) naming the store")
	cmd.Flags().BoolVar(&f.dev, "dev", false, "accept a development configuration (and development metadata)")
	cmd.Flags().BoolVar(&f.json, "json", false, "print JSON instead of a table")
	if writes {
		cmd.Flags().StringVar(&f.actor, "actor", "", "who makes the change, for the audit log (default $USER)")
		cmd.Flags().StringVar(&f.reason, "reason", "", "why, for the audit log")
	}
}

func (f *clientFlags) change() whitelist.Change {
	actor := f.actor
	if actor == "" {
		actor = os.Getenv("USER")
	}
	if actor == "" {
		actor = "unknown"
	}
	return whitelist.Change{Actor: actor, Via: "cli", Reason: f.reason}
}

// open builds the registry on the configured store. A memory store is
// refused: its whitelist would exist only inside this process.
func (f *clientFlags) open(ctx context.Context, cmd *cobra.Command) (*whitelist.Registry, func(), error) {
	if f.config == "" {
		return nil, nil, usageErr("--config is required")
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		return nil, nil, usageErr("%v", err)
	}
	cfg.SetLogOutput(cmd.ErrOrStderr())
	if cfg.Store.Type != "redis" {
		return nil, nil, usageErr("the configured store is memory: the whitelist exists only inside a running server; configure redis")
	}
	// Only the store: the commands need neither the PKI files nor the
	// server's secrets, which an operator's machine may not hold.
	kv, err := cfg.OpenStore(ctx, f.dev)
	if err != nil {
		return nil, nil, usageErr("%v", err)
	}
	r, err := cfg.NewRegistry(kv, f.dev, cfg.NewLogger(cmd.ErrOrStderr()))
	if err != nil {
		kv.Close()
		return nil, nil, usageErr("%v", err)
	}
	return r, func() { kv.Close() }, nil
}

// withRegistry runs fn with a registry and a bounded context.
func (f *clientFlags) withRegistry(cmd *cobra.Command, fn func(ctx context.Context, r *whitelist.Registry) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), clientTimeout)
	defer cancel()
	r, closeFn, err := f.open(ctx, cmd)
	if err != nil {
		return err
	}
	defer closeFn()
	return fn(ctx, r)
}

// refusal maps registry errors to exit statuses: the registry's own
// refusals are 1, anything else (store, I/O) 2.
func refusal(err error) error {
	var ve *whitelist.Error
	switch {
	case errors.As(err, &ve) && ve.Code == whitelist.CodeInvalidRequest:
		return &exitError{code: exitUsage, err: errors.New(ve.Description)}
	case errors.As(err, &ve):
		return &exitError{code: exitRefused, err: fmt.Errorf("%s: %s", ve.Code, ve.Description)}
	case errors.Is(err, whitelist.ErrUnknownClient), errors.Is(err, whitelist.ErrInvalidTransition),
		errors.Is(err, whitelist.ErrExists), errors.Is(err, whitelist.ErrNoSecret), errors.Is(err, whitelist.ErrConflict),
		errors.Is(err, whitelist.ErrUnknownToken), errors.Is(err, whitelist.ErrTokenRevoked):
		return &exitError{code: exitRefused, err: err}
	default:
		return &exitError{code: exitUsage, err: err}
	}
}

// partial reports a change that was saved but not fully recorded or
// propagated: the command succeeded, the operator must still know.
func partial(cmd *cobra.Command, err error, out map[string]any) {
	if err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "watashi: warning: %v\n", err)
		if out != nil {
			out["warning"] = err.Error()
		}
	}
}

func oneID(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageErr("%s needs exactly one client ID", cmd.CommandPath())
	}
	return nil
}

// ---- add ----

type addFlags struct {
	clientFlags
	metadata     string
	tier         string
	id           string
	approve      bool
	name, org    string
	redirects    []string
	postLogout   []string
	authMethod   string
	jwksFile     string
	jwksURI      string
	appType      string
	scope        string
	sectorURI    string
	logo, policy string
	tos          string
	contacts     []string
}

func newClientAddCmd() *cobra.Command {
	f := &addFlags{}
	cmd := &cobra.Command{
		Use:   "add --config FILE --tier TIER (--metadata FILE | --name NAME --org ORG --redirect-uri URI ...)",
		Short: "Register a client as an operator (same validation as dynamic registration)",
		Long: `Register a client from an RFC 7591 metadata file (--metadata, JSON) or from
flags. The client is pending unless --approve is given. The client secret
(client_secret_basic) and the registration access token are printed once
and never stored in the clear.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := f.build()
			if err != nil {
				return err
			}
			if f.tier == "" {
				return usageErr("--tier is required")
			}
			return f.withRegistry(cmd, func(ctx context.Context, r *whitelist.Registry) error {
				reg, err := r.Add(ctx, whitelist.AddRequest{Metadata: m, Tier: f.tier, ID: f.id, Approve: f.approve, Change: f.change()})
				if reg == nil {
					return refusal(err)
				}
				out := map[string]any{"client": reg.Client.Redacted(), "registration_access_token": reg.RegistrationAccessToken}
				if reg.ClientSecret != "" {
					out["client_secret"] = reg.ClientSecret
				}
				partial(cmd, err, out)
				if f.json {
					writeJSON(cmd.OutOrStdout(), out)
					return nil
				}
				printClient(cmd.OutOrStdout(), reg.Client)
				w := cmd.OutOrStdout()
				fmt.Fprintln(w)
				fmt.Fprintln(w, "Shown once, give them to the integrator over a secure channel:")
				if reg.ClientSecret != "" {
					fmt.Fprintf(w, "  client_secret:             %s\n", reg.ClientSecret)
				}
				fmt.Fprintf(w, "  registration_access_token: %s\n", reg.RegistrationAccessToken)
				return nil
			})
		},
	}
	f.clientFlags.register(cmd, true)
	fl := cmd.Flags()
	fl.StringVar(&f.metadata, "metadata", "", "RFC 7591 client metadata (JSON file)")
	fl.StringVar(&f.tier, "tier", "", "tier granted to the client (basic, standard, full, ...)")
	fl.StringVar(&f.id, "id", "", "client_id to use instead of a random one (never reused)")
	fl.BoolVar(&f.approve, "approve", false, "register as approved rather than pending")
	fl.StringVar(&f.name, "name", "", "client_name shown to residents")
	fl.StringVar(&f.org, "org", "", "organization_name shown to residents")
	fl.StringArrayVar(&f.redirects, "redirect-uri", nil, "redirect URI (repeat for several)")
	fl.StringArrayVar(&f.postLogout, "post-logout-uri", nil, "post-logout redirect URI (repeat)")
	fl.StringVar(&f.authMethod, "auth-method", "", "private_key_jwt, client_secret_basic or none")
	fl.StringVar(&f.jwksFile, "jwks-file", "", "the client's public JWK Set (private_key_jwt)")
	fl.StringVar(&f.jwksURI, "jwks-uri", "", "URL of the client's JWK Set (private_key_jwt)")
	fl.StringVar(&f.appType, "application-type", "", "web (default) or native")
	fl.StringVar(&f.scope, "scope", "", "space-separated subset of the tier's scopes")
	fl.StringVar(&f.sectorURI, "sector-identifier-uri", "", "sector_identifier_uri (several redirect hosts)")
	fl.StringVar(&f.logo, "logo-uri", "", "logo_uri")
	fl.StringVar(&f.policy, "policy-uri", "", "policy_uri")
	fl.StringVar(&f.tos, "tos-uri", "", "tos_uri")
	fl.StringArrayVar(&f.contacts, "contact", nil, "contact e-mail (repeat)")
	return cmd
}

const maxMetadataFile = whitelist.MaxBodyBytes

func readSmallFile(name string, max int64) ([]byte, error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, max)
	}
	return b, nil
}

func (f *addFlags) build() (whitelist.Metadata, error) {
	flagsUsed := f.name != "" || f.org != "" || len(f.redirects) > 0 || len(f.postLogout) > 0 || f.authMethod != "" ||
		f.jwksFile != "" || f.jwksURI != "" || f.appType != "" || f.scope != "" || f.sectorURI != "" ||
		f.logo != "" || f.policy != "" || f.tos != "" || len(f.contacts) > 0
	if f.metadata != "" {
		if flagsUsed {
			return whitelist.Metadata{}, usageErr("--metadata cannot be combined with metadata flags")
		}
		b, err := readSmallFile(f.metadata, maxMetadataFile)
		if err != nil {
			return whitelist.Metadata{}, usageErr("--metadata: %v", err)
		}
		m, err := whitelist.ParseMetadata(b)
		if err != nil {
			return whitelist.Metadata{}, refusal(err)
		}
		return m, nil
	}
	if !flagsUsed {
		return whitelist.Metadata{}, usageErr("give --metadata FILE or the metadata flags (--name, --org, --redirect-uri, ...)")
	}
	m := whitelist.Metadata{
		ClientName: f.name, OrganizationName: f.org, RedirectURIs: f.redirects, PostLogoutRedirectURIs: f.postLogout,
		TokenEndpointAuthMethod: f.authMethod, JWKSURI: f.jwksURI, ApplicationType: f.appType, Scope: f.scope,
		SectorIdentifierURI: f.sectorURI, LogoURI: f.logo, PolicyURI: f.policy, TOSURI: f.tos, Contacts: f.contacts,
	}
	if f.jwksFile != "" {
		b, err := readSmallFile(f.jwksFile, maxMetadataFile)
		if err != nil {
			return whitelist.Metadata{}, usageErr("--jwks-file: %v", err)
		}
		if !json.Valid(b) {
			return whitelist.Metadata{}, usageErr("--jwks-file: not JSON")
		}
		m.JWKS = b
		if m.TokenEndpointAuthMethod == "" {
			m.TokenEndpointAuthMethod = whitelist.AuthPrivateKeyJWT
		}
	}
	// Round-trip through the parser so that flags and files are judged
	// alike (e.g. the jwks must be an object).
	b, err := json.Marshal(m)
	if err != nil {
		return whitelist.Metadata{}, usageErr("%v", err)
	}
	pm, err := whitelist.ParseMetadata(b)
	if err != nil {
		return whitelist.Metadata{}, refusal(err)
	}
	return pm, nil
}

// ---- list, show, history ----

func newClientListCmd() *cobra.Command {
	f := &clientFlags{}
	var status string
	cmd := &cobra.Command{
		Use:   "list --config FILE [--status STATUS]",
		Short: "List clients",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch whitelist.Status(status) {
			case "", whitelist.StatusPending, whitelist.StatusApproved, whitelist.StatusSuspended, whitelist.StatusRevoked:
			default:
				return usageErr("--status must be pending, approved, suspended or revoked")
			}
			return f.withRegistry(cmd, func(ctx context.Context, r *whitelist.Registry) error {
				cs, err := r.List(ctx)
				if err != nil {
					return refusal(err)
				}
				out := []*whitelist.Client{}
				for _, c := range cs {
					if status == "" || string(c.Status) == status {
						out = append(out, c.Redacted())
					}
				}
				if f.json {
					writeJSON(cmd.OutOrStdout(), map[string]any{"clients": out})
					return nil
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "CLIENT_ID\tSTATUS\tTIER\tNAME\tORGANIZATION\tAUTH\tCREATED")
				for _, c := range out {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Status, c.Tier, cell(c.ClientName), cell(c.OrganizationName),
						c.TokenEndpointAuthMethod, c.CreatedAt.UTC().Format(time.RFC3339))
				}
				return w.Flush()
			})
		},
	}
	f.register(cmd, false)
	cmd.Flags().StringVar(&status, "status", "", "only clients with this status")
	return cmd
}

// cell keeps a table cell on one line.
func cell(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
	if s == "" {
		return "-"
	}
	return s
}

func printClient(w io.Writer, c *whitelist.Client) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, cell(v)) }
	list := func(v []string) string { return strings.Join(v, " ") }
	row("client_id", c.ID)
	row("status", string(c.Status))
	if c.StatusReason != "" || c.StatusChangedBy != "" {
		row("status changed", fmt.Sprintf("%s by %s: %s", c.StatusChangedAt.UTC().Format(time.RFC3339), c.StatusChangedBy, c.StatusReason))
	}
	row("client_name", c.ClientName)
	row("organization_name", c.OrganizationName)
	row("tier", c.Tier)
	row("allowed scopes", list(c.AllowedScopes))
	row("allowed claims", list(c.AllowedClaims))
	row("min acr", c.MinACR)
	row("application_type", c.ApplicationType)
	row("token_endpoint_auth", c.TokenEndpointAuthMethod)
	row("redirect_uris", list(c.RedirectURIs))
	row("post_logout_uris", list(c.PostLogoutRedirectURIs))
	row("sector", c.Sector)
	row("sector_identifier_uri", c.SectorIdentifierURI)
	row("jwks_uri", c.JWKSURI)
	row("id_token alg", c.IDTokenSignedResponseAlg)
	row("contacts", list(c.Contacts))
	row("logo / policy / tos", list([]string{cell(c.LogoURI), cell(c.PolicyURI), cell(c.TOSURI)}))
	row("software", strings.TrimSpace(c.SoftwareID+" "+c.SoftwareVersion))
	row("statement issuer", c.SoftwareStatementIssuer)
	row("registered with", c.RegisteredWith)
	row("created", c.CreatedAt.UTC().Format(time.RFC3339))
	row("updated", c.UpdatedAt.UTC().Format(time.RFC3339))
	tw.Flush()
}

func newClientShowCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "show --config FILE CLIENT_ID",
		Short: "Show one client",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withRegistry(cmd, func(ctx context.Context, r *whitelist.Registry) error {
				c, err := r.Get(ctx, args[0])
				if err != nil {
					return refusal(err)
				}
				if f.json {
					writeJSON(cmd.OutOrStdout(), map[string]any{"client": c.Redacted()})
					return nil
				}
				printClient(cmd.OutOrStdout(), c)
				return nil
			})
		},
	}
	f.register(cmd, false)
	return cmd
}

func printHistory(cmd *cobra.Command, asJSON bool, key string, id string, evs []whitelist.AuditEvent) error {
	if evs == nil {
		evs = []whitelist.AuditEvent{}
	}
	if asJSON {
		out := map[string]any{"history": evs}
		if key != "" {
			out[key] = id
		}
		writeJSON(cmd.OutOrStdout(), out)
		return nil
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TIME\tACTION\tFROM\tTO\tACTOR\tVIA\tREASON")
	for _, e := range evs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.UTC().Format(time.RFC3339), e.Action, cell(string(e.From)),
			cell(string(e.To)), cell(e.Actor), cell(e.Via), cell(e.Reason))
	}
	return w.Flush()
}

func newClientHistoryCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "history --config FILE CLIENT_ID",
		Short: "Show a client's audit log (kept after deletion)",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withRegistry(cmd, func(ctx context.Context, r *whitelist.Registry) error {
				evs, err := r.History(ctx, args[0])
				if err != nil {
					return refusal(err)
				}
				if len(evs) == 0 {
					return refusal(whitelist.ErrUnknownClient)
				}
				return printHistory(cmd, f.json, "client_id", args[0], evs)
			})
		},
	}
	f.register(cmd, false)
	return cmd
}

// ---- changes ----

var transitionHelp = map[string]string{
	whitelist.ActionApprove: "Approve a pending client",
	whitelist.ActionSuspend: "Suspend an approved client on every node within a second",
	whitelist.ActionResume:  "Resume a suspended client",
	whitelist.ActionRevoke:  "Revoke a client for good (it must register anew)",
}

func newClientTransitionCmd(action string) *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   action + " --config FILE CLIENT_ID [--reason TEXT] [--actor NAME]",
		Short: transitionHelp[action],
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withRegistry(cmd, func(ctx context.Context, r *whitelist.Registry) error {
				c, err := r.Transition(ctx, args[0], action, f.change())
				if c == nil {
					return refusal(err)
				}
				out := map[string]any{"client": c.Redacted()}
				partial(cmd, err, out)
				if f.json {
					writeJSON(cmd.OutOrStdout(), out)
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", c.ID, c.Status)
				return nil
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

func newClientDeleteCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "delete --config FILE CLIENT_ID",
		Short: "Delete a client record (its history stays; its ID is never reused)",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withRegistry(cmd, func(ctx context.Context, r *whitelist.Registry) error {
				err := r.Delete(ctx, args[0], f.change())
				if err != nil && !errors.Is(err, whitelist.ErrPartial) {
					return refusal(err)
				}
				out := map[string]any{"deleted": args[0]}
				partial(cmd, err, out)
				if f.json {
					writeJSON(cmd.OutOrStdout(), out)
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\tdeleted\n", args[0])
				return nil
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

func newClientRotateCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "rotate-secret --config FILE CLIENT_ID",
		Short: "Issue a new client secret (client_secret_basic); the old one stops working",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withRegistry(cmd, func(ctx context.Context, r *whitelist.Registry) error {
				s, err := r.RotateSecret(ctx, args[0], f.change())
				if s == "" {
					return refusal(err)
				}
				out := map[string]any{"client_id": args[0], "client_secret": s}
				partial(cmd, err, out)
				if f.json {
					writeJSON(cmd.OutOrStdout(), out)
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "client_id:     %s\nclient_secret: %s\n(shown once)\n", args[0], s)
				return nil
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

// ---- initial access tokens ----

func newClientTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Issue, list and revoke initial access tokens for dynamic registration",
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageErr("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
	cmd.AddCommand(newTokenIssueCmd(), newTokenListCmd(), newTokenRevokeCmd())
	return cmd
}

func newTokenIssueCmd() *cobra.Command {
	f := &clientFlags{}
	var req whitelist.TokenRequest
	cmd := &cobra.Command{
		Use:   "issue --config FILE --tier TIER [--ttl 168h] [--one-time] [--auto-approve] [--note TEXT]",
		Short: "Issue an initial access token (printed once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Tier == "" {
				return usageErr("--tier is required")
			}
			return f.withRegistry(cmd, func(ctx context.Context, r *whitelist.Registry) error {
				req.Change = f.change()
				tok, t, err := r.IssueToken(ctx, req)
				if t == nil {
					return refusal(err)
				}
				out := map[string]any{"initial_access_token": tok, "token": t.Redacted()}
				partial(cmd, err, out)
				if f.json {
					writeJSON(cmd.OutOrStdout(), out)
					return nil
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "initial_access_token: %s\n(shown once; give it to the integrator over a secure channel)\n", tok)
				fmt.Fprintf(w, "id: %s  tier: %s  expires: %s  one-time: %v  auto-approve: %v\n", t.ID, t.Tier,
					t.ExpiresAt.UTC().Format(time.RFC3339), t.OneTime, t.AutoApprove)
				return nil
			})
		},
	}
	f.register(cmd, true)
	fl := cmd.Flags()
	fl.StringVar(&req.Tier, "tier", "", "tier of the clients registered with the token")
	fl.DurationVar(&req.TTL, "ttl", 7*24*time.Hour, "lifetime")
	fl.BoolVar(&req.OneTime, "one-time", false, "valid for a single registration")
	fl.BoolVar(&req.AutoApprove, "auto-approve", false, "clients start approved instead of pending")
	fl.StringVar(&req.Note, "note", "", "who the token is for")
	return cmd
}

func newTokenListCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "list --config FILE",
		Short: "List initial access tokens (never the tokens themselves)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withRegistry(cmd, func(ctx context.Context, r *whitelist.Registry) error {
				ts, err := r.ListTokens(ctx)
				if err != nil {
					return refusal(err)
				}
				now := time.Now()
				if f.json {
					out := []map[string]any{}
					for _, t := range ts {
						out = append(out, map[string]any{"token": t.Redacted(), "state": t.State(now)})
					}
					writeJSON(cmd.OutOrStdout(), map[string]any{"tokens": out})
					return nil
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tSTATE\tTIER\tUSES\tONE-TIME\tAUTO-APPROVE\tEXPIRES\tNOTE")
				for _, t := range ts {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%v\t%v\t%s\t%s\n", t.ID, t.State(now), t.Tier, t.Uses, t.OneTime, t.AutoApprove,
						t.ExpiresAt.UTC().Format(time.RFC3339), cell(t.Note))
				}
				return w.Flush()
			})
		},
	}
	f.register(cmd, false)
	return cmd
}

func newTokenRevokeCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "revoke --config FILE TOKEN_ID",
		Short: "Revoke an initial access token (clients it registered stay)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr("%s needs exactly one token ID (iat_...)", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withRegistry(cmd, func(ctx context.Context, r *whitelist.Registry) error {
				t, err := r.RevokeToken(ctx, args[0], f.change())
				if t == nil {
					return refusal(err)
				}
				out := map[string]any{"token": t.Redacted(), "state": t.State(time.Now())}
				partial(cmd, err, out)
				if f.json {
					writeJSON(cmd.OutOrStdout(), out)
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\trevoked\n", t.ID)
				return nil
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

func newClientAdminTokenCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "admin-token",
		Short: "Make a bearer token for the admin API and the hash line for the server",
		Long: `Prints a new admin API token and the line to put in the server's admin
token hash file. Only the hash goes on the server; keep the token in your
automation's secret store.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, line := whitelist.NewAdminToken()
			if asJSON {
				writeJSON(cmd.OutOrStdout(), map[string]any{"token": tok, "hash": line})
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token: %s\nhash:  %s\n", tok, line)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
