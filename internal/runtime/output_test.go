package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/runtime"
	"github.com/ternhq/tern/internal/testserver"
)

// startWith starts an instance of code with cfg (its Dir, Log and
// MaxResponseBytes filled in).
func startWith(t *testing.T, cfg runtime.Config, code string) *runtime.Instance {
	t.Helper()
	cfg.Dir, cfg.MaxResponseBytes, cfg.Log = t.TempDir(), 1<<20, testserver.Logger(t)
	l, err := runtime.NewLauncher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := testserver.WriteFunction(t, map[string]string{"index.js": code})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	inst, err := l.Start(ctx, runtime.Spec{Function: "fn", Version: 1, Runtime: "nodejs", Handler: "index.handler",
		CodeDir: dir, MemoryMB: 128, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Stop)
	return inst
}

// printJS prints event.n lines of 100 bytes (newline included), now or,
// with event.late, after answering (then it exits).
const printJS = `
const print = (n) => { for (let i = 0; i < n; i++) process.stdout.write(String(i).padStart(99, ".") + "\n"); };
exports.handler = async (e) => {
  if (e.late) { setTimeout(() => { print(e.n); process.exit(0); }, 50); return "later"; }
  print(e.n);
  return "now";
};`

// An invocation over its output limit keeps what fits; the entry saying
// how much was dropped comes before its END line.
func TestOutputLimitPerInvocation(t *testing.T) {
	col := &collector{}
	inst := startWith(t, runtime.Config{Logs: col, MaxOutputBytes: 10_000}, printJS)
	res, err := invoke(inst, `{"n":300}`, 20*time.Second)
	if err != nil || res.Error != nil {
		t.Fatalf("invoke: %v %+v", err, res)
	}
	msgs := col.messages()
	var out int
	for _, m := range msgs {
		if strings.HasPrefix(m, "stdout ") {
			out++
		}
	}
	if out != 100 {
		t.Errorf("%d lines kept, want the 100 that fit in 10000 bytes", out)
	}
	if n := len(msgs); n < 3 || !strings.HasSuffix(msgs[n-3], " 200 lines (20000 bytes) dropped: the invocation's output passed its limit") ||
		!strings.Contains(msgs[n-2], "END RequestId") {
		t.Errorf("last lines:\n%s", strings.Join(msgs[max(0, len(msgs)-3):], "\n"))
	}
	// The next invocation has a budget of its own.
	if _, err := invoke(inst, `{"n":50}`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := len(col.messages()) - len(msgs); got != 50+3 {
		t.Errorf("second invocation: %d entries, want START, 50 lines, END, REPORT", got)
	}
}

// Output printed after the answer counts on that invocation; what it
// dropped is marked once the output ends (here: the process exits).
func TestOutputLimitAfterAnswer(t *testing.T) {
	col := &collector{}
	inst := startWith(t, runtime.Config{Logs: col, MaxOutputBytes: 10_000}, printJS)
	if _, err := invoke(inst, `{"n":300,"late":true}`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inst.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the instance did not exit")
	}
	testserver.Eventually(t, 30*time.Second, "the dropped entry", func() bool {
		for _, m := range col.messages() {
			if strings.HasSuffix(m, " 200 lines (20000 bytes) dropped: the invocation's output passed its limit") {
				return true
			}
		}
		return false
	})
}

// A log that takes nothing (a Sink that never runs) holds the function in
// its writes; its timeout still kills it, Invoke returns, and what could
// not be stored is counted.
func TestTimeoutWithFullLog(t *testing.T) {
	sink := logs.NewSink(nil, 4096, testserver.Logger(t)) // never started: full at once
	inst := startWith(t, runtime.Config{Logs: sink}, `
exports.handler = async () => { for (;;) process.stdout.write("x".repeat(99) + "\n"); };`)
	const timeout = time.Second
	begin := time.Now()
	_, err := invoke(inst, `{}`, timeout)
	took := time.Since(begin)
	if !errors.Is(err, runtime.ErrTimeout) {
		t.Fatalf("invoke = %v, want a timeout", err)
	}
	// The deadline, the kill, a second for the readers to drain, a second
	// to count what is left: generous on a busy machine.
	if took > timeout+20*time.Second {
		t.Errorf("Invoke returned after %s", took)
	}
	stopped := make(chan struct{})
	go func() { inst.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("Stop of a killed instance does not return")
	}
	d := sink.Drops()
	if d[logs.DropStopped].Lines == 0 || d[logs.DropStopped].Bytes != 100*d[logs.DropStopped].Lines {
		t.Errorf("drops %+v: want the lines the instance could not store counted as stopped, 100 bytes each", d)
	}
	t.Logf("took %s; drops %s", took, fmt.Sprint(d))
}

// Output without a final newline is its invocation's: an entry of its
// own before END, never held for (or glued to) a later invocation's.
func TestOutputWithoutNewline(t *testing.T) {
	col := &collector{}
	inst := startWith(t, runtime.Config{Logs: col}, `
exports.handler = async (e) => { process.stdout.write("partial-" + e.i); if (e.nl) console.log("with-nl"); return e.i; };`)
	var rids []string
	for _, ev := range []string{`{"i":1}`, `{"i":2}`, `{"i":3,"nl":true}`} {
		inv := &runtime.Invocation{RequestID: runtime.NewRequestID(), Payload: []byte(ev), Deadline: time.Now().Add(20 * time.Second)}
		if res, err := inst.Invoke(context.Background(), inv, false); err != nil || res.Error != nil {
			t.Fatalf("invoke %s: %v %+v", ev, err, res)
		}
		rids = append(rids, inv.RequestID)
	}
	msgs := strings.Join(col.messages(), "\n")
	for n, want := range []string{
		"stdout " + rids[0] + " partial-1\nplatform " + rids[0] + " END",
		"stdout " + rids[1] + " partial-2\nplatform " + rids[1] + " END",
		"stdout " + rids[2] + " partial-3",
	} {
		if !strings.Contains(msgs, want) {
			t.Errorf("invocation %d: the log lacks %q:\n%s", n+1, want, msgs)
		}
	}
}
