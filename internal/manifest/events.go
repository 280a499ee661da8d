package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ternhq/tern/internal/jsonstr"
	"github.com/ternhq/tern/internal/schedule"
)

// Defaults and limits of the event fields (triggers and async).
const (
	DefaultAsyncRetries   = 2
	MaxAsyncRetries       = 2
	DefaultAsyncMaxAge    = Duration(6 * time.Hour)
	MinAsyncMaxAge        = Duration(time.Second)
	MaxAsyncMaxAge        = Duration(6 * time.Hour)
	DefaultAsyncBackoff   = Duration(time.Minute)
	MinAsyncBackoff       = Duration(10 * time.Millisecond)
	MaxAsyncBackoff       = Duration(15 * time.Minute)
	DefaultQueueBatch     = 10
	MaxQueueBatch         = 1000
	MaxQueueWindow        = Duration(5 * time.Minute)
	DefaultQueueReceives  = 5
	MaxQueueReceives      = 1000
	DefaultQueueConc      = 2
	MaxQueueConc          = 1000
	MaxTriggers           = 32
	MaxTopicNameLen       = 64
	MaxSchedulePayload    = 8192 // bytes of JSON
	MaxCloudEventAttrLen  = 256
	MissedSkip            = "skip"
	MissedLast            = "last"
	DefaultScheduleMissed = MissedSkip
)

// Trigger is one event source that runs the function. Exactly one of
// Schedule, Queue and CloudEvent is set.
type Trigger struct {
	// Schedule is a cron expression ("*/5 * * * *"), an AWS
	// "cron(0 12 * * ? *)" or a "rate(5 minutes)".
	Schedule string `json:"schedule,omitempty" yaml:"schedule,omitempty"`
	// Timezone is an IANA zone name for cron schedules (default UTC).
	Timezone string `json:"timezone,omitempty" yaml:"timezone,omitempty"`
	// Payload, when set, is the event sent on every tick instead of the
	// EventBridge "Scheduled Event" (any YAML value, kept as compact
	// JSON; Trigger.MarshalYAML writes it back as YAML).
	Payload json.RawMessage `json:"payload,omitempty" yaml:"-"`
	// Missed says what happens to ticks that fell while no server ran:
	// "skip" (default) or "last" (fire the most recent missed tick once).
	// ApplyDefaults sets it to "skip" on schedule triggers; Validate
	// accepts "" as "skip" too.
	Missed string `json:"missed,omitempty" yaml:"missed,omitempty"`

	Queue      *QueueTrigger      `json:"queue,omitempty" yaml:"queue,omitempty"`
	CloudEvent *CloudEventTrigger `json:"cloudevent,omitempty" yaml:"cloudevent,omitempty"`
}

// Kind names the trigger's source: "schedule", "queue" or "cloudevent".
func (t *Trigger) Kind() string {
	switch {
	case t.Schedule != "":
		return "schedule"
	case t.Queue != nil:
		return "queue"
	case t.CloudEvent != nil:
		return "cloudevent"
	}
	return ""
}

// QueueTrigger delivers a topic's messages in batches (the SQS event shape).
type QueueTrigger struct {
	Topic string `json:"topic" yaml:"topic"`
	// Batch is the most messages in one invocation (default 10).
	Batch int `json:"batch" yaml:"batch"`
	// Window is how long to wait for a batch to fill (default 0: deliver
	// what is there as soon as one message is).
	Window Duration `json:"window,omitempty" yaml:"window,omitempty"`
	// MaxReceives is how many deliveries a message gets before it moves
	// to the dead-letter stream (default 5).
	MaxReceives int `json:"maxReceives" yaml:"maxReceives"`
	// Concurrency is how many batches run at once on one server (default 2).
	Concurrency int `json:"concurrency" yaml:"concurrency"`
}

// CloudEventTrigger subscribes the function to CloudEvents posted to
// /v1/events whose type and source equal these (an empty one matches any;
// at least one is set).
type CloudEventTrigger struct {
	Type   string `json:"type,omitempty" yaml:"type,omitempty"`
	Source string `json:"source,omitempty" yaml:"source,omitempty"`
}

// Async governs asynchronous invocations (the API's Event invocation type,
// schedules, CloudEvents, destinations). A zero field means its default;
// ApplyDefaults writes the defaults of MaxAge, Backoff and Concurrency in
// only when the manifest has triggers or sets something in async, so read
// them through MaxAgeOrDefault, BackoffOrDefault, RetryCount and
// Manifest.AsyncConcurrency.
type Async struct {
	// Retries after a failed attempt (0 to 2, default 2), as on Lambda.
	Retries *int `json:"retries,omitempty" yaml:"retries,omitempty"`
	// MaxAge is how old an event may get before it is dead-lettered
	// instead of run (default and most 6h).
	MaxAge Duration `json:"maxAge,omitempty" yaml:"maxAge,omitempty"`
	// Backoff is the wait before the first retry; it doubles for each
	// next one (default 1m).
	Backoff Duration `json:"backoff,omitempty" yaml:"backoff,omitempty"`
	// Concurrency bounds the function's async invocations running at
	// once, across all servers on one NATS (default scale.max; see
	// Manifest.AsyncConcurrency).
	Concurrency int          `json:"concurrency,omitempty" yaml:"concurrency,omitempty"`
	OnSuccess   *Destination `json:"onSuccess,omitempty" yaml:"onSuccess,omitempty"`
	OnFailure   *Destination `json:"onFailure,omitempty" yaml:"onFailure,omitempty"`
}

// RetryCount is Retries with its default applied.
func (a *Async) RetryCount() int {
	if a == nil || a.Retries == nil {
		return DefaultAsyncRetries
	}
	return *a.Retries
}

// Destination receives an invocation record: another function (run
// asynchronously) or a topic. Exactly one is set.
type Destination struct {
	Function string `json:"function,omitempty" yaml:"function,omitempty"`
	Topic    string `json:"topic,omitempty" yaml:"topic,omitempty"`
}

// MaxAgeOrDefault is MaxAge, or its default when unset.
func (a *Async) MaxAgeOrDefault() time.Duration {
	if a.MaxAge == 0 {
		return DefaultAsyncMaxAge.D()
	}
	return a.MaxAge.D()
}

// BackoffOrDefault is Backoff, or its default when unset.
func (a *Async) BackoffOrDefault() time.Duration {
	if a.Backoff == 0 {
		return DefaultAsyncBackoff.D()
	}
	return a.Backoff.D()
}

func (t Trigger) clone() Trigger {
	c := t
	if t.Payload != nil {
		c.Payload = append(json.RawMessage(nil), t.Payload...)
	}
	if t.Queue != nil {
		q := *t.Queue
		c.Queue = &q
	}
	if t.CloudEvent != nil {
		e := *t.CloudEvent
		c.CloudEvent = &e
	}
	return c
}

func (a Async) clone() Async {
	c := a
	if a.Retries != nil {
		r := *a.Retries
		c.Retries = &r
	}
	if a.OnSuccess != nil {
		d := *a.OnSuccess
		c.OnSuccess = &d
	}
	if a.OnFailure != nil {
		d := *a.OnFailure
		c.OnFailure = &d
	}
	return c
}

// AsyncConcurrency is Async.Concurrency with its default, scale.max,
// applied.
func (m *Manifest) AsyncConcurrency() int {
	switch {
	case m.Async.Concurrency > 0:
		return m.Async.Concurrency
	case m.Scale.Max > 0:
		return m.Scale.Max
	}
	return DefaultScaleMax
}

// MarshalYAML writes the trigger as tern.yaml has it, with the payload as
// a YAML value rather than bytes, so a marshalled manifest parses back.
func (t Trigger) MarshalYAML() (any, error) {
	type fields Trigger // drops the method, keeps the tags
	out := struct {
		fields  `yaml:",inline"`
		Payload *yaml.Node `yaml:"payload,omitempty"`
	}{fields: fields(t)}
	if len(t.Payload) > 0 {
		var doc yaml.Node
		if err := yaml.Unmarshal(t.Payload, &doc); err != nil || len(doc.Content) != 1 {
			return nil, fmt.Errorf("trigger payload is not valid JSON: %v", err)
		}
		out.Payload = doc.Content[0]
	}
	return out, nil
}

// applyEventDefaults fills the defaults of triggers and async. It runs
// after scale.max got its default, which async.concurrency copies.
func (m *Manifest) applyEventDefaults() {
	for i := range m.Triggers {
		t := &m.Triggers[i]
		if t.Schedule != "" && t.Missed == "" {
			t.Missed = DefaultScheduleMissed
		}
		if q := t.Queue; q != nil {
			if q.Batch == 0 {
				q.Batch = DefaultQueueBatch
			}
			if q.MaxReceives == 0 {
				q.MaxReceives = DefaultQueueReceives
			}
			if q.Concurrency == 0 {
				q.Concurrency = DefaultQueueConc
			}
		}
	}
	// A manifest that uses no events keeps a zero Async (which means the
	// same defaults), so manifests written before events existed do not
	// change when parsed again.
	if len(m.Triggers) == 0 && m.Async == (Async{}) {
		return
	}
	a := &m.Async
	if a.MaxAge == 0 {
		a.MaxAge = DefaultAsyncMaxAge
	}
	if a.Backoff == 0 {
		a.Backoff = DefaultAsyncBackoff
	}
	if a.Concurrency == 0 {
		a.Concurrency = m.Scale.Max
	}
}

// validateEvents checks triggers and async, reporting through add.
func (m *Manifest) validateEvents(add func(field, format string, args ...any)) {
	if len(m.Triggers) > MaxTriggers {
		add("triggers", "has %d triggers, more than the %d allowed", len(m.Triggers), MaxTriggers)
	}
	topics := map[string]int{} // queue topic -> index of its trigger
	for i := range m.Triggers {
		t := &m.Triggers[i]
		field := fmt.Sprintf("triggers[%d]", i)
		var kinds []string
		if t.Schedule != "" {
			kinds = append(kinds, "schedule")
		}
		if t.Queue != nil {
			kinds = append(kinds, "queue")
		}
		if t.CloudEvent != nil {
			kinds = append(kinds, "cloudevent")
		}
		switch len(kinds) {
		case 0:
			add(field, "must have one of schedule, queue or cloudevent")
		case 1:
		default:
			add(field, "must have only one of schedule, queue or cloudevent, got %s", strings.Join(kinds, " and "))
		}

		if t.Schedule == "" {
			for _, f := range []struct {
				name string
				set  bool
			}{{"timezone", t.Timezone != ""}, {"payload", len(t.Payload) > 0}, {"missed", t.Missed != ""}} {
				if f.set {
					add(field+"."+f.name, "is only for schedule triggers")
				}
			}
		} else {
			validateSchedule(t, field, add)
		}
		if q := t.Queue; q != nil {
			f := field + ".queue"
			checkName(f+".topic", q.Topic, MaxTopicNameLen, add)
			if first, dup := topics[q.Topic]; dup && q.Topic != "" {
				add(f+".topic", "topic %q is already consumed by triggers[%d]", q.Topic, first)
			} else {
				topics[q.Topic] = i
			}
			if q.Batch < 1 || q.Batch > MaxQueueBatch {
				add(f+".batch", "must be between 1 and %d messages (got %d)", MaxQueueBatch, q.Batch)
			}
			if q.Window < 0 || q.Window > MaxQueueWindow {
				add(f+".window", "must be between 0s and %s (got %s)", MaxQueueWindow, q.Window)
			}
			if q.MaxReceives < 1 || q.MaxReceives > MaxQueueReceives {
				add(f+".maxReceives", "must be between 1 and %d (got %d)", MaxQueueReceives, q.MaxReceives)
			}
			if q.Concurrency < 1 || q.Concurrency > MaxQueueConc {
				add(f+".concurrency", "must be between 1 and %d batches (got %d)", MaxQueueConc, q.Concurrency)
			}
		}
		if e := t.CloudEvent; e != nil {
			f := field + ".cloudevent"
			if e.Type == "" && e.Source == "" {
				add(f, "must set type, source or both")
			}
			if len(e.Type) > MaxCloudEventAttrLen {
				add(f+".type", "must be at most %d characters (got %d)", MaxCloudEventAttrLen, len(e.Type))
			}
			if len(e.Source) > MaxCloudEventAttrLen {
				add(f+".source", "must be at most %d characters (got %d)", MaxCloudEventAttrLen, len(e.Source))
			}
		}
	}

	a := &m.Async
	if a.Retries != nil && (*a.Retries < 0 || *a.Retries > MaxAsyncRetries) {
		add("async.retries", "must be between 0 and %d (got %d)", MaxAsyncRetries, *a.Retries)
	}
	if a.MaxAge != 0 && (a.MaxAge < MinAsyncMaxAge || a.MaxAge > MaxAsyncMaxAge) {
		add("async.maxAge", "must be between %s and %s (got %s)", MinAsyncMaxAge, MaxAsyncMaxAge, a.MaxAge)
	}
	if a.Backoff != 0 && (a.Backoff < MinAsyncBackoff || a.Backoff > MaxAsyncBackoff) {
		add("async.backoff", "must be between %s and %s (got %s)", MinAsyncBackoff, MaxAsyncBackoff, a.Backoff)
	}
	if a.Concurrency < 0 || a.Concurrency > MaxScale {
		add("async.concurrency", "must be between 1 and %d, or 0 for scale.max (got %d)", MaxScale, a.Concurrency)
	}
	validateDestination(a.OnSuccess, "async.onSuccess", add)
	validateDestination(a.OnFailure, "async.onFailure", add)
}

// validateSchedule checks the fields of a schedule trigger.
func validateSchedule(t *Trigger, field string, add func(field, format string, args ...any)) {
	s, err := schedule.Parse(t.Schedule, "")
	if err != nil {
		add(field+".schedule", "%v", err)
	} else if t.Timezone != "" {
		if s, err = schedule.Parse(t.Schedule, t.Timezone); err != nil {
			add(field+".timezone", "%v", err)
		}
	}
	if now := time.Now(); err == nil && s.Next(now).IsZero() {
		// Parse refused what never fires at all: this one's years are past.
		add(field+".schedule", "schedule %q never fires again: its last tick was %s", t.Schedule, s.Last(now, time.Time{}).Format(time.RFC3339))
	}
	switch t.Missed {
	case "", MissedSkip, MissedLast:
	default:
		add(field+".missed", "unknown value %q (want %s or %s)", t.Missed, MissedSkip, MissedLast)
	}
	if len(t.Payload) > 0 {
		var compact bytes.Buffer
		if err := json.Compact(&compact, t.Payload); err != nil {
			add(field+".payload", "is not valid JSON: %v", err)
		} else if compact.Len() > MaxSchedulePayload {
			add(field+".payload", "takes %d bytes as JSON, more than the %d allowed", compact.Len(), MaxSchedulePayload)
		}
	}
}

func validateDestination(d *Destination, field string, add func(field, format string, args ...any)) {
	switch {
	case d == nil:
	case d.Function == "" && d.Topic == "":
		add(field, "must have one of function or topic")
	case d.Function != "" && d.Topic != "":
		add(field, "must have only one of function or topic")
	case d.Function != "":
		checkName(field+".function", d.Function, MaxNameLen, add)
	default:
		checkName(field+".topic", d.Topic, MaxTopicNameLen, add)
	}
}

// checkName applies the function-name rule, which topic names share.
func checkName(field, name string, maxLen int, add func(field, format string, args ...any)) {
	switch {
	case name == "":
		add(field, "is required")
	case len(name) > maxLen:
		add(field, "must be at most %d characters (got %d)", maxLen, len(name))
	case !nameRE.MatchString(name):
		add(field, "%q may contain only letters, digits, '-' and '_', and must start with a letter or digit", name)
	}
}

// decodeTriggers decodes the triggers list of tern.yaml.
func decodeTriggers(v *yaml.Node, field string, dst *[]Trigger) error {
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		return typeError(field, "a list of triggers", v)
	}
	if len(v.Content) > MaxTriggers {
		return &FieldError{Field: field, Message: fmt.Sprintf("has %d triggers, more than the %d allowed (line %d)", len(v.Content), MaxTriggers, v.Line)}
	}
	triggers := make([]Trigger, len(v.Content))
	var errs []error
	for i, item := range v.Content {
		if err := decodeTrigger(deref(item), fmt.Sprintf("%s[%d]", field, i), &triggers[i]); err != nil {
			errs = append(errs, err)
		}
	}
	*dst = triggers
	return errors.Join(errs...)
}

// decodeTrigger decodes one item of triggers, checking that it has one
// kind and only that kind's fields.
func decodeTrigger(n *yaml.Node, field string, t *Trigger) error {
	if n.Kind != yaml.MappingNode {
		return typeError(field, "a mapping with one of schedule, queue or cloudevent", n)
	}
	lines := map[string]int{} // keys present -> line of their value
	at := func(key string, decode func(*yaml.Node, string) error) func(*yaml.Node, string) error {
		return func(v *yaml.Node, field string) error {
			lines[key] = v.Line
			return decode(v, field)
		}
	}
	errs := decodeMapping(n, field+".", map[string]func(*yaml.Node, string) error{
		"schedule": at("schedule", requiredStringField(&t.Schedule)),
		"timezone": at("timezone", stringField(&t.Timezone)),
		"payload":  at("payload", payloadField(&t.Payload)),
		"missed":   at("missed", stringField(&t.Missed)),
		"queue": at("queue", func(v *yaml.Node, field string) error {
			t.Queue = &QueueTrigger{}
			return decodeStruct(v, field, "a mapping with topic, batch, window, maxReceives and concurrency", map[string]func(*yaml.Node, string) error{
				"topic":       stringField(&t.Queue.Topic),
				"batch":       nonZeroInt(&t.Queue.Batch, fmt.Sprintf("1–%d messages; leave it out for the default %d", MaxQueueBatch, DefaultQueueBatch)),
				"window":      durationField(&t.Queue.Window),
				"maxReceives": nonZeroInt(&t.Queue.MaxReceives, fmt.Sprintf("1–%d deliveries; leave it out for the default %d", MaxQueueReceives, DefaultQueueReceives)),
				"concurrency": nonZeroInt(&t.Queue.Concurrency, fmt.Sprintf("1–%d batches; leave it out for the default %d", MaxQueueConc, DefaultQueueConc)),
			})
		}),
		"cloudevent": at("cloudevent", func(v *yaml.Node, field string) error {
			t.CloudEvent = &CloudEventTrigger{}
			return decodeStruct(v, field, "a mapping with type and source", map[string]func(*yaml.Node, string) error{
				"type":   stringField(&t.CloudEvent.Type),
				"source": stringField(&t.CloudEvent.Source),
			})
		}),
	})

	var kinds []string
	for _, k := range []string{"schedule", "queue", "cloudevent"} {
		if _, ok := lines[k]; ok {
			kinds = append(kinds, k)
		}
	}
	switch {
	case len(kinds) == 0:
		errs = append(errs, &FieldError{Field: field, Message: fmt.Sprintf("must have one of schedule, queue or cloudevent (line %d)", n.Line)})
	case len(kinds) > 1:
		errs = append(errs, &FieldError{Field: field, Message: fmt.Sprintf("must have only one of schedule, queue or cloudevent, got %s (line %d)", strings.Join(kinds, " and "), n.Line)})
	case kinds[0] != "schedule":
		for _, k := range []string{"timezone", "payload", "missed"} {
			if line, ok := lines[k]; ok {
				errs = append(errs, &FieldError{Field: field + "." + k, Message: fmt.Sprintf("is only for schedule triggers (line %d)", line)})
			}
		}
	}
	return errors.Join(errs...)
}

// decodeAsync decodes the async mapping of tern.yaml.
func decodeAsync(v *yaml.Node, field string, a *Async) error {
	if isNull(v) {
		return nil
	}
	return decodeStruct(v, field, "a mapping with retries, maxAge, backoff, concurrency, onSuccess and onFailure", map[string]func(*yaml.Node, string) error{
		"retries":     intPtrField(&a.Retries),
		"maxAge":      nonZeroDuration(&a.MaxAge, fmt.Sprintf("%s–%s; leave it out for the default %s", MinAsyncMaxAge, MaxAsyncMaxAge, DefaultAsyncMaxAge)),
		"backoff":     nonZeroDuration(&a.Backoff, fmt.Sprintf("%s–%s; leave it out for the default %s", MinAsyncBackoff, MaxAsyncBackoff, DefaultAsyncBackoff)),
		"concurrency": intField(&a.Concurrency),
		"onSuccess":   destinationField(&a.OnSuccess),
		"onFailure":   destinationField(&a.OnFailure),
	})
}

func destinationField(dst **Destination) func(*yaml.Node, string) error {
	return func(v *yaml.Node, field string) error {
		if isNull(v) {
			return nil
		}
		d := &Destination{}
		*dst = d
		return decodeStruct(v, field, "a mapping with function or topic", map[string]func(*yaml.Node, string) error{
			"function": stringField(&d.Function),
			"topic":    stringField(&d.Topic),
		})
	}
}

// decodeStruct decodes a mapping that must be there (null is a type
// error too).
func decodeStruct(v *yaml.Node, field, want string, fields map[string]func(*yaml.Node, string) error) error {
	if v.Kind != yaml.MappingNode {
		return typeError(field, want, v)
	}
	return errors.Join(decodeMapping(v, field+".", fields)...)
}

// requiredStringField is stringField for a field that, when present, must
// not be null or blank.
func requiredStringField(dst *string) func(*yaml.Node, string) error {
	return func(v *yaml.Node, field string) error {
		if v.Kind == yaml.ScalarNode && (isNull(v) || strings.TrimSpace(v.Value) == "") {
			return &FieldError{Field: field, Message: fmt.Sprintf("must not be empty (line %d)", v.Line)}
		}
		return stringField(dst)(v, field)
	}
}

// intPtrField is intField for a field whose zero is kept apart from
// absent; null means absent.
func intPtrField(dst **int) func(*yaml.Node, string) error {
	return func(v *yaml.Node, field string) error {
		if isNull(v) {
			return nil
		}
		var i int
		if err := intField(&i)(v, field); err != nil {
			return err
		}
		*dst = &i
		return nil
	}
}

// payloadField decodes any YAML value into compact JSON; null means no
// payload.
func payloadField(dst *json.RawMessage) func(*yaml.Node, string) error {
	return func(v *yaml.Node, field string) error {
		if isNull(v) {
			return nil
		}
		b, err := appendJSON(nil, v, 0)
		if err != nil {
			return &FieldError{Field: field, Message: err.Error()}
		}
		*dst = b
		return nil
	}
}

// maxPayloadDepth bounds the nesting of a payload.
const maxPayloadDepth = 64

// appendJSON appends n as JSON, keeping the order of mapping keys and
// escaping strings as encoding/json does, so the bytes survive
// json.Marshal unchanged. It stops as soon as the JSON outgrows
// MaxSchedulePayload, which also bounds the work that aliases can cause.
func appendJSON(dst []byte, n *yaml.Node, depth int) ([]byte, error) {
	n = deref(n)
	if len(dst) > MaxSchedulePayload {
		return nil, fmt.Errorf("is larger than the %d bytes allowed as JSON", MaxSchedulePayload)
	}
	if depth > maxPayloadDepth {
		return nil, fmt.Errorf("is nested more than %d levels deep (line %d)", maxPayloadDepth, n.Line)
	}
	var err error
	switch n.Kind {
	case yaml.MappingNode:
		dst = append(dst, '{')
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := deref(n.Content[i])
			switch {
			case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
				return nil, fmt.Errorf("merge keys (<<) are not supported (line %d)", k.Line)
			case k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str":
				return nil, fmt.Errorf("mapping keys must be strings, got %s (line %d)", describe(k), k.Line)
			}
			if line, dup := seen[k.Value]; dup {
				return nil, fmt.Errorf("duplicate key %q (line %d, first at line %d)", k.Value, k.Line, line)
			}
			seen[k.Value] = k.Line
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(jsonstr.Append(dst, k.Value), ':')
			if dst, err = appendJSON(dst, n.Content[i+1], depth+1); err != nil {
				return nil, err
			}
		}
		dst = append(dst, '}')
	case yaml.SequenceNode:
		dst = append(dst, '[')
		for i, item := range n.Content {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = appendJSON(dst, item, depth+1); err != nil {
				return nil, err
			}
		}
		dst = append(dst, ']')
	case yaml.ScalarNode:
		if dst, err = appendScalar(dst, n); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("has %s (line %d)", describe(n), n.Line)
	}
	if len(dst) > MaxSchedulePayload {
		return nil, fmt.Errorf("is larger than the %d bytes allowed as JSON", MaxSchedulePayload)
	}
	return dst, nil
}

// appendScalar appends a YAML scalar as JSON by its resolved tag; tags
// JSON has no type for (timestamps, binary, custom tags) become strings
// of the text as written.
func appendScalar(dst []byte, n *yaml.Node) ([]byte, error) {
	switch n.ShortTag() {
	case "!!null":
		return append(dst, "null"...), nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, fmt.Errorf("invalid boolean %q (line %d)", n.Value, n.Line)
		}
		return strconv.AppendBool(dst, b), nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err == nil {
			return strconv.AppendInt(dst, i, 10), nil
		}
		var u uint64
		if err := n.Decode(&u); err == nil {
			return strconv.AppendUint(dst, u, 10), nil
		}
		return nil, fmt.Errorf("number %s is out of range (line %d)", n.Value, n.Line)
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("number %s has no JSON form (line %d)", n.Value, n.Line)
		}
		b, err := json.Marshal(f)
		if err != nil {
			return nil, fmt.Errorf("number %s has no JSON form (line %d)", n.Value, n.Line)
		}
		return append(dst, b...), nil
	}
	return jsonstr.Append(dst, n.Value), nil
}
