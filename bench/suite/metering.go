package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ternhq/tern/bench/internal/benchkit"
	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/metering"
)

// The metering phase: what metering costs on the warm path. A default
// tern serve (metering on: a usage record per invocation, published in
// batches to JetStream, and Prometheus counters) next to one started with
// --metering=false, the same hello function on each, the same closed-loop
// load against both in alternation.

const mtFunction = "hello"

// mtLevels are the phase's concurrency levels, whatever -c says.
var mtLevels = []int{1, 16}

// The metrics read from the metering-on server at the end.
const (
	metricPublished   = "tern_usage_records_published_total"
	metricLost        = "tern_usage_records_lost_total"
	metricBuffered    = "tern_usage_records_buffered"
	metricInvocations = "tern_invocations_total"
)

// mtServer is one of the phase's two tern serves.
type mtServer struct {
	name string // its directory under the run's temp dir
	on   bool   // metering on (the default)
	args []string
	t    *benchkit.Tern
	acct mtAccount
}

func (s *mtServer) label() string {
	if s.on {
		return "metering on"
	}
	return "metering off"
}

// mtAccount is what one server was sent and what it counted.
type mtAccount struct {
	sent     int // requests the bench sent: the first call and every load request, warm-ups included
	sentBad  int // of those, the ones not answered 200 hello
	stats    *stats
	statsErr string

	usage    *metering.Report // GET /v1/usage?since=1h&function=hello
	usageErr string

	metrics    map[string]float64 // the metrics above; invocations summed over outcomes
	metricsErr string
}

// mtRun is one measured load run.
type mtRun struct {
	c, round int
	on       bool
	r        *benchkit.LoadResult
}

// meteringResult is phase 7.
type meteringResult struct {
	rounds  int
	runs    []*mtRun // in the order they ran
	on, off *mtServer
}

// meteringPhase starts the two servers, deploys the hello function on each
// and calls it once, then at each level of mtLevels runs cfg.mtRounds
// rounds of the warm phase's closed-loop load against each server: on
// first in odd rounds, off first in even ones (on, off, off, on, ...), so
// that a linear drift of the machine weighs on both alike. At the end it
// reads, from each, tern's count of invocations, its usage report and its
// metrics. It stops both servers before returning.
func (e *env) meteringPhase(ctx context.Context) (*meteringResult, error) {
	res := &meteringResult{
		rounds: e.cfg.mtRounds,
		on:     &mtServer{name: "tern-metering-on", on: true},
		off:    &mtServer{name: "tern-metering-off", args: []string{"--metering=false"}},
	}
	servers := []*mtServer{res.on, res.off}
	for _, s := range servers {
		t, err := benchkit.StartTern(ctx, e.cs, benchkit.TernOptions{
			Bin: e.ternBin, Node: e.nodeBin, Dir: filepath.Join(e.tmp, s.name),
			Args: append(append([]string{"--pool-size", strconv.Itoa(e.cfg.poolSize)}, s.args...), e.cfg.serveArgs...),
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.label(), err)
		}
		e.terns = append(e.terns, t)
		defer e.stopTern(t)
		s.t = t
	}
	for _, s := range servers {
		if err := e.deployNamed(ctx, s.t, mtFunction); err != nil {
			return nil, fmt.Errorf("%s: deploy %s: %w", s.label(), mtFunction, err)
		}
		s.acct.sent++
		if _, err := benchkit.FirstRequest(ctx, s.t.URL+"/fn/"+mtFunction, helloBody); err != nil {
			return nil, fmt.Errorf("%s: %w", s.label(), err)
		}
	}

	for _, c := range mtLevels {
		for r := 1; r <= res.rounds; r++ {
			order := servers
			if r%2 == 0 {
				order = []*mtServer{res.off, res.on}
			}
			for _, s := range order {
				if ctx.Err() != nil {
					return nil, context.Cause(ctx)
				}
				benchkit.Logf("metering: %s, c=%d, round %d: %s warm-up + %s measured", s.label(), c, r, e.cfg.warmup, e.cfg.duration)
				lr := benchkit.MeasureLoad(ctx, s.t.URL+"/fn/"+mtFunction, helloBody, c, e.cfg.warmup, e.cfg.duration, s.t.PID(), true)
				if ctx.Err() != nil {
					return nil, context.Cause(ctx)
				}
				lr.Target = s.label()
				s.acct.sent += lr.Sent
				s.acct.sentBad += lr.Failed() + lr.WarmBad
				res.runs = append(res.runs, &mtRun{c: c, round: r, on: s.on, r: lr})
				benchkit.Logf("metering: %s, c=%d, round %d: %d ok (%.0f req/s), p50 %s, p99 %s, tern %s/req, %d failed in window, %d during warm-up",
					s.label(), c, r, lr.OK, lr.RPS(), benchkit.Us(benchkit.Percentile(lr.Lat, 50)), benchkit.Us(benchkit.Percentile(lr.Lat, 99)),
					us1(lr.PerReq(lr.ServerCPU)), lr.Failed(), lr.WarmBad)
				if lr.FirstBad != "" {
					benchkit.Logf("metering: %s, c=%d, round %d: first failure: %s", s.label(), c, r, lr.FirstBad)
				}
				if s.t.Exited() {
					return nil, fmt.Errorf("%s: tern serve exited:\n%s", s.label(), benchkit.Tail(s.t.LogPath, 20))
				}
			}
		}
	}

	for _, s := range servers {
		e.account(ctx, s)
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
	}
	a := res.on.acct
	benchkit.Logf("metering: on: %d requests sent; usage requests %s; published %s, lost %s, buffered %s",
		a.sent, usageRequests(&a), a.metric(metricPublished), a.metric(metricLost), a.metric(metricBuffered))
	return res, nil
}

// account reads what s counted: tern's stats of the function, its usage
// report (which first flushes the server's buffered records), then its
// metrics, polled for up to 5 s until no record waits and every request
// sent has been published or lost.
func (e *env) account(ctx context.Context, s *mtServer) {
	a := &s.acct
	st, err := e.stats(ctx, s.t, mtFunction)
	if err != nil {
		a.statsErr = err.Error()
	}
	a.stats = st

	c := client.New(s.t.URL, s.t.Token)
	c.HTTP = e.api
	if a.usage, err = c.Usage(ctx, client.UsageQuery{Since: "1h", Function: mtFunction}); err != nil {
		a.usage, a.usageErr = nil, err.Error()
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body, err := s.t.API(ctx, e.api, http.MethodGet, "/metrics", nil)
		if err != nil {
			a.metrics, a.metricsErr = nil, err.Error()
		} else {
			a.metrics, a.metricsErr = parseMetrics(body), ""
		}
		m := a.metrics
		settled := m != nil && m[metricBuffered] == 0 && int(m[metricPublished]+m[metricLost]) >= a.sent
		if !s.on || settled || time.Now().After(deadline) || benchkit.Sleep(ctx, 100*time.Millisecond) != nil {
			return
		}
	}
}

// parseMetrics reads the metering metrics from Prometheus' text format:
// the unlabelled ones as they are, tern_invocations_total summed over the
// outcomes of mtFunction.
func parseMetrics(body []byte) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name, labels, _ := strings.Cut(line[:i], "{")
		switch {
		case name == metricPublished || name == metricLost || name == metricBuffered:
			out[name] = v
		case name == metricInvocations && strings.Contains(labels, `function="`+mtFunction+`"`):
			out[name] += v
		}
	}
	return out
}

// metric is one metric as the report shows it.
func (a *mtAccount) metric(name string) string {
	if a.metrics == nil {
		return "unknown (" + a.metricsErr + ")"
	}
	v, ok := a.metrics[name]
	if !ok {
		return "absent"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func usageRequests(a *mtAccount) string {
	if a.usage == nil {
		return "unknown (" + a.usageErr + ")"
	}
	return strconv.FormatInt(a.usage.Totals.Requests, 10)
}

// us1 is d in µs with one decimal.
func us1(d time.Duration) string {
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}

// midMedian is the median of xs: the mean of the two middle values when
// their count is even.
func midMedian(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// mtSummary is one server's medians over the rounds at one level.
type mtSummary struct {
	rps, p50, p99, ternCPU, nodeCPU float64 // req/s; µs
	lo, hi                          float64 // lowest and highest req/s of a round
}

func (res *meteringResult) summary(c int, on bool) mtSummary {
	var rps, p50, p99, tc, nc []float64
	for _, x := range res.runs {
		if x.c != c || x.on != on {
			continue
		}
		r := x.r
		rps = append(rps, r.RPS())
		p50 = append(p50, inUs(benchkit.Percentile(r.Lat, 50)))
		p99 = append(p99, inUs(benchkit.Percentile(r.Lat, 99)))
		tc = append(tc, inUs(r.PerReq(r.ServerCPU)))
		nc = append(nc, inUs(r.PerReq(r.FuncCPU)))
	}
	if len(rps) == 0 {
		return mtSummary{}
	}
	return mtSummary{rps: midMedian(rps), p50: midMedian(p50), p99: midMedian(p99), ternCPU: midMedian(tc), nodeCPU: midMedian(nc),
		lo: slices.Min(rps), hi: slices.Max(rps)}
}

// inUs is d in µs.
func inUs(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// reportMetering writes section 7 and returns busy with its rows added.
func (e *env) reportMetering(b *strings.Builder, res *meteringResult, busy []busyRow) []busyRow {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("\n### 7. Metering overhead\n\n")
	p("Command: `go run ./bench/suite -phases metering -out FILE` (with -duration, -warmup, -pool-size and -metering-rounds as for this run). "+
		"Two fresh `tern serve --pool-size %d`, each with a data dir of its own, both running throughout: one with the defaults, **metering on** "+
		"(a usage record per invocation, published in batches to JetStream off the invocation path, plus Prometheus counters), one with "+
		"**`--metering=false`**. On each, the hello function (bench/hello, the defaults as `/fn/hello` in phase 2: `scale.max` 10, one "+
		"invocation per instance) deployed and called once. Then the closed-loop load of phase 2 against `/fn/%s` at c=%s: %s warm-up "+
		"(unmeasured) and %s measured per run, %d round(s) per level, on then off in odd rounds and off then on in even ones "+
		"(on, off, off, on, …), so that a drift of this shared machine weighs on both alike. Figures are medians over the rounds "+
		"(the mean of the two middle ones for an even count).\n\n",
		e.cfg.poolSize, mtFunction, joinInts(mtLevels, " and "), e.cfg.warmup, e.cfg.duration, res.rounds)

	p("| c | req/s on | req/s off | **on ÷ off** | p50 on | p50 off | **Δ p50** | p99 on | p99 off | Δ p99 | tern CPU/req on | tern CPU/req off | **Δ tern CPU/req** | node CPU/req on / off |\n")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range mtLevels {
		on, off := res.summary(c, true), res.summary(c, false)
		p("| %d | %.0f (%.0f–%.0f) | %.0f (%.0f–%.0f) | **%s** | %.0f µs | %.0f µs | **%+.0f µs** | %.0f µs | %.0f µs | %+.0f µs | %.1f µs | %.1f µs | **%+.1f µs** | %.1f / %.1f µs |\n",
			c, on.rps, on.lo, on.hi, off.rps, off.lo, off.hi, ratio(on.rps, off.rps),
			on.p50, off.p50, on.p50-off.p50, on.p99, off.p99, on.p99-off.p99,
			on.ternCPU, off.ternCPU, on.ternCPU-off.ternCPU, on.nodeCPU, off.nodeCPU)
	}

	p("\n| c | round | server | requests | req/s | p50 | p99 | errors (window; warm-up) | tern CPU/req | node CPU/req (instances) | load-gen CPU/req | machine busy (others) |\n")
	p("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, x := range res.runs {
		r := x.r
		name := "on"
		if !x.on {
			name = "off"
		}
		share := busyShare(r.Busy, r.Window)
		others := busyShare(r.Busy-r.ServerCPU-r.FuncCPU-r.LoadgenCPU, r.Window)
		p("| %d | %d | %s | %d | %.0f | %s | %s | %d; %d | %s | %s (%d) | %s | %.0f%% (%.0f%%) |\n", x.c, x.round, name, r.OK, r.RPS(),
			benchkit.Us(benchkit.Percentile(r.Lat, 50)), benchkit.Us(benchkit.Percentile(r.Lat, 99)), r.Failed(), r.WarmBad,
			us1(r.PerReq(r.ServerCPU)), us1(r.PerReq(r.FuncCPU)), r.Instances, us1(r.PerReq(r.LoadgenCPU)), 100*share, max(0, 100*others))
		busy = append(busy, busyRow{fmt.Sprintf("7. metering c=%d round %d %s", x.c, x.round, name), share, r.Window})
	}

	p("\n- latency is client side (request sent → body read), percentiles nearest-rank over the run's window; Δ = on − off; "+
		"CPU per request = user+system time from /proc/<pid>/stat (%s ticks) over the window ÷ requests answered in it: tern = the `tern serve` "+
		"process (gateway, dispatcher, the embedded NATS server and, when on, the metering sink), node = its child processes (the function's "+
		"instances and the idle pool), load-gen = this benchmark; machine busy = all CPUs' busy time from /proc/stat as a share of %d CPUs × window, "+
		"in parentheses the part not attributed to those processes (the kernel's loopback networking and softirqs, the idle server, anything else on the machine)\n",
		benchkit.ClockTick, runtime.NumCPU())
	p("- the other server idles during each run (its instances stay warm, no requests reach it)\n")

	on, off := &res.on.acct, &res.off.acct
	p("\nAccounting at the end (after the last run; `GET /v1/usage` first flushes the server's buffered records):\n\n")
	p("| | metering on | metering off |\n|---|---:|---:|\n")
	p("| requests the bench sent to `/fn/%s` (1 first call + every load request, warm-ups included) | **%d** | %d |\n", mtFunction, on.sent, off.sent)
	p("| of which not answered 200 `hello` | %d | %d |\n", on.sentBad, off.sentBad)
	p("| tern's own count (`GET /v1/functions/%s/stats`: invocations) | %s | %s |\n", mtFunction, statsInvocations(on), statsInvocations(off))
	p("| `GET /v1/usage?since=1h&function=%s`: totals.requests | **%s** | %s |\n", mtFunction, usageRequests(on), usageCell(off))
	if u := on.usage; u != nil {
		t := u.Totals
		p("| … errors, throttles, cold starts; duration p50 / p99 | %d, %d, %d; %.2f / %.2f ms | |\n", t.Errors, t.Throttles, t.ColdStarts,
			t.DurationMS.P50, t.DurationMS.P99)
	}
	for _, name := range []string{metricPublished, metricLost, metricBuffered} {
		p("| `%s` | **%s** | %s |\n", name, on.metric(name), off.metric(name))
	}
	p("| `%s{function=\"%s\"}`, all outcomes | %s | %s |\n", metricInvocations, mtFunction, on.metric(metricInvocations), off.metric(metricInvocations))
	p("\n")
	for _, line := range res.verdict() {
		p("- %s\n", line)
	}
	return busy
}

// verdict says whether the metering-on server metered every request the
// bench sent and lost none, and whether the other one metered nothing.
func (res *meteringResult) verdict() []string {
	on, off := &res.on.acct, &res.off.acct
	var out []string
	sent := float64(on.sent)
	ok := on.usage != nil && on.metrics != nil && on.sentBad == 0
	if ok {
		m := on.metrics
		ok = float64(on.usage.Totals.Requests) == sent && m[metricPublished] == sent && m[metricLost] == 0 && m[metricBuffered] == 0
	}
	if ok {
		out = append(out, fmt.Sprintf("**every one of the %d requests sent to the metering-on server was metered** (usage requests = records published = requests sent) "+
			"**and none was lost**", on.sent))
	} else {
		out = append(out, fmt.Sprintf("**metering-on server: the counts disagree**: %d requests sent (%d not answered 200 hello), usage requests %s, "+
			"records published %s, lost %s, still buffered %s", on.sent, on.sentBad, usageRequests(on), on.metric(metricPublished),
			on.metric(metricLost), on.metric(metricBuffered)))
	}
	if on.stats != nil && on.stats.Counts.Invocations != int64(on.sent) {
		out = append(out, fmt.Sprintf("metering-on server: tern's stats count %d invocations, the bench sent %d", on.stats.Counts.Invocations, on.sent))
	}
	if off.stats != nil && off.stats.Counts.Invocations != int64(off.sent) {
		out = append(out, fmt.Sprintf("metering-off server: tern's stats count %d invocations, the bench sent %d", off.stats.Counts.Invocations, off.sent))
	}
	if off.usage != nil {
		out = append(out, fmt.Sprintf("**the `--metering=false` server answered `GET /v1/usage`** (%d requests): metering was not off", off.usage.Totals.Requests))
	} else {
		out = append(out, "the `--metering=false` server answered `GET /v1/usage` with an error, as it should: "+off.usageErr)
	}
	if off.metrics != nil && off.metrics[metricPublished] != 0 {
		out = append(out, fmt.Sprintf("**the `--metering=false` server published %s usage records**", off.metric(metricPublished)))
	}
	for _, s := range []*mtServer{res.on, res.off} {
		if s.acct.statsErr != "" {
			out = append(out, fmt.Sprintf("%s: stats: %s", s.label(), s.acct.statsErr))
		}
	}
	return out
}

func statsInvocations(a *mtAccount) string {
	if a.stats == nil {
		return "unknown (" + a.statsErr + ")"
	}
	return strconv.FormatInt(a.stats.Counts.Invocations, 10)
}

// usageCell is the metering-off server's usage answer: an error, as it
// should be.
func usageCell(a *mtAccount) string {
	if a.usage != nil {
		return strconv.FormatInt(a.usage.Totals.Requests, 10)
	}
	msg := a.usageErr
	if len(msg) > 80 {
		msg = msg[:80] + "…"
	}
	return "error: " + strings.ReplaceAll(msg, "|", "\\|")
}

func joinInts(xs []int, sep string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, sep)
}
