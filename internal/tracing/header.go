package tracing

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// traceHeader is a parsed Lambda trace header.
type traceHeader struct {
	traceID trace.TraceID
	parent  trace.SpanID // zero if the header has none
	sampled bool
}

// parseTraceHeader parses a Lambda trace header:
//
//	Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1
//
// Root's 8 + 24 hex digits are the W3C trace id. Fields may come in any
// order, other fields (Self, Lineage, ...) are ignored. It reports false
// when Root is missing or malformed; a malformed Parent is ignored (the
// trace id is still worth keeping), as is any Sampled value but "1".
func parseTraceHeader(h string) (traceHeader, bool) {
	var th traceHeader
	var hasRoot bool
	for field := range strings.SplitSeq(h, ";") {
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case strings.EqualFold(k, "Root"):
			th.traceID, hasRoot = parseRoot(v)
		case strings.EqualFold(k, "Parent"):
			var sid trace.SpanID
			if len(v) == 2*len(sid) {
				if _, err := hex.Decode(sid[:], []byte(v)); err == nil {
					th.parent = sid
				}
			}
		case strings.EqualFold(k, "Sampled"):
			th.sampled = v == "1"
		}
	}
	if !hasRoot {
		return traceHeader{}, false
	}
	return th, true
}

// parseRoot parses an X-Ray trace id, "1-<8 hex epoch>-<24 hex random>".
func parseRoot(v string) (trace.TraceID, bool) {
	var tid trace.TraceID
	if len(v) != 35 || v[:2] != "1-" || v[10] != '-' {
		return tid, false
	}
	if _, err := hex.Decode(tid[:4], []byte(v[2:10])); err != nil {
		return tid, false
	}
	if _, err := hex.Decode(tid[4:], []byte(v[11:])); err != nil {
		return tid, false
	}
	return tid, tid.IsValid()
}

// traceContext returns ctx carrying what the header says the invocation's
// span continues: a remote parent, or only a trace id (for idGenerator)
// when the header has a Root but no Parent. A missing or malformed header
// leaves ctx alone, and the span starts a new trace.
func traceContext(ctx context.Context, header string) context.Context {
	if header == "" {
		return ctx
	}
	th, ok := parseTraceHeader(header)
	if !ok {
		return ctx
	}
	if !th.parent.IsValid() {
		return context.WithValue(ctx, traceIDKey{}, th.traceID)
	}
	var flags trace.TraceFlags
	if th.sampled {
		flags = trace.FlagsSampled
	}
	return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    th.traceID,
		SpanID:     th.parent,
		TraceFlags: flags,
		Remote:     true,
	}))
}

// traceIDKey is the context key of a trace id that a root span must use.
type traceIDKey struct{}

// idGenerator is the SDK's random generator, except that a root span takes
// the trace id in its context under traceIDKey: a header with a Root and
// no Parent continues the trace without a parent span.
type idGenerator struct{}

var _ sdktrace.IDGenerator = idGenerator{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	tid, _ := ctx.Value(traceIDKey{}).(trace.TraceID)
	for !tid.IsValid() {
		binary.NativeEndian.PutUint64(tid[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(tid[8:], rand.Uint64())
	}
	return tid, newSpanID()
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	return newSpanID()
}

func newSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}
