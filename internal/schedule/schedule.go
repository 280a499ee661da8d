package schedule

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // zone data for hosts without /usr/share/zoneinfo

	"github.com/robfig/cron/v3"
)

// maxExprLen is the longest expression Parse accepts, in bytes.
const maxExprLen = 256

// Schedule is a parsed schedule expression. It is immutable and safe for
// concurrent use.
type Schedule struct {
	expr string
	loc  *time.Location

	// Cron schedules (standard and AWS).
	spec  *cron.SpecSchedule // in UTC: it matches wall-clock times
	years *yearSet           // the AWS year field; nil: every year

	// Rate schedules: the period in seconds (0 for cron schedules).
	period int64
}

// Parse parses a schedule expression (see the package documentation for
// the forms) to be evaluated in timezone, an IANA zone name such as
// "Europe/Paris"; an empty timezone means UTC. A timezone applies to cron
// schedules only: it is an error with rate(...). Leading and trailing
// spaces of expr are ignored.
func Parse(expr, timezone string) (*Schedule, error) {
	expr = strings.TrimSpace(expr)
	switch {
	case expr == "":
		return nil, errorf(expr, "is empty")
	case len(expr) > maxExprLen:
		return nil, errorf(expr, "is longer than %d bytes", maxExprLen)
	}

	s := &Schedule{expr: expr}
	var err error
	switch {
	case strings.HasPrefix(expr, "rate("):
		if s.period, err = parseRate(expr); err != nil {
			return nil, err
		}
		if timezone != "" {
			return nil, fmt.Errorf("timezone %s: a timezone applies to cron schedules only, not to rate(...)", quote(timezone))
		}
		s.loc = time.UTC
		return s, nil
	case strings.HasPrefix(expr, "cron("):
		s.spec, s.years, err = parseAWS(expr)
	default:
		s.spec, err = parseStandard(expr)
	}
	if err != nil {
		return nil, err
	}
	if s.loc, err = loadLocation(timezone); err != nil {
		return nil, err
	}
	s.spec.Location = time.UTC // it computes wall-clock times; see specNext
	if err := s.checkFires(); err != nil {
		return nil, err
	}
	return s, nil
}

// checkFires refuses a cron schedule that has no tick at all: no date
// matches its day of the month and month ("0 0 30 2 *"), or none in the
// years it names ("cron(0 0 29 2 ? 2027)"). The search starts before the
// first year an AWS schedule may name, so whether a schedule is accepted
// does not depend on the clock; a schedule whose years are all past (it
// fired, but never will again) is the caller's to refuse (see Next).
func (s *Schedule) checkFires() error {
	from := time.Date(minYear-1, time.December, 31, 0, 0, 0, 0, time.UTC)
	switch {
	case s.specNext(from).IsZero():
		return errorf(s.expr, "never fires: no month it names has that day of the month")
	case s.Next(from).IsZero():
		return errorf(s.expr, "never fires: no date it names falls in the years it names")
	}
	return nil
}

// String returns the expression as given to Parse, without surrounding
// spaces.
func (s *Schedule) String() string { return s.expr }

// Location returns the zone cron schedules are evaluated in (UTC for rate
// schedules). Next and Last return times in it.
func (s *Schedule) Location() *time.Location { return s.loc }

// Next returns the first tick strictly after after, in s.Location(), or the
// zero Time if the schedule never fires after it (an AWS schedule whose
// last year has passed; Parse refuses those that never fire at all).
func (s *Schedule) Next(after time.Time) time.Time {
	if s.period > 0 {
		return s.rateTick(floorDiv(after.Unix(), s.period), 1)
	}
	for {
		t := s.specNext(after)
		if t.IsZero() || s.years == nil {
			return t
		}
		y := t.Year()
		if s.years.has(y) {
			return t
		}
		next, ok := s.years.after(y)
		if !ok {
			return time.Time{}
		}
		// Resume just before the first instant of that year, or after t
		// if a zone change puts that before t.
		after = time.Date(next, time.January, 1, 0, 0, 0, 0, s.loc).Add(-time.Nanosecond)
		if !after.After(t) {
			after = t
		}
	}
}

// Last returns the latest tick t with since < t <= notAfter, in
// s.Location(), or the zero Time if there is none. Its cost grows with
// the logarithm of notAfter-since, not with the number of ticks (see the
// package documentation).
func (s *Schedule) Last(notAfter, since time.Time) time.Time {
	if !notAfter.After(since) {
		return time.Time{}
	}
	if s.period > 0 {
		t := s.rateTick(floorDiv(notAfter.Unix(), s.period), 0)
		if t.IsZero() || !t.After(since) {
			return time.Time{}
		}
		return t
	}

	// Find a window (lo, hi] that holds a tick: start with the last
	// minute before notAfter and double it until it reaches since.
	hi := notAfter
	span := hi.Sub(since) // saturates for spans beyond ~292 years
	lo := since
	for w := time.Minute; ; {
		whole := w >= span
		lo = since
		if !whole {
			lo = hi.Add(-w)
		}
		if t := s.Next(lo); !t.IsZero() && !t.After(hi) {
			break
		}
		if whole {
			return time.Time{}
		}
		if w > span/2 {
			w = span
		} else {
			w *= 2
		}
	}

	// Bisect, keeping a tick in (lo, hi], until the window is a minute.
	for hi.Sub(lo) > time.Minute {
		mid := lo.Add(hi.Sub(lo) / 2)
		if t := s.Next(mid); !t.IsZero() && !t.After(hi) {
			lo = mid
		} else {
			hi = mid
		}
	}

	// Ticks fall on whole seconds, so at most 60 of them remain; the
	// bound on the loop is a guard, not a limit that is ever reached.
	var last time.Time
	t := s.Next(lo)
	for i := 0; i < 100 && !t.IsZero() && !t.After(hi); i++ {
		last, t = t, s.Next(t)
	}
	return last
}

// specNext returns the first tick strictly after after, ignoring the year
// field, or the zero Time if there is none within eleven years.
//
// A tick is an instant whose wall clock in s.loc matches the fields. The
// cron library's own zone handling can loop forever where a zone skips a
// whole day (Pacific/Apia, 30 December 2011), so it only ever searches
// wall-clock times here, in UTC where nothing is skipped or repeated, one
// zone period (a span with one UTC offset) at a time. A wall-clock time
// that a daylight-saving change skips is no tick; one that occurs twice
// is two ticks.
//
// Eleven years is enough: a cron schedule that fires at all fires at least
// every eight years (29 February, across 2100).
func (s *Schedule) specNext(after time.Time) time.Time {
	limit := after.AddDate(11, 0, 0)
	from, at := after, after // ticks after from, in the zone period of at
	for at.Before(limit) {
		local := at.In(s.loc)
		_, offset := local.Zone()
		_, end := local.ZoneBounds() // zero if the period never ends
		shift := time.Duration(offset) * time.Second
		wall := s.wallNext(from.UTC().Add(shift))
		if wall.IsZero() {
			return time.Time{}
		}
		tick := wall.Add(-shift)
		if end.IsZero() || tick.Before(end) {
			return tick.In(s.loc)
		}
		from, at = end.Add(-time.Nanosecond), end
	}
	return time.Time{}
}

// wallNext returns the first wall-clock time strictly after wall (both
// written in UTC) that matches the fields, or the zero Time if there is
// none within ten years. The cron library gives up five years after the
// time it is given, so it is asked once more from where it stopped.
func (s *Schedule) wallNext(wall time.Time) time.Time {
	t := s.spec.Next(wall)
	if t.IsZero() {
		t = s.spec.Next(time.Date(wall.Year()+5, time.January, 1, 0, 0, 0, 0, time.UTC).Add(-time.Nanosecond))
	}
	return t
}

// maxRateUnix bounds rate ticks (in seconds from the epoch) so that they
// stay far inside what time.Time represents.
const maxRateUnix = 1 << 62

// rateTick returns the tick (k+add)·period seconds after the epoch, or the
// zero Time if that overflows.
func (s *Schedule) rateTick(k, add int64) time.Time {
	if k > maxRateUnix/s.period || k < -maxRateUnix/s.period {
		return time.Time{}
	}
	return time.Unix((k+add)*s.period, 0).UTC()
}

// floorDiv divides rounding toward negative infinity; b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// rateUnits maps the units of rate(...) to seconds.
var rateUnits = map[string]int64{
	"second": 1, "seconds": 1,
	"minute": 60, "minutes": 60,
	"hour": 3600, "hours": 3600,
	"day": 86400, "days": 86400,
}

// parseRate parses "rate(N unit)" into a period in seconds.
func parseRate(expr string) (int64, error) {
	inner, ok := strings.CutSuffix(strings.TrimPrefix(expr, "rate("), ")")
	if !ok {
		return 0, errorf(expr, `rate(...) must end with ")"`)
	}
	f := strings.Fields(inner)
	if len(f) != 2 {
		return 0, errorf(expr, `must be "rate(N unit)", such as "rate(5 minutes)"`)
	}
	if !isDigits(f[0]) {
		return 0, errorf(expr, "rate value %q must be a positive whole number (the shortest rate is rate(1 second))", f[0])
	}
	unit, ok := rateUnits[f[1]]
	if !ok {
		return 0, errorf(expr, "unknown rate unit %q (use minutes, hours, days or seconds)", f[1])
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	const maxSeconds = math.MaxInt64 / int64(time.Second)
	switch {
	case err != nil || n > maxSeconds/unit:
		return 0, errorf(expr, "rate period is too long")
	case n == 0:
		return 0, errorf(expr, "rate value must be a positive whole number, not 0 (the shortest rate is rate(1 second))")
	}
	return n * unit, nil
}

// loadLocation resolves a zone name; "" means UTC.
func loadLocation(name string) (*time.Location, error) {
	switch name {
	case "":
		return time.UTC, nil
	case "Local":
		// The host's zone would make servers disagree.
		return nil, fmt.Errorf(`timezone %s: must be an IANA zone name such as "Europe/Paris"`, quote(name))
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("timezone %s: unknown time zone", quote(name))
	}
	return loc, nil
}

// errorf returns an error about expression expr.
func errorf(expr, format string, args ...any) error {
	return fmt.Errorf("schedule %s: %s", quote(expr), fmt.Sprintf(format, args...))
}

// errorText returns an error with a formatted message, for the parts of
// an expression; errorf adds the expression.
func errorText(format string, args ...any) error {
	return errors.New(fmt.Sprintf(format, args...))
}

// quote quotes s for an error message, shortening a long one.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
