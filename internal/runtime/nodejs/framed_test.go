package nodejs

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/runtime/framedtest"
)

// nodePath returns the node found on PATH.
func nodePath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found in PATH: %v", err)
	}
	return p
}

// startFramed writes files into a fresh task root and starts the bootstrap
// as Tern starts a pooled instance (framedtest.Start), its stdout going to
// stdout if not nil. Nothing is sent yet.
func startFramed(t testing.TB, files map[string]string, stdout *os.File) *framedtest.Runtime {
	t.Helper()
	taskRoot, cwd, bootstrap := framedtest.Prepare(t, files, Install)
	env := []string{"PATH=" + os.Getenv("PATH"), "TZ=:UTC", "LANG=en_US.UTF-8"}
	opts := &framedtest.Options{TaskRoot: taskRoot, Stdout: stdout, FatalErrors: true}
	return framedtest.Start(t, nodePath(t), []string{bootstrap}, cwd, env, opts)
}

// startReady starts a framed bootstrap, specialises it for handler and
// waits for READY.
func startReady(t testing.TB, handler string, files map[string]string, extraEnv map[string]string) *framedtest.Runtime {
	t.Helper()
	f := startFramed(t, files, nil)
	f.SpecializeReady(t, handler, extraEnv, 0)
	return f
}

func TestFramedSpecialize(t *testing.T) {
	t.Parallel()
	f := startFramed(t, map[string]string{
		"index.js": `
exports.handler = async () => ({
  env: { ...process.env },
  cwd: process.cwd(),
  tzOffset: new Date(Date.UTC(2024, 0, 1)).getTimezoneOffset(),
});`,
	}, nil)
	env := f.FunctionEnv("index.handler", map[string]string{
		"TZ":         "Asia/Tokyo", // the harness started node with TZ=:UTC
		"EMPTY":      "",
		"TRICKY":     "a=b \"quoted\" \\ back\nslash é ☃",
		"_X_NOT_SET": "x",
	})
	// A pooled instance may wait a long time for its function.
	time.Sleep(200 * time.Millisecond)
	if !f.Running() {
		t.Fatal("node exited while waiting for SPECIALIZE")
	}
	f.Specialize(t, "index.handler", env, 0)
	f.WantReady(t)

	fr := f.Invoke(t, `{}`, nil)
	var got struct {
		Env      map[string]string `json:"env"`
		Cwd      string            `json:"cwd"`
		TzOffset int               `json:"tzOffset"`
	}
	if fr.Type != framedtest.Response {
		t.Fatalf("got %d %s", fr.Type, fr.Body)
	}
	if err := json.Unmarshal(fr.Body, &got); err != nil {
		t.Fatal(err)
	}
	// The bootstrap names its runtime, as Lambda's do, unless told.
	if v := got.Env["AWS_EXECUTION_ENV"]; !strings.HasPrefix(v, "AWS_Lambda_nodejs") {
		t.Errorf("process.env.AWS_EXECUTION_ENV = %q, want AWS_Lambda_nodejs...", v)
	}
	delete(got.Env, "AWS_EXECUTION_ENV")
	if !maps.Equal(got.Env, env) {
		for _, k := range slices.Sorted(maps.Keys(got.Env)) {
			if want, ok := env[k]; !ok || want != got.Env[k] {
				t.Errorf("process.env[%q] = %q, sent %q (sent: %v)", k, got.Env[k], want, ok)
			}
		}
		for k := range env {
			if _, ok := got.Env[k]; !ok {
				t.Errorf("process.env lacks %q", k)
			}
		}
	}
	if got.Cwd != f.TaskRoot {
		t.Errorf("cwd = %q, want the task root %q", got.Cwd, f.TaskRoot)
	}
	if got.TzOffset != -540 {
		t.Errorf("timezone offset = %d minutes, want -540 (TZ=Asia/Tokyo from SPECIALIZE)", got.TzOffset)
	}
}

func TestFramedHandlerKinds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, handler string
		files         map[string]string
		event, want   string
	}{
		{"cjs", "index.handler", map[string]string{
			"index.js": `exports.handler = async (event) => ({ got: event.x, kind: 'cjs' });`,
		}, `{"x":42}`, `{"got":42,"kind":"cjs"}`},
		{"esm", "index.handler", map[string]string{
			"index.mjs": "import { helper } from './lib.mjs';\nexport const handler = async (event) => ({ esm: true, n: helper(event.n) });\n",
			"lib.mjs":   "export const helper = (n) => n + 1;\n",
		}, `{"n":1}`, `{"esm":true,"n":2}`},
		{"type module", "src/app.handler", map[string]string{
			"package.json": `{"type":"module"}`,
			"src/app.js":   "export async function handler(e) { return `module ${e.v}`; }\n",
		}, `{"v":"x"}`, `"module x"`},
		{"callback", "index.handler", map[string]string{
			"index.js": `exports.handler = (e, c, cb) => cb(null, { ok: e.x });`,
		}, `{"x":"y"}`, `{"ok":"y"}`},
		{"node_modules", "index.handler", map[string]string{
			"node_modules/shout/package.json": `{"name":"shout","main":"main.js"}`,
			"node_modules/shout/main.js":      `module.exports = (s) => s.toUpperCase() + '!';`,
			"index.js":                        `const shout = require('shout'); exports.handler = async (e) => shout(e.s);`,
		}, `{"s":"hi"}`, `"HI!"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startReady(t, tc.handler, tc.files, nil)
			framedtest.WantResponse(t, f.Invoke(t, tc.event, nil), tc.want)
		})
	}
}

func TestFramedSequentialInvocations(t *testing.T) {
	t.Parallel()
	f := startReady(t, "index.handler", map[string]string{
		"index.js": `let n = 0; exports.handler = async (e) => ({ n: ++n, pid: process.pid, i: e.i });`,
	}, nil)
	pid := -1.0
	for i := 1; i <= 20; i++ {
		fr := f.Invoke(t, fmt.Sprintf(`{"i":%d}`, i), nil)
		var v struct{ N, Pid, I float64 }
		if err := json.Unmarshal(fr.Body, &v); err != nil {
			t.Fatalf("%s: %v", fr.Body, err)
		}
		if v.N != float64(i) || v.I != float64(i) {
			t.Fatalf("invocation %d: %s", i, fr.Body)
		}
		if pid >= 0 && v.Pid != pid {
			t.Fatalf("pid changed")
		}
		pid = v.Pid
	}
	if !f.Running() {
		t.Fatal("node exited")
	}
}

func TestFramedCompletion(t *testing.T) {
	t.Parallel()
	f := startReady(t, "index.handler", map[string]string{
		"index.js": `
exports.handler = (e, c, cb) => {
  switch (e.m) {
    case 'undefined': return Promise.resolve(undefined);
    case 'sync': return 'ignored';
    case 'succeed': c.succeed({ via: 'succeed' }); setTimeout(() => {}, 60000); return;
    case 'done': c.done(null, { via: 'done' }); return;
    case 'fail': c.fail(new RangeError('via fail')); return;
    case 'cycle': return (async () => { const a = {}; a.self = a; return a; })();
    case 'first': c.callbackWaitsForEmptyEventLoop = false; cb(null, 'from callback'); cb(null, 'again'); return Promise.resolve('promise');
    case 'wait': cb(null, 'waited'); setTimeout(() => console.log('timer fired'), 200); return;
    case 'nowait': c.callbackWaitsForEmptyEventLoop = false; cb(null, 'not waited'); setTimeout(() => {}, 60000); return;
    case 'string': return Promise.reject('oops');
  }
};`,
	}, nil)
	framedtest.WantResponse(t, f.Invoke(t, `{"m":"undefined"}`, nil), `null`)
	framedtest.WantResponse(t, f.Invoke(t, `{"m":"sync"}`, nil), `null`)
	framedtest.WantResponse(t, f.Invoke(t, `{"m":"done"}`, nil), `{"via":"done"}`)
	framedtest.WantError(t, f.Invoke(t, `{"m":"fail"}`, nil), framedtest.Error, "RangeError", "via fail")
	framedtest.WantError(t, f.Invoke(t, `{"m":"cycle"}`, nil), framedtest.Error, "Runtime.SerializationError", "circular")
	framedtest.WantResponse(t, f.Invoke(t, `{"m":"first"}`, nil), `"from callback"`)
	begin := time.Now()
	framedtest.WantResponse(t, f.Invoke(t, `{"m":"wait"}`, nil), `"waited"`)
	if d := time.Since(begin); d < 190*time.Millisecond {
		t.Errorf("answered after %v, before the 200ms timer drained the event loop", d)
	}
	// Both leave a 60 s timer behind, so nothing after them waits for an
	// empty event loop.
	begin = time.Now()
	framedtest.WantResponse(t, f.Invoke(t, `{"m":"succeed"}`, nil), `{"via":"succeed"}`)
	framedtest.WantResponse(t, f.Invoke(t, `{"m":"nowait"}`, nil), `"not waited"`)
	if d := time.Since(begin); d > 30*time.Second { // waiting would take the 60 s timers
		t.Errorf("context.succeed and callbackWaitsForEmptyEventLoop=false still waited %v", d)
	}
	if stack := framedtest.WantError(t, f.Invoke(t, `{"m":"string"}`, nil), framedtest.Error, "Error", "oops"); len(stack) != 0 {
		t.Errorf("stackTrace = %q, want []", stack)
	}
	framedtest.WantError(t, f.Invoke(t, `{not json`, nil), framedtest.Error, "Runtime.InvalidEvent", "invalid event JSON")
	if !f.Running() {
		t.Fatal("node exited")
	}
}

func TestFramedContext(t *testing.T) {
	t.Parallel()
	f := startReady(t, "index.handler", map[string]string{
		"index.js": `
exports.handler = async (e, c) => ({
  awsRequestId: c.awsRequestId,
  functionName: c.functionName,
  functionVersion: c.functionVersion,
  memoryLimitInMB: c.memoryLimitInMB,
  invokedFunctionArn: c.invokedFunctionArn,
  logGroupName: c.logGroupName,
  logStreamName: c.logStreamName,
  clientContext: c.clientContext,
  identity: c.identity,
  waits: c.callbackWaitsForEmptyEventLoop,
  remaining: c.getRemainingTimeInMillis(),
  trace: process.env._X_AMZN_TRACE_ID,
  hasTrace: '_X_AMZN_TRACE_ID' in process.env,
});`,
	}, map[string]string{"_X_AMZN_TRACE_ID": "stale"})

	type ctxResult struct {
		AwsRequestID       string         `json:"awsRequestId"`
		FunctionName       string         `json:"functionName"`
		FunctionVersion    string         `json:"functionVersion"`
		MemoryLimitInMB    any            `json:"memoryLimitInMB"`
		InvokedFunctionArn string         `json:"invokedFunctionArn"`
		LogGroupName       string         `json:"logGroupName"`
		LogStreamName      string         `json:"logStreamName"`
		ClientContext      map[string]any `json:"clientContext"`
		Identity           map[string]any `json:"identity"`
		Waits              bool           `json:"waits"`
		Remaining          float64        `json:"remaining"`
		Trace              *string        `json:"trace"`
		HasTrace           bool           `json:"hasTrace"`
	}
	decode := func(fr framedtest.Frame) ctxResult {
		t.Helper()
		if fr.Type != framedtest.Response {
			t.Fatalf("got %d %s", fr.Type, fr.Body)
		}
		var got ctxResult
		if err := json.Unmarshal(fr.Body, &got); err != nil {
			t.Fatal(err)
		}
		return got
	}

	const trace = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"
	id := "6f1c2b4e-8d3a-4c9b-a1e2-3f4a5b6c7d8e"
	got := decode(f.Invoke(t, `{}`, map[string]any{
		"id":            id,
		"deadline":      time.Now().Add(10 * time.Second).UnixMilli(),
		"trace":         trace,
		"clientContext": map[string]any{"custom": map[string]any{"k": "v"}},
		"identity":      `{"cognitoIdentityId":"cid","cognitoIdentityPoolId":"pool"}`, // JSON text works too
	}))
	if got.AwsRequestID != id || got.FunctionName != "fn" || got.FunctionVersion != "7" ||
		got.MemoryLimitInMB != "256" || got.InvokedFunctionArn != framedtest.ARN ||
		got.LogGroupName != "/tern/fn" || got.LogStreamName != "stream-1" || !got.Waits {
		t.Errorf("context = %+v", got)
	}
	if got.Remaining <= 5000 || got.Remaining > 10000 {
		t.Errorf("getRemainingTimeInMillis() = %v, want in (5000, 10000]", got.Remaining)
	}
	if cc, _ := got.ClientContext["custom"].(map[string]any); cc["k"] != "v" || got.Identity["cognitoIdentityId"] != "cid" {
		t.Errorf("clientContext/identity = %v / %v", got.ClientContext, got.Identity)
	}
	if got.Trace == nil || *got.Trace != trace {
		t.Errorf("_X_AMZN_TRACE_ID = %v", got.Trace)
	}

	// Without the optional fields: the trace id is removed, no client
	// context or identity; a deadline in the past leaves no time.
	got = decode(f.Invoke(t, `{}`, map[string]any{"deadline": time.Now().Add(-time.Second).UnixMilli()}))
	if got.HasTrace || got.ClientContext != nil || got.Identity != nil || got.Remaining != 0 {
		t.Errorf("second invocation context = %+v", got)
	}
}

func TestFramedHandlerThrows(t *testing.T) {
	t.Parallel()
	f := startReady(t, "index.handler", map[string]string{
		"index.js": `
class ValidationError extends Error { constructor(m) { super(m); this.name = 'ValidationError'; } }
exports.handler = async (e) => {
  if (e.kind === 'sync') return exports.sync();
  if (e.kind === 'custom') throw new ValidationError('nope');
  if (e.kind === 'odd') { const err = new Error('odd'); err.name = 'Odd "Type" \\ é\n'; throw err; }
  throw new Error('boom\nsecond line');
};
exports.sync = () => { throw new RangeError('sync boom'); };`,
	}, nil)
	stack := framedtest.WantError(t, f.Invoke(t, `{}`, nil), framedtest.Error, "Error", "boom\nsecond line")
	if len(stack) < 2 || stack[0] != "Error: boom" || !strings.Contains(strings.Join(stack, "\n"), "index.js") {
		t.Errorf("stackTrace = %q", stack)
	}
	framedtest.WantError(t, f.Invoke(t, `{"kind":"custom"}`, nil), framedtest.Error, "ValidationError", "nope")
	// The error type goes into the header as JSON, whatever it holds.
	framedtest.WantError(t, f.Invoke(t, `{"kind":"odd"}`, nil), framedtest.Error, "Odd \"Type\" \\ é\n", "odd")
	// An id that needs escaping still comes back as sent.
	framedtest.WantError(t, f.Invoke(t, `{"kind":"sync"}`, map[string]any{"id": `we"ird\id é`}), framedtest.Error, "RangeError", "sync boom")
	if !f.Running() {
		t.Fatal("node exited")
	}
}

func TestFramedInitErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, handler string
		files         map[string]string
		errorType     string
		message       string // substring
	}{
		{"missing module", "missing.handler", map[string]string{"index.js": ``}, "Runtime.ImportModuleError", "missing"},
		{"missing dependency", "index.handler", map[string]string{"index.js": `require('not-installed'); exports.handler = async () => 1;`}, "Runtime.ImportModuleError", "not-installed"},
		{"missing export", "index.handler", map[string]string{"index.js": `exports.other = async () => 1;`}, "Runtime.HandlerNotFound", "index.handler is undefined or not exported"},
		{"missing ESM export", "index.handler", map[string]string{"index.mjs": `export const other = 1;`}, "Runtime.HandlerNotFound", "index.handler"},
		{"syntax error", "index.handler", map[string]string{"index.js": "exports.handler = async () => {\n  return 1 +;\n};"}, "Runtime.UserCodeSyntaxError", "SyntaxError: "},
		{"ESM syntax error", "index.handler", map[string]string{"index.mjs": "export const handler = async () => {{;"}, "Runtime.UserCodeSyntaxError", "SyntaxError: "},
		{"throws while loading", "index.handler", map[string]string{"index.js": `null.x; exports.handler = async () => 1;`}, "TypeError", "null"},
		{"malformed handler", "index", map[string]string{"index.js": ``}, "Runtime.MalformedHandlerName", "index"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startFramed(t, tc.files, nil)
			f.Specialize(t, tc.handler, f.FunctionEnv(tc.handler, nil), 0)
			fr := f.Read(t)
			framedtest.WantError(t, fr, framedtest.InitError, tc.errorType, tc.message)
			if h := fr.HeaderFields(t); len(h) != 1 {
				t.Errorf("INIT_ERROR header %s, want only type", fr.Header)
			}
			f.WantExit(t, 1)
		})
	}

	t.Run("task root missing", func(t *testing.T) {
		t.Parallel()
		f := startFramed(t, map[string]string{"index.js": ``}, nil)
		missing := filepath.Join(f.TaskRoot, "nope")
		f.Send(t, framedtest.Specialize, framedtest.SpecializeHeader(t, "index.handler", missing, f.FunctionEnv("index.handler", nil), 0), nil)
		framedtest.WantError(t, f.Read(t), framedtest.InitError, "Error", "ENOENT")
		f.WantExit(t, 1)
	})
}

func TestFramedUncaughtDuringInvocation(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"index.js": `
exports.handler = async (e) => {
  if (e.kind === 'error') Promise.reject(new RangeError('rejected in background'));
  if (e.kind === 'value') Promise.reject('plain reason');
  if (e.kind === 'throw') setTimeout(() => { throw new TypeError('thrown in timer'); }, 10);
  await new Promise((r) => setTimeout(r, 2000));
  return 'finished';
};`,
	}
	cases := []struct{ kind, errorType, message string }{
		{"error", "RangeError", "rejected in background"},
		{"value", "Runtime.UnhandledPromiseRejection", "plain reason"},
		{"throw", "TypeError", "thrown in timer"},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			f := startReady(t, "index.handler", files, nil)
			fr := f.Invoke(t, `{"kind":"`+tc.kind+`"}`, nil)
			framedtest.WantError(t, fr, framedtest.Error, tc.errorType, tc.message)
			if fatal := fr.HeaderFields(t)["fatal"]; fatal != true {
				t.Errorf("ERROR of an uncaught error: fatal = %v, want true (the runtime exits)", fatal)
			}
			f.WantExit(t, 1)
		})
	}
}

func TestFramedLargePayloads(t *testing.T) {
	t.Parallel()
	f := startReady(t, "index.handler", map[string]string{
		"index.js": `
exports.handler = async (e) => {
  if (e.n) return 'x'.repeat(e.n - 4) + 'é'; // n bytes of JSON with the quotes
  return { len: e.s.length, head: e.s.slice(0, 3), tail: e.s.slice(-3) };
};`,
	}, nil)

	// A 3 MB result, read in pieces.
	const size = 3 << 20
	before := f.Conn.Reads.Load()
	fr := f.Invoke(t, fmt.Sprintf(`{"n":%d}`, size), nil)
	reads := f.Conn.Reads.Load() - before
	if fr.Type != framedtest.Response || len(fr.Body) != size {
		t.Fatalf("got frame type %d with %d bytes, want RESPONSE of %d", fr.Type, len(fr.Body), size)
	}
	if want := `"` + strings.Repeat("x", size-4) + `é"`; string(fr.Body) != want {
		t.Fatal("large response corrupted")
	}
	if reads < 2 {
		t.Errorf("the large frame came in %d reads; the test meant to cover several", reads)
	}
	t.Logf("3 MB response frame read in %d reads", reads)

	// A 3 MB event, sent in pieces with pauses: the bootstrap must put it
	// back together.
	s := strings.Repeat("abcdefgh", size/8)
	event := framedtest.MustJSON(t, map[string]string{"s": s})
	id := "large-event"
	frame := framedtest.AppendFrame(nil, framedtest.Invoke, framedtest.InvokeHeader(t, id, nil), event)
	for _, cut := range [][2]int{{0, 2}, {2, 6}, {6, 40}, {40, 1 << 20}, {1 << 20, len(frame)}} {
		f.Write(t, frame[cut[0]:cut[1]])
		time.Sleep(20 * time.Millisecond)
	}
	framedtest.WantResponse(t, f.WantAnswer(t, id), fmt.Sprintf(`{"len":%d,"head":"abc","tail":"fgh"}`, len(s)))
}

func TestFramedPipelinedAndSplitFrames(t *testing.T) {
	t.Parallel()
	f := startFramed(t, map[string]string{
		"index.js": `exports.handler = async (e) => e.v;`,
	}, nil)
	// SPECIALIZE and two INVOKEs in one write: handled in order, one at a
	// time.
	var b []byte
	b = framedtest.AppendFrame(b, framedtest.Specialize, framedtest.SpecializeHeader(t, "index.handler", f.TaskRoot, f.FunctionEnv("index.handler", nil), 0), nil)
	b = framedtest.AppendFrame(b, framedtest.Invoke, framedtest.InvokeHeader(t, "one", nil), []byte(`{"v":1}`))
	b = framedtest.AppendFrame(b, framedtest.Invoke, framedtest.InvokeHeader(t, "two", nil), []byte(`{"v":2}`))
	f.Write(t, b)
	f.WantReady(t)
	framedtest.WantResponse(t, f.WantAnswer(t, "one"), `1`)
	framedtest.WantResponse(t, f.WantAnswer(t, "two"), `2`)

	// One frame a byte at a time.
	frame := framedtest.AppendFrame(nil, framedtest.Invoke, framedtest.InvokeHeader(t, "three", nil), []byte(`{"v":3}`))
	for i := range frame {
		f.Write(t, frame[i:i+1])
		if i%16 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	framedtest.WantResponse(t, f.WantAnswer(t, "three"), `3`)
}

func TestFramedSocketClosed(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"index.js": `exports.handler = async (e) => { await new Promise((r) => setTimeout(r, e.ms)); return 'ok'; };`,
	}
	cases := []struct {
		name    string
		prepare func(t *testing.T, f *framedtest.Runtime)
	}{
		{"before SPECIALIZE", func(t *testing.T, f *framedtest.Runtime) {}},
		{"idle", func(t *testing.T, f *framedtest.Runtime) {
			f.Specialize(t, "index.handler", f.FunctionEnv("index.handler", nil), 0)
			f.WantReady(t)
			framedtest.WantResponse(t, f.Invoke(t, `{"ms":0}`, nil), `"ok"`)
		}},
		{"during an invocation", func(t *testing.T, f *framedtest.Runtime) {
			f.Specialize(t, "index.handler", f.FunctionEnv("index.handler", nil), 0)
			f.WantReady(t)
			f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "long", nil), []byte(`{"ms":30000}`))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startFramed(t, files, nil)
			tc.prepare(t, f)
			time.Sleep(100 * time.Millisecond)
			began := time.Now()
			f.Conn.Close()
			code := f.ExitCode(t, 2*time.Second)
			if code != 0 && code != 1 {
				t.Errorf("exit code = %d", code)
			}
			t.Logf("node exited with %d %v after the socket closed", code, time.Since(began))
		})
	}
}

func TestFramedProtocolErrors(t *testing.T) {
	t.Parallel()
	files := map[string]string{"index.js": `exports.handler = async () => 1;`}
	specialized := func(t *testing.T, f *framedtest.Runtime) {
		f.Specialize(t, "index.handler", f.FunctionEnv("index.handler", nil), 0)
		f.WantReady(t)
	}
	cases := []struct {
		name    string
		ready   bool
		frame   func(f *framedtest.Runtime) []byte
		message string
	}{
		{"length below 3", false, func(*framedtest.Runtime) []byte { return []byte{0, 0, 0, 2, framedtest.Specialize, 0} }, "frame length 2"},
		{"header longer than frame", false, func(*framedtest.Runtime) []byte { return []byte{0, 0, 0, 5, framedtest.Specialize, 0, 9, '{', '}'} }, "header length 9"},
		{"unknown type", true, func(*framedtest.Runtime) []byte { return framedtest.AppendFrame(nil, 42, []byte(`{}`), nil) }, "type 42"},
		{"runtime's own type", true, func(*framedtest.Runtime) []byte {
			return framedtest.AppendFrame(nil, framedtest.Ready, []byte(`{}`), nil)
		}, "type 2"},
		{"INVOKE before SPECIALIZE", false, func(f *framedtest.Runtime) []byte {
			return framedtest.AppendFrame(nil, framedtest.Invoke, framedtest.InvokeHeader(t, "x", nil), []byte(`{}`))
		}, "INVOKE before SPECIALIZE"},
		{"second SPECIALIZE", true, func(f *framedtest.Runtime) []byte {
			return framedtest.AppendFrame(nil, framedtest.Specialize, framedtest.SpecializeHeader(t, "index.handler", f.TaskRoot, f.FunctionEnv("index.handler", nil), 0), nil)
		}, "second SPECIALIZE"},
		{"header not JSON", false, func(*framedtest.Runtime) []byte {
			return framedtest.AppendFrame(nil, framedtest.Specialize, []byte(`{nope`), nil)
		}, "not JSON"},
		{"SPECIALIZE without env", false, func(f *framedtest.Runtime) []byte {
			return framedtest.AppendFrame(nil, framedtest.Specialize, framedtest.MustJSON(t, map[string]any{"handler": "index.handler", "taskRoot": f.TaskRoot}), nil)
		}, "env"},
		{"INVOKE without id", true, func(*framedtest.Runtime) []byte {
			return framedtest.AppendFrame(nil, framedtest.Invoke, []byte(`{"deadline":1}`), []byte(`{}`))
		}, "id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startFramed(t, files, nil)
			if tc.ready {
				specialized(t, f)
			}
			f.Write(t, tc.frame(f))
			f.WantProtocolError(t, tc.message)
		})
	}
}

// TestFramedConsoleBeforeResponse checks that log lines are in the stdout
// pipe by the time the answer frame can be read: the test reads the pipe
// itself, without blocking, right after the frame.
func TestFramedConsoleBeforeResponse(t *testing.T) {
	t.Parallel()
	w, drain := framedtest.StdoutPipe(t)
	f := startFramed(t, map[string]string{
		"index.js": `
console.log('during init');
exports.handler = async (e) => {
  console.log('hello\nworld', 42, { a: 1 });
  console.info('info %s', 'x');
  console.warn('warned');
  console.error('failed %d', 3);
  console.debug('dbg');
  console.trace('trc');
  console.log('padding', 'p'.repeat(e.pad));
  return 1;
};`,
	}, w)
	f.SpecializeReady(t, "index.handler", nil, 0)
	if got := drain(); !strings.Contains(got, "\tundefined\tINFO\tduring init\n") {
		t.Fatalf("init log line not on stdout when READY was read: %q", got)
	}

	for i := range 5 {
		id := fmt.Sprintf("console-%d", i)
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, id, nil), fmt.Appendf(nil, `{"pad":%d}`, 1+i*4000))
		framedtest.WantResponse(t, f.WantAnswer(t, id), `1`)
		got := drain()
		if !strings.Contains(got, id+"\tINFO\tpadding p") {
			t.Fatalf("invocation %d: log lines not on stdout when the RESPONSE frame was read:\n%q", i, got)
		}
	}

	out := drain()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	ts := `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`
	id := regexp.QuoteMeta("console-0")
	want := []string{
		ts + `\tundefined\tINFO\tduring init`,
		ts + `\t` + id + `\tINFO\thello\rworld 42 \{ a: 1 \}`,
		ts + `\t` + id + `\tINFO\tinfo x`,
		ts + `\t` + id + `\tWARN\twarned`,
		ts + `\t` + id + `\tERROR\tfailed 3`,
		ts + `\t` + id + `\tDEBUG\tdbg`,
		ts + `\t` + id + `\tTRACE\ttrc`,
		ts + `\t` + id + `\tINFO\tpadding p`,
	}
	if len(lines) != 1+7*5 {
		t.Fatalf("stdout has %d lines, want %d:\n%s", len(lines), 1+7*5, out)
	}
	for i, re := range want {
		if !regexp.MustCompile(`^` + re + `$`).MatchString(lines[i]) {
			t.Errorf("line %d = %q, want match %q", i, lines[i], re)
		}
	}
}

// BenchmarkWarmInvokeFramed is BenchmarkWarmInvoke over the framed
// protocol: write an INVOKE, the bootstrap runs the same async handler and
// writes the RESPONSE.
func BenchmarkWarmInvokeFramed(b *testing.B) {
	f := startReady(b, "index.handler", map[string]string{
		"index.js": `exports.handler = async (e) => ({ statusCode: 200, body: e.body });`,
	}, nil)
	const payload = `{"body":"hello world","headers":{"content-type":"text/plain"}}`
	const want = `{"statusCode":200,"body":"hello world"}`
	framedtest.WantResponse(b, f.Invoke(b, payload, nil), want)
	frame := framedtest.AppendFrame(nil, framedtest.Invoke, framedtest.InvokeHeader(b, "bench", map[string]any{"deadline": time.Now().Add(time.Hour).UnixMilli()}), []byte(payload))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		f.Write(b, frame)
		if fr := f.Read(b); fr.Type != framedtest.Response || string(fr.Body) != want {
			b.Fatalf("got %d %s %s", fr.Type, fr.Header, fr.Body)
		}
	}
}
