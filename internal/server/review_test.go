package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/testserver"
)

// A function that exits after reporting an uncaught error leaves an idle
// instance that is dead by the next request; that request must go to a
// fresh instance, not fail.
func TestNextRequestAfterUncaughtErrorSucceeds(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(fn("uncaught", "index.handler", map[string]string{"index.js": `
		exports.handler = async (e) => {
			if (e.rawPath === "/boom") { setImmediate(() => { throw new Error("async boom"); }); await new Promise(r => setTimeout(r, 50)); }
			return {statusCode: 200, body: "fine"};
		};`}))
	for i := range 10 {
		status, _, body := s.Do("GET", "/fn/uncaught/boom", nil, nil)
		if status != 502 {
			t.Fatalf("round %d: boom: %d %s", i, status, body)
		}
		status, _, body = s.Do("GET", "/fn/uncaught/", nil, nil)
		if status != 200 || string(body) != "fine" {
			t.Fatalf("round %d: the request after the uncaught error: %d %s", i, status, body)
		}
	}
}

// A child that leaves the instance's process group (setsid) and keeps its
// output open must neither survive the instance nor hang a timeout.
func TestDetachedGrandchildIsKilled(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{
		"tern.yaml": "name: escaper\nruntime: nodejs\nhandler: index.handler\ntimeout: 2s\n",
		"index.js": `
		const { spawn } = require("child_process");
		exports.handler = async (e) => {
			const c = spawn("sleep", ["300"], { detached: true, stdio: "inherit" });
			if (e.rawPath === "/hang") await new Promise(() => setTimeout(() => {}, 1e9));
			return {child: c.pid, pid: process.pid, uid: process.getuid()};
		};`,
	})
	out, err := s.Client.Invoke(context.Background(), "escaper", []byte(`{"rawPath":"/"}`))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Child int
		whoami
	}
	if err := json.Unmarshal(out, &got); err != nil || got.Child <= 0 {
		t.Fatalf("pid %s", out)
	}
	// Jailed, the child's pid is one of the instance's PID namespace: its
	// host pid is that of the process of the function's uid, started by
	// this tern, whose innermost pid it is.
	child := got.Child
	if got.jailed() {
		child = 0
		for _, p := range got.hostPids() {
			if nsPid(p) == got.Child {
				child = p
			}
		}
		if child == 0 {
			t.Fatalf("the detached child (pid %d in the instance) is not among the instance's processes %v", got.Child, got.hostPids())
		}
	}
	start := time.Now()
	status, _, body := s.Do("GET", "/fn/escaper/hang", nil, nil)
	if status != 504 {
		t.Fatalf("hang: %d %s", status, body)
	}
	// Waiting for the child's output to close would take its 300 s; the
	// bound leaves a busy machine all the time it needs to kill.
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("the timeout took %s", d)
	}
	if err := s.Client.Delete(context.Background(), "escaper"); err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, 10*time.Second, "the detached child "+strconv.Itoa(child)+" to be killed", func() bool {
		return !got.anyAlive([]int{child})
	})
}

// nsPid is pid's pid in its innermost PID namespace (the last of NSpid in
// /proc/pid/status); 0 if pid is gone.
func nsPid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[len(f)-1])
				return n
			}
		}
	}
	return 0
}

// A client following logs must not hold up shutdown.
func TestShutdownEndsLogFollowers(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(fn("quiet", "index.handler", map[string]string{"index.js": `exports.handler = async () => 1;`}))
	if _, err := s.Client.Invoke(context.Background(), "quiet", nil); err != nil {
		t.Fatal(err) // its START line tells when the follower reads
	}
	followed := make(chan error, 1)
	reading := make(chan struct{})
	var once sync.Once
	go func() {
		followed <- s.Client.Logs(context.Background(), "quiet", client.LogQuery{Follow: true}, func(*logs.Entry) error {
			once.Do(func() { close(reading) })
			return nil
		})
	}()
	select {
	case <-reading:
	case <-time.After(60 * time.Second):
		t.Fatal("the follower read nothing")
	}
	// A follower that held shutdown up would make it last the whole
	// shutdown timeout.
	start := time.Now()
	s.Stop()
	if d := time.Since(start); d >= s.Config.ShutdownTimeout {
		t.Errorf("shutdown took %s with a log follower (shutdown timeout %s)", d, s.Config.ShutdownTimeout)
	}
	select {
	case err := <-followed:
		if err != nil {
			t.Errorf("the follower ended with %v, want a clean end", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the follower did not end")
	}
}

// A relative data dir still gives instances absolute paths.
func TestRelativeDataDir(t *testing.T) {
	t.Chdir(t.TempDir())
	cfg := testserver.Config("reldata")
	s := testserver.Start(t, cfg)
	s.Deploy(fn("rel", "index.handler", map[string]string{"index.js": `exports.handler = async () => ({statusCode: 200, body: "ok"});`}))
	if status, _, body := s.Do("GET", "/fn/rel", nil, nil); status != 200 || string(body) != "ok" {
		t.Fatalf("%d %s", status, body)
	}
}

// The API refuses an event that is not JSON before it reaches a function.
func TestInvokeRefusesNonJSON(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(fn("json", "index.handler", map[string]string{"index.js": `exports.handler = async (e) => e;`}))
	status, _, body := s.Do("POST", "/v1/functions/json/invoke", strings.NewReader("{not json"), map[string]string{"Authorization": "Bearer " + s.Token()})
	if status != 400 || !strings.Contains(string(body), "bad_request") {
		t.Fatalf("%d %s", status, body)
	}
}

// A request that resolved a function just before it was deleted starts
// nothing, and a function created again under the same name serves its
// own code, never the deleted one's.
func TestDeleteThenRecreate(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	old := map[string]string{
		"tern.yaml": "name: ghost\nruntime: nodejs\nhandler: index.handler\nscale:\n  min: 1\n",
		"index.js":  `exports.handler = async () => ({statusCode: 200, body: "OLD"});`,
	}
	s.Deploy(old)
	if status, _, body := s.Do("GET", "/fn/ghost", nil, nil); status != 200 || string(body) != "OLD" {
		t.Fatalf("%d %s", status, body)
	}
	// A slow upload: the gateway resolves the function, then waits for the body.
	pr, pw := io.Pipe()
	slow := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", s.URL()+"/fn/ghost", pr)
		req.ContentLength = 5
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	if _, err := pw.Write([]byte("he")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := s.Client.Delete(context.Background(), "ghost"); err != nil {
		t.Fatal(err)
	}
	_, _ = pw.Write([]byte("llo"))
	pw.Close()
	if st := <-slow; st != 404 {
		t.Errorf("request that straddled the delete: status %d, want 404", st)
	}
	if _, err := s.Client.Get(context.Background(), "ghost"); err == nil {
		t.Fatal("deleted function still there")
	}
	var pools struct{ Pools []struct{ Function string } }
	status, _, body := s.Do("GET", "/v1/instances", nil, map[string]string{"Authorization": "Bearer " + s.Token()})
	if err := json.Unmarshal(body, &pools); status != 200 || err != nil {
		t.Fatalf("%d %s", status, body)
	}
	for _, p := range pools.Pools {
		if p.Function == "ghost" {
			t.Errorf("a pool of the deleted function exists: %s", body)
		}
	}
	s.Deploy(map[string]string{
		"tern.yaml": "name: ghost\nruntime: nodejs\nhandler: index.handler\n",
		"index.js":  `exports.handler = async () => ({statusCode: 200, body: "NEW"});`,
	})
	for range 3 {
		if status, _, body := s.Do("GET", "/fn/ghost", nil, nil); status != 200 || string(body) != "NEW" {
			t.Fatalf("recreated function: %d %s", status, body)
		}
	}
}

// A runtime that stops reading (busy after its answer) cannot hold an
// invocation past its timeout, even one whose event fills the socket.
func TestUnreadEventTimesOut(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{
		"tern.yaml": "name: spinner\nruntime: nodejs\nhandler: index.handler\ntimeout: 2s\nscale:\n  max: 1\n",
		"index.js": `exports.handler = async (e) => {
			if (e.rawPath === "/spin") setTimeout(() => { const end = Date.now() + 30000; while (Date.now() < end) {} }, 10);
			return {statusCode: 200, body: "ok"};
		};`,
	})
	if status, _, _ := s.Do("GET", "/fn/spinner/spin", nil, nil); status != 200 {
		t.Fatalf("spin: %d", status)
	}
	time.Sleep(100 * time.Millisecond)
	big := strings.Repeat("x", 1<<20)
	start := time.Now()
	status, _, body := s.Do("POST", "/fn/spinner/", strings.NewReader(big), map[string]string{"Content-Type": "text/plain"})
	if status != 504 {
		t.Fatalf("status %d %s", status, body)
	}
	// Waiting for the runtime to read would take its 30 s spin.
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the timeout took %s (function timeout 2s, spin 30s)", d)
	}
	// A fresh instance serves the next call.
	if status, _, body := s.Do("GET", "/fn/spinner/", nil, nil); status != 200 {
		t.Errorf("after the timeout: %d %s", status, body)
	}
}
