package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ternhq/tern/internal/client"
)

func (e *env) auditCmd() *cobra.Command {
	var q client.AuditQuery
	var output string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show who changed what and when (admin only)",
		Long: "Show the audit stream: every deploy, delete, alias change, rollback, topic change, dead-letter replay, key and secret change, " +
			"with the key (or admin-token) that asked, its role, the target and the outcome (ok, or the error the request was answered with).",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if q.Limit < 0 {
				return usageError{fmt.Errorf("--limit %d: want a positive number", q.Limit)}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			es, err := c.Audit(cmd.Context(), q)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(e.stdout)
				for _, en := range es {
					if err := enc.Encode(en); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tPRINCIPAL\tROLE\tACTION\tTARGET\tVERSION\tOUTCOME\tDETAIL\tREMOTE")
			for _, en := range es {
				version := "-"
				if en.Version != 0 {
					version = strconv.Itoa(en.Version)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", en.Time.Local().Format(time.DateTime), en.Principal, en.Role, en.Action,
					orDash(en.Target), version, en.Outcome, orDash(clip(en.Detail, 60)), orDash(en.Remote))
			}
			tw.Flush()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&q.Since, "since", "24h", "from: a duration back from now (24h, 7d) or an RFC 3339 time")
	f.StringVar(&q.Function, "function", "", "only changes to this function")
	f.IntVar(&q.Limit, "limit", 0, "show only the newest N entries (default 1000)")
	f.StringVarP(&output, "output", "o", "table", "table or json (one object a line)")
	return cmd
}
