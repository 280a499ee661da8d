package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/runtime"
	"github.com/ternhq/tern/internal/testserver"
)

// collector keeps log entries in memory (the real Sink needs a store; the
// server tests cover it).
type collector struct {
	mu      sync.Mutex
	entries []logs.Entry
}

func (c *collector) Write(e logs.Entry) {
	c.mu.Lock()
	c.entries = append(c.entries, e)
	c.mu.Unlock()
}

func (c *collector) WriteReport(e logs.Entry, r *logs.Report) {
	end := e
	end.Message = "END RequestId: " + e.RequestID
	c.Write(end)
	e.Message = r.Line(e.RequestID)
	c.Write(e)
}

func (c *collector) WriteOutput(e logs.Entry, abort <-chan struct{}) bool {
	c.Write(e)
	return true
}

func (c *collector) WriteDropped(e logs.Entry, lines, bytes int64, reason string) {
	e.Message = logs.DroppedMessage(lines, bytes, reason)
	c.Write(e)
}

func (c *collector) messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.entries {
		out = append(out, e.Stream+" "+e.RequestID+" "+e.Message)
	}
	return out
}

func start(t *testing.T, code string, mutate ...func(*runtime.Spec)) (*runtime.Instance, *collector, error) {
	t.Helper()
	dir := testserver.WriteFunction(t, map[string]string{"index.js": code})
	col := &collector{}
	l, err := runtime.NewLauncher(runtime.Config{Dir: t.TempDir(), MaxResponseBytes: 1 << 20, Logs: col, Log: testserver.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	spec := runtime.Spec{Function: "fn", Version: 3, Runtime: "nodejs", Handler: "index.handler", CodeDir: dir,
		MemoryMB: 128, Timeout: 2 * time.Second, Env: map[string]string{"ONLY": "this"}}
	for _, m := range mutate {
		m(&spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inst, err := l.Start(ctx, spec)
	if inst != nil {
		t.Cleanup(inst.Stop)
	}
	return inst, col, err
}

func invoke(inst *runtime.Instance, payload string, timeout time.Duration) (*runtime.Result, error) {
	inv := &runtime.Invocation{RequestID: runtime.NewRequestID(), Payload: []byte(payload), Deadline: time.Now().Add(timeout)}
	return inst.Invoke(context.Background(), inv, false)
}

func TestInvokeAndLogs(t *testing.T) {
	inst, col, err := start(t, `exports.handler = async (e, ctx) => { console.log("got", e.n); return {n: e.n + 1, arn: ctx.invokedFunctionArn, trace: process.env._X_AMZN_TRACE_ID, env: Object.keys(process.env).sort()}; };`)
	if err != nil {
		t.Fatal(err)
	}
	if inst.InitDuration() <= 0 {
		t.Errorf("init duration %s", inst.InitDuration())
	}
	inv := &runtime.Invocation{RequestID: runtime.NewRequestID(), Payload: []byte(`{"n":41}`), Deadline: time.Now().Add(2 * time.Second)}
	res, err := inst.Invoke(context.Background(), inv, true)
	if err != nil || res.Error != nil {
		t.Fatalf("invoke: %v %+v", err, res)
	}
	var out struct {
		N     int
		Arn   string
		Trace string
		Env   []string
	}
	if err := json.Unmarshal(res.Payload, &out); err != nil || out.N != 42 || out.Arn != runtime.FunctionARN(runtime.DefaultRegion, "fn", 3) {
		t.Fatalf("result %s", res.Payload)
	}
	if !regexp.MustCompile(`^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Sampled=0$`).MatchString(out.Trace) || out.Trace != inv.TraceID {
		t.Errorf("_X_AMZN_TRACE_ID = %q (invocation's %q)", out.Trace, inv.TraceID)
	}
	for _, k := range out.Env {
		if !strings.HasPrefix(k, "AWS_") && !strings.HasPrefix(k, "LAMBDA_") && !strings.HasPrefix(k, "_") &&
			k != "ONLY" && k != "PATH" && k != "TZ" && k != "LANG" {
			t.Errorf("unexpected variable %s in the instance environment", k)
		}
	}
	msgs := col.messages()
	if len(msgs) != 4 {
		t.Fatalf("log lines:\n%s", strings.Join(msgs, "\n"))
	}
	rid := inv.RequestID
	for i, want := range []string{"platform " + rid + " START RequestId: " + rid + " Version: 3", "stdout " + rid + " ", "platform " + rid + " END RequestId: " + rid, "platform " + rid + " REPORT RequestId: " + rid} {
		if !strings.HasPrefix(msgs[i], want) {
			t.Errorf("line %d = %q, want prefix %q", i, msgs[i], want)
		}
	}
	if !strings.Contains(msgs[3], "Init Duration") || !strings.Contains(msgs[3], "Memory Size: 128 MB") {
		t.Errorf("REPORT %q", msgs[3])
	}
}

func TestRuntimeAPIConformance(t *testing.T) {
	// The handler calls the Runtime API itself, as a buggy or custom
	// runtime client might.
	inst, _, err := start(t, `
const http = require("http");
const api = process.env.AWS_LAMBDA_RUNTIME_API;
function post(path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request("http://" + api + path, {method: "POST"}, (res) => {
      let b = ""; res.on("data", (c) => b += c); res.on("end", () => resolve({status: res.statusCode, body: b}));
    });
    req.on("error", reject); req.end(body);
  });
}
exports.handler = async (e, ctx) => {
  if (e.op === "wrong-id") return post("/2018-06-01/runtime/invocation/not-a-request/response", "{}");
  if (e.op === "init-error-late") return post("/2018-06-01/runtime/init/error", '{"errorType":"X","errorMessage":"late"}');
  if (e.op === "early") { await post("/2018-06-01/runtime/invocation/" + ctx.awsRequestId + "/response", '{"early":true}'); return "late"; }
  if (e.op === "big") return "x".repeat(2 << 20);
  if (e.op === "exit") process.exit(7);
  if (e.op === "hang") await new Promise(() => setTimeout(() => {}, 1e9));
  return "ok";
};`)
	if err != nil {
		t.Fatal(err)
	}
	check := func(op string) (*runtime.Result, error) {
		return invoke(inst, `{"op":"`+op+`"}`, 2*time.Second)
	}
	res, err := check("wrong-id")
	if err != nil || !strings.Contains(string(res.Payload), `"status":400`) || !strings.Contains(string(res.Payload), "InvalidRequestID") {
		t.Errorf("wrong request id: %v %s", err, res.Payload)
	}
	res, err = check("init-error-late")
	if err != nil || !strings.Contains(string(res.Payload), `"status":403`) {
		t.Errorf("init error after init: %v %s", err, res.Payload)
	}
	res, err = check("early")
	if err != nil || string(res.Payload) != `{"early":true}` {
		t.Errorf("the first answer wins: %v %s", err, res.Payload)
	}
	res, err = check("big")
	if err != nil || res.Error == nil || res.Error.Type != "Function.ResponseSizeTooLarge" {
		t.Errorf("oversized response: %v %+v", err, res)
	}
	if res, err = check("plain"); err != nil || string(res.Payload) != `"ok"` {
		t.Errorf("after all that the instance still serves: %v %+v", err, res)
	}
	// The function never ends by itself (a 1e9 ms timer): an answer at all
	// is the deadline at work. Not before it; after it, killing the
	// instance takes what the machine gives it, so the bound only tells
	// "ended at the deadline" from "waited for the function".
	const deadline = 300 * time.Millisecond
	start := time.Now()
	_, err = invoke(inst, `{"op":"hang"}`, deadline)
	d := time.Since(start)
	if !errors.Is(err, runtime.ErrTimeout) {
		t.Fatalf("hang: %v", err)
	}
	t.Logf("a %s timeout answered after %s", deadline, d)
	if d < deadline || d > 30*time.Second {
		t.Errorf("a %s timeout answered after %s", deadline, d)
	}
	select {
	case <-inst.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the timed-out instance was not killed")
	}
}

func TestCrashAndInitErrors(t *testing.T) {
	inst, _, err := start(t, `exports.handler = async () => process.exit(7);`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := invoke(inst, `{}`, 2*time.Second); !errors.Is(err, runtime.ErrCrashed) || !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("crash: %v", err)
	}

	for _, c := range []struct {
		name, code, handler, want string
	}{
		{"import", `require("./nope");`, "index.handler", "Runtime.ImportModuleError"},
		{"no handler", `exports.other = 1;`, "index.handler", "Runtime.HandlerNotFound"},
		{"syntax", `exports.handler = async () => {;`, "index.handler", "Runtime.UserCodeSyntaxError"},
		{"throws at load", `throw new RangeError("at load");`, "index.handler", "RangeError"},
		{"exits at load", `process.exit(2);`, "index.handler", "Runtime.ExitError"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := start(t, c.code, func(s *runtime.Spec) { s.Handler = c.handler })
			var ie *runtime.InitError
			if !errors.As(err, &ie) || ie.Type != c.want {
				t.Fatalf("err = %v, want init error %s", err, c.want)
			}
			var body struct{ ErrorType, ErrorMessage string }
			if json.Unmarshal(ie.Body, &body) != nil || body.ErrorType != c.want || body.ErrorMessage == "" {
				t.Errorf("init error body %s", ie.Body)
			}
		})
	}
}

func TestStopKillsChildren(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	inst, _, err := start(t, `
const { spawn } = require("child_process");
const fs = require("fs");
exports.handler = async (e) => { const c = spawn("sleep", ["60"]); fs.writeFileSync(e.file, String(c.pid)); return c.pid; };`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := invoke(inst, `{"file":"`+pidFile+`"}`, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(string(b))
	inst.Stop()
	testserver.Eventually(t, 5*time.Second, "the child to be killed", func() bool {
		err := syscall.Kill(child, 0)
		if err != nil {
			return true
		}
		st, _ := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat")
		return strings.Contains(string(st), ") Z ")
	})
}
