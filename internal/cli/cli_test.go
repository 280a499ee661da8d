package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/cli"
	"github.com/ternhq/tern/internal/testserver"
)

// run runs the tern command in-process and returns exit code and output.
func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := cli.Main(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCLIFunctionLifecycle(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	t.Setenv("TERN_SERVER", s.URL())
	t.Setenv("TERN_TOKEN", s.Token())
	dir := testserver.WriteFunction(t, map[string]string{
		"tern.yaml":      "name: greet\nruntime: nodejs\nhandler: index.handler\n",
		"index.js":       `exports.handler = async (e) => { if (e.fail) throw new TypeError("asked to fail"); console.log("greeting", e.name); return { hello: e.name }; };`,
		".ternignore":    "secret.txt\n",
		"secret.txt":     "not shipped",
		".git/HEAD":      "ref: refs/heads/main",
		"event.json":     `{"name": "file"}`,
		"lib/helper.txt": "shipped",
	})

	code, out, errOut := run(t, "", "deploy", dir)
	if code != 0 || !strings.Contains(out, "deployed greet version 1") {
		t.Fatalf("deploy: %d %q %q", code, out, errOut)
	}
	code, out, _ = run(t, "", "deploy", dir)
	if code != 0 || !strings.Contains(out, "version 2") {
		t.Fatalf("second deploy: %d %q", code, out)
	}

	for _, c := range []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"--data", "", []string{"invoke", "greet", "--data", `{"name":"flag"}`}, `{"hello":"flag"}`},
		{"@file", "", []string{"invoke", "greet", "--data", "@" + filepath.Join(dir, "event.json")}, `{"hello":"file"}`},
		{"stdin", `{"name":"stdin"}`, []string{"invoke", "greet", "-"}, `{"hello":"stdin"}`},
	} {
		t.Run("invoke "+c.name, func(t *testing.T) {
			code, out, errOut := run(t, c.stdin, c.args...)
			if code != 0 || strings.TrimSpace(out) != c.want {
				t.Fatalf("exit %d out %q err %q", code, out, errOut)
			}
		})
	}

	code, out, errOut = run(t, "", "invoke", "greet", "--data", `{"fail":true}`)
	var fe struct{ ErrorType, ErrorMessage string }
	if code != 1 || json.Unmarshal([]byte(out), &fe) != nil || fe.ErrorType != "TypeError" || !strings.Contains(errOut, "TypeError") {
		t.Fatalf("function error: exit %d out %q err %q", code, out, errOut)
	}
	if code, _, errOut := run(t, "", "invoke", "greet", "--data", `{not json`); code != 2 || !strings.Contains(errOut, "not valid JSON") {
		t.Errorf("bad JSON: exit %d err %q", code, errOut)
	}

	code, out, _ = run(t, "", "ls")
	if code != 0 || !strings.Contains(out, "greet") || !strings.Contains(out, "nodejs") {
		t.Fatalf("ls: %d %q", code, out)
	}
	code, out, _ = run(t, "", "get", "greet")
	var got struct {
		Version  int
		Versions []json.RawMessage
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Version != 2 || len(got.Versions) != 2 {
		t.Fatalf("get: %d %q", code, out)
	}

	// The log sink writes asynchronously: wait until the four invocations'
	// REPORT lines (flag, file, stdin, fail) are stored before reading.
	testserver.Eventually(t, 30*time.Second, "the four invocations' REPORT lines in tern logs", func() bool {
		code, out, _ := run(t, "", "logs", "greet", "-o", "json")
		return code == 0 && strings.Count(out, "REPORT RequestId") >= 4
	})
	code, out, _ = run(t, "", "logs", "greet", "--grep", "greeting")
	if code != 0 || !strings.Contains(out, "greeting flag") {
		t.Errorf("logs --grep: %d %q", code, out)
	}
	code, out, _ = run(t, "", "logs", "greet", "-o", "json")
	if code != 0 || !strings.Contains(out, `"stream":"platform"`) || !strings.Contains(out, "REPORT RequestId") {
		t.Errorf("logs json: %d %q", code, out)
	}

	code, out, _ = run(t, "", "rm", "greet")
	if code != 0 || !strings.Contains(out, "deleted greet") {
		t.Fatalf("rm: %d %q", code, out)
	}
	code, _, errOut = run(t, "", "get", "greet")
	if code != 1 || !strings.Contains(errOut, "function_not_found") {
		t.Errorf("get after rm: %d %q", code, errOut)
	}
}

func TestCLIPackageContents(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	t.Setenv("TERN_SERVER", s.URL())
	t.Setenv("TERN_TOKEN", s.Token())
	dir := testserver.WriteFunction(t, map[string]string{
		"tern.yaml":   "name: files\nruntime: nodejs\nhandler: index.handler\n",
		"index.js":    `const fs = require("fs"); exports.handler = async () => fs.readdirSync(".").sort();`,
		".ternignore": "*.log\n/build/\n",
		"debug.log":   "x",
		"build/out":   "x",
		".git/HEAD":   "x",
		"keep.txt":    "x",
	})
	if code, out, errOut := run(t, "", "deploy", dir); code != 0 {
		t.Fatalf("deploy: %d %q %q", code, out, errOut)
	}
	code, out, _ := run(t, "", "invoke", "files")
	if code != 0 || strings.TrimSpace(out) != `[".ternignore","index.js","keep.txt","tern.yaml"]` {
		t.Fatalf("files in the package: %d %s", code, out)
	}
}

func TestCLIErrors(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	t.Setenv("TERN_SERVER", s.URL())
	t.Setenv("TERN_TOKEN", "")
	t.Setenv("TERN_DATA_DIR", t.TempDir()) // no token file there
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no token", []string{"ls"}, 2, "no API token"},
		{"wrong token", []string{"ls", "--token", "tern_wrong"}, 1, "invalid token"},
		{"unknown command", []string{"frobnicate"}, 1, "unknown command"},
		{"bad flag", []string{"ls", "--nope"}, 2, "unknown flag"},
		{"missing arg", []string{"get"}, 2, "accepts 1 arg"},
		{"deploy without manifest", []string{"deploy", t.TempDir(), "--token", s.Token()}, 1, "has no tern.yaml"},
		{"bad server", []string{"ls", "--server", "ftp://x", "--token", "t"}, 2, "--server"},
		{"unreachable", []string{"ls", "--server", "http://127.0.0.1:1", "--token", "t"}, 1, "cannot reach"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := run(t, "", c.args...)
			if code != c.code || !strings.Contains(errOut, c.want) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, c.code, errOut, c.want)
			}
		})
	}
	// A local server's token is found in its data dir.
	t.Setenv("TERN_DATA_DIR", s.Config.DataDir)
	if code, _, errOut := run(t, "", "ls"); code != 0 {
		t.Fatalf("token from the data dir: %d %q", code, errOut)
	}
}

// TestServeBinarySIGTERM runs the real binary: `tern serve` comes up,
// serves, and shuts down cleanly on SIGTERM, leaving no instance behind.
func TestServeBinarySIGTERM(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tern")
	build := exec.Command("go", "build", "-o", bin, "github.com/ternhq/tern/cmd/tern")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := t.TempDir()
	port := freePort(t)
	var stderr syncBuffer
	srv := exec.Command(bin, "serve", "--listen", "127.0.0.1:"+port, "--data-dir", data)
	srv.Stderr = &stderr
	srv.Env = append(os.Environ(), "HOME="+t.TempDir())
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	url := "http://127.0.0.1:" + port
	// Generous: the whole test suite runs beside it on two cores.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("tern serve did not answer /healthz within 30 s; its log:\n%s", stderr.String())
		}
	}
	if !strings.Contains(stderr.String(), filepath.Join(data, "admin.token")) {
		t.Errorf("the log does not say where the admin token is:\n%s", stderr.String())
	}
	dir := testserver.WriteFunction(t, map[string]string{
		"tern.yaml": "name: pid\nruntime: nodejs\nhandler: index.handler\n",
		"index.js":  `exports.handler = async () => ({pid: process.pid, uid: process.getuid()});`,
	})
	cli := func(args ...string) string {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "TERN_SERVER="+url, "TERN_DATA_DIR="+data, "TERN_TOKEN=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tern %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	cli("deploy", dir)
	out := cli("invoke", "pid")
	var who struct{ Pid, UID int }
	if err := json.Unmarshal([]byte(out), &who); err != nil || who.Pid <= 0 {
		t.Fatalf("invoke pid: %q %v", out, err)
	}
	// Jailed, the instance is pid 1 of its own PID namespace: its host
	// processes are those of its function's uid that this tern started.
	// Else its pid is the host's.
	jailed := who.Pid == 1
	procs := []int{who.Pid}
	if jailed {
		procs = testserver.UIDProcsUnder(who.UID, srv.Process.Pid)
	}
	for _, p := range procs {
		if _, err := os.Stat("/proc/" + strconv.Itoa(p)); err != nil {
			t.Fatalf("instance pid %d: %v", p, err)
		}
	}
	if len(procs) == 0 {
		t.Fatalf("no host process of the instance (uid %d) under tern serve", who.UID)
	}
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- srv.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("tern serve exited with %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("tern serve did not stop on SIGTERM\n%s", stderr.String())
	}
	live := func(p int) bool {
		if jailed && !slices.Contains(testserver.UIDProcs(who.UID), p) {
			return false // gone, or the pid is another's now
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat")
		return err == nil && !strings.Contains(string(b), ") Z ")
	}
	for _, p := range procs {
		if live(p) {
			t.Errorf("instance %d still running after shutdown", p)
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := strings.Cut(l.Addr().String(), ":")
	return port
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestCLIAliasAndRollback(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	t.Setenv("TERN_SERVER", s.URL())
	t.Setenv("TERN_TOKEN", s.Token())
	for i := 1; i <= 2; i++ {
		dir := testserver.WriteFunction(t, map[string]string{
			"tern.yaml": "name: ali\nruntime: nodejs\nhandler: index.handler\n",
			"index.js":  `exports.handler = async () => "v` + strconv.Itoa(i) + `";`,
		})
		if code, out, errOut := run(t, "", "deploy", dir); code != 0 {
			t.Fatalf("deploy: %d %q %q", code, out, errOut)
		}
	}
	if code, out, errOut := run(t, "", "alias", "set", "ali", "prod", "1"); code != 0 || !strings.Contains(out, "ali@prod → version 1 (100%)") {
		t.Fatalf("alias set: %d %q %q", code, out, errOut)
	}
	if code, out, _ := run(t, "", "alias", "set", "ali", "split", "--weight", "2=90,1=10"); code != 0 || !strings.Contains(out, "version 2 (90%), version 1 (10%)") {
		t.Fatalf("alias set --weight: %d %q", code, out)
	}
	if code, out, _ := run(t, "", "alias", "ls", "ali"); code != 0 || !strings.Contains(out, "prod") || !strings.Contains(out, "split") {
		t.Fatalf("alias ls: %d %q", code, out)
	}
	if code, out, _ := run(t, "", "invoke", "ali@prod"); code != 0 || strings.TrimSpace(out) != `"v1"` {
		t.Fatalf("invoke ali@prod: %d %q", code, out)
	}
	for _, bad := range [][]string{
		{"alias", "set", "ali", "x"},
		{"alias", "set", "ali", "x", "1", "--weight", "1=100"},
		{"alias", "set", "ali", "x", "--weight", "one=100"},
	} {
		if code, _, _ := run(t, "", bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
	if code, _, errOut := run(t, "", "alias", "set", "ali", "x", "9"); code != 1 || !strings.Contains(errOut, "invalid_alias") {
		t.Errorf("unknown version: %d %q", code, errOut)
	}
	if code, out, _ := run(t, "", "rollback", "ali"); code != 0 || !strings.Contains(out, "ali is at version 1") {
		t.Fatalf("rollback: %d %q", code, out)
	}
	if code, _, errOut := run(t, "", "rollback", "ali"); code != 1 || !strings.Contains(errOut, "no_previous_version") {
		t.Errorf("rollback past the first: %d %q", code, errOut)
	}
	if code, out, _ := run(t, "", "alias", "rm", "ali", "prod"); code != 0 || !strings.Contains(out, "deleted ali@prod") {
		t.Fatalf("alias rm: %d %q", code, out)
	}
}
