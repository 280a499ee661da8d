package tracing

import (
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestParseTraceHeader(t *testing.T) {
	const root = "5759e988bd862e3fe1be46a994272793"
	for _, tc := range []struct {
		header          string
		ok              bool
		traceID, parent string
		sampled         bool
	}{
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", true, root, "53995c3f42cd8ad8", true},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0", true, root, "53995c3f42cd8ad8", false},
		{"Root=1-5759e988-bd862e3fe1be46a994272793", true, root, "", false},
		{"Sampled=1;Parent=53995c3f42cd8ad8;Root=1-5759e988-bd862e3fe1be46a994272793", true, root, "53995c3f42cd8ad8", true},
		{" Root = 1-5759E988-BD862E3FE1BE46A994272793 ; Parent=53995c3f42cd8ad8 ", true, root, "53995c3f42cd8ad8", false},
		{"Self=1-5759e988-0123456789abcdef01234567;Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=a87bd80c:1|68fd508a:5", true, root, "", false},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad", true, root, "", false},  // short parent ignored
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0000000000000000", true, root, "", false}, // zero parent ignored
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=?", true, root, "", false},
		{"", false, "", "", false},
		{"Root=", false, "", "", false},
		{"Root=1-5759e988-bd862e3fe1be46a99427279x", false, "", "", false},
		{"Root=1-5759e988bd862e3fe1be46a994272793", false, "", "", false},
		{"Root=1_5759e988-bd862e3fe1be46a994272793", false, "", "", false},
		{"Root=1-5759e988-bd862e3fe1be46a9942727930", false, "", "", false},
		{"Root=1-00000000-000000000000000000000000", false, "", "", false},
		{"00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01", false, "", "", false}, // traceparent is not this header
	} {
		th, ok := parseTraceHeader(tc.header)
		if ok != tc.ok {
			t.Errorf("%q: ok = %v, want %v", tc.header, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if got := th.traceID.String(); got != tc.traceID {
			t.Errorf("%q: trace id %s, want %s", tc.header, got, tc.traceID)
		}
		wantParent := tc.parent
		if wantParent == "" {
			wantParent = trace.SpanID{}.String()
		}
		if got := th.parent.String(); got != wantParent {
			t.Errorf("%q: parent %s, want %s", tc.header, got, wantParent)
		}
		if th.sampled != tc.sampled {
			t.Errorf("%q: sampled = %v, want %v", tc.header, th.sampled, tc.sampled)
		}
	}
}

func TestFaaSTrigger(t *testing.T) {
	for trigger, want := range map[string]string{
		"http": "http", "queue": "pubsub", "schedule": "timer",
		"api": "other", "async": "other", "cloudevent": "other", "destination": "other", "": "other",
	} {
		if got := faasTrigger(trigger); got != want {
			t.Errorf("faasTrigger(%q) = %q, want %q", trigger, got, want)
		}
	}
}
