package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ternhq/tern/internal/api"
	"github.com/ternhq/tern/internal/auth"
)

func (e *env) keysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create, list and revoke API keys (admin only)",
		Long: "API keys let people and programs call the API with less than the admin token: a role (admin, deployer, invoker or viewer), " +
			"optionally limited to some functions, optionally expiring. The server keeps only a hash of each key.",
	}
	var req api.KeyRequest
	create := &cobra.Command{
		Use:   "create --role ROLE",
		Short: "Make a key and print it (it is shown only this once)",
		Long: "Make a key and print it on stdout. Roles: admin (everything), deployer (read, invoke, deploy), invoker (invoke only), viewer (read only). " +
			"--functions limits the key to routes about those functions.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := auth.ParseRole(req.Role); err != nil {
				return usageError{fmt.Errorf("--role %q: want admin, deployer, invoker or viewer", req.Role)}
			}
			if req.Expires != "" {
				if d, err := auth.ParseDuration(req.Expires); err != nil || d <= 0 {
					return usageError{fmt.Errorf("--expires %q: want a duration such as 30d or 12h", req.Expires)}
				}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			k, err := c.CreateKey(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, k.Secret)
			fmt.Fprintf(e.stderr, "Created key %s (%s). It will not be shown again: store it now.\n", k.ID, keySummary(&k.Key))
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&req.Role, "role", "", "admin, deployer, invoker or viewer (required)")
	f.StringSliceVar(&req.Functions, "functions", nil, "limit the key to these functions (comma-separated)")
	f.StringVar(&req.Expires, "expires", "", "how long the key is valid, such as 30d or 12h (default: until revoked)")
	f.StringVar(&req.Name, "name", "", "a name to tell the key by")
	var output string
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List keys (their records, never the keys)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			ks, err := c.Keys(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(e.stdout)
				for _, k := range ks {
					if err := enc.Encode(k); err != nil {
						return err
					}
				}
				return nil
			}
			now := time.Now()
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tROLE\tFUNCTIONS\tCREATED\tEXPIRES\tCREATED BY")
			for _, k := range ks {
				fns, expires := "*", "never"
				if len(k.Functions) > 0 {
					fns = strings.Join(k.Functions, ",")
				}
				if !k.Expires.IsZero() {
					expires = k.Expires.Local().Format(time.DateTime)
					if k.Expired(now) {
						expires += " (expired)"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, orDash(k.Name), k.Role, fns, k.Created.Local().Format(time.DateTime), expires, k.CreatedBy)
			}
			tw.Flush()
			return nil
		},
	}
	ls.Flags().StringVarP(&output, "output", "o", "table", "table or json (one object a line)")
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a key: it stops working at once",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := c.RevokeKey(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "revoked key %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, ls, revoke)
	return cmd
}

func keySummary(k *auth.Key) string {
	s := "role " + string(k.Role)
	if len(k.Functions) > 0 {
		s += ", functions " + strings.Join(k.Functions, ", ")
	}
	if k.Expires.IsZero() {
		return s + ", does not expire"
	}
	return s + ", expires " + k.Expires.Local().Format(time.DateTime)
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return usageError{fmt.Errorf("--output %q: want table or json", o)}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
