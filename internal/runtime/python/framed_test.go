package python

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/runtime/framedtest"
)

func TestFramedSpecialize(t *testing.T) {
	t.Parallel()
	site := sitePackages(t)
	f := startFramed(t, map[string]string{
		"app.py": `
import os, sys, time
import vendored_mod, layer_mod, extra_mod

def handler(event, context):
    return {
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "path": sys.path,
        "modules": [vendored_mod.WHERE, layer_mod.WHERE, extra_mod.WHERE],
        "gmtoff": time.localtime(0).tm_gmtoff,
    }
`,
		"python/vendored_mod.py":        `WHERE = "python/"`,
		site + "/layer_mod.py":          `WHERE = "site-packages"`,
		"extra/extra_mod.py":            `WHERE = "PYTHONPATH"`,
		"python/lib/not-a-dir-marker.t": ``,
	}, nil)
	env := f.FunctionEnv("app.handler", map[string]string{
		"TZ":         "Asia/Tokyo", // the harness started python with TZ=:UTC
		"EMPTY":      "",
		"TRICKY":     "a=b \"quoted\" \\ back\nslash é ☃",
		"PYTHONPATH": "extra",
	})
	// A pooled instance may wait a long time for its function.
	time.Sleep(200 * time.Millisecond)
	if !f.Running() {
		t.Fatal("python exited while waiting for SPECIALIZE")
	}
	f.Specialize(t, "app.handler", env, 0)
	f.WantReady(t)

	var got struct {
		Env     map[string]string `json:"env"`
		Cwd     string            `json:"cwd"`
		Path    []string          `json:"path"`
		Modules []string          `json:"modules"`
		GMTOff  int               `json:"gmtoff"`
	}
	framedtest.DecodeResponse(t, f.Invoke(t, `{}`, nil), &got)
	// The bootstrap names its runtime, as Lambda's do, unless told.
	if v := got.Env["AWS_EXECUTION_ENV"]; !strings.HasPrefix(v, "AWS_Lambda_python3.") {
		t.Errorf("os.environ.AWS_EXECUTION_ENV = %q, want AWS_Lambda_python3....", v)
	}
	delete(got.Env, "AWS_EXECUTION_ENV")
	if !maps.Equal(got.Env, env) {
		for _, k := range slices.Sorted(maps.Keys(got.Env)) {
			if want, ok := env[k]; !ok || want != got.Env[k] {
				t.Errorf("os.environ[%q] = %q, sent %q (sent: %v)", k, got.Env[k], want, ok)
			}
		}
		for k := range env {
			if _, ok := got.Env[k]; !ok {
				t.Errorf("os.environ lacks %q", k)
			}
		}
	}
	if got.Cwd != f.TaskRoot {
		t.Errorf("cwd = %q, want the task root %q", got.Cwd, f.TaskRoot)
	}
	wantPath := []string{
		f.TaskRoot,
		filepath.Join(f.TaskRoot, "python"),
		filepath.Join(f.TaskRoot, filepath.FromSlash(site)),
		filepath.Join(f.TaskRoot, "extra"),
	}
	if len(got.Path) < len(wantPath) || !slices.Equal(got.Path[:len(wantPath)], wantPath) {
		t.Errorf("sys.path = %q, want it to begin with %q", got.Path, wantPath)
	}
	for _, p := range got.Path {
		if strings.HasPrefix(p, filepath.Dir(f.TaskRoot)+string(filepath.Separator)+"runtime") {
			t.Errorf("sys.path has the bootstrap's directory %q", p)
		}
	}
	if want := []string{"python/", "site-packages", "PYTHONPATH"}; !slices.Equal(got.Modules, want) {
		t.Errorf("modules from %q, want %q", got.Modules, want)
	}
	if _, err := os.Stat("/usr/share/zoneinfo/Asia/Tokyo"); err == nil && got.GMTOff != 9*3600 {
		t.Errorf("time.localtime offset = %d s, want 32400 (TZ=Asia/Tokyo from SPECIALIZE)", got.GMTOff)
	}
}

func TestFramedHandlerKinds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, handler string
		files         map[string]string
		event, want   string
	}{
		{"module", "app.handler", map[string]string{
			"app.py": "def handler(event, context):\n    return {'got': event['x'], 'kind': 'plain'}\n",
		}, `{"x":42}`, `{"got": 42, "kind": "plain"}`},
		{"subfolder", "src/app.handler", map[string]string{
			"src/app.py":     "from helper import shout\ndef handler(event, context):\n    return shout(event['s'])\n",
			"helper.py":      "def shout(s):\n    return s.upper() + '!'\n",
			"src/unused.txt": "",
		}, `{"s":"hi"}`, `"HI!"`},
		{"package", "pkg.sub.mod.handler", map[string]string{
			"pkg/__init__.py":     "INIT = 'ran'\n",
			"pkg/sub/__init__.py": "",
			"pkg/sub/mod.py":      "from pkg import INIT\nfrom . import sibling\ndef handler(e, c):\n    return [INIT, sibling.V, __name__]\n",
			"pkg/sub/sibling.py":  "V = 'rel'\n",
		}, `{}`, `["ran", "rel", "pkg.sub.mod"]`},
		{"path and dots", "src/pkg/mod.handler", map[string]string{
			"src/pkg/mod.py": "def handler(e, c):\n    return __name__\n",
		}, `{}`, `"src.pkg.mod"`},
		{"hyphenated file", "my-app.handler", map[string]string{
			"my-app.py": "def handler(e, c):\n    return 'dash'\n",
		}, `{}`, `"dash"`},
		{"async def", "app.handler", map[string]string{
			"app.py": "import asyncio\nasync def handler(e, c):\n    await asyncio.sleep(0.01)\n    return {'async': True}\n",
		}, `{}`, `{"async": true}`},
		{"returns a coroutine", "app.handler", map[string]string{
			"app.py": "import asyncio\nasync def work(n):\n    await asyncio.sleep(0)\n    return n * 2\ndef handler(e, c):\n    return work(e['n'])\n",
		}, `{"n":21}`, `42`},
		{"callable object", "app.handler", map[string]string{
			"app.py": "class H:\n    def __call__(self, e, c):\n        return 'called'\nhandler = H()\n",
		}, `{}`, `"called"`},
		{"decimal", "app.handler", map[string]string{
			"app.py": "from decimal import Decimal\ndef handler(e, c):\n    return {'n': Decimal('5'), 'x': Decimal('1.5')}\n",
		}, `{}`, `{"n": 5, "x": 1.5}`},
		{"unicode", "app.handler", map[string]string{
			"app.py": "def handler(e, c):\n    return e['s'] + ' \u00e9'\n",
		}, `{"s":"☃"}`, `"\u2603 \u00e9"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startReady(t, tc.handler, tc.files, nil, 0)
			framedtest.WantResponse(t, f.Invoke(t, tc.event, nil), tc.want)
			if out := f.Stdout.String(); out != "" {
				t.Errorf("unexpected output: %q", out)
			}
		})
	}
}

func TestFramedSequentialInvocations(t *testing.T) {
	t.Parallel()
	f := startReady(t, "app.handler", map[string]string{
		"app.py": "import os\nn = 0\ndef handler(e, c):\n    global n\n    n += 1\n    return {'n': n, 'pid': os.getpid(), 'i': e['i'], 'id': c.aws_request_id}\n",
	}, nil, 0)
	pid := -1
	for i := 1; i <= 20; i++ {
		id := f.NextID()
		var v struct {
			N, Pid, I int
			ID        string
		}
		framedtest.DecodeResponse(t, f.Invoke(t, fmt.Sprintf(`{"i":%d}`, i), map[string]any{"id": id}), &v)
		if v.N != i || v.I != i || v.ID != id {
			t.Fatalf("invocation %d (%s): %+v", i, id, v)
		}
		if pid >= 0 && v.Pid != pid {
			t.Fatalf("pid changed")
		}
		pid = v.Pid
	}
	if !f.Running() {
		t.Fatal("python exited")
	}
}

func TestFramedResults(t *testing.T) {
	t.Parallel()
	f := startReady(t, "app.handler", map[string]string{
		"app.py": `
def handler(event, context):
    m = event["m"]
    if m == "none":
        return None
    if m == "set":
        return {"s": {1, 2}}
    if m == "cycle":
        a = []
        a.append(a)
        return a
    if m == "tuple":
        return (1, "two", [3.5, None, True])
    return event
`,
	}, nil, 0)
	framedtest.WantResponse(t, f.Invoke(t, `{"m":"none"}`, nil), `null`)
	framedtest.WantResponse(t, f.Invoke(t, `{"m":"tuple"}`, nil), `[1, "two", [3.5, null, true]]`)
	framedtest.WantError(t, f.Invoke(t, `{"m":"set"}`, nil), framedtest.Error, "Runtime.SerializationError", "Unable to marshal response: Object of type set is not JSON serializable")
	framedtest.WantError(t, f.Invoke(t, `{"m":"cycle"}`, nil), framedtest.Error, "Runtime.SerializationError", "Circular reference")
	framedtest.WantError(t, f.Invoke(t, `{not json`, nil), framedtest.Error, "Runtime.InvalidEvent", "invalid event JSON")
	framedtest.WantError(t, f.Invoke(t, ``, nil), framedtest.Error, "Runtime.InvalidEvent", "invalid event JSON")
	framedtest.WantResponse(t, f.Invoke(t, `{"m":"echo","v":[1,{"a":"b"}]}`, nil), `{"m": "echo", "v": [1, {"a": "b"}]}`)
	if !f.Running() {
		t.Fatal("python exited")
	}
}

func TestFramedContext(t *testing.T) {
	t.Parallel()
	f := startReady(t, "app.handler", map[string]string{
		"app.py": `
import os

def obj(o):
    return None if o is None else {k: (obj(v) if hasattr(v, "__dict__") else v) for k, v in vars(o).items()}

def handler(event, c):
    return {
        "aws_request_id": c.aws_request_id,
        "function_name": c.function_name,
        "function_version": c.function_version,
        "memory_limit_in_mb": c.memory_limit_in_mb,
        "memory_is_int": type(c.memory_limit_in_mb) is int,
        "invoked_function_arn": c.invoked_function_arn,
        "log_group_name": c.log_group_name,
        "log_stream_name": c.log_stream_name,
        "client_context": obj(c.client_context),
        "identity": obj(c.identity),
        "remaining": c.get_remaining_time_in_millis(),
        "remaining_is_int": type(c.get_remaining_time_in_millis()) is int,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "has_trace": "_X_AMZN_TRACE_ID" in os.environ,
    }
`,
	}, map[string]string{"_X_AMZN_TRACE_ID": "stale"}, 0)

	type ctxResult struct {
		AwsRequestID       string         `json:"aws_request_id"`
		FunctionName       string         `json:"function_name"`
		FunctionVersion    string         `json:"function_version"`
		MemoryLimitInMB    any            `json:"memory_limit_in_mb"`
		MemoryIsInt        bool           `json:"memory_is_int"`
		InvokedFunctionArn string         `json:"invoked_function_arn"`
		LogGroupName       string         `json:"log_group_name"`
		LogStreamName      string         `json:"log_stream_name"`
		ClientContext      map[string]any `json:"client_context"`
		Identity           map[string]any `json:"identity"`
		Remaining          float64        `json:"remaining"`
		RemainingIsInt     bool           `json:"remaining_is_int"`
		Trace              *string        `json:"trace"`
		HasTrace           bool           `json:"has_trace"`
	}

	const trace = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"
	id := "6f1c2b4e-8d3a-4c9b-a1e2-3f4a5b6c7d8e"
	var got ctxResult
	framedtest.DecodeResponse(t, f.Invoke(t, `{}`, map[string]any{
		"id":       id,
		"deadline": time.Now().Add(10 * time.Second).UnixMilli(),
		"trace":    trace,
		"clientContext": map[string]any{
			"client": map[string]any{"installation_id": "inst", "app_title": "App"},
			"custom": map[string]any{"k": "v"},
			"env":    map[string]any{"platform": "x"},
		},
		"identity": `{"cognitoIdentityId":"cid","cognitoIdentityPoolId":"pool"}`, // JSON text works too
	}), &got)
	if got.AwsRequestID != id || got.FunctionName != "fn" || got.FunctionVersion != "7" ||
		got.MemoryLimitInMB != 256.0 || !got.MemoryIsInt || got.InvokedFunctionArn != framedtest.ARN ||
		got.LogGroupName != "/tern/fn" || got.LogStreamName != "stream-1" {
		t.Errorf("context = %+v", got)
	}
	if got.Remaining <= 5000 || got.Remaining > 10000 || !got.RemainingIsInt {
		t.Errorf("get_remaining_time_in_millis() = %v (int: %v), want an int in (5000, 10000]", got.Remaining, got.RemainingIsInt)
	}
	client, _ := got.ClientContext["client"].(map[string]any)
	custom, _ := got.ClientContext["custom"].(map[string]any)
	if custom["k"] != "v" || client["installation_id"] != "inst" || client["app_title"] != "App" {
		t.Errorf("client_context = %v", got.ClientContext)
	}
	if got.Identity["cognito_identity_id"] != "cid" || got.Identity["cognito_identity_pool_id"] != "pool" {
		t.Errorf("identity = %v", got.Identity)
	}
	if got.Trace == nil || *got.Trace != trace {
		t.Errorf("_X_AMZN_TRACE_ID = %v", got.Trace)
	}

	// Without the optional fields: the trace id is removed, no client
	// context or identity; a deadline in the past leaves no time.
	got = ctxResult{}
	framedtest.DecodeResponse(t, f.Invoke(t, `{}`, map[string]any{"deadline": time.Now().Add(-time.Second).UnixMilli()}), &got)
	if got.HasTrace || got.ClientContext != nil || got.Identity != nil || got.Remaining != 0 {
		t.Errorf("second invocation context = %+v", got)
	}
}

func TestFramedHandlerThrows(t *testing.T) {
	t.Parallel()
	f := startReady(t, "app.handler", map[string]string{
		"app.py": `
import asyncio

class ValidationError(Exception):
    pass

def deeper():
    raise ValueError("boom\nsecond line")

async def later():
    await asyncio.sleep(0)
    raise LookupError("async boom")

def handler(event, context):
    kind = event.get("kind")
    if kind == "custom":
        raise ValidationError("nope")
    if kind == "key":
        return {}["missing"]
    if kind == "async":
        return later()
    deeper()
`,
	}, nil, 0)
	stack := framedtest.WantError(t, f.Invoke(t, `{}`, nil), framedtest.Error, "ValueError", "boom\nsecond line")
	joined := strings.Join(stack, "")
	if len(stack) != 2 || !strings.Contains(stack[0], "app.py") || !strings.Contains(stack[0], "in handler") ||
		!strings.Contains(stack[1], "in deeper") || !strings.Contains(stack[1], `raise ValueError("boom\nsecond line")`) {
		t.Errorf("stackTrace = %q, want the handler's and deeper's frames", stack)
	}
	if strings.Contains(joined, "bootstrap.py") {
		t.Errorf("stackTrace has the bootstrap's frames: %q", stack)
	}
	framedtest.WantError(t, f.Invoke(t, `{"kind":"custom"}`, nil), framedtest.Error, "ValidationError", "nope")
	framedtest.WantError(t, f.Invoke(t, `{"kind":"key"}`, nil), framedtest.Error, "KeyError", "'missing'")
	stack = framedtest.WantError(t, f.Invoke(t, `{"kind":"async"}`, nil), framedtest.Error, "LookupError", "async boom")
	if joined := strings.Join(stack, ""); !strings.Contains(joined, "in later") || strings.Contains(joined, "bootstrap.py") || strings.Contains(joined, "asyncio") {
		t.Errorf("async stackTrace = %q", stack)
	}
	// An id that needs escaping still comes back as sent.
	framedtest.WantError(t, f.Invoke(t, `{"kind":"custom"}`, map[string]any{"id": `we"ird\id é`}), framedtest.Error, "ValidationError", "nope")
	if !f.Running() {
		t.Fatal("python exited")
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
		{"missing module", "missing.handler", map[string]string{"app.py": ``}, "Runtime.ImportModuleError", "Unable to import module 'missing': No module named 'missing'"},
		{"missing subfolder module", "src/missing.handler", map[string]string{"app.py": ``}, "Runtime.ImportModuleError", "Unable to import module 'src/missing'"},
		{"missing dependency", "app.handler", map[string]string{"app.py": "import not_installed_xyz\ndef handler(e, c):\n    return 1\n"}, "Runtime.ImportModuleError", "No module named 'not_installed_xyz'"},
		{"missing function", "app.handler", map[string]string{"app.py": "def other(e, c):\n    return 1\n"}, "Runtime.HandlerNotFound", "Handler 'handler' missing on module 'app'"},
		{"not callable", "app.handler", map[string]string{"app.py": "handler = 42\n"}, "Runtime.HandlerNotFound", "not callable"},
		{"syntax error", "app.handler", map[string]string{"app.py": "def handler(e, c):\n    return 1 +\n"}, "Runtime.UserCodeSyntaxError", "Syntax error in module 'app'"},
		{"syntax error in dependency", "app.handler", map[string]string{"app.py": "import dep\ndef handler(e, c):\n    return 1\n", "dep.py": "x = (\n"}, "Runtime.UserCodeSyntaxError", "Syntax error in module 'app'"},
		{"raises while loading", "app.handler", map[string]string{"app.py": "x = 1 / 0\ndef handler(e, c):\n    return 1\n"}, "ZeroDivisionError", "division by zero"},
		{"malformed handler", "app", map[string]string{"app.py": ``}, "Runtime.MalformedHandlerName", "Bad handler 'app'"},
		{"empty module", ".handler", map[string]string{"app.py": ``}, "Runtime.MalformedHandlerName", "Bad handler"},
		{"empty function", "app.", map[string]string{"app.py": ``}, "Runtime.MalformedHandlerName", "Bad handler"},
		{"no handler", "", map[string]string{"app.py": ``}, "Runtime.MalformedHandlerName", "Bad handler"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startFramed(t, tc.files, nil)
			f.Specialize(t, tc.handler, f.FunctionEnv(tc.handler, nil), 0)
			fr := f.Read(t)
			stack := framedtest.WantError(t, fr, framedtest.InitError, tc.errorType, tc.message)
			if h := fr.HeaderFields(t); len(h) != 1 {
				t.Errorf("INIT_ERROR header %s, want only type", fr.Header)
			}
			if strings.Contains(strings.Join(stack, ""), "bootstrap.py") {
				t.Errorf("stackTrace has the bootstrap's frames: %q", stack)
			}
			if tc.name == "syntax error" && (len(stack) == 0 || !strings.Contains(stack[len(stack)-1], "app.py")) {
				t.Errorf("stackTrace = %q, want the syntax error's place", stack)
			}
			if tc.name == "raises while loading" && (len(stack) != 1 || !strings.Contains(stack[0], "x = 1 / 0")) {
				t.Errorf("stackTrace = %q, want the module's frame only", stack)
			}
			f.WantExit(t, 1)
			if out := f.Stdout.String(); !strings.Contains(out, "\tundefined\tERROR\tInit Error \t{") {
				t.Errorf("stdout = %q, want an Init Error line", out)
			}
		})
	}

	t.Run("task root missing", func(t *testing.T) {
		t.Parallel()
		f := startFramed(t, map[string]string{"app.py": ``}, nil)
		missing := filepath.Join(f.TaskRoot, "nope")
		f.Send(t, framedtest.Specialize, framedtest.SpecializeHeader(t, "app.handler", missing, f.FunctionEnv("app.handler", nil), 0), nil)
		framedtest.WantError(t, f.Read(t), framedtest.InitError, "FileNotFoundError", "nope")
		f.WantExit(t, 1)
	})
}

func TestFramedExit(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"app.py": `
import os, sys

def handler(event, context):
    print("about to exit")
    if event["how"] == "sys.exit":
        sys.exit(3)
    if event["how"] == "message":
        sys.exit("goodbye")
    os._exit(5)
`,
	}
	cases := []struct {
		how  string
		code int
	}{{"sys.exit", 3}, {"message", 1}, {"os._exit", 5}}
	for _, tc := range cases {
		t.Run(tc.how, func(t *testing.T) {
			t.Parallel()
			f := startReady(t, "app.handler", files, nil, 0)
			f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "exit-1", nil), []byte(`{"how":"`+tc.how+`"}`))
			if fr, err := f.TryRead(framedtest.WaitTimeout); err == nil {
				t.Errorf("got frame type %d %s %s, want none (the process ends)", fr.Type, fr.Header, fr.Body)
			}
			if code := f.ExitCode(t, framedtest.WaitTimeout); code != tc.code {
				t.Errorf("exit code = %d, want %d", code, tc.code)
			}
			if out := f.Stdout.String(); !strings.Contains(out, "\texit-1\tabout to exit\n") {
				t.Errorf("stdout = %q", out)
			}
			if tc.how == "message" && !strings.Contains(f.Stdout.String(), "\texit-1\tgoodbye\n") {
				t.Errorf("stdout = %q, want the exit message", f.Stdout.String())
			}
		})
	}
}

func TestFramedLargePayloads(t *testing.T) {
	t.Parallel()
	f := startReady(t, "app.handler", map[string]string{
		"app.py": `
def handler(e, c):
    if "n" in e:
        return "x" * (e["n"] - 2)  # n bytes of JSON with the quotes
    s = e["s"]
    return {"len": len(s), "head": s[:3], "tail": s[-3:]}
`,
	}, nil, 0)

	// A 3 MB result, read in pieces.
	const size = 3 << 20
	before := f.Conn.Reads.Load()
	fr := f.Invoke(t, fmt.Sprintf(`{"n":%d}`, size), nil)
	reads := f.Conn.Reads.Load() - before
	if fr.Type != framedtest.Response || len(fr.Body) != size {
		t.Fatalf("got frame type %d with %d bytes, want RESPONSE of %d", fr.Type, len(fr.Body), size)
	}
	if want := `"` + strings.Repeat("x", size-2) + `"`; string(fr.Body) != want {
		t.Fatal("large response corrupted")
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
	framedtest.WantResponse(t, f.WantAnswer(t, id), fmt.Sprintf(`{"len": %d, "head": "abc", "tail": "fgh"}`, len(s)))
}

func TestFramedPipelinedAndSplitFrames(t *testing.T) {
	t.Parallel()
	f := startFramed(t, map[string]string{
		"app.py": "def handler(e, c):\n    return e['v']\n",
	}, nil)
	// SPECIALIZE and two INVOKEs in one write: handled in order, one at a
	// time.
	var b []byte
	b = framedtest.AppendFrame(b, framedtest.Specialize, framedtest.SpecializeHeader(t, "app.handler", f.TaskRoot, f.FunctionEnv("app.handler", nil), 0), nil)
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
		"app.py":   "import time\ndef handler(e, c):\n    time.sleep(e['ms'] / 1000)\n    return 'ok'\n",
		"aio.py":   "import asyncio\nasync def handler(e, c):\n    await asyncio.sleep(e['ms'] / 1000)\n    return 'ok'\n",
		"cpu.py":   "def handler(e, c):\n    while True:\n        pass\n",
		"quiet.py": "def handler(e, c):\n    return 'ok'\n",
	}
	ready := func(handler string, concurrency int) func(t *testing.T, f *framedtest.Runtime) {
		return func(t *testing.T, f *framedtest.Runtime) {
			f.Specialize(t, handler, f.FunctionEnv(handler, nil), concurrency)
			f.WantReady(t)
		}
	}
	cases := []struct {
		name    string
		prepare func(t *testing.T, f *framedtest.Runtime)
	}{
		{"before SPECIALIZE", func(t *testing.T, f *framedtest.Runtime) {}},
		{"idle", func(t *testing.T, f *framedtest.Runtime) {
			ready("app.handler", 0)(t, f)
			framedtest.WantResponse(t, f.Invoke(t, `{"ms":0}`, nil), `"ok"`)
		}},
		{"during an invocation", func(t *testing.T, f *framedtest.Runtime) {
			ready("app.handler", 0)(t, f)
			f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "long", nil), []byte(`{"ms":30000}`))
		}},
		{"during a busy loop", func(t *testing.T, f *framedtest.Runtime) {
			ready("cpu.handler", 0)(t, f)
			f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "spin", nil), []byte(`{}`))
		}},
		{"during async invocations", func(t *testing.T, f *framedtest.Runtime) {
			ready("aio.handler", 4)(t, f)
			f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "a1", nil), []byte(`{"ms":30000}`))
			f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "a2", nil), []byte(`{"ms":30000}`))
		}},
		{"during thread invocations", func(t *testing.T, f *framedtest.Runtime) {
			ready("app.handler", 4)(t, f)
			f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "t1", nil), []byte(`{"ms":30000}`))
			f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "t2", nil), []byte(`{"ms":30000}`))
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
			t.Logf("python exited with %d %v after the socket closed", code, time.Since(began))
		})
	}
}

func TestFramedProtocolErrors(t *testing.T) {
	t.Parallel()
	files := map[string]string{"app.py": "def handler(e, c):\n    return 1\n"}
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
			return framedtest.AppendFrame(nil, framedtest.Specialize, framedtest.SpecializeHeader(t, "app.handler", f.TaskRoot, f.FunctionEnv("app.handler", nil), 0), nil)
		}, "second SPECIALIZE"},
		{"header not JSON", false, func(*framedtest.Runtime) []byte {
			return framedtest.AppendFrame(nil, framedtest.Specialize, []byte(`{nope`), nil)
		}, "not JSON"},
		{"header not an object", false, func(*framedtest.Runtime) []byte {
			return framedtest.AppendFrame(nil, framedtest.Specialize, []byte(`[1]`), nil)
		}, "not a JSON object"},
		{"SPECIALIZE without env", false, func(f *framedtest.Runtime) []byte {
			return framedtest.AppendFrame(nil, framedtest.Specialize, framedtest.MustJSON(t, map[string]any{"handler": "app.handler", "taskRoot": f.TaskRoot}), nil)
		}, "env"},
		{"SPECIALIZE without taskRoot", false, func(f *framedtest.Runtime) []byte {
			return framedtest.AppendFrame(nil, framedtest.Specialize, framedtest.MustJSON(t, map[string]any{"handler": "app.handler", "env": map[string]string{}}), nil)
		}, "taskRoot"},
		{"concurrency below 1", false, func(f *framedtest.Runtime) []byte {
			return framedtest.AppendFrame(nil, framedtest.Specialize, framedtest.SpecializeHeader(t, "app.handler", f.TaskRoot, map[string]string{}, -1), nil)
		}, "concurrency"},
		{"concurrency not an integer", false, func(f *framedtest.Runtime) []byte {
			return framedtest.AppendFrame(nil, framedtest.Specialize, framedtest.MustJSON(t, map[string]any{"handler": "app.handler", "taskRoot": f.TaskRoot, "env": map[string]string{}, "concurrency": 1.5}), nil)
		}, "concurrency"},
		{"INVOKE without id", true, func(*framedtest.Runtime) []byte {
			return framedtest.AppendFrame(nil, framedtest.Invoke, []byte(`{"deadline":1}`), []byte(`{}`))
		}, "id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startFramed(t, files, nil)
			if tc.ready {
				f.Specialize(t, "app.handler", f.FunctionEnv("app.handler", nil), 0)
				f.WantReady(t)
			}
			f.Write(t, tc.frame(f))
			f.WantProtocolError(t, tc.message)
		})
	}
}

// TestFramedOutputBeforeResponse checks the format of output lines and that
// they are in the stdout pipe by the time the answer frame can be read: the
// test reads the pipe itself, without blocking, right after the frame.
func TestFramedOutputBeforeResponse(t *testing.T) {
	t.Parallel()
	w, drain := framedtest.StdoutPipe(t)
	f := startFramed(t, map[string]string{
		"app.py": `
import logging, sys

print("during init")
logger = logging.getLogger("app")

def handler(event, context):
    print("hello", 42, {"a": 1})
    print("two\nlines")
    sys.stdout.write("partial ")
    sys.stdout.write("line\n")
    print("to stderr", file=sys.stderr)
    logger.info("info %s", "x")
    logger.warning("warned")
    logging.error("failed %d", 3)
    logger.debug("hidden below INFO")
    try:
        1 / 0
    except ZeroDivisionError:
        logger.exception("caught")
    sys.stdout.buffer.write(b"bytes \xc3\xa9\n")
    print("padding", "p" * event["pad"])
    sys.stdout.write("no newline")
    return 1
`,
	}, w)
	f.Specialize(t, "app.handler", f.FunctionEnv("app.handler", nil), 0)
	f.WantReady(t)
	if got := drain(); !strings.Contains(got, "\tundefined\tduring init\n") {
		t.Fatalf("init output not on stdout when READY was read: %q", got)
	}

	const perInvocation = 12
	for i := range 5 {
		id := fmt.Sprintf("console-%d", i)
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, id, nil), fmt.Appendf(nil, `{"pad":%d}`, 1+i*4000))
		framedtest.WantResponse(t, f.WantAnswer(t, id), `1`)
		got := drain()
		if !strings.Contains(got, "\t"+id+"\tpadding p") || !strings.HasSuffix(got, "\t"+id+"\tno newline\n") {
			t.Fatalf("invocation %d: output not on stdout when the RESPONSE frame was read:\n%q", i, got)
		}
	}

	out := drain()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 1+perInvocation*5 {
		t.Fatalf("stdout has %d lines, want %d:\n%s", len(lines), 1+perInvocation*5, out)
	}
	ts := `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`
	id := regexp.QuoteMeta("console-0")
	want := []string{
		ts + `\tundefined\tduring init`,
		ts + `\t` + id + `\thello 42 \{'a': 1\}`,
		ts + `\t` + id + `\ttwo`,
		ts + `\t` + id + `\tlines`,
		ts + `\t` + id + `\tpartial line`,
		ts + `\t` + id + `\tto stderr`,
		ts + `\t` + id + `\tINFO\tinfo x`,
		ts + `\t` + id + `\tWARNING\twarned`,
		ts + `\t` + id + `\tERROR\tfailed 3`,
		ts + `\t` + id + `\tERROR\tcaught\rTraceback \(most recent call last\):\r  File ".*app\.py", line \d+, in handler\r.*\rZeroDivisionError: division by zero`,
		ts + `\t` + id + `\tbytes é`,
		ts + `\t` + id + `\tpadding p`,
		ts + `\t` + id + `\tno newline`,
	}
	for i, re := range want {
		if !regexp.MustCompile(`^` + re + `$`).MatchString(lines[i]) {
			t.Errorf("line %d = %q, want match %q", i, lines[i], re)
		}
	}
}

func TestFramedErrorLogged(t *testing.T) {
	t.Parallel()
	f := startReady(t, "app.handler", map[string]string{
		"app.py": "def handler(e, c):\n    raise RuntimeError('logged')\n",
	}, nil, 0)
	framedtest.WantError(t, f.Invoke(t, `{}`, map[string]any{"id": "err-1"}), framedtest.Error, "RuntimeError", "logged")
	lines := f.WaitLines(t, 1)
	l := lines[len(lines)-1]
	if !strings.Contains(l, "\terr-1\tERROR\tInvoke Error \t{") || !strings.Contains(l, `"errorMessage": "logged"`) {
		t.Errorf("stdout line %q, want the Invoke Error line", l)
	}
}

// BenchmarkWarmInvokeFramed measures one warm round trip: write an INVOKE,
// the bootstrap runs a small handler and writes the RESPONSE.
func BenchmarkWarmInvokeFramed(b *testing.B) {
	for _, bc := range []struct{ name, code string }{
		{"def", "def handler(e, c):\n    return {'statusCode': 200, 'body': e['body']}\n"},
		{"async", "async def handler(e, c):\n    return {'statusCode': 200, 'body': e['body']}\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := startReady(b, "app.handler", map[string]string{"app.py": bc.code}, nil, 0)
			const payload = `{"body":"hello world","headers":{"content-type":"text/plain"}}`
			const want = `{"statusCode": 200, "body": "hello world"}`
			framedtest.WantResponse(b, f.Invoke(b, payload, nil), want)
			frame := framedtest.AppendFrame(nil, framedtest.Invoke, framedtest.InvokeHeader(b, "6f1c2b4e-8d3a-4c9b-a1e2-3f4a5b6c7d8e", map[string]any{"deadline": time.Now().Add(time.Hour).UnixMilli()}), []byte(payload))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				f.Write(b, frame)
				if fr := f.Read(b); fr.Type != framedtest.Response || string(fr.Body) != want {
					b.Fatalf("got %d %s %s", fr.Type, fr.Header, fr.Body)
				}
			}
		})
	}
}
