package metering

import (
	"cmp"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"
)

// Default prices, in USD: AWS Lambda's on x86.
const (
	DefaultPerMillionRequests = 0.20
	DefaultPerGBSecond        = 0.0000166667
)

// Prices is a price table in USD. A zero rate takes its default (so a rate
// cannot be set to exactly 0; use a tiny one). The free tier is per
// calendar month and is 0 (none) unless set.
type Prices struct {
	PerMillionRequests float64 `json:"perMillionRequests"`
	PerGBSecond        float64 `json:"perGbSecond"`
	FreeRequests       int64   `json:"freeRequests"`
	FreeGBSeconds      float64 `json:"freeGbSeconds"`
}

// WithDefaults returns p with zero rates replaced by the defaults.
func (p Prices) WithDefaults() Prices {
	if p.PerMillionRequests == 0 {
		p.PerMillionRequests = DefaultPerMillionRequests
	}
	if p.PerGBSecond == 0 {
		p.PerGBSecond = DefaultPerGBSecond
	}
	return p
}

func (p Prices) validate() error {
	if p.PerMillionRequests < 0 || p.PerGBSecond < 0 || p.FreeRequests < 0 || p.FreeGBSeconds < 0 ||
		math.IsNaN(p.PerMillionRequests+p.PerGBSecond+p.FreeGBSeconds) || math.IsInf(p.PerMillionRequests+p.PerGBSecond+p.FreeGBSeconds, 0) {
		return fmt.Errorf("%w: prices must be finite and not negative", ErrBadQuery)
	}
	return nil
}

// cost is what requests and GB-seconds cost at p, rounded to 1e-10 USD
// (so that JSON and CSV do not show floating-point noise).
func (p Prices) cost(requests int64, gbSeconds float64) float64 {
	c := float64(requests)/1e6*p.PerMillionRequests + gbSeconds*p.PerGBSecond
	return math.Round(c*1e10) / 1e10
}

// Groupings of a Query.
const (
	ByFunction = "function"
	ByDay      = "day"
	ByHour     = "hour"
)

// Row keys of ByDay and ByHour, in UTC.
const (
	DayLayout  = "2006-01-02"
	HourLayout = "2006-01-02T15:00Z"
)

// Query selects and groups usage.
type Query struct {
	// Since and Until select the hours whose start is in
	// [Since truncated to the hour, Until). Zero means no bound.
	Since, Until time.Time
	// By groups rows by ByFunction (the default), ByDay or ByHour.
	By string
	// Function, if set, selects one function.
	Function string
	Prices   Prices
}

// Durations are duration statistics in milliseconds: the mean, and
// percentiles within HistogramRelativeError.
type Durations struct {
	Avg float64 `json:"avg"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

// Row is the usage of one function, day or hour.
type Row struct {
	// Key is the function's name, the day (DayLayout) or the hour
	// (HourLayout); "total" in Totals.
	Key string `json:"key"`
	// Requests are invocations that ran (not throttled), Errors those of
	// them that ended in an error, a timeout or a crash.
	Requests   int64 `json:"requests"`
	Errors     int64 `json:"errors"`
	Throttles  int64 `json:"throttles"`
	ColdStarts int64 `json:"coldStarts"`
	BilledMS   int64 `json:"billedMs"`
	// MBms is Σ memory MB × billed ms, exact; GBSeconds = MBms/1024/1000.
	MBms       int64     `json:"mbMs"`
	GBSeconds  float64   `json:"gbSeconds"`
	CPUSeconds float64   `json:"cpuSeconds"`
	DurationMS Durations `json:"durationMs"`
	// Cost in USD before the free tier, rounded to 1e-10:
	// Requests/1e6 × PerMillionRequests + GBSeconds × PerGBSecond.
	Cost float64 `json:"cost"`
}

// Totals is the whole report's usage, and its cost after the free tier.
type Totals struct {
	Row
	// FreeRequests and FreeGBSeconds are what the free tier took off:
	// for each calendar month (UTC) with usage in the range, up to the
	// monthly free amount of that month's usage (unused free tier does
	// not carry over to another month).
	FreeRequests  int64   `json:"freeRequests"`
	FreeGBSeconds float64 `json:"freeGbSeconds"`
	CostAfterFree float64 `json:"costAfterFree"`
}

// Report answers a Query.
type Report struct {
	By       string `json:"by"`
	Function string `json:"function,omitempty"`
	// Since is the query's Since truncated to the hour.
	Since    time.Time `json:"since,omitzero"`
	Until    time.Time `json:"until,omitzero"`
	Currency string    `json:"currency"`
	Prices   Prices    `json:"prices"`
	// ClosedThrough is the end of the newest closed minute: the numbers
	// of minutes before it are final.
	ClosedThrough time.Time `json:"closedThrough,omitzero"`
	Rows          []Row     `json:"rows"`
	Totals        Totals    `json:"totals"`
}

// Query answers q from what the Aggregator has applied so far (call Sync
// first for everything published up to now).
func (a *Aggregator) Query(q Query) (*Report, error) {
	by := cmp.Or(q.By, ByFunction)
	var keyOf func(fn string, hour int64) string
	switch by {
	case ByFunction:
		keyOf = func(fn string, _ int64) string { return fn }
	case ByDay:
		keyOf = func(_ string, hour int64) string { return time.Unix(hour, 0).UTC().Format(DayLayout) }
	case ByHour:
		keyOf = func(_ string, hour int64) string { return time.Unix(hour, 0).UTC().Format(HourLayout) }
	default:
		return nil, fmt.Errorf("%w: by %q: want %s, %s or %s", ErrBadQuery, q.By, ByFunction, ByDay, ByHour)
	}
	if q.Function != "" && !validFunction(q.Function) {
		return nil, fmt.Errorf("%w: function name %q", ErrBadQuery, q.Function)
	}
	prices := q.Prices.WithDefaults()
	if err := prices.validate(); err != nil {
		return nil, err
	}
	rep := &Report{By: by, Function: q.Function, Currency: "USD", Prices: prices, Until: q.Until.UTC()}
	since, until := int64(math.MinInt64), int64(math.MaxInt64)
	if !q.Since.IsZero() {
		rep.Since = q.Since.UTC().Truncate(time.Hour)
		since = rep.Since.Unix()
	}
	if !q.Until.IsZero() {
		// An hour is in when its start is before Until.
		until = q.Until.Unix()
		if q.Until.Nanosecond() > 0 {
			until++
		}
	}
	if since >= until {
		return nil, fmt.Errorf("%w: until must be after since", ErrBadQuery)
	}

	// The free tier is the account's, per calendar month, used up in
	// time order: what the range gets is what the month's earlier hours
	// (all functions) left, shared among the range's functions in
	// proportion to their use.
	type use struct{ requests, mbms int64 }
	type month struct{ before, inRange, selected use }
	groups := make(map[string]*usage)
	months := make(map[int64]*month)
	monthOf := func(hour int64) (int64, int64) {
		t := time.Unix(hour, 0).UTC()
		return int64(t.Year())*12 + int64(t.Month()), time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC).Unix()
	}
	add := func(k aggKey, u *usage) {
		hour := k.hour()
		mk, monthStart := monthOf(hour)
		m := months[mk]
		if m == nil {
			m = new(month)
			months[mk] = m
		}
		switch {
		case hour >= until:
			return
		case hour < since:
			if hour >= monthStart {
				m.before.requests += u.Requests
				m.before.mbms += u.MBms
			}
			return
		}
		m.inRange.requests += u.Requests
		m.inRange.mbms += u.MBms
		if q.Function != "" && k.function != q.Function {
			return
		}
		m.selected.requests += u.Requests
		m.selected.mbms += u.MBms
		key := keyOf(k.function, hour)
		g := groups[key]
		if g == nil {
			g = new(usage)
			groups[key] = g
		}
		g.merge(u)
	}
	// Closed hours are in hours; the minutes of every later hour (closed
	// or not) in minutes: each record is in exactly one of them.
	a.mu.RLock()
	for k, u := range a.hours {
		add(k, u)
	}
	for k, u := range a.minutes {
		add(k, u)
	}
	if a.closed {
		rep.ClosedThrough = time.Unix(a.closedMinute, 0).UTC().Add(time.Minute)
	}
	a.mu.RUnlock()

	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var total usage
	rep.Rows = make([]Row, 0, len(keys))
	for _, k := range keys {
		g := groups[k]
		rep.Rows = append(rep.Rows, makeRow(k, g, prices))
		total.merge(g)
	}
	rep.Totals.Row = makeRow("total", &total, prices)
	var freeReq int64
	var freeGB float64
	for _, m := range months {
		if m.selected.requests == 0 && m.selected.mbms == 0 {
			continue
		}
		availReq := max(0, prices.FreeRequests-m.before.requests)
		if used := min(availReq, m.inRange.requests); used > 0 {
			freeReq += used * m.selected.requests / m.inRange.requests
		}
		availGB := max(0, prices.FreeGBSeconds-gbSeconds(m.before.mbms))
		if used := min(availGB, gbSeconds(m.inRange.mbms)); used > 0 {
			freeGB += used * float64(m.selected.mbms) / float64(m.inRange.mbms)
		}
	}
	rep.Totals.FreeRequests = freeReq
	rep.Totals.FreeGBSeconds = freeGB
	rep.Totals.CostAfterFree = prices.cost(total.Requests-freeReq, max(0, rep.Totals.GBSeconds-freeGB))
	return rep, nil
}

func gbSeconds(mbms int64) float64 { return float64(mbms) / 1024 / 1000 }

func makeRow(key string, u *usage, p Prices) Row {
	r := Row{
		Key:        key,
		Requests:   u.Requests,
		Errors:     u.Errors,
		Throttles:  u.Throttles,
		ColdStarts: u.ColdStarts,
		BilledMS:   u.BilledMS,
		MBms:       u.MBms,
		GBSeconds:  gbSeconds(u.MBms),
		CPUSeconds: float64(u.CPUUS) / 1e6,
	}
	if u.Requests > 0 {
		r.DurationMS = Durations{
			Avg: float64(u.DurationUS) / float64(u.Requests) / 1000,
			P50: float64(u.Durations.Quantile(0.50)) / 1000,
			P90: float64(u.Durations.Quantile(0.90)) / 1000,
			P99: float64(u.Durations.Quantile(0.99)) / 1000,
		}
	}
	r.Cost = p.cost(r.Requests, r.GBSeconds)
	return r
}

// CSVHeader is WriteCSV's header row; its first column is named after the
// report's grouping.
var CSVHeader = []string{"key", "requests", "errors", "throttles", "cold_starts", "billed_ms", "mb_ms",
	"gb_seconds", "cpu_seconds", "avg_ms", "p50_ms", "p90_ms", "p99_ms", "cost_usd", "cost_after_free_usd"}

// WriteCSV writes r as CSV: a header row (CSVHeader, the first column named
// after r.By), one line per row, then a line keyed "total" with the totals;
// only that line has cost_after_free_usd.
func WriteCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	header := slices.Clone(CSVHeader)
	header[0] = cmp.Or(r.By, header[0])
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("metering: write csv: %w", err)
	}
	for i := range r.Rows {
		if err := cw.Write(csvLine(&r.Rows[i], "")); err != nil {
			return fmt.Errorf("metering: write csv: %w", err)
		}
	}
	if err := cw.Write(csvLine(&r.Totals.Row, formatFloat(r.Totals.CostAfterFree))); err != nil {
		return fmt.Errorf("metering: write csv: %w", err)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("metering: write csv: %w", err)
	}
	return nil
}

func csvLine(r *Row, afterFree string) []string {
	i := strconv.FormatInt
	f := formatFloat
	return []string{r.Key, i(r.Requests, 10), i(r.Errors, 10), i(r.Throttles, 10), i(r.ColdStarts, 10),
		i(r.BilledMS, 10), i(r.MBms, 10), f(r.GBSeconds), f(r.CPUSeconds),
		f(r.DurationMS.Avg), f(r.DurationMS.P50), f(r.DurationMS.P90), f(r.DurationMS.P99), f(r.Cost), afterFree}
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
