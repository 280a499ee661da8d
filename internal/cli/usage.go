package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/metering"
)

func (e *env) usageCmd() *cobra.Command {
	var q client.UsageQuery
	var format string
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Requests, GB-seconds, CPU and cost per function, day or hour",
		Long:  "Usage as metered by the server: requests, errors, throttles, cold starts, GB-seconds (configured memory × billed duration, rounded up to 1 ms as Lambda bills), CPU-seconds, duration percentiles and cost at the server's prices.",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case "table", "csv", "json":
			default:
				return usageError{fmt.Errorf("--format %q: want table, csv or json", format)}
			}
			switch q.By {
			case metering.ByFunction, metering.ByDay, metering.ByHour:
			default:
				return usageError{fmt.Errorf("--by %q: want function, day or hour", q.By)}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			if format == "csv" {
				b, err := c.UsageCSV(cmd.Context(), q)
				if err != nil {
					return err
				}
				_, err = e.stdout.Write(b)
				return err
			}
			rep, err := c.Usage(cmd.Context(), q)
			if err != nil {
				return err
			}
			if format == "json" {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			e.writeUsage(rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&q.Since, "since", "24h", "from: a duration back from now (24h, 720h) or an RFC 3339 time")
	f.StringVar(&q.Until, "until", "", "to (default now): a duration back from now or an RFC 3339 time")
	f.StringVar(&q.By, "by", metering.ByFunction, "one row per function, day or hour")
	f.StringVar(&q.Function, "function", "", "only this function")
	f.StringVar(&format, "format", "table", "table, csv or json")
	return cmd
}

func (e *env) writeUsage(rep *metering.Report) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tREQUESTS\tERRORS\tTHROTTLES\tCOLD\tGB-S\tCPU-S\tP50 MS\tP90 MS\tP99 MS\tCOST USD\t\n", rep.By)
	row := func(r *metering.Row) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.4f\t%.4f\t%.2f\t%.2f\t%.2f\t%.6f\t\n", r.Key, r.Requests, r.Errors, r.Throttles, r.ColdStarts,
			r.GBSeconds, r.CPUSeconds, r.DurationMS.P50, r.DurationMS.P90, r.DurationMS.P99, r.Cost)
	}
	for i := range rep.Rows {
		row(&rep.Rows[i])
	}
	row(&rep.Totals.Row)
	tw.Flush()
	if rep.Totals.FreeRequests > 0 || rep.Totals.FreeGBSeconds > 0 {
		fmt.Fprintf(e.stdout, "free tier: %d requests, %.4f GB-s; cost after it: %.6f USD\n", rep.Totals.FreeRequests, rep.Totals.FreeGBSeconds, rep.Totals.CostAfterFree)
	}
	fmt.Fprintf(e.stdout, "prices: %.2f USD per million requests, %.10f USD per GB-second\n", rep.Prices.PerMillionRequests, rep.Prices.PerGBSecond)
}
