// Command suite runs every Tern benchmark in one go, each next to its
// baseline in the same run, and writes one Markdown report:
//
//  1. cold start: N distinct fresh functions, the first call to each after
//     its deploy (Tern keeps a pool of pre-started generic node instances and
//     specialises one on a cold start), next to `node -e 0` and to spawning
//     the plain node server until its first 200;
//  2. warm latency and throughput at several concurrency levels (closed
//     loop, keep-alive) for Tern, the plain node server with the same
//     handler (bench/baseline) and a plain Go net/http server
//     (bench/goecho), each its own process;
//  3. a burst from zero: a fresh function, no instance of its own, hit by
//     many concurrent requests released together, next to the same burst
//     against the node server spawned at the same moment;
//  4. idle memory: tern serve's RSS with no functions and after deploying
//     many (none running, pool off), and the deploy throughput;
//  5. runtimes (only with -phases runtimes): cold start and warm latency at
//     c=1 for each runtime (nodejs, python, provided with an aws-lambda-go
//     bootstrap, http with a node server), next to `node -e 0` and
//     `python3 -c pass`;
//  6. events (only with -phases events): asynchronous invocations
//     (`X-Tern-Invocation-Type: Event`) on a tern serve of its own:
//     accepted/s and executed/s next to synchronous invocations/s of the
//     same function, and the time from the client's send to the handler's
//     start at light load, async next to sync;
//  7. metering (only with -phases metering): the warm path's cost of
//     metering, a default tern serve (metering on) next to one with
//     --metering=false, at c=1 and c=16 in alternation, and whether every
//     invocation was metered and none lost.
//
// Run it from the module root:
//
//	go run ./bench/suite -out /tmp/suite.md
//
// Its process handling, load generator and /proc readings live in
// bench/internal/benchkit. Every process it starts is stopped before it
// exits, on error and on Ctrl-C too; -timeout bounds the whole run. It only
// talks to 127.0.0.1.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
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
	serveArgs   []string // extra arguments of every tern serve
	coldN       int
	gap         time.Duration
	levels      []int
	duration    time.Duration
	warmup      time.Duration
	burst       int
	burstRounds int
	functions   int
	deployC     int
	poolSize    int
	settle      time.Duration
	rtColdN     int
	rtDuration  time.Duration
	asyncEvents int
	asyncRounds int
	mtRounds    int // metering phase: runs per server and level
	ternBin     string
	nodeBin     string
	out         string
	timeout     time.Duration
	keep        bool
	phases      map[string]bool
}

// The phases, as -phases names them.
const (
	phaseCold   = "cold"
	phaseWarm   = "warm"
	phaseBurst  = "burst"
	phaseMemory = "memory"
	// phaseRuntimes is not in the default list: it runs when asked for.
	phaseRuntimes = "runtimes"
	// phaseEvents is not in the default list either.
	phaseEvents = "events"
	// phaseMetering neither.
	phaseMetering = "metering"
)

// helloBody is what the benchmark handler (and the Go baseline) answers.
var helloBody = []byte("hello")

func main() {
	var cfg config
	var levels, phases string
	flag.IntVar(&cfg.coldN, "cold", 20, "cold starts measured per target: distinct fresh Tern functions, node runs (after one unmeasured warm-up each)")
	flag.DurationVar(&cfg.gap, "gap", 100*time.Millisecond, "pause after each Tern cold first call before the next deploy (lets the instance pool refill)")
	flag.StringVar(&levels, "c", "1,16,64", "comma-separated concurrency levels for the warm phases")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured window of each warm phase (per level and target)")
	flag.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each warm phase")
	flag.IntVar(&cfg.burst, "burst", 100, "concurrent requests in the burst from zero")
	flag.IntVar(&cfg.burstRounds, "burst-rounds", 3, "bursts per target (a fresh Tern function each)")
	flag.IntVar(&cfg.functions, "functions", 1000, "functions deployed for the idle-memory phase")
	flag.IntVar(&cfg.deployC, "deploy-c", 4, "concurrent uploads in the idle-memory phase")
	flag.IntVar(&cfg.poolSize, "pool-size", 2, "tern serve --pool-size for the cold, warm and burst phases (the memory phase uses 0)")
	flag.DurationVar(&cfg.settle, "settle", 3*time.Second, "wait before each RSS reading in the memory phase")
	flag.IntVar(&cfg.rtColdN, "rt-cold", 10, "runtimes phase: cold starts measured per runtime (fresh functions, after one unmeasured warm-up)")
	flag.DurationVar(&cfg.rtDuration, "rt-duration", 5*time.Second, "runtimes phase: measured window of the warm c=1 load per runtime (after -warmup)")
	flag.IntVar(&cfg.asyncEvents, "async-events", 5000, "events phase: invocations of each throughput run (async, and the sync baseline)")
	flag.IntVar(&cfg.asyncRounds, "async-rounds", 3, "events phase: rounds of the throughput runs (one sync and one async run each)")
	flag.IntVar(&cfg.mtRounds, "metering-rounds", 2, "metering phase: rounds per concurrency level (one run with metering on and one off each)")
	var serveArgs string
	flag.StringVar(&serveArgs, "serve-args", "", "extra arguments for every tern serve the suite starts, e.g. --sandbox=false")
	flag.StringVar(&cfg.ternBin, "tern", "", "tern binary (default: go build ./cmd/tern into a temp dir)")
	flag.StringVar(&cfg.nodeBin, "node", "node", "node binary, for the baselines and for tern's instances")
	flag.StringVar(&cfg.out, "out", "", "also write the markdown report to this file")
	flag.DurationVar(&cfg.timeout, "timeout", 0, "hard bound on the whole run (default: derived from the other flags)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temp dir (tern's data dirs and logs) for inspection")
	flag.StringVar(&phases, "phases", "cold,warm,burst,memory", "comma-separated phases to run (in this order whatever the order given); runtimes, events and metering are extra: cold,warm,burst,runtimes,events,metering,memory")
	flag.Parse()
	cfg.serveArgs = strings.Fields(serveArgs)
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: suite [flags]; see -h")
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
	cfg.phases = map[string]bool{}
	for _, f := range strings.Split(phases, ",") {
		switch f = strings.TrimSpace(f); f {
		case phaseCold, phaseWarm, phaseBurst, phaseMemory, phaseRuntimes, phaseEvents, phaseMetering:
			cfg.phases[f] = true
		default:
			fmt.Fprintf(os.Stderr, "bad -phases value %q: want cold, warm, burst, runtimes, events, metering or memory\n", f)
			os.Exit(2)
		}
	}
	switch {
	case cfg.coldN < 1, cfg.duration <= 0, cfg.warmup < 0, cfg.gap < 0, cfg.settle < 0:
		fmt.Fprintln(os.Stderr, "-cold and -duration must be positive; -warmup, -gap and -settle not negative")
		os.Exit(2)
	case cfg.burst < 1 || cfg.burst > 2000 || cfg.burstRounds < 1 || cfg.burstRounds > 100:
		fmt.Fprintln(os.Stderr, "-burst must be in 1..2000, -burst-rounds in 1..100")
		os.Exit(2)
	case cfg.functions < 1 || cfg.deployC < 1 || cfg.deployC > 64:
		fmt.Fprintln(os.Stderr, "-functions must be positive, -deploy-c in 1..64")
		os.Exit(2)
	case cfg.poolSize < 0 || cfg.poolSize > 64:
		fmt.Fprintln(os.Stderr, "-pool-size must be in 0..64")
		os.Exit(2)
	case cfg.rtColdN < 1 || cfg.rtDuration <= 0:
		fmt.Fprintln(os.Stderr, "-rt-cold and -rt-duration must be positive")
		os.Exit(2)
	case cfg.asyncEvents < 1 || cfg.asyncEvents > 1000000 || cfg.asyncRounds < 1 || cfg.asyncRounds > 20:
		fmt.Fprintln(os.Stderr, "-async-events must be in 1..1000000, -async-rounds in 1..20")
		os.Exit(2)
	case cfg.mtRounds < 1 || cfg.mtRounds > 20:
		fmt.Fprintln(os.Stderr, "-metering-rounds must be in 1..20")
		os.Exit(2)
	}
	if cfg.timeout == 0 {
		expected := time.Duration(cfg.coldN+1)*(cfg.gap+time.Second) +
			time.Duration(3*len(cfg.levels))*(cfg.warmup+cfg.duration) +
			time.Duration(cfg.burstRounds)*30*time.Second + // burst
			time.Duration(cfg.functions)*50*time.Millisecond + 2*cfg.settle
		if cfg.phases[phaseRuntimes] {
			// Four series of cold starts, four warm loads, the Go build.
			expected += 4*time.Duration(cfg.rtColdN+1)*(cfg.gap+2*time.Second) +
				4*(cfg.warmup+cfg.rtDuration) + time.Minute
		}
		if cfg.phases[phaseEvents] {
			// Its waits for handler runs are bounded (evDrainMax each).
			expected += time.Duration(cfg.asyncRounds+2)*evDrainMax + time.Duration(2*cfg.asyncRounds*cfg.asyncEvents)*time.Millisecond
		}
		if cfg.phases[phaseMetering] {
			// Two servers, each run at each level in each round.
			expected += time.Duration(2*len(mtLevels)*cfg.mtRounds)*(cfg.warmup+cfg.duration) + time.Minute
		}
		cfg.timeout = 3*time.Minute + 2*expected
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
	cfg       *config
	cs        *benchkit.Children
	root      string // module root
	tmp       string
	ternBin   string
	nodeBin   string
	goechoBin string
	helloJS   []byte // bench/hello/index.js

	api   *http.Client     // keep-alive client for the control API
	terns []*benchkit.Tern // every tern serve started, for the report

	nodeVer   string
	startTime time.Time
	loadStart string
}

// results is everything the report shows.
type results struct {
	cold  *coldResult
	warm  []*benchkit.LoadResult
	burst *burstResult
	mem   *memResult
	rt    *rtResult
	ev    *eventsResult
	mt    *meteringResult
}

func run(ctx context.Context, cfg *config, cs *benchkit.Children) (err error) {
	e := &env{cfg: cfg, cs: cs, startTime: time.Now(), loadStart: benchkit.LoadAvg()}
	e.api = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * cfg.deployC, DisableCompression: true}}
	defer e.api.CloseIdleConnections()
	if e.root, err = benchkit.ModuleRoot(); err != nil {
		return err
	}
	if e.helloJS, err = os.ReadFile(filepath.Join(e.root, "bench", "hello", "index.js")); err != nil {
		return err
	}
	if e.tmp, err = os.MkdirTemp("", "tern-suite-"); err != nil {
		return err
	}
	defer func() {
		e.stopTerns() // before removing their data dirs
		cs.StopAll()
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
	e.goechoBin = filepath.Join(e.tmp, "goecho")
	if err := benchkit.GoBuild(ctx, e.root, e.goechoBin, "./bench/goecho"); err != nil {
		return err
	}

	var res results
	// Phases 1-3 and the runtimes phase share one tern serve with the
	// instance pool on.
	if cfg.phases[phaseCold] || cfg.phases[phaseWarm] || cfg.phases[phaseBurst] || cfg.phases[phaseRuntimes] {
		t, err := e.startTern(ctx, "tern-pool", cfg.poolSize)
		if err != nil {
			return err
		}
		if cfg.phases[phaseCold] {
			if res.cold, err = e.coldPhase(ctx, t); err != nil {
				return fmt.Errorf("cold phase: %w", err)
			}
		}
		if cfg.phases[phaseWarm] {
			if res.warm, err = e.warmPhase(ctx, t); err != nil {
				return fmt.Errorf("warm phase: %w", err)
			}
		}
		if cfg.phases[phaseBurst] {
			if res.burst, err = e.burstPhase(ctx, t); err != nil {
				return fmt.Errorf("burst phase: %w", err)
			}
		}
		if cfg.phases[phaseRuntimes] {
			if res.rt, err = e.runtimesPhase(ctx, t); err != nil {
				return fmt.Errorf("runtimes phase: %w", err)
			}
		}
		if t.Exited() {
			return fmt.Errorf("tern serve exited during the run:\n%s", benchkit.Tail(t.LogPath, 20))
		}
		e.stopTern(t)
	}

	// The events phase gets a fresh tern serve of its own.
	if cfg.phases[phaseEvents] {
		if res.ev, err = e.eventsPhase(ctx); err != nil {
			return fmt.Errorf("events phase: %w", err)
		}
	}

	// The metering phase gets two fresh ones, metering on and off.
	if cfg.phases[phaseMetering] {
		if res.mt, err = e.meteringPhase(ctx); err != nil {
			return fmt.Errorf("metering phase: %w", err)
		}
	}

	// Phase 4 gets a fresh tern serve with the pool off.
	if cfg.phases[phaseMemory] {
		if res.mem, err = e.memPhase(ctx); err != nil {
			return fmt.Errorf("memory phase: %w", err)
		}
	}

	report := e.report(&res)
	fmt.Print(report)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(report), 0o644); err != nil {
			return err
		}
		benchkit.Logf("wrote %s", cfg.out)
	}
	return nil
}

// startTern starts a tern serve of its own (data dir and log under
// tmp/name) with the given pool size.
func (e *env) startTern(ctx context.Context, name string, pool int) (*benchkit.Tern, error) {
	t, err := benchkit.StartTern(ctx, e.cs, benchkit.TernOptions{
		Bin: e.ternBin, Node: e.nodeBin, Dir: filepath.Join(e.tmp, name),
		Args: append([]string{"--pool-size", strconv.Itoa(pool)}, e.cfg.serveArgs...),
	})
	if err != nil {
		return nil, err
	}
	e.terns = append(e.terns, t)
	return t, nil
}

// stopTern stops t gracefully (it stops its instances), then kills any
// instance it left behind.
func (e *env) stopTern(t *benchkit.Tern) {
	if t.Exited() {
		return
	}
	e.cs.NoteOrphans(t.PID())
	t.Stop(15 * time.Second)
	e.api.CloseIdleConnections()
}

func (e *env) stopTerns() {
	for _, t := range e.terns {
		e.stopTern(t)
	}
}

// busyShare is the machine's busy CPU time as a share of all its CPUs over
// wall.
func busyShare(busy, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return float64(busy) / (float64(wall) * float64(runtime.NumCPU()))
}
