package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/archive"
	"github.com/ternhq/tern/internal/auth"
	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/events"
	"github.com/ternhq/tern/internal/testserver"
)

// lineRecorderJS records one line per event with the collector at
// $RECORD_URL: "a:<n>" for an async event {"n": n}, "q:<body>" for each
// record of a queue batch, and the tick's time for a scheduled event.
const lineRecorderJS = testserver.RecordJS + `
exports.handler = async (event) => {
  if (event.Records) {
    for (const r of event.Records) await record("q:" + r.body);
    return {batchItemFailures: []};
  }
  if (event["detail-type"] === "Scheduled Event") {
    await record(event.time);
    return {ok: true};
  }
  await record("a:" + event.n);
  return {ok: true};
};`

// TestDurabilityAcrossSIGKILL kills `tern serve` with SIGKILL while async
// events and queue messages stream in, restarts it on the same data dir,
// and checks that every submission the server accepted runs at least once.
func TestDurabilityAcrossSIGKILL(t *testing.T) {
	requireNode(t)
	const total = 1000 // of each kind
	bin := buildTern(t)
	data := t.TempDir()
	port := freePort(t)
	srv := startTern(t, bin, "first run", "--listen", "127.0.0.1:"+port, "--data-dir", data)
	c := client.New(srv.url, srv.token(t))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	if _, err := c.CreateTopic(ctx, events.TopicConfig{Name: "jobs"}); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	out := testserver.NewCollector(t)
	deployLineRecorder(ctx, t, c, "rec", out.URL, "scale: {max: 4}\nasync: {retries: 2, backoff: 1s, concurrency: 4}\n"+
		"triggers:\n  - queue: {topic: jobs, batch: 10, window: 100ms, maxReceives: 5}\n")

	submit := map[string]func(i int) error{
		"a": func(i int) error {
			_, err := c.InvokeAsync(ctx, "rec", []byte(fmt.Sprintf(`{"n":%d}`, i)), "")
			return err
		},
		"q": func(i int) error {
			_, err := c.Publish(ctx, "jobs", []byte(strconv.Itoa(i)), nil)
			return err
		},
	}
	accepted := map[string]*acceptance{"a": newAcceptance(total), "q": newAcceptance(total)}

	// Submit everything once while the server is killed mid-stream.
	var wg sync.WaitGroup
	for kind, send := range submit {
		wg.Go(func() { accepted[kind].submitOnce(send) })
	}
	start := time.Now()
	for accepted["a"].count()+accepted["q"].count() < 2*total/3 && time.Since(start) < 10*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	srv.kill(t)
	wg.Wait()
	before := accepted["a"].count() + accepted["q"].count()
	t.Logf("killed after %s with %d async events and %d queue messages accepted",
		time.Since(start).Round(time.Millisecond), accepted["a"].count(), accepted["q"].count())
	if before == 2*total {
		t.Fatal("every submission was accepted before the kill: the kill was not mid-stream")
	}

	srv = startTern(t, bin, "after SIGKILL", "--listen", "127.0.0.1:"+port, "--data-dir", data)
	for kind, send := range submit {
		wg.Go(func() { accepted[kind].submitUntilAccepted(ctx, send) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("could not submit everything after the restart: %v", ctx.Err())
	}

	// Every accepted submission runs at least once; duplicates are allowed.
	var seen map[string]int
	missing := func() []string {
		seen = readLines(t, out)
		var m []string
		for kind := range submit {
			for i := range total {
				if seen[kind+":"+strconv.Itoa(i)] == 0 {
					m = append(m, kind+":"+strconv.Itoa(i))
				}
			}
		}
		return m
	}
	deadline := time.Now().Add(60 * time.Second)
	for m := missing(); len(m) > 0; m = missing() {
		if time.Now().After(deadline) {
			t.Fatalf("%d accepted submissions never ran, such as %v", len(m), m[:min(len(m), 20)])
		}
		time.Sleep(100 * time.Millisecond)
	}
	lines, dups := 0, map[string]int{}
	for kind := range submit {
		for i := range total {
			n := seen[kind+":"+strconv.Itoa(i)]
			lines += n
			if n > 1 {
				dups[kind] += n - 1
			}
		}
	}
	t.Logf("all %d submissions ran (%d accepted before the kill) in %s: %d runs, duplicates: %d async, %d queue",
		2*total, before, time.Since(start).Round(time.Millisecond), lines, dups["a"], dups["q"])
	srv.stop(t)
}

// TestScheduleOncePerTickAcrossServers runs two servers on one NATS (A's
// embedded one) and checks that a rate(1 second) schedule fires once per
// tick, not once per server.
func TestScheduleOncePerTickAcrossServers(t *testing.T) {
	requireNode(t)
	bin := buildTern(t)
	dataA, dataB := t.TempDir(), t.TempDir()
	natsPort := freePort(t)
	a := startTern(t, bin, "server A", "--listen", "127.0.0.1:"+freePort(t), "--data-dir", dataA,
		"--nats-listen", "127.0.0.1:"+natsPort)
	// A's client port answers only clients with its token.
	natsToken, err := os.ReadFile(filepath.Join(dataA, "nats.token"))
	if err != nil {
		t.Fatal(err)
	}
	b := startTern(t, bin, "server B", "--listen", "127.0.0.1:"+freePort(t), "--data-dir", dataB,
		"--nats-url", "nats://"+strings.TrimSpace(string(natsToken))+"@127.0.0.1:"+natsPort)
	ca, cb := client.New(a.url, a.token(t)), client.New(b.url, b.token(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	out := testserver.NewCollector(t)
	deployLineRecorder(ctx, t, ca, "tick", out.URL, "triggers:\n  - schedule: rate(1 second)\n")
	testserver.Eventually(t, 10*time.Second, "server B to know the function and its schedule", func() bool {
		if _, err := cb.Get(ctx, "tick"); err != nil {
			return false
		}
		ov, err := cb.Events(ctx)
		return err == nil && len(ov.Schedules) == 1 && ov.Schedules[0].Function == "tick"
	})
	// Both servers now schedule the function: six more runs is about 6 s.
	already := len(readLines(t, out))
	testserver.Eventually(t, 20*time.Second, "six more runs of the schedule", func() bool {
		n := 0
		for _, c := range readLines(t, out) {
			n += c
		}
		return n >= already+6
	})
	b.stop(t)
	a.stop(t)

	ticks := readLines(t, out)
	for tick, n := range ticks {
		if _, err := time.Parse(time.RFC3339, tick); err != nil {
			t.Errorf("line %q is not an RFC 3339 tick time", tick)
		}
		if n > 1 {
			t.Errorf("tick %s ran %d times", tick, n)
		}
	}
	if len(ticks) < 4 {
		t.Errorf("%d distinct ticks ran, want at least 4: %v", len(ticks), ticks)
	}
	t.Logf("%d distinct ticks ran", len(ticks))
}

func requireNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH")
	}
}

// buildTern builds the tern binary into a temp dir.
func buildTern(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tern")
	build := exec.Command("go", "build", "-o", bin, "github.com/ternhq/tern/cmd/tern")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// ternProc is a `tern serve` child process.
type ternProc struct {
	cmd     *exec.Cmd
	url     string
	dataDir string
	stderr  *syncBuffer
	exited  chan error    // receives cmd.Wait's result once
	gone    chan struct{} // closed once it exited
}

// flagValue returns the value following name in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// startTern starts `tern serve` with args (which must include --listen
// and --data-dir)
// and waits for /healthz. Its log is printed, under name, if the test
// fails; a process still running when the test ends is stopped (SIGTERM,
// so that it unmounts its jails; SIGKILL after 15 s).
func startTern(t *testing.T, bin, name string, args ...string) *ternProc {
	t.Helper()
	p := &ternProc{url: "http://" + flagValue(args, "--listen"), dataDir: flagValue(args, "--data-dir"),
		stderr: &syncBuffer{}, exited: make(chan error, 1), gone: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"serve"}, args...)...)
	p.cmd.Stderr = p.stderr
	p.cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "TERN_TOKEN=", "TERN_NATS_URL=", "TERN_DATA_DIR=")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		close(p.gone)
		p.exited <- err
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM) // no-op once it exited
		select {
		case <-p.gone:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("log of tern serve (%s):\n%s", name, p.stderr.String())
		}
	})
	c := client.New(p.url, "")
	testserver.Eventually(t, 20*time.Second, "tern serve ("+name+") to answer /healthz", func() bool {
		return c.Healthy(context.Background())
	})
	return p
}

// token reads the admin token the server made in its data dir.
func (p *ternProc) token(t *testing.T) string {
	t.Helper()
	tok, err := auth.Load(auth.TokenPath(p.dataDir))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *ternProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("tern serve did not die on SIGKILL")
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *ternProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("tern serve exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tern serve did not stop on SIGTERM")
	}
}

// deployLineRecorder deploys lineRecorderJS as function name recording
// with the collector at recordURL, with extra manifest lines.
func deployLineRecorder(ctx context.Context, t *testing.T, c *client.Client, name, recordURL, extra string) {
	t.Helper()
	m := fmt.Sprintf("name: %s\nruntime: nodejs\nhandler: index.handler\ntimeout: 5s\nenvironment: {RECORD_URL: %q}\n%s", name, recordURL, extra)
	dir := testserver.WriteFunction(t, map[string]string{"tern.yaml": m, "index.js": lineRecorderJS})
	var pkg bytes.Buffer
	if _, err := archive.Build(dir, &pkg); err != nil {
		t.Fatalf("build package: %v", err)
	}
	if _, err := c.Deploy(ctx, &pkg); err != nil {
		t.Fatalf("deploy %s: %v", name, err)
	}
}

// readLines counts the lines the collector received so far.
func readLines(t *testing.T, c *testserver.Collector) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, line := range c.Lines() {
		counts[line]++
	}
	return counts
}

// acceptance records which of n submissions (0..n-1) the server accepted.
type acceptance struct {
	ok []atomic.Bool
	n  atomic.Int64
}

func newAcceptance(n int) *acceptance { return &acceptance{ok: make([]atomic.Bool, n)} }

func (a *acceptance) count() int { return int(a.n.Load()) }

func (a *acceptance) accept(i int) {
	a.ok[i].Store(true)
	a.n.Add(1)
}

// submitOnce tries every submission once, four at a time, and stops at
// the first failure of each sender (the server is gone).
func (a *acceptance) submitOnce(send func(int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(a.ok); i = int(next.Add(1) - 1) {
				if send(i) != nil {
					return
				}
				a.accept(i)
			}
		})
	}
	wg.Wait()
}

// submitUntilAccepted retries every submission not yet accepted until it
// is, or ctx ends.
func (a *acceptance) submitUntilAccepted(ctx context.Context, send func(int) error) {
	for i := range a.ok {
		for !a.ok[i].Load() && ctx.Err() == nil {
			if send(i) == nil {
				a.accept(i)
				continue
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}
