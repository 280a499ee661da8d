// Package cli is the `tern` command line: `tern serve` runs the server;
// every other command calls its control API through package client.
//
// Exit codes: 0 success, 1 failure (including a function error, whose JSON
// is printed on stdout), 2 wrong usage.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"

	"github.com/spf13/cobra"

	"github.com/ternhq/tern/internal/auth"
	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/server"
)

// Version is set at build time.
var Version = "dev"

// usageError marks errors in how the command was called (exit code 2).
type usageError struct{ error }

// env holds what every command shares.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	server         string
	token          string
}

// Main runs the tern command with args and returns the exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	root := e.root()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var fe *client.FunctionError
	if errors.As(err, &fe) {
		fmt.Fprintf(stdout, "%s\n", fe.Body)
		fmt.Fprintf(stderr, "Error: the function failed (%s)\n", fe.Type)
		return 1
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func (e *env) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "tern",
		Short:         "Tern runs functions on your own machines",
		Long:          "Tern is a serverless platform you run yourself: deploy functions written for AWS Lambda, call them over HTTP, and pay for nothing you do not use.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionLine(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&e.server, "server", envOr("TERN_SERVER", "http://127.0.0.1:8080"), "Tern server URL (env TERN_SERVER)")
	pf.StringVar(&e.token, "token", os.Getenv("TERN_TOKEN"), "API token (env TERN_TOKEN; default: the local server's admin token)")
	root.AddCommand(
		e.serveCmd(),
		e.initCmd(),
		e.deployCmd(),
		e.invokeCmd(),
		e.lsCmd(),
		e.getCmd(),
		e.rmCmd(),
		e.logsCmd(),
		e.statsCmd(),
		e.aliasCmd(),
		e.rollbackCmd(),
		e.publishCmd(),
		e.topicCmd(),
		e.eventsCmd(),
		e.dlqCmd(),
		e.secretCmd(),
		e.usageCmd(),
		e.keysCmd(),
		e.auditCmd(),
		e.doctorCmd(),
		e.versionCmd(),
	)
	return root
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// client returns an API client, finding the token of a local server in
// its data dir when none was given.
func (e *env) client() (*client.Client, error) {
	u, err := url.Parse(e.server)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, usageError{fmt.Errorf("--server: want a URL such as http://127.0.0.1:8080, got %q", e.server)}
	}
	tok := e.token
	if tok == "" && isLoopback(u.Hostname()) {
		dir := envOr("TERN_DATA_DIR", server.DefaultDataDir())
		if t, err := auth.Load(auth.TokenPath(dir)); err == nil {
			tok = t
		}
	}
	if tok == "" {
		return nil, usageError{errors.New("no API token: pass --token or set TERN_TOKEN")}
	}
	return client.New(e.server, tok), nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// exactArgs is cobra.ExactArgs answering with a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.MaximumNArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
