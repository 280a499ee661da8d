package tracing_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ternhq/tern/internal/tracing"
)

// collector is an OTLP/HTTP traces receiver: it accepts POST /v1/traces
// with a protobuf ExportTraceServiceRequest, gzipped or not.
type collector struct {
	srv *httptest.Server

	mu       sync.Mutex
	spans    []*tracepb.Span
	services []string      // service.name of each resource
	headers  []http.Header // of each request
	status   int           // answered instead of 200 when set
	block    chan struct{} // requests wait for it to close when set
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		block, status := c.block, c.status
		c.mu.Unlock()
		if block != nil {
			<-block
		}
		if status != 0 {
			http.Error(w, "refused", status)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
			t.Errorf("Content-Type = %q, want application/x-protobuf", ct)
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Errorf("gzip: %v", err)
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Errorf("read body: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			t.Errorf("unmarshal: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.headers = append(c.headers, r.Header.Clone())
		for _, rs := range req.GetResourceSpans() {
			c.services = append(c.services, attrs(rs.GetResource().GetAttributes())["service.name"].(string))
			for _, ss := range rs.GetScopeSpans() {
				c.spans = append(c.spans, ss.GetSpans()...)
			}
		}
		c.mu.Unlock()
		resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	})
	c.srv = httptest.NewServer(mux)
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) collected() []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*tracepb.Span(nil), c.spans...)
}

// attrs flattens OTLP attributes to Go values.
func attrs(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = v.StringValue
		case *commonpb.AnyValue_BoolValue:
			m[kv.GetKey()] = v.BoolValue
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = v.IntValue
		default:
			m[kv.GetKey()] = kv.GetValue().String()
		}
	}
	return m
}

func byName(t *testing.T, spans []*tracepb.Span) map[string]*tracepb.Span {
	t.Helper()
	m := make(map[string]*tracepb.Span, len(spans))
	for _, s := range spans {
		if _, dup := m[s.GetName()]; dup {
			t.Fatalf("two spans named %q", s.GetName())
		}
		m[s.GetName()] = s
	}
	return m
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newTracer(t *testing.T, cfg tracing.Config) *tracing.Tracer {
	t.Helper()
	tr, err := tracing.New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close(context.Background()) })
	return tr
}

func closeTracer(t *testing.T, tr *tracing.Tracer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func unixNano(tm time.Time) uint64 { return uint64(tm.UnixNano()) }

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

func TestInvocationContinuesTraceHeader(t *testing.T) {
	c := newCollector(t)
	tr := newTracer(t, tracing.Config{
		Endpoint:    c.srv.URL, // base URL: /v1/traces is appended
		ServiceName: "tern-test",
		Headers:     map[string]string{"Authorization": "Bearer s3cret"},
	})
	if !tr.Enabled() {
		t.Fatal("Enabled = false with an endpoint")
	}
	inv := tracing.Invocation{
		TraceHeader: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
		Function:    "resize",
		Version:     7,
		RequestID:   "c6af9ac6-7b61-11e6-9a41-93e812345678",
		Trigger:     "queue",
		Outcome:     "timeout",
		Start:       t0,
		Acquired:    t0.Add(400 * time.Millisecond),
		End:         t0.Add(3 * time.Second),
		Cold:        true,
		Init:        250 * time.Millisecond,
	}
	tr.Invocation(inv)
	closeTracer(t, tr)

	spans := c.collected()
	if len(spans) != 4 {
		t.Fatalf("got %d spans, want 4", len(spans))
	}
	wantTrace := "5759e988bd862e3fe1be46a994272793"
	for _, s := range spans {
		if got := hex.EncodeToString(s.GetTraceId()); got != wantTrace {
			t.Errorf("span %q: trace id %s, want %s", s.GetName(), got, wantTrace)
		}
	}
	m := byName(t, spans)
	root := m["invoke resize"]
	if root == nil {
		t.Fatalf("no span %q in %v", "invoke resize", m)
	}
	if got := hex.EncodeToString(root.GetParentSpanId()); got != "53995c3f42cd8ad8" {
		t.Errorf("root parent = %q, want 53995c3f42cd8ad8", got)
	}
	if root.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("root kind = %v, want SERVER", root.GetKind())
	}
	if root.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR || root.GetStatus().GetMessage() != "timeout" {
		t.Errorf("root status = %v, want ERROR timeout", root.GetStatus())
	}
	wantAttrs := map[string]any{
		"faas.name":          "resize",
		"faas.version":       "7",
		"faas.invocation_id": "c6af9ac6-7b61-11e6-9a41-93e812345678",
		"faas.trigger":       "pubsub",
		"tern.trigger":       "queue",
		"faas.coldstart":     true,
		"tern.outcome":       "timeout",
	}
	gotAttrs := attrs(root.GetAttributes())
	for k, want := range wantAttrs {
		if gotAttrs[k] != want {
			t.Errorf("root attribute %s = %v, want %v", k, gotAttrs[k], want)
		}
	}

	want := []struct {
		name       string
		start, end time.Time
	}{
		{"invoke resize", inv.Start, inv.End},
		{"queue", inv.Start, inv.Acquired},
		{"init", inv.Acquired.Add(-inv.Init), inv.Acquired},
		{"execute", inv.Acquired, inv.End},
	}
	for _, w := range want {
		s := m[w.name]
		if s == nil {
			t.Errorf("no span %q", w.name)
			continue
		}
		if s.GetStartTimeUnixNano() != unixNano(w.start) || s.GetEndTimeUnixNano() != unixNano(w.end) {
			t.Errorf("span %q: %d→%d, want %d→%d", w.name,
				s.GetStartTimeUnixNano(), s.GetEndTimeUnixNano(), unixNano(w.start), unixNano(w.end))
		}
		if s == root {
			continue
		}
		if !bytes.Equal(s.GetParentSpanId(), root.GetSpanId()) {
			t.Errorf("span %q: parent %x, want the root %x", w.name, s.GetParentSpanId(), root.GetSpanId())
		}
		if s.GetKind() != tracepb.Span_SPAN_KIND_INTERNAL {
			t.Errorf("span %q: kind %v, want INTERNAL", w.name, s.GetKind())
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, svc := range c.services {
		if svc != "tern-test" {
			t.Errorf("service.name = %q, want tern-test", svc)
		}
	}
	for _, h := range c.headers {
		if got := h.Get("Authorization"); got != "Bearer s3cret" {
			t.Errorf("Authorization = %q, want the configured header", got)
		}
		if got := h.Get("Content-Encoding"); got != "gzip" {
			t.Errorf("Content-Encoding = %q, want gzip", got)
		}
	}
}

func TestInvocationStartsNewTrace(t *testing.T) {
	for _, header := range []string{
		"",
		"garbage",
		"Root=1-5759e988-bd862e3fe1be46a99427279;Parent=53995c3f42cd8ad8",  // root one digit short
		"Root=2-5759e988-bd862e3fe1be46a994272793",                         // unknown version
		"Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8", // zero trace id
		"Parent=53995c3f42cd8ad8;Sampled=1",                                // no root
	} {
		t.Run(header, func(t *testing.T) {
			c := newCollector(t)
			// A full URL ending in /v1/traces is used as is.
			tr := newTracer(t, tracing.Config{Endpoint: c.srv.URL + "/v1/traces"})
			for _, id := range []string{"a", "b"} {
				tr.Invocation(tracing.Invocation{
					TraceHeader: header, Function: "hello", Version: 1, RequestID: id,
					Trigger: "http", Outcome: "success",
					Start: t0, Acquired: t0.Add(time.Millisecond), End: t0.Add(20 * time.Millisecond),
				})
			}
			closeTracer(t, tr)

			spans := c.collected()
			if len(spans) != 6 {
				t.Fatalf("got %d spans, want 6 (warm: no init)", len(spans))
			}
			traces := map[string][]*tracepb.Span{}
			for _, s := range spans {
				id := s.GetTraceId()
				if len(id) != 16 || bytes.Equal(id, make([]byte, 16)) {
					t.Fatalf("span %q: invalid trace id %x", s.GetName(), id)
				}
				traces[hex.EncodeToString(id)] = append(traces[hex.EncodeToString(id)], s)
			}
			if len(traces) != 2 {
				t.Fatalf("got %d traces, want one per invocation", len(traces))
			}
			for _, ss := range traces {
				m := byName(t, ss)
				root := m["invoke hello"]
				if root == nil {
					t.Fatalf("no root span in %v", m)
				}
				if len(root.GetParentSpanId()) != 0 {
					t.Errorf("root has parent %x, want none", root.GetParentSpanId())
				}
				if root.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_UNSET {
					t.Errorf("root status = %v, want unset for success", root.GetStatus())
				}
				a := attrs(root.GetAttributes())
				if a["faas.trigger"] != "http" || a["faas.coldstart"] != false {
					t.Errorf("root attributes = %v", a)
				}
				for _, name := range []string{"queue", "execute"} {
					if s := m[name]; s == nil || !bytes.Equal(s.GetParentSpanId(), root.GetSpanId()) {
						t.Errorf("span %q missing or not a child of the root", name)
					}
				}
			}
		})
	}
}

func TestInvocationRootWithoutParent(t *testing.T) {
	c := newCollector(t)
	tr := newTracer(t, tracing.Config{Endpoint: c.srv.URL})
	tr.Invocation(tracing.Invocation{
		TraceHeader: "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0",
		Function:    "f", Trigger: "schedule", Outcome: "success",
		Start: t0, Acquired: t0, End: t0.Add(time.Second),
	})
	closeTracer(t, tr)

	spans := c.collected()
	if len(spans) != 3 {
		t.Fatalf("got %d spans, want 3 (Sampled=0 is recorded too)", len(spans))
	}
	for _, s := range spans {
		if got := hex.EncodeToString(s.GetTraceId()); got != "5759e988bd862e3fe1be46a994272793" {
			t.Errorf("span %q: trace id %s, want the header's", s.GetName(), got)
		}
	}
	root := byName(t, spans)["invoke f"]
	if root == nil || len(root.GetParentSpanId()) != 0 {
		t.Fatalf("root = %v, want a root span without parent", root)
	}
	if got := attrs(root.GetAttributes())["faas.trigger"]; got != "timer" {
		t.Errorf("faas.trigger = %v, want timer", got)
	}
}

func TestInvocationWithoutInstance(t *testing.T) {
	c := newCollector(t)
	tr := newTracer(t, tracing.Config{Endpoint: c.srv.URL})
	tr.Invocation(tracing.Invocation{
		Function: "f", Trigger: "cloudevent", Outcome: "throttled",
		Start: t0, End: t0.Add(time.Millisecond), // never acquired an instance
	})
	closeTracer(t, tr)

	m := byName(t, c.collected())
	if len(m) != 2 || m["invoke f"] == nil || m["queue"] == nil {
		t.Fatalf("spans = %v, want the root and queue", m)
	}
	if q := m["queue"]; q.GetStartTimeUnixNano() != unixNano(t0) || q.GetEndTimeUnixNano() != unixNano(t0.Add(time.Millisecond)) {
		t.Errorf("queue span %d→%d, want Start→End", q.GetStartTimeUnixNano(), q.GetEndTimeUnixNano())
	}
	root := m["invoke f"]
	if a := attrs(root.GetAttributes()); a["faas.trigger"] != "other" || a["tern.trigger"] != "cloudevent" {
		t.Errorf("root attributes = %v", a)
	}
	if root.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("root status = %v, want ERROR", root.GetStatus())
	}
}

func TestDisabled(t *testing.T) {
	tr, err := tracing.New(tracing.Config{}, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var nilTracer *tracing.Tracer
	for name, tr := range map[string]*tracing.Tracer{"empty endpoint": tr, "nil": nilTracer} {
		if tr.Enabled() {
			t.Errorf("%s: Enabled = true", name)
		}
		tr.Invocation(tracing.Invocation{TraceHeader: "Root=1-5759e988-bd862e3fe1be46a994272793",
			Function: "f", Start: t0, Acquired: t0, End: t0, Cold: true, Init: time.Second})
		if err := tr.Close(context.Background()); err != nil {
			t.Errorf("%s: Close: %v", name, err)
		}
		if err := tr.Close(context.Background()); err != nil {
			t.Errorf("%s: second Close: %v", name, err)
		}
	}
}

func TestNewRejectsBadEndpoint(t *testing.T) {
	for _, endpoint := range []string{
		"127.0.0.1:4318",
		"localhost:4318",
		"ftp://collector:4318",
		"grpc://collector:4317",
		"http://",
		"http://user:pw@collector:4318",
		"http://collector:4318/?x=1",
		"://collector",
		"http://[::1",
		"http://user:pw@collector:port",
	} {
		_, err := tracing.New(tracing.Config{Endpoint: endpoint}, testLogger(t))
		if err == nil {
			t.Errorf("New(%q): no error", endpoint)
			continue
		}
		if strings.Contains(err.Error(), "pw@") {
			t.Errorf("New(%q): error shows the password: %v", endpoint, err)
		}
		t.Logf("New(%q): %v", endpoint, err)
	}
}

func TestCloseFlushes(t *testing.T) {
	c := newCollector(t)
	tr := newTracer(t, tracing.Config{Endpoint: c.srv.URL})
	const n = 10
	for range n {
		tr.Invocation(tracing.Invocation{Function: "f", Outcome: "success", Start: t0, Acquired: t0, End: t0})
	}
	// The batch processor would wait 5 s before exporting; Close must not.
	closeTracer(t, tr)
	if got := len(c.collected()); got != 3*n {
		t.Fatalf("after Close: %d spans, want %d", got, 3*n)
	}
	if err := tr.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	tr.Invocation(tracing.Invocation{Function: "f", Outcome: "success", Start: t0, Acquired: t0, End: t0})
	if !tr.Enabled() {
		t.Error("Enabled = false after Close")
	}
}

func TestCloseReportsExportFailure(t *testing.T) {
	c := newCollector(t)
	c.status = http.StatusBadRequest // not retried
	tr := newTracer(t, tracing.Config{Endpoint: c.srv.URL})
	tr.Invocation(tracing.Invocation{Function: "f", Outcome: "success", Start: t0, Acquired: t0, End: t0})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := tr.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "3 spans not exported") {
		t.Fatalf("Close = %v, want the export failure", err)
	}
}

func TestInvocationDoesNotBlock(t *testing.T) {
	c := newCollector(t)
	block := make(chan struct{})
	c.block = block
	t.Cleanup(func() { close(block) }) // runs before the server closes
	// The exporter may still be waiting on the collector when the test
	// ends: log nowhere.
	tr, err := tracing.New(tracing.Config{Endpoint: c.srv.URL}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		// Far more spans than the queue holds, while the collector hangs.
		for range 5000 {
			tr.Invocation(tracing.Invocation{Function: "f", Outcome: "success", Start: t0, Acquired: t0, End: t0})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Invocation blocked while the collector hung")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := tr.Close(ctx); err == nil {
		t.Error("Close returned nil while the collector hung; want the context's error")
	}
}

func TestCloseWithDoneContext(t *testing.T) {
	c := newCollector(t)
	tr := newTracer(t, tracing.Config{Endpoint: c.srv.URL})
	tr.Invocation(tracing.Invocation{Function: "f", Outcome: "success", Start: t0, Acquired: t0, End: t0})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Close does not wait; it answers nil only if the export won the race.
	err := tr.Close(ctx)
	t.Logf("Close with a canceled context: %v", err)
	// The shutdown goes on in the background and still exports.
	deadline := time.Now().Add(10 * time.Second)
	for len(c.collected()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("spans not exported after Close: got %d", len(c.collected()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func BenchmarkInvocationDisabled(b *testing.B) {
	tr, err := tracing.New(tracing.Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	inv := tracing.Invocation{
		TraceHeader: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
		Function:    "f", Version: 1, RequestID: "r", Trigger: "http", Outcome: "success",
		Start: t0, Acquired: t0.Add(time.Millisecond), End: t0.Add(2 * time.Millisecond),
	}
	b.ReportAllocs()
	for b.Loop() {
		tr.Invocation(inv)
	}
}

func BenchmarkInvocationEnabled(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	tr, err := tracing.New(tracing.Config{Endpoint: srv.URL}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tr.Close(context.Background()) }()
	inv := tracing.Invocation{
		TraceHeader: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
		Function:    "f", Version: 1, RequestID: "r", Trigger: "http", Outcome: "success",
		Start: t0, Acquired: t0.Add(time.Millisecond), End: t0.Add(2 * time.Millisecond),
		Cold: true, Init: time.Millisecond,
	}
	b.ReportAllocs()
	for b.Loop() {
		tr.Invocation(inv)
	}
}
