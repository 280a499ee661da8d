package manifest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const fullYAML = `# a complete manifest
name: thumbnails
runtime: nodejs
handler: src/index.api.handler
memory: 512
timeout: 1m
environment:
  BUCKET: images
  PORT: 8080
  EMPTY:
scale:
  min: 1
  max: 20
  idle: 90
`

func TestParseFull(t *testing.T) {
	m, err := Parse([]byte(fullYAML))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Manifest{
		Name:        "thumbnails",
		Runtime:     "nodejs",
		Handler:     "src/index.api.handler",
		Concurrency: 1, Memory: 512,
		Timeout:     Duration(time.Minute),
		Environment: map[string]string{"BUCKET": "images", "PORT": "8080", "EMPTY": ""},
		Scale:       Scale{Min: 1, Max: 20, Idle: Duration(90 * time.Second)},
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got  %+v\nwant %+v", m, want)
	}
}

func TestParseMinimalAppliesDefaults(t *testing.T) {
	for name, src := range map[string]string{
		"omitted": "name: hello\nruntime: nodejs\nhandler: index.handler\n",
		"zero and null": "name: hello\nruntime: nodejs\nhandler: index.handler\n" +
			"memory: ~\ntimeout: ~\nenvironment:\nscale: {min: 0, max: ~, reserved: 0}\nrateLimit: {rps: 0}\n",
		"null scale": "name: hello\nruntime: nodejs\nhandler: index.handler\nscale: ~\n",
	} {
		t.Run(name, func(t *testing.T) {
			m, err := Parse([]byte(src))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := &Manifest{
				Name:    "hello",
				Runtime: "nodejs",
				Handler: "index.handler",
				Memory:  256, Concurrency: 1,
				Timeout: Duration(30 * time.Second),
				Scale:   Scale{Min: 0, Max: 10, Idle: Duration(5 * time.Minute)},
			}
			if !reflect.DeepEqual(m, want) {
				t.Errorf("got  %+v\nwant %+v", m, want)
			}
		})
	}
}

// TestParseRefusesMeaninglessZero: a 0 written out where it means nothing
// but the default is refused, naming the field, its range and its
// default; where 0 means something (documented), it is kept.
func TestParseRefusesMeaninglessZero(t *testing.T) {
	const head = "name: fn\nruntime: nodejs\nhandler: index.handler\n"
	for _, tc := range []struct{ src, field, want string }{
		{"memory: 0", "memory", "tern.yaml: memory: 0 is not allowed (128–10240 MB; leave it out for the default 256) (line 4)"},
		{"concurrency: 0", "concurrency", "concurrency: 0 is not allowed (1–1000 invocations per instance; leave it out for the default 1)"},
		{"timeout: 0", "timeout", "timeout: 0 is not allowed (1s–15m; leave it out for the default 30s)"},
		{"timeout: 0s", "timeout", "timeout: 0 is not allowed"},
		{`timeout: "0"`, "timeout", "timeout: 0 is not allowed"},
		{"scale: {max: 0}", "scale.max", "scale.max: 0 is not allowed (1–1000 instances; leave it out for the default 10)"},
		{"scale: {idle: 0}", "scale.idle", "scale.idle: 0 is not allowed (1s–24h; leave it out for the default 5m)"},
		{"async: {maxAge: 0}", "async.maxAge", "async.maxAge: 0 is not allowed (1s–6h; leave it out for the default 6h)"},
		{"async: {backoff: 0s}", "async.backoff", "async.backoff: 0 is not allowed (10ms–15m; leave it out for the default 1m)"},
		{"triggers:\n  - queue: {topic: t, batch: 0}", "triggers[0].queue.batch", "0 is not allowed (1–1000 messages; leave it out for the default 10)"},
		{"triggers:\n  - queue: {topic: t, maxReceives: 0}", "triggers[0].queue.maxReceives", "0 is not allowed (1–1000 deliveries; leave it out for the default 5)"},
		{"triggers:\n  - queue: {topic: t, concurrency: 0}", "triggers[0].queue.concurrency", "0 is not allowed (1–1000 batches; leave it out for the default 2)"},
		{"ephemeralStorage: 0", "ephemeralStorage", "ephemeralStorage: 0 is not allowed (512–10240 MB; leave it out for the server's default, 512)"},
		{"errorDetails: yes", "errorDetails", "true or false"},
	} {
		t.Run(tc.src, func(t *testing.T) {
			_, err := Parse([]byte(head + tc.src + "\n"))
			var fe *FieldError
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("got %v, want a %s error containing %q", err, tc.field, tc.want)
			}
		})
	}
	// Where 0 means something, it stays 0.
	m, err := Parse([]byte(head + "scale: {min: 0, reserved: 0}\nrateLimit: {rps: 0, burst: 0}\n" +
		"async: {retries: 0, concurrency: 0}\ntriggers:\n  - queue: {topic: t, window: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Scale.Min != 0 || m.Scale.Reserved != 0 || m.RateLimit != (RateLimit{}) || m.Async.RetryCount() != 0 ||
		m.AsyncConcurrency() != DefaultScaleMax || m.Triggers[0].Queue.Window != 0 {
		t.Errorf("meaningful zeros: %+v", m)
	}
}

// valid returns a manifest that passes Validate.
func valid() *Manifest {
	m := &Manifest{Name: "fn", Runtime: "nodejs", Handler: "index.handler"}
	m.ApplyDefaults()
	return m
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(m *Manifest)
		field  string // "" means valid
	}{
		{"valid", func(m *Manifest) {}, ""},

		{"name missing", func(m *Manifest) { m.Name = "" }, "name"},

		{"ephemeral storage 512", func(m *Manifest) { m.EphemeralStorage = 512 }, ""},
		{"ephemeral storage 10240", func(m *Manifest) { m.EphemeralStorage = 10240 }, ""},
		{"ephemeral storage 511", func(m *Manifest) { m.EphemeralStorage = 511 }, "ephemeralStorage"},
		{"ephemeral storage 10241", func(m *Manifest) { m.EphemeralStorage = 10241 }, "ephemeralStorage"},
		{"error details with a key", func(m *Manifest) { m.Auth, m.ErrorDetails = AuthKey, true }, ""},
		{"error details for public callers", func(m *Manifest) { m.ErrorDetails = true }, "errorDetails"},
		{"name 64 chars", func(m *Manifest) { m.Name = strings.Repeat("a", 64) }, ""},
		{"name 65 chars", func(m *Manifest) { m.Name = strings.Repeat("a", 65) }, "name"},
		{"name digits and symbols", func(m *Manifest) { m.Name = "9fn_a-b" }, ""},
		{"name starts with dash", func(m *Manifest) { m.Name = "-fn" }, "name"},
		{"name starts with underscore", func(m *Manifest) { m.Name = "_fn" }, "name"},
		{"name has dot", func(m *Manifest) { m.Name = "fn.v2" }, "name"},
		{"name has space", func(m *Manifest) { m.Name = "my fn" }, "name"},

		{"runtime missing", func(m *Manifest) { m.Runtime = "" }, "runtime"},
		{"runtime unknown", func(m *Manifest) { m.Runtime = "python3.12" }, "runtime"},

		{"handler missing", func(m *Manifest) { m.Handler = "" }, "handler"},
		{"handler nested path", func(m *Manifest) { m.Handler = "src/lib/app.handler" }, ""},
		{"handler dotted export", func(m *Manifest) { m.Handler = "index.api.handler" }, ""},
		{"handler dot slash", func(m *Manifest) { m.Handler = "./index.handler" }, ""},
		{"handler dotted dir", func(m *Manifest) { m.Handler = "v1.2/index.handler" }, ""},
		{"handler no export", func(m *Manifest) { m.Handler = "index" }, "handler"},
		{"handler no export after dir dot", func(m *Manifest) { m.Handler = "v1.2/index" }, "handler"},
		{"handler empty export", func(m *Manifest) { m.Handler = "index." }, "handler"},
		{"handler empty export part", func(m *Manifest) { m.Handler = "index..handler" }, "handler"},
		{"handler empty file", func(m *Manifest) { m.Handler = ".handler" }, "handler"},
		{"handler empty basename", func(m *Manifest) { m.Handler = "src/.handler" }, "handler"},
		{"handler absolute", func(m *Manifest) { m.Handler = "/var/task/index.handler" }, "handler"},
		{"handler dotdot", func(m *Manifest) { m.Handler = "../index.handler" }, "handler"},
		{"handler inner dotdot", func(m *Manifest) { m.Handler = "src/../../index.handler" }, "handler"},
		{"handler double slash", func(m *Manifest) { m.Handler = "src//index.handler" }, "handler"},
		{"handler backslash", func(m *Manifest) { m.Handler = `src\index.handler` }, "handler"},

		{"memory min", func(m *Manifest) { m.Memory = 128 }, ""},
		{"memory max", func(m *Manifest) { m.Memory = 10240 }, ""},
		{"memory too low", func(m *Manifest) { m.Memory = 127 }, "memory"},
		{"memory too high", func(m *Manifest) { m.Memory = 10241 }, "memory"},
		{"memory zero", func(m *Manifest) { m.Memory = 0 }, "memory"},

		{"timeout min", func(m *Manifest) { m.Timeout = Duration(time.Second) }, ""},
		{"timeout max", func(m *Manifest) { m.Timeout = Duration(15 * time.Minute) }, ""},
		{"timeout too short", func(m *Manifest) { m.Timeout = Duration(999 * time.Millisecond) }, "timeout"},
		{"timeout too long", func(m *Manifest) { m.Timeout = Duration(15*time.Minute + 1) }, "timeout"},
		{"timeout negative", func(m *Manifest) { m.Timeout = Duration(-time.Second) }, "timeout"},

		{"env ok", func(m *Manifest) { m.Environment = map[string]string{"_A1": "x", "b": ""} }, ""},
		{"env key starts with digit", func(m *Manifest) { m.Environment = map[string]string{"1A": "x"} }, "environment.1A"},
		{"env key has dash", func(m *Manifest) { m.Environment = map[string]string{"A-B": "x"} }, "environment.A-B"},
		{"env key empty", func(m *Manifest) { m.Environment = map[string]string{"": "x"} }, "environment."},
		{"env value NUL", func(m *Manifest) { m.Environment = map[string]string{"A": "x\x00y"} }, "environment.A"},
		{"env size at limit", func(m *Manifest) {
			m.Environment = map[string]string{"A": strings.Repeat("x", 4095)}
		}, ""},
		{"env size over limit", func(m *Manifest) {
			m.Environment = map[string]string{"A": strings.Repeat("x", 2048), "B": strings.Repeat("x", 2047)}
		}, "environment"},

		{"scale min negative", func(m *Manifest) { m.Scale.Min = -1 }, "scale.min"},
		{"scale min equals max", func(m *Manifest) { m.Scale.Min, m.Scale.Max = 3, 3 }, ""},
		{"scale min above max", func(m *Manifest) { m.Scale.Min, m.Scale.Max = 4, 3 }, "scale.max"},
		{"scale max zero", func(m *Manifest) { m.Scale.Max = 0 }, "scale.max"},
		{"scale max 1000", func(m *Manifest) { m.Scale.Max = 1000 }, ""},
		{"scale max 1001", func(m *Manifest) { m.Scale.Max = 1001 }, "scale.max"},
		{"scale idle min", func(m *Manifest) { m.Scale.Idle = Duration(time.Second) }, ""},
		{"scale idle max", func(m *Manifest) { m.Scale.Idle = Duration(24 * time.Hour) }, ""},
		{"scale idle too short", func(m *Manifest) { m.Scale.Idle = Duration(500 * time.Millisecond) }, "scale.idle"},
		{"scale idle too long", func(m *Manifest) { m.Scale.Idle = Duration(25 * time.Hour) }, "scale.idle"},
	}
	for _, name := range []string{
		"_HANDLER", "_X_AMZN_TRACE_ID", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
		"AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_RUNTIME_API",
		"LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
	} {
		tests = append(tests, struct {
			name   string
			modify func(m *Manifest)
			field  string
		}{"env reserved " + name, func(m *Manifest) { m.Environment = map[string]string{name: "x"} }, "environment." + name})
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
			if !errors.As(err, &fe) {
				t.Fatalf("want a *FieldError for %q, got %v", tt.field, err)
			}
			if fe.Field != tt.field {
				t.Errorf("field = %q, want %q (error: %v)", fe.Field, tt.field, err)
			}
			if !strings.HasPrefix(err.Error(), "tern.yaml: "+tt.field+": ") {
				t.Errorf("error %q does not start with the field", err)
			}
		})
	}
}

func TestValidateReportsEveryError(t *testing.T) {
	m := &Manifest{Memory: 1, Scale: Scale{Min: -1, Max: 2000}}
	err := m.Validate()
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("not a FieldError: %v", e)
		}
		fields = append(fields, fe.Field)
	}
	want := []string{"name", "runtime", "handler", "memory", "concurrency", "timeout", "scale.min", "scale.max", "scale.idle"}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("fields = %q, want %q", fields, want)
	}
}

func TestFieldErrorMessages(t *testing.T) {
	m := valid()
	m.Scale.Min, m.Scale.Max = 2, 1
	if got, want := m.Validate().Error(), "tern.yaml: scale.max: must be at least scale.min (2)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	m = valid()
	m.Runtime = "ruby"
	if got := m.Validate().Error(); !strings.Contains(got, "nodejs") {
		t.Errorf("runtime error does not list known runtimes: %q", got)
	}
}

func TestParseErrors(t *testing.T) {
	const head = "name: fn\nruntime: nodejs\nhandler: index.handler\n"
	tests := []struct {
		name  string
		src   string
		want  string // substring of the error
		field string // if set, errors.As must find a FieldError with this field
	}{
		{"empty", "", "tern.yaml: file is empty", ""},
		{"whitespace", "  \n\n", "tern.yaml: file is empty", ""},
		{"comment only", "# nothing\n", "tern.yaml: file is empty", ""},
		{"null document", "---\n~\n", "tern.yaml: file is empty", ""},
		{"not a mapping", "- a\n- b\n", "must be a mapping", ""},
		{"syntax", "name: [unclosed\n", "tern.yaml: invalid YAML", ""},
		{"two documents", head + "---\nname: other\n", "single YAML document", ""},
		{"unknown field", head + "memroy: 512\n", `tern.yaml: unknown field "memroy" (line 4)`, ""},
		{"unknown nested field", head + "scale:\n  mx: 3\n", `tern.yaml: unknown field "scale.mx" (line 5)`, ""},
		{"field case matters", "Name: fn\nruntime: nodejs\nhandler: index.handler\n", `unknown field "Name" (line 1)`, ""},
		{"duplicate field", head + "name: again\n", `duplicate field "name" (line 4, first at line 1)`, ""},
		{"duplicate env", head + "environment:\n  A: 1\n  A: 2\n", `duplicate field "environment.A" (line 6`, ""},
		{"memory string", head + "memory: lots\n", `tern.yaml: memory: must be a whole number, got string "lots" (line 4)`, "memory"},
		{"memory quoted number", head + "memory: \"512\"\n", `must be a whole number`, "memory"},
		{"memory float", head + "memory: 512.5\n", `must be a whole number`, "memory"},
		{"memory list", head + "memory: [1]\n", `must be a whole number, got a list (line 4)`, "memory"},
		{"memory huge", head + "memory: 99999999999999999999\n", `memory`, "memory"},
		{"name mapping", "name: {a: b}\nruntime: nodejs\nhandler: index.handler\n", `tern.yaml: name: must be a string, got a mapping (line 1)`, "name"},
		{"handler list", "name: fn\nruntime: nodejs\nhandler: [a]\n", `handler: must be a string`, "handler"},
		{"timeout garbage", head + "timeout: abc\n", `tern.yaml: timeout: invalid duration "abc"`, "timeout"},
		{"timeout negative", head + "timeout: -1\n", `timeout: must not be negative`, "timeout"},
		{"timeout bool", head + "timeout: true\n", `timeout: must be a duration`, "timeout"},
		{"timeout out of range", head + "timeout: 16m\n", `timeout: must be between 1s and 15m (got 16m)`, "timeout"},
		{"environment list", head + "environment: [A]\n", `environment: must be a mapping`, "environment"},
		{"environment nested", head + "environment:\n  A: {b: c}\n", `environment.A: must be a string, got a mapping (line 5)`, "environment.A"},
		{"environment reserved", head + "environment:\n  LAMBDA_TASK_ROOT: /x\n", `environment.LAMBDA_TASK_ROOT: is reserved`, "environment.LAMBDA_TASK_ROOT"},
		{"scale scalar", head + "scale: 5\n", `scale: must be a mapping`, "scale"},
		{"scale idle garbage", head + "scale:\n  idle: soon\n", `scale.idle: invalid duration "soon" (use a form like "30s", "5m", "1h30m" or a number of seconds) (line 5)`, "scale.idle"},
		{"scale min above max", head + "scale: {min: 2, max: 1}\n", "tern.yaml: scale.max: must be at least scale.min (2)", "scale.max"},
		{"missing required", "memory: 512\n", "tern.yaml: name: is required", "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.src))
			if err == nil {
				t.Fatalf("want error containing %q, got manifest %+v", tt.want, m)
			}
			if m != nil {
				t.Errorf("want nil manifest with error, got %+v", m)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if tt.field != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Errorf("want FieldError for %q, got %#v", tt.field, fe)
				}
			}
		})
	}
}

func TestParseUnknownFieldExact(t *testing.T) {
	src := "name: fn\nruntime: nodejs\nhandler: index.handler\nmemroy: 512\n"
	_, err := Parse([]byte(src))
	if err == nil || err.Error() != `tern.yaml: unknown field "memroy" (line 4)` {
		t.Fatalf("got %v", err)
	}
}

func TestParseAliases(t *testing.T) {
	src := "name: &n fn\nruntime: nodejs\nhandler: index.handler\nenvironment:\n  NAME: *n\n"
	m, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if m.Environment["NAME"] != "fn" {
		t.Errorf("alias not followed: %q", m.Environment)
	}
}

func TestDurationYAML(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{`"30s"`, 30 * time.Second, ""},
		{`30s`, 30 * time.Second, ""},
		{`5m`, 5 * time.Minute, ""},
		{`1h30m`, 90 * time.Minute, ""},
		{`30`, 30 * time.Second, ""},
		{`0.5`, 500 * time.Millisecond, ""},
		{`"30"`, 30 * time.Second, ""},
		{`0`, 0, ""},
		{`abc`, 0, "invalid duration"},
		{`-1`, 0, "must not be negative"},
		{`-5s`, 0, "must not be negative"},
		{`-0.5`, 0, "must not be negative"},
		{`.inf`, 0, "invalid duration"},
		{`.nan`, 0, "invalid duration"},
		{`1e300`, 0, "too large"},
		{`true`, 0, "must be a duration"},
		{`[1]`, 0, "must be a duration"},
		{`{a: 1}`, 0, "must be a duration"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var v struct {
				D Duration `yaml:"d"`
			}
			err := yaml.Unmarshal([]byte("d: "+tt.in), &v)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("want error containing %q, got %v (value %v)", tt.wantErr, err, v.D)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.D.D() != tt.want {
				t.Errorf("got %v, want %v", v.D.D(), tt.want)
			}
		})
	}
}

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{`"30s"`, 30 * time.Second, false},
		{`"5m"`, 5 * time.Minute, false},
		{`"1h30m"`, 90 * time.Minute, false},
		{`30`, 30 * time.Second, false},
		{`0.5`, 500 * time.Millisecond, false},
		{`"abc"`, 0, true},
		{`-1`, 0, true},
		{`"-1s"`, 0, true},
		{`true`, 0, true},
		{`{}`, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Duration
			err := json.Unmarshal([]byte(tt.in), &d)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want error, got %v", d.D())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.D() != tt.want {
				t.Errorf("got %v, want %v", d.D(), tt.want)
			}
		})
	}

	d := Duration(7 * time.Second)
	if err := json.Unmarshal([]byte("null"), &d); err != nil || d.D() != 7*time.Second {
		t.Errorf("null changed the value or failed: %v %v", d.D(), err)
	}
}

func TestDurationString(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                           "0s",
		30 * time.Second:            "30s",
		5 * time.Minute:             "5m",
		time.Hour:                   "1h",
		90 * time.Minute:            "1h30m",
		time.Hour + time.Second:     "1h0m1s",
		500 * time.Millisecond:      "500ms",
		time.Minute + time.Second/2: "1m0.5s",
		24 * time.Hour:              "24h",
	} {
		if got := Duration(d).String(); got != want {
			t.Errorf("Duration(%v).String() = %q, want %q", d, got, want)
		}
		back, err := time.ParseDuration(want)
		if err != nil || back != d {
			t.Errorf("%q does not parse back to %v", want, d)
		}
	}
}

func TestDurationRoundTrip(t *testing.T) {
	for _, d := range []Duration{0, Duration(30 * time.Second), Duration(5 * time.Minute), Duration(90 * time.Minute), Duration(1500 * time.Millisecond)} {
		j, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if want := `"` + d.String() + `"`; string(j) != want {
			t.Errorf("JSON %s, want %s", j, want)
		}
		var dj Duration
		if err := json.Unmarshal(j, &dj); err != nil || dj != d {
			t.Errorf("JSON round trip of %v gave %v, %v", d, dj, err)
		}

		y, err := yaml.Marshal(struct{ D Duration }{d})
		if err != nil {
			t.Fatal(err)
		}
		if want := "d: " + d.String() + "\n"; string(y) != want {
			t.Errorf("YAML %q, want %q", y, want)
		}
		var dy struct{ D Duration }
		if err := yaml.Unmarshal(y, &dy); err != nil || dy.D != d {
			t.Errorf("YAML round trip of %v gave %v, %v", d, dy.D, err)
		}
	}
}

func TestManifestJSONRoundTrip(t *testing.T) {
	m, err := Parse([]byte(fullYAML))
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"timeout":"1m"`, `"idle":"1m30s"`, `"memory":512`, `"BUCKET":"images"`} {
		if !strings.Contains(string(j), want) {
			t.Errorf("JSON %s lacks %s", j, want)
		}
	}
	var back Manifest
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, m) {
		t.Errorf("JSON round trip: got %+v, want %+v", back, m)
	}

	min := valid()
	j, err = json.Marshal(min)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(j), "environment") {
		t.Errorf("empty environment not omitted: %s", j)
	}
}

func TestManifestYAMLRoundTrip(t *testing.T) {
	for name, src := range map[string]string{"full": fullYAML, "events": eventsYAML} {
		t.Run(name, func(t *testing.T) {
			m, err := Parse([]byte(src))
			if err != nil {
				t.Fatal(err)
			}
			y, err := yaml.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(y)
			if err != nil {
				t.Fatalf("Parse(%s): %v", y, err)
			}
			if !reflect.DeepEqual(back, m) {
				t.Errorf("YAML round trip:\n got %s\nwant %s\nYAML:\n%s", show(back), show(m), y)
			}
		})
	}
}

func TestClone(t *testing.T) {
	m, err := Parse([]byte(fullYAML))
	if err != nil {
		t.Fatal(err)
	}
	c := m.Clone()
	if !reflect.DeepEqual(c, m) {
		t.Fatalf("clone differs: %+v", c)
	}
	c.Environment["BUCKET"] = "other"
	c.Scale.Max = 1
	if m.Environment["BUCKET"] != "images" || m.Scale.Max != 20 {
		t.Errorf("clone shares state with original: %+v", m)
	}
	if valid().Clone().Environment != nil {
		t.Error("nil environment became non-nil")
	}
	var nilM *Manifest
	if nilM.Clone() != nil {
		t.Error("nil Clone is not nil")
	}
}

func TestParseErrorsMatchErrInvalid(t *testing.T) {
	for _, in := range []string{"", "name: [", "name: a\nmemroy: 1\n", "name: a\nname: b\n", "- a\n", "name: x\nruntime: cobol\nhandler: i.h\n"} {
		_, err := Parse([]byte(in))
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %v, does not match ErrInvalid", in, err)
		}
	}
}

func TestScaleReserved(t *testing.T) {
	base := "name: r\nruntime: nodejs\nhandler: index.handler\nscale:\n"
	for _, c := range []struct {
		in      string
		want    int
		wantErr string
	}{
		{base + "  reserved: 5\n", 5, ""},
		{base + "  max: 3\n", 0, ""},
		{base + "  reserved: -1\n", 0, "scale.reserved"},
		{base + "  min: 3\n  reserved: 2\n", 0, "scale.reserved"},
	} {
		m, err := Parse([]byte(c.in))
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: err %v, want %s", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || m.Scale.Reserved != c.want {
			t.Errorf("%q: %v %+v", c.in, err, m)
		}
	}
}
