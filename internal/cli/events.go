package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ternhq/tern/internal/events"
)

func (e *env) publishCmd() *cobra.Command {
	var attrs []string
	cmd := &cobra.Command{
		Use:   "publish TOPIC DATA|@FILE|-",
		Short: "Store a message on a queue topic",
		Long:  "Publish one message (UTF-8 text) to TOPIC. Functions with a queue trigger on the topic get it in an SQS-shaped batch. NATS clients may also publish to the subject tern.topic.TOPIC.",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			switch {
			case args[1] == "-":
				data, err = io.ReadAll(e.stdin)
			case strings.HasPrefix(args[1], "@"):
				data, err = os.ReadFile(args[1][1:])
			default:
				data = []byte(args[1])
			}
			if err != nil {
				return fmt.Errorf("reading the message: %w", err)
			}
			am := map[string]string{}
			for _, a := range attrs {
				k, v, ok := strings.Cut(a, "=")
				if !ok || k == "" {
					return usageError{fmt.Errorf("--attr %q: want NAME=VALUE", a)}
				}
				am[k] = v
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			p, err := c.Publish(cmd.Context(), args[0], data, am)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "published %s (sequence %d)\n", p.MessageID, p.Sequence)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&attrs, "attr", nil, "a message attribute NAME=VALUE (repeatable)")
	return cmd
}

func (e *env) topicCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "topic", Short: "Create, list and delete queue topics"}
	var maxAge string
	var maxBytes int64
	create := &cobra.Command{
		Use:   "create TOPIC",
		Short: "Create a topic",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			t, err := c.CreateTopic(cmd.Context(), events.TopicConfig{Name: args[0], MaxAge: maxAge, MaxBytes: maxBytes})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "created topic %s (subject %s, keeps %s, at most %s)\n", t.Name, t.Subject, t.MaxAge, humanBytes(t.MaxBytes))
			return nil
		},
	}
	create.Flags().StringVar(&maxAge, "max-age", "", "how long messages are kept (default 96h)")
	create.Flags().Int64Var(&maxBytes, "max-bytes", 0, "most bytes kept; a full topic refuses new messages (default 1 GiB)")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List topics with their depth per reading function",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			ts, err := c.Topics(cmd.Context())
			if err != nil {
				return err
			}
			e.writeTopics(ts)
			return nil
		},
	}
	rm := &cobra.Command{
		Use:   "rm TOPIC",
		Short: "Delete a topic and its messages",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := c.DeleteTopic(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted topic %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, ls, rm)
	return cmd
}

func (e *env) writeTopics(ts []events.TopicInfo) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	// DEPTH is what is not consumed yet (of the topic: what its reader
	// furthest behind has still to finish, or with no reader all it
	// keeps); STORED and BYTES also count messages every reader has
	// finished, until the next trim.
	fmt.Fprintln(tw, "TOPIC\tDEPTH\tSTORED\tBYTES\tFUNCTION\tFN DEPTH\tPENDING\tIN FLIGHT")
	for _, t := range ts {
		if len(t.Consumers) == 0 {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t-\t-\t-\t-\n", t.Name, t.Depth, t.Messages, humanBytes(int64(t.Bytes)))
		}
		for _, c := range t.Consumers {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%d\t%d\n", t.Name, t.Depth, t.Messages, humanBytes(int64(t.Bytes)), c.Function, c.Depth, c.Pending, c.InFlight)
		}
	}
	tw.Flush()
}

func (e *env) eventsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show schedules with their next tick, topics with their depth, and async backlogs",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			o, err := c.Events(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(o)
			}
			fmt.Fprintln(e.stdout, "Schedules")
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FUNCTION\tSCHEDULE\tTIMEZONE\tNEXT\tLAST")
			for _, s := range o.Schedules {
				last := "-"
				if !s.Last.IsZero() {
					last = s.Last.Local().Format(time.DateTime)
				}
				tz := s.Timezone
				if tz == "" {
					tz = "UTC"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Function, s.Schedule, tz, s.Next.Local().Format(time.DateTime), last)
			}
			tw.Flush()
			fmt.Fprintln(e.stdout, "\nTopics")
			e.writeTopics(o.Topics)
			fmt.Fprintln(e.stdout, "\nAsync")
			tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FUNCTION\tWAITING\tDELAYED\tIN FLIGHT\tDEAD LETTERS")
			for _, a := range o.Async {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", a.Function, a.Waiting, a.Delayed, a.InFlight, a.DeadLetters)
			}
			tw.Flush()
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func (e *env) dlqCmd() *cobra.Command {
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "dlq NAME",
		Short: "List a function's dead letters: events that failed for good, with their errors",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			ls, err := c.DeadLetters(cmd.Context(), args[0], limit)
			if err != nil {
				return err
			}
			if asJSON {
				jl := json.NewEncoder(e.stdout)
				for _, l := range ls {
					if err := jl.Encode(l); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tFAILED\tATTEMPTS\tERROR\tPAYLOAD")
			for _, l := range ls {
				kind := l.Kind
				if l.Topic != "" {
					kind += ":" + l.Topic
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", l.ID, kind, l.Failed.Local().Format(time.DateTime), l.Attempts,
					clip(l.ErrorType+": "+l.Error, 60), clip(string(l.Payload), 40))
			}
			tw.Flush()
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "most letters to show")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per letter, with the whole payload")
	replay := &cobra.Command{
		Use:   "replay NAME [ID...]",
		Short: "Send dead letters back to be run again (all of the function's without IDs)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usageError{errors.New("usage: tern dlq replay NAME [ID...]")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var ids []uint64
			for _, a := range args[1:] {
				id, err := strconv.ParseUint(a, 10, 64)
				if err != nil {
					return usageError{fmt.Errorf("dead letter id %q: want a number from tern dlq %s", a, args[0])}
				}
				ids = append(ids, id)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			sent, err := c.Replay(cmd.Context(), args[0], ids)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "replayed %d dead letter(s)\n", len(sent))
			return nil
		},
	}
	cmd.AddCommand(replay)
	return cmd
}

// clip shortens s to n characters on one line.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len([]rune(s)) > n {
		return string([]rune(s)[:n-1]) + "…"
	}
	return s
}
