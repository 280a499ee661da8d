package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// DefaultServiceName is the service.name of Tern's spans when
// Config.ServiceName is empty.
const DefaultServiceName = "tern"

// tracesPath is the OTLP/HTTP path for traces.
const tracesPath = "/v1/traces"

// instrumentationName names the tracer that records Tern's spans.
const instrumentationName = "github.com/ternhq/tern/internal/tracing"

// Config configures trace export.
type Config struct {
	// Endpoint is the OTLP/HTTP collector, http or https. A base URL
	// ("http://127.0.0.1:4318", "https://otel.example.com/otlp") gets
	// "/v1/traces" appended to its path; a URL whose path already ends in
	// "/v1/traces" is used as is. Empty: tracing is off and every method
	// of the Tracer is a cheap no-op.
	Endpoint string
	// ServiceName is the service.name resource attribute; default "tern".
	ServiceName string
	// Headers are added to every export request, e.g. an authorization
	// header for the collector.
	Headers map[string]string
}

// Tracer records invocations as spans and exports them. A nil *Tracer and
// a Tracer built from a Config without an Endpoint are valid and do
// nothing. Its methods are safe for concurrent use.
type Tracer struct {
	provider *sdktrace.TracerProvider // nil when disabled
	tracer   trace.Tracer
	exporter *loggingExporter
	closed   atomic.Bool

	closeOnce sync.Once
	closeErr  error
}

// New returns a Tracer exporting to cfg.Endpoint, or a disabled Tracer when
// the endpoint is empty. It fails when the endpoint is not an http or https
// URL. It does not contact the collector: a collector that is down shows in
// the log, not here. Close the Tracer to flush its spans.
func New(cfg Config, log *slog.Logger) (*Tracer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Endpoint == "" {
		return &Tracer{}, nil
	}
	endpoint, err := tracesURL(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	opts := []otlptracehttp.Option{
		otlptracehttp.WithEndpointURL(endpoint),
		otlptracehttp.WithCompression(otlptracehttp.GzipCompression),
	}
	if len(cfg.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
	}
	// New only builds the client; the context is not kept.
	exp, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: exporter: %w", err)
	}

	name := cfg.ServiceName
	if name == "" {
		name = DefaultServiceName
	}
	res, err := resource.Merge(resource.Default(),
		resource.NewSchemaless(attribute.String("service.name", name)))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}

	le := &loggingExporter{SpanExporter: exp, log: log}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(le), // bounded queue, drops when full
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithIDGenerator(idGenerator{}),
	)
	log.Info("tracing: exporting spans", "endpoint", redact(endpoint), "service", name)
	return &Tracer{provider: tp, tracer: tp.Tracer(instrumentationName), exporter: le}, nil
}

// Enabled reports whether the Tracer exports spans: false for a nil Tracer
// or one built without an endpoint. It stays true after Close.
func (t *Tracer) Enabled() bool {
	return t != nil && t.provider != nil
}

// Close exports the spans still queued and shuts the exporter down,
// waiting at most until ctx is done. It returns an error if spans could not
// be exported while closing, or ctx's error if ctx ended first; the
// shutdown then goes on in the background, bounded by the export timeouts
// (10 s a request, 30 s a batch). Later calls return the first call's
// result. Invocation after Close does nothing.
func (t *Tracer) Close(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	t.closeOnce.Do(func() {
		t.closed.Store(true)
		before := t.exporter.failedSpans.Load()
		// The provider gives up without shutting the batch processor down
		// when its context is already done, which would leave the
		// processor's goroutine running forever: shut down without
		// cancellation, and stop waiting when ctx ends.
		done := make(chan error, 1)
		go func() { done <- t.provider.Shutdown(context.WithoutCancel(ctx)) }()
		finished := func(err error) error {
			if n := t.exporter.failedSpans.Load() - before; n > 0 {
				err = errors.Join(err, fmt.Errorf("%d spans not exported: %w", n, t.exporter.lastError()))
			}
			return err
		}
		var err error
		select {
		case err = <-done:
			err = finished(err)
		case <-ctx.Done():
			select {
			case err = <-done: // finished just in time
				err = finished(err)
			default:
				err = ctx.Err()
			}
		}
		if err != nil {
			t.closeErr = fmt.Errorf("tracing: close: %w", err)
		}
	})
	return t.closeErr
}

// tracesURL validates endpoint and returns the URL to post traces to.
func tracesURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		// url.Error quotes the URL, credentials included: keep only why.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return "", fmt.Errorf("tracing: endpoint is not a URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("tracing: endpoint %q: scheme must be http or https", redact(endpoint))
	case u.Host == "":
		return "", fmt.Errorf("tracing: endpoint %q: no host", redact(endpoint))
	case u.User != nil:
		return "", fmt.Errorf("tracing: endpoint %q: credentials in the URL are not sent; use a header", redact(endpoint))
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("tracing: endpoint %q: query and fragment are not supported", redact(endpoint))
	}
	if !strings.HasSuffix(u.Path, tracesPath) {
		u.Path = strings.TrimSuffix(u.Path, "/") + tracesPath
		u.RawPath = ""
	}
	return u.String(), nil
}

// redact drops the credentials from a URL for logs and errors.
func redact(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || u.User == nil {
		return endpoint
	}
	return u.Redacted()
}

// loggingExporter reports export failures to the log instead of the
// OpenTelemetry global error handler, which would print every failed batch
// to stderr. It logs when failures start and when they stop.
type loggingExporter struct {
	sdktrace.SpanExporter
	log *slog.Logger

	failing     atomic.Bool
	failedSpans atomic.Uint64 // spans whose export failed, ever
	mu          sync.Mutex
	lastErr     error
}

var _ sdktrace.SpanExporter = (*loggingExporter)(nil)

func (e *loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	if err == nil {
		if e.failing.Swap(false) {
			e.log.Info("tracing: exporting spans again")
		}
		return nil
	}
	e.failedSpans.Add(uint64(len(spans)))
	e.mu.Lock()
	e.lastErr = err
	e.mu.Unlock()
	if !e.failing.Swap(true) {
		e.log.Warn("tracing: exporting spans failed; spans are dropped until it succeeds", "err", err, "spans", len(spans))
	} else {
		e.log.Debug("tracing: exporting spans failed", "err", err, "spans", len(spans))
	}
	return nil
}

func (e *loggingExporter) lastError() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastErr
}
