package server_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/testserver"
)

// floodJS prints event.n lines of event.size bytes (the newline included)
// with synchronous writes to stdout, as console.log does, then answers.
const floodJS = `
exports.handler = async (event) => {
  const pad = "x".repeat(event.size - 1 - 12);
  for (let i = 0; i < event.n; i++) {
    process.stdout.write(String(i).padStart(11, "0") + " " + pad + "\n");
  }
  return "printed " + event.n;
};`

// floodResult is what the store kept of one invocation's output.
type floodResult struct {
	kept, keptBytes int
	// markers are the "N lines (M bytes) dropped: ..." entries.
	markers                    []string
	droppedLines, droppedBytes int
	reports                    int
	report                     string   // the REPORT line
	last                       []string // the last three messages
}

var droppedRE = regexp.MustCompile(`^(\d+) lines \((\d+) bytes\) dropped: `)

// flood invokes fn to print n lines of size bytes and reads back what the
// log kept of its output.
func flood(t *testing.T, s *testserver.Server, fn string, n, size int, wait time.Duration) floodResult {
	t.Helper()
	start := time.Now()
	out, err := s.Client.Invoke(context.Background(), fn, fmt.Appendf(nil, `{"n":%d,"size":%d}`, n, size))
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	if want := fmt.Sprintf(`"printed %d"`, n); string(out) != want {
		t.Fatalf("invoke answered %s, want %s", out, want)
	}
	t.Logf("%d lines of %d B printed and answered in %s", n, size, time.Since(start).Round(time.Millisecond))
	// Wait for the REPORT line and every line printed (kept or counted
	// as dropped); on timeout, report what came.
	var r floodResult
	for deadline := time.Now().Add(wait); ; {
		r = floodResult{}
		err := s.Client.Logs(context.Background(), fn, client.LogQuery{}, func(e *logs.Entry) error {
			r.last = append(r.last, e.Message)
			if len(r.last) > 3 {
				r.last = r.last[1:]
			}
			switch {
			case e.Stream == logs.StreamStdout:
				r.kept++
				r.keptBytes += len(e.Message) + 1
			case e.Stream == logs.StreamPlatform && strings.HasPrefix(e.Message, "REPORT "):
				r.reports++
				r.report = e.Message
			case e.Stream == logs.StreamPlatform && droppedRE.MatchString(e.Message):
				r.markers = append(r.markers, e.Message)
				m := droppedRE.FindStringSubmatch(e.Message)
				l, _ := strconv.Atoi(m[1])
				b, _ := strconv.Atoi(m[2])
				r.droppedLines += l
				r.droppedBytes += b
			}
			return nil
		})
		if err != nil {
			t.Fatalf("logs: %v", err)
		}
		if r.reports == 1 && r.kept+r.droppedLines >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("kept %d of %d lines (%d of %d bytes) in %s; markers %q; %s", r.kept, n, r.keptBytes, n*size, time.Since(start).Round(time.Millisecond), r.markers, r.report)
	return r
}

func floodManifest(name string) map[string]string {
	return map[string]string{
		"tern.yaml": "name: " + name + "\nruntime: nodejs\nhandler: index.handler\ntimeout: 5m\n",
		"index.js":  floodJS,
	}
}

// A burst of 20,000 lines of 200 B in one invocation is kept whole: the
// instance's writes wait for the log instead of lines being dropped.
func TestLogBurstKeptWhole(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(floodManifest("burst"))
	const n, size = 20000, 200
	r := flood(t, s, "burst", n, size, 2*time.Minute)
	if r.kept != n || r.keptBytes != n*size || len(r.markers) != 0 {
		t.Fatalf("kept %d lines (%d bytes) of %d (%d bytes), markers %q; want all of them and no marker",
			r.kept, r.keptBytes, n, n*size, r.markers)
	}
}

// TestLogVolume measures (it checks nothing the other tests do not): set
// TERN_LOG_VOLUME=100000x1024 to print that many lines of that size.
func TestLogVolume(t *testing.T) {
	spec := os.Getenv("TERN_LOG_VOLUME")
	if spec == "" {
		t.Skip("set TERN_LOG_VOLUME=<lines>x<bytes> to measure")
	}
	a, b, _ := strings.Cut(spec, "x")
	n, err1 := strconv.Atoi(a)
	size, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || size < 16 {
		t.Fatalf("TERN_LOG_VOLUME=%q: want <lines>x<bytes>", spec)
	}
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(floodManifest("volume"))
	r := flood(t, s, "volume", n, size, 30*time.Second)
	if r.kept+r.droppedLines != n || r.keptBytes+r.droppedBytes != n*size {
		t.Errorf("kept %d + dropped %d lines = %d, printed %d; bytes %d + %d, printed %d",
			r.kept, r.droppedLines, r.kept+r.droppedLines, n, r.keptBytes, r.droppedBytes, n*size)
	}
}

// Past the per-invocation limit lines are dropped, not waited for; one
// entry says exactly how many, and the metric counts them.
func TestLogOverLimitMarked(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	cfg.MaxOutputBytes = 1 << 20
	s := testserver.Start(t, cfg)
	s.Deploy(floodManifest("over"))
	const n, size = 20000, 200
	r := flood(t, s, "over", n, size, 2*time.Minute)
	keep := int(cfg.MaxOutputBytes) / size // whole lines that fit
	if r.kept != keep || r.keptBytes != keep*size {
		t.Errorf("kept %d lines (%d bytes), want the %d lines that fit in %d bytes", r.kept, r.keptBytes, keep, cfg.MaxOutputBytes)
	}
	if len(r.markers) != 1 || r.droppedLines != n-keep || r.droppedBytes != (n-keep)*size {
		t.Errorf("markers %q, want one saying %d lines (%d bytes) dropped", r.markers, n-keep, (n-keep)*size)
	}
	if len(r.last) != 3 || !droppedRE.MatchString(r.last[0]) || !strings.HasPrefix(r.last[1], "END ") {
		t.Errorf("the last entries are %q, want the marker, END and REPORT", r.last)
	}
	if r.kept+r.droppedLines != n || r.keptBytes+r.droppedBytes != n*size {
		t.Errorf("kept %d + dropped %d lines != printed %d", r.kept, r.droppedLines, n)
	}
	_, _, body := s.Do("GET", "/metrics", nil, map[string]string{"Authorization": "Bearer " + s.Token()})
	for _, want := range []string{
		fmt.Sprintf(`tern_log_lines_dropped_total{reason="limit"} %d`, n-keep),
		fmt.Sprintf(`tern_log_bytes_dropped_total{reason="limit"} %s`, strconv.FormatFloat(float64((n-keep)*size), 'g', -1, 64)),
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// A server stopping while a function floods its log stops in time: the
// instance's output waits for room, never the shutdown for the output.
func TestLogFloodDoesNotHoldShutdown(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	cfg.MaxOutputBytes = 1 << 40 // all of it waits for the log
	s := testserver.Start(t, cfg)
	s.Deploy(map[string]string{
		"tern.yaml": "name: endless\nruntime: nodejs\nhandler: index.handler\ntimeout: 5m\n",
		"index.js":  `exports.handler = async () => { for (;;) process.stdout.write("y".repeat(199) + "\n"); };`,
	})
	go func() { _, _ = s.Client.Invoke(context.Background(), "endless", []byte(`{}`)) }() // ends with the server
	testserver.Eventually(t, time.Minute, "the function's output in the log", func() bool {
		n := 0
		_ = s.Client.Logs(context.Background(), "endless", client.LogQuery{}, func(e *logs.Entry) error {
			if e.Stream == logs.StreamStdout {
				n++
			}
			return nil
		})
		return n > 1000
	})
	begin := time.Now()
	s.Stop() // fails the test if it does not stop within its own bound
	if took := time.Since(begin); took > cfg.ShutdownTimeout+20*time.Second {
		t.Errorf("shutdown took %s", took)
	}
}

// A function that exits right after printing loses nothing: its writes
// were in the pipe before they returned (node would otherwise queue them
// in its heap and drop the queue on exit).
func TestLogKeptWhenFunctionExits(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{
		"tern.yaml": "name: quitter\nruntime: nodejs\nhandler: index.handler\ntimeout: 5m\n",
		"index.js": `exports.handler = async () => {
  for (let i = 0; i < 20000; i++) process.stdout.write(String(i).padStart(199, ".") + "\n");
  process.exit(0);
};`,
	})
	if _, err := s.Client.Invoke(context.Background(), "quitter", []byte(`{}`)); err == nil {
		t.Fatal("an invocation that exits answered without an error")
	}
	var n int
	for deadline := time.Now().Add(time.Minute); ; {
		n = 0
		err := s.Client.Logs(context.Background(), "quitter", client.LogQuery{}, func(e *logs.Entry) error {
			if e.Stream == logs.StreamStdout {
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n >= 20000 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n != 20000 {
		t.Fatalf("kept %d of 20000 lines printed before the exit", n)
	}
}
