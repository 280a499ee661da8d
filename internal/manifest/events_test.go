package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const eventsHead = "name: fn\nruntime: nodejs\nhandler: index.handler\n"

const eventsYAML = eventsHead + `environment: {A: b}
scale:
  max: 4
triggers:
  - schedule: "cron(0 12 ? * MON-FRI *)"
    timezone: Europe/Paris
    payload: {any: yaml, value: [1, 2.5, true, null, "<b>"], n: {deep: -3}}
    missed: last
  - schedule: rate(5 minutes)
  - queue: {topic: orders, batch: 20, window: 1s, maxReceives: 3, concurrency: 4}
  - queue: {topic: refunds}
  - cloudevent: {type: com.example.created, source: /orders}
async:
  retries: 0
  maxAge: 1h
  backoff: 10s
  concurrency: 5
  onSuccess: {function: audit}
  onFailure: {topic: failures}
`

func intp(i int) *int { return &i }

func TestParseEvents(t *testing.T) {
	m, err := Parse([]byte(eventsYAML))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := []Trigger{
		{
			Schedule: "cron(0 12 ? * MON-FRI *)", Timezone: "Europe/Paris", Missed: MissedLast,
			Payload: json.RawMessage(`{"any":"yaml","value":[1,2.5,true,null,"\u003cb\u003e"],"n":{"deep":-3}}`),
		},
		{Schedule: "rate(5 minutes)", Missed: MissedSkip},
		{Queue: &QueueTrigger{Topic: "orders", Batch: 20, Window: Duration(time.Second), MaxReceives: 3, Concurrency: 4}},
		{Queue: &QueueTrigger{Topic: "refunds", Batch: DefaultQueueBatch, MaxReceives: DefaultQueueReceives, Concurrency: DefaultQueueConc}},
		{CloudEvent: &CloudEventTrigger{Type: "com.example.created", Source: "/orders"}},
	}
	if !reflect.DeepEqual(m.Triggers, want) {
		t.Errorf("triggers:\n got %s\nwant %s", show(m.Triggers), show(want))
	}
	wantAsync := Async{
		Retries: intp(0), MaxAge: Duration(time.Hour), Backoff: Duration(10 * time.Second), Concurrency: 5,
		OnSuccess: &Destination{Function: "audit"}, OnFailure: &Destination{Topic: "failures"},
	}
	if !reflect.DeepEqual(m.Async, wantAsync) {
		t.Errorf("async:\n got %s\nwant %s", show(m.Async), show(wantAsync))
	}
	if m.Async.RetryCount() != 0 {
		t.Errorf("RetryCount = %d, want the 0 that was set", m.Async.RetryCount())
	}
}

func show(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestEventDefaults(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(t *testing.T, m *Manifest)
	}{
		{"no events keeps async zero", eventsHead, func(t *testing.T, m *Manifest) {
			if m.Async != (Async{}) || m.Triggers != nil {
				t.Errorf("got %s %s", show(m.Triggers), show(m.Async))
			}
			if m.AsyncConcurrency() != DefaultScaleMax || m.Async.RetryCount() != DefaultAsyncRetries ||
				m.Async.MaxAgeOrDefault() != DefaultAsyncMaxAge.D() || m.Async.BackoffOrDefault() != DefaultAsyncBackoff.D() {
				t.Errorf("accessors do not give the defaults: %+v", m.Async)
			}
		}},
		{"a trigger fills async", eventsHead + "scale: {max: 7}\ntriggers:\n  - schedule: '@daily'\n", func(t *testing.T, m *Manifest) {
			want := Async{MaxAge: DefaultAsyncMaxAge, Backoff: DefaultAsyncBackoff, Concurrency: 7}
			if m.Async != want {
				t.Errorf("async %s, want %s", show(m.Async), show(want))
			}
			if m.Triggers[0].Missed != MissedSkip {
				t.Errorf("missed = %q, want skip", m.Triggers[0].Missed)
			}
		}},
		{"async alone fills async", eventsHead + "async:\n  retries: 1\n", func(t *testing.T, m *Manifest) {
			want := Async{Retries: intp(1), MaxAge: DefaultAsyncMaxAge, Backoff: DefaultAsyncBackoff, Concurrency: DefaultScaleMax}
			if !reflect.DeepEqual(m.Async, want) {
				t.Errorf("async %s, want %s", show(m.Async), show(want))
			}
		}},
		{"empty async is no async", eventsHead + "async: {}\ntriggers: []\n", func(t *testing.T, m *Manifest) {
			if m.Async != (Async{}) || len(m.Triggers) != 0 {
				t.Errorf("got %s %s", show(m.Triggers), show(m.Async))
			}
		}},
		{"queue defaults", eventsHead + "triggers:\n  - queue: {topic: t, window: 0}\n", func(t *testing.T, m *Manifest) {
			want := QueueTrigger{Topic: "t", Batch: 10, MaxReceives: 5, Concurrency: 2}
			if *m.Triggers[0].Queue != want {
				t.Errorf("queue %+v, want %+v", *m.Triggers[0].Queue, want)
			}
		}},
		{"null payload is none", eventsHead + "triggers:\n  - schedule: '@hourly'\n    payload: ~\n", func(t *testing.T, m *Manifest) {
			if m.Triggers[0].Payload != nil {
				t.Errorf("payload %s", m.Triggers[0].Payload)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, m)
			again := m.Clone()
			again.ApplyDefaults()
			if !reflect.DeepEqual(again, m) {
				t.Errorf("ApplyDefaults is not idempotent: %s", show(again))
			}
		})
	}
}

func TestPayload(t *testing.T) {
	tests := []struct {
		yaml string
		want string // JSON, or the error substring when err
		err  bool
	}{
		{`{b: 1, a: 2}`, `{"b":1,"a":2}`, false}, // order kept
		{`[1, -2, 3.25, 1e3, 0x10, 0o17]`, `[1,-2,3.25,1000,16,15]`, false},
		{`18446744073709551615`, `18446744073709551615`, false},
		{`"plain string"`, `"plain string"`, false},
		{`hello`, `"hello"`, false},
		{`"123"`, `"123"`, false},
		{`[true, false, ~, null]`, `[true,false,null,null]`, false},
		{`2026-01-02`, `"2026-01-02"`, false},
		{`!!binary aGk=`, `"aGk="`, false},
		{`"<&>\u2028"`, `"\u003c\u0026\u003e\u2028"`, false},
		{`{}`, `{}`, false},
		{`[]`, `[]`, false},
		{"x: &a [1, 2]\ny: *a", `{"x":[1,2],"y":[1,2]}`, false},
		{`{1: a}`, `mapping keys must be strings, got number "1"`, true},
		{`{[a]: b}`, `mapping keys must be strings, got a list`, true},
		{"a: 1\na: 2", `duplicate key "a"`, true},
		{"base: &b {x: 1}\nc:\n  <<: *b", "merge keys (<<) are not supported", true},
		{`.nan`, "has no JSON form", true},
		{`-.inf`, "has no JSON form", true},
		{`99999999999999999999999`, `1e+23`, false}, // YAML resolves it as a float
		{`"` + strings.Repeat("x", MaxSchedulePayload) + `"`, "larger than the 8192 bytes", true},
		{strings.Repeat("[", 100) + strings.Repeat("]", 100), "nested more than 64 levels", true},
		// An alias bomb stops at the size limit.
		{"a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
			"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n" +
			"e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]", "larger than", true},
		// So does an alias to itself.
		{"&a [*a]", "", true},
	}
	for _, tt := range tests {
		name := tt.yaml
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(tt.yaml), &doc); err != nil {
				t.Fatal(err)
			}
			var got json.RawMessage
			err := payloadField(&got)(doc.Content[0], "p")
			if tt.err {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("want error containing %q, got %v (payload %s)", tt.want, err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			// The bytes survive json.Marshal as they are.
			b, err := json.Marshal(got)
			if err != nil || string(b) != tt.want {
				t.Errorf("json.Marshal changed %s into %s (%v)", got, b, err)
			}
		})
	}
}

func TestParseEventErrors(t *testing.T) {
	tests := []struct {
		name  string
		body  string // after eventsHead
		field string // the FieldError's field
		want  string // substring of the error
	}{
		{"triggers not a list", "triggers: {schedule: x}\n", "triggers", "must be a list of triggers, got a mapping (line 4)"},
		{"too many triggers", "triggers:\n" + strings.Repeat("  - schedule: '@daily'\n", MaxTriggers+1), "triggers", "has 33 triggers, more than the 32 allowed"},
		{"trigger not a mapping", "triggers:\n  - rate(5 minutes)\n", "triggers[0]", `must be a mapping with one of schedule, queue or cloudevent, got string "rate(5 minutes)" (line 5)`},
		{"no kind", "triggers:\n  - timezone: UTC\n", "triggers[0]", "must have one of schedule, queue or cloudevent (line 5)"},
		{"two kinds", "triggers:\n  - schedule: '@daily'\n    queue: {topic: t}\n", "triggers[0]", "must have only one of schedule, queue or cloudevent, got schedule and queue"},
		{"unknown trigger field", "triggers:\n  - schedule: '@daily'\n    zone: UTC\n", "", `unknown field "triggers[0].zone" (line 6)`},
		{"duplicate trigger field", "triggers:\n  - schedule: '@daily'\n    schedule: '@hourly'\n", "", `duplicate field "triggers[0].schedule" (line 6, first at line 5)`},
		{"empty schedule", "triggers:\n  - schedule: ''\n", "triggers[0].schedule", "must not be empty (line 5)"},
		{"null schedule", "triggers:\n  - schedule: ~\n", "triggers[0].schedule", "must not be empty"},
		{"schedule list", "triggers:\n  - schedule: [a]\n", "triggers[0].schedule", "must be a string, got a list"},
		{"bad schedule", "triggers:\n  - schedule: 'cron(0 12 * * * *)'\n", "triggers[0].schedule",
			`triggers[0].schedule: schedule "cron(0 12 * * * *)": day-of-month or day-of-week must be "?"`},
		{"bad cron", "triggers:\n  - schedule: '@daily'\n  - schedule: '61 * * * *'\n", "triggers[1].schedule", "minute: end of range (61)"},
		{"every", "triggers:\n  - schedule: '@every 5m'\n", "triggers[0].schedule", "use rate(...)"},
		{"never fires", "triggers:\n  - schedule: '0 0 30 2 *'\n", "triggers[0].schedule", `schedule "0 0 30 2 *": never fires`},
		{"aws never fires", "triggers:\n  - schedule: 'cron(0 0 31 2 ? *)'\n", "triggers[0].schedule", "never fires"},
		{"aws years past", "triggers:\n  - schedule: 'cron(0 0 1 1 ? 2020)'\n", "triggers[0].schedule",
			`schedule "cron(0 0 1 1 ? 2020)" never fires again: its last tick was 2020-01-01T00:00:00Z`},
		{"aws years past in a zone", "triggers:\n  - schedule: 'cron(0 12 * * ? 2019-2021)'\n    timezone: Europe/Paris\n", "triggers[0].schedule",
			"never fires again: its last tick was 2021-12-31T12:00:00+01:00"},
		{"rate zero", "triggers:\n  - schedule: rate(0 seconds)\n", "triggers[0].schedule", "the shortest rate is rate(1 second)"},
		{"bad timezone", "triggers:\n  - schedule: '@daily'\n    timezone: Mars/Base\n", "triggers[0].timezone", `timezone "Mars/Base": unknown time zone`},
		{"timezone with rate", "triggers:\n  - schedule: rate(1 hour)\n    timezone: Europe/Paris\n", "triggers[0].timezone", "timezone applies to cron schedules only"},
		{"timezone on queue", "triggers:\n  - queue: {topic: t}\n    timezone: UTC\n", "triggers[0].timezone", "is only for schedule triggers (line 6)"},
		{"payload on cloudevent", "triggers:\n  - cloudevent: {type: t}\n    payload: 1\n", "triggers[0].payload", "is only for schedule triggers"},
		{"missed on queue", "triggers:\n  - queue: {topic: t}\n    missed: last\n", "triggers[0].missed", "is only for schedule triggers"},
		{"missed unknown", "triggers:\n  - schedule: '@daily'\n    missed: all\n", "triggers[0].missed", `unknown value "all" (want skip or last)`},
		{"payload key", "triggers:\n  - schedule: '@daily'\n    payload: {1: a}\n", "triggers[0].payload", `mapping keys must be strings, got number "1" (line 6)`},
		{"payload too big", "triggers:\n  - schedule: '@daily'\n    payload: " + strings.Repeat("x", MaxSchedulePayload) + "\n", "triggers[0].payload", "larger than the 8192 bytes allowed"},
		{"queue null", "triggers:\n  - queue: ~\n", "triggers[0].queue", "must be a mapping with topic"},
		{"queue unknown field", "triggers:\n  - queue: {topic: t, size: 3}\n", "", `unknown field "triggers[0].queue.size" (line 5)`},
		{"queue no topic", "triggers:\n  - queue: {batch: 3}\n", "triggers[0].queue.topic", "is required"},
		{"queue bad topic", "triggers:\n  - queue: {topic: a.b}\n", "triggers[0].queue.topic", `"a.b" may contain only letters, digits`},
		{"queue long topic", "triggers:\n  - queue: {topic: " + strings.Repeat("t", MaxTopicNameLen+1) + "}\n", "triggers[0].queue.topic", "must be at most 64 characters (got 65)"},
		{"queue same topic", "triggers:\n  - queue: {topic: t}\n  - queue: {topic: t}\n", "triggers[1].queue.topic", `topic "t" is already consumed by triggers[0]`},
		{"queue batch", "triggers:\n  - queue: {topic: t, batch: 1001}\n", "triggers[0].queue.batch", "must be between 1 and 1000 messages (got 1001)"},
		{"queue batch negative", "triggers:\n  - queue: {topic: t, batch: -1}\n", "triggers[0].queue.batch", "must be between 1 and 1000"},
		{"queue batch string", "triggers:\n  - queue: {topic: t, batch: ten}\n", "triggers[0].queue.batch", `must be a whole number, got string "ten" (line 5)`},
		{"queue window", "triggers:\n  - queue: {topic: t, window: 6m}\n", "triggers[0].queue.window", "must be between 0s and 5m (got 6m)"},
		{"queue window garbage", "triggers:\n  - queue: {topic: t, window: soon}\n", "triggers[0].queue.window", `invalid duration "soon"`},
		{"queue receives", "triggers:\n  - queue: {topic: t, maxReceives: 1001}\n", "triggers[0].queue.maxReceives", "must be between 1 and 1000 (got 1001)"},
		{"queue concurrency", "triggers:\n  - queue: {topic: t, concurrency: 1001}\n", "triggers[0].queue.concurrency", "must be between 1 and 1000 batches"},
		{"cloudevent empty", "triggers:\n  - cloudevent: {}\n", "triggers[0].cloudevent", "must set type, source or both"},
		{"cloudevent string", "triggers:\n  - cloudevent: com.example\n", "triggers[0].cloudevent", "must be a mapping with type and source"},
		{"cloudevent long type", "triggers:\n  - cloudevent: {type: " + strings.Repeat("t", MaxCloudEventAttrLen+1) + "}\n", "triggers[0].cloudevent.type", "must be at most 256 characters"},
		{"cloudevent long source", "triggers:\n  - cloudevent: {source: " + strings.Repeat("s", MaxCloudEventAttrLen+1) + "}\n", "triggers[0].cloudevent.source", "must be at most 256 characters"},

		{"async list", "async: [1]\n", "async", "must be a mapping with retries"},
		{"async unknown", "async:\n  retry: 1\n", "", `unknown field "async.retry" (line 5)`},
		{"async retries", "async:\n  retries: 3\n", "async.retries", "must be between 0 and 2 (got 3)"},
		{"async retries negative", "async:\n  retries: -1\n", "async.retries", "must be between 0 and 2 (got -1)"},
		{"async retries string", "async:\n  retries: two\n", "async.retries", "must be a whole number"},
		{"async maxAge short", "async:\n  maxAge: 500ms\n", "async.maxAge", "must be between 1s and 6h (got 500ms)"},
		{"async maxAge long", "async:\n  maxAge: 7h\n", "async.maxAge", "must be between 1s and 6h (got 7h)"},
		{"async backoff short", "async:\n  backoff: 1ms\n", "async.backoff", "must be between 10ms and 15m (got 1ms)"},
		{"async backoff long", "async:\n  backoff: 16m\n", "async.backoff", "must be between 10ms and 15m"},
		{"async concurrency", "async:\n  concurrency: 1001\n", "async.concurrency", "must be between 1 and 1000"},
		{"async concurrency negative", "async:\n  concurrency: -1\n", "async.concurrency", "must be between 1 and 1000"},
		{"destination empty", "async:\n  onSuccess: {}\n", "async.onSuccess", "must have one of function or topic"},
		{"destination both", "async:\n  onFailure: {function: a, topic: b}\n", "async.onFailure", "must have only one of function or topic"},
		{"destination scalar", "async:\n  onSuccess: audit\n", "async.onSuccess", `must be a mapping with function or topic, got string "audit" (line 5)`},
		{"destination unknown", "async:\n  onSuccess: {queue: q}\n", "", `unknown field "async.onSuccess.queue" (line 5)`},
		{"destination bad function", "async:\n  onSuccess: {function: -x}\n", "async.onSuccess.function", `"-x" may contain only letters`},
		{"destination long function", "async:\n  onSuccess: {function: " + strings.Repeat("f", MaxNameLen+1) + "}\n", "async.onSuccess.function", "must be at most 64 characters"},
		{"destination bad topic", "async:\n  onFailure: {topic: 'a b'}\n", "async.onFailure.topic", `"a b" may contain only letters`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(eventsHead + tt.body))
			if err == nil {
				t.Fatalf("want error containing %q, got manifest %s", tt.want, show(m))
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not match ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if tt.field != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Errorf("want FieldError for %q, got %#v (%v)", tt.field, fe, err)
				} else if !strings.HasPrefix(fe.Error(), "tern.yaml: "+tt.field+": ") {
					t.Errorf("error %q does not start with the field", fe)
				}
			}
		})
	}
}

// TestValidateEvents covers manifests built in Go or decoded from JSON,
// which Parse never saw.
func TestValidateEvents(t *testing.T) {
	tests := []struct {
		name   string
		modify func(m *Manifest)
		field  string // "" means valid
	}{
		{"zero async", func(m *Manifest) { m.Async = Async{} }, ""},
		{"schedule", func(m *Manifest) { m.Triggers = []Trigger{{Schedule: "*/5 * * * *", Timezone: "Asia/Tokyo"}} }, ""},
		{"missed empty is skip", func(m *Manifest) { m.Triggers = []Trigger{{Schedule: "@daily", Missed: ""}} }, ""},
		{"payload", func(m *Manifest) {
			m.Triggers = []Trigger{{Schedule: "@daily", Payload: json.RawMessage(`{ "a" : [1, 2] }`)}}
		}, ""},
		{"payload invalid JSON", func(m *Manifest) {
			m.Triggers = []Trigger{{Schedule: "@daily", Payload: json.RawMessage(`{a}`)}}
		}, "triggers[0].payload"},
		{"payload too big", func(m *Manifest) {
			m.Triggers = []Trigger{{Schedule: "@daily", Payload: json.RawMessage(`"` + strings.Repeat("x", MaxSchedulePayload) + `"`)}}
		}, "triggers[0].payload"},
		{"payload big only with spaces", func(m *Manifest) {
			m.Triggers = []Trigger{{Schedule: "@daily", Payload: json.RawMessage(`[` + strings.Repeat(" ", MaxSchedulePayload) + `1]`)}}
		}, ""},
		{"blank schedule", func(m *Manifest) { m.Triggers = []Trigger{{Schedule: "  "}} }, "triggers[0].schedule"},
		{"no kind", func(m *Manifest) { m.Triggers = []Trigger{{}} }, "triggers[0]"},
		{"two kinds", func(m *Manifest) {
			m.Triggers = []Trigger{{Queue: &QueueTrigger{Topic: "t", Batch: 1, MaxReceives: 1, Concurrency: 1}, CloudEvent: &CloudEventTrigger{Type: "x"}}}
		}, "triggers[0]"},
		{"missed on queue", func(m *Manifest) {
			m.Triggers = []Trigger{{Missed: MissedSkip, Queue: &QueueTrigger{Topic: "t", Batch: 1, MaxReceives: 1, Concurrency: 1}}}
		}, "triggers[0].missed"},
		{"queue zero batch", func(m *Manifest) {
			m.Triggers = []Trigger{{Queue: &QueueTrigger{Topic: "t", MaxReceives: 1, Concurrency: 1}}}
		}, "triggers[0].queue.batch"},
		{"queue negative window", func(m *Manifest) {
			m.Triggers = []Trigger{{Queue: &QueueTrigger{Topic: "t", Batch: 1, Window: -1, MaxReceives: 1, Concurrency: 1}}}
		}, "triggers[0].queue.window"},
		{"too many triggers", func(m *Manifest) {
			for range MaxTriggers + 1 {
				m.Triggers = append(m.Triggers, Trigger{Schedule: "@daily"})
			}
		}, "triggers"},
		{"retries 0", func(m *Manifest) { m.Async.Retries = intp(0) }, ""},
		{"retries 3", func(m *Manifest) { m.Async.Retries = intp(3) }, "async.retries"},
		{"maxAge negative", func(m *Manifest) { m.Async.MaxAge = -1 }, "async.maxAge"},
		{"backoff max", func(m *Manifest) { m.Async.Backoff = MaxAsyncBackoff }, ""},
		{"concurrency max", func(m *Manifest) { m.Async.Concurrency = MaxScale }, ""},
		{"destination function", func(m *Manifest) { m.Async.OnSuccess = &Destination{Function: "fn_2"} }, ""},
		{"destination empty", func(m *Manifest) { m.Async.OnFailure = &Destination{} }, "async.onFailure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := valid()
			tt.modify(m)
			err := m.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("want a FieldError for %q, got %v", tt.field, err)
			}
		})
	}
}

func TestEventsJSONRoundTrip(t *testing.T) {
	m, err := Parse([]byte(eventsYAML))
	if err != nil {
		t.Fatal(err)
	}
	// Every field set.
	m.Triggers[0].Payload = json.RawMessage(`{"all":["fields"]}`)
	m.Async.Retries = intp(1)
	j, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"triggers":[{"schedule":"cron(0 12 ? * MON-FRI *)","timezone":"Europe/Paris","payload":{"all":["fields"]},"missed":"last"}`,
		`"queue":{"topic":"orders","batch":20,"window":"1s","maxReceives":3,"concurrency":4}`,
		`"cloudevent":{"type":"com.example.created","source":"/orders"}`,
		`"async":{"retries":1,"maxAge":"1h","backoff":"10s","concurrency":5,"onSuccess":{"function":"audit"},"onFailure":{"topic":"failures"}}`,
	} {
		if !strings.Contains(string(j), want) {
			t.Errorf("JSON %s lacks %s", j, want)
		}
	}
	var back Manifest
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, m) {
		t.Errorf("JSON round trip:\n got %s\nwant %s", show(&back), show(m))
	}
	if err := back.Validate(); err != nil {
		t.Errorf("round-tripped manifest is invalid: %v", err)
	}
}

func TestCloneEvents(t *testing.T) {
	m, err := Parse([]byte(eventsYAML))
	if err != nil {
		t.Fatal(err)
	}
	c := m.Clone()
	if !reflect.DeepEqual(c, m) {
		t.Fatalf("clone differs: %s", show(c))
	}
	c.Triggers[0].Payload[2] = 'X'
	c.Triggers[2].Queue.Batch = 99
	c.Triggers[4].CloudEvent.Type = "other"
	*c.Async.Retries = 2
	c.Async.OnSuccess.Function = "other"
	c.Async.OnFailure.Topic = "other"
	o := m.Triggers
	if o[0].Payload[2] == 'X' || o[2].Queue.Batch == 99 || o[4].CloudEvent.Type == "other" ||
		*m.Async.Retries == 2 || m.Async.OnSuccess.Function == "other" || m.Async.OnFailure.Topic == "other" {
		t.Errorf("clone shares state with the original: %s", show(m))
	}
}

// TestScheduleThatFiresRarelyIsValid: a leap day, or a year still ahead,
// is a schedule that fires.
func TestScheduleThatFiresRarelyIsValid(t *testing.T) {
	next := time.Now().Year() + 1
	for _, expr := range []string{"0 0 29 2 *", "cron(0 0 29 2 ? *)", fmt.Sprintf("cron(0 0 1 1 ? 2020,%d)", next), "rate(1 second)"} {
		src := "name: fn\nruntime: nodejs\nhandler: index.handler\ntriggers:\n  - schedule: '" + expr + "'\n"
		if _, err := Parse([]byte(src)); err != nil {
			t.Errorf("%s: %v", expr, err)
		}
	}
}
