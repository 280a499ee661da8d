package api

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

type jsonLines struct{ w io.Writer }

func (j jsonLines) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = j.w.Write(append(b, '\n'))
	return err
}

// parseSince accepts a duration back from now ("1h", "30m") or an RFC 3339
// time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("duration must not be negative")
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want a duration such as 1h or an RFC 3339 time, got %q", s)
	}
	return t, nil
}
