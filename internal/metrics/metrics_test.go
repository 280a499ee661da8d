package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ternhq/tern/internal/dispatch"
	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/metering"
)

// fakeSource answers with fixed values.
type fakeSource struct {
	mu    sync.Mutex
	stats []dispatch.Stats
	usage dispatch.Usage
	pools map[string]int

	published, lost, buffered uint64
	logDrops                  map[string]logs.Drops
	settleFailures            map[string]uint64
}

func (f *fakeSource) Stats() []dispatch.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]dispatch.Stats(nil), f.stats...)
}

func (f *fakeSource) Usage() dispatch.Usage { return f.usage }

func (f *fakeSource) PoolSizes() map[string]int { return f.pools }

func (f *fakeSource) UsageRecords() (published, lost, buffered uint64) {
	return f.published, f.lost, f.buffered
}

func (f *fakeSource) LogDrops() map[string]logs.Drops { return f.logDrops }

func (f *fakeSource) EventSettleFailures() map[string]uint64 { return f.settleFailures }

var _ Source = (*fakeSource)(nil)

// records are one invocation of each outcome of "hello". Durations,
// memory and CPU are chosen so every sum is exact in binary.
var records = []*metering.Record{
	{Function: "hello", Trigger: metering.TriggerHTTP, Outcome: metering.OutcomeSuccess,
		DurationUS: 250_000, BilledMS: 250, MemoryMB: 1024, CPUUS: 125_000, Cold: true, InitUS: 500_000},
	{Function: "hello", Trigger: metering.TriggerAPI, Outcome: metering.OutcomeError,
		DurationUS: 1_500_000, BilledMS: 1500, MemoryMB: 2048, CPUUS: 500_000},
	{Function: "hello", Trigger: metering.TriggerAsync, Outcome: metering.OutcomeTimeout,
		DurationUS: 3_000_000, BilledMS: 3000, MemoryMB: 512},
	{Function: "hello", Trigger: metering.TriggerQueue, Outcome: metering.OutcomeThrottled,
		DurationUS: 0, BilledMS: 0, MemoryMB: 512},
	{Function: "hello", Trigger: "", Outcome: metering.OutcomeCrash,
		DurationUS: 1_000_000, BilledMS: 1000, MemoryMB: 128, CPUUS: 250_000},
	{Function: "hello", Trigger: metering.TriggerSchedule, Outcome: metering.OutcomeCanceled,
		DurationUS: 500_000, BilledMS: 500, MemoryMB: 2048},
}

func TestRecordCounters(t *testing.T) {
	m := New(nil)
	for _, r := range records {
		m.Record(r)
	}
	m.Record(nil) // ignored

	const want = `
# HELP tern_invocations_total Invocations by function and outcome.
# TYPE tern_invocations_total counter
tern_invocations_total{function="hello",outcome="canceled"} 1
tern_invocations_total{function="hello",outcome="crash"} 1
tern_invocations_total{function="hello",outcome="error"} 1
tern_invocations_total{function="hello",outcome="success"} 1
tern_invocations_total{function="hello",outcome="throttled"} 1
tern_invocations_total{function="hello",outcome="timeout"} 1
# HELP tern_cold_starts_total Invocations that started a new instance.
# TYPE tern_cold_starts_total counter
tern_cold_starts_total{function="hello"} 1
# HELP tern_throttles_total Invocations refused for want of capacity (outcome throttled).
# TYPE tern_throttles_total counter
tern_throttles_total{function="hello"} 1
# HELP tern_errors_total Invocations that ended in an error, a timeout or a crash.
# TYPE tern_errors_total counter
tern_errors_total{function="hello"} 3
# HELP tern_billed_gb_seconds_total Billed memory-time: configured GB × billed seconds.
# TYPE tern_billed_gb_seconds_total counter
tern_billed_gb_seconds_total{function="hello"} 5.875
# HELP tern_cpu_seconds_total CPU time the function's instances used in invocations.
# TYPE tern_cpu_seconds_total counter
tern_cpu_seconds_total{function="hello"} 0.875
# HELP tern_invocations_by_trigger_total Invocations by trigger kind.
# TYPE tern_invocations_by_trigger_total counter
tern_invocations_by_trigger_total{trigger="api"} 1
tern_invocations_by_trigger_total{trigger="async"} 1
tern_invocations_by_trigger_total{trigger="cloudevent"} 0
tern_invocations_by_trigger_total{trigger="destination"} 0
tern_invocations_by_trigger_total{trigger="http"} 1
tern_invocations_by_trigger_total{trigger="queue"} 1
tern_invocations_by_trigger_total{trigger="schedule"} 1
tern_invocations_by_trigger_total{trigger="unknown"} 1
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want),
		"tern_invocations_total", "tern_cold_starts_total", "tern_throttles_total", "tern_errors_total",
		"tern_billed_gb_seconds_total", "tern_cpu_seconds_total", "tern_invocations_by_trigger_total",
	); err != nil {
		t.Fatal(err)
	}
}

func TestRecordHistograms(t *testing.T) {
	m := New(nil)
	for _, r := range records {
		m.Record(r)
	}

	// Five ran (the throttled one did not): 0.25 s, 1.5 s, 3 s, 1 s, 0.5 s.
	// One cold start with a 0.5 s init.
	const want = `
# HELP tern_invocation_duration_seconds Run time of invocations that ran (all but throttled).
# TYPE tern_invocation_duration_seconds histogram
tern_invocation_duration_seconds_bucket{function="hello",le="0.0005"} 0
tern_invocation_duration_seconds_bucket{function="hello",le="0.001"} 0
tern_invocation_duration_seconds_bucket{function="hello",le="0.002"} 0
tern_invocation_duration_seconds_bucket{function="hello",le="0.004"} 0
tern_invocation_duration_seconds_bucket{function="hello",le="0.008"} 0
tern_invocation_duration_seconds_bucket{function="hello",le="0.016"} 0
tern_invocation_duration_seconds_bucket{function="hello",le="0.032"} 0
tern_invocation_duration_seconds_bucket{function="hello",le="0.064"} 0
tern_invocation_duration_seconds_bucket{function="hello",le="0.128"} 0
tern_invocation_duration_seconds_bucket{function="hello",le="0.256"} 1
tern_invocation_duration_seconds_bucket{function="hello",le="0.512"} 2
tern_invocation_duration_seconds_bucket{function="hello",le="1.024"} 3
tern_invocation_duration_seconds_bucket{function="hello",le="2.048"} 4
tern_invocation_duration_seconds_bucket{function="hello",le="4.096"} 5
tern_invocation_duration_seconds_bucket{function="hello",le="8.192"} 5
tern_invocation_duration_seconds_bucket{function="hello",le="16.384"} 5
tern_invocation_duration_seconds_bucket{function="hello",le="32.768"} 5
tern_invocation_duration_seconds_bucket{function="hello",le="65.536"} 5
tern_invocation_duration_seconds_bucket{function="hello",le="131.072"} 5
tern_invocation_duration_seconds_bucket{function="hello",le="262.144"} 5
tern_invocation_duration_seconds_bucket{function="hello",le="524.288"} 5
tern_invocation_duration_seconds_bucket{function="hello",le="1048.576"} 5
tern_invocation_duration_seconds_bucket{function="hello",le="+Inf"} 5
tern_invocation_duration_seconds_sum{function="hello"} 6.25
tern_invocation_duration_seconds_count{function="hello"} 5
# HELP tern_init_duration_seconds Init time of the instance, on cold starts.
# TYPE tern_init_duration_seconds histogram
tern_init_duration_seconds_bucket{function="hello",le="0.0005"} 0
tern_init_duration_seconds_bucket{function="hello",le="0.001"} 0
tern_init_duration_seconds_bucket{function="hello",le="0.002"} 0
tern_init_duration_seconds_bucket{function="hello",le="0.004"} 0
tern_init_duration_seconds_bucket{function="hello",le="0.008"} 0
tern_init_duration_seconds_bucket{function="hello",le="0.016"} 0
tern_init_duration_seconds_bucket{function="hello",le="0.032"} 0
tern_init_duration_seconds_bucket{function="hello",le="0.064"} 0
tern_init_duration_seconds_bucket{function="hello",le="0.128"} 0
tern_init_duration_seconds_bucket{function="hello",le="0.256"} 0
tern_init_duration_seconds_bucket{function="hello",le="0.512"} 1
tern_init_duration_seconds_bucket{function="hello",le="1.024"} 1
tern_init_duration_seconds_bucket{function="hello",le="2.048"} 1
tern_init_duration_seconds_bucket{function="hello",le="4.096"} 1
tern_init_duration_seconds_bucket{function="hello",le="8.192"} 1
tern_init_duration_seconds_bucket{function="hello",le="16.384"} 1
tern_init_duration_seconds_bucket{function="hello",le="32.768"} 1
tern_init_duration_seconds_bucket{function="hello",le="65.536"} 1
tern_init_duration_seconds_bucket{function="hello",le="131.072"} 1
tern_init_duration_seconds_bucket{function="hello",le="262.144"} 1
tern_init_duration_seconds_bucket{function="hello",le="524.288"} 1
tern_init_duration_seconds_bucket{function="hello",le="1048.576"} 1
tern_init_duration_seconds_bucket{function="hello",le="+Inf"} 1
tern_init_duration_seconds_sum{function="hello"} 0.5
tern_init_duration_seconds_count{function="hello"} 1
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want),
		"tern_invocation_duration_seconds", "tern_init_duration_seconds",
	); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownOutcome(t *testing.T) {
	m := New(nil)
	m.Record(&metering.Record{Function: "hello", Trigger: "webhook", Outcome: "odd", DurationUS: 1000})
	if got := testutil.ToFloat64(m.invocations.WithLabelValues("hello", "odd")); got != 1 {
		t.Errorf("invocations{outcome=odd} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.byTrigger.WithLabelValues("webhook")); got != 1 {
		t.Errorf("by trigger{webhook} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.errors.WithLabelValues("hello")); got != 0 {
		t.Errorf("errors = %v, want 0", got)
	}
}

func testSource() *fakeSource {
	return &fakeSource{
		stats: []dispatch.Stats{
			{Function: "hello", Version: 1, Instances: 5, Idle: 2, Starting: 1, Queued: 3, Desired: 4},
			{Function: "hello", Version: 2, Instances: 1, Idle: 0, Starting: 1, Queued: 0, Desired: 1},
			// A snapshot racing a start: busy would be negative.
			{Function: "other", Version: 1, Instances: 1, Idle: 1, Starting: 1, Queued: 0, Desired: 1},
		},
		usage:     dispatch.Usage{Instances: 7, MaxInstances: 100, MemoryMB: 896, MaxMemoryMB: 4096, Blocked: 1},
		pools:     map[string]int{"nodejs": 2, "python": 0},
		published: 40, lost: 2, buffered: 3,
	}
}

func TestSourceGauges(t *testing.T) {
	m := New(testSource())
	const want = `
# HELP tern_instances Function instances by state (warm: idle; busy; starting), over all versions.
# TYPE tern_instances gauge
tern_instances{function="hello",state="busy"} 2
tern_instances{function="hello",state="starting"} 2
tern_instances{function="hello",state="warm"} 2
tern_instances{function="other",state="busy"} 0
tern_instances{function="other",state="starting"} 1
tern_instances{function="other",state="warm"} 1
# HELP tern_queue_depth Invocations waiting for an instance, over all versions.
# TYPE tern_queue_depth gauge
tern_queue_depth{function="hello"} 3
tern_queue_depth{function="other"} 0
# HELP tern_desired_instances Instances the autoscaler wants, over all versions.
# TYPE tern_desired_instances gauge
tern_desired_instances{function="hello"} 5
tern_desired_instances{function="other"} 1
# HELP tern_node_instances Function instances started or starting on this node.
# TYPE tern_node_instances gauge
tern_node_instances 7
# HELP tern_node_max_instances The node's cap on instances (0: none).
# TYPE tern_node_max_instances gauge
tern_node_max_instances 100
# HELP tern_node_memory_mb Configured memory of the node's instances, in MB.
# TYPE tern_node_memory_mb gauge
tern_node_memory_mb 896
# HELP tern_node_max_memory_mb The node's cap on instance memory, in MB (0: none).
# TYPE tern_node_max_memory_mb gauge
tern_node_max_memory_mb 4096
# HELP tern_node_blocked_pools Function pools waiting for room under the node's caps.
# TYPE tern_node_blocked_pools gauge
tern_node_blocked_pools 1
# HELP tern_pool_instances Generic instances waiting in the pre-started pool.
# TYPE tern_pool_instances gauge
tern_pool_instances{runtime="nodejs"} 2
tern_pool_instances{runtime="python"} 0
# HELP tern_usage_records_published_total Usage records published to the usage stream.
# TYPE tern_usage_records_published_total counter
tern_usage_records_published_total 40
# HELP tern_usage_records_lost_total Usage records lost before they were published.
# TYPE tern_usage_records_lost_total counter
tern_usage_records_lost_total 2
# HELP tern_usage_records_buffered Usage records waiting to be published.
# TYPE tern_usage_records_buffered gauge
tern_usage_records_buffered 3
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want),
		"tern_instances", "tern_queue_depth", "tern_desired_instances",
		"tern_node_instances", "tern_node_max_instances", "tern_node_memory_mb", "tern_node_max_memory_mb",
		"tern_node_blocked_pools", "tern_pool_instances",
		"tern_usage_records_published_total", "tern_usage_records_lost_total", "tern_usage_records_buffered",
	); err != nil {
		t.Fatal(err)
	}
}

// scrape fetches the handler's text exposition.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s: %s", resp.Status, body)
	}
	return string(body)
}

func TestHandler(t *testing.T) {
	m := New(testSource())
	for _, r := range records {
		m.Record(r)
	}
	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	// These keep the units Tern bills and caps in (MB, GB-seconds), by
	// choice, though the linter wants bytes and seconds.
	keep := map[string]bool{
		"tern_node_memory_mb": true, "tern_node_max_memory_mb": true, "tern_billed_gb_seconds_total": true,
	}
	for _, p := range problems {
		if !keep[p.Metric] {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}

	out := scrape(t, m.Handler())
	for _, line := range []string{
		`tern_invocations_total{function="hello",outcome="success"} 1`,
		`tern_errors_total{function="hello"} 3`,
		`tern_billed_gb_seconds_total{function="hello"} 5.875`,
		`tern_invocation_duration_seconds_bucket{function="hello",le="1.024"} 3`,
		`tern_invocation_duration_seconds_sum{function="hello"} 6.25`,
		`tern_init_duration_seconds_count{function="hello"} 1`,
		`tern_instances{function="hello",state="busy"} 2`,
		`tern_pool_instances{runtime="nodejs"} 2`,
		`tern_usage_records_lost_total 2`,
		`go_goroutines `,
		`process_cpu_seconds_total `,
	} {
		if !containsLine(out, line) {
			t.Errorf("scrape has no line %q", line)
		}
	}
}

// containsLine reports whether a line of out starts with prefix.
func containsLine(out, prefix string) bool {
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, prefix) {
			return true
		}
	}
	return false
}

func TestForget(t *testing.T) {
	m := New(nil)
	for _, r := range records {
		m.Record(r)
	}
	m.Record(&metering.Record{Function: "hello", Outcome: "odd"}) // not cached
	m.Record(&metering.Record{Function: "other", Trigger: metering.TriggerHTTP, Outcome: metering.OutcomeSuccess,
		DurationUS: 2000, BilledMS: 2, MemoryMB: 512, Cold: true, InitUS: 1000})

	m.Forget("hello")

	out := scrape(t, m.Handler())
	if strings.Contains(out, `function="hello"`) {
		t.Errorf("forgotten function still exported:\n%s", grep(out, `function="hello"`))
	}
	if !containsLine(out, `tern_invocations_total{function="other",outcome="success"} 1`) {
		t.Errorf("other function's series gone:\n%s", grep(out, `function="other"`))
	}
	if _, ok := m.fns.Load("hello"); ok {
		t.Error("forgotten function still cached")
	}

	// A function of the same name made again starts from zero.
	m.Record(&metering.Record{Function: "hello", Trigger: metering.TriggerHTTP, Outcome: metering.OutcomeSuccess, DurationUS: 1000})
	if got := testutil.ToFloat64(m.invocations.WithLabelValues("hello", metering.OutcomeSuccess)); got != 1 {
		t.Errorf("invocations after Forget = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(m.duration, "tern_invocation_duration_seconds"); got != 2 {
		t.Errorf("duration histograms = %d, want 2 (hello, other)", got)
	}
}

func grep(out, s string) string {
	var b strings.Builder
	for line := range strings.Lines(out) {
		if strings.Contains(line, s) {
			b.WriteString(line)
		}
	}
	return b.String()
}

// TestConcurrent records, forgets and scrapes at once, for the race
// detector.
func TestConcurrent(t *testing.T) {
	src := testSource()
	m := New(src)
	h := m.Handler()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 500 {
				r := *records[(i+j)%len(records)]
				if j%2 == 0 {
					r.Function = "other"
				}
				m.Record(&r)
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			m.Forget("hello")
		}
	})
	wg.Go(func() {
		for range 5 {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			if rec.Code != http.StatusOK {
				t.Errorf("scrape: %d", rec.Code)
			}
		}
	})
	wg.Wait()

	// "other" was never forgotten: 4 goroutines × 250 records.
	var total float64
	for _, o := range outcomes {
		total += testutil.ToFloat64(m.invocations.WithLabelValues("other", o))
	}
	if total != 1000 {
		t.Errorf("other's invocations = %v, want 1000", total)
	}
}

func BenchmarkRecord(b *testing.B) {
	m := New(testSource())
	r := records[0] // success, cold: every metric but throttles and errors
	m.Record(r)
	b.ReportAllocs()
	for b.Loop() {
		m.Record(r)
	}
}

func BenchmarkRecordParallel(b *testing.B) {
	m := New(testSource())
	fns := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for _, fn := range fns {
		m.Record(&metering.Record{Function: fn})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := *records[1] // error, warm
		i := 0
		for pb.Next() {
			r.Function = fns[i%len(fns)]
			i++
			m.Record(&r)
		}
	})
}

func TestLogDropCounters(t *testing.T) {
	src := testSource()
	src.logDrops = map[string]logs.Drops{logs.DropLimit: {Lines: 14758, Bytes: 2951600}, logs.DropStore: {}}
	m := New(src)
	const want = `
# HELP tern_log_bytes_dropped_total Bytes of the function log lines dropped, by reason.
# TYPE tern_log_bytes_dropped_total counter
tern_log_bytes_dropped_total{reason="limit"} 2.9516e+06
tern_log_bytes_dropped_total{reason="store"} 0
# HELP tern_log_lines_dropped_total Function log lines dropped, by reason (limit, stopped, overflow, store).
# TYPE tern_log_lines_dropped_total counter
tern_log_lines_dropped_total{reason="limit"} 14758
tern_log_lines_dropped_total{reason="store"} 0
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "tern_log_lines_dropped_total", "tern_log_bytes_dropped_total"); err != nil {
		t.Error(err)
	}
}

func TestEventSettleFailures(t *testing.T) {
	src := testSource()
	src.settleFailures = map[string]uint64{"ack": 2, "nak": 0, "in_progress": 5}
	m := New(src)
	const want = `
# HELP tern_event_settle_failures_total Acks (after their retries), naks and progress signals of event messages that JetStream did not take, by action (ack, nak, in_progress).
# TYPE tern_event_settle_failures_total counter
tern_event_settle_failures_total{action="ack"} 2
tern_event_settle_failures_total{action="in_progress"} 5
tern_event_settle_failures_total{action="nak"} 0
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "tern_event_settle_failures_total"); err != nil {
		t.Error(err)
	}
}
