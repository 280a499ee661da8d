package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ternhq/tern/internal/secrets"
)

const secretHelp = `Secrets are values a function reads from its environment (process.env.KEY,
os.environ["KEY"]), kept encrypted at rest and never shown again: Tern lists
their names only, and no command prints a value.

A secret named like a variable of tern.yaml's environment wins over it. The
variables and the secrets together may take at most 4096 bytes (names plus
values); an instance that would get more fails to start.

A change reaches new instances only: running ones keep the environment they
started with. Deploy again, or let the idle instances stop (scale.idle), for
every instance to see it.

Values on the command line stay in your shell's history; --from-file (- for
standard input) keeps them out.`

func (e *env) secretCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Set, list and remove a function's secrets (encrypted environment variables)",
		Long:  secretHelp,
	}
	var fromFile string
	set := &cobra.Command{
		Use:   "set NAME KEY=VALUE [KEY=VALUE...]",
		Short: "Set secrets of function NAME (KEY=VALUE, or KEY --from-file PATH)",
		Example: `  tern secret set api DB_PASSWORD=s3cret API_KEY=abc
  tern secret set api TLS_KEY --from-file key.pem
  printf %s "$DB_PASSWORD" | tern secret set api DB_PASSWORD --from-file -`,
		Long: secretHelp + `

With --from-file, the value is the file's content exactly, a final newline
included.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if fromFile != "" {
				if len(args) != 2 || strings.Contains(args[1], "=") {
					return usageError{errors.New("usage: tern secret set NAME KEY --from-file PATH")}
				}
				return nil
			}
			if len(args) < 2 {
				return usageError{errors.New("usage: tern secret set NAME KEY=VALUE [KEY=VALUE...], or tern secret set NAME KEY --from-file PATH")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			fn := args[0]
			pairs, err := e.secretPairs(args[1:], fromFile)
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			for _, p := range pairs {
				if err := c.SetSecret(cmd.Context(), fn, p[0], p[1]); err != nil {
					return fmt.Errorf("secret %s: %w", p[0], err)
				}
				fmt.Fprintf(e.stdout, "set secret %s of %s\n", p[0], fn)
			}
			return nil
		},
	}
	set.Flags().StringVar(&fromFile, "from-file", "", "read KEY's value from this file (- for standard input)")
	ls := &cobra.Command{
		Use:   "ls NAME",
		Short: "List the secrets of function NAME (names only)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			ss, err := c.Secrets(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SECRET\tUPDATED")
			for _, s := range ss {
				fmt.Fprintf(tw, "%s\t%s\n", s.Name, s.Updated.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME KEY",
		Short: "Remove secret KEY of function NAME",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := c.DeleteSecret(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "removed secret %s of %s\n", args[1], args[0])
			return nil
		},
	}
	cmd.AddCommand(set, ls, rm)
	return cmd
}

// secretPairs reads "tern secret set" arguments into KEY, VALUE pairs, all
// of them before any is sent. Errors never quote a value.
func (e *env) secretPairs(args []string, fromFile string) ([][2]string, error) {
	if fromFile != "" {
		v, err := e.readSecretFile(fromFile)
		if err != nil {
			return nil, err
		}
		return [][2]string{{args[0], v}}, nil
	}
	pairs := make([][2]string, 0, len(args))
	seen := map[string]bool{}
	for i, a := range args {
		k, v, ok := strings.Cut(a, "=")
		switch {
		case !ok || k == "":
			// The argument may be a value given without its key: do
			// not repeat it.
			return nil, usageError{fmt.Errorf("argument %d: want KEY=VALUE (or KEY --from-file PATH)", i+2)}
		case seen[k]:
			return nil, usageError{fmt.Errorf("%s is given twice", k)}
		}
		seen[k] = true
		pairs = append(pairs, [2]string{k, v})
	}
	return pairs, nil
}

// readSecretFile reads a value from path ("-": standard input), refusing
// one longer than a secret may be without reading all of it.
func (e *env) readSecretFile(path string) (string, error) {
	var r io.Reader = e.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("--from-file: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, secrets.MaxValueBytes+1))
	if err != nil {
		return "", fmt.Errorf("--from-file: %w", err)
	}
	if len(b) > secrets.MaxValueBytes {
		return "", fmt.Errorf("--from-file %s: a secret's value may take at most %d bytes", path, secrets.MaxValueBytes)
	}
	return string(b), nil
}
