package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit statuses of every watashi command. Scripts depend on them.
const (
	exitOK      = 0
	exitRefused = 1 // input read, but refused (invalid signature, bad certificate)
	exitUsage   = 2 // usage, unreadable input, configuration, internal failure
)

// exitError carries the status a command wants main to exit with. A command
// that has already printed its JSON answer returns one with quiet set, so
// that nothing more is written.
type exitError struct {
	code  int
	err   error
	quiet bool
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErr marks an error as a usage or input problem (status 2).
func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line in-process and returns the exit status, so
// tests drive exactly what main does. It never panics: a panic anywhere
// below is turned into a JSON error and status 2, because scripts parse our
// standard output and a Go stack trace there would be read as garbage.
func run(args []string, stdout, stderr io.Writer) int {
	return execute(nil, args, stdout, stderr)
}

// execute runs root (newRootCmd() when nil) with the panic guard.
func execute(root *cobra.Command, args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			writeJSON(stdout, map[string]any{"error": fmt.Sprintf("internal error: %v", r)})
			fmt.Fprintln(stderr, "watashi: internal error (recovered panic)")
			code = exitUsage
		}
	}()
	if root == nil {
		root = newRootCmd()
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if !ee.quiet && ee.err != nil {
			fmt.Fprintf(stderr, "watashi: %v\n", ee.err)
		}
		return ee.code
	}
	// Cobra's own errors: unknown command or flag, wrong argument count.
	fmt.Fprintf(stderr, "watashi: %v\n", err)
	fmt.Fprintln(stderr, "Run 'watashi --help' for usage.")
	return exitUsage
}

// newRootCmd builds the whole command tree. Each subcommand family lives in
// its own file and is added here, one line each.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "watashi",
		Short: "OpenID Connect provider bridging Japan's public PKI (JPKI)",
		Long: `watashi bridges JPKI (My Number Card and smartphone certificates) to OpenID Connect.

Exit status: 0 success, 1 input refused, 2 usage or unreadable input.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	for _, c := range subcommands {
		root.AddCommand(c())
	}
	return root
}

// subcommands lists every command family. Each lives in its own file and
// registers itself from an init function:
//
//	func init() { subcommands = append(subcommands, newKeysCmd) }
var subcommands = []func() *cobra.Command{newPKICmd}

// writeJSON prints v as one indented JSON object followed by a newline.
func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(w, "{\"error\": %q}\n", "cannot encode output: "+err.Error())
	}
}
