package main

import (
	"fmt"
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

func (e *env) report(res *results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	ncpu := runtime.NumCPU()
	type busyRow struct {
		phase string
		share float64
	}
	var busy []busyRow

	p("## Results\n\n")
	p("- date: %s\n", e.startTime.UTC().Format("2006-01-02 15:04 MST"))
	p("- machine: nproc %s, %s, %s, %d MiB RAM\n", benchkit.Nproc(), benchkit.CPUModel(), benchkit.Kernel(), benchkit.MemMiB())
	p("- node %s, %s, tern %s\n", e.nodeVer, runtime.Version(), benchkit.GitRev(e.root))
	p("- command: `%s`\n", benchkit.CommandLine("./bench/suite"))
	p("- load average (1/5/15 min) at start: %s, at end: %s; the run took %s\n", e.loadStart, benchkit.LoadAvg(), time.Since(e.startTime).Round(time.Second))
	p("- phases 1–3: one `tern serve --pool-size %d`; phase 4: a fresh `tern serve --pool-size 0`; each with a new data dir, on 127.0.0.1; "+
		"the load generator, tern, its instances and the baselines all share this machine's %d CPUs\n", e.cfg.poolSize, ncpu)
	p("- handler everywhere: bench/hello (`200`, body `hello`); the node baseline is bench/baseline/server.js (same handler module), "+
		"the Go baseline bench/goecho (net/http, writes `hello`); both baselines run with the environment tern gives its instances\n")

	// 1. Cold start.
	c := res.cold
	p("\n### 1. Cold start\n\n")
	p("%d fresh functions, each deployed through the API (`POST /v1/functions`, the hello handler under its own name, zipped in memory beforehand), "+
		"then called once on a new connection. The next deploy is sent after the previous first call was answered and a gap of **%s** "+
		"(so the pool of pre-started generic node instances can refill in the background); the functions are deleted at the end of the series. "+
		"One unmeasured warm-up run comes first for each series. The node series run after the Tern series, not interleaved.\n\n", e.cfg.coldN, e.cfg.gap)
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
	busy = append(busy, busyRow{"1. cold: Tern series (with gaps)", c.ternBusy}, busyRow{"1. cold: node series", c.nodeBusy})

	// 2. Warm.
	p("\n### 2. Warm latency and throughput\n\n")
	p("Closed loop: c goroutines, each sending its next GET as soon as the previous one is answered, over keep-alive connections; "+
		"%s warm-up (unmeasured; Tern starts instances then) and %s measured per row; every request that starts and ends in the window counts. "+
		"Tern runs the function as deployed (`scale.max` 10: one invocation per instance, the rest wait in its queue).\n\n", e.cfg.warmup, e.cfg.duration)
	p("| c | target | requests | req/s | p50 | p99 | errors | server-side CPU/req | load-gen CPU/req | machine busy |\n")
	p("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range res.warm {
		target := map[string]string{targetTern: "Tern `/fn/hello`", targetNode: "node `server.js`", targetGo: "Go net/http"}[r.Target]
		srv, lg, bz := "–", "–", "–"
		if r.HaveCPU {
			srv = benchkit.Us(r.PerReq(r.ServerCPU + r.FuncCPU))
			if r.Target == targetTern {
				srv = fmt.Sprintf("%s (tern %s + %d inst. %s)", srv, benchkit.Us(r.PerReq(r.ServerCPU)), r.Instances, benchkit.Us(r.PerReq(r.FuncCPU)))
			}
			lg = benchkit.Us(r.PerReq(r.LoadgenCPU))
			share := busyShare(r.Busy, r.Window)
			bz = fmt.Sprintf("%.0f%%", 100*share)
			busy = append(busy, busyRow{fmt.Sprintf("2. warm c=%d %s", r.C, target), share})
		}
		p("| %d | %s | %d | %.0f | %s | %s | %d | %s | %s | %s |\n", r.C, target, r.OK, r.RPS(),
			benchkit.Us(benchkit.Percentile(r.Lat, 50)), benchkit.Us(benchkit.Percentile(r.Lat, 99)), r.Failed(), srv, lg, bz)
	}
	p("\n| c | req/s Tern ÷ node | p50 Tern ÷ node | p99 Tern ÷ node | req/s Tern ÷ Go | req/s node ÷ Go |\n")
	p("|---:|---:|---:|---:|---:|---:|\n")
	for i := 0; i+2 < len(res.warm); i += 3 {
		t, n, g := res.warm[i], res.warm[i+1], res.warm[i+2]
		lat := func(r *benchkit.LoadResult, q float64) float64 { return float64(benchkit.Percentile(r.Lat, q)) }
		p("| %d | **%s** | %s | %s | %s | %s |\n", t.C, ratio(t.RPS(), n.RPS()), ratio(lat(t, 50), lat(n, 50)), ratio(lat(t, 99), lat(n, 99)),
			ratio(t.RPS(), g.RPS()), ratio(n.RPS(), g.RPS()))
	}
	p("\nLatency is client side (request sent → body read). Errors = non-200, wrong body or transport errors inside the window. "+
		"CPU per request is user+system time from /proc/<pid>/stat (10 ms ticks) over the window ÷ requests: server-side = the server process "+
		"(for Tern: `tern serve` plus its node instances, count at the end of the window); load-gen = this benchmark. "+
		"Machine busy = all CPUs' busy time from /proc/stat as a share of %d CPUs × window.\n", ncpu)
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

	// 3. Burst.
	br := res.burst
	p("\n### 3. Burst from zero\n\n")
	p("%d concurrent GETs, one goroutine and one new connection each, all released together; latency from the release. "+
		"Tern: a freshly deployed function that no request has reached (`scale.min` 0, `scale.max` 10), with the generic pool %s "+
		"(%d node processes before the burst). Baseline: node `server.js` spawned at the release, serving a listening socket the benchmark "+
		"opened beforehand (passed as fd 3), so the connections wait in the kernel's accept queue until node is up; no client retries.\n\n",
		br.n, map[bool]string{true: "full", false: "NOT confirmed full"}[br.poolReady], br.poolBefore)
	p("| target | all answered after | p50 | max | 200 `hello` | non-200 | errors | instances started | machine busy |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	brow := func(name string, r *burstRun, inst string) {
		p("| %s | %s | %s | %s | %d | %d | %d | %s | %.0f%% |\n", name, benchkit.Ms(r.all),
			benchkit.Ms(benchkit.Percentile(r.lat, 50)), benchkit.Ms(benchkit.Percentile(r.lat, 100)),
			r.ok, r.non200+r.badBody, r.errs, inst, 100*r.busy)
	}
	st := br.stats.Counts
	brow("**Tern**, fresh function", br.tern, fmt.Sprintf("%d", st.ColdStarts))
	brow("**node** `server.js`, spawn + burst", br.node, "1 process")
	p("\n- all answered, Tern ÷ node: **%s**; p50: %s\n", ratio(float64(br.tern.all), float64(br.node.all)),
		ratio(float64(benchkit.Percentile(br.tern.lat, 50)), float64(benchkit.Percentile(br.node.lat, 50))))
	p("- Tern's counts for the function after the burst (`GET /v1/functions/burst/stats`): %d invocations, %d cold starts (= instances started), "+
		"%d warm, %d queued, %d throttled, %d function errors, %d timeouts, %d crashes; %d instances alive right after; "+
		"tern had %d node processes then (the function's plus the pool refilling)\n",
		st.Invocations, st.ColdStarts, st.WarmStarts, st.Queued, st.Throttled, st.FunctionErrors, st.Timeouts, st.Crashes, br.instancesNow, br.childrenAfter)
	for _, x := range []struct {
		name string
		r    *burstRun
	}{{"Tern", br.tern}, {"node", br.node}} {
		if x.r.firstBad != "" {
			p("- %s: first failure: %s\n", x.name, x.r.firstBad)
		}
	}
	busy = append(busy, busyRow{"3. burst: Tern", br.tern.busy}, busyRow{"3. burst: node spawn + burst", br.node.busy})

	// 4. Memory.
	m := res.mem
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
	busy = append(busy, busyRow{fmt.Sprintf("4. %d deploys", m.n), m.busy})

	// CPU.
	p("\n### CPU: which phases are CPU-bound\n\n")
	p("Machine busy time (/proc/stat, all processes) as a share of %d CPUs over each phase; at %.0f%% or more the phase is CPU-bound here, "+
		"and its throughput or latency is partly the machine's limit, not only the server's.\n\n", ncpu, 100*cpuBound)
	p("| phase | machine busy | CPU-bound |\n|---|---:|---|\n")
	for _, r := range busy {
		mark := ""
		if r.share >= cpuBound {
			mark = "**yes**"
		}
		p("| %s | %.0f%% | %s |\n", r.phase, 100*r.share, mark)
	}

	// Warnings.
	for _, t := range e.terns {
		w := benchkit.Warnings(t.LogPath)
		name := filepath(t.LogPath)
		if len(w) == 0 {
			p("\n%s logged no warnings or errors.\n", name)
			continue
		}
		p("\n%s logged %d warning/error lines; the first ones:\n\n```\n%s\n```\n", name, len(w), strings.Join(w[:min(len(w), 5)], "\n"))
	}
	return b.String()
}

// filepath names a tern serve by its log's directory.
func filepath(log string) string {
	parts := strings.Split(log, "/")
	if len(parts) >= 2 {
		switch parts[len(parts)-2] {
		case "tern-pool":
			return "tern serve (phases 1–3)"
		case "tern-mem":
			return "tern serve (phase 4)"
		}
	}
	return "tern serve"
}

// rank is the 1-based nearest rank of percentile q among n values.
func rank(n int, q float64) int {
	k := int(float64(n)*q/100 + 0.999999999)
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
