package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/testserver"
)

const manifestFor = "name: %s\nruntime: nodejs\nhandler: %s\n"

func fn(name, handler string, files map[string]string) map[string]string {
	out := map[string]string{"tern.yaml": fmt.Sprintf(manifestFor, name, handler)}
	for k, v := range files {
		out[k] = v
	}
	return out
}

// echo returns what the function saw, so tests can check the event shape.
const echoJS = `exports.handler = async (event, context) => ({
  statusCode: 200,
  headers: {"content-type": "application/json", "x-fn": context.functionName},
  cookies: ["a=1; Path=/"],
  body: JSON.stringify({event, ctx: {awsRequestId: context.awsRequestId, functionName: context.functionName,
    functionVersion: context.functionVersion, memoryLimitInMB: context.memoryLimitInMB,
    invokedFunctionArn: context.invokedFunctionArn, remaining: context.getRemainingTimeInMillis()},
    env: process.env}),
});`

func TestHTTPTriggerLambdaEvent(t *testing.T) {
	t.Setenv("TERN_SERVER_SECRET", "must-not-leak")
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(fn("echo", "index.handler", map[string]string{"index.js": echoJS,
		"tern.yaml": "name: echo\nruntime: nodejs\nhandler: index.handler\nmemory: 512\nenvironment:\n  GREETING: hi\n"}))

	status, h, body := s.Do("POST", "/fn/echo/a/b?x=1&x=2&y=z", strings.NewReader(`{"k":"v"}`),
		map[string]string{"Content-Type": "application/json", "Cookie": "c1=v1; c2=v2", "X-Multi": "one"})
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	if h.Get("X-Fn") != "echo" || h.Get("Set-Cookie") != "a=1; Path=/" {
		t.Errorf("response headers not mapped: %v", h)
	}
	var got struct {
		Event struct {
			Version, RouteKey, RawPath, RawQueryString, Body string
			Cookies                                          []string
			Headers, QueryStringParameters                   map[string]string
			IsBase64Encoded                                  bool
			RequestContext                                   struct {
				RequestID string
				HTTP      struct{ Method, Path, SourceIP string }
			}
		}
		Ctx struct {
			AwsRequestID, FunctionName, FunctionVersion, MemoryLimitInMB, InvokedFunctionArn string
			Remaining                                                                        int
		}
		Env map[string]string
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	ev := got.Event
	for _, c := range []struct{ name, got, want string }{
		{"version", ev.Version, "2.0"},
		{"routeKey", ev.RouteKey, "$default"},
		{"rawPath", ev.RawPath, "/a/b"},
		{"rawQueryString", ev.RawQueryString, "x=1&x=2&y=z"},
		{"body", ev.Body, `{"k":"v"}`},
		{"query x", ev.QueryStringParameters["x"], "1,2"},
		{"header", ev.Headers["x-multi"], "one"},
		{"method", ev.RequestContext.HTTP.Method, "POST"},
		{"http.path", ev.RequestContext.HTTP.Path, "/a/b"},
		{"sourceIp", ev.RequestContext.HTTP.SourceIP, "127.0.0.1"},
		{"requestId", ev.RequestContext.RequestID, h.Get("X-Tern-Request-Id")},
		{"awsRequestId", got.Ctx.AwsRequestID, h.Get("X-Tern-Request-Id")},
		{"functionName", got.Ctx.FunctionName, "echo"},
		{"functionVersion", got.Ctx.FunctionVersion, "1"},
		{"memoryLimitInMB", got.Ctx.MemoryLimitInMB, "512"},
		{"env GREETING", got.Env["GREETING"], "hi"},
		{"env AWS_LAMBDA_FUNCTION_NAME", got.Env["AWS_LAMBDA_FUNCTION_NAME"], "echo"},
		{"env AWS_LAMBDA_FUNCTION_MEMORY_SIZE", got.Env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "512"},
		{"env _HANDLER", got.Env["_HANDLER"], "index.handler"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if len(ev.Cookies) != 2 || ev.IsBase64Encoded {
		t.Errorf("cookies %v, isBase64Encoded %v", ev.Cookies, ev.IsBase64Encoded)
	}
	if !strings.Contains(got.Ctx.InvokedFunctionArn, ":function:echo") {
		t.Errorf("invokedFunctionArn %q", got.Ctx.InvokedFunctionArn)
	}
	if got.Ctx.Remaining <= 0 || got.Ctx.Remaining > 30000 {
		t.Errorf("getRemainingTimeInMillis() = %d", got.Ctx.Remaining)
	}
	if _, ok := got.Env["TERN_SERVER_SECRET"]; ok {
		t.Errorf("the server's environment leaked into the instance")
	}
	for _, k := range []string{"AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "TZ", "PATH", "AWS_LAMBDA_FUNCTION_VERSION"} {
		if got.Env[k] == "" {
			t.Errorf("instance env lacks %s", k)
		}
	}

	// Root path and a binary body.
	status, _, body = s.Do("PUT", "/fn/echo", bytes.NewReader([]byte{0xff, 0x00, 0x01}), map[string]string{"Content-Type": "application/octet-stream"})
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Event.RawPath != "/" || !got.Event.IsBase64Encoded || got.Event.Body != "/wAB" {
		t.Errorf("root/binary: rawPath %q base64 %v body %q", got.Event.RawPath, got.Event.IsBase64Encoded, got.Event.Body)
	}
}

func TestHandlerStyles(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	cases := []struct {
		name  string
		files map[string]string
		want  string // response body
	}{
		{"cjs", fn("cjs", "index.handler", map[string]string{
			"index.js": `exports.handler = async (e) => ({ kind: "cjs", got: e.rawPath });`}), `{"kind":"cjs","got":"/"}`},
		{"callback", fn("callback", "index.handler", map[string]string{
			"index.js": `exports.handler = (e, ctx, cb) => { setTimeout(() => cb(null, {statusCode: 201, body: "cb"}), 5); };`}), `cb`},
		{"esm-mjs", fn("esm-mjs", "app.handler", map[string]string{
			"app.mjs": `export const handler = async () => ({ statusCode: 200, body: "mjs" });`}), `mjs`},
		{"esm-type-module", fn("esm-type-module", "src/main.handler", map[string]string{
			"package.json": `{"type": "module"}`,
			"src/main.js":  `import { word } from "./word.js"; export const handler = async () => ({ statusCode: 200, body: word });`,
			"src/word.js":  `export const word = "module";`}), `module`},
		{"string-result", fn("string-result", "index.handler", map[string]string{
			"index.js": `exports.handler = async () => "plain";`}), `"plain"`},
		{"node-modules", fn("node-modules", "index.handler", map[string]string{
			"node_modules/dep/index.js": `module.exports = () => "from dep";`,
			"index.js":                  `const dep = require("dep"); exports.handler = async () => ({ statusCode: 200, body: dep() });`}), `from dep`},
	}
	for _, c := range cases {
		s.Deploy(c.files)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, _, body := s.Do("GET", "/fn/"+c.name, nil, nil)
			if status != 200 && !(c.name == "callback" && status == 201) {
				t.Fatalf("status %d: %s", status, body)
			}
			if string(body) != c.want {
				t.Errorf("body %s, want %s", body, c.want)
			}
		})
	}
}

// TestFunctionFailures: every way an invocation fails has one shape on
// each surface. The API's invoke answers Lambda's error JSON with the
// function error headers; a public HTTP trigger answers the status and a
// bare message with the same headers and the request id, never the
// function's message or stack trace; the log says what happened.
func TestFunctionFailures(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	s := testserver.Start(t, cfg)
	s.Deploy(fn("throws", "index.handler", map[string]string{"index.js": `
		class ValidationError extends Error { constructor(m) { super(m); this.name = "ValidationError"; } }
		exports.handler = async () => { throw new ValidationError("bad input at /srv/secret/path"); };`}))
	s.Deploy(fn("noload", "index.handler", map[string]string{"index.js": `require("./missing-module");`}))
	s.Deploy(fn("noexport", "index.nothere", map[string]string{"index.js": `exports.handler = async () => 1;`}))
	s.Deploy(map[string]string{
		"tern.yaml": "name: slow\nruntime: nodejs\nhandler: index.handler\ntimeout: 1s\n",
		"index.js":  `exports.handler = async (e) => { if (e.rawPath === "/hang" || e.hang) await new Promise(r => setTimeout(r, 60000)); return {statusCode: 200, body: "ok"}; };`,
	})
	s.Deploy(fn("crash", "index.handler", map[string]string{"index.js": `
		exports.handler = async (e) => { if (e.rawPath === "/exit" || e.exit) process.exit(3); return {statusCode: 200, body: "alive " + process.env.AWS_LAMBDA_LOG_STREAM_NAME}; };`}))

	type errJSON struct {
		ErrorType    string   `json:"errorType"`
		ErrorMessage string   `json:"errorMessage"`
		StackTrace   []string `json:"stackTrace"`
	}
	for _, c := range []struct {
		fn, path, event string
		status          int
		errType, msg    string // the API's answer
		logLine         string // a line of the function's log
		init            bool   // an init error: its log lines precede any request
	}{
		{"throws", "/", `{}`, 502, "ValidationError", "bad input at /srv/secret/path", "ValidationError", false},
		{"noload", "/", `{}`, 502, "Runtime.ImportModuleError", "missing-module", "Runtime.ImportModuleError", true},
		{"noexport", "/", `{}`, 502, "Runtime.HandlerNotFound", "index.nothere", "Runtime.HandlerNotFound", true},
		{"slow", "/hang", `{"hang":true}`, 504, "Sandbox.Timedout", "Task timed out after 1.00 seconds", "Task timed out after 1.00 seconds", false},
		{"crash", "/exit", `{"exit":true}`, 502, "Runtime.ExitError", "Runtime exited with error: exit status 3", "Runtime.ExitError: Runtime exited with error: exit status 3", false},
	} {
		t.Run(c.fn, func(t *testing.T) {
			start := time.Now()
			status, h, body := s.Do("GET", "/fn/"+c.fn+c.path, nil, nil)
			want := `{"message":"Internal Server Error"}` + "\n"
			if c.status == 504 {
				want = `{"message":"Endpoint request timed out"}` + "\n"
			}
			if status != c.status || string(body) != want {
				t.Errorf("public trigger: %d %s, want %d %s", status, body, c.status, want)
			}
			if h.Get("X-Tern-Function-Error") != "Unhandled" || h.Get("X-Tern-Error-Type") != c.errType || h.Get("X-Tern-Request-Id") == "" {
				t.Errorf("public trigger headers %v", h)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("the failure took %s to report", d)
			}
			rid := h.Get("X-Tern-Request-Id")

			status, h, body = s.Do("POST", "/v1/functions/"+c.fn+"/invoke", strings.NewReader(c.event), map[string]string{"Authorization": "Bearer " + s.Server.Token()})
			var e errJSON
			if status != c.status || json.Unmarshal(body, &e) != nil || e.ErrorType != c.errType || !strings.Contains(e.ErrorMessage, c.msg) {
				t.Errorf("API invoke: %d %s, want %d with errorType %s and a message with %q", status, body, c.status, c.errType, c.msg)
			}
			if h.Get("X-Tern-Function-Error") != "Unhandled" || h.Get("X-Tern-Error-Type") != c.errType {
				t.Errorf("API invoke headers %v", h)
			}
			// The log has what the caller was not shown (an init error
			// before any request's lines).
			q := client.LogQuery{RequestID: rid}
			if c.init {
				q = client.LogQuery{}
			}
			testserver.Eventually(t, 10*time.Second, "the log line of "+c.fn+"'s failure", func() bool {
				found := false
				_ = s.Client.Logs(context.Background(), c.fn, q, func(en *logs.Entry) error {
					found = found || strings.Contains(en.Message, c.logLine)
					return nil
				})
				return found
			})
		})
	}
	t.Run("recovers after a timeout and a crash", func(t *testing.T) {
		status, _, body := s.Do("GET", "/fn/slow", nil, nil)
		if status != 200 || string(body) != "ok" {
			t.Fatalf("after timeout: status %d body %s", status, body)
		}
		status, _, first := s.Do("GET", "/fn/crash", nil, nil)
		if status != 200 || string(first) == "alive " || string(first) == "alive undefined" {
			t.Fatalf("status %d body %s", status, first)
		}
		if status, _, body := s.Do("GET", "/fn/crash/exit", nil, nil); status != 502 {
			t.Fatalf("crash: status %d body %s", status, body)
		}
		status, _, second := s.Do("GET", "/fn/crash", nil, nil)
		if status != 200 || string(second) == string(first) {
			t.Fatalf("after crash: status %d body %s (before: %s): want a fresh instance", status, second, first)
		}
	})
	t.Run("the client reads the function error", func(t *testing.T) {
		_, err := s.Client.Invoke(context.Background(), "throws", []byte(`{}`))
		fe, ok := err.(*client.FunctionError)
		if !ok || fe.Type != "ValidationError" || !strings.Contains(string(fe.Body), "bad input") {
			t.Errorf("API invoke error = %v", err)
		}
	})
	t.Run("unknown function", func(t *testing.T) {
		status, _, body := s.Do("GET", "/fn/nope", nil, nil)
		if status != 404 || !strings.Contains(string(body), "function_not_found") {
			t.Fatalf("status %d body %s", status, body)
		}
	})
	t.Run("body too large", func(t *testing.T) {
		big := bytes.Repeat([]byte("x"), int(cfg.MaxPayloadBytes)+1)
		status, _, body := s.Do("POST", "/fn/crash", bytes.NewReader(big), nil)
		if status != 413 || !strings.Contains(string(body), `"the request body is over the 6 MB limit"`) {
			t.Fatalf("status %d body %s", status, body)
		}
	})
}

func TestConcurrentRequestsScaleOut(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{
		"tern.yaml": "name: busy\nruntime: nodejs\nhandler: index.handler\nscale:\n  max: 10\n",
		"index.js":  `exports.handler = async () => { await new Promise(r => setTimeout(r, 200)); return {statusCode: 200, body: String(process.env.AWS_LAMBDA_LOG_STREAM_NAME)}; };`,
	})
	const n = 30
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]int{} // instance id: requests it served
	errs := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(s.URL() + "/fn/busy")
			if err != nil {
				errs <- err.Error()
				return
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			if resp.StatusCode != 200 {
				errs <- fmt.Sprintf("status %d: %s", resp.StatusCode, b.String())
				return
			}
			mu.Lock()
			ids[b.String()]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if _, ok := ids["undefined"]; ok {
		t.Errorf("an instance has no AWS_LAMBDA_LOG_STREAM_NAME: %v", ids)
	}
	if len(ids) < 2 || len(ids) > 10 {
		t.Errorf("served by %d instances, want between 2 and scale.max=10: %v", len(ids), ids)
	}
}

// gate is a loopback server whose requests are held until Open: a function
// that fetches it stays busy for as long as the test needs, without a timer.
type gate struct {
	URL     string
	arrived chan struct{} // one value per request that reached the gate
	open    chan struct{}
	once    sync.Once
}

func newGate(t *testing.T) *gate {
	t.Helper()
	g := &gate{arrived: make(chan struct{}, 16), open: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case g.arrived <- struct{}{}:
		default:
		}
		select {
		case <-g.open:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(g.Open) // before srv.Close (cleanups run last first)
	g.URL = srv.URL
	return g
}

// Open lets every held and later request through.
func (g *gate) Open() { g.once.Do(func() { close(g.open) }) }

// waitArrived waits until a request reached the gate.
func (g *gate) waitArrived(t *testing.T, what string) {
	t.Helper()
	select {
	case <-g.arrived:
	case <-time.After(60 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestQueueFullAnswers429(t *testing.T) {
	// One instance held busy by a gate (no timer in the function), one
	// invocation waiting for it, and one more that finds the queue full.
	// The queue wait is the only time budget: the test's own request
	// must be answered within it (a loopback round trip); the instance's
	// cold start is outside it (the instance is warmed first).
	const wait = 2 * time.Second
	cfg := testserver.Config(t.TempDir())
	cfg.Dispatch.MaxQueue = 1
	cfg.Dispatch.MaxQueueWait = wait
	s := testserver.Start(t, cfg)
	g := newGate(t)
	s.Deploy(map[string]string{
		"tern.yaml": "name: one\nruntime: nodejs\nhandler: index.handler\ntimeout: 60s\nscale:\n  max: 1\n" +
			"environment:\n  GATE_URL: " + g.URL + "\n",
		"index.js": `exports.handler = async (e) => {
  if (e.rawPath === "/hold") await fetch(process.env.GATE_URL);
  return "done";
};`,
	})
	// Warm the one instance: a cold start may take longer than the queue
	// wait on a busy machine (a 429 then), but the instance it started
	// stays and answers the next try.
	testserver.Eventually(t, 60*time.Second, "a warm instance of one", func() bool {
		status, _, _ := s.Do("GET", "/fn/one", nil, nil)
		return status == 200
	})

	type answer struct {
		status  int
		body    string
		elapsed time.Duration
	}
	get := func(path string) answer {
		start := time.Now()
		status, _, body := s.Do("GET", path, nil, nil)
		return answer{status, string(body), time.Since(start)}
	}
	held := make(chan answer, 1)
	go func() { held <- get("/fn/one/hold") }()
	g.waitArrived(t, "the held invocation to reach the gate")

	ctx := context.Background()
	st, err := s.Client.Stats(ctx, "one")
	if err != nil {
		t.Fatal(err)
	}
	queuedBefore := st.Counts.Queued
	waiting := make(chan answer, 1)
	go func() { waiting <- get("/fn/one") }()
	testserver.Eventually(t, 60*time.Second, "the second invocation to wait for the instance", func() bool {
		st, err := s.Client.Stats(ctx, "one")
		return err == nil && st.Counts.Queued > queuedBefore
	})
	full := get("/fn/one")
	w := <-waiting
	g.Open()
	h := <-held

	if full.status != 429 || !strings.Contains(full.body, "invocations waiting") {
		t.Errorf("with the queue full: %d %s (after %s), want 429 saying invocations are waiting", full.status, full.body, full.elapsed)
	}
	if w.status != 429 || !strings.Contains(w.body, "free within") || w.elapsed < wait {
		t.Errorf("waiting for the busy instance: %d %s after %s, want 429 after the %s queue wait", w.status, w.body, w.elapsed, wait)
	}
	if h.status != 200 || h.body != `"done"` {
		t.Errorf("held invocation: %d %s", h.status, h.body)
	}
}

func TestBadPackagesRefused(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	cfg.Package.MaxBytes = 64 << 10
	s := testserver.Start(t, cfg)
	manifest := [2]string{"tern.yaml", "name: evil\nruntime: nodejs\nhandler: index.handler\n"}
	index := [2]string{"index.js", "exports.handler = async () => 1;"}
	big := make([]byte, 0, 200<<10)
	for i := 0; len(big) < 200<<10; i++ {
		big = fmt.Appendf(big, "%d,", i*7919%1000003) // poorly compressible
	}
	cases := []struct {
		name, code string
		zip        []byte
	}{
		{"dotdot", "invalid_package", testserver.Zip(t, manifest, index, [2]string{"../escape.js", "x"})},
		{"absolute", "invalid_package", testserver.Zip(t, manifest, index, [2]string{"/etc/cron.d/x", "x"})},
		{"link escapes", "invalid_package", testserver.Zip(t, manifest, index, [2]string{"lib@../../etc/passwd", ""})},
		{"absolute link", "invalid_package", testserver.Zip(t, manifest, index, [2]string{"lib@/etc/passwd", ""})},
		{"too large", "package_too_large", testserver.Zip(t, manifest, index, [2]string{"big.txt", string(big)})},
		{"not a zip", "invalid_package", []byte("this is not a zip file")},
		{"no manifest", "invalid_package", testserver.Zip(t, index)},
		{"bad manifest", "invalid_manifest", testserver.Zip(t, [2]string{"tern.yaml", "name: evil\nruntime: cobol\nhandler: index.handler\n"}, index)},
		{"unknown field", "invalid_manifest", testserver.Zip(t, [2]string{"tern.yaml", "name: evil\nruntime: nodejs\nhandler: index.handler\nmemroy: 512\n"}, index)},
		{"broken yaml", "invalid_manifest", testserver.Zip(t, [2]string{"tern.yaml", "name: [evil\n"}, index)},
		{"bad timeout", "invalid_manifest", testserver.Zip(t, [2]string{"tern.yaml", "name: evil\nruntime: nodejs\nhandler: index.handler\ntimeout: 20m\n"}, index)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, _, body := s.Do("POST", "/v1/functions", bytes.NewReader(c.zip),
				map[string]string{"Authorization": "Bearer " + s.Token(), "Content-Type": "application/zip"})
			var e struct{ Error, Code string }
			if status != 400 || json.Unmarshal(body, &e) != nil || e.Code != c.code || e.Error == "" {
				t.Fatalf("status %d body %s, want 400 %s", status, body, c.code)
			}
		})
	}
	// Nothing was stored: no function, no code object.
	fns, err := s.Client.List(context.Background())
	if err != nil || len(fns) != 0 {
		t.Fatalf("functions after refused deploys: %v %v", fns, err)
	}
	entries, err := os.ReadDir(cfg.DataDir + "/code")
	if err == nil && len(entries) != 0 {
		t.Errorf("code cache has %d entries", len(entries))
	}
	if err := testserver.CodeObjects(s.Server); err != nil {
		t.Error(err)
	}
}

func TestAuth(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	for _, c := range []struct {
		name, header string
	}{
		{"missing", ""},
		{"wrong", "Bearer tern_wrong"},
		{"not bearer", "Basic dXNlcjpwYXNz"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := map[string]string{}
			if c.header != "" {
				h["Authorization"] = c.header
			}
			status, _, body := s.Do("GET", "/v1/functions", nil, h)
			var e struct{ Error, Code string }
			if status != 401 || json.Unmarshal(body, &e) != nil || e.Code != "unauthorized" {
				t.Fatalf("status %d body %s", status, body)
			}
		})
	}
	status, _, _ := s.Do("GET", "/v1/functions", nil, map[string]string{"Authorization": "Bearer " + s.Token()})
	if status != 200 {
		t.Fatalf("with the token: status %d", status)
	}
	status, _, _ = s.Do("GET", "/healthz", nil, nil)
	if status != 200 {
		t.Fatalf("healthz: status %d", status)
	}
	info, err := os.Stat(s.Config.DataDir + "/admin.token")
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v mode %v", err, info.Mode())
	}
}

func TestRestartKeepsFunctions(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	s := testserver.Start(t, cfg)
	s.Deploy(fn("keep", "index.handler", map[string]string{"index.js": `exports.handler = async () => ({statusCode: 200, body: "v1"});`}))
	s.Deploy(fn("keep", "index.handler", map[string]string{"index.js": `exports.handler = async () => ({statusCode: 200, body: "v2"});`}))
	s.Deploy(fn("other", "index.handler", map[string]string{"index.js": `exports.handler = async () => ({statusCode: 200, body: "other"});`}))
	if status, _, body := s.Do("GET", "/fn/keep", nil, nil); status != 200 || string(body) != "v2" {
		t.Fatalf("before restart: %d %s", status, body)
	}
	token := s.Token()
	s.Stop()

	s2 := testserver.Start(t, cfg)
	if s2.Token() != token {
		t.Errorf("the admin token changed across a restart")
	}
	for name, want := range map[string]string{"keep": "v2", "other": "other"} {
		if status, _, body := s2.Do("GET", "/fn/"+name, nil, nil); status != 200 || string(body) != want {
			t.Errorf("after restart %s: %d %s", name, status, body)
		}
	}
	raw, err := s2.Client.Get(context.Background(), "keep")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Version  int
		Versions []struct{ Version int }
	}
	if err := json.Unmarshal(raw, &got); err != nil || got.Version != 2 || len(got.Versions) != 2 {
		t.Errorf("after restart: %s", raw)
	}
}

func TestDeleteStopsInstances(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(fn("gone", "index.handler", map[string]string{"index.js": `exports.handler = async () => ` + selfJS + `;`}))
	out, err := s.Client.Invoke(context.Background(), "gone", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var w whoami
	if err := json.Unmarshal(out, &w); err != nil || w.Pid <= 0 {
		t.Fatalf("whoami %s", out)
	}
	procs := w.hostPids()
	if len(procs) == 0 {
		t.Fatalf("no host process found for the instance (%s)", out)
	}
	if err := s.Client.Delete(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, 5*time.Second, fmt.Sprintf("the instance's processes %v to exit", procs), func() bool {
		return !w.anyAlive(procs)
	})
	if status, _, _ := s.Do("GET", "/fn/gone", nil, nil); status != 404 {
		t.Errorf("after delete: status %d", status)
	}
	err = s.Client.Delete(context.Background(), "gone")
	if ce, ok := err.(*client.Error); !ok || ce.Status != 404 {
		t.Errorf("second delete: %v", err)
	}
}

// selfJS is a JavaScript expression for what an instance tells about
// itself to be found on the host (whoami).
const selfJS = `({pid: process.pid, uid: process.getuid()})`

// whoami is what an instance reports with selfJS: its pid, which in a
// jail (a PID namespace of its own) is 1, and its uid, in a jail its
// function's own.
type whoami struct{ Pid, UID int }

func (w whoami) jailed() bool { return w.Pid == 1 }

// hostPids lists the host pids of the instance's live processes: jailed,
// the processes of its function's uid that this test's tern started
// (with one instance of the function, that instance's); else its pid.
func (w whoami) hostPids() []int {
	if !w.jailed() {
		if processAlive(w.Pid) {
			return []int{w.Pid}
		}
		return nil
	}
	return testserver.UIDProcsUnder(w.UID, os.Getpid())
}

// anyAlive reports whether any of pids (from hostPids) still runs.
func (w whoami) anyAlive(pids []int) bool {
	live := pids
	if w.jailed() {
		live = testserver.UIDProcs(w.UID)
	}
	for _, p := range pids {
		if slices.Contains(live, p) && processAlive(p) {
			return true
		}
	}
	return false
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie (state Z) has exited.
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func TestLogs(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(fn("chatty", "index.handler", map[string]string{"index.js": `
		exports.handler = async (e) => { console.log("hello", e.rawPath, "\nline two"); process.stderr.write("to stderr\n"); return "ok"; };`}))
	_, h, _ := s.Do("GET", "/fn/chatty/first", nil, nil)
	first := h.Get("X-Tern-Request-Id")
	_, h, _ = s.Do("GET", "/fn/chatty/second", nil, nil)
	second := h.Get("X-Tern-Request-Id")

	var entries []logs.Entry
	testserver.Eventually(t, 5*time.Second, "both REPORT lines", func() bool {
		entries = entries[:0]
		err := s.Client.Logs(context.Background(), "chatty", client.LogQuery{}, func(e *logs.Entry) error {
			entries = append(entries, *e)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range entries {
			if strings.HasPrefix(e.Message, "REPORT") {
				n++
			}
		}
		return n == 2
	})
	var lines []string
	for _, e := range entries {
		if e.RequestID == first {
			lines = append(lines, e.Stream+": "+e.Message)
		}
	}
	// START first, END and REPORT last; stdout and stderr are separate pipes,
	// so their lines may come in either order between them.
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "platform: START") ||
		!strings.HasPrefix(lines[3], "platform: END") || !strings.HasPrefix(lines[4], "platform: REPORT") {
		t.Fatalf("lines of the first request:\n%s", strings.Join(lines, "\n"))
	}
	middle := strings.Join(lines[1:3], "\n")
	if !strings.Contains(middle, "stderr: to stderr") || !strings.Contains(middle, "stdout: ") ||
		!strings.Contains(middle, "INFO\thello /first \rline two") {
		t.Errorf("output lines:\n%s", middle)
	}
	if !strings.Contains(lines[4], "Billed Duration:") || !strings.Contains(lines[4], "Max Memory Used:") || !strings.Contains(lines[4], "Init Duration:") {
		t.Errorf("REPORT of a cold start: %q", lines[4])
	}
	// Filter by request id.
	var n int
	err := s.Client.Logs(context.Background(), "chatty", client.LogQuery{RequestID: second}, func(e *logs.Entry) error {
		if e.RequestID != second {
			t.Errorf("entry of %s in a query for %s", e.RequestID, second)
		}
		if strings.HasPrefix(e.Message, "REPORT") && strings.Contains(e.Message, "Init Duration") {
			t.Errorf("warm REPORT has an Init Duration: %q", e.Message)
		}
		n++
		return nil
	})
	if err != nil || n != 5 {
		t.Errorf("request filter: %d entries, err %v", n, err)
	}
	// Follow: a new invocation's lines arrive on an open stream.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan string, 100)
	go func() {
		_ = s.Client.Logs(ctx, "chatty", client.LogQuery{Follow: true, Grep: "/third"}, func(e *logs.Entry) error {
			got <- e.Message
			return nil
		})
	}()
	time.Sleep(200 * time.Millisecond) // let the follower subscribe
	s.Do("GET", "/fn/chatty/third", nil, nil)
	select {
	case m := <-got:
		if !strings.Contains(m, "hello /third") {
			t.Errorf("followed line %q", m)
		}
	case <-ctx.Done():
		t.Fatal("follow: no line arrived")
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	started := newGate(t)
	started.Open() // it only tells when the invocation runs
	s.Deploy(map[string]string{
		"tern.yaml": "name: patient\nruntime: nodejs\nhandler: index.handler\nenvironment:\n  STARTED_URL: " + started.URL + "\n",
		"index.js": `exports.handler = async (e) => {
			if (e.rawPath === "/warm") return {statusCode: 200, body: "warm"};
			await fetch(process.env.STARTED_URL);
			await new Promise(r => setTimeout(r, 700));
			return {statusCode: 200, body: "finished"};
		};`,
	})
	if status, _, _ := s.Do("GET", "/fn/patient/warm", nil, nil); status != 200 { // warm it
		t.Fatalf("warm-up status %d", status)
	}
	done := make(chan string, 1)
	go func() {
		resp, err := http.Get(s.URL() + "/fn/patient")
		if err != nil {
			done <- err.Error()
			return
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		done <- fmt.Sprintf("%d %s", resp.StatusCode, b.String())
	}()
	started.waitArrived(t, "the invocation to run")
	s.Stop()
	if got := <-done; got != "200 finished" {
		t.Errorf("in-flight request during shutdown: %s", got)
	}
}

func TestMissingRuntimeAnswers503(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	cfg.NodePath = "/nonexistent/node"
	s := testserver.Start(t, cfg)
	s.Deploy(fn("nonode", "index.handler", map[string]string{"index.js": `exports.handler = async () => 1;`}))
	status, _, body := s.Do("GET", "/fn/nonode", nil, nil)
	if status != 503 || !strings.Contains(string(body), "runtime_unavailable") {
		t.Fatalf("status %d body %s", status, body)
	}
}

// A nodejs handler file the package lacks is refused at deploy.
func TestMissingHandlerFileRefusedAtDeploy(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	zip := testserver.Zip(t, [2]string{"tern.yaml", "name: nofile\nruntime: nodejs\nhandler: main.handler\n"}, [2]string{"index.js", "exports.handler = async () => 1;"})
	status, _, body := s.Do("POST", "/v1/functions", bytes.NewReader(zip), map[string]string{"Authorization": "Bearer " + s.Token()})
	if status != 400 || !strings.Contains(string(body), "invalid_manifest") || !strings.Contains(string(body), "main.js") {
		t.Fatalf("%d %s", status, body)
	}
}

// TestHTTPConventions: every answer Tern itself makes is JSON, unknown
// paths included; a known path with another method is 405 with Allow.
func TestHTTPConventions(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	bearer := map[string]string{"Authorization": "Bearer " + s.Server.Token()}
	for _, tc := range []struct {
		method, path string
		header       map[string]string
		status       int
		code, allow  string
	}{
		{"GET", "/fn", nil, 404, "not_found", ""},
		{"GET", "/fn/", nil, 404, "not_found", ""},
		{"GET", "/nope", nil, 404, "not_found", ""},
		{"GET", "/fn/nope", nil, 404, "function_not_found", ""},
		{"POST", "/healthz", nil, 405, "method_not_allowed", "GET, HEAD"},
		{"GET", "/v1/nope", bearer, 404, "not_found", ""},
		{"DELETE", "/v1/usage", bearer, 405, "method_not_allowed", "GET, HEAD"},
		{"GET", "/v1/nope", nil, 401, "unauthorized", ""},
	} {
		status, h, body := s.Do(tc.method, tc.path, nil, tc.header)
		var e struct{ Error, Code string }
		if status != tc.status || h.Get("Content-Type") != "application/json" || json.Unmarshal(body, &e) != nil || e.Code != tc.code || e.Error == "" || h.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d %v %s, want %d %s (Allow %q)", tc.method, tc.path, status, h, body, tc.status, tc.code, tc.allow)
		}
	}
}
