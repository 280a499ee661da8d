// Command coldwarm benchmarks Tern against a plain Node.js HTTP server
// running the same hello-world handler (bench/hello), in one run:
//
//   - cold start: the first request to a freshly deployed function (a new
//     function name each time, so each first call starts an instance), next
//     to spawning `node bench/baseline/server.js` until its first answer;
//   - warm: a closed-loop keep-alive load generator at each concurrency
//     level, against /fn/hello on Tern and against the baseline server.
//
// Run it from the module root:
//
//	go run ./bench/coldwarm -duration 10s -c 1,16 -out /tmp/bench.md
//
// Every process it starts (tern serve, node) is stopped before it exits, on
// error and on Ctrl-C too; -timeout bounds the whole run. It only talks to
// 127.0.0.1.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ternhq/tern/bench/internal/benchkit"
)

type config struct {
	duration time.Duration
	warmup   time.Duration
	levels   []int
	coldN    int
	ternBin  string
	nodeBin  string
	out      string
	timeout  time.Duration
	keep     bool
}

// helloBody is what the benchmark handler answers.
var helloBody = []byte("hello")

func main() {
	var cfg config
	var levels string
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured duration of each warm phase (per concurrency level and target)")
	flag.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each warm phase")
	flag.StringVar(&levels, "c", "1,16", "comma-separated concurrency levels for the warm phases")
	flag.IntVar(&cfg.coldN, "cold", 10, "cold starts measured per target (after one unmeasured warm-up run each)")
	flag.StringVar(&cfg.ternBin, "tern", "", "tern binary (default: go build ./cmd/tern into a temp dir)")
	flag.StringVar(&cfg.nodeBin, "node", "node", "node binary, for the baseline and for tern's instances")
	flag.StringVar(&cfg.out, "out", "", "also write the markdown report to this file")
	flag.DurationVar(&cfg.timeout, "timeout", 0, "hard bound on the whole run (default: derived from the other flags)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temp dir (tern's data dir and log) for inspection")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: coldwarm [flags]; see -h")
		os.Exit(2)
	}
	for _, f := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1024 {
			fmt.Fprintf(os.Stderr, "bad -c value %q: want concurrency levels in 1..1024\n", f)
			os.Exit(2)
		}
		cfg.levels = append(cfg.levels, n)
	}
	if cfg.duration <= 0 || cfg.warmup < 0 || cfg.coldN < 1 {
		fmt.Fprintln(os.Stderr, "-duration and -cold must be positive, -warmup not negative")
		os.Exit(2)
	}
	if cfg.timeout == 0 {
		phases := time.Duration(2 * len(cfg.levels))
		cfg.timeout = 5*time.Minute + time.Duration(cfg.coldN)*20*time.Second + 2*phases*(cfg.warmup+cfg.duration)
	}

	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	cs := &benchkit.Children{}

	// Watchdog: if the run does not wind down soon after being cancelled
	// (timeout or a signal), stop the children and exit anyway.
	go func() {
		<-ctx.Done()
		time.Sleep(30 * time.Second)
		fmt.Fprintln(os.Stderr, "bench: still running 30s after cancellation; killing children and exiting")
		cs.StopAll()
		os.Exit(3)
	}()

	err := run(ctx, &cfg, cs)
	cs.StopAll()
	if ctx.Err() != nil && err == nil {
		err = context.Cause(ctx)
	}
	cancel()
	stopSignals()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// env is what a run works with.
type env struct {
	cfg     *config
	cs      *benchkit.Children
	root    string // module root
	tmp     string
	ternBin string
	nodeBin string

	tern      *benchkit.Tern
	nodeVer   string
	startTime time.Time
	loadStart string
}

func run(ctx context.Context, cfg *config, cs *benchkit.Children) (err error) {
	e := &env{cfg: cfg, cs: cs, startTime: time.Now(), loadStart: benchkit.LoadAvg()}
	if e.root, err = benchkit.ModuleRoot(); err != nil {
		return err
	}
	if e.tmp, err = os.MkdirTemp("", "tern-bench-"); err != nil {
		return err
	}
	defer func() {
		cs.StopAll() // before removing tern's data dir
		if cfg.keep {
			benchkit.Logf("kept %s", e.tmp)
		} else {
			_ = os.RemoveAll(e.tmp)
		}
	}()

	if e.nodeBin, err = exec.LookPath(cfg.nodeBin); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if e.nodeBin, err = filepath.Abs(e.nodeBin); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, e.nodeBin, "--version").Output()
	if err != nil {
		return fmt.Errorf("node --version: %w", err)
	}
	e.nodeVer = strings.TrimSpace(string(out))

	if cfg.ternBin != "" {
		if e.ternBin, err = filepath.Abs(cfg.ternBin); err != nil {
			return err
		}
	} else {
		e.ternBin = filepath.Join(e.tmp, "tern")
		if err := benchkit.GoBuild(ctx, e.root, e.ternBin, "./cmd/tern"); err != nil {
			return err
		}
	}

	e.tern, err = benchkit.StartTern(ctx, cs, benchkit.TernOptions{Bin: e.ternBin, Node: e.nodeBin, Dir: e.tmp})
	if err != nil {
		return err
	}
	cold, err := e.coldStarts(ctx)
	if err != nil {
		return err
	}
	warm, err := e.warmPhases(ctx)
	if err != nil {
		return err
	}
	// Remember tern's instances before stopping it, to kill any it leaves.
	cs.NoteOrphans(e.tern.PID())
	cs.StopAll()

	report := e.report(cold, warm)
	fmt.Print(report)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(report), 0o644); err != nil {
			return err
		}
		benchkit.Logf("wrote %s", cfg.out)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Cold starts.

type coldResult struct {
	tern       []time.Duration // first request after deploy
	ternInit   []time.Duration // Init Duration from that request's REPORT line
	ternDeploy []time.Duration // `tern deploy` (CLI process included)
	node       []time.Duration // spawn node server.js until the first 200
	notes      []string
}

func (e *env) coldStarts(ctx context.Context) (*coldResult, error) {
	res := &coldResult{}
	index, err := os.ReadFile(filepath.Join(e.root, "bench", "hello", "index.js"))
	if err != nil {
		return nil, err
	}
	// Run 0 of each target is a warm-up (page cache, first exec of node)
	// and is not counted. The targets alternate so drift hits both alike.
	for i := 0; i <= e.cfg.coldN; i++ {
		name := fmt.Sprintf("hello-cold-%d", i)
		dur, init, dep, err := e.ternCold(ctx, name, index)
		if err != nil {
			return nil, fmt.Errorf("tern cold start %d: %w", i, err)
		}
		nd, err := benchkit.NodeCold(ctx, e.cs, e.nodeBin, e.root, helloBody)
		if err != nil {
			return nil, fmt.Errorf("node cold start %d: %w", i, err)
		}
		tag := ""
		if i == 0 {
			tag = " (warm-up, not counted)"
		} else {
			res.tern = append(res.tern, dur)
			res.ternDeploy = append(res.ternDeploy, dep)
			res.node = append(res.node, nd)
			if init > 0 {
				res.ternInit = append(res.ternInit, init)
			}
		}
		benchkit.Logf("cold %2d: tern first request %s (instance init %s, deploy %s), node spawn→first response %s%s",
			i, benchkit.Ms(dur), benchkit.Ms(init), benchkit.Ms(dep), benchkit.Ms(nd), tag)
		if i > 0 && init == 0 {
			res.notes = append(res.notes, fmt.Sprintf("cold run %d: no Init Duration found in the REPORT line of %s", i, name))
		}
	}
	return res, nil
}

// ternCold deploys a new function and times its first request. It returns
// that latency, the instance's init duration (from the function's REPORT
// log line; 0 if not found), and the deploy time.
func (e *env) ternCold(ctx context.Context, name string, index []byte) (first, init, deploy time.Duration, err error) {
	dir := filepath.Join(e.tmp, "cold", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, 0, err
	}
	manifest := "name: " + name + "\nruntime: nodejs\nhandler: index.handler\n"
	if err := os.WriteFile(filepath.Join(dir, "tern.yaml"), []byte(manifest), 0o644); err != nil {
		return 0, 0, 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.js"), index, 0o644); err != nil {
		return 0, 0, 0, err
	}
	s := time.Now()
	if _, err := e.tern.CLI(ctx, "deploy", dir); err != nil {
		return 0, 0, 0, err
	}
	deploy = time.Since(s)
	first, err = benchkit.FirstRequest(ctx, e.tern.URL+"/fn/"+name, helloBody)
	if err != nil {
		return 0, 0, 0, err
	}
	init = e.initDuration(ctx, name)
	// Deleting the function stops its instance, so idle instances do not
	// pile up over the runs.
	if _, err := e.tern.CLI(ctx, "rm", name); err != nil {
		return 0, 0, 0, err
	}
	return first, init, deploy, nil
}

// initDuration reads the "Init Duration" of the function's cold REPORT
// line; logs are written asynchronously, so it polls for up to 3s.
func (e *env) initDuration(ctx context.Context, name string) time.Duration {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		out, err := e.tern.CLI(ctx, "logs", name, "-o", "json")
		if err == nil {
			sc := bufio.NewScanner(bytes.NewReader(out))
			sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
			for sc.Scan() {
				var en struct {
					Message string `json:"message"`
				}
				if json.Unmarshal(sc.Bytes(), &en) != nil || !strings.HasPrefix(en.Message, "REPORT") {
					continue
				}
				_, after, ok := strings.Cut(en.Message, "Init Duration: ")
				if !ok {
					continue
				}
				v, _, _ := strings.Cut(after, " ")
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					return time.Duration(f * float64(time.Millisecond))
				}
			}
		}
		if benchkit.Sleep(ctx, 100*time.Millisecond) != nil {
			return 0
		}
	}
	return 0
}

// ---------------------------------------------------------------------------
// Warm phases.

func (e *env) warmPhases(ctx context.Context) ([]*benchkit.LoadResult, error) {
	out, err := e.tern.CLI(ctx, "deploy", filepath.Join(e.root, "bench", "hello"))
	if err != nil {
		return nil, err
	}
	benchkit.Logf("%s", strings.TrimSpace(string(out)))
	ternURL := e.tern.URL + "/fn/hello"
	if _, err := benchkit.FirstRequest(ctx, ternURL, helloBody); err != nil {
		return nil, err
	}

	port, err := benchkit.FreePort()
	if err != nil {
		return nil, err
	}
	node, err := benchkit.StartNode(e.cs, e.nodeBin, e.root, strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	defer node.Stop(0)
	nodeURL := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := benchkit.FirstRequest(ctx, nodeURL, helloBody); err == nil {
			break
		} else if node.Exited() || time.Now().After(deadline) {
			return nil, fmt.Errorf("baseline server: %w", err)
		}
		if err := benchkit.Sleep(ctx, 10*time.Millisecond); err != nil {
			return nil, err
		}
	}

	var results []*benchkit.LoadResult
	for _, c := range e.cfg.levels {
		for _, t := range []struct {
			name, url string
			pid       int
			tern      bool
		}{{"tern", ternURL, e.tern.PID(), true}, {"node", nodeURL, node.PID(), false}} {
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			benchkit.Logf("warm: %s, c=%d, %s warm-up + %s measured", t.name, c, e.cfg.warmup, e.cfg.duration)
			var srv0, srv1, fn0, fn1 benchkit.CPUSnapshot
			var self0, self1, busy0, busy1 time.Duration
			var instances int
			pids := func() ([]int, []int) {
				if t.tern {
					return []int{t.pid}, benchkit.ChildrenOf(t.pid)
				}
				return []int{t.pid}, nil
			}
			onStart := func() {
				s, f := pids()
				srv0, fn0, self0, busy0 = benchkit.Snapshot(s), benchkit.Snapshot(f), benchkit.SelfCPU(), benchkit.MachineBusy()
			}
			onEnd := func() {
				s, f := pids()
				srv1, fn1, self1, busy1 = benchkit.Snapshot(s), benchkit.Snapshot(f), benchkit.SelfCPU(), benchkit.MachineBusy()
				instances = len(f)
			}
			r := benchkit.RunLoad(ctx, t.url, helloBody, c, e.cfg.warmup, e.cfg.duration, onStart, onEnd)
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			r.Target = t.name
			if srv1 != nil {
				r.HaveCPU = true
				r.ServerCPU = benchkit.CPUSince(srv0, srv1)
				r.FuncCPU = benchkit.CPUSince(fn0, fn1)
				r.LoadgenCPU = self1 - self0
				r.Instances = instances
				r.Busy = busy1 - busy0
			}
			benchkit.Logf("warm: %s, c=%d: %d ok (%.0f req/s), p50 %s, p99 %s, %d failed in window, %d during warm-up",
				t.name, c, r.OK, r.RPS(), benchkit.Us(benchkit.Percentile(r.Lat, 50)), benchkit.Us(benchkit.Percentile(r.Lat, 99)), r.Failed(), r.WarmBad)
			if r.FirstBad != "" {
				benchkit.Logf("warm: %s, c=%d: first failure: %s", t.name, c, r.FirstBad)
			}
			results = append(results, r)
		}
	}
	if t := e.tern; t.Exited() {
		return nil, fmt.Errorf("tern serve exited during the warm phases:\n%s", benchkit.Tail(e.tern.LogPath, 20))
	}
	return results, nil
}

// ---------------------------------------------------------------------------
// Report.

func (e *env) report(cold *coldResult, warm []*benchkit.LoadResult) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	p("## Results\n\n")
	p("- date: %s\n", e.startTime.UTC().Format("2006-01-02 15:04 MST"))
	p("- machine: nproc %s, %s, %s, %d MiB RAM\n", benchkit.Nproc(), benchkit.CPUModel(), benchkit.Kernel(), benchkit.MemMiB())
	p("- node %s, %s, tern %s\n", e.nodeVer, runtime.Version(), benchkit.GitRev(e.root))
	p("- command: `%s`\n", benchkit.CommandLine("./bench/coldwarm"))
	p("- load average (1/5/15 min) at start: %s, at end: %s\n", e.loadStart, benchkit.LoadAvg())
	p("- cold: %d measured runs per target (plus one unmeasured warm-up each), alternating tern/node\n", e.cfg.coldN)
	p("- warm: %s warm-up + %s measured per row; closed loop, keep-alive, one load-generator goroutine per connection\n\n", e.cfg.warmup, e.cfg.duration)

	p("### Cold start\n\n")
	p("| measurement | p50 | min | max |\n|---|---:|---:|---:|\n")
	row := func(name string, ds []time.Duration) {
		if len(ds) == 0 {
			p("| %s | – | – | – |\n", name)
			return
		}
		s := benchkit.Sorted(ds)
		p("| %s | %s | %s | %s |\n", name, benchkit.Ms(benchkit.Percentile(s, 50)), benchkit.Ms(s[0]), benchkit.Ms(s[len(s)-1]))
	}
	row("Tern: first request after `tern deploy`", cold.tern)
	row("Tern: instance init (REPORT Init Duration)", cold.ternInit)
	row("Tern: `tern deploy` (CLI run, zip + upload)", cold.ternDeploy)
	row("node: spawn `server.js` → first 200", cold.node)
	tp, np := benchkit.Percentile(benchkit.Sorted(cold.tern), 50), benchkit.Percentile(benchkit.Sorted(cold.node), 50)
	if np > 0 {
		p("\nCold start p50, Tern ÷ node: **%.2f×** (%s vs %s, %+.1f ms)\n", float64(tp)/float64(np), benchkit.Ms(tp), benchkit.Ms(np), float64(tp-np)/float64(time.Millisecond))
	}
	for _, n := range cold.notes {
		p("\n- note: %s\n", n)
	}

	p("\n### Warm, closed loop\n\n")
	p("| c | target | requests | req/s | p50 | p99 | failed | server CPU/req | function CPU/req | load-gen CPU/req | machine busy (others) |\n")
	p("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range warm {
		target := "Tern `/fn/hello`"
		fn := "–"
		if r.Target == "node" {
			target = "node `server.js`"
		} else if r.HaveCPU {
			fn = fmt.Sprintf("%s (%d inst.)", benchkit.Us(r.PerReq(r.FuncCPU)), r.Instances)
		}
		srv, lg, busy := "–", "–", "–"
		if r.HaveCPU {
			srv, lg = benchkit.Us(r.PerReq(r.ServerCPU)), benchkit.Us(r.PerReq(r.LoadgenCPU))
			capacity := float64(r.Window) * float64(runtime.NumCPU())
			others := r.Busy - r.ServerCPU - r.FuncCPU - r.LoadgenCPU
			busy = fmt.Sprintf("%.0f%% (%.0f%%)", 100*float64(r.Busy)/capacity, max(0, 100*float64(others)/capacity))
		}
		p("| %d | %s | %d | %.0f | %s | %s | %d | %s | %s | %s | %s |\n",
			r.C, target, r.OK, r.RPS(), benchkit.Us(benchkit.Percentile(r.Lat, 50)), benchkit.Us(benchkit.Percentile(r.Lat, 99)), r.Failed(), srv, fn, lg, busy)
	}

	p("\nLatencies are per request, client side (request sent → body read), over requests that started and ended in the window. "+
		"CPU per request is user+system time from /proc/<pid>/stat (10 ms ticks) over the window divided by the requests: "+
		"server = the `tern serve` Go process or the baseline node process; function = the sum over tern's node instances (count at the end of the window); "+
		"load-gen = this benchmark's own process. Machine busy = all CPUs' busy time from /proc/stat as a share of %d CPUs × window; "+
		"in parentheses the part not attributed to those processes (other processes, interrupts/softirq).\n", runtime.NumCPU())
	p("\n| c | req/s Tern ÷ node | p50 overhead | p99 overhead | total server-side CPU/req Tern ÷ node |\n")
	p("|---:|---:|---:|---:|---:|\n")
	for i := 0; i+1 < len(warm); i += 2 {
		t, n := warm[i], warm[i+1]
		ratio := "–"
		if n.RPS() > 0 {
			ratio = fmt.Sprintf("%.2f×", t.RPS()/n.RPS())
		}
		cpu := "–"
		if t.HaveCPU && n.HaveCPU && n.OK > 0 && n.ServerCPU > 0 {
			cpu = fmt.Sprintf("%.1f×", float64(t.PerReq(t.ServerCPU+t.FuncCPU))/float64(n.PerReq(n.ServerCPU)))
		}
		p("| %d | %s | %+.0f µs | %+.0f µs | %s |\n", t.C, ratio,
			float64(benchkit.Percentile(t.Lat, 50)-benchkit.Percentile(n.Lat, 50))/1e3, float64(benchkit.Percentile(t.Lat, 99)-benchkit.Percentile(n.Lat, 99))/1e3, cpu)
	}
	failed := false
	for _, r := range warm {
		if r.Failed() > 0 || r.WarmBad > 0 {
			failed = true
			p("\n- %s c=%d: %d failed in the window (%d non-200, %d wrong body, %d transport errors), %d during warm-up; first: %s\n",
				r.Target, r.C, r.Failed(), r.Non200, r.BadBody, r.Errors, r.WarmBad, r.FirstBad)
		}
	}
	if !failed {
		p("\nNo failed requests (every response was 200 with body `hello`).\n")
	}
	if w := benchkit.Warnings(e.tern.LogPath); len(w) > 0 {
		p("\ntern serve logged %d warning/error lines; the first ones:\n\n```\n%s\n```\n", len(w), strings.Join(w[:min(len(w), 5)], "\n"))
	} else {
		p("\ntern serve logged no warnings or errors.\n")
	}
	return b.String()
}
