package server_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/testserver"
)

// startTicks is when pid started, in clock ticks since boot.
func startTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	v, err := strconv.ParseInt(f[19], 10, 64) // field 22 of stat
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func selfTicksNow(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	up, err := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	if err != nil {
		t.Fatal(err)
	}
	return int64(up * 100) // USER_HZ is 100 on Linux
}

// A cold start takes a pre-started instance from the pool, and a pooled
// instance carries nothing from one function to another.
func TestPoolServesColdStartsInIsolation(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	cfg.PoolSize = 2
	s := testserver.Start(t, cfg)
	code := `
		globalThis.seen = globalThis.seen || [];
		globalThis.seen.push(process.env.AWS_LAMBDA_FUNCTION_NAME);
		exports.handler = async () => ({ pid: process.pid, uid: process.getuid(), id: process.env.AWS_LAMBDA_LOG_STREAM_NAME, seen: globalThis.seen, secretA: process.env.SECRET_A || null,
			cwd: process.cwd(), root: process.env.LAMBDA_TASK_ROOT, fd: process.env.TERN_RUNTIME_FD || null });`
	s.Deploy(map[string]string{"tern.yaml": "name: fa\nruntime: nodejs\nhandler: index.handler\nenvironment:\n  SECRET_A: only-for-a\n", "index.js": code})
	s.Deploy(map[string]string{"tern.yaml": "name: fb\nruntime: nodejs\nhandler: index.handler\n", "index.js": code})
	testserver.Eventually(t, 60*time.Second, "the pool to fill", func() bool { return s.PoolSizes()["nodejs"] == 2 })
	// The pooled processes started by now; an instance started for a call
	// starts after before (past the tick before is in).
	before := selfTicksNow(t)
	for selfTicksNow(t) <= before {
		time.Sleep(5 * time.Millisecond)
	}

	type answer struct {
		Pid     int
		UID     int
		ID      string
		Seen    []string
		SecretA *string
		Cwd     string
		Root    string
		Fd      *string
	}
	call := func(name string) answer {
		out, err := s.Client.Invoke(context.Background(), name, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var a answer
		if err := json.Unmarshal(out, &a); err != nil {
			t.Fatalf("%s: %s", name, out)
		}
		return a
	}
	a, b := call("fa"), call("fb")
	// Jailed, every instance is pid 1 of a PID namespace of its own: the
	// instance id tells them apart, and its host process is found by its
	// function's uid.
	if a.ID == "" || a.ID == b.ID {
		t.Fatalf("fa and fb share instance %q", a.ID)
	}
	hostPid := func(name string, x answer) int {
		w := whoami{Pid: x.Pid, UID: x.UID}
		pids := w.hostPids()
		if len(pids) != 1 {
			t.Fatalf("%s (%+v): host processes %v, want its one instance", name, w, pids)
		}
		return pids[0]
	}
	pa, pb := hostPid("fa", a), hostPid("fb", b)
	if pa == pb {
		t.Fatalf("fa and fb share process %d", pa)
	}
	for _, x := range []struct {
		name string
		a    answer
		pid  int
	}{{"fa", a, pa}, {"fb", b, pb}} {
		if st := startTicks(t, x.pid); st > before {
			t.Errorf("%s's instance started after the call was made (tick %d > %d): not from the pool", x.name, st, before)
		}
		if len(x.a.Seen) != 1 || x.a.Seen[0] != x.name {
			t.Errorf("%s: module state %v, want only its own load", x.name, x.a.Seen)
		}
		if x.a.Cwd != x.a.Root || x.a.Fd != nil {
			t.Errorf("%s: cwd %q, task root %q, TERN_RUNTIME_FD %v", x.name, x.a.Cwd, x.a.Root, x.a.Fd)
		}
	}
	if a.SecretA == nil || *a.SecretA != "only-for-a" {
		t.Errorf("fa does not see its own variable: %v", a.SecretA)
	}
	if b.SecretA != nil {
		t.Errorf("fb sees fa's variable: %q", *b.SecretA)
	}
	// The pool refills.
	testserver.Eventually(t, 10*time.Second, "the pool to refill", func() bool { return s.PoolSizes()["nodejs"] == 2 })
}

// With the pool off, cold starts start node themselves and still work.
func TestPoolOff(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	cfg.PoolSize = 0
	s := testserver.Start(t, cfg)
	s.Deploy(fn("nopool", "index.handler", map[string]string{"index.js": `exports.handler = async () => "ok";`}))
	if out, err := s.Client.Invoke(context.Background(), "nopool", nil); err != nil || string(out) != `"ok"` {
		t.Fatalf("%s %v", out, err)
	}
	if s.Pooled() != 0 {
		t.Errorf("pool size 0 but %d pooled", s.Pooled())
	}
}
