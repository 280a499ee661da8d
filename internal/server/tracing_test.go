package server_test

import (
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ternhq/tern/internal/testserver"
)

// otlpReceiver collects the spans posted to its /v1/traces.
func otlpReceiver(t *testing.T) (url string, spans func() []*tracepb.Span) {
	var mu sync.Mutex
	var got []*tracepb.Span
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		var req coltracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(b, &req) != nil {
			http.Error(w, "bad request", 400)
			return
		}
		mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				got = append(got, ss.GetSpans()...)
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []*tracepb.Span {
		mu.Lock()
		defer mu.Unlock()
		return append([]*tracepb.Span(nil), got...)
	}
}

func TestTracesReachOTLPEndpoint(t *testing.T) {
	url, spans := otlpReceiver(t)
	cfg := testserver.Config(t.TempDir())
	cfg.OTLPEndpoint = url
	s := testserver.Start(t, cfg)
	s.Deploy(fn("traced", "index.handler", map[string]string{"index.js": `exports.handler = async () => ({statusCode: 200, body: process.env._X_AMZN_TRACE_ID});`}))

	const traceID, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	status, _, body := s.Do("GET", "/fn/traced", nil, map[string]string{"Traceparent": "00-" + traceID + "-" + parent + "-01"})
	if want := "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=" + parent + ";Sampled=1"; status != 200 || string(body) != want {
		t.Fatalf("the function saw %q (%d), want %q", body, status, want)
	}
	s.Stop() // flushes the exporter
	byName := map[string]*tracepb.Span{}
	for _, sp := range spans() {
		if hex.EncodeToString(sp.GetTraceId()) == traceID {
			byName[sp.GetName()] = sp
		}
	}
	root := byName["invoke traced"]
	if root == nil || byName["queue"] == nil || byName["execute"] == nil || byName["init"] == nil {
		names, _ := json.Marshal(byName)
		t.Fatalf("spans in the trace: %s", names)
	}
	if hex.EncodeToString(root.GetParentSpanId()) != parent {
		t.Errorf("root's parent %x, want %s", root.GetParentSpanId(), parent)
	}
	for _, name := range []string{"queue", "init", "execute"} {
		sp := byName[name]
		if string(sp.GetParentSpanId()) != string(root.GetSpanId()) {
			t.Errorf("%s is not a child of the invocation", name)
		}
		if sp.GetStartTimeUnixNano() < root.GetStartTimeUnixNano()-uint64(time.Second) || sp.GetEndTimeUnixNano() > root.GetEndTimeUnixNano() {
			t.Errorf("%s lies outside the invocation", name)
		}
	}
	if !strings.Contains(root.String(), "faas.coldstart") {
		t.Errorf("root attributes: %v", root.GetAttributes())
	}
}
