package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/sandbox"
	"github.com/ternhq/tern/internal/testserver"
)

// needControls skips the test unless this host applies the named sandbox
// controls ("cgroup memory", ...).
func needControls(t *testing.T, names ...string) {
	t.Helper()
	for _, c := range sandbox.Controls() {
		for _, n := range names {
			if c.Name == n && !c.On {
				t.Skipf("%s is off on this host: %s", c.Name, c.Why)
			}
		}
	}
}

// cgroupFile is the path of file in pid's cgroup of controller (v1), or
// of its v2 cgroup; "" if pid is in neither.
func cgroupFile(t *testing.T, pid int, controller, file string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	var v2 string
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller {
				p := filepath.Join("/sys/fs/cgroup", controller, parts[2], file)
				if _, err := os.Stat(p); err == nil {
					return p
				}
			}
		}
	}
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		p := filepath.Join(root, v2, file)
		if _, err := os.Stat(p); err == nil && v2 != "" {
			return p
		}
	}
	return ""
}

func readInt(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

func TestInstanceCgroupLimits(t *testing.T) {
	needControls(t, "cgroup memory", "cgroup pids", "cgroup cpu weight")
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	pidJS := `exports.handler = async () => ` + selfJS + `;`
	s.Deploy(map[string]string{"tern.yaml": "name: sized\nruntime: nodejs\nhandler: index.handler\nmemory: 384\n", "index.js": pidJS})
	// An http app is not pooled: its process is confined right after start.
	s.Deploy(map[string]string{"tern.yaml": "name: app\nruntime: http\ncommand: node server.js\nmemory: 512\n",
		"server.js": `require("http").createServer((q, r) => r.end(JSON.stringify(` + selfJS + `))).listen(process.env.PORT);`})

	for _, c := range []struct {
		fn string
		mb int64
	}{{"sized", 384}, {"app", 512}} {
		t.Run(c.fn, func(t *testing.T) {
			status, _, body := s.Do("GET", "/fn/"+c.fn, nil, nil)
			var w whoami
			if status != 200 || json.Unmarshal(body, &w) != nil {
				t.Fatalf("status %d body %s", status, body)
			}
			// Jailed, the instance is pid 1 of its own PID namespace: its
			// host process is found by its function's uid.
			procs := w.hostPids()
			if len(procs) == 0 {
				t.Fatalf("no host process found for the instance (%s)", body)
			}
			pid := procs[0]
			mem := cgroupFile(t, pid, "memory", "memory.limit_in_bytes")
			if mem == "" {
				mem = cgroupFile(t, pid, "memory", "memory.max")
			}
			if mem == "" || !strings.Contains(mem, "/tern/") {
				t.Fatalf("instance %d is not in a tern memory cgroup (%q)", pid, mem)
			}
			if got := readInt(t, mem); got != c.mb<<20 {
				t.Errorf("%s = %d, want %d", mem, got, c.mb<<20)
			}
			if p := cgroupFile(t, pid, "pids", "pids.max"); p == "" || readInt(t, p) != sandbox.DefaultPids {
				t.Errorf("pids.max %q not %d", p, sandbox.DefaultPids)
			}
			if p := cgroupFile(t, pid, "cpu", "cpu.shares"); p != "" && readInt(t, p) != int64(sandbox.CPUShares(int(c.mb))) {
				t.Errorf("cpu.shares %q not %d", p, sandbox.CPUShares(int(c.mb)))
			} else if p := cgroupFile(t, pid, "cpu", "cpu.weight"); p != "" && readInt(t, p) != int64(sandbox.CPUWeight(int(c.mb))) {
				t.Errorf("cpu.weight %q not %d", p, sandbox.CPUWeight(int(c.mb)))
			}
			// Deleting the function stops the instance and removes its cgroup.
			dir := filepath.Dir(mem)
			if err := s.Client.Delete(context.Background(), c.fn); err != nil {
				t.Fatal(err)
			}
			testserver.Eventually(t, 10*time.Second, "the instance's cgroup to be removed", func() bool {
				_, err := os.Stat(dir)
				return os.IsNotExist(err)
			})
		})
	}
}

func TestOutOfMemoryIsAFunctionError(t *testing.T) {
	needControls(t, "cgroup memory")
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{"tern.yaml": "name: hog\nruntime: nodejs\nhandler: index.handler\nmemory: 128\n", "index.js": `
		const kept = [];
		exports.handler = async (e) => {
			if (e.rawPath === "/hog") {
				for (let i = 0; i < 40; i++) kept.push(Buffer.alloc(10 << 20).fill(1)); // 400 MB, touched
			}
			return {statusCode: 200, body: "fine " + kept.length};
		};`})
	s.Deploy(fn("other", "index.handler", map[string]string{"index.js": `exports.handler = async () => ({statusCode: 200, body: "ok"});`}))

	start := time.Now()
	status, h, body := s.Do("POST", "/v1/functions/hog/invoke", strings.NewReader(`{"rawPath":"/hog"}`), map[string]string{"Authorization": "Bearer " + s.Token()})
	var e struct{ ErrorType, ErrorMessage string }
	if status != 502 || json.Unmarshal(body, &e) != nil {
		t.Fatalf("status %d body %s", status, body)
	}
	if e.ErrorType != "Runtime.OutOfMemory" || !strings.Contains(e.ErrorMessage, "128 MB") || h.Get("X-Tern-Error-Type") != "Runtime.OutOfMemory" {
		t.Errorf("error %+v, X-Tern-Error-Type %q", e, h.Get("X-Tern-Error-Type"))
	}
	t.Logf("out of memory after %v", time.Since(start))

	// Tern and other functions go on; the function gets a new instance.
	if status, _, body := s.Do("GET", "/fn/other", nil, nil); status != 200 {
		t.Errorf("other function after the OOM: %d %s", status, body)
	}
	if status, _, body := s.Do("GET", "/fn/hog", nil, nil); status != 200 || string(body) != "fine 0" {
		t.Errorf("the function after its OOM: %d %s", status, body)
	}

	// Through the API: a function error too.
	_, err := s.Client.Invoke(context.Background(), "hog", []byte(`{"rawPath":"/hog"}`))
	if fe, ok := err.(*client.FunctionError); !ok || !strings.Contains(string(fe.Body), "Runtime.OutOfMemory") {
		t.Errorf("API invoke error = %v", err)
	}
}

// markerProcs counts the processes whose command line holds marker.
func markerProcs(marker string) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte(marker)) && processAlive(atoi(e.Name())) {
			n++
		}
	}
	return n
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func TestForkBombIsContained(t *testing.T) {
	needControls(t, "cgroup pids")
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	// The shell leaves the instance's process group (detached: setsid), so
	// only the cgroup holds what it starts.
	const marker = "4242.5"
	s.Deploy(map[string]string{"tern.yaml": "name: bomb\nruntime: nodejs\nhandler: index.handler\ntimeout: 10s\n", "index.js": `
		const {spawn} = require("child_process");
		exports.handler = async () => {
			const c = spawn("sh", ["-c", "while :; do sleep ` + marker + ` & done"], {detached: true, stdio: "ignore"});
			c.on("error", () => {});
			await new Promise(r => setTimeout(r, 1500));
			return {statusCode: 200, body: "spawned"};
		};`})
	s.Deploy(fn("other", "index.handler", map[string]string{"index.js": `exports.handler = async () => ({statusCode: 200, body: "ok"});`}))
	if status, _, _ := s.Do("GET", "/fn/other", nil, nil); status != 200 { // warm
		t.Fatalf("other: %d", status)
	}
	t.Cleanup(func() {
		testserver.Eventually(t, 10*time.Second, "no process of the fork bomb left", func() bool { return markerProcs(marker) == 0 })
	})

	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", s.URL()+"/fn/bomb", nil)
		c := &http.Client{Timeout: 20 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	// While it runs, Tern answers others within a bound.
	testserver.Eventually(t, 20*time.Second, "the fork bomb to run", func() bool { return markerProcs(marker) > 0 })
	c := &http.Client{Timeout: 5 * time.Second}
	for range 3 {
		start := time.Now()
		resp, err := c.Get(s.URL() + "/fn/other")
		if err != nil {
			t.Fatalf("other during the fork bomb: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("other during the fork bomb: %d", resp.StatusCode)
		}
		t.Logf("other answered in %v", time.Since(start))
	}
	if n := markerProcs(marker); n > sandbox.DefaultPids {
		t.Errorf("%d processes of the fork bomb, more than pids.max %d", n, sandbox.DefaultPids)
	} else {
		t.Logf("%d processes of the fork bomb (pids.max %d)", n, sandbox.DefaultPids)
	}
	select {
	case status := <-done:
		t.Logf("the fork bomb answered %d", status)
	case <-time.After(20 * time.Second):
		t.Fatal("the fork bomb's invocation did not end")
	}
	// Stopping its instance kills all it started.
	if err := s.Client.Delete(context.Background(), "bomb"); err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, 10*time.Second, "the fork bomb's processes to be killed", func() bool { return markerProcs(marker) == 0 })
}

// TestNetworkNone: a function with network: none reaches no address, not
// even Tern's own port on loopback, while another function does.
func TestNetworkNone(t *testing.T) {
	if c := sandbox.NetworkControl(); !c.On {
		t.Skip(c.Why)
	}
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	_, port, _ := net.SplitHostPort(s.Addr())
	js := `const net = require("net");
exports.handler = async () => new Promise((resolve) => {
  const sock = net.connect(` + port + `, "127.0.0.1");
  sock.on("connect", () => { sock.destroy(); resolve("connected"); });
  sock.on("error", (e) => resolve("refused: " + e.code));
});`
	s.Deploy(map[string]string{"tern.yaml": "name: offline\nruntime: nodejs\nhandler: index.handler\nnetwork: none\n", "index.js": js})
	s.Deploy(map[string]string{"tern.yaml": "name: online\nruntime: nodejs\nhandler: index.handler\n", "index.js": js})
	ctx := context.Background()
	out, err := s.Client.Invoke(ctx, "offline", []byte(`{}`))
	if err != nil || !strings.Contains(string(out), "refused") {
		t.Errorf("network: none: %s %v", out, err)
	}
	out, err = s.Client.Invoke(ctx, "online", []byte(`{}`))
	if err != nil || string(out) != `"connected"` {
		t.Errorf("default network: %s %v", out, err)
	}
	// Only where the runtime talks to Tern without the network.
	if err := deployErr(t, s, map[string]string{"tern.yaml": "name: p\nruntime: provided\nnetwork: none\n", "bootstrap": "#!/bin/sh\n"}); !isStatus(err, 400) {
		t.Errorf("provided with network: none: %v", err)
	}
}
