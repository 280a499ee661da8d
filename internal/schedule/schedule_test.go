package schedule

import (
	"strings"
	"testing"
	"time"
)

// parseTests are the parsing cases; FuzzParse seeds its corpus with them.
var parseTests = []struct {
	expr, tz string
	err      string // substring of the error; "" means valid
}{
	// Standard cron and descriptors.
	{"*/5 * * * *", "", ""},
	{"  0 9 * * *  ", "Europe/Paris", ""},
	{"0 9 * * MON-FRI", "", ""},
	{"0 0 1 JAN,jul *", "America/New_York", ""},
	{"0 12 * * ?", "", ""},
	{"0 0 30 2 *", "", `schedule "0 0 30 2 *": never fires: no month it names has that day of the month`},
	{"0 0 30 2 *", "Europe/Paris", "never fires"},
	{"0 0 31 2,4,6,9,11 *", "", "never fires"},
	{"0 0 31 4 MON", "", ""}, // day of the month or of the week, as cron reads both
	{"0 0 31 * *", "", ""},
	{"0 0 29 2 *", "", ""}, // leap years only
	{"0 0 29 2 *", "Pacific/Apia", ""},
	{"@yearly", "", ""},
	{"@annually", "", ""},
	{"@monthly", "", ""},
	{"@weekly", "", ""},
	{"@daily", "Asia/Tokyo", ""},
	{"@midnight", "", ""},
	{"@hourly", "", ""},
	{"@every 5m", "", "use rate(...)"},
	{"@fortnightly", "", "unknown descriptor"},
	{"TZ=Europe/Paris 0 9 * * *", "", "set the timezone field"},
	{"CRON_TZ=UTC 0 9 * * *", "", "set the timezone field"},
	{"TZ=x", "", "set the timezone field"},
	{"* * * *", "", "found 4"},
	{"0 12 * * ? *", "", "write cron(...)"},
	{"61 * * * *", "", "minute: end of range (61) above maximum (59)"},
	{"* 24 * * *", "", "hour:"},
	{"* * 0 * *", "", "day-of-month:"},
	{"* * * 13 *", "", "month:"},
	{"* * * * 7", "", "day-of-week:"},
	{"* * * * FOO", "", "day-of-week:"},
	{"*/0 * * * *", "", "minute: step of range should be a positive number"},
	{"5-1 * * * *", "", "minute: beginning of range"},
	{"0 0 1 1 @", "", `day-of-week: unexpected character '@'`},
	{"0 0 1=1 1 *", "", `day-of-month: unexpected character '='`},
	{"* * * * *", "Mars/Base", `timezone "Mars/Base": unknown time zone`},
	{"* * * * *", "Local", `timezone "Local": must be an IANA zone name`},
	{"* * * * *", "../etc/passwd", "unknown time zone"},

	// AWS cron(...).
	{"cron(0 12 ? * MON-FRI *)", "", ""},
	{"cron(0 12 ? * 2-6 *)", "Europe/Paris", ""},
	{"cron(15 10 1 * ? 2026)", "", ""},
	{"cron(0/15 * ? * 1,7 2026-2030)", "", ""},
	{"cron(0 0 1 1 ? 2026/2,2199)", "", ""},
	{"cron( 0 12 * * ? * )", "", ""},
	{"cron(0 0 31 2 ? *)", "", `schedule "cron(0 0 31 2 ? *)": never fires: no month it names has that day of the month`},
	{"cron(0 0 29 2 ? 2027)", "", `never fires: no date it names falls in the years it names`},
	{"cron(0 0 29 2 ? 2100)", "", "never fires"}, // not a leap year
	{"cron(0 0 29 2 ? 2199)", "", "never fires"},
	{"cron(0 0 29 2 ? 2097-2103)", "", "never fires"},
	{"cron(0 0 29 2 ? 2028)", "", ""},
	{"cron(0 0 29 2 ? 2097-2104)", "", ""},
	{"cron(0 0 1 1 ? 2020)", "", ""}, // past, but fired: the manifest refuses it
	{"cron(0 0 29 2 ? *)", "Asia/Tokyo", ""},
	{"cron(0 12 * * * *)", "", `schedule "cron(0 12 * * * *)": day-of-month or day-of-week must be "?"`},
	{"cron(0 12 ? * ? *)", "", `cannot both be "?"`},
	{"cron(0 12 ?,1 * ? *)", "", `day-of-month: "?" must stand alone`},
	{"cron(? 12 1 * ? *)", "", `minute: "?" is only allowed`},
	{"cron(0 12 1 * ? ?)", "", `year: "?" is only allowed`},
	{"cron(0 12 L * ? *)", "", `day-of-month: "L" is not supported`},
	{"cron(0 12 15W * ? *)", "", `day-of-month: "W" is not supported`},
	{"cron(0 12 ? * 6L *)", "", `day-of-week: "L" (the last weekday of the month) is not supported`},
	{"cron(0 12 ? * L *)", "", `"L"`},
	{"cron(0 12 ? * 3#2 *)", "", `day-of-week: "#"`},
	{"cron(0 12 ? * 0 *)", "", "day-of-week: 0 is out of range: use 1-7"},
	{"cron(0 12 ? * 8 *)", "", "day-of-week: 8 is out of range"},
	{"cron(0 12 ? * 7-1 *)", "", `day-of-week: range "7-1" runs backwards`},
	{"cron(0 12 ? * FUNDAY *)", "", `"FUNDAY" is not a day`},
	{"cron(0 12 * * ? 1969)", "", `year: "1969" is not a year from 1970 to 2199`},
	{"cron(0 12 * * ? 2200)", "", "year:"},
	{"cron(0 12 * * ? 2030-2026)", "", `year: range "2030-2026" runs backwards`},
	{"cron(0 12 * * ? 2026/0)", "", "year: step"},
	{"cron(0 12 * * ? 2026,)", "", "year:"},
	{"cron(0 12 * * ?)", "", "needs 6 fields"},
	{"cron(0 12 * * ? * *)", "", "needs 6 fields"},
	{"cron(0 12 * * ? *", "", `must end with ")"`},
	{"cron(60 12 * * ? *)", "", "minute: end of range (60)"},

	// rate(...).
	{"rate(5 minutes)", "", ""},
	{"rate(1 minute)", "", ""},
	{"rate(5 minute)", "", ""},
	{"rate(1 hours)", "", ""},
	{"rate(2 days)", "", ""},
	{"rate(30 seconds)", "", ""},
	{"rate(1 second)", "", ""},
	{"rate( 5  minutes )", "", ""},
	{"rate(0 minutes)", "", "positive whole number"},
	{"rate(-5 minutes)", "", "positive whole number"},
	{"rate(+5 minutes)", "", "positive whole number"},
	{"rate(1.5 hours)", "", "positive whole number"},
	{"rate(5 weeks)", "", `unknown rate unit "weeks"`},
	{"rate(5)", "", `must be "rate(N unit)"`},
	{"rate(5 minutes", "", `must end with ")"`},
	{"rate(99999999999999999999 days)", "", "too long"},
	{"rate(999999999999 days)", "", "too long"},
	{"rate(5 minutes)", "Europe/Paris", "timezone applies to cron schedules only"},

	// Anything.
	{"", "", "is empty"},
	{"   ", "", "is empty"},
	{strings.Repeat("*", 257), "", "longer than 256 bytes"},
	{"every 5 minutes", "", "found 3"},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.expr+"|"+tt.tz, func(t *testing.T) {
			s, err := Parse(tt.expr, tt.tz)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if s.String() != strings.TrimSpace(tt.expr) {
					t.Errorf("String() = %q", s.String())
				}
				return
			}
			if err == nil {
				t.Fatalf("want error containing %q, got none", tt.err)
			}
			if !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error %q does not contain %q", err, tt.err)
			}
			if !strings.HasPrefix(err.Error(), "schedule ") && !strings.HasPrefix(err.Error(), "timezone ") {
				t.Errorf("error %q does not say what it is about", err)
			}
		})
	}
}

func TestLocation(t *testing.T) {
	for _, tt := range []struct{ expr, tz, want string }{
		{"* * * * *", "", "UTC"},
		{"* * * * *", "Europe/Paris", "Europe/Paris"},
		{"cron(* * * * ? *)", "Asia/Tokyo", "Asia/Tokyo"},
		{"rate(1 minute)", "", "UTC"},
	} {
		if got := mustParse(t, tt.expr, tt.tz).Location().String(); got != tt.want {
			t.Errorf("%q in %q: Location() = %s, want %s", tt.expr, tt.tz, got, tt.want)
		}
	}
}

func mustParse(t testing.TB, expr, tz string) *Schedule {
	t.Helper()
	s, err := Parse(expr, tz)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func utc(y int, mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}

func TestNext(t *testing.T) {
	tests := []struct {
		name, expr, tz string
		after          time.Time
		want           []time.Time // successive ticks; a zero Time ends them
	}{
		{"every 5 minutes", "*/5 * * * *", "", utc(2026, 3, 1, 10, 2, 30),
			[]time.Time{utc(2026, 3, 1, 10, 5, 0), utc(2026, 3, 1, 10, 10, 0)}},
		{"strictly after a tick", "*/5 * * * *", "", utc(2026, 3, 1, 10, 5, 0),
			[]time.Time{utc(2026, 3, 1, 10, 10, 0)}},
		{"just before a tick", "*/5 * * * *", "", utc(2026, 3, 1, 10, 4, 59).Add(999 * time.Millisecond),
			[]time.Time{utc(2026, 3, 1, 10, 5, 0)}},
		{"descriptor", "@monthly", "", utc(2026, 12, 15, 0, 0, 0),
			[]time.Time{utc(2027, 1, 1, 0, 0, 0), utc(2027, 2, 1, 0, 0, 0)}},
		{"weekdays by name", "0 9 * * MON-FRI", "", utc(2026, 3, 6, 12, 0, 0), // a Friday
			[]time.Time{utc(2026, 3, 9, 9, 0, 0)}},
		// Paris moves from UTC+1 to UTC+2 on 29 March 2026 at 02:00.
		{"Paris spring forward", "0 9 * * *", "Europe/Paris", utc(2026, 3, 28, 0, 0, 0),
			[]time.Time{utc(2026, 3, 28, 8, 0, 0), utc(2026, 3, 29, 7, 0, 0), utc(2026, 3, 30, 7, 0, 0)}},
		// And back on 25 October 2026 at 03:00.
		{"Paris fall back", "0 9 * * *", "Europe/Paris", utc(2026, 10, 24, 12, 0, 0),
			[]time.Time{utc(2026, 10, 25, 8, 0, 0), utc(2026, 10, 26, 8, 0, 0)}},
		// A local time that does not exist that day is skipped.
		{"Paris gap", "30 2 * * *", "Europe/Paris", utc(2026, 3, 28, 12, 0, 0),
			[]time.Time{utc(2026, 3, 30, 0, 30, 0)}},
		// New York falls back on 1 November 2026: 01:30 comes twice.
		{"New York fall back", "30 1 * * *", "America/New_York", utc(2026, 10, 31, 12, 0, 0),
			[]time.Time{utc(2026, 11, 1, 5, 30, 0), utc(2026, 11, 1, 6, 30, 0), utc(2026, 11, 2, 6, 30, 0)}},
		// Samoa skipped 30 December 2011 (UTC-10 to UTC+14); the cron
		// library's own zone handling loops forever here.
		{"Apia skipped day", "0 0 1 * *", "Pacific/Apia", utc(2011, 12, 1, 10, 27, 0),
			[]time.Time{utc(2011, 12, 31, 10, 0, 0), utc(2012, 1, 31, 10, 0, 0)}},
		{"Apia skipped day, weekly", "cron(0 0 ? * 1 *)", "Pacific/Apia", utc(2011, 12, 25, 10, 25, 0),
			[]time.Time{utc(2011, 12, 31, 10, 0, 0), utc(2012, 1, 7, 10, 0, 0)}},
		{"Apia skipped date", "0 12 30 12 *", "Pacific/Apia", utc(2011, 12, 29, 0, 0, 0),
			[]time.Time{utc(2012, 12, 29, 22, 0, 0)}},
		// 2100 is not a leap year: the gap is longer than the five years
		// the cron library searches.
		{"leap day across 2100", "0 0 29 2 *", "", utc(2097, 1, 1, 0, 0, 0),
			[]time.Time{utc(2104, 2, 29, 0, 0, 0)}},

		{"aws weekdays (2-6)", "cron(0 12 ? * 2-6 *)", "", utc(2026, 3, 6, 13, 0, 0), // Friday after noon
			[]time.Time{utc(2026, 3, 9, 12, 0, 0), utc(2026, 3, 10, 12, 0, 0)}},
		{"aws weekends (1,7)", "cron(0 8 ? * 1,7 *)", "", utc(2026, 3, 2, 0, 0, 0), // Monday
			[]time.Time{utc(2026, 3, 7, 8, 0, 0), utc(2026, 3, 8, 8, 0, 0), utc(2026, 3, 14, 8, 0, 0)}},
		{"aws dow names", "cron(0 8 ? * SAT,SUN *)", "", utc(2026, 3, 2, 0, 0, 0),
			[]time.Time{utc(2026, 3, 7, 8, 0, 0), utc(2026, 3, 8, 8, 0, 0)}},
		{"aws dow step from MON", "cron(0 8 ? * 2/2 *)", "", utc(2026, 3, 1, 0, 0, 0), // a Sunday
			[]time.Time{utc(2026, 3, 2, 8, 0, 0), utc(2026, 3, 4, 8, 0, 0), utc(2026, 3, 6, 8, 0, 0), utc(2026, 3, 9, 8, 0, 0)}},
		{"aws dom", "cron(15 10 1,15 * ? *)", "", utc(2026, 3, 2, 0, 0, 0),
			[]time.Time{utc(2026, 3, 15, 10, 15, 0), utc(2026, 4, 1, 10, 15, 0)}},
		{"aws in a zone", "cron(0 9 ? * * *)", "Europe/Paris", utc(2026, 3, 28, 12, 0, 0),
			[]time.Time{utc(2026, 3, 29, 7, 0, 0)}},
		{"aws one year", "cron(0 0 1 1 ? 2027)", "", utc(2026, 6, 1, 0, 0, 0),
			[]time.Time{utc(2027, 1, 1, 0, 0, 0), {}}},
		{"aws year step", "cron(0 0 1 1 ? 2026/2)", "", utc(2025, 6, 1, 0, 0, 0),
			[]time.Time{utc(2026, 1, 1, 0, 0, 0), utc(2028, 1, 1, 0, 0, 0), utc(2030, 1, 1, 0, 0, 0)}},
		{"aws year range and list", "cron(0 0 1 7 ? 2027-2028,2031)", "", utc(2026, 6, 1, 0, 0, 0),
			[]time.Time{utc(2027, 7, 1, 0, 0, 0), utc(2028, 7, 1, 0, 0, 0), utc(2031, 7, 1, 0, 0, 0), {}}},
		{"aws year over", "cron(* * * * ? 2020)", "", utc(2026, 1, 1, 0, 0, 0), []time.Time{{}}},
		{"aws year of the zone", "cron(0 0 1 1 ? 2027)", "Asia/Tokyo", utc(2026, 12, 31, 12, 0, 0),
			[]time.Time{utc(2026, 12, 31, 15, 0, 0), {}}},
		{"aws leap day of one year", "cron(0 0 29 2 ? 2028)", "", utc(2026, 1, 1, 0, 0, 0),
			[]time.Time{utc(2028, 2, 29, 0, 0, 0), {}}},

		{"rate aligned to the epoch", "rate(5 minutes)", "", utc(2026, 3, 1, 10, 2, 30),
			[]time.Time{utc(2026, 3, 1, 10, 5, 0), utc(2026, 3, 1, 10, 10, 0)}},
		{"rate on a tick", "rate(1 hour)", "", utc(2026, 3, 1, 10, 0, 0),
			[]time.Time{utc(2026, 3, 1, 11, 0, 0)}},
		{"rate days", "rate(1 day)", "", utc(2026, 3, 1, 23, 59, 59),
			[]time.Time{utc(2026, 3, 2, 0, 0, 0)}},
		{"rate seconds", "rate(7 seconds)", "", time.Unix(20, 0),
			[]time.Time{time.Unix(21, 0), time.Unix(28, 0)}},
		{"rate before the epoch", "rate(7 seconds)", "", time.Unix(-20, 0),
			[]time.Time{time.Unix(-14, 0), time.Unix(-7, 0), time.Unix(0, 0)}},
		{"rate ignores the caller's zone", "rate(1 hour)", "",
			time.Date(2026, 3, 1, 10, 20, 0, 0, time.FixedZone("X", 30*60)), // 09:50 UTC
			[]time.Time{utc(2026, 3, 1, 10, 0, 0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, tt.expr, tt.tz)
			after := tt.after
			for i, want := range tt.want {
				got := s.Next(after)
				if !got.Equal(want) || got.IsZero() != want.IsZero() {
					t.Fatalf("tick %d: Next(%v) = %v, want %v", i, after, got, want)
				}
				if !got.IsZero() && got.Location() != s.Location() {
					t.Errorf("tick %d in %v, want %v", i, got.Location(), s.Location())
				}
				after = got
			}
		})
	}
}

func TestLast(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, expr, tz  string
		notAfter, since time.Time
		want            time.Time
	}{
		{"every minute", "* * * * *", "", utc(2026, 3, 1, 10, 2, 30), utc(2026, 3, 1, 0, 0, 0), utc(2026, 3, 1, 10, 2, 0)},
		{"on a tick", "* * * * *", "", utc(2026, 3, 1, 10, 2, 0), utc(2026, 3, 1, 0, 0, 0), utc(2026, 3, 1, 10, 2, 0)},
		{"since excluded", "0 * * * *", "", utc(2026, 3, 1, 10, 30, 0), utc(2026, 3, 1, 10, 0, 0), time.Time{}},
		{"since just before", "0 * * * *", "", utc(2026, 3, 1, 10, 30, 0), utc(2026, 3, 1, 9, 59, 59), utc(2026, 3, 1, 10, 0, 0)},
		{"empty range", "* * * * *", "", utc(2026, 3, 1, 10, 0, 0), utc(2026, 3, 1, 10, 0, 0), time.Time{}},
		{"reversed range", "* * * * *", "", utc(2026, 3, 1, 10, 0, 0), utc(2026, 3, 2, 10, 0, 0), time.Time{}},
		{"fires no more", "cron(0 0 1 1 ? 2020)", "", utc(2026, 3, 1, 10, 0, 0), utc(2020, 1, 1, 0, 0, 0), time.Time{}},
		{"yearly, far back", "@yearly", "", utc(2026, 3, 1, 10, 0, 0), time.Time{}, utc(2026, 1, 1, 0, 0, 0)},
		{"yearly, since this year", "@yearly", "", utc(2026, 3, 1, 10, 0, 0), utc(2026, 1, 1, 0, 0, 1), time.Time{}},
		{"leap day", "0 0 29 2 *", "", utc(2103, 3, 1, 0, 0, 0), time.Time{}, utc(2096, 2, 29, 0, 0, 0)},
		{"in a zone", "0 9 * * *", "Europe/Paris", utc(2026, 3, 29, 6, 59, 0), utc(2026, 1, 1, 0, 0, 0), utc(2026, 3, 28, 8, 0, 0)},
		// New York falls back on 1 November 2026: 01:30 comes twice.
		{"repeated local time", "30 1 * * *", "America/New_York",
			time.Date(2026, 11, 1, 1, 45, 0, 0, ny).Add(time.Hour), utc(2026, 1, 1, 0, 0, 0),
			time.Date(2026, 11, 1, 1, 30, 0, 0, ny).Add(time.Hour)},
		{"aws year past", "cron(0 12 ? * MON *)", "", utc(2026, 3, 1, 0, 0, 0), time.Time{}, utc(2026, 2, 23, 12, 0, 0)},
		{"aws year set", "cron(0 12 1 * ? 2020-2021)", "", utc(2026, 3, 1, 0, 0, 0), time.Time{}, utc(2021, 12, 1, 12, 0, 0)},
		{"aws future year", "cron(0 12 1 * ? 2030)", "", utc(2026, 3, 1, 0, 0, 0), time.Time{}, time.Time{}},
		{"rate", "rate(5 minutes)", "", utc(2026, 3, 1, 10, 2, 30), utc(2026, 3, 1, 0, 0, 0), utc(2026, 3, 1, 10, 0, 0)},
		{"rate on a tick", "rate(5 minutes)", "", utc(2026, 3, 1, 10, 5, 0), utc(2026, 3, 1, 0, 0, 0), utc(2026, 3, 1, 10, 5, 0)},
		{"rate none", "rate(1 day)", "", utc(2026, 3, 1, 10, 0, 0), utc(2026, 3, 1, 0, 0, 0), time.Time{}},
		{"rate before the epoch", "rate(7 seconds)", "", time.Unix(-8, 0), time.Unix(-100, 0), time.Unix(-14, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, tt.expr, tt.tz)
			got := s.Last(tt.notAfter, tt.since)
			if !got.Equal(tt.want) || got.IsZero() != tt.want.IsZero() {
				t.Errorf("Last(%v, %v) = %v, want %v", tt.notAfter, tt.since, got, tt.want)
			}
		})
	}
}

// TestLastAgreesWithNext checks Last against walking Next tick by tick.
func TestLastAgreesWithNext(t *testing.T) {
	since := utc(2026, 3, 20, 0, 0, 0)
	for _, expr := range []string{"*/7 * * * *", "0 */5 * * *", "30 2 * * *", "0 9 * * MON", "cron(0 12 ? * 2-6 *)"} {
		s := mustParse(t, expr, "Europe/Paris")
		var prev time.Time
		for tick := s.Next(since); tick.Before(utc(2026, 4, 5, 0, 0, 0)); tick = s.Next(tick) {
			for _, at := range []time.Time{tick.Add(-time.Second), tick, tick.Add(time.Second)} {
				want := tick
				if at.Before(tick) {
					want = prev
				}
				if got := s.Last(at, since); !got.Equal(want) || got.IsZero() != want.IsZero() {
					t.Fatalf("%s: Last(%v) = %v, want %v", expr, at, got, want)
				}
			}
			prev = tick
		}
	}
}

func TestLastIsFast(t *testing.T) {
	s := mustParse(t, "* * * * *", "Europe/Paris")
	now := utc(2026, 3, 1, 10, 2, 30)
	start := time.Now()
	for range 100 {
		if got, want := s.Last(now, now.AddDate(-10, 0, 0)), utc(2026, 3, 1, 10, 2, 0); !got.Equal(want) {
			t.Fatalf("Last = %v, want %v", got, want)
		}
	}
	over := mustParse(t, "cron(0 0 1 1 ? 2020)", "")
	if got := over.Last(now, utc(2020, 1, 1, 0, 0, 0)); !got.IsZero() {
		t.Fatalf("Last = %v for a schedule that fires no more", got)
	}
	rare := mustParse(t, "cron(0 0 1 1 ? 1970)", "")
	if got := rare.Last(now, time.Time{}); !got.Equal(utc(1970, 1, 1, 0, 0, 0)) {
		t.Fatalf("Last = %v, want 1970-01-01", got)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := mustParse(t, "cron(*/5 * ? * MON-FRI 2026-2030)", "Europe/Paris")
	want := s.Next(utc(2026, 3, 1, 0, 0, 0))
	done := make(chan time.Time)
	for range 8 {
		go func() { done <- s.Next(utc(2026, 3, 1, 0, 0, 0)) }()
	}
	for range 8 {
		if got := <-done; !got.Equal(want) {
			t.Errorf("got %v, want %v", got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.expr, tt.tz, int64(1772000000))
	}
	f.Fuzz(func(t *testing.T, expr, tz string, sec int64) {
		s, err := Parse(expr, tz)
		if err != nil {
			if s != nil {
				t.Fatalf("schedule and error: %v", err)
			}
			return
		}
		// Times from 1970 to 2200.
		const span = 230 * 366 * 24 * 3600
		at := time.Unix(((sec%span)+span)%span, 0)
		next := s.Next(at)
		if next.IsZero() {
			return
		}
		if !next.After(at) {
			t.Fatalf("Next(%v) = %v, not after it", at, next)
		}
		if last := s.Last(next, at); !last.Equal(next) {
			t.Fatalf("Last(%v, %v) = %v, want %v", next, at, last, next)
		}
	})
}
