package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Values of the network field.
const (
	NetworkDefault = "default"
	NetworkNone    = "none"
)

// Values of the auth field.
const (
	AuthNone = "none"
	AuthKey  = "key"
)

// FileName is the name of the manifest file at the root of a function folder.
const FileName = "tern.yaml"

// Runtimes lists the runtimes this build knows.
var Runtimes = []string{"nodejs", "python", "provided", "http"}

// Defaults applied by ApplyDefaults to fields that are zero.
const (
	DefaultMemory    = 256
	DefaultConc      = 1
	DefaultTimeout   = Duration(30 * time.Second)
	DefaultScaleMin  = 0
	DefaultScaleMax  = 10
	DefaultScaleIdle = Duration(5 * time.Minute)
)

// Limits enforced by Validate.
const (
	MinMemory    = 128
	MaxMemory    = 10240
	MinTimeout   = Duration(time.Second)
	MaxTimeout   = Duration(15 * time.Minute)
	MaxScale     = 1000
	MaxConc      = 1000
	MinScaleIdle = Duration(time.Second)
	MaxScaleIdle = Duration(24 * time.Hour)
	MaxNameLen   = 64
	MaxEnvSize   = 4096 // bytes, keys plus values, as on Lambda
	MinEphemeral = 512  // MB of /tmp, as on Lambda
	MaxEphemeral = 10240
)

// Manifest is the content of tern.yaml.
type Manifest struct {
	Name    string `yaml:"name" json:"name"`
	Runtime string `yaml:"runtime" json:"runtime"`
	Handler string `yaml:"handler" json:"handler"`
	Memory  int    `yaml:"memory" json:"memory"` // MB
	// Command runs an HTTP server for runtime http (through /bin/sh -c);
	// it must listen on $PORT.
	Command string `yaml:"command" json:"command,omitempty"`
	// Style is how a nodejs handler is called: "lambda" (event, context),
	// the default, or "http" (req, res) as Express-style handlers are.
	Style string `yaml:"style" json:"style,omitempty"`
	// Concurrency is how many invocations one instance runs at once
	// (default 1, as Lambda; an async Node.js handler can overlap more).
	Concurrency int               `yaml:"concurrency" json:"concurrency"`
	Timeout     Duration          `yaml:"timeout" json:"timeout"`
	Environment map[string]string `yaml:"environment" json:"environment,omitempty"`
	Scale       Scale             `yaml:"scale" json:"scale"`
	// Triggers are the event sources besides HTTP and direct invocation.
	Triggers []Trigger `yaml:"triggers,omitempty" json:"triggers,omitempty"`
	// Async governs asynchronous invocations of the function.
	Async Async `yaml:"async,omitempty" json:"async"`
	// Auth is who may call the function's HTTP trigger: "none" (anyone,
	// the default) or "key" (a key with the invoke permission for it).
	Auth string `yaml:"auth,omitempty" json:"auth,omitempty"`
	// Network is "none" for a function that must reach no network (its
	// instances get a network namespace of their own); default: the
	// host's network.
	Network string `yaml:"network,omitempty" json:"network,omitempty"`
	// RateLimit bounds the function's HTTP and API invocations per
	// second on each server (zero: no limit).
	RateLimit RateLimit `yaml:"rateLimit,omitempty" json:"rateLimit,omitzero"`
	// EphemeralStorage is the size of the function's /tmp, MB (512 to
	// 10240, as on Lambda; 0: the server's --tmp-size): a disk of its own,
	// never counted as memory.
	EphemeralStorage int `yaml:"ephemeralStorage,omitempty" json:"ephemeralStorage,omitempty"`
	// ErrorDetails shows callers of the HTTP trigger that hold a key
	// (auth: key) the function's error messages and stack traces; public
	// callers never see them.
	ErrorDetails bool `yaml:"errorDetails,omitempty" json:"errorDetails,omitempty"`
}

// RateLimit is a token bucket: RPS requests a second, Burst at once
// (default RPS).
type RateLimit struct {
	RPS   int `yaml:"rps,omitempty" json:"rps,omitempty"`
	Burst int `yaml:"burst,omitempty" json:"burst,omitempty"`
}

// MaxRateLimit bounds rateLimit.rps and rateLimit.burst.
const MaxRateLimit = 1_000_000

// Scale controls how many instances of a function may run.
type Scale struct {
	Min  int      `yaml:"min" json:"min"`
	Max  int      `yaml:"max" json:"max"`
	Idle Duration `yaml:"idle" json:"idle"` // how long an idle instance is kept
	// Reserved caps the function's instances across all its versions, and
	// so its concurrency (0: no cap but the node's).
	Reserved int `yaml:"reserved" json:"reserved,omitempty"`
}

// FieldError names the manifest field that is wrong, e.g. Field "scale.max".
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return FileName + ": " + e.Message
	}
	return FileName + ": " + e.Field + ": " + e.Message
}

// ValidName reports whether s follows the rule for function and topic
// names: letters, digits, '-' and '_', starting with a letter or digit
// (so it is safe as a NATS subject token and a KV key part).
func ValidName(s string) bool { return nameRE.MatchString(s) }

// EnvNameProblem says what keeps name from being a function's
// environment variable (or a secret), or "" if nothing does.
func EnvNameProblem(name string) string {
	switch {
	case !envKeyRE.MatchString(name):
		return "variable name must match [A-Za-z_][A-Za-z0-9_]*"
	case reservedEnv[name]:
		return "is reserved: the platform sets it"
	}
	return ""
}

// reservedEnv holds the environment variables the platform sets itself.
var reservedEnv = map[string]bool{
	"_HANDLER":                        true,
	"_X_AMZN_TRACE_ID":                true,
	"AWS_EXECUTION_ENV":               true,
	"AWS_LAMBDA_FUNCTION_NAME":        true,
	"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": true,
	"AWS_LAMBDA_FUNCTION_VERSION":     true,
	"AWS_LAMBDA_INITIALIZATION_TYPE":  true,
	"AWS_LAMBDA_LOG_GROUP_NAME":       true,
	"AWS_LAMBDA_LOG_STREAM_NAME":      true,
	"AWS_LAMBDA_RUNTIME_API":          true,
	"AWS_REGION":                      true,
	"AWS_DEFAULT_REGION":              true,
	"LAMBDA_TASK_ROOT":                true,
	"LAMBDA_RUNTIME_DIR":              true,
}

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Parse decodes a tern.yaml document strictly, applies defaults and
// validates the result. Unknown fields, wrongly typed values, duplicate
// fields and empty input are errors; decoding errors carry line numbers.
func Parse(data []byte) (*Manifest, error) {
	m, err := parse(data)
	if err != nil {
		return nil, invalidError{err}
	}
	return m, nil
}

// ErrInvalid matches (errors.Is) every error Parse returns.
var ErrInvalid = errors.New("invalid manifest")

// invalidError marks an error as a manifest error without changing its text.
type invalidError struct{ err error }

func (e invalidError) Error() string        { return e.err.Error() }
func (e invalidError) Unwrap() error        { return e.err }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }

func parse(data []byte) (*Manifest, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New(FileName + ": file is empty")
		}
		return nil, yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s: must hold a single YAML document, found another at line %d", FileName, extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(err)
	}

	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, errors.New(FileName + ": file is empty")
		}
		root = root.Content[0]
	}
	root = deref(root)
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil, errors.New(FileName + ": file is empty")
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: must be a mapping of fields such as \"name: hello\", got %s (line %d)", FileName, describe(root), root.Line)
	}

	var m Manifest
	if errs := decodeManifest(root, &m); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	m.ApplyDefaults()
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func yamlError(err error) error {
	return fmt.Errorf("%s: invalid YAML: %s", FileName, strings.TrimPrefix(err.Error(), "yaml: "))
}

// decodeManifest fills m from a mapping node, checking every key and value
// type itself so errors can name the field and line.
func decodeManifest(n *yaml.Node, m *Manifest) []error {
	return decodeMapping(n, "", map[string]func(*yaml.Node, string) error{
		"name":        stringField(&m.Name),
		"runtime":     stringField(&m.Runtime),
		"handler":     stringField(&m.Handler),
		"memory":      nonZeroInt(&m.Memory, fmt.Sprintf("%d–%d MB; leave it out for the default %d", MinMemory, MaxMemory, DefaultMemory)),
		"concurrency": nonZeroInt(&m.Concurrency, fmt.Sprintf("1–%d invocations per instance; leave it out for the default %d", MaxConc, DefaultConc)),
		"style":       stringField(&m.Style),
		"auth":        stringField(&m.Auth),
		"network":     stringField(&m.Network),
		"command":     stringField(&m.Command),
		"timeout":     nonZeroDuration(&m.Timeout, fmt.Sprintf("%s–%s; leave it out for the default %s", MinTimeout, MaxTimeout, DefaultTimeout)),
		"environment": func(v *yaml.Node, field string) error { return decodeEnv(v, field, &m.Environment) },
		"scale": func(v *yaml.Node, field string) error {
			if isNull(v) {
				return nil
			}
			if v.Kind != yaml.MappingNode {
				return typeError(field, "a mapping with min, max, idle and reserved", v)
			}
			return errors.Join(decodeMapping(v, field+".", map[string]func(*yaml.Node, string) error{
				"min":      intField(&m.Scale.Min),
				"max":      nonZeroInt(&m.Scale.Max, fmt.Sprintf("1–%d instances; leave it out for the default %d", MaxScale, DefaultScaleMax)),
				"idle":     nonZeroDuration(&m.Scale.Idle, fmt.Sprintf("%s–%s; leave it out for the default %s", MinScaleIdle, MaxScaleIdle, DefaultScaleIdle)),
				"reserved": intField(&m.Scale.Reserved),
			})...)
		},
		"ephemeralStorage": nonZeroInt(&m.EphemeralStorage, fmt.Sprintf("%d–%d MB; leave it out for the server's default, 512", MinEphemeral, MaxEphemeral)),
		"errorDetails":     boolField(&m.ErrorDetails),
		"rateLimit": func(v *yaml.Node, field string) error {
			if isNull(v) {
				return nil
			}
			if v.Kind != yaml.MappingNode {
				return typeError(field, "a mapping with rps and burst", v)
			}
			return errors.Join(decodeMapping(v, field+".", map[string]func(*yaml.Node, string) error{
				"rps":   intField(&m.RateLimit.RPS),
				"burst": intField(&m.RateLimit.Burst),
			})...)
		},
		"triggers": func(v *yaml.Node, field string) error { return decodeTriggers(v, field, &m.Triggers) },
		"async":    func(v *yaml.Node, field string) error { return decodeAsync(v, field, &m.Async) },
	})
}

// decodeMapping walks the key/value pairs of n, dispatching each known key
// to its decoder and reporting unknown and duplicate keys.
func decodeMapping(n *yaml.Node, prefix string, fields map[string]func(*yaml.Node, string) error) []error {
	var errs []error
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("%s: field names must be plain strings, got %s (line %d)", FileName, describe(k), k.Line))
			continue
		}
		field := prefix + k.Value
		decode, ok := fields[k.Value]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unknown field %q (line %d)", FileName, field, k.Line))
			continue
		}
		if line, dup := seen[k.Value]; dup {
			errs = append(errs, fmt.Errorf("%s: duplicate field %q (line %d, first at line %d)", FileName, field, k.Line, line))
			continue
		}
		seen[k.Value] = k.Line
		if err := decode(v, field); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func stringField(dst *string) func(*yaml.Node, string) error {
	return func(v *yaml.Node, field string) error {
		if isNull(v) {
			return nil
		}
		if v.Kind != yaml.ScalarNode {
			return typeError(field, "a string", v)
		}
		*dst = v.Value
		return nil
	}
}

func boolField(dst *bool) func(*yaml.Node, string) error {
	return func(v *yaml.Node, field string) error {
		if isNull(v) {
			return nil
		}
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
			return typeError(field, "true or false", v)
		}
		return v.Decode(dst)
	}
}

func intField(dst *int) func(*yaml.Node, string) error {
	return func(v *yaml.Node, field string) error {
		if isNull(v) {
			return nil
		}
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
			return typeError(field, "a whole number", v)
		}
		var i int
		if err := v.Decode(&i); err != nil {
			return &FieldError{Field: field, Message: fmt.Sprintf("number %s is out of range (line %d)", v.Value, v.Line)}
		}
		*dst = i
		return nil
	}
}

// nonZeroInt is intField for a field whose 0 means nothing but its
// default: written out, it is refused rather than silently replaced; want
// says what the field takes.
func nonZeroInt(dst *int, want string) func(*yaml.Node, string) error {
	return notZero(dst, intField(dst), want)
}

// nonZeroDuration is durationField with an explicit 0 refused, as
// nonZeroInt.
func nonZeroDuration(dst *Duration, want string) func(*yaml.Node, string) error {
	return notZero(dst, durationField(dst), want)
}

func notZero[T int | Duration](dst *T, decode func(*yaml.Node, string) error, want string) func(*yaml.Node, string) error {
	return func(v *yaml.Node, field string) error {
		if err := decode(v, field); err != nil {
			return err
		}
		if *dst == 0 && !isNull(v) {
			return &FieldError{Field: field, Message: fmt.Sprintf("0 is not allowed (%s) (line %d)", want, v.Line)}
		}
		return nil
	}
}

func durationField(dst *Duration) func(*yaml.Node, string) error {
	return func(v *yaml.Node, field string) error {
		if err := dst.UnmarshalYAML(v); err != nil {
			return &FieldError{Field: field, Message: fmt.Sprintf("%v (line %d)", err, v.Line)}
		}
		return nil
	}
}

// decodeEnv decodes a mapping of variable names to scalar values. Non-string
// scalars keep their text as written (PORT: 8080 becomes "8080"); null
// becomes "".
func decodeEnv(v *yaml.Node, field string, dst *map[string]string) error {
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.MappingNode {
		return typeError(field, "a mapping of variable names to values", v)
	}
	env := make(map[string]string, len(v.Content)/2)
	lines := map[string]int{}
	var errs []error
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := deref(v.Content[i]), deref(v.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, typeError(field, "variable names as plain strings", k))
			continue
		}
		name := field + "." + k.Value
		if line, dup := lines[k.Value]; dup {
			errs = append(errs, fmt.Errorf("%s: duplicate field %q (line %d, first at line %d)", FileName, name, k.Line, line))
			continue
		}
		lines[k.Value] = k.Line
		switch {
		case isNull(val):
			env[k.Value] = ""
		case val.Kind == yaml.ScalarNode:
			env[k.Value] = val.Value
		default:
			errs = append(errs, typeError(name, "a string", val))
		}
	}
	*dst = env
	return errors.Join(errs...)
}

func typeError(field, want string, got *yaml.Node) error {
	return &FieldError{Field: field, Message: fmt.Sprintf("must be %s, got %s (line %d)", want, describe(got), got.Line)}
}

// deref follows YAML aliases to the node they refer to.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe says what a node is, for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		kind := map[string]string{
			"!!str":   "string",
			"!!int":   "number",
			"!!float": "number",
			"!!bool":  "boolean",
			"!!null":  "null",
		}[n.ShortTag()]
		if kind == "" {
			kind = strings.TrimPrefix(n.ShortTag(), "!!")
		}
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return kind + " " + strconv.Quote(v)
	}
	return "an unexpected YAML node"
}

// ApplyDefaults fills every zero field that has a default: memory 256,
// timeout 30s, scale.max 10, scale.idle 5m (scale.min defaults to 0),
// missed "skip" on schedule triggers, batch 10, maxReceives 5 and
// concurrency 2 on queue triggers, and, when the manifest has triggers or
// sets anything in async, async.maxAge 6h, async.backoff 1m and
// async.concurrency scale.max (async.retries stays nil: see RetryCount).
func (m *Manifest) ApplyDefaults() {
	if m.Memory == 0 {
		m.Memory = DefaultMemory
	}
	if m.Concurrency == 0 {
		m.Concurrency = DefaultConc
	}
	if m.Handler == "" && m.Runtime == "provided" {
		m.Handler = "bootstrap" // as on Lambda, the executable reads it if it wants
	}
	if m.Handler == "" && m.Runtime == "http" {
		m.Handler = "command" // the command is the entry point
	}
	if m.Timeout == 0 {
		m.Timeout = DefaultTimeout
	}
	if m.Scale.Max == 0 {
		m.Scale.Max = DefaultScaleMax
	}
	if m.Scale.Idle == 0 {
		m.Scale.Idle = DefaultScaleIdle
	}
	m.applyEventDefaults()
}

// Validate checks every rule and returns nil or errors.Join of one
// *FieldError per problem, in field order. It does not apply defaults.
func (m *Manifest) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}

	switch {
	case m.Name == "":
		add("name", "is required")
	case len(m.Name) > MaxNameLen:
		add("name", "must be at most %d characters (got %d)", MaxNameLen, len(m.Name))
	case !nameRE.MatchString(m.Name):
		add("name", "%q may contain only letters, digits, '-' and '_', and must start with a letter or digit", m.Name)
	}

	known := strings.Join(Runtimes, ", ")
	switch {
	case m.Runtime == "":
		add("runtime", "is required (known runtimes: %s)", known)
	case !slices.Contains(Runtimes, m.Runtime):
		add("runtime", "unknown runtime %q (known runtimes: %s)", m.Runtime, known)
	}

	if m.Handler == "" {
		add("handler", `is required, in the form "path/to/file.export"`)
	} else if msg := checkHandler(m.Runtime, m.Handler); msg != "" {
		add("handler", "%q %s", m.Handler, msg)
	}

	if m.Memory < MinMemory || m.Memory > MaxMemory {
		add("memory", "must be between %d and %d MB (got %d)", MinMemory, MaxMemory, m.Memory)
	}
	switch {
	case m.Runtime == "http" && strings.TrimSpace(m.Command) == "":
		add("command", `is required for runtime http: the command that starts a server listening on $PORT, e.g. "node server.js"`)
	case m.Runtime != "http" && m.Command != "":
		add("command", "is only for runtime http")
	case strings.ContainsRune(m.Command, 0):
		add("command", "must not contain NUL")
	}
	if rl := m.RateLimit; rl.RPS < 0 || rl.RPS > MaxRateLimit {
		add("rateLimit.rps", "must be between 0 (no limit) and %d requests a second (got %d)", MaxRateLimit, rl.RPS)
	} else if rl.Burst < 0 || rl.Burst > MaxRateLimit || (rl.Burst > 0 && rl.RPS == 0) {
		add("rateLimit.burst", "must be between 0 (the rate) and %d, and needs rps (got %d)", MaxRateLimit, rl.Burst)
	}
	switch {
	case m.Network == "", m.Network == NetworkDefault:
	case m.Network != NetworkNone:
		add("network", "unknown value %q (want default or none)", m.Network)
	case m.Runtime != "nodejs" && m.Runtime != "python":
		add("network", "none is for runtimes nodejs and python (runtime %s talks to Tern over the network)", m.Runtime)
	}
	switch m.Auth {
	case "", AuthNone, AuthKey:
		if m.ErrorDetails && m.Auth != AuthKey {
			add("errorDetails", "needs auth: key (public callers of the HTTP trigger never see error details)")
		}
	default:
		add("auth", "unknown value %q (want none or key)", m.Auth)
	}
	if s := m.EphemeralStorage; s != 0 && (s < MinEphemeral || s > MaxEphemeral) {
		add("ephemeralStorage", "must be between %d and %d MB (got %d; leave it out for the server's default, 512)", MinEphemeral, MaxEphemeral, s)
	}
	switch m.Style {
	case "", "lambda":
	case "http":
		if m.Runtime != "nodejs" {
			add("style", "http handlers (req, res) are for runtime nodejs")
		}
	default:
		add("style", "unknown style %q (want lambda or http)", m.Style)
	}
	if m.Concurrency < 1 || m.Concurrency > MaxConc {
		add("concurrency", "must be between 1 and %d invocations per instance (got %d)", MaxConc, m.Concurrency)
	} else if m.Concurrency > 1 && m.Runtime == "provided" {
		add("concurrency", "must be 1 for runtime provided: a Lambda runtime client takes one invocation at a time")
	}
	if m.Timeout < MinTimeout || m.Timeout > MaxTimeout {
		add("timeout", "must be between %s and %s (got %s)", MinTimeout, MaxTimeout, m.Timeout)
	}

	size := 0
	for _, k := range slices.Sorted(maps.Keys(m.Environment)) {
		v := m.Environment[k]
		size += len(k) + len(v)
		field := "environment." + k
		if msg := EnvNameProblem(k); msg != "" {
			add(field, "%s", msg)
		}
		if strings.IndexByte(v, 0) >= 0 {
			add(field, "value must not contain NUL bytes")
		}
	}
	if size > MaxEnvSize {
		add("environment", "variables take %d bytes (names plus values), more than the %d allowed", size, MaxEnvSize)
	}

	minOK, maxOK := true, true
	if m.Scale.Min < 0 {
		minOK = false
		add("scale.min", "must not be negative (got %d)", m.Scale.Min)
	}
	if m.Scale.Max < 1 || m.Scale.Max > MaxScale {
		maxOK = false
		add("scale.max", "must be between 1 and %d (got %d)", MaxScale, m.Scale.Max)
	}
	if minOK && maxOK && m.Scale.Min > m.Scale.Max {
		add("scale.max", "must be at least scale.min (%d)", m.Scale.Min)
	}
	if m.Scale.Idle < MinScaleIdle || m.Scale.Idle > MaxScaleIdle {
		add("scale.idle", "must be between %s and %s (got %s)", MinScaleIdle, MaxScaleIdle, m.Scale.Idle)
	}
	if m.Scale.Reserved < 0 || m.Scale.Reserved > MaxScale {
		add("scale.reserved", "must be between 0 (no cap) and %d (got %d)", MaxScale, m.Scale.Reserved)
	} else if minOK && m.Scale.Reserved > 0 && m.Scale.Min > m.Scale.Reserved {
		add("scale.reserved", "must be at least scale.min (%d)", m.Scale.Min)
	}

	m.validateEvents(add)
	return errors.Join(errs...)
}

// checkHandler returns "" if handler is well formed for runtime, or a
// message saying what is wrong. Every runtime known today uses the Node.js
// form: a relative module path without extension, a '.', then an export
// name that may be dotted to reach a nested export ("index.api.handler").
// As on Lambda, the module path ends at the first '.' after the last '/'.
func checkHandler(runtime, handler string) string {
	if runtime == "provided" || runtime == "http" {
		// The package's own bootstrap reads _HANDLER as it likes.
		if strings.ContainsRune(handler, 0) {
			return "must not contain NUL"
		}
		return ""
	}
	const form = `must be of the form "path/to/file.export"`
	if strings.Contains(handler, `\`) {
		return "must not contain backslashes; separate directories with '/'"
	}
	if strings.HasPrefix(handler, "/") {
		return "must be a path relative to the function folder"
	}
	slash := strings.LastIndexByte(handler, '/')
	dot := strings.IndexByte(handler[slash+1:], '.')
	if dot < 0 {
		return form + ": it has no export name after a '.'"
	}
	file, export := handler[:slash+1+dot], handler[slash+2+dot:]
	for _, part := range strings.Split(file, "/") {
		switch part {
		case "":
			return form + ": the file path has an empty part"
		case "..":
			return "must not refer outside the function folder with '..'"
		}
	}
	for _, part := range strings.Split(export, ".") {
		if part == "" {
			return form + ": the export name has an empty part"
		}
	}
	return ""
}

// Clone returns a deep copy of m.
func (m *Manifest) Clone() *Manifest {
	if m == nil {
		return nil
	}
	c := *m
	if m.Environment != nil {
		c.Environment = maps.Clone(m.Environment)
	}
	if m.Triggers != nil {
		c.Triggers = make([]Trigger, len(m.Triggers))
		for i, t := range m.Triggers {
			c.Triggers[i] = t.clone()
		}
	}
	c.Async = m.Async.clone()
	return &c
}
