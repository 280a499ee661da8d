package framedtest

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// VmRSS returns the resident set size of process pid in KiB, from
// /proc/<pid>/status.
func VmRSS(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", line, err)
			}
			return kb
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// TraceOf is the trace id WarmRun sends with invocation i: a new one each
// time, as Tern sends.
func TraceOf(i int) string {
	return fmt.Sprintf("Root=1-%08x-%024x;Sampled=1", i, i*7919)
}

// WarmRun sends n invocations of event to a specialised runtime, batch at a
// time in one write (batch at most its concurrency, or any with
// concurrency 1, whose bootstrap buffers them), each with a new id and
// trace id (TraceOf). Every answer must be a RESPONSE whose body is the
// trace id as a JSON string: the handler returns _X_AMZN_TRACE_ID.
func (f *Runtime) WarmRun(t testing.TB, start, n, batch int, event string) {
	t.Helper()
	var out []byte
	want := make(map[string]string, batch)
	for i := start; i < start+n; {
		out = out[:0]
		clear(want)
		deadline := time.Now().Add(WaitTimeout).UnixMilli()
		for ; len(want) < batch && i < start+n; i++ {
			id := "warm-" + strconv.Itoa(i)
			trace := TraceOf(i)
			header := fmt.Appendf(nil, `{"id":%q,"deadline":%d,"arn":%q,"trace":%q}`, id, deadline, ARN, trace)
			out = AppendFrame(out, Invoke, header, []byte(event))
			want[id] = strconv.Quote(trace)
		}
		f.Write(t, out)
		for range len(want) {
			fr := f.Read(t)
			id := f.CheckAnswer(t, fr)
			w, ok := want[id]
			if !ok {
				t.Fatalf("answer for %q, not in flight (header %s)", id, fr.Header)
			}
			if fr.Type != Response || !bytes.Equal(fr.Body, []byte(w)) {
				t.Fatalf("%s: got frame type %d %s, want RESPONSE %s", id, fr.Type, fr.Body, w)
			}
		}
	}
}

// CheckRSSFlat warms a specialised runtime with warm invocations, then
// runs run more (WarmRun, 16 at a time), and fails the test if its
// resident set grew by more than maxGrowthKB over those: an instance must
// not grow with every invocation.
func (f *Runtime) CheckRSSFlat(t testing.TB, warm, run int, maxGrowthKB int64) {
	t.Helper()
	pid := f.Cmd.Process.Pid
	begin := time.Now()
	f.WarmRun(t, 0, warm, 16, `{}`)
	before := VmRSS(t, pid)
	f.WarmRun(t, warm, run, 16, `{}`)
	after := VmRSS(t, pid)
	t.Logf("%d invocations in %v; VmRSS %d kB after %d, %d kB after %d more (%+d kB)",
		warm+run, time.Since(begin).Round(time.Millisecond), before, warm, after, run, after-before)
	if after-before > maxGrowthKB {
		t.Errorf("VmRSS grew from %d kB to %d kB over %d warm invocations", before, after, run)
	}
}
