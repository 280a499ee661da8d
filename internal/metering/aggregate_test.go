package metering_test

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/metering"
	"github.com/ternhq/tern/internal/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir()}, testLogger(t))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startAgg starts an Aggregator on js and kv, waits until it has applied
// the stream, and closes it when the test ends.
func startAgg(t *testing.T, js jetstream.JetStream, kv jetstream.KeyValue, clock *fakeClock) *metering.Aggregator {
	t.Helper()
	a := metering.NewAggregator(js, kv, metering.AggConfig{Now: clock.Now, CheckpointEvery: time.Hour}, testLogger(t))
	if err := a.Start(ctxT(t)); err != nil {
		t.Fatalf("start aggregator: %v", err)
	}
	t.Cleanup(func() { closeAgg(t, a) })
	if err := a.Sync(ctxT(t)); err != nil {
		t.Fatalf("sync: %v", err)
	}
	return a
}

func closeAgg(t *testing.T, a *metering.Aggregator) {
	t.Helper()
	if err := a.Close(ctxT(t)); err != nil {
		t.Errorf("close aggregator: %v", err)
	}
}

func checkpoint(t *testing.T, a *metering.Aggregator) {
	t.Helper()
	if err := a.Checkpoint(ctxT(t)); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
}

// genRecords makes n records of fns spread over hours hours from base.
func genRecords(rng *rand.Rand, n int, fns []string, base time.Time, hours int) []metering.Record {
	recs := make([]metering.Record, n)
	for i := range recs {
		r := metering.Record{
			Function:  fns[rng.IntN(len(fns))],
			Version:   1 + rng.IntN(3),
			RequestID: "req-" + strconv.Itoa(i),
			Trigger:   metering.TriggerHTTP,
			Start:     base.Add(time.Duration(rng.Int64N(int64(hours) * int64(time.Hour)))),
			MemoryMB:  []int{128, 256, 512, 1024, 3008}[rng.IntN(5)],
		}
		switch p := rng.IntN(100); {
		case p < 5:
			r.Outcome = metering.OutcomeThrottled
		case p < 10:
			r.Outcome = metering.OutcomeError
		case p < 13:
			r.Outcome = metering.OutcomeTimeout
		case p < 15:
			r.Outcome = metering.OutcomeCrash
		case p < 18:
			r.Outcome = metering.OutcomeCanceled
		default:
			r.Outcome = metering.OutcomeSuccess
		}
		if r.Outcome != metering.OutcomeThrottled {
			d := time.Duration(math.Exp(math.Log(50e3) + rng.Float64()*(math.Log(5e9)-math.Log(50e3)))) // 50µs..5s
			r.DurationUS = d.Microseconds()
			r.BilledMS = metering.BilledMS(d)
			r.CPUUS = rng.Int64N(r.DurationUS + 1)
			r.MaxMemoryMB = rng.IntN(r.MemoryMB) + 1
			if rng.IntN(10) == 0 {
				r.Cold, r.InitUS = true, 100_000+rng.Int64N(100_000)
			}
		}
		recs[i] = r
	}
	return recs
}

// expected is what a row should say, computed straight from records.
type expected struct {
	requests, errors, throttles, cold, billed, mbms, cpu int64
	durations                                            []int64
}

func (e *expected) add(r *metering.Record) {
	if r.Outcome == metering.OutcomeThrottled {
		e.throttles++
		return
	}
	e.requests++
	if r.Outcome == metering.OutcomeError || r.Outcome == metering.OutcomeTimeout || r.Outcome == metering.OutcomeCrash {
		e.errors++
	}
	if r.Cold {
		e.cold++
	}
	e.billed += r.BilledMS
	e.mbms += int64(r.MemoryMB) * r.BilledMS
	e.cpu += r.CPUUS
	e.durations = append(e.durations, r.DurationUS)
}

func expectBy(recs []metering.Record, key func(*metering.Record) string) map[string]*expected {
	m := make(map[string]*expected)
	for i := range recs {
		k := key(&recs[i])
		if m[k] == nil {
			m[k] = new(expected)
		}
		m[k].add(&recs[i])
	}
	return m
}

func checkRow(t *testing.T, what string, got metering.Row, e *expected) {
	t.Helper()
	ints := []struct {
		name      string
		got, want int64
	}{
		{"requests", got.Requests, e.requests},
		{"errors", got.Errors, e.errors},
		{"throttles", got.Throttles, e.throttles},
		{"cold starts", got.ColdStarts, e.cold},
		{"billed ms", got.BilledMS, e.billed},
		{"MB·ms", got.MBms, e.mbms},
	}
	for _, c := range ints {
		if c.got != c.want {
			t.Errorf("%s: %s = %d, want %d", what, c.name, c.got, c.want)
		}
	}
	if want := float64(e.mbms) / 1024 / 1000; got.GBSeconds != want {
		t.Errorf("%s: GB-seconds = %v, want %v", what, got.GBSeconds, want)
	}
	if want := float64(e.cpu) / 1e6; got.CPUSeconds != want {
		t.Errorf("%s: CPU seconds = %v, want %v", what, got.CPUSeconds, want)
	}
	wantCost := float64(e.requests)/1e6*metering.DefaultPerMillionRequests + float64(e.mbms)/1024/1000*metering.DefaultPerGBSecond
	if math.Abs(got.Cost-wantCost) > 1e-10 { // rounded to 1e-10 USD
		t.Errorf("%s: cost = %v, want %v", what, got.Cost, wantCost)
	}
	if len(e.durations) == 0 {
		return
	}
	sorted := slices.Sorted(slices.Values(e.durations))
	for _, p := range []struct {
		q   float64
		got float64
	}{{0.5, got.DurationMS.P50}, {0.9, got.DurationMS.P90}, {0.99, got.DurationMS.P99}} {
		exact := float64(exactQuantile(sorted, p.q))
		if d := math.Abs(p.got*1000 - exact); d > exact*metering.HistogramRelativeError+1e-6 {
			t.Errorf("%s: p%v = %v ms, exact %v ms: beyond the histogram's error", what, p.q*100, p.got, exact/1000)
		}
	}
}

// checkReport compares every row of a report grouped by fn with want.
func checkReport(t *testing.T, a *metering.Aggregator, q metering.Query, want map[string]*expected, all *expected) {
	t.Helper()
	rep, err := a.Query(q)
	if err != nil {
		t.Fatalf("Query(%+v): %v", q, err)
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var got []string
	for _, r := range rep.Rows {
		got = append(got, r.Key)
	}
	if !slices.Equal(got, keys) {
		t.Fatalf("by %s: row keys %v, want %v", q.By, got, keys)
	}
	for _, r := range rep.Rows {
		checkRow(t, q.By+" "+r.Key, r, want[r.Key])
	}
	checkRow(t, q.By+" totals", rep.Totals.Row, all)
	if rep.Totals.Key != "total" {
		t.Errorf("totals key %q", rep.Totals.Key)
	}
}

// numbersJSON is reportsJSON without the reports' ClosedThrough: the
// numbers alone, which a roll-up must not change.
func numbersJSON(t *testing.T, a *metering.Aggregator, base time.Time) string {
	t.Helper()
	return closedThroughRE.ReplaceAllString(reportsJSON(t, a, base), "")
}

var closedThroughRE = regexp.MustCompile(`\s*"closedThrough": "[^"]*",`)

// reportsJSON is the JSON of the reports of a fixed set of queries.
func reportsJSON(t *testing.T, a *metering.Aggregator, base time.Time) string {
	t.Helper()
	queries := []metering.Query{
		{},
		{By: metering.ByHour},
		{By: metering.ByDay},
		{By: metering.ByFunction, Function: "fn-b"},
		{By: metering.ByHour, Since: base.Add(90 * time.Minute), Until: base.Add(4 * time.Hour)},
		{By: metering.ByFunction, Prices: metering.Prices{FreeRequests: 100, FreeGBSeconds: 50}},
	}
	var out []*metering.Report
	for _, q := range queries {
		rep, err := a.Query(q)
		if err != nil {
			t.Fatalf("Query(%+v): %v", q, err)
		}
		out = append(out, rep)
	}
	b, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// bucketContents is every key of kv with its value.
func bucketContents(t *testing.T, kv jetstream.KeyValue) map[string]string {
	t.Helper()
	ctx := ctxT(t)
	kl, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]string)
	for k := range kl.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
		m[k] = string(e.Value())
	}
	return m
}

func TestSinkToAggregatorExactAcrossRestarts(t *testing.T) {
	st := openStore(t)
	rng := rand.New(rand.NewPCG(7, 8))
	fns := []string{"fn-a", "fn-b", "fn_c", "D"}
	// Six hours two days ago: every record starts before it is published.
	base := time.Now().UTC().Truncate(time.Hour).Add(-48 * time.Hour)
	const n = 3000
	recs := genRecords(rng, n, fns, base, 6)

	sink := metering.NewSink(st.JS, metering.SinkConfig{}, testLogger(t))
	sink.Start()
	for i := range recs {
		r := recs[i]
		sink.Record(&r)
	}
	closeSink(t, sink)
	if got, want := sink.Stats(), (metering.SinkStats{Published: n}); got != want {
		t.Fatalf("sink stats %+v, want %+v", got, want)
	}

	clock := &fakeClock{t: base}
	a1 := startAgg(t, st.JS, st.Usage, clock)
	all := expectBy(recs, func(*metering.Record) string { return "" })[""]
	byFn := expectBy(recs, func(r *metering.Record) string { return r.Function })
	byHour := expectBy(recs, func(r *metering.Record) string { return r.Start.Truncate(time.Hour).Format(metering.HourLayout) })
	byDay := expectBy(recs, func(r *metering.Record) string { return r.Start.Format(metering.DayLayout) })
	checkReport(t, a1, metering.Query{By: metering.ByFunction}, byFn, all)
	checkReport(t, a1, metering.Query{By: metering.ByHour}, byHour, all)
	checkReport(t, a1, metering.Query{By: metering.ByDay}, byDay, all)
	if st := a1.Stats(); st.Records != n || st.Invalid != 0 || st.Skipped != 0 {
		t.Fatalf("aggregator stats %+v", st)
	}

	// Closing: an hour h closes at h+1h+CloseAfter, not a second before.
	steps := []struct {
		now     time.Time
		through time.Time // newest closed hour; zero: none
	}{
		{base.Add(time.Hour + 19*time.Minute), time.Time{}},
		{base.Add(time.Hour + 20*time.Minute), base},
		{base.Add(3*time.Hour + 19*time.Minute + 59*time.Second), base.Add(time.Hour)},
		{base.Add(3*time.Hour + 20*time.Minute), base.Add(2 * time.Hour)},
	}
	for _, s := range steps {
		clock.Set(s.now)
		checkpoint(t, a1)
		e, err := st.Usage.Get(ctxT(t), metering.MarkerKey)
		if s.through.IsZero() {
			// No hour is due yet, but the marker says all before the
			// first one are closed.
			if err != nil {
				t.Fatalf("marker at %v: %v", s.now, err)
			}
			if got := string(e.Value()); got != strconv.FormatInt(base.Add(-time.Hour).Unix(), 10) {
				t.Fatalf("marker at %v = %s, want the hour before base", s.now, got)
			}
			continue
		}
		if err != nil || string(e.Value()) != strconv.FormatInt(s.through.Unix(), 10) {
			t.Fatalf("marker at %v = %v (%v), want %d", s.now, e, err, s.through.Unix())
		}
		if got := a1.Stats().ClosedThrough; !got.Equal(s.through.Add(time.Hour)) {
			t.Fatalf("ClosedThrough at %v = %v, want %v", s.now, got, s.through.Add(time.Hour))
		}
	}
	// Hours that closed whole are hour aggregates; the minute aggregates
	// written while their hour was open stay until their TTL.
	bucket := hourContents(bucketContents(t, st.Usage))
	wantKeys := []string{metering.MarkerKey, metering.MinuteMarkerKey}
	for h := base; !h.After(base.Add(2 * time.Hour)); h = h.Add(time.Hour) {
		for _, fn := range fns {
			if byFnHour := expectBy(recs, func(r *metering.Record) string {
				return r.Function + "@" + r.Start.Truncate(time.Hour).String()
			})[fn+"@"+h.String()]; byFnHour != nil {
				wantKeys = append(wantKeys, metering.HourKey(h, fn))
			}
		}
	}
	slices.Sort(wantKeys)
	gotKeys := slices.Sorted(func(yield func(string) bool) {
		for k := range bucket {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(gotKeys, wantKeys) {
		t.Fatalf("bucket keys\n%v\nwant\n%v", gotKeys, wantKeys)
	}
	// Closing changes no number.
	checkReport(t, a1, metering.Query{By: metering.ByHour}, byHour, all)
	want := reportsJSON(t, a1, base)
	closeAgg(t, a1)

	t.Run("restart", func(t *testing.T) {
		a := startAgg(t, st.JS, st.Usage, clock)
		if got := reportsJSON(t, a, base); got != want {
			t.Fatalf("reports after a restart differ:\n%s\nwant\n%s", got, want)
		}
		var open uint64
		for _, r := range recs {
			if r.Start.Truncate(time.Hour).After(base.Add(2 * time.Hour)) {
				open++
			}
		}
		if st := a.Stats(); st.Records != open {
			t.Fatalf("restarted aggregator applied %d records, want only the %d of open hours", st.Records, open)
		}
	})

	t.Run("lost keys", func(t *testing.T) {
		ctx := ctxT(t)
		for k := range bucket {
			if err := st.Usage.Purge(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		a := startAgg(t, st.JS, st.Usage, clock)
		checkpoint(t, a)
		if got := reportsJSON(t, a, base); got != want {
			t.Fatalf("reports rebuilt from the stream differ:\n%s\nwant\n%s", got, want)
		}
		if got := hourContents(bucketContents(t, st.Usage)); !mapsEqual(got, bucket) {
			t.Fatalf("rebuilt bucket differs")
		}
	})

	t.Run("new bucket", func(t *testing.T) {
		kv, err := st.JS.CreateKeyValue(ctxT(t), jetstream.KeyValueConfig{Bucket: "tern_usage_rebuild", LimitMarkerTTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		a := startAgg(t, st.JS, kv, clock)
		checkpoint(t, a)
		if got := reportsJSON(t, a, base); got != want {
			t.Fatalf("reports rebuilt into a new bucket differ:\n%s\nwant\n%s", got, want)
		}
		if got := hourContents(bucketContents(t, kv)); !mapsEqual(got, bucket) {
			t.Fatalf("new bucket differs from the first")
		}
	})

	t.Run("two servers and a late record", func(t *testing.T) {
		a := startAgg(t, st.JS, st.Usage, clock)
		b := startAgg(t, st.JS, st.Usage, clock)
		clock.Set(base.Add(5*time.Hour + 20*time.Minute))
		var wg sync.WaitGroup
		for _, x := range []*metering.Aggregator{a, b} {
			wg.Go(func() { checkpoint(t, x) })
		}
		wg.Wait()
		if ra, rb := reportsJSON(t, a, base), reportsJSON(t, b, base); ra != rb || ra == want {
			t.Fatalf("two aggregators disagree after closing hours concurrently (or nothing closed)")
		}
		// A record of a closed hour arriving now is skipped; one of an
		// open hour is counted.
		before, err := a.Query(metering.Query{})
		if err != nil {
			t.Fatal(err)
		}
		// (The replay on Start skipped the records of closed hours; with
		// the fake clock, their stream times make them look late too.)
		statsBefore := a.Stats()
		sink := metering.NewSink(st.JS, metering.SinkConfig{}, testLogger(t))
		sink.Start()
		late, onTime := recs[0], recs[1]
		late.Start, onTime.Start = base.Add(10*time.Minute), base.Add(5*time.Hour+10*time.Minute)
		late.Outcome, onTime.Outcome = metering.OutcomeSuccess, metering.OutcomeSuccess
		sink.Record(&late)
		sink.Record(&onTime)
		closeSink(t, sink)
		if err := a.Sync(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		after, err := a.Query(metering.Query{})
		if err != nil {
			t.Fatal(err)
		}
		if d := after.Totals.Requests - before.Totals.Requests; d != 1 {
			t.Fatalf("requests grew by %d, want 1 (the record of the open hour)", d)
		}
		if st := a.Stats(); st.Late != statsBefore.Late+1 || st.Skipped != statsBefore.Skipped+1 || st.Records != statsBefore.Records+1 {
			t.Fatalf("stats %+v then %+v, want one late record and one applied", statsBefore, st)
		}
		wantNow := reportsJSON(t, a, base)
		c := startAgg(t, st.JS, st.Usage, clock)
		if got := reportsJSON(t, c, base); got != wantNow {
			t.Fatalf("reports after a restart differ:\n%s\nwant\n%s", got, wantNow)
		}
	})
}

// hourContents is m without the minute aggregates.
func hourContents(m map[string]string) map[string]string {
	out := make(map[string]string)
	for k, v := range m {
		if !strings.HasPrefix(k, "m.") {
			out[k] = v
		}
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestAggregatorSyncFollowsLive(t *testing.T) {
	st := openStore(t)
	clock := &fakeClock{t: time.Now()}
	a := startAgg(t, st.JS, st.Usage, clock)
	sink := metering.NewSink(st.JS, metering.SinkConfig{}, testLogger(t))
	sink.Start()
	defer closeSink(t, sink)
	for round := 1; round <= 3; round++ {
		for i := range 100 {
			r := rec("live", i)
			sink.Record(r)
		}
		waitFor(t, "published", func() bool { return sink.Stats().Published == uint64(100*round) })
		if err := a.Sync(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		rep, err := a.Query(metering.Query{Function: "live"})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Totals.Requests != int64(100*round) {
			t.Fatalf("round %d: %d requests, want %d", round, rep.Totals.Requests, 100*round)
		}
	}
}

func TestQueryErrors(t *testing.T) {
	a := metering.NewAggregator(nil, nil, metering.AggConfig{}, testLogger(t))
	now := time.Now()
	for _, q := range []metering.Query{
		{By: "week"},
		{Function: "a.b"},
		{Since: now, Until: now.Add(-time.Hour)},
		{Prices: metering.Prices{PerGBSecond: -1}},
	} {
		if _, err := a.Query(q); err == nil {
			t.Errorf("Query(%+v) accepted", q)
		}
	}
	if err := a.Sync(context.Background()); err != metering.ErrNotStarted {
		t.Errorf("Sync before Start = %v", err)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Errorf("Close before Start = %v", err)
	}
}
