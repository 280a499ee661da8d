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
)

// Duration is a time.Duration that is written in YAML and JSON either as a
// string in time.ParseDuration syntax ("30s", "5m", "1h30m") or as a plain
// number of seconds (30, 0.5). It is always marshalled in the string form.
// Negative durations are rejected when decoding.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns the duration in time.Duration syntax without redundant zero
// units: "30s", "5m", "1h", "1h30m", "1m0.5s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalJSON encodes d as a JSON string such as "30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON accepts a duration string ("30s") or a number of seconds.
// A JSON null leaves d unchanged.
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		return nil
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := parseDurationString(s)
		if err != nil {
			return err
		}
		*d = v
		return nil
	default:
		var f float64
		if err := json.Unmarshal(b, &f); err != nil {
			return errDurationType(string(b))
		}
		v, err := durationFromSeconds(f)
		if err != nil {
			return err
		}
		*d = v
		return nil
	}
}

// MarshalYAML encodes d as a string such as "30s".
func (d Duration) MarshalYAML() (any, error) {
	return d.String(), nil
}

// UnmarshalYAML accepts a duration string ("30s") or a number of seconds.
// A YAML null leaves d unchanged.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	n = deref(n)
	if n.Kind != yaml.ScalarNode {
		return errDurationType(describe(n))
	}
	var (
		v   Duration
		err error
	)
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!int", "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return errDurationType(describe(n))
		}
		v, err = durationFromSeconds(f)
	case "!!str":
		v, err = parseDurationString(n.Value)
	default:
		return errDurationType(describe(n))
	}
	if err != nil {
		return err
	}
	*d = v
	return nil
}

func errDurationType(got string) error {
	return fmt.Errorf(`must be a duration like "30s" or a number of seconds, got %s`, got)
}

// parseDurationString parses time.ParseDuration syntax, falling back to a
// decimal number of seconds ("30", "0.5") so quoted numbers work too.
func parseDurationString(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if v, err := time.ParseDuration(t); err == nil {
		if v < 0 {
			return 0, fmt.Errorf("must not be negative (got %s)", t)
		}
		return Duration(v), nil
	}
	if f, err := strconv.ParseFloat(t, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		return durationFromSeconds(f)
	} else if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("duration %q is too large", s)
	}
	return 0, fmt.Errorf(`invalid duration %q (use a form like "30s", "5m", "1h30m" or a number of seconds)`, s)
}

// durationFromSeconds converts a number of seconds, rounding to the nearest
// nanosecond.
func durationFromSeconds(f float64) (Duration, error) {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return 0, fmt.Errorf("invalid duration %v", f)
	case f < 0:
		return 0, fmt.Errorf("must not be negative (got %s)", strconv.FormatFloat(f, 'g', -1, 64))
	case f*1e9 >= math.MaxInt64:
		return 0, fmt.Errorf("duration of %s seconds is too large", strconv.FormatFloat(f, 'g', -1, 64))
	}
	return Duration(math.Round(f * 1e9)), nil
}
