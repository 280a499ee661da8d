package main

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"time"

	"github.com/ternhq/tern/bench/internal/benchkit"
)

// cpuBound is the machine busy share from which a phase counts as
// CPU-bound.
const cpuBound = 0.9

func pct(ds []time.Duration, p float64) time.Duration {
	return benchkit.Percentile(benchkit.Sorted(ds), p)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// busyRow is one line of the report's CPU table.
type busyRow struct {
	phase string
	share float64
	wall  time.Duration
}

func (e *env) report(res *results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	ncpu := runtime.NumCPU()
	var busy []busyRow

	p("## Results\n\n")
	p("- date: %s\n", e.startTime.UTC().Format("2006-01-02 15:04 MST"))
	p("- machine: nproc %s, %s, %s, %d MiB RAM\n", benchkit.Nproc(), benchkit.CPUModel(), benchkit.Kernel(), benchkit.MemMiB())
	p("- node %s, %s, tern %s\n", e.nodeVer, runtime.Version(), benchkit.GitRev(e.root))
	p("- command: `%s`\n", benchkit.CommandLine("./bench/suite"))
	p("- load average (1/5/15 min) at start: %s, at end: %s; the run took %s\n", e.loadStart, benchkit.LoadAvg(), time.Since(e.startTime).Round(time.Second))
	var run []string
	for _, ph := range []string{phaseCold, phaseWarm, phaseBurst, phaseRuntimes, phaseEvents, phaseMetering, phaseMemory} {
		if e.cfg.phases[ph] {
			run = append(run, ph)
		}
	}
	p("- phases run: %s\n", strings.Join(run, ", "))
	p("- phases 1–3 and 5 (runtimes): one `tern serve --pool-size %d`; phase 4: a fresh `tern serve --pool-size 0`; phase 6 (events): a fresh `tern serve --pool-size %d`; "+
		"phase 7 (metering): two fresh ones with that pool size, metering on and off; each with a new data dir, on 127.0.0.1; the load generator, tern, its instances and the baselines all share this machine's %d CPUs\n", e.cfg.poolSize, e.cfg.poolSize, ncpu)
	p("- handler everywhere: bench/hello (`200`, body `hello`); the node baseline is bench/baseline/server.js (same handler module), " +
		"the Go baseline bench/goecho (net/http, writes `hello`); both baselines run with the environment tern gives its instances\n")

	if c := res.cold; c != nil {
		p("\n### 1. Cold start\n\n")
		p("%d fresh functions, each deployed through the API (`POST /v1/functions`, the hello handler under its own name, zipped in memory beforehand), "+
			"then called once on a new connection. The next deploy is sent after the previous first call was answered and a gap of **%s** "+
			"(so the pool of pre-started generic node instances can refill in the background); the functions are deleted at the end of the series. "+
			"Before the series the pool was %s (%d generic node processes). "+
			"One unmeasured warm-up run comes first for each series. The node series run after the Tern series, not interleaved.\n\n",
			e.cfg.coldN, e.cfg.gap, poolState(e.cfg.poolSize, c.poolReady), c.poolBefore)
		p("| measurement | n | p50 | p95 | p99 | max |\n|---|---:|---:|---:|---:|---:|\n")
		row := func(name string, ds []time.Duration) {
			if len(ds) == 0 {
				p("| %s | 0 | – | – | – | – |\n", name)
				return
			}
			s := benchkit.Sorted(ds)
			p("| %s | %d | %s | %s | %s | %s |\n", name, len(s), benchkit.Ms(benchkit.Percentile(s, 50)),
				benchkit.Ms(benchkit.Percentile(s, 95)), benchkit.Ms(benchkit.Percentile(s, 99)), benchkit.Ms(s[len(s)-1]))
		}
		row("**Tern: first call after deploy**", c.first)
		row("Tern: instance init (REPORT Init Duration)", c.init)
		row("Tern: deploy (`POST /v1/functions`)", c.deploy)
		row(fmt.Sprintf("Tern: previous first call answered → next deploy sent (gap %s)", e.cfg.gap), c.between)
		row("baseline: `node -e 0` (spawn → exit)", c.nodeE0)
		row("**baseline: node `server.js` spawn → first 200**", c.nodeServer)
		tf, ns, ne := pct(c.first, 50), pct(c.nodeServer, 50), pct(c.nodeE0, 50)
		p("\n- Tern first call p50 ÷ node server spawn→first 200 p50: **%s** (%s vs %s); ÷ `node -e 0` p50: %s (%s)\n",
			ratio(float64(tf), float64(ns)), benchkit.Ms(tf), benchkit.Ms(ns), ratio(float64(tf), float64(ne)), benchkit.Ms(ne))
		if len(c.init) > 0 && ne > 0 {
			slow := 0
			for _, d := range c.init {
				if d >= ne/2 {
					slow++
				}
			}
			p("- %d of %d first calls had an Init Duration of at least half of `node -e 0`'s p50, i.e. started a node process instead of specialising a pooled one\n", slow, len(c.init))
		}
		if c.noInit > 0 {
			p("- %d runs had no Init Duration in their logs\n", c.noInit)
		}
		p("- percentiles are nearest-rank: with %d values p95 is the %s and p99 the %s sorted value\n",
			e.cfg.coldN, ordinal(rank(e.cfg.coldN, 95)), ordinal(rank(e.cfg.coldN, 99)))
		p("- machine busy: %.0f%% of %d CPUs during the Tern series (%s, gaps included), %.0f%% during the node series (%s)\n",
			100*c.ternBusy, ncpu, c.ternWall.Round(time.Millisecond), 100*c.nodeBusy, c.nodeWall.Round(time.Millisecond))
		busy = append(busy, busyRow{"1. cold: Tern series (with gaps)", c.ternBusy, c.ternWall}, busyRow{"1. cold: node series", c.nodeBusy, c.nodeWall})
	}

	if len(res.warm) > 0 {
		p("\n### 2. Warm latency and throughput\n\n")
		p("Closed loop: c goroutines, each sending its next GET as soon as the previous one is answered, over keep-alive connections; "+
			"%s warm-up (unmeasured; Tern starts instances then) and %s measured per row; every request that starts and ends in the window counts. "+
			"Tern runs the function as deployed: `/fn/hello` with the defaults (`scale.max` 10, one invocation per instance, the rest wait in its queue), "+
			"`/fn/helloc` the same handler with `concurrency: 16` (one instance takes 16 invocations at once).\n\n", e.cfg.warmup, e.cfg.duration)
		p("| c | target | requests | req/s | p50 | p99 | errors | server-side CPU/req | load-gen CPU/req | machine busy (others) |\n")
		p("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range res.warm {
			target := map[string]string{targetTern: "Tern `/fn/hello`", targetTernC: "Tern `/fn/helloc` (concurrency 16)", targetNode: "node `server.js`", targetGo: "Go net/http"}[r.Target]
			srv, lg, bz := "–", "–", "–"
			if r.HaveCPU {
				srv = benchkit.Us(r.PerReq(r.ServerCPU + r.FuncCPU))
				if r.Target == targetTern || r.Target == targetTernC {
					srv = fmt.Sprintf("%s (tern %s + %d node %s)", srv, benchkit.Us(r.PerReq(r.ServerCPU)), r.Instances, benchkit.Us(r.PerReq(r.FuncCPU)))
				}
				lg = benchkit.Us(r.PerReq(r.LoadgenCPU))
				share := busyShare(r.Busy, r.Window)
				others := busyShare(r.Busy-r.ServerCPU-r.FuncCPU-r.LoadgenCPU, r.Window)
				bz = fmt.Sprintf("%.0f%% (%.0f%%)", 100*share, max(0, 100*others))
				busy = append(busy, busyRow{fmt.Sprintf("2. warm c=%d %s", r.C, target), share, r.Window})
			}
			p("| %d | %s | %d | %.0f | %s | %s | %d | %s | %s | %s |\n", r.C, target, r.OK, r.RPS(),
				benchkit.Us(benchkit.Percentile(r.Lat, 50)), benchkit.Us(benchkit.Percentile(r.Lat, 99)), r.Failed(), srv, lg, bz)
		}
		p("\n| c | req/s Tern ÷ node | p50 Tern ÷ node | p99 Tern ÷ node | req/s Tern (concurrency 16) ÷ node | p50 Tern (concurrency 16) ÷ node | req/s Tern ÷ Go | req/s node ÷ Go |\n")
		p("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for i := 0; i+3 < len(res.warm); i += 4 {
			t, tc, n, g := res.warm[i], res.warm[i+1], res.warm[i+2], res.warm[i+3]
			lat := func(r *benchkit.LoadResult, q float64) float64 { return float64(benchkit.Percentile(r.Lat, q)) }
			p("| %d | **%s** | %s | %s | **%s** | %s | %s | %s |\n", t.C, ratio(t.RPS(), n.RPS()), ratio(lat(t, 50), lat(n, 50)), ratio(lat(t, 99), lat(n, 99)),
				ratio(tc.RPS(), n.RPS()), ratio(lat(tc, 50), lat(n, 50)), ratio(t.RPS(), g.RPS()), ratio(n.RPS(), g.RPS()))
		}
		p("\nLatency is client side (request sent → body read). Errors = non-200, wrong body or transport errors inside the window. "+
			"CPU per request is user+system time from /proc/<pid>/stat (10 ms ticks) over the window ÷ requests: server-side = the server process "+
			"(for Tern: `tern serve` plus its node processes, i.e. the function's instances and the idle generic pool, count at the end of the window); load-gen = this benchmark. "+
			"Machine busy = all CPUs' busy time from /proc/stat as a share of %d CPUs × window; in parentheses the part not attributed to "+
			"those processes (the kernel's loopback networking and softirqs, and anything else running on the machine).\n", ncpu)
		failed := false
		for _, r := range res.warm {
			if r.Failed() > 0 || r.WarmBad > 0 {
				failed = true
				p("\n- %s c=%d: %d failed in the window (%d non-200, %d wrong body, %d transport errors), %d during warm-up; first: %s\n",
					r.Target, r.C, r.Failed(), r.Non200, r.BadBody, r.Errors, r.WarmBad, r.FirstBad)
			}
		}
		if !failed {
			p("\nNo failed requests in the warm phases, warm-ups included.\n")
		}
	}

	if br := res.burst; br != nil && len(br.rounds) > 0 {
		p("\n### 3. Burst from zero\n\n")
		p("%d rounds. In each, %d concurrent GETs, one goroutine and one new connection each, all released together; latency from the release. "+
			"Tern: a freshly deployed function that no request has reached (`scale.min` 0, `scale.max` 10), with the generic pool %s before the burst "+
			"(deleted after the burst, so its instances stop). Baseline: node `server.js` spawned at the release, serving a listening socket the benchmark "+
			"opened beforehand (passed as fd 3), so the connections wait in the kernel's accept queue until node is up; no client retries.\n\n",
			len(br.rounds), br.n, poolState(e.cfg.poolSize, allReady(br.rounds)))
		p("| round | target | all answered after | p50 | max | 200 `hello` | non-200 | errors | instances started | machine busy |\n")
		p("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		brow := func(i int, name string, r *burstRun, inst string) {
			p("| %d | %s | %s | %s | %s | %d | %d | %d | %s | %.0f%% |\n", i, name, benchkit.Ms(r.all),
				benchkit.Ms(benchkit.Percentile(r.lat, 50)), benchkit.Ms(benchkit.Percentile(r.lat, 100)),
				r.ok, r.non200+r.badBody, r.errs, inst, 100*r.busy)
		}
		var tAll, nAll, tP50, nP50 []time.Duration
		for i, r := range br.rounds {
			brow(i+1, "Tern, fresh function", r.tern, fmt.Sprintf("%d (%d served a request cold)", r.instancesNow, r.stats.Counts.ColdStarts))
			brow(i+1, "node `server.js`, spawn + burst", r.node, "1 process")
			tAll, nAll = append(tAll, r.tern.all), append(nAll, r.node.all)
			tP50, nP50 = append(tP50, benchkit.Percentile(r.tern.lat, 50)), append(nP50, benchkit.Percentile(r.node.lat, 50))
			busy = append(busy, busyRow{fmt.Sprintf("3. burst %d: Tern", i+1), r.tern.busy, r.tern.all},
				busyRow{fmt.Sprintf("3. burst %d: node spawn + burst", i+1), r.node.busy, r.node.all})
		}
		p("\n- median over the rounds, all answered: Tern %s, node %s: **Tern ÷ node %s**; p50 latency: Tern %s, node %s (%s)\n",
			benchkit.Ms(pct(tAll, 50)), benchkit.Ms(pct(nAll, 50)), ratio(float64(pct(tAll, 50)), float64(pct(nAll, 50))),
			benchkit.Ms(pct(tP50, 50)), benchkit.Ms(pct(nP50, 50)), ratio(float64(pct(tP50, 50)), float64(pct(nP50, 50))))
		p("- instances started = the function's instances after the burst (`GET /v1/functions/NAME/stats`; none can have been reaped yet): " +
			"the dispatcher starts one per waiting request up to `scale.max` (the first from the pool, the rest as new node processes), and " +
			"each request goes to whichever instance is free first, so only some instances serve a request cold\n")
		for i, r := range br.rounds {
			st := r.stats.Counts
			p("- round %d, Tern's counts for `%s`: %d invocations, %d cold, %d warm, %d queued, %d throttled, %d function errors, %d timeouts, %d crashes; "+
				"%d instances afterwards (%d still starting); %d node processes right after the last answer (the function's plus the pool); "+
				"pool before: %d node processes\n",
				i+1, r.name, st.Invocations, st.ColdStarts, st.WarmStarts, st.Queued, st.Throttled, st.FunctionErrors, st.Timeouts, st.Crashes,
				r.instancesNow, r.startingNow, r.childrenAfter, r.poolBefore)
			for _, x := range []struct {
				name string
				r    *burstRun
			}{{"Tern", r.tern}, {"node", r.node}} {
				if x.r.firstBad != "" {
					p("- round %d, %s: first failure: %s\n", i+1, x.name, x.r.firstBad)
				}
			}
		}
	}

	if m := res.mem; m != nil {
		p("\n### 4. Idle memory\n\n")
		p("A fresh `tern serve --pool-size 0`; VmRSS of the tern process only (/proc/<pid>/status), each read %s after the last action. "+
			"%d functions deployed through the API, %d uploads at a time; each package is the hello handler with its own name in `tern.yaml` "+
			"(zipped in memory before the clock starts). None is invoked, so no instance runs.\n\n", e.cfg.settle, m.n, e.cfg.deployC)
		p("| tern serve | VmRSS | VmHWM (peak so far) | node processes |\n|---|---:|---:|---:|\n")
		p("| 0 functions | %s | %s | %d |\n", mib(m.rss0), mib(m.hwm0), m.kids0)
		p("| %d functions deployed, none running | **%s** | %s | %d |\n", m.listed, mib(m.rss1), mib(m.hwm1), m.kids1)
		per := "–"
		if m.listed > 0 {
			per = fmt.Sprintf("%.1f KiB per function", float64(m.rss1-m.rss0)/float64(m.listed))
		}
		p("| difference | %+.1f MiB | %s | |\n", float64(m.rss1-m.rss0)/1024, per)
		p("\n- deploys: %d of %d succeeded in %s: **%.0f deploys/s**; per deploy request p50 %s, p99 %s, max %s; machine busy %.0f%%\n",
			m.ok, m.n, m.wall.Round(time.Millisecond), float64(m.ok)/m.wall.Seconds(),
			benchkit.Ms(benchkit.Percentile(m.lat, 50)), benchkit.Ms(benchkit.Percentile(m.lat, 99)), benchkit.Ms(benchkit.Percentile(m.lat, 100)), 100*m.busy)
		if m.firstErr != "" {
			p("- first failed deploy: %s\n", m.firstErr)
		}
		p("- `GET /v1/functions` afterwards lists %d functions in %s; tern's data dir takes %.1f MiB on disk\n",
			m.listed, benchkit.Ms(m.listTime), float64(m.dataDirBytes)/(1<<20))
		p("- the tern process includes the embedded NATS server (JetStream store); the difference is an upper bound on what the functions hold, " +
			"since it also counts heap the Go runtime kept after serving the uploads (it returns freed memory to the OS only gradually)\n")
		busy = append(busy, busyRow{fmt.Sprintf("4. %d deploys", m.n), m.busy, m.wall})
	}

	if rt := res.rt; rt != nil {
		busy = e.reportRuntimes(&b, rt, busy)
	}
	if ev := res.ev; ev != nil {
		busy = e.reportEvents(&b, ev, busy)
	}
	if mt := res.mt; mt != nil {
		busy = e.reportMetering(&b, mt, busy)
	}

	// CPU.
	p("\n### CPU: which phases are CPU-bound\n\n")
	p("Machine busy time (/proc/stat, all processes) as a share of %d CPUs over each phase; at %.0f%% or more the phase is CPU-bound here, "+
		"and its throughput or latency is partly the machine's limit, not only the server's. /proc/stat counts in %s ticks, so over a "+
		"span of d the share is good to about ±2 ticks ÷ (%d × d): ±%.0f%% over 1 s, ±%.0f%% over 100 ms (the bursts).\n\n", ncpu, 100*cpuBound, benchkit.ClockTick, ncpu,
		100*busyShare(2*benchkit.ClockTick, time.Second), 100*busyShare(2*benchkit.ClockTick, 100*time.Millisecond))
	p("| phase | span | machine busy | CPU-bound |\n|---|---:|---:|---|\n")
	for _, r := range busy {
		mark := ""
		if r.share >= cpuBound {
			mark = "**yes**"
		}
		p("| %s | %s | %.0f%% | %s |\n", r.phase, r.wall.Round(time.Millisecond), 100*r.share, mark)
	}

	// Warnings.
	for _, t := range e.terns {
		w := benchkit.Warnings(t.LogPath)
		name := ternName(t.LogPath)
		if len(w) == 0 {
			p("\n%s logged no warnings or errors.\n", name)
			continue
		}
		p("\n%s logged %d warning/error lines; the first ones:\n\n```\n%s\n```\n", name, len(w), strings.Join(w[:min(len(w), 5)], "\n"))
	}
	return b.String()
}

// ternName names a tern serve by its log's directory.
func ternName(log string) string {
	parts := strings.Split(log, "/")
	if len(parts) >= 2 {
		switch parts[len(parts)-2] {
		case "tern-pool":
			return "tern serve (phases 1–3, 5)"
		case "tern-mem":
			return "tern serve (phase 4)"
		case "tern-events":
			return "tern serve (phase 6, events)"
		case "tern-metering-on":
			return "tern serve (phase 7, metering on)"
		case "tern-metering-off":
			return "tern serve (phase 7, metering off)"
		}
	}
	return "tern serve"
}

// rank is the 1-based nearest rank of percentile q among n values.
func rank(n int, q float64) int {
	k := int(math.Ceil(float64(n) * q / 100))
	return max(1, min(k, n))
}

func ordinal(n int) string {
	suf := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suf = "st"
	case n%10 == 2:
		suf = "nd"
	case n%10 == 3:
		suf = "rd"
	}
	return fmt.Sprintf("%d%s", n, suf)
}

func poolState(size int, ready bool) string {
	switch {
	case size == 0:
		return "off (`--pool-size 0`)"
	case ready:
		return "full"
	default:
		return "NOT confirmed full"
	}
}

func allReady(rounds []*burstRound) bool {
	for _, r := range rounds {
		if !r.poolReady {
			return false
		}
	}
	return true
}

// reportRuntimes writes section 5 and returns busy with its rows added.
func (e *env) reportRuntimes(b *strings.Builder, rt *rtResult, busy []busyRow) []busyRow {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	n := e.cfg.rtColdN
	p("\n### 5. Runtimes\n\n")
	p("One series per runtime, on the `tern serve --pool-size %d` of phases 1–3. Cold: %d fresh functions of that runtime, each deployed through the API "+
		"(packages zipped in memory beforehand) and called once on a new connection, the next deploy sent after the previous first call was answered "+
		"and a gap of **%s**, as in phase 1 (one unmeasured warm-up first; the series' functions are deleted after it). Warm: closed loop at **c=1** "+
		"over a keep-alive connection against the series' last function, %s warm-up (unmeasured) and %s measured. Each series starts when tern's "+
		"child processes are just its pools of pre-started generic instances (%s). "+
		"A 200 with body `hello` counts, except for go, whose echo function answers JSON: any 200 counts there.\n\n",
		e.cfg.poolSize, n, e.cfg.gap, e.cfg.warmup, e.cfg.rtDuration, rtPoolNote(rt))
	p("| runtime | cold n | cold p50 | cold p95 | warm requests | warm req/s | warm p50 | warm p99 | warm errors |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rt.rows {
		if r.skipped != "" {
			p("| %s | not run: %s | | | | | | | |\n", r.label, r.skipped)
			continue
		}
		w := r.warm
		p("| %s | %d | **%s** | %s | %d | **%.0f** | %s | %s | %d |\n", r.label, len(r.cold),
			benchkit.Ms(pct(r.cold, 50)), benchkit.Ms(pct(r.cold, 95)), w.OK, w.RPS(),
			benchkit.Us(benchkit.Percentile(w.Lat, 50)), benchkit.Us(benchkit.Percentile(w.Lat, 99)), w.Failed())
	}
	ref := func(name string, ds []time.Duration) {
		if len(ds) == 0 {
			return
		}
		p("| reference: %s, spawn → exit | %d | %s | %s | | | | | |\n", name, len(ds), benchkit.Ms(pct(ds, 50)), benchkit.Ms(pct(ds, 95)))
	}
	ref("`node -e 0`", rt.nodeE0)
	ref("`python3 -c pass`", rt.pyPass)

	p("\n- cold = the first call after the deploy, client side (request sent → body read); nodejs and python specialise a pooled generic "+
		"instance when one is there, go (`provided`) starts the `bootstrap` executable (no pool), http runs `node server.js` through `/bin/sh -c` "+
		"and waits until $PORT accepts connections (no pool); percentiles are nearest-rank over %d values (p95 = the %s)\n", n, ordinal(rank(n, 95)))
	p("- references: %d runs each (after one unmeasured), in the environment tern gives its instances; `python3` is the interpreter behind python3 on PATH, "+
		"which Tern starts directly too (%s)\n", n, rtPyName(rt))
	p("- go: internal/server/testdata/lambdago (aws-lambda-go v1.55.1, `events.LambdaFunctionURLResponse` with a JSON body) built with " +
		"`CGO_ENABLED=0 go build -mod=mod -tags lambda.norpc` as `bootstrap`, zipped with mode 0755\n")
	for _, r := range rt.rows {
		if r.skipped != "" {
			continue
		}
		p("- %s: package %.1f KiB, deploy p50 %s; before the series tern had %d child processes (full pools: %d); "+
			"machine busy %.0f%% over the cold series (%s, gaps included)", r.runtime, float64(rt.pkgBytes[r.runtime])/1024,
			benchkit.Ms(pct(r.deploy, 50)), r.poolBefore, r.poolWant, 100*r.coldBusy, r.coldWall.Round(time.Millisecond))
		if w := r.warm; w.HaveCPU {
			share := busyShare(w.Busy, w.Window)
			p(", %.0f%% during the warm window; server-side CPU per request %s (tern %s + its instances and pools %s)",
				100*share, benchkit.Us(w.PerReq(w.ServerCPU+w.FuncCPU)), benchkit.Us(w.PerReq(w.ServerCPU)), benchkit.Us(w.PerReq(w.FuncCPU)))
			if r.runtime == "http" {
				p("; the app's node runs under `/bin/sh -c`, a grandchild of tern, and is not counted")
			}
			busy = append(busy, busyRow{"5. runtimes: " + r.runtime + " warm c=1", share, w.Window})
		}
		p("\n")
		busy = append(busy, busyRow{"5. runtimes: " + r.runtime + " cold series (with gaps)", r.coldBusy, r.coldWall})
		if w := r.warm; w.Failed() > 0 || w.WarmBad > 0 {
			p("- %s warm: %d failed in the window (%d non-200, %d wrong body, %d transport errors), %d during warm-up; first: %s\n",
				r.runtime, w.Failed(), w.Non200, w.BadBody, w.Errors, w.WarmBad, w.FirstBad)
		}
	}
	return busy
}

// rtPoolNote says whether every series started from full pools.
func rtPoolNote(rt *rtResult) string {
	for _, r := range rt.rows {
		if r.skipped == "" && !r.poolReady {
			return "NOT confirmed for every series; see the notes below"
		}
	}
	return "confirmed before every series"
}

func rtPyName(rt *rtResult) string {
	if rt.pyBin == "" {
		return "none here: " + rt.pyErr
	}
	return "`" + rt.pyBin + "`"
}
