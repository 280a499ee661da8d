package events

import (
	"regexp"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/manifest"
)

func TestBatchItemFailures(t *testing.T) {
	ids := []string{"a", "b", "c"}
	for _, tc := range []struct {
		name    string
		payload string
		failed  []string
		valid   bool
	}{
		{"no answer", `null`, nil, true},
		{"any other result", `{"ok":true}`, nil, true},
		{"not JSON", `hello`, nil, true},
		{"empty list", `{"batchItemFailures":[]}`, nil, true},
		{"two failed", `{"batchItemFailures":[{"itemIdentifier":"a"},{"itemIdentifier":"c"}]}`, []string{"a", "c"}, true},
		{"unknown id", `{"batchItemFailures":[{"itemIdentifier":"z"}]}`, nil, false},
		{"empty id", `{"batchItemFailures":[{"itemIdentifier":""}]}`, nil, false},
		{"missing id", `{"batchItemFailures":[{}]}`, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failed, ok := batchItemFailures([]byte(tc.payload), ids)
			if ok != tc.valid {
				t.Fatalf("valid = %v, want %v", ok, tc.valid)
			}
			if len(failed) != len(tc.failed) {
				t.Fatalf("failed = %v, want %v", failed, tc.failed)
			}
			for _, id := range tc.failed {
				if !failed[id] {
					t.Errorf("%s not reported failed: %v", id, failed)
				}
			}
		})
	}
}

func TestRedeliveryDelay(t *testing.T) {
	for _, tc := range []struct {
		delivered int
		want      time.Duration
	}{{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {7, time.Minute}, {100, time.Minute}} {
		if got := redeliveryDelay(tc.delivered); got != tc.want {
			t.Errorf("redeliveryDelay(%d) = %v, want %v", tc.delivered, got, tc.want)
		}
	}
}

func TestDerivedID(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, b := derivedID("idempotency", "fn", "key"), derivedID("idempotency", "fn", "key")
	if a != b || !uuid.MatchString(a) {
		t.Errorf("derivedID: %q, %q", a, b)
	}
	// Parts are separated, so shifting a boundary gives another id.
	if derivedID("ab", "c") == derivedID("a", "bc") {
		t.Error("derivedID ignores part boundaries")
	}
}

func TestSubscriptionsMatch(t *testing.T) {
	s := newSubscriptions()
	s.set("any-created", []manifest.Trigger{{CloudEvent: &manifest.CloudEventTrigger{Type: "created"}}})
	s.set("orders", []manifest.Trigger{{CloudEvent: &manifest.CloudEventTrigger{Type: "created", Source: "/orders"}}})
	s.set("from-billing", []manifest.Trigger{{CloudEvent: &manifest.CloudEventTrigger{Source: "/billing"}}, {Schedule: "rate(1 minute)"}})
	s.set("none", []manifest.Trigger{{Schedule: "rate(1 minute)"}})
	for _, tc := range []struct{ typ, source, want string }{
		{"created", "/orders", "any-created,orders"},
		{"created", "/billing", "any-created,from-billing"},
		{"deleted", "/billing", "from-billing"},
		{"deleted", "/orders", ""},
	} {
		got := ""
		for i, fn := range s.match(tc.typ, tc.source) {
			if i > 0 {
				got += ","
			}
			got += fn
		}
		if got != tc.want {
			t.Errorf("match(%q, %q) = %q, want %q", tc.typ, tc.source, got, tc.want)
		}
	}
	s.set("orders", nil)
	if got := s.match("created", "/orders"); len(got) != 1 || got[0] != "any-created" {
		t.Errorf("after removing orders: %v", got)
	}
}

func TestHeaderValue(t *testing.T) {
	if got := headerValue("a\r\nb\x00c", 100); got != "a  b c" {
		t.Errorf("headerValue = %q", got)
	}
	if got := headerValue("abcdef", 3); got != "abc" {
		t.Errorf("headerValue = %q", got)
	}
}

func TestCheckTopicName(t *testing.T) {
	for name, ok := range map[string]bool{"orders": true, "a_b-9": true, "": false, "-x": false, "a.b": false, "a b": false, "a>": false} {
		if err := CheckTopicName(name); (err == nil) != ok {
			t.Errorf("CheckTopicName(%q) = %v", name, err)
		}
	}
}

// TestRetryAt checks that a retry never runs before the failure plus the
// back-off: the NATS schedule keeps whole seconds, so the time is rounded
// up, never down.
func TestRetryAt(t *testing.T) {
	failed := time.Date(2026, 3, 1, 12, 0, 0, 810_000_000, time.UTC)
	for _, tc := range []struct {
		backoff time.Duration
		attempt int
		want    time.Time
	}{
		{2 * time.Second, 1, time.Date(2026, 3, 1, 12, 0, 3, 0, time.UTC)},
		{2 * time.Second, 2, time.Date(2026, 3, 1, 12, 0, 5, 0, time.UTC)}, // doubled: 4 s
		{10 * time.Millisecond, 1, time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC)},
		{190 * time.Millisecond, 1, time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC)}, // on a whole second: kept
		{time.Minute, 1, time.Date(2026, 3, 1, 12, 1, 1, 0, time.UTC)},
	} {
		got := retryAt(failed, tc.backoff, tc.attempt)
		if !got.Equal(tc.want) {
			t.Errorf("backoff %s, attempt %d: %v, want %v", tc.backoff, tc.attempt, got, tc.want)
		}
		if earliest := failed.Add(tc.backoff << (tc.attempt - 1)); got.Before(earliest) {
			t.Errorf("backoff %s, attempt %d: %v is before %v", tc.backoff, tc.attempt, got, earliest)
		}
		// What the NATS schedule header keeps of it.
		if kept, err := time.Parse(time.RFC3339, got.Format(time.RFC3339)); err != nil || !kept.Equal(got) {
			t.Errorf("backoff %s, attempt %d: %v does not survive the schedule header (%v, %v)", tc.backoff, tc.attempt, got, kept, err)
		}
	}
}
