// Package server is Tern's composition root: it builds the parts of
// `tern serve` in order (store, registry, logs, runtimes, dispatcher, HTTP),
// undoes the started ones if a later one fails, and stops them in reverse.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/api"
	"github.com/ternhq/tern/internal/apierror"
	"github.com/ternhq/tern/internal/audit"
	"github.com/ternhq/tern/internal/auth"
	"github.com/ternhq/tern/internal/dirlock"
	"github.com/ternhq/tern/internal/dispatch"
	"github.com/ternhq/tern/internal/events"
	"github.com/ternhq/tern/internal/gateway"
	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/manifest"
	"github.com/ternhq/tern/internal/metering"
	"github.com/ternhq/tern/internal/metrics"
	"github.com/ternhq/tern/internal/ratelimit"
	"github.com/ternhq/tern/internal/registry"
	"github.com/ternhq/tern/internal/runtime"
	"github.com/ternhq/tern/internal/sandbox"
	"github.com/ternhq/tern/internal/secrets"
	"github.com/ternhq/tern/internal/store"
	"github.com/ternhq/tern/internal/tracing"
	"github.com/ternhq/tern/internal/uids"
)

// Server is a running `tern serve`.
type Server struct {
	cfg Config
	log *slog.Logger

	store    *store.Store
	registry *registry.Registry
	secrets  *secrets.Store
	sink     *logs.Sink
	disp     *dispatch.Dispatcher
	events   *events.Service
	metrics  *metrics.Metrics
	usage    *metering.Sink       // nil when metering is off
	agg      *metering.Aggregator // nil when metering is off
	launcher *runtime.Launcher
	http     *http.Server
	ln       net.Listener
	scheme   string // http, or https with --tls-cert
	token    string
	served   chan error

	stops []func(context.Context) error // in start order
}

// Start builds and starts every part. On error, the parts already started
// are stopped again.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// Instances run in their code folder: every path handed to them must
	// be absolute.
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	cfg.DataDir = dataDir
	s := &Server{cfg: cfg, log: log, scheme: "http"}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = s.stop(cctx)
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	// One data dir, one server, before anything in it is read or changed.
	lock, err := dirlock.Acquire(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s.stops = append(s.stops, func(context.Context) error { return lock.Release() })
	// The port next, before anything starts: a port in use is the most
	// common reason a server cannot start.
	if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	ln := s.ln
	s.stops = append(s.stops, func(context.Context) error {
		_ = ln.Close() // closed already once the HTTP server shut down
		return nil
	})
	// Owner-only also when it existed before: the token and the keys are
	// there.
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	tmp := filepath.Join(cfg.DataDir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}

	var natsToken string
	if cfg.NATSListen != "" && cfg.NATSURL == "" {
		// Functions share the host's loopback: the open client port
		// answers only clients that present this token.
		natsToken = os.Getenv("TERN_NATS_TOKEN")
		if natsToken == "" {
			if natsToken, _, err = auth.LoadOrCreateNATS(cfg.DataDir); err != nil {
				return nil, err
			}
		} else if !urlSafeToken(natsToken) {
			return nil, errors.New("TERN_NATS_TOKEN: use only letters, digits and - . _ ~ (it goes into nats://<token>@host URLs)")
		}
		log.Info("store: NATS clients authenticate with the token in TERN_NATS_TOKEN or this file: nats://<token>@host:port",
			"path", filepath.Join(cfg.DataDir, auth.NATSTokenFile))
		if host, _, err := net.SplitHostPort(cfg.NATSListen); err == nil {
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				log.Warn("store: the NATS client port listens beyond loopback without TLS: its token and data cross the network in the clear", "listen", cfg.NATSListen)
			}
		}
	}
	s.store, err = store.Open(ctx, store.Config{
		URL:              cfg.NATSURL,
		Dir:              filepath.Join(cfg.DataDir, "nats"),
		ClientListen:     cfg.NATSListen,
		ClientToken:      natsToken,
		SyncAlways:       cfg.SyncAlways,
		LogsMaxAge:       cfg.LogsMaxAge,
		LogsMaxBytes:     cfg.LogsMaxBytes,
		DedupeWindow:     cfg.DedupeWindow,
		UsageRawMaxAge:   cfg.UsageRawMaxAge,
		UsageRawMaxBytes: cfg.UsageRawMaxBytes,
	}, log)
	if err != nil {
		return nil, err
	}
	s.stops = append(s.stops, func(context.Context) error { return s.store.Close() })

	s.secrets, err = secrets.Open(cfg.DataDir, s.store.Secrets, log)
	if err != nil {
		return nil, err
	}
	s.stops = append(s.stops, s.secrets.Close)

	s.sink = logs.NewSink(s.store.JS, 0, log)
	s.sink.Start()
	s.stops = append(s.stops, s.sink.Close)

	// Every invocation's usage record goes to the usage stream and to
	// Prometheus's per-function counters, unless metering is off (then
	// /metrics has the node's gauges only).
	s.metrics = metrics.New(metricsSource{s})
	var usage metering.Recorder // nil: no records, no CPU readings
	if cfg.Metering {
		s.usage = metering.NewSink(s.store.JS, metering.SinkConfig{Observers: []metering.Recorder{s.metrics}}, log)
		s.usage.Start()
		s.stops = append(s.stops, s.usage.Close)
		usage = s.usage
		s.agg = metering.NewAggregator(s.store.JS, s.store.Usage, metering.AggConfig{
			CloseAfter:      cfg.UsageRollupAfter,
			HourTTL:         cfg.UsageMaxAge,
			CheckpointEvery: cfg.UsageCheckpointEvery,
			Now:             cfg.UsageClock,
		}, log)
		if err := s.agg.Start(ctx); err != nil {
			return nil, fmt.Errorf("usage aggregates: %w", err)
		}
		s.stops = append(s.stops, s.agg.Close)
	}
	cfg.Dispatch.Usage = usage
	if cfg.OTLPEndpoint != "" {
		tr, err := tracing.New(tracing.Config{Endpoint: cfg.OTLPEndpoint}, log)
		if err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
		s.stops = append(s.stops, tr.Close)
		cfg.Dispatch.Tracer = tr
		log.Info("tracing: exporting spans over OTLP", "endpoint", cfg.OTLPEndpoint)
	}

	launcher, err := runtime.NewLauncher(runtime.Config{
		Dir:              filepath.Join(cfg.DataDir, "runtime"),
		NodePath:         cfg.NodePath,
		Region:           cfg.Region,
		MaxResponseBytes: cfg.MaxResponseBytes,
		PoolSize:         cfg.PoolSize,
		JailDir:          jailDir(cfg),
		TmpMB:            cfg.TmpMB,
		Logs:             s.sink,
		MaxOutputBytes:   cfg.MaxOutputBytes,
		Usage:            usage,
		Log:              log,
	})
	if err != nil {
		return nil, err
	}
	launcher.StartPool()
	s.launcher = launcher
	s.stops = append(s.stops, launcher.Close)

	// The registry tells the dispatcher about changes, and the dispatcher
	// asks the registry for code: build both, then start the registry.
	s.registry = registry.New(registry.Config{
		CacheDir: filepath.Join(cfg.DataDir, "code"),
		Limits:   cfg.Package,
		OnChange: func(c registry.Change) {
			s.disp.FunctionChanged(c.Name, c.Current)
			s.events.FunctionChanged(c.Name, c.Current)
			if c.Current == nil {
				s.metrics.Forget(c.Name)
			}
		},
		OnAliasChange: func(name string) { s.disp.RoutesChanged(name) },
		CheckManifest: func(ctx context.Context, m *manifest.Manifest) error {
			// A key limited to functions deploys only those.
			if err := auth.CheckDeploy(ctx, m.Name); err != nil {
				return err
			}
			return s.events.CheckManifest(ctx, m)
		},
	}, s.store.Functions, s.store.Code, log)
	st := &starter{reg: s.registry, launcher: launcher, secrets: s.secrets}
	if launcher.Jailed() {
		st.uids = uids.New(s.store.UIDs)
	}
	s.disp = dispatch.New(cfg.Dispatch, st, log)
	s.disp.Start()
	s.stops = append(s.stops, s.disp.Close)
	// Events stop before the dispatcher: running async invocations
	// finish (or are given back) while instances still run.
	cfg.Events.Region = cfg.Region
	s.events = events.New(cfg.Events, s.store, s.registry, s.disp, log)
	s.stops = append(s.stops, s.events.Close)
	if err := s.registry.Start(ctx); err != nil {
		return nil, err
	}
	s.stops = append(s.stops, func(context.Context) error { s.registry.Close(); return nil })
	s.events.Start()

	tok, created, err := auth.LoadOrCreate(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s.token = tok
	keys := auth.NewKeys(s.store.Keys, log)
	if err := keys.Start(ctx); err != nil {
		return nil, err
	}
	s.stops = append(s.stops, keys.Close)
	if created {
		log.Info("created the admin token", "path", auth.TokenPath(cfg.DataDir))
	} else {
		log.Info("admin token", "path", auth.TokenPath(cfg.DataDir))
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		apierror.WriteJSON(w, http.StatusOK, struct {
			Status string `json:"status"`
		}{"ok"})
	})
	authn := &auth.Authenticator{Token: tok, Keys: keys, KeyRPS: cfg.KeyRateLimit, KeyBurst: cfg.KeyRateBurst}
	limits := ratelimit.New()
	gateway.New(s.registry, s.disp, cfg.MaxPayloadBytes, log).WithAuthenticator(authn).WithLimits(limits).Register(mux)
	// Streams (log follows) end when shutdown starts instead of holding it
	// up for the whole shutdown timeout.
	streams, endStreams := context.WithCancel(context.Background())
	s.stops = append(s.stops, func(context.Context) error { endStreams(); return nil })
	a := api.New(api.Config{
		TempDir:         tmp,
		MaxPackageBytes: cfg.Package.MaxBytes,
		MaxPayloadBytes: cfg.MaxPayloadBytes,
		Streams:         streams,
		Prices:          cfg.Prices,
	}, api.Deps{Registry: s.registry, Dispatcher: s.disp, Events: s.events, Usage: s.usageAgg(), JS: s.store.JS, Secrets: s.secrets,
		Limits: limits,
		Access: &api.Access{Keys: keys, Audit: audit.New(s.store.JS, store.AuditStream, store.AuditSubjectPrefix), Log: log},
	}, log)
	mux.Handle("/v1/", authn.Guard(a.Handler()))
	mux.Handle("/v1/debug/pprof/", authn.Guard(auth.Permit(auth.PermAdmin, debugHandler())))
	mux.Handle("GET /metrics", authn.Guard(auth.Permit(auth.PermAdmin, s.metrics.Handler())))

	s.http = &http.Server{
		Handler: serveRoutes(mux),
		// Slow clients: a request's headers within 10 s, its whole body
		// within --read-timeout; answers are not bounded (log follows
		// and long invocations stream for as long as they last).
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		s.http.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.ln = tls.NewListener(s.ln, s.http.TLSConfig)
		s.scheme = "https"
	}
	s.http.RegisterOnShutdown(endStreams)
	s.served = make(chan error, 1)
	go func() { s.served <- s.http.Serve(s.ln) }()
	s.stops = append(s.stops, func(ctx context.Context) error {
		err := s.http.Shutdown(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			log.Warn("shutdown: in-flight requests did not finish in time; stopping instances")
			_ = s.http.Close()
		}
		<-s.served
		return nil
	})
	switch {
	case s.launcher.Jailed():
	case os.Geteuid() == 0 && cfg.Sandbox:
		log.Error("tern runs as root but cannot jail instances (see the isolation line): they run as root with every capability and can read the data dir; fix what the isolation line names, or run only code you trust")
	default:
		log.Warn("instances are not jailed (see the isolation line): they run as this user, can read the data dir (the admin token included) and see this host's processes; run only code you trust")
	}
	log.Info("tern is serving", "addr", s.Addr(), "data_dir", cfg.DataDir)
	return s, nil
}

// Addr is the address the HTTP server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the base URL of the HTTP server.
func (s *Server) URL() string { return s.scheme + "://" + s.Addr() }

// Jailed reports whether instances run in the jail (sandbox.Jail).
func (s *Server) Jailed() bool { return s.launcher.Jailed() }

// Pooled is how many generic instances wait in the runtime pools.
func (s *Server) Pooled() int { return s.launcher.Pooled() }

// Isolation lists the isolation controls and whether this host applies
// them to instances.
func (s *Server) Isolation() []sandbox.Control { return s.launcher.Controls() }

// PoolSizes is how many generic instances wait per runtime.
func (s *Server) PoolSizes() map[string]int { return s.launcher.PoolSizes() }

// NATSURL is the embedded NATS server's client URL when --nats-listen
// opened its port, else "".
func (s *Server) NATSURL() string { return s.store.ClientURLWithToken() }

// Token is the admin token.
func (s *Server) Token() string { return s.token }

// Close stops accepting requests, lets in-flight ones finish for at most
// the shutdown timeout, stops every instance, flushes logs and closes the
// store.
func (s *Server) Close(ctx context.Context) error {
	return s.stop(ctx)
}

func (s *Server) stop(ctx context.Context) error {
	var errs []error
	for i := len(s.stops) - 1; i >= 0; i-- {
		stop := s.stops[i]
		// Every step gets its own bound, so one slow part cannot starve
		// the ones after it (the store must still close).
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout+5*time.Second)
		if i == len(s.stops)-1 && s.http != nil {
			sctx, cancel = context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
		}
		if err := stop(sctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	s.stops = nil
	return errors.Join(errs...)
}

// Run starts the server and serves until ctx is done, then shuts down.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	s, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	case err := <-s.served:
		log.Error("http server stopped", "err", err)
		s.served <- err // for the stop step
	}
	return s.Close(context.Background())
}

// CodeObjectCount counts the code packages in the store (for tests and
// diagnostics).
func (s *Server) CodeObjectCount(ctx context.Context) (int, error) {
	infos, err := s.store.Code.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return 0, nil
	}
	return len(infos), err
}

// usageAgg is the aggregator as the API takes it (a nil interface when
// metering is off): its Sync first waits for this node's records to be
// stored, so an answer includes every invocation that ended before it.
func (s *Server) usageAgg() api.Usage {
	if s.agg == nil {
		return nil
	}
	return usageView{s.usage, s.agg}
}

type usageView struct {
	sink *metering.Sink
	*metering.Aggregator
}

func (u usageView) Sync(ctx context.Context) error {
	if err := u.sink.Flush(ctx); err != nil {
		return err
	}
	return u.Aggregator.Sync(ctx)
}

// metricsSource gives Prometheus the node's state at scrape time.
type metricsSource struct{ s *Server }

func (m metricsSource) Stats() []dispatch.Stats { return m.s.disp.Stats() }
func (m metricsSource) Usage() dispatch.Usage   { return m.s.disp.Usage() }
func (m metricsSource) PoolSizes() map[string]int {
	return m.s.launcher.PoolSizes()
}
func (m metricsSource) UsageRecords() (published, lost, buffered uint64) {
	if m.s.usage == nil {
		return 0, 0, 0
	}
	st := m.s.usage.Stats()
	return st.Published, st.Lost, st.Buffered
}
func (m metricsSource) LogDrops() map[string]logs.Drops { return m.s.sink.Drops() }
func (m metricsSource) EventSettleFailures() map[string]uint64 {
	if m.s.events == nil {
		return nil // not started yet
	}
	return m.s.events.SettleFailures()
}

// debugHandler serves Go's profiles under /v1/debug/pprof/ (behind the
// API's authentication).
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return http.StripPrefix("/v1", mux)
}

// serveRoutes answers what mux routes nowhere as JSON (apierror.Routes),
// but sends HTTP triggers straight to mux: /fn/<name>... always has a
// route (for every method), and the warm path is not routed twice.
func serveRoutes(mux *http.ServeMux) http.Handler {
	routes := apierror.Routes(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name, ok := strings.CutPrefix(r.URL.Path, "/fn/"); ok && name != "" && name[0] != '/' {
			mux.ServeHTTP(w, r)
			return
		}
		routes.ServeHTTP(w, r)
	})
}

// urlSafeToken: tok can stand as the user part of a URL as it is.
func urlSafeToken(tok string) bool {
	for _, c := range tok {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("-._~", c)) {
			return false
		}
	}
	return tok != ""
}
