package nodejs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/runtime/framedtest"
)

// event is one queued invocation.
type event struct {
	id      string
	body    string
	headers map[string]string // extra Lambda-Runtime-* headers
}

// record is something the bootstrap posted.
type record struct {
	kind   string // "response", "error" or "init"
	id     string
	body   []byte
	header http.Header
	at     time.Time
}

func (r record) errorBody(t testing.TB) (errorType, errorMessage string, stack []string) {
	t.Helper()
	var v struct {
		ErrorType    string    `json:"errorType"`
		ErrorMessage string    `json:"errorMessage"`
		StackTrace   *[]string `json:"stackTrace"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("%s body %q: %v", r.kind, r.body, err)
	}
	if v.StackTrace == nil {
		t.Fatalf("%s body %q has no stackTrace array", r.kind, r.body)
	}
	if got := r.header.Get("Lambda-Runtime-Function-Error-Type"); got != v.ErrorType {
		t.Errorf("Lambda-Runtime-Function-Error-Type = %q, body errorType %q", got, v.ErrorType)
	}
	return v.ErrorType, v.ErrorMessage, *v.StackTrace
}

// harness is a minimal Runtime API server.
type harness struct {
	srv       *httptest.Server
	events    chan event
	records   chan record
	closed    chan struct{}
	closeOnce sync.Once
	tooLarge  atomic.Int64 // responses bigger than this get 413 (0: no limit)
	nextSeq   atomic.Int64
}

func newHarness(t testing.TB, idleTimeout time.Duration) *harness {
	h := &harness{
		events:  make(chan event, 16),
		records: make(chan record, 16),
		closed:  make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", func(w http.ResponseWriter, r *http.Request) {
		select {
		case ev := <-h.events:
			hd := w.Header()
			hd.Set("Lambda-Runtime-Aws-Request-Id", ev.id)
			hd.Set("Lambda-Runtime-Deadline-Ms", fmt.Sprint(time.Now().Add(30*time.Second).UnixMilli()))
			hd.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:fn")
			for k, v := range ev.headers {
				hd.Set(k, v)
			}
			hd.Set("Content-Type", "application/json")
			io.WriteString(w, ev.body)
		case <-h.closed:
			panic(http.ErrAbortHandler) // drop the connection
		case <-r.Context().Done():
		}
	})
	post := func(kind string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			h.records <- record{kind: kind, id: r.PathValue("id"), body: body, header: r.Header.Clone(), at: time.Now()}
			if limit := h.tooLarge.Load(); kind == "response" && limit > 0 && int64(len(body)) > limit {
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				return
			}
			w.WriteHeader(http.StatusAccepted)
		}
	}
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", post("response"))
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", post("error"))
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", post("init"))
	h.srv = httptest.NewUnstartedServer(mux)
	h.srv.Config.IdleTimeout = idleTimeout
	h.srv.Start()
	t.Cleanup(h.close)
	return h
}

func (h *harness) close() {
	h.closeOnce.Do(func() {
		close(h.closed)
		h.srv.Close()
	})
}

func (h *harness) addr() string { return h.srv.Listener.Addr().String() }

// queue adds an event and returns its request id.
func (h *harness) queue(body string, headers map[string]string) string {
	id := fmt.Sprintf("req-%d-%d", time.Now().UnixNano(), h.nextSeq.Add(1))
	h.events <- event{id: id, body: body, headers: headers}
	return id
}

func (h *harness) wait(t testing.TB) record {
	t.Helper()
	select {
	case r := <-h.records:
		return r
	case <-time.After(framedtest.WaitTimeout):
		t.Fatal("timed out waiting for the bootstrap to post")
		return record{}
	}
}

// invoke queues an event and waits for its outcome.
func (h *harness) invoke(t testing.TB, body string, headers map[string]string) record {
	t.Helper()
	id := h.queue(body, headers)
	r := h.wait(t)
	if r.id != id {
		t.Fatalf("posted %s for request %q, want %q (body %s)", r.kind, r.id, id, r.body)
	}
	return r
}

// start writes the function files into a fresh task root and runs the
// bootstrap against a new harness.
func start(t testing.TB, handler string, files map[string]string, extraEnv ...string) (*harness, *framedtest.Process) {
	t.Helper()
	return startIdle(t, 0, handler, files, extraEnv...)
}

// startIdle is start with a server that closes keep-alive connections after
// idleTimeout (0: never).
func startIdle(t testing.TB, idleTimeout time.Duration, handler string, files map[string]string, extraEnv ...string) (*harness, *framedtest.Process) {
	t.Helper()
	taskRoot, _, bootstrap := framedtest.Prepare(t, files, Install)
	h := newHarness(t, idleTimeout)
	env := append([]string{
		"PATH=" + os.Getenv("PATH"),
		"AWS_LAMBDA_RUNTIME_API=" + h.addr(),
		"_HANDLER=" + handler,
		"LAMBDA_TASK_ROOT=" + taskRoot,
		"AWS_LAMBDA_FUNCTION_NAME=fn",
		"AWS_LAMBDA_FUNCTION_VERSION=7",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
	}, extraEnv...)
	return h, framedtest.StartProcess(t, nodePath(t), []string{bootstrap}, taskRoot, env)
}

func wantResponse(t testing.TB, r record, want string) {
	t.Helper()
	if r.kind != "response" {
		t.Fatalf("got %s %s, want response %s", r.kind, r.body, want)
	}
	if string(r.body) != want {
		t.Fatalf("response = %s, want %s", r.body, want)
	}
}

func wantError(t testing.TB, r record, errorType, errorMessage string) []string {
	t.Helper()
	if r.kind != "error" {
		t.Fatalf("got %s %s, want error %s", r.kind, r.body, errorType)
	}
	typ, msg, stack := r.errorBody(t)
	if typ != errorType {
		t.Errorf("errorType = %q, want %q", typ, errorType)
	}
	if errorMessage != "" && msg != errorMessage {
		t.Errorf("errorMessage = %q, want %q", msg, errorMessage)
	}
	return stack
}

// TestInstall is a smoke test: bootfile's tests cover the installing.
func TestInstall(t *testing.T) {
	p, err := Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || filepath.Base(p) != "bootstrap.cjs" || !bytes.Equal(got, Bootstrap) {
		t.Fatalf("Install: %s holds %d bytes (err %v), want bootstrap.cjs", p, len(got), err)
	}
}

func TestCommonJSAsync(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "index.handler", map[string]string{
		"index.js": `exports.handler = async (event) => ({ got: event.x, kind: 'cjs' });`,
	})
	wantResponse(t, h.invoke(t, `{"x":42}`, nil), `{"got":42,"kind":"cjs"}`)
}

func TestCommonJSCallback(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "index.handler", map[string]string{
		"index.js": `exports.handler = (e, c, cb) => cb(null, { ok: e.x });`,
	})
	wantResponse(t, h.invoke(t, `{"x":"y"}`, nil), `{"ok":"y"}`)
}

func TestCallbackError(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "index.handler", map[string]string{
		"index.js": `exports.handler = (e, c, cb) => cb(new TypeError('bad input'));`,
	})
	stack := wantError(t, h.invoke(t, `{}`, nil), "TypeError", "bad input")
	if len(stack) == 0 || !strings.HasPrefix(stack[0], "TypeError: bad input") {
		t.Errorf("stackTrace = %q", stack)
	}
}

func TestCallbackWaitsForEmptyEventLoop(t *testing.T) {
	t.Parallel()
	h, p := start(t, "index.handler", map[string]string{
		"index.js": `
exports.handler = (e, c, cb) => {
  if (e.nowait) c.callbackWaitsForEmptyEventLoop = false;
  cb(null, 'done');
  setTimeout(() => console.log('timer fired'), e.nowait ? 60000 : 200);
};`,
	})
	begin := time.Now()
	r := h.invoke(t, `{}`, nil)
	wantResponse(t, r, `"done"`)
	if d := time.Since(begin); d < 190*time.Millisecond {
		t.Errorf("response posted after %v, before the 200ms timer drained the event loop", d)
	}
	framedtest.WaitOutput(t, p.Stdout, "timer fired")
	start := time.Now()
	wantResponse(t, h.invoke(t, `{"nowait":true}`, nil), `"done"`)
	if d := time.Since(start); d > 30*time.Second { // waiting would take its 60 s timer
		t.Errorf("callbackWaitsForEmptyEventLoop=false still waited %v", d)
	}
}

func TestSyncHandlerWithoutCallback(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "index.handler", map[string]string{
		"index.js": `exports.handler = function (event, context) { return 'ignored'; };`,
	})
	wantResponse(t, h.invoke(t, `{}`, nil), `null`)
	wantResponse(t, h.invoke(t, `{}`, nil), `null`)
}

func TestLegacyContextMethods(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "index.handler", map[string]string{
		"index.js": `
exports.handler = (e, c) => {
  if (e.m === 'succeed') c.succeed({ via: 'succeed' });
  else if (e.m === 'done') c.done(null, { via: 'done' });
  else c.fail(new RangeError('via fail'));
  setTimeout(() => {}, 60000); // legacy methods do not wait for the loop
};`,
	})
	wantResponse(t, h.invoke(t, `{"m":"succeed"}`, nil), `{"via":"succeed"}`)
	wantResponse(t, h.invoke(t, `{"m":"done"}`, nil), `{"via":"done"}`)
	wantError(t, h.invoke(t, `{"m":"fail"}`, nil), "RangeError", "via fail")
}

func TestFirstCompletionWins(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "index.handler", map[string]string{
		"index.js": `
exports.handler = async (e, c, cb) => {
  c.callbackWaitsForEmptyEventLoop = false;
  cb(null, 'from callback');
  cb(null, 'second callback');
  return 'from promise';
};`,
	})
	wantResponse(t, h.invoke(t, `{}`, nil), `"from callback"`)
	wantResponse(t, h.invoke(t, `{}`, nil), `"from callback"`)
}

func TestESModuleMJS(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "index.handler", map[string]string{
		"index.mjs": `export const handler = async (event) => ({ esm: true, n: event.n + 1 });`,
	})
	wantResponse(t, h.invoke(t, `{"n":1}`, nil), `{"esm":true,"n":2}`)
}

func TestTypeModulePackage(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "app.handler", map[string]string{
		"package.json": `{"name":"fn","type":"module"}`,
		"app.js":       "import { helper } from './lib.js';\nexport async function handler(e) { return helper(e.v); }\n",
		"lib.js":       "export const helper = (v) => `helped ${v}`;\n",
	})
	wantResponse(t, h.invoke(t, `{"v":"x"}`, nil), `"helped x"`)
}

func TestESMDefaultExportFallback(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "index.handler", map[string]string{
		"index.mjs": `export default { handler: async () => 'from default' };`,
	})
	wantResponse(t, h.invoke(t, `{}`, nil), `"from default"`)
}

func TestCJSExtension(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "index.handler", map[string]string{
		"package.json": `{"type":"module"}`,
		"index.cjs":    `module.exports.handler = async () => typeof require;`,
	})
	wantResponse(t, h.invoke(t, `{}`, nil), `"function"`)
}

func TestNestedHandlerPath(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "src/app.handler", map[string]string{
		"src/app.js": `exports.handler = async () => __filename.endsWith('/src/app.js');`,
	})
	wantResponse(t, h.invoke(t, `{}`, nil), `true`)

	h2, _ := start(t, "index.api.handler", map[string]string{
		"index.js": `exports.api = { handler: async () => 'nested export' };`,
	})
	wantResponse(t, h2.invoke(t, `{}`, nil), `"nested export"`)
}

func TestNodeModulesDependency(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "index.handler", map[string]string{
		"node_modules/shout/package.json": `{"name":"shout","main":"lib/main.js"}`,
		"node_modules/shout/lib/main.js":  `module.exports = (s) => s.toUpperCase() + '!';`,
		"index.js":                        `const shout = require('shout'); exports.handler = async (e) => shout(e.s);`,
	})
	wantResponse(t, h.invoke(t, `{"s":"hi"}`, nil), `"HI!"`)
}

func TestHandlerThrows(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "index.handler", map[string]string{
		"index.js": `
class ValidationError extends Error { constructor(m) { super(m); this.name = 'ValidationError'; } }
exports.handler = async (e) => {
  if (e.kind === 'sync') return exports.sync();
  if (e.kind === 'custom') throw new ValidationError('nope');
  throw new Error('boom\nsecond line');
};
exports.sync = () => { throw new RangeError('sync boom'); };`,
	})
	r := h.invoke(t, `{}`, nil)
	stack := wantError(t, r, "Error", "boom\nsecond line")
	if len(stack) < 2 || stack[0] != "Error: boom" || !strings.Contains(strings.Join(stack, "\n"), "index.js") {
		t.Errorf("stackTrace = %q", stack)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	wantError(t, h.invoke(t, `{"kind":"custom"}`, nil), "ValidationError", "nope")
	wantError(t, h.invoke(t, `{"kind":"sync"}`, nil), "RangeError", "sync boom")

	h2, _ := start(t, "index.handler", map[string]string{
		"index.js": `exports.handler = function () { throw new SyntaxError('thrown synchronously'); };`,
	})
	wantError(t, h2.invoke(t, `{}`, nil), "SyntaxError", "thrown synchronously")
}

func TestThrownNonErrors(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "index.handler", map[string]string{
		"index.js": `
exports.handler = async (e) => {
  if (e.kind === 'string') throw 'oops';
  if (e.kind === 'object') throw { code: 7, why: 'because' };
  if (e.kind === 'number') return Promise.reject(42);
};`,
	})
	stack := wantError(t, h.invoke(t, `{"kind":"string"}`, nil), "Error", "oops")
	if len(stack) != 0 {
		t.Errorf("stackTrace = %q, want []", stack)
	}
	wantError(t, h.invoke(t, `{"kind":"object"}`, nil), "Error", `{"code":7,"why":"because"}`)
	wantError(t, h.invoke(t, `{"kind":"number"}`, nil), "Error", "42")
}

func TestInitErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, handler string
		files         map[string]string
		errorType     string
		message       string // substring
	}{
		{"missing file", "missing.handler", map[string]string{"index.js": ``}, "Runtime.ImportModuleError", "missing"},
		{"missing dependency", "index.handler", map[string]string{"index.js": `require('not-installed'); exports.handler = async () => 1;`}, "Runtime.ImportModuleError", "not-installed"},
		{"missing ESM dependency", "index.handler", map[string]string{"index.mjs": `import x from 'not-installed'; export const handler = async () => x;`}, "Runtime.ImportModuleError", "not-installed"},
		{"missing export", "index.handler", map[string]string{"index.js": `exports.other = async () => 1;`}, "Runtime.HandlerNotFound", "index.handler is undefined or not exported"},
		{"export not a function", "index.handler", map[string]string{"index.js": `exports.handler = 5;`}, "Runtime.HandlerNotFound", "index.handler is not a function"},
		{"missing ESM export", "index.handler", map[string]string{"index.mjs": `export const other = 1;`}, "Runtime.HandlerNotFound", "index.handler"},
		{"syntax error", "index.handler", map[string]string{"index.js": "exports.handler = async () => {\n  return 1 +;\n};"}, "Runtime.UserCodeSyntaxError", "SyntaxError: "},
		{"ESM syntax error", "index.handler", map[string]string{"index.mjs": "export const handler = async () => {{;"}, "Runtime.UserCodeSyntaxError", "SyntaxError: "},
		{"throws while loading", "index.handler", map[string]string{"index.js": `null.x; exports.handler = async () => 1;`}, "TypeError", "null"},
		{"malformed handler", "index", map[string]string{"index.js": ``}, "Runtime.MalformedHandlerName", "index"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, p := start(t, tc.handler, tc.files)
			r := h.wait(t)
			if r.kind != "init" {
				t.Fatalf("got %s %s, want init error", r.kind, r.body)
			}
			typ, msg, _ := r.errorBody(t)
			if typ != tc.errorType {
				t.Errorf("errorType = %q, want %q (message %q)", typ, tc.errorType, msg)
			}
			if !strings.Contains(msg, tc.message) {
				t.Errorf("errorMessage = %q, want it to contain %q", msg, tc.message)
			}
			p.WantExit(t, 1)
		})
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "index.handler", map[string]string{
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
  legacy: [typeof c.done, typeof c.succeed, typeof c.fail],
});`,
	}, "AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/fn", "AWS_LAMBDA_LOG_STREAM_NAME=stream-1", "_X_AMZN_TRACE_ID=stale")

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
		Legacy             []string       `json:"legacy"`
	}
	id := h.queue(`{}`, map[string]string{
		"Lambda-Runtime-Trace-Id":         "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1",
		"Lambda-Runtime-Client-Context":   `{"custom":{"k":"v"},"env":{"platform":"test"}}`,
		"Lambda-Runtime-Cognito-Identity": `{"cognitoIdentityId":"cid","cognitoIdentityPoolId":"pool"}`,
	})
	r := h.wait(t)
	if r.kind != "response" {
		t.Fatalf("got %s %s", r.kind, r.body)
	}
	var got ctxResult
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.AwsRequestID != id || got.FunctionName != "fn" || got.FunctionVersion != "7" ||
		got.MemoryLimitInMB != "256" || got.InvokedFunctionArn != "arn:aws:lambda:us-east-1:000000000000:function:fn" ||
		got.LogGroupName != "/aws/lambda/fn" || got.LogStreamName != "stream-1" || !got.Waits {
		t.Errorf("context = %s", r.body)
	}
	if got.Remaining <= 0 || got.Remaining > 30000 {
		t.Errorf("getRemainingTimeInMillis() = %v, want in (0, 30000]", got.Remaining)
	}
	if got.ClientContext["custom"].(map[string]any)["k"] != "v" || got.Identity["cognitoIdentityId"] != "cid" {
		t.Errorf("clientContext/identity = %v / %v", got.ClientContext, got.Identity)
	}
	if got.Trace == nil || *got.Trace != "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1" {
		t.Errorf("_X_AMZN_TRACE_ID = %v", got.Trace)
	}
	if strings.Join(got.Legacy, ",") != "function,function,function" {
		t.Errorf("legacy methods = %v", got.Legacy)
	}

	// Without the optional headers: trace id removed, no client context.
	r = h.invoke(t, `{}`, nil)
	got = ctxResult{}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.HasTrace || got.ClientContext != nil || got.Identity != nil {
		t.Errorf("second invocation context = %s", r.body)
	}
}

func TestConsoleFormat(t *testing.T) {
	t.Parallel()
	h, p := start(t, "index.handler", map[string]string{
		"index.js": `
console.log('during init');
exports.handler = async () => {
  console.log('hello\nworld', 42, { a: 1 });
  console.info('info %s', 'x');
  console.warn('warned');
  console.error('failed %d', 3);
  console.debug('dbg');
  console.trace('trc');
  return 1;
};`,
	})
	id := h.queue(`{}`, nil)
	wantResponse(t, h.wait(t), `1`)

	// Lines are written before the response is posted; the test's copy of
	// the pipe may still be catching up.
	framedtest.WaitOutput(t, p.Stdout, "TRACE\ttrc")
	out := p.Stdout.String()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	ts := `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`
	want := []string{
		ts + `\tundefined\tINFO\tduring init`,
		ts + `\t` + regexp.QuoteMeta(id) + `\tINFO\thello\rworld 42 \{ a: 1 \}`,
		ts + `\t` + regexp.QuoteMeta(id) + `\tINFO\tinfo x`,
		ts + `\t` + regexp.QuoteMeta(id) + `\tWARN\twarned`,
		ts + `\t` + regexp.QuoteMeta(id) + `\tERROR\tfailed 3`,
		ts + `\t` + regexp.QuoteMeta(id) + `\tDEBUG\tdbg`,
		ts + `\t` + regexp.QuoteMeta(id) + `\tTRACE\ttrc`,
	}
	if len(lines) != len(want) {
		t.Fatalf("stdout has %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, re := range want {
		if !regexp.MustCompile(`^` + re + `$`).MatchString(lines[i]) {
			t.Errorf("line %d = %q, want match %q", i, lines[i], re)
		}
	}
}

func TestSequentialInvocations(t *testing.T) {
	t.Parallel()
	h, p := start(t, "index.handler", map[string]string{
		"index.js": `let n = 0; exports.handler = async (e) => ({ n: ++n, pid: process.pid, i: e.i });`,
	})
	pid := -1.0
	for i := 1; i <= 20; i++ {
		r := h.invoke(t, fmt.Sprintf(`{"i":%d}`, i), nil)
		var v struct{ N, Pid, I float64 }
		if err := json.Unmarshal(r.body, &v); err != nil {
			t.Fatalf("%s: %v", r.body, err)
		}
		if v.N != float64(i) || v.I != float64(i) {
			t.Fatalf("invocation %d: %s", i, r.body)
		}
		if pid >= 0 && v.Pid != pid {
			t.Fatalf("pid changed")
		}
		pid = v.Pid
	}
	if !p.Running() {
		t.Fatal("node exited")
	}
}

func TestUnhandledRejectionDuringInvocation(t *testing.T) {
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
			h, p := start(t, "index.handler", files)
			wantError(t, h.invoke(t, `{"kind":"`+tc.kind+`"}`, nil), tc.errorType, tc.message)
			p.WantExit(t, 1)
		})
	}
}

func TestUndefinedResult(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "index.handler", map[string]string{
		"index.js": `exports.handler = async () => {};`,
	})
	wantResponse(t, h.invoke(t, `{}`, nil), `null`)
}

func TestSerializationError(t *testing.T) {
	t.Parallel()
	h, p := start(t, "index.handler", map[string]string{
		"index.js": `exports.handler = async (e) => { if (e.ok) return 'fine'; const a = {}; a.self = a; return a; };`,
	})
	wantError(t, h.invoke(t, `{}`, nil), "Runtime.SerializationError", "")
	wantResponse(t, h.invoke(t, `{"ok":true}`, nil), `"fine"`)
	if !p.Running() {
		t.Fatal("node exited")
	}
}

func TestInvalidEvent(t *testing.T) {
	t.Parallel()
	h, _ := start(t, "index.handler", map[string]string{
		"index.js": `exports.handler = async (e) => e;`,
	})
	wantError(t, h.invoke(t, `{not json`, nil), "Runtime.InvalidEvent", "")
	wantResponse(t, h.invoke(t, `[1,"two"]`, nil), `[1,"two"]`)
}

func TestResponseTooLarge(t *testing.T) {
	t.Parallel()
	h, p := start(t, "index.handler", map[string]string{
		"index.js": `exports.handler = async (e) => 'x'.repeat(e.n);`,
	})
	h.tooLarge.Store(1000)
	r := h.invoke(t, `{"n":5000}`, nil)
	if r.kind != "response" || len(r.body) != 5002 {
		t.Fatalf("got %s of %d bytes", r.kind, len(r.body))
	}
	wantResponse(t, h.invoke(t, `{"n":3}`, nil), `"xxx"`)
	framedtest.WaitOutput(t, p.Stdout, "413")
}

func TestServerGone(t *testing.T) {
	t.Parallel()
	h, p := start(t, "index.handler", map[string]string{
		"index.js": `exports.handler = async () => 'ok';`,
	})
	wantResponse(t, h.invoke(t, `{}`, nil), `"ok"`)
	time.Sleep(100 * time.Millisecond) // node is now long-polling /next
	began := time.Now()
	h.close()
	if code := p.ExitCode(t, 3*time.Second); code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	t.Logf("node exited %v after the server closed", time.Since(began))
}

func TestServerNeverThere(t *testing.T) {
	t.Parallel()
	h, p := start(t, "index.handler", map[string]string{
		"index.js": `exports.handler = async () => 'ok';`,
	})
	// Close before node connects: the first /next is refused.
	h.close()
	if code := p.ExitCode(t, 5*time.Second); code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
}

func TestServerClosesIdleConnections(t *testing.T) {
	t.Parallel()
	// The server drops the kept-alive connection while the handler runs and
	// between invocations; the bootstrap must reconnect, not exit.
	h, p := startIdle(t, 30*time.Millisecond, "index.handler", map[string]string{
		"index.js": `exports.handler = async (e) => { await new Promise((r) => setTimeout(r, e.ms)); return e.ms; };`,
	})
	for _, ms := range []int{0, 150, 5, 100} {
		wantResponse(t, h.invoke(t, fmt.Sprintf(`{"ms":%d}`, ms), nil), fmt.Sprint(ms))
		time.Sleep(60 * time.Millisecond)
	}
	if !p.Running() {
		t.Fatal("node exited")
	}
}

// BenchmarkWarmInvoke measures one warm invocation round trip: queue an
// event, the bootstrap fetches it, runs an async handler and posts the result.
func BenchmarkWarmInvoke(b *testing.B) {
	h, _ := start(b, "index.handler", map[string]string{
		"index.js": `exports.handler = async (e) => ({ statusCode: 200, body: e.body });`,
	})
	const payload = `{"body":"hello world","headers":{"content-type":"text/plain"}}`
	wantResponse(b, h.invoke(b, payload, nil), `{"statusCode":200,"body":"hello world"}`)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.events <- event{id: "bench", body: payload}
		if r := h.wait(b); r.kind != "response" {
			b.Fatalf("got %s %s", r.kind, r.body)
		}
	}
}
