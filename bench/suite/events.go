package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternhq/tern/bench/internal/benchkit"
	"github.com/ternhq/tern/internal/client"
)

// The events phase: asynchronous invocations (`X-Tern-Invocation-Type:
// Event`) next to synchronous ones of the same function, on a tern serve
// of its own.

const (
	evFunction = "asyncbench"
	evClients  = 16                    // concurrent clients of the throughput runs
	evLightN   = 200                   // invocations of each light-load series
	evPause    = 20 * time.Millisecond // between two light-load invocations
	evWarmN    = 256                   // unmeasured invocations of each kind first
	// A wait for handler runs gives up after evStall without a new one, or
	// evDrainMax after the first submit.
	evStall    = 15 * time.Second
	evDrainMax = 90 * time.Second
)

// Kinds of invocations, the "k" field of each event.
const (
	kindWarmSync   = "ws" // warm-up, synchronous
	kindWarmAsync  = "wa" // warm-up, asynchronous
	kindSyncTP     = "s"  // synchronous throughput run, + its round
	kindAsyncTP    = "a"  // asynchronous throughput run, + its round
	kindSyncLight  = "ls" // synchronous light-load series
	kindAsyncLight = "la" // asynchronous light-load series
)

// evHandlerJS is the function: for each event it appends one line to a file
// of its instance under $OUT (in a jail, where $OUT is out of sight, under
// the instance's own /tmp, which the bench reads through /proc/<pid>/root):
// the event's kind, number and send time (unix
// ms, from the client), when the handler started (unix ms with sub-ms
// digits, from performance.timeOrigin + performance.now()) and Date.now()
// right after, to check that the two clocks agree.
const evHandlerJS = `const fs = require("fs");
const path = require("path");
const dir = fs.existsSync(process.env.OUT) ? process.env.OUT : "/tmp";
const fd = fs.openSync(path.join(dir, "runs-" + process.env.AWS_LAMBDA_LOG_STREAM_NAME + ".log"), "a");
exports.handler = async (event) => {
  const start = performance.timeOrigin + performance.now();
  const now = Date.now();
  fs.writeSync(fd, event.k + " " + event.i + " " + event.sent + " " + start.toFixed(3) + " " + now + "\n");
  return { ok: true };
};
`

// evManifest is its tern.yaml, with $OUT to add.
const evManifest = "name: " + evFunction + `
runtime: nodejs
handler: index.handler
concurrency: 16
scale:
  max: 16
async:
  concurrency: 16
`

// evRun is one line of the handler's files: one run of the handler.
type evRun struct {
	kind  string
	id    int
	sent  float64 // unix ms, the client's clock
	start float64 // unix ms, node's performance clock
	now   float64 // Date.now() right after start
	file  string  // one per instance process
}

// evRuns reads the handler's files as they grow.
type evRuns struct {
	dir  string
	off  map[string]int64
	rest map[string][]byte // a line not finished yet, per file
	runs []evRun
	bad  int // lines that did not parse
}

func newEvRuns(dir string) *evRuns {
	return &evRuns{dir: dir, off: map[string]int64{}, rest: map[string][]byte{}}
}

// files lists the handler's files: those in dir, and those in the /tmp of
// every jailed process (one whose root is not this one's).
func (r *evRuns) files() ([]string, error) {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ent := range ents {
		out = append(out, filepath.Join(r.dir, ent.Name()))
	}
	root, err := os.Stat("/")
	if err != nil {
		return nil, err
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		dir := filepath.Join("/proc", p.Name(), "root")
		if fi, err := os.Stat(dir + "/"); err != nil || os.SameFile(fi, root) {
			continue
		}
		m, _ := filepath.Glob(filepath.Join(dir, "tmp", "runs-*.log"))
		out = append(out, m...)
	}
	return out, nil
}

// poll reads what the files gained since the last call.
func (r *evRuns) poll() error {
	names, err := r.files()
	if err != nil {
		return err
	}
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil && strings.HasPrefix(name, "/proc/") {
			continue // its instance exited meanwhile
		}
		if err != nil {
			return err
		}
		_, err = f.Seek(r.off[name], io.SeekStart)
		var b []byte
		if err == nil {
			b, err = io.ReadAll(f)
		}
		f.Close()
		if err != nil {
			return err
		}
		r.off[name] += int64(len(b))
		b = append(r.rest[name], b...)
		i := bytes.LastIndexByte(b, '\n')
		r.rest[name] = bytes.Clone(b[i+1:])
		if i < 0 {
			continue
		}
		for _, line := range strings.Split(string(b[:i]), "\n") {
			run, ok := parseEvRun(line)
			if !ok {
				r.bad++
				continue
			}
			run.file = name
			r.runs = append(r.runs, run)
		}
	}
	return nil
}

func parseEvRun(line string) (evRun, bool) {
	f := strings.Fields(line)
	if len(f) != 5 {
		return evRun{}, false
	}
	run := evRun{kind: f[0]}
	var errs [4]error
	run.id, errs[0] = strconv.Atoi(f[1])
	run.sent, errs[1] = strconv.ParseFloat(f[2], 64)
	run.start, errs[2] = strconv.ParseFloat(f[3], 64)
	run.now, errs[3] = strconv.ParseFloat(f[4], 64)
	return run, errors.Join(errs[:]...) == nil
}

// first returns, for each event of kind, its first run (by start time),
// and how many runs there were beyond those.
func (r *evRuns) first(kind string) (map[int]evRun, int) {
	out := map[int]evRun{}
	extra := 0
	for _, run := range r.runs {
		if run.kind != kind {
			continue
		}
		if prev, ok := out[run.id]; ok {
			extra++
			if prev.start <= run.start {
				continue
			}
		}
		out[run.id] = run
	}
	return out, extra
}

// ran counts the distinct events of kind that ran.
func (r *evRuns) ran(kind string) int {
	m, _ := r.first(kind)
	return len(m)
}

// evSeries is one set of invocations sent by the bench, and what became of
// them.
type evSeries struct {
	kind     string
	n        int
	ok       []bool          // answered 202 (async) or 200 (sync)
	rtt      []time.Duration // round trip of each answered request, sorted
	failed   int
	firstErr string
	t0       time.Time     // first request sent
	busy0    time.Duration // the machine's busy time then
	wall     time.Duration // first request sent → last answer
	busy     float64       // machine busy share over wall

	// Handler runs (for async: after waiting for them).
	ran      int           // distinct events that ran
	extra    int           // runs beyond one per event (redeliveries)
	lastRun  time.Duration // first request sent → start of the last handler run
	seenAll  time.Duration // first request sent → the bench saw all runs (0: never)
	lost     []int         // answered, not run by the end of the wait
	waitNote string        // why the wait stopped early
	toStart  []time.Duration
	execWall time.Duration // first request sent → the wait for runs ended
	execBusy float64       // machine busy share over execWall

	// CPU time over the series (for async, until its runs were seen):
	// the tern process, and its node processes (the function's instances
	// and the idle pool).
	ternCPU, nodeCPU time.Duration
}

// evCPU is tern's and its node processes' CPU time at one moment.
type evCPU struct{ tern, node benchkit.CPUSnapshot }

func readCPU(pid int) evCPU {
	return evCPU{benchkit.Snapshot([]int{pid}), benchkit.Snapshot(benchkit.ChildrenOf(pid))}
}

// cpuSince records the CPU tern and its node processes used since before.
func (s *evSeries) cpuSince(pid int, before evCPU) {
	now := readCPU(pid)
	s.ternCPU, s.nodeCPU = benchkit.CPUSince(before.tern, now.tern), benchkit.CPUSince(before.node, now.node)
}

// cpuShare is the share of one CPU tern and its node processes used over
// the series.
func (s *evSeries) cpuShare() string {
	span := s.wall
	if s.execWall > 0 {
		span = s.execWall
	}
	if span <= 0 {
		return "–"
	}
	return fmt.Sprintf("tern %.1f%%, node processes %.1f%%", 100*float64(s.ternCPU)/float64(span), 100*float64(s.nodeCPU)/float64(span))
}

// perInvocation is the server side's CPU time per answered invocation.
func (s *evSeries) perInvocation() string {
	k := s.accepted()
	if k == 0 {
		return "–"
	}
	return fmt.Sprintf("%s (tern %s + node %s)", benchkit.Us((s.ternCPU+s.nodeCPU)/time.Duration(k)),
		benchkit.Us(s.ternCPU/time.Duration(k)), benchkit.Us(s.nodeCPU/time.Duration(k)))
}

func (s *evSeries) accepted() int {
	k := 0
	for _, ok := range s.ok {
		if ok {
			k++
		}
	}
	return k
}

// eventsResult is phase 6.
type eventsResult struct {
	n int

	warmSync, warmAsync *evSeries

	rounds                int
	syncTP, asyncTP       []*evSeries // one per round
	syncLight, asyncLight *evSeries

	stats       *stats
	processes   int // tern's node processes after the throughput runs (instances and pool)
	deadLetters int
	dlqErr      string
	badLines    int
	clockLo     float64 // node's performance clock − Date.now(), ms: lowest
	clockHi     float64 // and highest seen (Date.now() counts whole ms)
	clockFiles  int
}

// eventsPhase starts a tern serve of its own, deploys the asyncbench
// function and measures, after an unmeasured warm-up of both paths, in
// each of cfg.asyncRounds rounds: N synchronous invocations from evClients
// clients (the baseline) and N asynchronous ones from as many clients,
// acceptance (202) and then the handler runs, the two in alternating order
// from round to round; then two light-load series, synchronous then
// asynchronous, of evLightN invocations one at a time, evPause apart,
// timed from the client's send to the handler's start.
func (e *env) eventsPhase(ctx context.Context) (*eventsResult, error) {
	t, err := e.startTern(ctx, "tern-events", e.cfg.poolSize)
	if err != nil {
		return nil, err
	}
	defer e.stopTern(t)
	res := &eventsResult{n: e.cfg.asyncEvents, rounds: e.cfg.asyncRounds}

	out := filepath.Join(e.tmp, "events-runs")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	manifest := evManifest + "environment:\n  OUT: " + strconv.Quote(out) + "\n"
	pkg, err := zipPackage(zipEntry{"tern.yaml", []byte(manifest), 0o644}, zipEntry{"index.js", []byte(evHandlerJS), 0o644})
	if err != nil {
		return nil, err
	}
	if _, err := e.deploy(ctx, t, pkg); err != nil {
		return nil, fmt.Errorf("deploy %s: %w", evFunction, err)
	}
	tr := &http.Transport{MaxIdleConns: 2 * evClients, MaxIdleConnsPerHost: 2 * evClients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := client.New(t.URL, t.Token)
	c.HTTP = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	runs := newEvRuns(out)

	invokeSync := func(ctx context.Context, payload []byte) error {
		_, err := c.Invoke(ctx, evFunction, payload)
		return err
	}
	invokeAsync := func(ctx context.Context, payload []byte) error {
		_, err := c.InvokeAsync(ctx, evFunction, payload, "")
		return err
	}

	benchkit.Logf("events: warm-up, %d synchronous and %d asynchronous invocations from %d clients", evWarmN, evWarmN, evClients)
	res.warmSync = evFire(ctx, kindWarmSync, evWarmN, evClients, invokeSync)
	res.warmAsync = evFire(ctx, kindWarmAsync, evWarmN, evClients, invokeAsync)
	if err := waitRuns(ctx, runs, res.warmAsync); err != nil {
		return nil, err
	}
	if err := ternAlive(t); err != nil {
		return nil, err
	}

	n := res.n
	syncRound := func(r int) {
		benchkit.Logf("events: round %d: %d synchronous invocations from %d clients", r, n, evClients)
		cpu0 := readCPU(t.PID())
		st := evFire(ctx, kindSyncTP+strconv.Itoa(r), n, evClients, invokeSync)
		st.cpuSince(t.PID(), cpu0)
		res.syncTP = append(res.syncTP, st)
		benchkit.Logf("events: round %d: %d answered 200 in %s (%.0f/s), %d failed", r, st.accepted(), st.wall.Round(time.Millisecond),
			rate(st.accepted(), st.wall), st.failed)
	}
	asyncRound := func(r int) error {
		benchkit.Logf("events: round %d: %d asynchronous invocations from %d clients", r, n, evClients)
		cpu0 := readCPU(t.PID())
		at := evFire(ctx, kindAsyncTP+strconv.Itoa(r), n, evClients, invokeAsync)
		res.asyncTP = append(res.asyncTP, at)
		benchkit.Logf("events: round %d: %d accepted (202) in %s (%.0f/s), %d failed; waiting for the handler runs", r, at.accepted(),
			at.wall.Round(time.Millisecond), rate(at.accepted(), at.wall), at.failed)
		if err := waitRuns(ctx, runs, at); err != nil {
			return err
		}
		at.cpuSince(t.PID(), cpu0)
		benchkit.Logf("events: round %d: %d of %d accepted events ran, the last %s after the first submit (%.0f/s); %d lost, %d extra runs",
			r, at.ran, at.accepted(), at.lastRun.Round(time.Millisecond), rate(at.ran, at.lastRun), len(at.lost), at.extra)
		return nil
	}
	for r := 1; r <= res.rounds; r++ {
		if r%2 == 1 {
			syncRound(r)
		}
		if err := asyncRound(r); err != nil {
			return nil, err
		}
		if r%2 == 0 {
			syncRound(r)
		}
		if err := ternAlive(t); err != nil {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
	}
	res.processes = len(benchkit.ChildrenOf(t.PID()))

	benchkit.Logf("events: light load, %d synchronous then %d asynchronous invocations one at a time, %s apart", evLightN, evLightN, evPause)
	cpu0 := readCPU(t.PID())
	res.syncLight = evSequence(ctx, kindSyncLight, evLightN, evPause, invokeSync)
	res.syncLight.cpuSince(t.PID(), cpu0)
	cpu0 = readCPU(t.PID())
	res.asyncLight = evSequence(ctx, kindAsyncLight, evLightN, evPause, invokeAsync)
	if err := waitRuns(ctx, runs, res.asyncLight); err != nil {
		return nil, err
	}
	res.asyncLight.cpuSince(t.PID(), cpu0)
	if err := runs.poll(); err != nil {
		return nil, err
	}
	// Late runs count too.
	for _, s := range append(append([]*evSeries{res.syncLight, res.asyncLight}, res.syncTP...), res.asyncTP...) {
		settle(runs, s)
	}
	benchkit.Logf("events: light load, send → handler start p50: sync %s, async %s",
		benchkit.Ms(benchkit.Percentile(res.syncLight.toStart, 50)), benchkit.Ms(benchkit.Percentile(res.asyncLight.toStart, 50)))
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	if err := ternAlive(t); err != nil {
		return nil, err
	}

	res.badLines = runs.bad
	res.clockLo, res.clockHi, res.clockFiles = clockCheck(runs.runs)
	if res.stats, err = e.stats(ctx, t, evFunction); err != nil {
		return nil, err
	}
	dl, err := c.DeadLetters(ctx, evFunction, 1000)
	if err != nil {
		res.dlqErr = err.Error()
	}
	res.deadLetters = len(dl)
	return res, nil
}

// ternAlive fails if t has exited.
func ternAlive(t *benchkit.Tern) error {
	if t.Exited() {
		return fmt.Errorf("tern serve exited during the events phase:\n%s", benchkit.Tail(t.LogPath, 20))
	}
	return nil
}

// evPayload is an event: its kind, number and send time.
func evPayload(kind string, i int, sent time.Time) []byte {
	b := make([]byte, 0, 64)
	b = append(b, `{"k":"`...)
	b = append(b, kind...)
	b = append(b, `","i":`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `,"sent":`...)
	b = strconv.AppendFloat(b, unixMs(sent), 'f', 3, 64)
	return append(b, '}')
}

func unixMs(t time.Time) float64 { return float64(t.UnixNano()) / 1e6 }

// evFire sends events 0..n-1 of kind from c clients, each sending its next
// one as soon as the previous one is answered.
func evFire(ctx context.Context, kind string, n, c int, send func(context.Context, []byte) error) *evSeries {
	s := &evSeries{kind: kind, n: n, ok: make([]bool, n)}
	var next atomic.Int64
	rtts := make([][]time.Duration, c)
	errs := make([]error, c)
	fails := make([]int, c)
	var wg sync.WaitGroup
	s.busy0 = benchkit.MachineBusy()
	s.t0 = time.Now()
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				sent := time.Now()
				err := send(ctx, evPayload(kind, i, sent))
				if err != nil {
					fails[w]++
					if errs[w] == nil {
						errs[w] = err
					}
					continue
				}
				rtts[w] = append(rtts[w], time.Since(sent))
				s.ok[i] = true
			}
		}()
	}
	wg.Wait()
	s.wall = time.Since(s.t0)
	s.busy = busyShare(benchkit.MachineBusy()-s.busy0, s.wall)
	for w := range c {
		s.rtt = append(s.rtt, rtts[w]...)
		s.failed += fails[w]
		if errs[w] != nil && s.firstErr == "" {
			s.firstErr = errs[w].Error()
		}
	}
	s.rtt = benchkit.Sorted(s.rtt)
	if s.firstErr != "" {
		benchkit.Logf("events: %s: %d failed; first: %s", kind, s.failed, s.firstErr)
	}
	return s
}

// evSequence sends n events of kind one at a time, pause apart.
func evSequence(ctx context.Context, kind string, n int, pause time.Duration, send func(context.Context, []byte) error) *evSeries {
	s := &evSeries{kind: kind, n: n, ok: make([]bool, n)}
	s.busy0 = benchkit.MachineBusy()
	s.t0 = time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		sent := time.Now()
		if err := send(ctx, evPayload(kind, i, sent)); err != nil {
			s.failed++
			if s.firstErr == "" {
				s.firstErr = err.Error()
			}
		} else {
			s.rtt = append(s.rtt, time.Since(sent))
			s.ok[i] = true
		}
		if benchkit.Sleep(ctx, pause) != nil {
			break
		}
	}
	s.wall = time.Since(s.t0)
	s.busy = busyShare(benchkit.MachineBusy()-s.busy0, s.wall)
	s.rtt = benchkit.Sorted(s.rtt)
	if s.firstErr != "" {
		benchkit.Logf("events: %s: %d failed; first: %s", kind, s.failed, s.firstErr)
	}
	return s
}

// waitRuns polls the handler's files until every accepted event of s ran,
// no new run came for evStall, or evDrainMax passed since s started; then
// it fills in s's run figures and the machine's busy share since s started.
func waitRuns(ctx context.Context, runs *evRuns, s *evSeries) error {
	want := s.accepted()
	last, lastAt := -1, time.Now()
	for {
		if err := runs.poll(); err != nil {
			return err
		}
		got := runs.ran(s.kind)
		if got >= want {
			s.seenAll = time.Since(s.t0)
			break
		}
		if got != last {
			last, lastAt = got, time.Now()
		}
		if time.Since(lastAt) > evStall {
			s.waitNote = fmt.Sprintf("no new run for %s (%d of %d accepted events ran)", evStall, got, want)
			break
		}
		if time.Since(s.t0) > evDrainMax {
			s.waitNote = fmt.Sprintf("still not all run %s after the first submit (%d of %d accepted events ran)", evDrainMax, got, want)
			break
		}
		if err := benchkit.Sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	s.execWall = time.Since(s.t0)
	s.execBusy = busyShare(benchkit.MachineBusy()-s.busy0, s.execWall)
	if s.waitNote != "" {
		benchkit.Logf("events: %s: %s", s.kind, s.waitNote)
	}
	settle(runs, s)
	return nil
}

// settle fills in s's run figures from the runs read so far.
func settle(runs *evRuns, s *evSeries) {
	m, extra := runs.first(s.kind)
	s.ran, s.extra, s.lost, s.toStart = len(m), extra, nil, nil
	t0 := unixMs(s.t0)
	var lastStart float64
	for _, run := range m {
		lastStart = max(lastStart, run.start)
		s.toStart = append(s.toStart, time.Duration((run.start-run.sent)*1e6))
	}
	s.toStart = benchkit.Sorted(s.toStart)
	if len(m) > 0 {
		s.lastRun = time.Duration((lastStart - t0) * 1e6)
	}
	for i, ok := range s.ok {
		if _, ran := m[i]; ok && !ran {
			s.lost = append(s.lost, i)
		}
	}
}

// clockCheck compares node's performance clock with Date.now() over every
// run: performance.timeOrigin + performance.now() − Date.now() lies in
// [d, d+1) ms when the former is off by d, since Date.now() drops the
// sub-millisecond part.
func clockCheck(runs []evRun) (lo, hi float64, files int) {
	seen := map[string]bool{}
	for i, run := range runs {
		d := run.start - run.now
		if i == 0 || d < lo {
			lo = d
		}
		if i == 0 || d > hi {
			hi = d
		}
		seen[run.file] = true
	}
	return lo, hi, len(seen)
}

// reportEvents writes section 6 and returns busy with its rows added.
func (e *env) reportEvents(b *strings.Builder, ev *eventsResult, busy []busyRow) []busyRow {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	st, at := ev.syncTP, ev.asyncTP
	sl, al := ev.syncLight, ev.asyncLight
	p("\n### 6. Asynchronous invocations (events)\n\n")
	p("A fresh `tern serve --pool-size %d` (data dir and JetStream store of its own). One node function, `%s` "+
		"(`concurrency: 16`, `scale.max: 16`, `async.concurrency: 16`), whose handler appends, per event, the time it started "+
		"(`performance.timeOrigin + performance.now()`, unix ms) and the event's `sent` field (the client's send time, unix ms) "+
		"to a file of its process; the bench reads those files to know when each event ran and that all ran. "+
		"Asynchronous: `POST /v1/functions/%s/invoke` with `X-Tern-Invocation-Type: Event`, answered 202 once the event is stored in JetStream; "+
		"synchronous (the baseline): the same request without the header, answered 200 with the function's result. "+
		"Each request from internal/client over keep-alive connections, with the admin token. "+
		"Unmeasured warm-up first: %d synchronous and %d asynchronous invocations from %d clients (%d and %d of the latter ran).\n\n",
		e.cfg.poolSize, evFunction, evFunction, evWarmN, evWarmN, evClients, ev.warmAsync.accepted(), ev.warmAsync.ran)

	var sRate, aRate, xRate, rRate, xrRate []float64 // per round: sync/s, accepted/s, executed/s, ratios
	var sAll, aAll evSeries                          // all rounds pooled
	for r := range st {
		sRate = append(sRate, rate(st[r].accepted(), st[r].wall))
		aRate = append(aRate, rate(at[r].accepted(), at[r].wall))
		xRate = append(xRate, rate(at[r].ran, at[r].lastRun))
		rRate = append(rRate, aRate[r]/sRate[r])
		xrRate = append(xrRate, xRate[r]/sRate[r])
		for _, x := range []struct{ all, s *evSeries }{{&sAll, st[r]}, {&aAll, at[r]}} {
			x.all.n += x.s.n
			x.all.ok = append(x.all.ok, x.s.ok...)
			x.all.rtt = append(x.all.rtt, x.s.rtt...)
			x.all.ran += x.s.ran
			x.all.extra += x.s.extra
			x.all.ternCPU += x.s.ternCPU
			x.all.nodeCPU += x.s.nodeCPU
		}
	}
	sAll.rtt, aAll.rtt = benchkit.Sorted(sAll.rtt), benchkit.Sorted(aAll.rtt)
	medRange := func(xs []float64) string {
		return fmt.Sprintf("**%.0f** (%.0f–%.0f)", median(xs), slices.Min(xs), slices.Max(xs))
	}
	ratioRange := func(a, b, per []float64) string {
		return fmt.Sprintf("**%s** (per round %.2f–%.2f×)", ratio(median(a), median(b)), slices.Min(per), slices.Max(per))
	}
	pq := func(ds []time.Duration, q float64) string { return benchkit.Ms(benchkit.Percentile(ds, q)) }
	pr := func(a, b []time.Duration, q float64) string {
		return ratio(float64(benchkit.Percentile(a, q)), float64(benchkit.Percentile(b, q)))
	}
	p("%d rounds; in each, %d invocations from %d clients (each sends its next request when the previous one is answered) of either kind, "+
		"sync first in odd rounds, async first in even ones; the async run's handler runs are waited for before the next run starts. "+
		"Rates: median over the rounds (lowest–highest).\n\n", ev.rounds, ev.n, evClients)
	p("| %d × %d invocations from %d clients | async (Event) | sync baseline | async ÷ sync |\n|---|---:|---:|---:|\n", ev.rounds, ev.n, evClients)
	p("| answered (202 / 200) | %d of %d | %d of %d | |\n", aAll.accepted(), aAll.n, sAll.accepted(), sAll.n)
	p("| **accepted/s (async) vs invocations/s (sync)** | %s | %s | %s |\n", medRange(aRate), medRange(sRate), ratioRange(aRate, sRate, rRate))
	p("| **executed/s (async, end to end) vs invocations/s (sync)** | %s | %s | %s |\n", medRange(xRate), medRange(sRate), ratioRange(xRate, sRate, xrRate))
	p("| round trip p50, all rounds | %s | %s | %s |\n", pq(aAll.rtt, 50), pq(sAll.rtt, 50), pr(aAll.rtt, sAll.rtt, 50))
	p("| round trip p99, all rounds | %s | %s | %s |\n", pq(aAll.rtt, 99), pq(sAll.rtt, 99), pr(aAll.rtt, sAll.rtt, 99))
	p("| handler runs: distinct events; extra runs | %d; %d | %d; %d | |\n", aAll.ran, aAll.extra, sAll.ran, sAll.extra)
	p("| server-side CPU per invocation, all rounds (async: until all runs were seen) | %s | %s | %s |\n", aAll.perInvocation(), sAll.perInvocation(),
		ratio(float64(aAll.ternCPU+aAll.nodeCPU)/float64(max(aAll.accepted(), 1)), float64(sAll.ternCPU+sAll.nodeCPU)/float64(max(sAll.accepted(), 1))))

	p("\n| round | sync: answered in | invocations/s | async: accepted in | accepted/s | last run started after | executed/s | all runs seen after | machine busy: sync, async accepting, async until all seen |\n")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for r := range st {
		p("| %d | %s | %.0f | %s | %.0f | %s | %.0f | %s | %.0f%%, %.0f%%, %.0f%% |\n", r+1, st[r].wall.Round(time.Millisecond), sRate[r],
			at[r].wall.Round(time.Millisecond), aRate[r], at[r].lastRun.Round(time.Millisecond), xRate[r], seenAll(at[r]),
			100*st[r].busy, 100*at[r].busy, 100*at[r].execBusy)
		busy = append(busy,
			busyRow{fmt.Sprintf("6. events round %d: sync", r+1), st[r].busy, st[r].wall},
			busyRow{fmt.Sprintf("6. events round %d: async accepting", r+1), at[r].busy, at[r].wall},
			busyRow{fmt.Sprintf("6. events round %d: async, first submit → all runs seen", r+1), at[r].execBusy, at[r].execWall})
	}
	p("\n| light load: %d one at a time, %s apart | n | p50 | p95 | p99 | max |\n|---|---:|---:|---:|---:|---:|\n", evLightN, evPause)
	row := func(name string, ds []time.Duration) {
		if len(ds) == 0 {
			p("| %s | 0 | – | – | – | – |\n", name)
			return
		}
		p("| %s | %d | %s | %s | %s | %s |\n", name, len(ds), benchkit.Ms(benchkit.Percentile(ds, 50)), benchkit.Ms(benchkit.Percentile(ds, 95)),
			benchkit.Ms(benchkit.Percentile(ds, 99)), benchkit.Ms(ds[len(ds)-1]))
	}
	row("**async: client send → handler start**", al.toStart)
	row("**sync (baseline): client send → handler start**", sl.toStart)
	row("async: submit round trip (→ 202)", al.rtt)
	row("sync: round trip (→ 200, handler included)", sl.rtt)
	if len(al.toStart) > 0 && len(sl.toStart) > 0 {
		q := func(ds []time.Duration, x float64) time.Duration { return benchkit.Percentile(ds, x) }
		p("| async − sync, send → handler start | | %+.1f ms | %+.1f ms | %+.1f ms | |\n",
			evMs(q(al.toStart, 50)-q(sl.toStart, 50)), evMs(q(al.toStart, 95)-q(sl.toStart, 95)), evMs(q(al.toStart, 99)-q(sl.toStart, 99)))
		p("| async ÷ sync, send → handler start | | %s | %s | %s | |\n",
			ratio(float64(q(al.toStart, 50)), float64(q(sl.toStart, 50))), ratio(float64(q(al.toStart, 95)), float64(q(sl.toStart, 95))),
			ratio(float64(q(al.toStart, 99)), float64(q(sl.toStart, 99))))
	}

	p("\n- accepted/s = 202 answers ÷ (first submit sent → last 202 received); sync invocations/s likewise with 200s; " +
		"executed/s = distinct events run ÷ (first submit sent → the start of the last handler run): the async path end to end, " +
		"acceptance and execution overlapping; \"all runs seen\" is when the bench, polling the files every 10 ms, had seen them all\n")
	p("- send → handler start subtracts the client's clock (Go, CLOCK_REALTIME) from node's `performance.timeOrigin + performance.now()`; "+
		"across %d instance process(es) and every run, that clock minus `Date.now()` (whole ms of the same realtime clock) lay in [%.3f, %.3f] ms, "+
		"i.e. the two agree to within about %.3f ms\n", ev.clockFiles, ev.clockLo, ev.clockHi, max(-ev.clockLo, ev.clockHi-1, 0))
	p("- percentiles are nearest-rank; with %d values p99 is the %s sorted value\n", evLightN, ordinal(rank(evLightN, 99)))
	p("- light load, share of one CPU used over the series: async %s (machine busy %.0f%%); sync %s (machine busy %.0f%%)\n",
		al.cpuShare(), 100*al.execBusy, sl.cpuShare(), 100*sl.busy)
	p("- CPU = user+system time from /proc/<pid>/stat (%s ticks) of tern serve and of its node processes (the function's instances and the idle pool), "+
		"over the series; for async until the bench saw all runs; machine busy = all CPUs, every process on the machine (load average in the header)\n", benchkit.ClockTick)
	if s := ev.stats; s != nil {
		c := s.Counts
		p("- Tern's counts for `%s` at the end (`GET /v1/functions/%s/stats`): %d invocations, %d cold, %d warm, %d queued, %d throttled, "+
			"%d function errors, %d timeouts, %d crashes; %d instance(s) of the function; tern had %d node processes after the throughput runs (instances and pool)\n",
			evFunction, evFunction, c.Invocations, c.ColdStarts, c.WarmStarts, c.Queued, c.Throttled, c.FunctionErrors, c.Timeouts, c.Crashes,
			len(s.Instances), ev.processes)
	}
	dlq := fmt.Sprintf("%d", ev.deadLetters)
	if ev.dlqErr != "" {
		dlq = "unknown (" + ev.dlqErr + ")"
	}
	p("- dead letters of `%s` at the end: %s\n", evFunction, dlq)
	problems := false
	type named struct {
		name string
		s    *evSeries
		run  bool // runs are counted for it
	}
	all := []named{{"warm-up, sync", ev.warmSync, false}, {"warm-up, async", ev.warmAsync, true}, {"light load, sync", sl, true}, {"light load, async", al, true}}
	for r := range st {
		all = append(all, named{fmt.Sprintf("round %d, sync", r+1), st[r], true}, named{fmt.Sprintf("round %d, async", r+1), at[r], true})
	}
	for _, x := range all {
		s := x.s
		if s.failed > 0 {
			problems = true
			p("- %s: %d of %d requests failed; first: %s\n", x.name, s.failed, s.n, s.firstErr)
		}
		if !x.run {
			continue
		}
		if len(s.lost) > 0 {
			problems = true
			p("- **%s: %d accepted events never ran** (%s); the first ids: %v\n", x.name, len(s.lost), s.waitNote, s.lost[:min(len(s.lost), 10)])
		}
		if s.extra > 0 {
			problems = true
			p("- %s: %d handler runs beyond one per event (redeliveries)\n", x.name, s.extra)
		}
	}
	if ev.badLines > 0 {
		problems = true
		p("- %d lines of the handler's files did not parse\n", ev.badLines)
	}
	if !problems {
		p("- every request was answered 202/200, every accepted event ran exactly once\n")
	}
	return append(busy,
		busyRow{"6. events: light load, sync", sl.busy, sl.wall},
		busyRow{"6. events: light load, async", al.execBusy, al.execWall})
}

// rate is k per second of d.
func rate(k int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(k) / d.Seconds()
}

// median is the lower median of xs.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

func evMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func seenAll(s *evSeries) string {
	if s.seenAll == 0 {
		return "NOT (" + s.waitNote + ")"
	}
	return s.seenAll.Round(time.Millisecond).String()
}
