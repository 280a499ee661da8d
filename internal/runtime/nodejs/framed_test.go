package nodejs

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Frame types of docs/runtime-protocol.md.
const (
	ftSpecialize = 1
	ftReady      = 2
	ftInitError  = 3
	ftInvoke     = 4
	ftResponse   = 5
	ftError      = 6
	ftBooted     = 7
)

const testARN = "arn:aws:lambda:local:000000000000:function:fn:7"

// wireFrame is one decoded frame.
type wireFrame struct {
	typ    byte
	header []byte
	body   []byte
}

// appendWireFrame encodes a frame: n (uint32 BE), type, h (uint16 BE),
// header, body.
func appendWireFrame(dst []byte, typ byte, header, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(3+len(header)+len(body)))
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(header)))
	dst = append(dst, header...)
	return append(dst, body...)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// headerFields decodes a frame header into a map, insisting on an object.
func (f wireFrame) headerFields(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(f.header, &m); err != nil || m == nil {
		t.Fatalf("frame type %d: header %q is not a JSON object (%v)", f.typ, f.header, err)
	}
	return m
}

// countingConn counts the reads that returned data.
type countingConn struct {
	net.Conn
	reads atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}

// framedInst is a bootstrap started in framed mode, the harness holding the
// other end of its socket.
type framedInst struct {
	*proc
	conn     *countingConn
	r        *bufio.Reader
	taskRoot string // real path
	cwd      string // the neutral directory node starts in
	seq      int
}

type framedOptions struct {
	stdout *os.File // node's stdout instead of a buffer
}

// startFramed writes files into a fresh task root and starts the bootstrap
// as Tern starts a pooled instance: minimal environment, a neutral working
// directory, one end of a socketpair as fd 3. Nothing is sent yet.
func startFramed(t testing.TB, files map[string]string, opts *framedOptions) *framedInst {
	t.Helper()
	nodePath, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found in PATH: %v", err)
	}
	root := t.TempDir()
	taskRoot := filepath.Join(root, "task")
	writeFiles(t, taskRoot, files)
	if taskRoot, err = filepath.EvalSymlinks(taskRoot); err != nil {
		t.Fatal(err)
	}
	cwd := filepath.Join(root, "neutral")
	if err := os.Mkdir(cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	bootstrap, err := Install(filepath.Join(root, "runtime"))
	if err != nil {
		t.Fatal(err)
	}

	// CLOEXEC: only this node gets the other end, as fd 3, never a node
	// another test starts meanwhile.
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours := os.NewFile(uintptr(fds[0]), "harness")
	theirs := os.NewFile(uintptr(fds[1]), "runtime")
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		t.Fatal(err)
	}
	conn := &countingConn{Conn: c}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, nodePath, bootstrap)
	cmd.Dir = cwd
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TZ=:UTC", "LANG=en_US.UTF-8", "TERN_RUNTIME_FD=3"}
	cmd.ExtraFiles = []*os.File{theirs}
	p := &proc{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	if opts != nil && opts.stdout != nil {
		cmd.Stdout = opts.stdout
	} else {
		cmd.Stdout = p.stdout
	}
	cmd.Stderr = p.stderr
	err = cmd.Start()
	theirs.Close() // node has its own copy
	if opts != nil && opts.stdout != nil {
		opts.stdout.Close()
	}
	if err != nil {
		cancel()
		conn.Close()
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		conn.Close()
		cancel()
		<-p.done
		if t.Failed() {
			t.Logf("node stdout:\n%s\nnode stderr:\n%s", p.stdout, p.stderr)
		}
	})
	f := &framedInst{proc: p, conn: conn, r: bufio.NewReaderSize(conn, 64<<10), taskRoot: taskRoot, cwd: cwd}
	if fr := f.read(t); fr.typ != ftBooted || string(fr.header) != "{}" || len(fr.body) != 0 {
		t.Fatalf("first frame: type %d header %s body %q, want BOOTED {}", fr.typ, fr.header, fr.body)
	}
	return f
}

// functionEnv is the environment Tern would send for handler, plus extra.
func (f *framedInst) functionEnv(handler string, extra map[string]string) map[string]string {
	env := map[string]string{
		"PATH":                            "/usr/local/bin:/usr/bin:/bin",
		"TZ":                              ":UTC",
		"LANG":                            "en_US.UTF-8",
		"AWS_LAMBDA_FUNCTION_NAME":        "fn",
		"AWS_LAMBDA_FUNCTION_VERSION":     "7",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
		"AWS_LAMBDA_RUNTIME_API":          "127.0.0.1:9",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/tern/fn",
		"AWS_LAMBDA_LOG_STREAM_NAME":      "stream-1",
		"_HANDLER":                        handler,
		"LAMBDA_TASK_ROOT":                f.taskRoot,
	}
	maps.Copy(env, extra)
	return env
}

func (f *framedInst) write(t testing.TB, b []byte) {
	t.Helper()
	if err := f.conn.SetWriteDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.conn.Write(b); err != nil {
		t.Fatalf("writing to the runtime: %v", err)
	}
}

func (f *framedInst) send(t testing.TB, typ byte, header, body []byte) {
	t.Helper()
	f.write(t, appendWireFrame(nil, typ, header, body))
}

func specializeHeader(t testing.TB, handler, taskRoot string, env map[string]string) []byte {
	return mustJSON(t, map[string]any{"handler": handler, "taskRoot": taskRoot, "env": env})
}

func (f *framedInst) specialize(t testing.TB, handler string, env map[string]string) {
	t.Helper()
	f.send(t, ftSpecialize, specializeHeader(t, handler, f.taskRoot, env), nil)
}

// read reads the next frame from the runtime.
func (f *framedInst) read(t testing.TB) wireFrame {
	t.Helper()
	if err := f.conn.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	var head [7]byte
	if _, err := readFull(f.r, head[:]); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	n := binary.BigEndian.Uint32(head[0:4])
	h := binary.BigEndian.Uint16(head[5:7])
	if n < 3 || uint32(h) > n-3 {
		t.Fatalf("bad frame from the runtime: n=%d h=%d", n, h)
	}
	rest := make([]byte, n-3)
	if _, err := readFull(f.r, rest); err != nil {
		t.Fatalf("reading a frame of %d bytes: %v", n, err)
	}
	return wireFrame{typ: head[4], header: rest[:h], body: rest[h:]}
}

func readFull(r *bufio.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (f *framedInst) wantReady(t testing.TB) {
	t.Helper()
	fr := f.read(t)
	if fr.typ != ftReady {
		t.Fatalf("got frame type %d (header %s, body %s), want READY", fr.typ, fr.header, fr.body)
	}
	if string(fr.header) != "{}" || len(fr.body) != 0 {
		t.Fatalf("READY header %q body %q, want {} and nothing", fr.header, fr.body)
	}
}

// startReady starts a framed bootstrap, specialises it for handler and
// waits for READY.
func startReady(t testing.TB, handler string, files map[string]string, extraEnv map[string]string) *framedInst {
	t.Helper()
	f := startFramed(t, files, nil)
	f.specialize(t, handler, f.functionEnv(handler, extraEnv))
	f.wantReady(t)
	return f
}

// invokeHeader returns an INVOKE header for id with the usual fields plus
// extra.
func invokeHeader(t testing.TB, id string, extra map[string]any) []byte {
	h := map[string]any{"id": id, "deadline": time.Now().Add(30 * time.Second).UnixMilli(), "arn": testARN}
	maps.Copy(h, extra)
	return mustJSON(t, h)
}

// invoke sends an INVOKE and reads its answer, checking the header.
func (f *framedInst) invoke(t testing.TB, event string, extra map[string]any) wireFrame {
	t.Helper()
	f.seq++
	id := fmt.Sprintf("%08x-0000-4000-8000-%012x", time.Now().UnixNano()&0xffffffff, f.seq)
	if v, ok := extra["id"].(string); ok {
		id = v
	}
	f.send(t, ftInvoke, invokeHeader(t, id, extra), []byte(event))
	return f.wantAnswer(t, id)
}

func (f *framedInst) wantAnswer(t testing.TB, id string) wireFrame {
	t.Helper()
	fr := f.read(t)
	h := fr.headerFields(t)
	switch fr.typ {
	case ftResponse:
		if len(h) != 1 {
			t.Errorf("RESPONSE header %s, want only id", fr.header)
		}
	case ftError:
		_, fatal := h["fatal"]
		if len(h) != 2 && !(len(h) == 3 && fatal) {
			t.Errorf("ERROR header %s, want id and type (and fatal)", fr.header)
		}
	default:
		t.Fatalf("got frame type %d (header %s, body %s), want RESPONSE or ERROR", fr.typ, fr.header, fr.body)
	}
	if h["id"] != id {
		t.Fatalf("answer header %s, want id %q", fr.header, id)
	}
	return fr
}

func wantFramedResponse(t testing.TB, fr wireFrame, want string) {
	t.Helper()
	if fr.typ != ftResponse {
		t.Fatalf("got frame type %d %s %s, want RESPONSE %s", fr.typ, fr.header, fr.body, want)
	}
	if string(fr.body) != want {
		t.Fatalf("response = %s, want %s", fr.body, want)
	}
}

// wantFramedError checks an ERROR or INIT_ERROR frame: the header's type is
// the body's errorType, and the body has a stackTrace array.
func wantFramedError(t testing.TB, fr wireFrame, typ byte, errorType, message string) []string {
	t.Helper()
	if fr.typ != typ {
		t.Fatalf("got frame type %d %s %s, want %d with %s", fr.typ, fr.header, fr.body, typ, errorType)
	}
	var v struct {
		ErrorType    string    `json:"errorType"`
		ErrorMessage string    `json:"errorMessage"`
		StackTrace   *[]string `json:"stackTrace"`
	}
	if err := json.Unmarshal(fr.body, &v); err != nil {
		t.Fatalf("error body %q: %v", fr.body, err)
	}
	if v.StackTrace == nil {
		t.Fatalf("error body %q has no stackTrace array", fr.body)
	}
	if got := fr.headerFields(t)["type"]; got != v.ErrorType {
		t.Errorf("header type = %v, body errorType %q", got, v.ErrorType)
	}
	if v.ErrorType != errorType {
		t.Errorf("errorType = %q, want %q (message %q)", v.ErrorType, errorType, v.ErrorMessage)
	}
	if !strings.Contains(v.ErrorMessage, message) {
		t.Errorf("errorMessage = %q, want it to contain %q", v.ErrorMessage, message)
	}
	return *v.StackTrace
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
	env := f.functionEnv("index.handler", map[string]string{
		"TZ":         "Asia/Tokyo", // the harness started node with TZ=:UTC
		"EMPTY":      "",
		"TRICKY":     "a=b \"quoted\" \\ back\nslash é ☃",
		"_X_NOT_SET": "x",
	})
	// A pooled instance may wait a long time for its function.
	time.Sleep(200 * time.Millisecond)
	if !f.running() {
		t.Fatal("node exited while waiting for SPECIALIZE")
	}
	f.specialize(t, "index.handler", env)
	f.wantReady(t)

	fr := f.invoke(t, `{}`, nil)
	var got struct {
		Env      map[string]string `json:"env"`
		Cwd      string            `json:"cwd"`
		TzOffset int               `json:"tzOffset"`
	}
	if fr.typ != ftResponse {
		t.Fatalf("got %d %s", fr.typ, fr.body)
	}
	if err := json.Unmarshal(fr.body, &got); err != nil {
		t.Fatal(err)
	}
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
	if got.Cwd != f.taskRoot {
		t.Errorf("cwd = %q, want the task root %q", got.Cwd, f.taskRoot)
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
			wantFramedResponse(t, f.invoke(t, tc.event, nil), tc.want)
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
		fr := f.invoke(t, fmt.Sprintf(`{"i":%d}`, i), nil)
		var v struct{ N, Pid, I float64 }
		if err := json.Unmarshal(fr.body, &v); err != nil {
			t.Fatalf("%s: %v", fr.body, err)
		}
		if v.N != float64(i) || v.I != float64(i) {
			t.Fatalf("invocation %d: %s", i, fr.body)
		}
		if pid >= 0 && v.Pid != pid {
			t.Fatalf("pid changed")
		}
		pid = v.Pid
	}
	if !f.running() {
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
	wantFramedResponse(t, f.invoke(t, `{"m":"undefined"}`, nil), `null`)
	wantFramedResponse(t, f.invoke(t, `{"m":"sync"}`, nil), `null`)
	wantFramedResponse(t, f.invoke(t, `{"m":"done"}`, nil), `{"via":"done"}`)
	wantFramedError(t, f.invoke(t, `{"m":"fail"}`, nil), ftError, "RangeError", "via fail")
	wantFramedError(t, f.invoke(t, `{"m":"cycle"}`, nil), ftError, "Runtime.SerializationError", "circular")
	wantFramedResponse(t, f.invoke(t, `{"m":"first"}`, nil), `"from callback"`)
	begin := time.Now()
	wantFramedResponse(t, f.invoke(t, `{"m":"wait"}`, nil), `"waited"`)
	if d := time.Since(begin); d < 190*time.Millisecond {
		t.Errorf("answered after %v, before the 200ms timer drained the event loop", d)
	}
	// Both leave a 60 s timer behind, so nothing after them waits for an
	// empty event loop.
	begin = time.Now()
	wantFramedResponse(t, f.invoke(t, `{"m":"succeed"}`, nil), `{"via":"succeed"}`)
	wantFramedResponse(t, f.invoke(t, `{"m":"nowait"}`, nil), `"not waited"`)
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("context.succeed and callbackWaitsForEmptyEventLoop=false still waited %v", d)
	}
	if stack := wantFramedError(t, f.invoke(t, `{"m":"string"}`, nil), ftError, "Error", "oops"); len(stack) != 0 {
		t.Errorf("stackTrace = %q, want []", stack)
	}
	wantFramedError(t, f.invoke(t, `{not json`, nil), ftError, "Runtime.InvalidEvent", "invalid event JSON")
	if !f.running() {
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
	decode := func(fr wireFrame) ctxResult {
		t.Helper()
		if fr.typ != ftResponse {
			t.Fatalf("got %d %s", fr.typ, fr.body)
		}
		var got ctxResult
		if err := json.Unmarshal(fr.body, &got); err != nil {
			t.Fatal(err)
		}
		return got
	}

	const trace = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"
	id := "6f1c2b4e-8d3a-4c9b-a1e2-3f4a5b6c7d8e"
	got := decode(f.invoke(t, `{}`, map[string]any{
		"id":            id,
		"deadline":      time.Now().Add(10 * time.Second).UnixMilli(),
		"trace":         trace,
		"clientContext": map[string]any{"custom": map[string]any{"k": "v"}},
		"identity":      `{"cognitoIdentityId":"cid","cognitoIdentityPoolId":"pool"}`, // JSON text works too
	}))
	if got.AwsRequestID != id || got.FunctionName != "fn" || got.FunctionVersion != "7" ||
		got.MemoryLimitInMB != "256" || got.InvokedFunctionArn != testARN ||
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
	got = decode(f.invoke(t, `{}`, map[string]any{"deadline": time.Now().Add(-time.Second).UnixMilli()}))
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
	stack := wantFramedError(t, f.invoke(t, `{}`, nil), ftError, "Error", "boom\nsecond line")
	if len(stack) < 2 || stack[0] != "Error: boom" || !strings.Contains(strings.Join(stack, "\n"), "index.js") {
		t.Errorf("stackTrace = %q", stack)
	}
	wantFramedError(t, f.invoke(t, `{"kind":"custom"}`, nil), ftError, "ValidationError", "nope")
	// The error type goes into the header as JSON, whatever it holds.
	wantFramedError(t, f.invoke(t, `{"kind":"odd"}`, nil), ftError, "Odd \"Type\" \\ é\n", "odd")
	// An id that needs escaping still comes back as sent.
	wantFramedError(t, f.invoke(t, `{"kind":"sync"}`, map[string]any{"id": `we"ird\id é`}), ftError, "RangeError", "sync boom")
	if !f.running() {
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
			f.specialize(t, tc.handler, f.functionEnv(tc.handler, nil))
			fr := f.read(t)
			wantFramedError(t, fr, ftInitError, tc.errorType, tc.message)
			if h := fr.headerFields(t); len(h) != 1 {
				t.Errorf("INIT_ERROR header %s, want only type", fr.header)
			}
			if code := f.exitCode(t, waitTimeout); code != 1 {
				t.Errorf("exit code = %d, want 1", code)
			}
		})
	}

	t.Run("task root missing", func(t *testing.T) {
		t.Parallel()
		f := startFramed(t, map[string]string{"index.js": ``}, nil)
		missing := filepath.Join(f.taskRoot, "nope")
		f.send(t, ftSpecialize, specializeHeader(t, "index.handler", missing, f.functionEnv("index.handler", nil)), nil)
		wantFramedError(t, f.read(t), ftInitError, "Error", "ENOENT")
		if code := f.exitCode(t, waitTimeout); code != 1 {
			t.Errorf("exit code = %d, want 1", code)
		}
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
			fr := f.invoke(t, `{"kind":"`+tc.kind+`"}`, nil)
			wantFramedError(t, fr, ftError, tc.errorType, tc.message)
			if fatal := fr.headerFields(t)["fatal"]; fatal != true {
				t.Errorf("ERROR of an uncaught error: fatal = %v, want true (the runtime exits)", fatal)
			}
			if code := f.exitCode(t, waitTimeout); code != 1 {
				t.Errorf("exit code = %d, want 1", code)
			}
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
	before := f.conn.reads.Load()
	fr := f.invoke(t, fmt.Sprintf(`{"n":%d}`, size), nil)
	reads := f.conn.reads.Load() - before
	if fr.typ != ftResponse || len(fr.body) != size {
		t.Fatalf("got frame type %d with %d bytes, want RESPONSE of %d", fr.typ, len(fr.body), size)
	}
	if want := `"` + strings.Repeat("x", size-4) + `é"`; string(fr.body) != want {
		t.Fatal("large response corrupted")
	}
	if reads < 2 {
		t.Errorf("the large frame came in %d reads; the test meant to cover several", reads)
	}
	t.Logf("3 MB response frame read in %d reads", reads)

	// A 3 MB event, sent in pieces with pauses: the bootstrap must put it
	// back together.
	s := strings.Repeat("abcdefgh", size/8)
	event := mustJSON(t, map[string]string{"s": s})
	id := "large-event"
	frame := appendWireFrame(nil, ftInvoke, invokeHeader(t, id, nil), event)
	for _, cut := range [][2]int{{0, 2}, {2, 6}, {6, 40}, {40, 1 << 20}, {1 << 20, len(frame)}} {
		f.write(t, frame[cut[0]:cut[1]])
		time.Sleep(20 * time.Millisecond)
	}
	wantFramedResponse(t, f.wantAnswer(t, id), fmt.Sprintf(`{"len":%d,"head":"abc","tail":"fgh"}`, len(s)))
}

func TestFramedPipelinedAndSplitFrames(t *testing.T) {
	t.Parallel()
	f := startFramed(t, map[string]string{
		"index.js": `exports.handler = async (e) => e.v;`,
	}, nil)
	// SPECIALIZE and two INVOKEs in one write: handled in order, one at a
	// time.
	var b []byte
	b = appendWireFrame(b, ftSpecialize, specializeHeader(t, "index.handler", f.taskRoot, f.functionEnv("index.handler", nil)), nil)
	b = appendWireFrame(b, ftInvoke, invokeHeader(t, "one", nil), []byte(`{"v":1}`))
	b = appendWireFrame(b, ftInvoke, invokeHeader(t, "two", nil), []byte(`{"v":2}`))
	f.write(t, b)
	f.wantReady(t)
	wantFramedResponse(t, f.wantAnswer(t, "one"), `1`)
	wantFramedResponse(t, f.wantAnswer(t, "two"), `2`)

	// One frame a byte at a time.
	frame := appendWireFrame(nil, ftInvoke, invokeHeader(t, "three", nil), []byte(`{"v":3}`))
	for i := range frame {
		f.write(t, frame[i:i+1])
		if i%16 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	wantFramedResponse(t, f.wantAnswer(t, "three"), `3`)
}

func TestFramedSocketClosed(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"index.js": `exports.handler = async (e) => { await new Promise((r) => setTimeout(r, e.ms)); return 'ok'; };`,
	}
	cases := []struct {
		name    string
		prepare func(t *testing.T, f *framedInst)
	}{
		{"before SPECIALIZE", func(t *testing.T, f *framedInst) {}},
		{"idle", func(t *testing.T, f *framedInst) {
			f.specialize(t, "index.handler", f.functionEnv("index.handler", nil))
			f.wantReady(t)
			wantFramedResponse(t, f.invoke(t, `{"ms":0}`, nil), `"ok"`)
		}},
		{"during an invocation", func(t *testing.T, f *framedInst) {
			f.specialize(t, "index.handler", f.functionEnv("index.handler", nil))
			f.wantReady(t)
			f.send(t, ftInvoke, invokeHeader(t, "long", nil), []byte(`{"ms":30000}`))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startFramed(t, files, nil)
			tc.prepare(t, f)
			time.Sleep(100 * time.Millisecond)
			began := time.Now()
			f.conn.Close()
			code := f.exitCode(t, 2*time.Second)
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
	specialized := func(t *testing.T, f *framedInst) {
		f.specialize(t, "index.handler", f.functionEnv("index.handler", nil))
		f.wantReady(t)
	}
	cases := []struct {
		name    string
		ready   bool
		frame   func(f *framedInst) []byte
		message string
	}{
		{"length below 3", false, func(*framedInst) []byte { return []byte{0, 0, 0, 2, ftSpecialize, 0} }, "frame length 2"},
		{"header longer than frame", false, func(*framedInst) []byte { return []byte{0, 0, 0, 5, ftSpecialize, 0, 9, '{', '}'} }, "header length 9"},
		{"unknown type", true, func(*framedInst) []byte { return appendWireFrame(nil, 42, []byte(`{}`), nil) }, "type 42"},
		{"runtime's own type", true, func(*framedInst) []byte { return appendWireFrame(nil, ftReady, []byte(`{}`), nil) }, "type 2"},
		{"INVOKE before SPECIALIZE", false, func(f *framedInst) []byte {
			return appendWireFrame(nil, ftInvoke, invokeHeader(t, "x", nil), []byte(`{}`))
		}, "INVOKE before SPECIALIZE"},
		{"second SPECIALIZE", true, func(f *framedInst) []byte {
			return appendWireFrame(nil, ftSpecialize, specializeHeader(t, "index.handler", f.taskRoot, f.functionEnv("index.handler", nil)), nil)
		}, "second SPECIALIZE"},
		{"header not JSON", false, func(*framedInst) []byte { return appendWireFrame(nil, ftSpecialize, []byte(`{nope`), nil) }, "not JSON"},
		{"SPECIALIZE without env", false, func(f *framedInst) []byte {
			return appendWireFrame(nil, ftSpecialize, mustJSON(t, map[string]any{"handler": "index.handler", "taskRoot": f.taskRoot}), nil)
		}, "env"},
		{"INVOKE without id", true, func(*framedInst) []byte {
			return appendWireFrame(nil, ftInvoke, []byte(`{"deadline":1}`), []byte(`{}`))
		}, "id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startFramed(t, files, nil)
			if tc.ready {
				specialized(t, f)
			}
			f.write(t, tc.frame(f))
			if code := f.exitCode(t, waitTimeout); code != 1 {
				t.Errorf("exit code = %d, want 1", code)
			}
			if msg := f.stderr.String(); !strings.Contains(msg, "protocol error") || !strings.Contains(msg, tc.message) {
				t.Errorf("stderr = %q, want a protocol error mentioning %q", msg, tc.message)
			}
		})
	}
}

// TestFramedConsoleBeforeResponse checks that log lines are in the stdout
// pipe by the time the answer frame can be read: the test reads the pipe
// itself, without blocking, right after the frame.
func TestFramedConsoleBeforeResponse(t *testing.T) {
	t.Parallel()
	var pfd [2]int
	if err := syscall.Pipe2(pfd[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	if err := syscall.SetNonblock(pfd[0], true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(pfd[0]) })
	var out []byte
	drain := func() string {
		buf := make([]byte, 64<<10)
		for {
			n, err := syscall.Read(pfd[0], buf)
			if n > 0 {
				out = append(out, buf[:n]...)
				continue
			}
			if err == nil || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				return string(out)
			}
			t.Fatalf("reading stdout: %v", err)
		}
	}

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
	}, &framedOptions{stdout: os.NewFile(uintptr(pfd[1]), "stdout")})
	f.specialize(t, "index.handler", f.functionEnv("index.handler", nil))
	f.wantReady(t)
	if got := drain(); !strings.Contains(got, "\tundefined\tINFO\tduring init\n") {
		t.Fatalf("init log line not on stdout when READY was read: %q", got)
	}

	for i := range 5 {
		id := fmt.Sprintf("console-%d", i)
		f.send(t, ftInvoke, invokeHeader(t, id, nil), fmt.Appendf(nil, `{"pad":%d}`, 1+i*4000))
		wantFramedResponse(t, f.wantAnswer(t, id), `1`)
		got := drain()
		if !strings.Contains(got, id+"\tINFO\tpadding p") {
			t.Fatalf("invocation %d: log lines not on stdout when the RESPONSE frame was read:\n%q", i, got)
		}
	}

	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
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
	wantFramedResponse(b, f.invoke(b, payload, nil), want)
	frame := appendWireFrame(nil, ftInvoke, invokeHeader(b, "bench", map[string]any{"deadline": time.Now().Add(time.Hour).UnixMilli()}), []byte(payload))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		f.write(b, frame)
		if fr := f.read(b); fr.typ != ftResponse || string(fr.body) != want {
			b.Fatalf("got %d %s %s", fr.typ, fr.header, fr.body)
		}
	}
}
