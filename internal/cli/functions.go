package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ternhq/tern/internal/archive"
	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/manifest"
)

func (e *env) deployCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "deploy [DIR]",
		Short: "Zip a function folder, upload it and make it the current version",
		Long:  "Zip DIR (default: the current folder) leaving out .git and what .ternignore lists, upload it, and print the new version. DIR must hold a " + manifest.FileName + ".",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			if _, err := os.Stat(filepath.Join(dir, manifest.FileName)); err != nil {
				return fmt.Errorf("%s has no %s: %w", dir, manifest.FileName, err)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			st, err := archive.Build(dir, &buf)
			if err != nil {
				return err
			}
			size := buf.Len()
			v, err := c.Deploy(cmd.Context(), &buf)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deployed %s version %d (%d files, %s zipped, sha256 %s)\n",
				v.Name, v.Version, st.Files, humanBytes(int64(size)), v.CodeSHA256[:12])
			return nil
		},
	}
}

func (e *env) invokeCmd() *cobra.Command {
	var data, key string
	var async bool
	cmd := &cobra.Command{
		Use:   "invoke NAME [-]",
		Short: "Invoke a function directly and print its result",
		Long:  "Invoke NAME (or NAME@ALIAS, NAME@VERSION) with the event given by --data (JSON text, or @file), or read from standard input with '-'. A function error prints the error JSON and exits 1. With --async the event is queued and its request id printed.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 || (len(args) == 2 && args[1] != "-") {
				return usageError{errors.New("usage: tern invoke NAME [--data JSON | --data @file | -]")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			payload, err := e.payload(data, len(args) == 2)
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			if async {
				acc, err := c.InvokeAsync(cmd.Context(), args[0], payload, key)
				if err != nil {
					return err
				}
				note := ""
				if acc.Duplicate {
					note = " (a duplicate of an event accepted before)"
				}
				fmt.Fprintf(e.stdout, "queued %s%s\n", acc.RequestID, note)
				return nil
			}
			if key != "" {
				return usageError{errors.New("--idempotency-key is for --async invocations")}
			}
			out, err := c.Invoke(cmd.Context(), args[0], payload)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s\n", bytes.TrimRight(out, "\n"))
			return nil
		},
	}
	cmd.Flags().StringVarP(&data, "data", "d", "", "the event: JSON text, @file, or - for standard input")
	cmd.Flags().BoolVar(&async, "async", false, "queue the event and return once it is stored (retries and dead letters as on Lambda)")
	cmd.Flags().StringVar(&key, "idempotency-key", "", "with --async: events with the same key are stored once")
	return cmd
}

// payload reads the event from the flag, a file or stdin, and checks it is
// JSON.
func (e *env) payload(data string, stdin bool) ([]byte, error) {
	var b []byte
	var err error
	switch {
	case stdin || data == "-":
		b, err = io.ReadAll(e.stdin)
	case strings.HasPrefix(data, "@"):
		b, err = os.ReadFile(data[1:])
	case data == "":
		b = []byte("{}")
	default:
		b = []byte(data)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the event: %w", err)
	}
	if !json.Valid(b) {
		return nil, usageError{errors.New("the event is not valid JSON")}
	}
	return b, nil
}

func (e *env) lsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List functions",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			fns, err := c.List(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tRUNTIME\tHANDLER\tMEMORY\tTIMEOUT\tDEPLOYED")
			for _, f := range fns {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d MB\t%s\t%s\n", f.Name, f.Version, f.Runtime, f.Handler, f.Memory, f.Timeout, f.Created.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
}

func (e *env) getCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a function, its manifest, versions and instances",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			var out bytes.Buffer
			if err := json.Indent(&out, raw, "", "  "); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, out.String())
			return nil
		},
	}
}

func (e *env) statsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats NAME",
		Short: "Show a function's invocation counts (cold and warm starts, queued, throttled, errors) and instances",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			st, err := c.Stats(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(e.stdout).Encode(st)
			}
			n := st.Counts
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "invocations\t%d\n", n.Invocations)
			fmt.Fprintf(tw, "cold starts\t%d\n", n.ColdStarts)
			fmt.Fprintf(tw, "warm starts\t%d\n", n.WarmStarts)
			fmt.Fprintf(tw, "queued\t%d\n", n.Queued)
			fmt.Fprintf(tw, "throttled\t%d\n", n.Throttled)
			fmt.Fprintf(tw, "function errors\t%d\n", n.FunctionErrors)
			fmt.Fprintf(tw, "timeouts\t%d\n", n.Timeouts)
			fmt.Fprintf(tw, "crashes\t%d\n", n.Crashes)
			for _, in := range st.Instances {
				fmt.Fprintf(tw, "version %d instances\t%d (%d idle, %d starting, %d queued)\n", in.Version, in.Instances, in.Idle, in.Starting, in.Queued)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (e *env) rmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Delete a function with all its versions and stop its instances",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := c.Delete(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted %s\n", args[0])
			return nil
		},
	}
}

func (e *env) logsCmd() *cobra.Command {
	var q struct {
		follow       bool
		since, until string
		req          string
		grep, output string
	}
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a function's logs: its output and START, END and REPORT lines",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if q.output != "text" && q.output != "json" {
				return usageError{fmt.Errorf("--output: want text or json, got %q", q.output)}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			enc := json.NewEncoder(e.stdout)
			return c.Logs(cmd.Context(), args[0], client.LogQuery{Since: q.since, Until: q.until, RequestID: q.req, Grep: q.grep, Follow: q.follow}, func(en *logs.Entry) error {
				if q.output == "json" {
					return enc.Encode(en)
				}
				_, err := fmt.Fprintln(e.stdout, textLine(en))
				return err
			})
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&q.follow, "follow", "f", false, "keep printing new lines")
	f.StringVar(&q.since, "since", "", "only lines newer than this: a duration (1h) or an RFC 3339 time")
	f.StringVar(&q.until, "until", "", "only lines up to this: a duration back from now (10m) or an RFC 3339 time (not with -f)")
	f.StringVar(&q.req, "request", "", "only lines of this request id")
	f.StringVar(&q.grep, "grep", "", "only lines containing this text")
	f.StringVarP(&q.output, "output", "o", "text", "text or json")
	return cmd
}

// textLine shows an entry the way Lambda's log lines read: platform lines
// as they are, function lines with their time and request id unless the
// runtime already wrote them.
func textLine(en *logs.Entry) string {
	msg := strings.ReplaceAll(en.Message, "\r", "\n")
	if en.Stream == logs.StreamPlatform || strings.Count(msg, "\t") >= 3 {
		return msg
	}
	return en.Time.UTC().Format("2006-01-02T15:04:05.000Z") + "\t" + en.RequestID + "\t" + msg
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}
