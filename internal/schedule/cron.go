package schedule

import (
	"strconv"
	"strings"

	"github.com/robfig/cron/v3"
)

// The cron fields shared by both cron forms, in order.
var (
	fieldNames   = [5]string{"minute", "hour", "day-of-month", "month", "day-of-week"}
	fieldParsers = [5]cron.Parser{
		cron.NewParser(cron.Minute),
		cron.NewParser(cron.Hour),
		cron.NewParser(cron.Dom),
		cron.NewParser(cron.Month),
		cron.NewParser(cron.Dow),
	}
	fieldsParser     = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)
	descriptorParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
)

// parseStandard parses a 5-field cron expression or a descriptor.
func parseStandard(expr string) (*cron.SpecSchedule, error) {
	switch {
	case strings.HasPrefix(expr, "@every"):
		return nil, errorf(expr, `@every is not supported: use rate(...), such as "rate(5 minutes)"`)
	case strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ="):
		return nil, errorf(expr, "a TZ= or CRON_TZ= prefix is not supported: set the timezone field instead")
	case strings.HasPrefix(expr, "@"):
		sched, err := descriptorParser.Parse(expr)
		if err != nil {
			return nil, errorf(expr, "unknown descriptor (known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)")
		}
		return toSpec(expr, sched)
	}
	f := strings.Fields(expr)
	if len(f) != 5 {
		hint := ""
		if len(f) == 6 {
			hint = "; for the AWS form with a year field, write cron(...)"
		}
		return nil, errorf(expr, "cron expressions have 5 fields (minute hour day-of-month month day-of-week), found %d%s", len(f), hint)
	}
	return parseFields(expr, [5]string(f))
}

// parseFields parses the five cron fields, naming the first wrong one.
func parseFields(expr string, f [5]string) (*cron.SpecSchedule, error) {
	for i, field := range f {
		// The character check also keeps out what the cron library reads
		// as a zone prefix or descriptor.
		if j := strings.IndexFunc(field, badFieldRune); j >= 0 {
			r := []rune(field[j:])[0]
			return nil, errorf(expr, "%s: unexpected character %q", fieldNames[i], r)
		}
		if _, err := fieldParsers[i].Parse(field); err != nil {
			return nil, errorf(expr, "%s: %v", fieldNames[i], err)
		}
	}
	sched, err := fieldsParser.Parse(strings.Join(f[:], " "))
	if err != nil {
		return nil, errorf(expr, "%v", err)
	}
	return toSpec(expr, sched)
}

func badFieldRune(r rune) bool {
	switch {
	case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		return false
	}
	return !strings.ContainsRune(",-*/?", r)
}

func toSpec(expr string, sched cron.Schedule) (*cron.SpecSchedule, error) {
	spec, ok := sched.(*cron.SpecSchedule)
	if !ok {
		return nil, errorf(expr, "unsupported schedule type %T", sched)
	}
	return spec, nil
}

// parseAWS parses an EventBridge "cron(min hour dom month dow year)"
// expression into a cron schedule and its year set.
func parseAWS(expr string) (*cron.SpecSchedule, *yearSet, error) {
	inner, ok := strings.CutSuffix(strings.TrimPrefix(expr, "cron("), ")")
	if !ok {
		return nil, nil, errorf(expr, `cron(...) must end with ")"`)
	}
	f := strings.Fields(inner)
	if len(f) != 6 {
		return nil, nil, errorf(expr, "cron(...) needs 6 fields (minute hour day-of-month month day-of-week year), found %d", len(f))
	}
	dom, dow := f[2], f[4]

	if i := strings.IndexAny(strings.ToUpper(dom), "LW#"); i >= 0 {
		return nil, nil, errorf(expr, "day-of-month: %q is not supported", strings.ToUpper(dom)[i:i+1])
	}
	if strings.Contains(dow, "#") {
		return nil, nil, errorf(expr, `day-of-week: "#" (the nth weekday of the month) is not supported`)
	}
	for i, field := range f {
		if i != 2 && i != 4 && strings.Contains(field, "?") {
			return nil, nil, errorf(expr, `%s: "?" is only allowed in day-of-month or day-of-week`, awsFieldName(i))
		}
	}
	for i, field := range []string{dom, dow} {
		if field != "?" && strings.Contains(field, "?") {
			return nil, nil, errorf(expr, `%s: "?" must stand alone`, fieldNames[2+2*i])
		}
	}
	switch {
	case dom == "?" && dow == "?":
		return nil, nil, errorf(expr, `day-of-month and day-of-week cannot both be "?"`)
	case dom != "?" && dow != "?":
		return nil, nil, errorf(expr, `day-of-month or day-of-week must be "?"`)
	}

	cronDow, err := translateDow(dow)
	if err != nil {
		return nil, nil, errorf(expr, "day-of-week: %v", err)
	}
	years, err := parseYears(f[5])
	if err != nil {
		return nil, nil, errorf(expr, "year: %v", err)
	}
	spec, err := parseFields(expr, [5]string{f[0], f[1], dom, f[3], cronDow})
	if err != nil {
		return nil, nil, err
	}
	return spec, years, nil
}

func awsFieldName(i int) string {
	if i == 5 {
		return "year"
	}
	return fieldNames[i]
}

// awsDays numbers the day names as AWS does: 1 = SUN to 7 = SAT.
var awsDays = map[string]int{"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}

// translateDow rewrites an AWS day-of-week field (1-7, 1 = SUN) into the
// cron library's numbering (0-6, 0 = SUN), item by item, keeping ranges
// and steps: "2-6" becomes "1-5", "1,7" becomes "0,6", "MON/2" "1/2".
func translateDow(field string) (string, error) {
	if field == "?" {
		return field, nil
	}
	items := strings.Split(field, ",")
	for i, item := range items {
		rng, step, hasStep := strings.Cut(item, "/")
		if rng == "*" {
			continue
		}
		first, second, isRange := strings.Cut(rng, "-")
		lo, err := awsDay(first)
		if err != nil {
			return "", err
		}
		out := strconv.Itoa(lo - 1)
		if isRange {
			hi, err := awsDay(second)
			if err != nil {
				return "", err
			}
			if lo > hi {
				return "", errorText("range %q runs backwards", rng)
			}
			out += "-" + strconv.Itoa(hi-1)
		}
		if hasStep {
			out += "/" + step
		}
		items[i] = out
	}
	return strings.Join(items, ","), nil
}

// awsDay parses one AWS day of the week: 1-7 or SUN-SAT.
func awsDay(s string) (int, error) {
	if n, ok := awsDays[strings.ToUpper(s)]; ok {
		return n, nil
	}
	if isDigits(s) {
		if n, err := strconv.Atoi(s); err == nil && n >= 1 && n <= 7 {
			return n, nil
		}
		return 0, errorText("%s is out of range: use 1-7 (1 = SUN) or SUN-SAT", s)
	}
	if u := strings.ToUpper(s); u == "L" || strings.HasSuffix(u, "L") && isDigits(u[:len(u)-1]) {
		return 0, errorText(`"L" (the last weekday of the month) is not supported`)
	}
	return 0, errorText("%q is not a day: use 1-7 (1 = SUN) or SUN-SAT", s)
}

// The years an AWS schedule may name.
const (
	minYear = 1970
	maxYear = 2199
)

// yearSet is the set of years of an AWS year field.
type yearSet struct {
	bits [(maxYear - minYear + 64) / 64]uint64
}

func (s *yearSet) add(y int) {
	i := y - minYear
	s.bits[i/64] |= 1 << (i % 64)
}

func (s *yearSet) has(y int) bool {
	if y < minYear || y > maxYear {
		return false
	}
	i := y - minYear
	return s.bits[i/64]&(1<<(i%64)) != 0
}

// after returns the smallest year in s greater than y.
func (s *yearSet) after(y int) (int, bool) {
	for n := max(y+1, minYear); n <= maxYear; n++ {
		if s.has(n) {
			return n, true
		}
	}
	return 0, false
}

// parseYears parses an AWS year field: "*", a year, a range "2026-2030",
// steps "2026/2", "*/2" or "2026-2040/5", and lists of these. It returns
// nil for "*", which places no limit on the year.
func parseYears(field string) (*yearSet, error) {
	if field == "*" {
		return nil, nil
	}
	set := &yearSet{}
	for _, item := range strings.Split(field, ",") {
		rng, stepText, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || !isDigits(stepText) || n < 1 {
				return nil, errorText("step %q must be a positive whole number", stepText)
			}
			step = n
		}
		lo, hi := minYear, maxYear
		if rng != "*" {
			first, second, isRange := strings.Cut(rng, "-")
			var err error
			if lo, err = year(first); err != nil {
				return nil, err
			}
			switch {
			case isRange:
				if hi, err = year(second); err != nil {
					return nil, err
				}
				if lo > hi {
					return nil, errorText("range %q runs backwards", rng)
				}
			case !hasStep:
				hi = lo
			}
		}
		for y := lo; y <= hi; y += step {
			set.add(y)
		}
	}
	return set, nil
}

func year(s string) (int, error) {
	if isDigits(s) {
		if n, err := strconv.Atoi(s); err == nil && n >= minYear && n <= maxYear {
			return n, nil
		}
	}
	return 0, errorText("%q is not a year from %d to %d", s, minYear, maxYear)
}
