package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

func init() { subcommands = append(subcommands, newWalletCmd) }

// walletTimeout bounds the network part of one approve (fetch + submit);
// the resident's confirmation is not counted.
const walletTimeout = 30 * time.Second

func newWalletCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "wallet",
		Short: "Command-line wallet simulator (SIMULATOR: test certificates only)",
		Long: `The wallet commands simulate a JPKI smartphone wallet, for development and demos.

"enroll" issues a signature certificate (with the basic four facts you give)
and a user-authentication certificate from a simulator CA kept in --ca-dir,
and stores the keys in --dir. "approve URL" answers a sign-in transaction
(the URL in the login page's QR code or app link) as a phone would: it
fetches the transaction, shows what is asked, signs the exact bytes and
submits the signatures (docs/wallet-protocol.md); a "no" there, or
"decline URL", tells the provider, and the login page says so at once.

Nothing here is a real certificate. A provider trusts these only when it
is configured with the simulator CA (watashi demo does so).

Each command prints one JSON object on standard output.
Exit status: 0 success, 1 refused (by the provider or by you), 2 usage,
unreadable files or network failure.`,
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageErr("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
	cmd.AddCommand(newWalletEnrollCmd(), newWalletApproveCmd(), newWalletDeclineCmd())
	return cmd
}

// CA directories under --ca-dir, one per kind.
const (
	caDirSignature      = "signature"
	caDirAuthentication = "authentication"
)

// tokenLabels maps --token to the applet label the wallet reports.
var tokenLabels = map[string]string{
	"android": walletsim.TokenAndroid,
	"ios":     walletsim.TokenIOS,
	"card":    walletsim.TokenCard,
}

func newWalletEnrollCmd() *cobra.Command {
	var (
		dir, caDir, name, birthdate, gender, address, token string
		biometric, force                                    bool
	)
	cmd := &cobra.Command{
		Use:   "enroll --dir DIR --ca-dir DIR --name NAME --birthdate YYYY-MM-DD --gender male|female|not_known --address ADDRESS",
		Short: "Issue simulated JPKI certificates into a wallet directory",
		Long: `enroll creates the simulator CAs in --ca-dir if they do not exist yet
(--ca-dir/signature and --ca-dir/authentication, each ca.crt, ca.key,
state.json), issues a signature certificate carrying the facts and a
user-authentication certificate, and writes them with their keys to --dir
(keys mode 0600).

--name is "FAMILY GIVEN" (an ASCII or ideographic space between them).
The output names the certificates by serial and SHA-256 fingerprint; it
does not repeat the facts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if dir == "" || caDir == "" {
				return usageErr("--dir and --ca-dir are required")
			}
			label, ok := tokenLabels[token]
			if !ok {
				return usageErr("--token must be android, ios or card")
			}
			facts, err := walletsim.FactsFromInput(name, birthdate, gender, address)
			if err != nil {
				return usageErr("%v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "authentication.crt")); err == nil && !force {
				return usageErr("%s already holds a wallet (use --force to replace it)", dir)
			}
			sigCA, err := jpkisim.LoadOrCreateCA(filepath.Join(caDir, caDirSignature), pkibridge.KindSignature)
			if err != nil {
				return usageErr("%v", err)
			}
			authCA, err := jpkisim.LoadOrCreateCA(filepath.Join(caDir, caDirAuthentication), pkibridge.KindAuthentication)
			if err != nil {
				return usageErr("%v", err)
			}
			uv := "pin"
			if biometric {
				uv = "biometric"
			}
			w, err := walletsim.EnrollWith(sigCA, authCA, facts, walletsim.EnrollOptions{Token: label, UserVerification: uv})
			if err != nil {
				return usageErr("%v", err)
			}
			// The CAs' serial counters moved: save them, or the OCSP
			// responder of a later process would not know these serials.
			for _, c := range []struct {
				ca  *jpkisim.CA
				sub string
			}{{sigCA, caDirSignature}, {authCA, caDirAuthentication}} {
				if err := c.ca.Save(filepath.Join(caDir, c.sub)); err != nil {
					return usageErr("%v", err)
				}
			}
			if err := w.Save(dir); err != nil {
				return usageErr("%v", err)
			}
			writeJSON(out, map[string]any{
				"dir":                        dir,
				"ca_dir":                     caDir,
				"simulator":                  true,
				"token":                      w.Token,
				"user_verification":          w.UserVerification,
				"signature_certificate":      certSummary(w.SigCert.Raw, w.SigCert.SerialNumber.String(), w.SigCert.NotAfter),
				"authentication_certificate": certSummary(w.AuthCert.Raw, w.AuthCert.SerialNumber.String(), w.AuthCert.NotAfter),
			})
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "wallet directory to write (created)")
	f.StringVar(&caDir, "ca-dir", "", "simulator CA directory (created with new CAs when absent)")
	f.StringVar(&name, "name", "", `name as "FAMILY GIVEN"`)
	f.StringVar(&birthdate, "birthdate", "", "date of birth, YYYY-MM-DD")
	f.StringVar(&gender, "gender", "", "male, female or not_known")
	f.StringVar(&address, "address", "", "address (at most 200 characters)")
	f.StringVar(&token, "token", "android", "where the keys live, reported to the provider: android, ios or card")
	f.BoolVar(&biometric, "biometric", false, "report biometric user verification instead of a PIN")
	f.BoolVar(&force, "force", false, "replace an existing wallet in --dir")
	return cmd
}

func certSummary(der []byte, serial string, notAfter time.Time) map[string]string {
	h := sha256.Sum256(der)
	return map[string]string{"serial": serial, "sha256_fingerprint": hex.EncodeToString(h[:]), "not_after": notAfter.UTC().Format(time.RFC3339)}
}

// fetchTx reads the transaction at raw for approve and decline.
func fetchTx(cmd *cobra.Command, raw string) (*walletsim.Transaction, *http.Client, error) {
	u, err := walletsim.ParseURL(raw)
	if err != nil {
		return nil, nil, usageErr("%v", err)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning: plain http to a non-local host; anyone on the path can read and change the transaction")
	}
	hc := &http.Client{Timeout: walletTimeout}
	ctx, cancel := context.WithTimeout(cmd.Context(), walletTimeout)
	defer cancel()
	tx, err := walletsim.Fetch(ctx, hc, u.String())
	if err != nil {
		return nil, nil, walletFailure(cmd.OutOrStdout(), err)
	}
	return tx, hc, nil
}

// decline tells the provider the resident will not sign tx and prints
// the outcome: status 1, since the sign-in did not happen.
func decline(cmd *cobra.Command, hc *http.Client, tx *walletsim.Transaction, reason string) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), walletTimeout)
	defer cancel()
	if err := walletsim.Decline(ctx, hc, tx, reason); err != nil {
		return walletFailure(cmd.OutOrStdout(), err)
	}
	writeJSON(cmd.OutOrStdout(), map[string]any{"status": "declined", "reason": reason, "transaction": tx.ID})
	return &exitError{code: exitRefused, quiet: true}
}

// sameCode compares confirmation codes by their digits ("12-34" is
// "1234" typed).
func sameCode(a, b string) bool {
	digits := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, s)
	}
	return digits(a) != "" && digits(a) == digits(b)
}

func newWalletApproveCmd() *cobra.Command {
	var (
		dir, format, code string
		yes               bool
	)
	cmd := &cobra.Command{
		Use:   "approve URL --dir DIR [--format jws|cms|raw] [--code CODE] [--yes]",
		Short: "Answer a sign-in transaction with the wallet's certificates",
		Long: `approve fetches the transaction at URL (the transaction URL with its
qr_token, or a watashi://sign?tx= app link), checks that the bytes to sign
name the server it was fetched from, shows on standard error what is
asked (service, information, certificates, confirmation code, expiry) and,
after you confirm (or with --yes), signs and submits.

Compare the confirmation code with the one on the login page before you
confirm: a different code means the QR code did not come from your own
browser. Answer "d" at the prompt, or give the code you see with --code,
and a different code is reported to the provider instead: the login page
then says so at once. "n" declines, and the login page says that too.

Fetch the URL within 40 seconds of it appearing on the login page: the
QR code's token rotates every 20 seconds.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			if dir == "" {
				return usageErr("--dir is required")
			}
			if format != walletsim.FormatJWS && format != walletsim.FormatCMS && format != walletsim.FormatRaw {
				return usageErr("--format must be jws, cms or raw")
			}
			if _, err := walletsim.ParseURL(args[0]); err != nil {
				return usageErr("%v", err)
			}
			w, err := walletsim.Load(dir)
			if err != nil {
				return usageErr("%v", err)
			}
			tx, hc, err := fetchTx(cmd, args[0])
			if err != nil {
				return err
			}
			describe(errOut, tx)
			if code != "" && !sameCode(code, tx.ComparisonCode) {
				fmt.Fprintf(errOut, "The code you gave (%s) differs from this transaction's: not signing.\n", code)
				return decline(cmd, hc, tx, walletsim.DeclineCodesDiffer)
			}
			if !yes {
				fmt.Fprint(errOut, "Approve and sign? [y]es / [n]o / [d]ifferent code in the browser: ")
				line, _ := bufio.NewReader(io.LimitReader(cmd.InOrStdin(), 1024)).ReadString('\n')
				switch a := strings.ToLower(strings.TrimSpace(line)); a {
				case "y", "yes":
				case "d", "different":
					return decline(cmd, hc, tx, walletsim.DeclineCodesDiffer)
				default:
					return decline(cmd, hc, tx, walletsim.DeclineDeclined)
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), walletTimeout)
			defer cancel()
			if err := w.Submit(ctx, hc, tx, format); err != nil {
				return walletFailure(out, err)
			}
			writeJSON(out, map[string]any{"status": "verified", "transaction": tx.ID, "purpose": tx.Purpose, "format": format})
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "wallet directory written by enroll")
	f.StringVar(&format, "format", walletsim.FormatJWS, "signature envelope: jws, cms or raw")
	f.StringVar(&code, "code", "", "the confirmation code the login page shows; a different one is reported instead of signing")
	f.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	return cmd
}

func newWalletDeclineCmd() *cobra.Command {
	var codesDiffer bool
	cmd := &cobra.Command{
		Use:   "decline URL [--codes-differ]",
		Short: "Tell the provider you will not sign a transaction",
		Long: `decline fetches the transaction at URL, as approve does, and tells the
provider that the resident declines it, or with --codes-differ that the
confirmation code differs from the login page's. The login page stops
waiting at once, says why and offers to try again. Nothing is signed, and
no wallet directory is needed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tx, hc, err := fetchTx(cmd, args[0])
			if err != nil {
				return err
			}
			describe(cmd.ErrOrStderr(), tx)
			reason := walletsim.DeclineDeclined
			if codesDiffer {
				reason = walletsim.DeclineCodesDiffer
			}
			return decline(cmd, hc, tx, reason)
		},
	}
	cmd.Flags().BoolVar(&codesDiffer, "codes-differ", false, "report that the confirmation codes differ")
	return cmd
}

// walletFailure prints a provider refusal as JSON (status 1) or reports a
// transport failure (status 2).
func walletFailure(out io.Writer, err error) error {
	var we *walletsim.Error
	if errors.As(err, &we) {
		writeJSON(out, map[string]any{"error": we.Code, "error_description": we.Description, "http_status": we.Status})
		return &exitError{code: exitRefused, err: err, quiet: true}
	}
	writeJSON(out, map[string]any{"error": err.Error()})
	return &exitError{code: exitUsage, err: err, quiet: true}
}

func describe(w io.Writer, tx *walletsim.Transaction) {
	what := "sign in"
	if tx.Purpose == "proofing" {
		what = "identity proofing (your name, birth date, gender and address are read from the signature certificate)"
	}
	fmt.Fprintf(w, "Service:      %s (%s)\n", tx.RP.DisplayName, tx.RP.ClientID)
	if tx.RP.Purpose != "" {
		fmt.Fprintf(w, "Purpose:      %s\n", tx.RP.Purpose)
	}
	fmt.Fprintf(w, "Provider:     %s\n", tx.Issuer)
	fmt.Fprintf(w, "Request:      %s\n", what)
	claims := "identifier only"
	if len(tx.RequestedClaims) > 0 {
		claims = strings.Join(tx.RequestedClaims, ", ")
	}
	fmt.Fprintf(w, "Information:  %s\n", claims)
	fmt.Fprintf(w, "Certificates: %s\n", strings.Join(tx.Certificates, ", "))
	fmt.Fprintf(w, "Expires:      %s\n", tx.Expires().Format(time.RFC3339))
	fmt.Fprintf(w, "Confirmation code: %s  (must match the login page)\n", tx.ComparisonCode)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
