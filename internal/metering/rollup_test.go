package metering_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/metering"
	"github.com/ternhq/tern/internal/store"
)

// storedAgg is a minute or hour aggregate as the usage bucket holds it.
type storedAgg struct {
	V          int        `json:"v"`
	Function   string     `json:"function"`
	Hour       time.Time  `json:"hour"`
	Minute     time.Time  `json:"minute"`
	Requests   int64      `json:"requests"`
	Errors     int64      `json:"errors"`
	Throttles  int64      `json:"throttles"`
	ColdStarts int64      `json:"coldStarts"`
	BilledMS   int64      `json:"billedMs"`
	MBms       int64      `json:"mbMs"`
	CPUUS      int64      `json:"cpuUs"`
	DurationUS int64      `json:"durationUs"`
	Durations  [][2]int64 `json:"durationsUs"`
}

// sums are the exact sums an aggregate must hold.
type sums struct {
	requests, errors, throttles, cold, billed, mbms, cpu, duration, histCount int64
}

func sumOf(recs []metering.Record) sums {
	var s sums
	for _, r := range recs {
		if r.Outcome == metering.OutcomeThrottled {
			s.throttles++
			continue
		}
		s.requests++
		s.histCount++
		switch r.Outcome {
		case metering.OutcomeError, metering.OutcomeTimeout, metering.OutcomeCrash:
			s.errors++
		}
		if r.Cold {
			s.cold++
		}
		s.billed += r.BilledMS
		s.mbms += r.MBms()
		s.cpu += r.CPUUS
		s.duration += r.DurationUS
	}
	return s
}

func (a storedAgg) sums() sums {
	s := sums{a.Requests, a.Errors, a.Throttles, a.ColdStarts, a.BilledMS, a.MBms, a.CPUUS, a.DurationUS, 0}
	for _, b := range a.Durations {
		s.histCount += b[1]
	}
	return s
}

// storedAggs reads every minute and hour aggregate of kv, by key.
func storedAggs(t *testing.T, kv jetstream.KeyValue) map[string]storedAgg {
	t.Helper()
	out := make(map[string]storedAgg)
	for k, v := range bucketContents(t, kv) {
		if !strings.HasPrefix(k, "m.") && !strings.HasPrefix(k, "h.") {
			continue
		}
		var a storedAgg
		if err := json.Unmarshal([]byte(v), &a); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		out[k] = a
	}
	return out
}

func publish(t *testing.T, js jetstream.JetStream, recs []metering.Record) {
	t.Helper()
	sink := metering.NewSink(js, metering.SinkConfig{}, testLogger(t))
	sink.Start()
	for i := range recs {
		r := recs[i]
		sink.Record(&r)
		if i%50_000 == 49_999 { // stay under the Sink's buffer
			if err := sink.Flush(ctxT(t)); err != nil {
				t.Fatal(err)
			}
		}
	}
	closeSink(t, sink)
	if st := sink.Stats(); st.Published != uint64(len(recs)) {
		t.Fatalf("sink: %+v", st)
	}
}

// TestRollupSumsEqualRaw checks that every minute and hour aggregate
// written to the bucket is the exact sum of the raw records of its minute
// or hour, with records on both sides of minute and hour edges, and that
// records published after their minute closed are left out of every
// aggregate (and counted as late), while those of a minute still open are
// in.
func TestRollupSumsEqualRaw(t *testing.T) {
	st := openStore(t)
	base := time.Now().UTC().Truncate(time.Hour).Add(-6 * time.Hour)
	const us = time.Microsecond
	type rec struct {
		at      time.Duration // Start, after base
		outcome string
		mem     int
		dur     time.Duration
		cold    bool
	}
	type phase struct {
		name  string
		recs  []rec
		clock time.Duration // the checkpoint's Now, after base
		late  int           // how many of recs are late
		// minutesThrough and hoursThrough are the ends of the newest
		// closed minute and hour after the checkpoint, after base.
		minutesThrough, hoursThrough time.Duration
	}
	phases := []phase{
		{
			name: "edges",
			recs: []rec{
				{0, metering.OutcomeSuccess, 128, 1 * us, true},
				{time.Minute - us, metering.OutcomeSuccess, 256, 999 * us, false},
				{time.Minute, metering.OutcomeError, 512, 1001 * us, false},
				{time.Minute + us, metering.OutcomeThrottled, 128, 0, false},
				{59*time.Minute + 59*time.Second + 999999*us, metering.OutcomeTimeout, 3008, 3 * time.Second, false},
				{time.Hour, metering.OutcomeCrash, 1024, 250 * time.Millisecond, true},
				{time.Hour + 9*time.Minute + 59*time.Second, metering.OutcomeSuccess, 128, 20 * time.Millisecond, false},
				{time.Hour + 10*time.Minute, metering.OutcomeCanceled, 128, 5 * time.Millisecond, false},
				{time.Hour + 30*time.Minute, metering.OutcomeSuccess, 256, 7 * time.Millisecond, false},
			},
			// Closes every minute up to base+1h09m: hour 0 whole, ten
			// minutes of hour 1.
			clock: time.Hour + 30*time.Minute, minutesThrough: time.Hour + 10*time.Minute, hoursThrough: time.Hour,
		},
		{
			name: "late and on time",
			recs: []rec{
				{5 * time.Minute, metering.OutcomeSuccess, 128, time.Millisecond, false},                            // closed hour: late
				{time.Hour + 9*time.Minute + 59*time.Second, metering.OutcomeSuccess, 128, time.Millisecond, false}, // closed minute: late
				{time.Hour + 10*time.Minute, metering.OutcomeSuccess, 512, 2 * time.Millisecond, false},             // open minute
				{time.Hour + 59*time.Minute + 59*time.Second, metering.OutcomeError, 128, time.Millisecond, true},
				{2 * time.Hour, metering.OutcomeSuccess, 128, time.Millisecond, false},
			},
			late:  2,
			clock: 2*time.Hour + 20*time.Minute, minutesThrough: 2 * time.Hour, hoursThrough: 2 * time.Hour,
		},
	}

	clock := &fakeClock{t: base}
	a := startAgg(t, st.JS, st.Usage, clock)
	var counted []metering.Record
	late := 0
	for pi, ph := range phases {
		recs := make([]metering.Record, len(ph.recs))
		for i, r := range ph.recs {
			recs[i] = metering.Record{Function: "edge", Version: 1, RequestID: fmt.Sprintf("p%d-%d", pi, i), Trigger: metering.TriggerHTTP,
				Start: base.Add(r.at), DurationUS: r.dur.Microseconds(), BilledMS: metering.BilledMS(r.dur), MemoryMB: r.mem,
				CPUUS: r.dur.Microseconds() / 2, Cold: r.cold, Outcome: r.outcome}
			if r.outcome == metering.OutcomeThrottled {
				recs[i].BilledMS = 0
			}
		}
		publish(t, st.JS, recs)
		if err := a.Sync(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		// The late ones are the first ph.late records.
		counted = append(counted, recs[ph.late:]...)
		late += ph.late
		clock.Set(base.Add(ph.clock))
		checkpoint(t, a)

		stats := a.Stats()
		if stats.Late != uint64(late) || stats.Records != uint64(len(counted)) {
			t.Fatalf("%s: stats %+v, want %d late and %d applied", ph.name, stats, late, len(counted))
		}
		if !stats.MinutesClosedThrough.Equal(base.Add(ph.minutesThrough)) || !stats.ClosedThrough.Equal(base.Add(ph.hoursThrough)) {
			t.Fatalf("%s: closed through %v (minutes) and %v (hours), want %v and %v", ph.name,
				stats.MinutesClosedThrough, stats.ClosedThrough, base.Add(ph.minutesThrough), base.Add(ph.hoursThrough))
		}
		// Every stored aggregate is the sum of the counted records of its
		// minute or hour; every closed minute of an open hour and every
		// closed hour with records has one.
		aggs := storedAggs(t, st.Usage)
		want := make(map[string][]metering.Record)
		for _, r := range counted {
			m, h := r.Start.Truncate(time.Minute), r.Start.Truncate(time.Hour)
			if !h.Add(time.Hour).After(stats.ClosedThrough) {
				want[metering.HourKey(h, "edge")] = append(want[metering.HourKey(h, "edge")], r)
			} else if !m.Add(time.Minute).After(stats.MinutesClosedThrough) {
				want[metering.MinuteKey(m, "edge")] = append(want[metering.MinuteKey(m, "edge")], r)
			}
		}
		for key, recs := range want {
			got, ok := aggs[key]
			if !ok {
				t.Fatalf("%s: no aggregate %s in the bucket", ph.name, key)
			}
			if g, w := got.sums(), sumOf(recs); g != w {
				t.Errorf("%s: %s holds %+v, the raw records sum to %+v", ph.name, key, g, w)
			}
		}
		for key, got := range aggs {
			if _, ok := want[key]; ok {
				continue
			}
			// A minute aggregate of an hour closed since stays until its
			// TTL; it still holds its minute's records.
			m, _ := strconv.ParseInt(strings.Split(key, ".")[1], 10, 64)
			var recs []metering.Record
			for _, r := range counted {
				if strings.HasPrefix(key, "m.") && r.Start.Truncate(time.Minute).Unix() == m {
					recs = append(recs, r)
				}
			}
			if !strings.HasPrefix(key, "m.") || got.sums() != sumOf(recs) {
				t.Errorf("%s: unexpected aggregate %s = %+v", ph.name, key, got.sums())
			}
		}
		// Queries count every counted record once: hours, minutes and the
		// open tail together.
		checkReport(t, a, metering.Query{By: metering.ByHour}, expectBy(counted, func(r *metering.Record) string {
			return r.Start.Truncate(time.Hour).Format(metering.HourLayout)
		}), expectBy(counted, func(*metering.Record) string { return "" })[""])
	}
}

// TestTotalsSurviveRestartAndRawExpiry keeps the raw records for 3 s: once
// they are gone, the rollups alone give the same reports, also to a new
// Aggregator.
func TestTotalsSurviveRestartAndRawExpiry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), UsageRawMaxAge: 3 * time.Second}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// Four hours of records ending 30 min before the clock: with the
	// clock at now, hour 3 is open, most of its minutes closed, and the
	// last 10 min of records not rolled up yet.
	now := time.Now().UTC().Truncate(time.Minute)
	base := now.Add(-4*time.Hour - 30*time.Minute).Truncate(time.Hour)
	recs := genRecords(randFor(11), 4000, []string{"a", "b", "c"}, base, int(now.Sub(base)/time.Hour))
	for i := range recs {
		recs[i].Start = base.Add(time.Duration(i) * (now.Sub(base) - time.Minute) / time.Duration(len(recs)))
	}
	publish(t, st.JS, recs)

	clock := &fakeClock{t: now}
	a1 := startAgg(t, st.JS, st.Usage, clock)
	want := numbersJSON(t, a1, base)
	checkReport(t, a1, metering.Query{By: metering.ByFunction}, expectBy(recs, func(r *metering.Record) string { return r.Function }),
		expectBy(recs, func(*metering.Record) string { return "" })[""])
	checkpoint(t, a1)
	if got := numbersJSON(t, a1, base); got != want {
		t.Fatalf("rolling up changed the reports:\n%s\nwant\n%s", got, want)
	}
	closeAgg(t, a1)

	// A restart while the raw records are there: the open tail is read
	// from them again.
	a2 := startAgg(t, st.JS, st.Usage, clock)
	if got := numbersJSON(t, a2, base); got != want {
		t.Fatalf("reports after a restart differ:\n%s\nwant\n%s", got, want)
	}
	if n := a2.Stats().Records; n == 0 || n == uint64(len(recs)) {
		t.Fatalf("the restart replayed %d records: want only those of minutes not rolled up", n)
	}
	// Everything is rolled up, then the raw records expire.
	clock.Set(now.Add(2 * time.Hour))
	checkpoint(t, a2)
	closeAgg(t, a2)
	stream, err := st.JS.Stream(ctxT(t), store.UsageStream)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "raw records to expire", func() bool {
		info, err := stream.Info(context.Background())
		return err == nil && info.State.Msgs == 0
	})
	a3 := startAgg(t, st.JS, st.Usage, clock)
	if got := numbersJSON(t, a3, base); got != want {
		t.Fatalf("reports after the raw records expired differ:\n%s\nwant\n%s", got, want)
	}
	if n := a3.Stats().Records; n != 0 {
		t.Fatalf("%d records applied after expiry", n)
	}
}

// TestRawByteCap publishes about 2 MB of records into a stream capped at
// 512 KiB: the stream stays under its cap, dropping the oldest, while a
// running Aggregator (and, after the roll-up, a new one) counts every
// record.
func TestRawByteCap(t *testing.T) {
	const capBytes = 512 << 10
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), UsageRawMaxBytes: capBytes}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clock := &fakeClock{t: time.Now()}
	a := startAgg(t, st.JS, st.Usage, clock)
	stream, err := st.JS.Stream(ctxT(t), store.UsageStream)
	if err != nil {
		t.Fatal(err)
	}
	var all []metering.Record
	for round := range 40 {
		recs := genRecords(randFor(uint64(round)), 500, []string{"cap"}, time.Now().Add(-time.Minute), 1)
		for i := range recs {
			recs[i].Start = time.Now().UTC()
			recs[i].RequestID = fmt.Sprintf("%08x-0000-4000-8000-%012d", round, i)
		}
		publish(t, st.JS, recs)
		all = append(all, recs...)
		if err := a.Sync(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		info, err := stream.Info(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Bytes > capBytes {
			t.Fatalf("round %d: the raw stream holds %d bytes, over its cap of %d", round, info.State.Bytes, capBytes)
		}
	}
	info, err := stream.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.FirstSeq == 1 {
		t.Fatalf("nothing was dropped: %+v", info.State)
	}
	byFn := expectBy(all, func(r *metering.Record) string { return r.Function })
	total := expectBy(all, func(*metering.Record) string { return "" })[""]
	checkReport(t, a, metering.Query{By: metering.ByFunction}, byFn, total)
	if st := a.Stats(); st.Missed != 0 {
		t.Fatalf("a running aggregator missed %d messages", st.Missed)
	}
	clock.Set(time.Now().Add(2 * time.Hour))
	checkpoint(t, a)
	closeAgg(t, a)
	b := startAgg(t, st.JS, st.Usage, clock)
	checkReport(t, b, metering.Query{By: metering.ByFunction}, byFn, total)
}

// TestUsageStorageSize writes records through the real Sink into the
// embedded store and reports the bytes per million invocations, raw (this
// encoding and the JSON objects written before it) and rolled up. Set
// TERN_USAGE_SIZE_N for a bigger run (docs/benchmarks.md).
func TestUsageStorageSize(t *testing.T) {
	n := 20_000
	if v, err := strconv.Atoi(os.Getenv("TERN_USAGE_SIZE_N")); err == nil && v > 0 {
		n = v
	}
	st := openStore(t)
	// One function at 4,000 invocations a second, as in the soak.
	start := time.Now().UTC().Truncate(time.Hour).Add(-3*time.Hour + 10*time.Minute)
	recs := genRecords(randFor(3), n, []string{"soak"}, start, 1)
	for i := range recs {
		recs[i].Start = start.Add(time.Duration(i) * time.Second / 4000)
		recs[i].RequestID = fmt.Sprintf("%08x-1111-4222-8333-%012d", i, i) // the length of a real one
	}
	publish(t, st.JS, recs)
	rawNow := streamBytes(t, st.JS, store.UsageStream)

	// The same records as JSON objects, batched alike, as before.
	if _, err := st.JS.CreateStream(ctxT(t), jetstream.StreamConfig{Name: "OLD_USAGE", Subjects: []string{"old.usage.>"}}); err != nil {
		t.Fatal(err)
	}
	const batch = 1000
	for i := 0; i < len(recs); i += batch {
		var data []byte
		for _, r := range recs[i:min(i+batch, len(recs))] {
			line, _ := json.Marshal(r)
			data = append(append(data, line...), '\n')
		}
		if _, err := st.JS.Publish(ctxT(t), "old.usage.soak", data, jetstream.WithMsgID(fmt.Sprintf("u0123456789abcdef-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	rawBefore := streamBytes(t, st.JS, "OLD_USAGE")

	// The minutes close while their hour is open (minute aggregates),
	// then the hour closes (one hour aggregate; the minutes' stay until
	// their TTL).
	end := recs[len(recs)-1].Start
	clock := &fakeClock{t: end.Add(metering.DefaultCloseAfter + 2*time.Minute)}
	a := startAgg(t, st.JS, st.Usage, clock)
	checkpoint(t, a)
	clock.Set(time.Now())
	checkpoint(t, a)
	rollups := streamBytes(t, st.JS, "KV_"+store.UsageBucket)
	var minuteBytes, hourBytes, nMin, nHour int
	for k, v := range bucketContents(t, st.Usage) {
		switch {
		case strings.HasPrefix(k, "m."):
			minuteBytes += len(k) + len(v)
			nMin++
		case strings.HasPrefix(k, "h."):
			hourBytes += len(k) + len(v)
			nHour++
		}
	}
	if nMin == 0 || nHour == 0 {
		t.Fatalf("%d minute and %d hour aggregates", nMin, nHour)
	}
	perM := func(b uint64) float64 { return float64(b) / float64(n) * 1e6 / (1 << 20) }
	t.Logf("%d records of one function at 4,000/s: raw JSON objects (before) %d B = %.0f B/record = %.1f MiB per million; "+
		"raw compact lines (now) %d B = %.0f B/record = %.1f MiB per million; "+
		"rollup bucket %d B: %d minute aggregates of %d B on average (key and value), %d hour aggregate(s) of %d B",
		n, rawBefore, float64(rawBefore)/float64(n), perM(rawBefore),
		rawNow, float64(rawNow)/float64(n), perM(rawNow),
		rollups, nMin, minuteBytes/nMin, nHour, hourBytes/nHour)
	if per := float64(rawNow) / float64(n); per > 130 {
		t.Errorf("%.0f bytes per raw record", per)
	}
	if rollups > rawNow/20 {
		t.Errorf("rollups take %d bytes for %d of raw records", rollups, rawNow)
	}
	checkReport(t, a, metering.Query{By: metering.ByFunction}, expectBy(recs, func(r *metering.Record) string { return r.Function }),
		expectBy(recs, func(*metering.Record) string { return "" })[""])
}

func randFor(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed+1)) }

func streamBytes(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(ctxT(t), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Bytes
}

// TestUsageBucketUpgrade opens a store whose usage bucket was made before
// rollups (no per-key TTLs) and whose stream kept raw records 90 days: the
// store takes the new limits and the Aggregator writes rollups there.
func TestUsageBucketUpgrade(t *testing.T) {
	dir := t.TempDir()
	ctx := ctxT(t)
	st, err := store.Open(ctx, store.Config{Dir: dir}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.JS.DeleteKeyValue(ctx, store.UsageBucket); err != nil {
		t.Fatal(err)
	}
	if _, err := st.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: store.UsageBucket, History: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.JS.UpdateStream(ctx, jetstream.StreamConfig{Name: store.UsageStream, Subjects: []string{store.UsageSubjectPrefix + ">"},
		MaxAge: 90 * 24 * time.Hour, Duplicates: 30 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st, err = store.Open(ctx, store.Config{Dir: dir}, testLogger(t))
	if err != nil {
		t.Fatalf("open a store of before rollups: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := st.JS.Stream(ctx, store.UsageStream)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.MaxAge != store.DefaultUsageRawMaxAge || c.MaxBytes != store.DefaultUsageRawMaxBytes || c.Discard != jetstream.DiscardOld {
		t.Fatalf("usage stream limits: %v, %d bytes, discard %v", c.MaxAge, c.MaxBytes, c.Discard)
	}
	recs := genRecords(randFor(5), 100, []string{"up"}, time.Now().Add(-3*time.Hour), 1)
	publish(t, st.JS, recs)
	clock := &fakeClock{t: time.Now()}
	a := startAgg(t, st.JS, st.Usage, clock)
	checkpoint(t, a)
	if n := len(storedAggs(t, st.Usage)); n == 0 {
		t.Fatal("no rollups written")
	}
}
