package api

import (
	"strings"
	"testing"
	"time"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr string // a fragment of the error; empty: no error
	}{
		{"1h", now.Add(-time.Hour), ""},
		{"30m", now.Add(-30 * time.Minute), ""},
		{"1h30m", now.Add(-90 * time.Minute), ""},
		{"45s", now.Add(-45 * time.Second), ""},
		{"0s", now, ""},
		{"0", now, ""},
		{"2025-05-31T08:15:00Z", time.Date(2025, 5, 31, 8, 15, 0, 0, time.UTC), ""},
		{"2025-05-31T10:15:00+02:00", time.Date(2025, 5, 31, 8, 15, 0, 0, time.UTC), ""},
		{"2025-05-31T08:15:00.5Z", time.Date(2025, 5, 31, 8, 15, 0, 500e6, time.UTC), ""},
		{"-1h", time.Time{}, "must not be negative"},
		{"-5m", time.Time{}, "must not be negative"},
		{"", time.Time{}, "want a duration"},
		{"garbage", time.Time{}, `got "garbage"`},
		{"1d", time.Time{}, "want a duration"},
		{"10", time.Time{}, "want a duration"},
		{"2025-05-31", time.Time{}, "want a duration"},
		{"2025-05-31 08:15:00", time.Time{}, "want a duration"},
		{"2025-05-31T08:15:00", time.Time{}, "want a duration"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSince(tt.in, now)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("parseSince(%q) = %v, want an error", tt.in, got)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("parseSince(%q) error %q, want it to contain %q", tt.in, err, tt.wantErr)
				}
				if !got.IsZero() {
					t.Errorf("parseSince(%q) returned %v with its error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseSince(%q): %v", tt.in, err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("parseSince(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
