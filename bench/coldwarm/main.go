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
	cs := &children{}

	// Watchdog: if the run does not wind down soon after being cancelled
	// (timeout or a signal), stop the children and exit anyway.
	go func() {
		<-ctx.Done()
		time.Sleep(30 * time.Second)
		fmt.Fprintln(os.Stderr, "bench: still running 30s after cancellation; killing children and exiting")
		cs.stopAll()
		os.Exit(3)
	}()

	err := run(ctx, &cfg, cs)
	cs.stopAll()
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
	cs      *children
	root    string // module root
	tmp     string
	ternBin string
	nodeBin string

	tern      *child
	ternURL   string
	token     string
	ternLog   string
	nodeVer   string
	startTime time.Time
	loadStart string
}

func run(ctx context.Context, cfg *config, cs *children) (err error) {
	e := &env{cfg: cfg, cs: cs, startTime: time.Now(), loadStart: loadAvg()}
	if e.root, err = moduleRoot(); err != nil {
		return err
	}
	if e.tmp, err = os.MkdirTemp("", "tern-bench-"); err != nil {
		return err
	}
	defer func() {
		cs.stopAll() // before removing tern's data dir
		if cfg.keep {
			logf("kept %s", e.tmp)
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
		logf("building tern: go build -o %s ./cmd/tern", e.ternBin)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", e.ternBin, "./cmd/tern")
		cmd.Dir = e.root
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/tern: %w", err)
		}
	}

	if err := e.startTern(ctx); err != nil {
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
	cs.noteOrphans(e.tern.pid())
	cs.stopAll()

	report := e.report(cold, warm)
	fmt.Print(report)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(report), 0o644); err != nil {
			return err
		}
		logf("wrote %s", cfg.out)
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// moduleRoot finds the directory of the tern module's go.mod, from the
// working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/ternhq/tern\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run this from inside the tern module (github.com/ternhq/tern)")
		}
		dir = parent
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ---------------------------------------------------------------------------
// tern serve and its CLI.

func (e *env) startTern(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	dataDir := filepath.Join(e.tmp, "data")
	e.ternLog = filepath.Join(e.tmp, "tern.log")
	logFile, err := os.Create(e.ternLog)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own copy
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(e.ternBin, "serve", "--listen", addr, "--data-dir", dataDir,
		"--node", e.nodeBin, "--shutdown-timeout", "2s")
	cmd.Env = append(os.Environ(), "TERN_DATA_DIR="+dataDir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	logf("starting %s", strings.Join(cmd.Args, " "))
	if e.tern, err = e.cs.start("tern serve", cmd, true); err != nil {
		return err
	}
	e.ternURL = "http://" + addr
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if e.tern.exited() {
			return fmt.Errorf("tern serve exited during startup:\n%s", tail(e.ternLog, 20))
		}
		resp, err := client.Get(e.ternURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tern serve not healthy after 30s:\n%s", tail(e.ternLog, 20))
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	e.token = strings.TrimSpace(string(tok))
	logf("tern is up at %s (pid %d)", e.ternURL, e.tern.pid())
	return nil
}

// cli runs a tern client command and returns its standard output.
func (e *env) cli(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.ternBin, args...)
	cmd.Env = append(os.Environ(), "TERN_SERVER="+e.ternURL, "TERN_TOKEN="+e.token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("tern %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
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

// firstRequest sends one GET on a new connection.
func firstRequest(ctx context.Context, url string) (time.Duration, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 40 * time.Second}
	s := time.Now()
	status, body, err := get(ctx, client, url, nil)
	d := time.Since(s)
	if err != nil {
		return d, err
	}
	if status != http.StatusOK || !bytes.Equal(body, helloBody) {
		return d, fmt.Errorf("GET %s: HTTP %d %.200q", url, status, body)
	}
	return d, nil
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
		nd, err := e.nodeCold(ctx)
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
		logf("cold %2d: tern first request %s (instance init %s, deploy %s), node spawn→first response %s%s",
			i, ms(dur), ms(init), ms(dep), ms(nd), tag)
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
	if _, err := e.cli(ctx, "deploy", dir); err != nil {
		return 0, 0, 0, err
	}
	deploy = time.Since(s)
	first, err = firstRequest(ctx, e.ternURL+"/fn/"+name)
	if err != nil {
		return 0, 0, 0, err
	}
	init = e.initDuration(ctx, name)
	// Deleting the function stops its instance, so idle instances do not
	// pile up over the runs.
	if _, err := e.cli(ctx, "rm", name); err != nil {
		return 0, 0, 0, err
	}
	return first, init, deploy, nil
}

// initDuration reads the "Init Duration" of the function's cold REPORT
// line; logs are written asynchronously, so it polls for up to 3s.
func (e *env) initDuration(ctx context.Context, name string) time.Duration {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		out, err := e.cli(ctx, "logs", name, "-o", "json")
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
		if sleep(ctx, 100*time.Millisecond) != nil {
			return 0
		}
	}
	return 0
}

// startNode starts the baseline server on a free port. It does not wait.
func (e *env) startNode(port int) (*child, error) {
	script := filepath.Join(e.root, "bench", "baseline", "server.js")
	cmd := exec.Command(e.nodeBin, script, strconv.Itoa(port))
	cmd.Dir = filepath.Dir(script)
	// The environment tern gives its instances (internal/runtime), not ours:
	// variables such as NODE_EXTRA_CA_CERTS or NODE_OPTIONS would slow the
	// baseline's start-up and make the comparison unfair.
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "TZ=:UTC", "LANG=en_US.UTF-8"}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return e.cs.start("node baseline", cmd, false)
}

// nodeCold times spawning the baseline server until its first successful
// response, polling with a new connection every millisecond.
func (e *env) nodeCold(ctx context.Context) (time.Duration, error) {
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	s := time.Now()
	c, err := e.startNode(port)
	if err != nil {
		return 0, err
	}
	defer c.stop(0)
	deadline := s.Add(20 * time.Second)
	for {
		status, body, err := get(ctx, client, url, nil)
		d := time.Since(s)
		if err == nil {
			if status != http.StatusOK || !bytes.Equal(body, helloBody) {
				return 0, fmt.Errorf("baseline: HTTP %d %.200q", status, body)
			}
			return d, nil
		}
		if c.exited() {
			return 0, errors.New("baseline node server exited before answering")
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("baseline not answering after 20s: %w", err)
		}
		if err := sleep(ctx, time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// ---------------------------------------------------------------------------
// Warm phases.

func (e *env) warmPhases(ctx context.Context) ([]*loadResult, error) {
	out, err := e.cli(ctx, "deploy", filepath.Join(e.root, "bench", "hello"))
	if err != nil {
		return nil, err
	}
	logf("%s", strings.TrimSpace(string(out)))
	ternURL := e.ternURL + "/fn/hello"
	if _, err := firstRequest(ctx, ternURL); err != nil {
		return nil, err
	}

	port, err := freePort()
	if err != nil {
		return nil, err
	}
	node, err := e.startNode(port)
	if err != nil {
		return nil, err
	}
	defer node.stop(0)
	nodeURL := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := firstRequest(ctx, nodeURL); err == nil {
			break
		} else if node.exited() || time.Now().After(deadline) {
			return nil, fmt.Errorf("baseline server: %w", err)
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return nil, err
		}
	}

	var results []*loadResult
	for _, c := range e.cfg.levels {
		for _, t := range []struct {
			name, url string
			pid       int
			tern      bool
		}{{"tern", ternURL, e.tern.pid(), true}, {"node", nodeURL, node.pid(), false}} {
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			logf("warm: %s, c=%d, %s warm-up + %s measured", t.name, c, e.cfg.warmup, e.cfg.duration)
			var srv0, srv1, fn0, fn1 cpuSnapshot
			var self0, self1, busy0, busy1 time.Duration
			var instances int
			pids := func() ([]int, []int) {
				if t.tern {
					return []int{t.pid}, childrenOf(t.pid)
				}
				return []int{t.pid}, nil
			}
			onStart := func() {
				s, f := pids()
				srv0, fn0, self0, busy0 = snapshot(s), snapshot(f), selfCPU(), machineBusy()
			}
			onEnd := func() {
				s, f := pids()
				srv1, fn1, self1, busy1 = snapshot(s), snapshot(f), selfCPU(), machineBusy()
				instances = len(f)
			}
			r := runLoad(ctx, t.url, helloBody, c, e.cfg.warmup, e.cfg.duration, onStart, onEnd)
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			r.Target = t.name
			if srv1 != nil {
				r.HaveCPU = true
				r.ServerCPU = cpuSince(srv0, srv1)
				r.FuncCPU = cpuSince(fn0, fn1)
				r.LoadgenCPU = self1 - self0
				r.Instances = instances
				r.Busy = busy1 - busy0
			}
			logf("warm: %s, c=%d: %d ok (%.0f req/s), p50 %s, p99 %s, %d failed in window, %d during warm-up",
				t.name, c, r.OK, r.rps(), us(percentile(r.Lat, 50)), us(percentile(r.Lat, 99)), r.failed(), r.WarmBad)
			if r.FirstBad != "" {
				logf("warm: %s, c=%d: first failure: %s", t.name, c, r.FirstBad)
			}
			results = append(results, r)
		}
	}
	if t := e.tern; t.exited() {
		return nil, fmt.Errorf("tern serve exited during the warm phases:\n%s", tail(e.ternLog, 20))
	}
	return results, nil
}

// ---------------------------------------------------------------------------
// Report.

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func sorted(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}

func (e *env) report(cold *coldResult, warm []*loadResult) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	p("## Results\n\n")
	p("- date: %s\n", e.startTime.UTC().Format("2006-01-02 15:04 MST"))
	p("- machine: nproc %s, %s, %s, %d MiB RAM\n", nproc(), cpuModel(), kernel(), memMiB())
	p("- node %s, %s, tern %s\n", e.nodeVer, runtime.Version(), gitRev(e.root))
	p("- command: `%s`\n", commandLine())
	p("- load average (1/5/15 min) at start: %s, at end: %s\n", e.loadStart, loadAvg())
	p("- cold: %d measured runs per target (plus one unmeasured warm-up each), alternating tern/node\n", e.cfg.coldN)
	p("- warm: %s warm-up + %s measured per row; closed loop, keep-alive, one load-generator goroutine per connection\n\n", e.cfg.warmup, e.cfg.duration)

	p("### Cold start\n\n")
	p("| measurement | p50 | min | max |\n|---|---:|---:|---:|\n")
	row := func(name string, ds []time.Duration) {
		if len(ds) == 0 {
			p("| %s | – | – | – |\n", name)
			return
		}
		s := sorted(ds)
		p("| %s | %s | %s | %s |\n", name, ms(percentile(s, 50)), ms(s[0]), ms(s[len(s)-1]))
	}
	row("Tern: first request after `tern deploy`", cold.tern)
	row("Tern: instance init (REPORT Init Duration)", cold.ternInit)
	row("Tern: `tern deploy` (CLI run, zip + upload)", cold.ternDeploy)
	row("node: spawn `server.js` → first 200", cold.node)
	tp, np := percentile(sorted(cold.tern), 50), percentile(sorted(cold.node), 50)
	if np > 0 {
		p("\nCold start p50, Tern ÷ node: **%.2f×** (%s vs %s, %+.1f ms)\n", float64(tp)/float64(np), ms(tp), ms(np), float64(tp-np)/float64(time.Millisecond))
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
			fn = fmt.Sprintf("%s (%d inst.)", us(r.perReq(r.FuncCPU)), r.Instances)
		}
		srv, lg, busy := "–", "–", "–"
		if r.HaveCPU {
			srv, lg = us(r.perReq(r.ServerCPU)), us(r.perReq(r.LoadgenCPU))
			capacity := float64(r.Window) * float64(runtime.NumCPU())
			others := r.Busy - r.ServerCPU - r.FuncCPU - r.LoadgenCPU
			busy = fmt.Sprintf("%.0f%% (%.0f%%)", 100*float64(r.Busy)/capacity, max(0, 100*float64(others)/capacity))
		}
		p("| %d | %s | %d | %.0f | %s | %s | %d | %s | %s | %s | %s |\n",
			r.C, target, r.OK, r.rps(), us(percentile(r.Lat, 50)), us(percentile(r.Lat, 99)), r.failed(), srv, fn, lg, busy)
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
		if n.rps() > 0 {
			ratio = fmt.Sprintf("%.2f×", t.rps()/n.rps())
		}
		cpu := "–"
		if t.HaveCPU && n.HaveCPU && n.OK > 0 && n.ServerCPU > 0 {
			cpu = fmt.Sprintf("%.1f×", float64(t.perReq(t.ServerCPU+t.FuncCPU))/float64(n.perReq(n.ServerCPU)))
		}
		p("| %d | %s | %+.0f µs | %+.0f µs | %s |\n", t.C, ratio,
			float64(percentile(t.Lat, 50)-percentile(n.Lat, 50))/1e3, float64(percentile(t.Lat, 99)-percentile(n.Lat, 99))/1e3, cpu)
	}
	failed := false
	for _, r := range warm {
		if r.failed() > 0 || r.WarmBad > 0 {
			failed = true
			p("\n- %s c=%d: %d failed in the window (%d non-200, %d wrong body, %d transport errors), %d during warm-up; first: %s\n",
				r.Target, r.C, r.failed(), r.Non200, r.BadBody, r.Errors, r.WarmBad, r.FirstBad)
		}
	}
	if !failed {
		p("\nNo failed requests (every response was 200 with body `hello`).\n")
	}
	if w := warnings(e.ternLog); len(w) > 0 {
		p("\ntern serve logged %d warning/error lines; the first ones:\n\n```\n%s\n```\n", len(w), strings.Join(w[:min(len(w), 5)], "\n"))
	} else {
		p("\ntern serve logged no warnings or errors.\n")
	}
	return b.String()
}

// warnings returns tern's WARN and ERROR log lines.
func warnings(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

func commandLine() string {
	parts := []string{"go", "run", "./bench/coldwarm"}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"$`\\") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// loadAvg is the 1, 5 and 15 minute load average: other work on the
// machine skews every number here.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func nproc() string {
	if out, err := exec.Command("nproc").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	return strconv.Itoa(runtime.NumCPU())
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return "Linux " + strings.TrimSpace(string(b))
}

func memMiB() int64 {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit) >> 20
}

// gitRev is the module's commit and whether the code tern is built from
// differs from it (read-only git commands).
func gitRev(root string) string {
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	rev, err := git("rev-parse", "--short", "HEAD")
	if err != nil {
		return "(unknown commit)"
	}
	src := []string{"--", "cmd", "internal", "go.mod", "go.sum"}
	var changed []string
	if out, err := git(append([]string{"diff", "--name-only", "HEAD"}, src...)...); err == nil && out != "" {
		changed = append(changed, strings.Fields(out)...)
	}
	if out, err := git(append([]string{"ls-files", "--others", "--exclude-standard"}, src...)...); err == nil {
		changed = append(changed, strings.Fields(out)...)
	}
	var built []string
	for _, f := range changed {
		if !strings.HasSuffix(f, "_test.go") { // tests are not in the binary
			built = append(built, f)
		}
	}
	if len(built) > 0 {
		return "commit " + rev + " + uncommitted changes to " + strings.Join(built, ", ")
	}
	return "commit " + rev
}
