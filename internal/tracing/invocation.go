package tracing

import (
	"context"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ternhq/tern/internal/metering"
)

// Span names of the children of an invocation's span.
const (
	spanQueue   = "queue"
	spanInit    = "init"
	spanExecute = "execute"
)

// Attribute keys. The faas.* keys are OpenTelemetry's semantic conventions
// for FaaS servers; the tern.* keys are Tern's own.
const (
	attrFaaSName         = attribute.Key("faas.name")
	attrFaaSVersion      = attribute.Key("faas.version")
	attrFaaSInvocationID = attribute.Key("faas.invocation_id")
	attrFaaSTrigger      = attribute.Key("faas.trigger")
	attrFaaSColdstart    = attribute.Key("faas.coldstart")
	attrTernTrigger      = attribute.Key("tern.trigger")
	attrTernOutcome      = attribute.Key("tern.outcome")
)

// Invocation is one finished invocation, as the dispatcher saw it.
type Invocation struct {
	// TraceHeader is the invocation's Lambda trace header
	// (X-Amzn-Trace-Id): "Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;
	// Sampled=<0|1>", Parent and Sampled optional. Empty or malformed: the
	// invocation starts a new trace.
	TraceHeader string

	Function  string
	Version   int
	RequestID string
	Trigger   string // metering.Trigger*
	Outcome   string // metering.Outcome*; any but success marks the span as an error

	Start    time.Time // the dispatcher took the request; a zero Start records nothing
	Acquired time.Time // the invocation got an instance; zero if it never did
	End      time.Time // the invocation finished

	Cold bool          // an instance was started for this invocation
	Init time.Duration // that instance's init time (cold only)
}

// Invocation records the spans of one finished invocation. It does not
// block: the spans are queued for export and dropped if the queue is full.
//
// The spans are "invoke <function>" (SERVER, Start→End) and its children
// "queue" (Start→Acquired), "init" (Acquired-Init→Acquired, cold starts
// with an Init only) and "execute" (Acquired→End). An invocation that never
// got an instance (zero Acquired, e.g. throttled) has a "queue" child over
// its whole span and no other. Acquired is clamped into [Start, End], End
// to no earlier than Start.
func (t *Tracer) Invocation(inv Invocation) {
	if !t.Enabled() || t.closed.Load() || inv.Start.IsZero() {
		return
	}
	start, acquired, end := inv.Start, inv.Acquired, inv.End
	if end.Before(start) {
		end = start
	}
	if !acquired.IsZero() {
		acquired = clamp(acquired, start, end)
	}

	ctx := traceContext(context.Background(), inv.TraceHeader)
	ctx, root := t.tracer.Start(ctx, "invoke "+inv.Function,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(start),
		trace.WithAttributes(
			attrFaaSName.String(inv.Function),
			attrFaaSVersion.String(strconv.Itoa(inv.Version)),
			attrFaaSInvocationID.String(inv.RequestID),
			attrFaaSTrigger.String(faasTrigger(inv.Trigger)),
			attrTernTrigger.String(inv.Trigger),
			attrFaaSColdstart.Bool(inv.Cold),
			attrTernOutcome.String(inv.Outcome),
		))
	if inv.Outcome != metering.OutcomeSuccess {
		root.SetStatus(codes.Error, inv.Outcome)
	}
	if acquired.IsZero() {
		t.child(ctx, spanQueue, start, end)
	} else {
		t.child(ctx, spanQueue, start, acquired)
		if inv.Cold && inv.Init > 0 {
			t.child(ctx, spanInit, acquired.Add(-inv.Init), acquired)
		}
		t.child(ctx, spanExecute, acquired, end)
	}
	root.End(trace.WithTimestamp(end))
}

// child records a span named name under the span in ctx.
func (t *Tracer) child(ctx context.Context, name string, from, to time.Time) {
	_, s := t.tracer.Start(ctx, name, trace.WithTimestamp(from))
	s.End(trace.WithTimestamp(to))
}

// faasTrigger maps a Tern trigger to the faas.trigger values of the
// semantic conventions (datasource, http, pubsub, timer, other).
func faasTrigger(trigger string) string {
	switch trigger {
	case metering.TriggerHTTP:
		return "http"
	case metering.TriggerQueue:
		return "pubsub"
	case metering.TriggerSchedule:
		return "timer"
	}
	return "other"
}

func clamp(t, lo, hi time.Time) time.Time {
	if t.Before(lo) {
		return lo
	}
	if t.After(hi) {
		return hi
	}
	return t
}
