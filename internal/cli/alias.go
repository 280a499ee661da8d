package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ternhq/tern/internal/registry"
)

func (e *env) aliasCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alias",
		Short: "Name versions of a function: /fn/NAME@ALIAS routes to them",
	}
	var weights string
	set := &cobra.Command{
		Use:   "set NAME ALIAS [VERSION]",
		Short: "Point ALIAS at VERSION, or split it between two versions with --weight 8=90,7=10",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || len(args) > 3 || (len(args) == 3) == (weights != "") {
				return usageError{errors.New("usage: tern alias set NAME ALIAS VERSION, or tern alias set NAME ALIAS --weight V1=P1,V2=P2")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			routes, err := parseRoutes(args, weights)
			if err != nil {
				return usageError{err}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			a, err := c.SetAlias(cmd.Context(), args[0], args[1], routes)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s@%s → %s\n", a.Function, a.Name, routesText(a.Routes))
			return nil
		},
	}
	set.Flags().StringVar(&weights, "weight", "", "split between two versions: VERSION=PERCENT,VERSION=PERCENT (summing to 100)")
	ls := &cobra.Command{
		Use:   "ls NAME",
		Short: "List a function's aliases",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			as, err := c.Aliases(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ALIAS\tVERSIONS")
			for _, a := range as {
				fmt.Fprintf(tw, "%s\t%s\n", a.Name, routesText(a.Routes))
			}
			return tw.Flush()
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME ALIAS",
		Short: "Delete an alias",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := c.DeleteAlias(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted %s@%s\n", args[0], args[1])
			return nil
		},
	}
	cmd.AddCommand(set, ls, rm)
	return cmd
}

// parseRoutes reads "tern alias set" arguments: a version, or weights.
func parseRoutes(args []string, weights string) ([]registry.Route, error) {
	if weights == "" {
		n, err := strconv.Atoi(args[2])
		if err != nil || n < 1 {
			return nil, fmt.Errorf("VERSION: want a version number, got %q", args[2])
		}
		return []registry.Route{{Version: n, Weight: 100}}, nil
	}
	var routes []registry.Route
	for _, part := range strings.Split(weights, ",") {
		v, p, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err1 := strconv.Atoi(v)
		w, err2 := strconv.Atoi(strings.TrimSuffix(p, "%"))
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("--weight: want VERSION=PERCENT pairs such as 8=90,7=10, got %q", part)
		}
		routes = append(routes, registry.Route{Version: n, Weight: w})
	}
	return routes, nil
}

func routesText(routes []registry.Route) string {
	parts := make([]string, len(routes))
	for i, r := range routes {
		parts[i] = fmt.Sprintf("version %d (%d%%)", r.Version, r.Weight)
	}
	return strings.Join(parts, ", ")
}

func (e *env) rollbackCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rollback NAME",
		Short: "Make the version before the current one current again, in one step",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			v, err := c.Rollback(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s is at version %d\n", v.Name, v.Version)
			return nil
		},
	}
}
