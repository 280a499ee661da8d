package cli

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/ternhq/tern/internal/server"
)

func (e *env) serveCmd() *cobra.Command {
	cfg := server.DefaultConfig()
	var level string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Tern server: store, API, HTTP triggers and runtimes in one process",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				return usageError{fmt.Errorf("--log-level: %w", err)}
			}
			log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: lv}))
			if err := cfg.Validate(); err != nil {
				return usageError{err}
			}
			return server.Run(cmd.Context(), cfg, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", cfg.Listen, "HTTP address for the API, triggers and /healthz")
	f.StringVar(&cfg.DataDir, "data-dir", envOr("TERN_DATA_DIR", cfg.DataDir), "where Tern keeps its store, code cache and admin token (env TERN_DATA_DIR)")
	f.StringVar(&cfg.NATSURL, "nats-url", os.Getenv("TERN_NATS_URL"), "use this external NATS server or cluster instead of the embedded one (env TERN_NATS_URL)")
	f.StringVar(&cfg.NATSListen, "nats-listen", "", "open the embedded NATS server's client port on this address; clients present the token in <data dir>/nats.token or TERN_NATS_TOKEN (default: in-process only)")
	f.BoolVar(&cfg.SyncAlways, "sync-always", false, "fsync the embedded store on every write (default: every second)")
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long in-flight invocations may finish on shutdown")
	f.Int64Var(&cfg.Package.MaxBytes, "max-package", cfg.Package.MaxBytes, "largest accepted code package, bytes")
	f.Int64Var(&cfg.Package.MaxExpandedBytes, "max-expanded", cfg.Package.MaxExpandedBytes, "largest accepted unzipped code package, bytes")
	f.IntVar(&cfg.Package.MaxEntries, "max-entries", cfg.Package.MaxEntries, "most files in a code package")
	f.Int64Var(&cfg.MaxPayloadBytes, "max-payload", cfg.MaxPayloadBytes, "largest synchronous request body, bytes")
	f.Int64Var(&cfg.MaxResponseBytes, "max-response", cfg.MaxResponseBytes, "largest function response, bytes")
	f.IntVar(&cfg.Dispatch.MaxQueue, "max-queue", cfg.Dispatch.MaxQueue, "invocations that may wait per function version")
	f.IntVar(&cfg.Dispatch.MaxInstances, "max-instances", cfg.Dispatch.MaxInstances, "most function instances on this node (0: no cap)")
	f.IntVar(&cfg.Dispatch.MaxMemoryMB, "max-memory", cfg.Dispatch.MaxMemoryMB, "most configured function memory on this node, MB (default: the host's minus a reserve; 0: no cap)")
	f.DurationVar(&cfg.Dispatch.MaxQueueWait, "max-queue-wait", cfg.Dispatch.MaxQueueWait, "longest an invocation waits for an instance before 429")
	f.DurationVar(&cfg.LogsMaxAge, "logs-max-age", cfg.LogsMaxAge, "how long function logs are kept")
	f.Int64Var(&cfg.LogsMaxBytes, "logs-max-bytes", cfg.LogsMaxBytes, "how many bytes of function logs are kept")
	f.StringVar(&cfg.Region, "region", envOr("TERN_REGION", cfg.Region), "the AWS region functions are told they run in: AWS_REGION, their ARNs, queue and schedule events (env TERN_REGION)")
	f.Int64Var(&cfg.MaxOutputBytes, "logs-max-invocation-bytes", cfg.MaxOutputBytes, "how many bytes of output one invocation may put in the log (the rest is dropped, counted, and marked)")
	f.StringVar(&cfg.NodePath, "node", "", "node binary for nodejs functions (default: node on PATH)")
	f.IntVar(&cfg.PoolSize, "pool-size", cfg.PoolSize, "pre-started generic instances per runtime, for fast cold starts (0: off)")
	f.BoolVar(&cfg.Sandbox, "sandbox", cfg.Sandbox, "jail every instance: namespaces, a uid per function, read-only code, seccomp, Landlock (needs root)")
	f.IntVar(&cfg.TmpMB, "tmp-size", cfg.TmpMB, "size in MB of a jailed instance's /tmp (a disk of its own in the data dir) unless its function says ephemeralStorage; pooled instances have this size")
	f.Int64Var(&cfg.Events.MaxEventBytes, "max-event-size", cfg.Events.MaxEventBytes, "largest async event, queue message or CloudEvent, bytes")
	f.Int64Var(&cfg.Events.MaxBacklogBytes, "max-async-backlog", cfg.Events.MaxBacklogBytes, "refuse new async events (429) while this many bytes wait")
	f.DurationVar(&cfg.DedupeWindow, "dedupe-window", cfg.DedupeWindow, "how long idempotency keys, schedule ticks and CloudEvent ids are remembered")
	f.BoolVar(&cfg.Metering, "metering", cfg.Metering, "record every invocation's usage (tern usage, /metrics)")
	f.Float64Var(&cfg.Prices.PerMillionRequests, "price-per-million-requests", cfg.Prices.PerMillionRequests, "USD per million requests, for tern usage")
	f.Float64Var(&cfg.Prices.PerGBSecond, "price-per-gb-second", cfg.Prices.PerGBSecond, "USD per GB-second of configured memory × billed duration")
	f.Int64Var(&cfg.Prices.FreeRequests, "free-requests", 0, "free requests per calendar month")
	f.Float64Var(&cfg.Prices.FreeGBSeconds, "free-gb-seconds", 0, "free GB-seconds per calendar month")
	f.DurationVar(&cfg.UsageMaxAge, "usage-max-age", cfg.UsageMaxAge, "how long hourly usage rollups are kept (what tern usage can report)")
	f.DurationVar(&cfg.UsageRollupAfter, "usage-rollup-after", cfg.UsageRollupAfter, "roll raw usage records up into per-function minute aggregates this long after the minute (at least 16m: the longest timeout and a minute)")
	f.DurationVar(&cfg.UsageRawMaxAge, "usage-raw-max-age", cfg.UsageRawMaxAge, "how long raw usage records (one per invocation) are kept; must exceed --usage-rollup-after for an exact restart")
	f.Int64Var(&cfg.UsageRawMaxBytes, "usage-raw-max-bytes", cfg.UsageRawMaxBytes, "most bytes of raw usage records kept (the oldest go first); hold more than --usage-rollup-after of your peak load")
	f.StringVar(&cfg.OTLPEndpoint, "otlp-endpoint", os.Getenv("TERN_OTLP_ENDPOINT"), "send invocation spans (queue, init, execute) to this OTLP/HTTP endpoint, e.g. http://127.0.0.1:4318 (env TERN_OTLP_ENDPOINT; default: no tracing)")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (PEM; with --tls-key)")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "the certificate's private key (PEM)")
	f.DurationVar(&cfg.ReadTimeout, "read-timeout", cfg.ReadTimeout, "longest a client may take to send a whole request, body included (0: no limit)")
	f.IntVar(&cfg.KeyRateLimit, "key-rate-limit", 0, "requests per second each API key may make (0: no limit; the admin token is not limited)")
	f.IntVar(&cfg.KeyRateBurst, "key-rate-burst", 0, "requests an API key may make at once above its rate (default: the rate)")
	f.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	return cmd
}
