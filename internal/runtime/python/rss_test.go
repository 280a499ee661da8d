package python

import (
	"testing"

	"github.com/ternhq/tern/internal/runtime/framedtest"
)

// TestFramedRSSFlat checks that a warm instance's memory stays flat over a
// long run of invocations, each with a new trace id: the bootstrap once
// wrote each into the real environment, a libc setenv that never frees
// the value it replaces (about 110 bytes per invocation).
func TestFramedRSSFlat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		concurrency int
		code        string
	}{
		{"sequential", 1, "import os\ndef handler(e, c):\n    return os.environ['_X_AMZN_TRACE_ID']\n"},
		// With several in flight, each sees its own trace id.
		{"threads", 16, "import os, time\ndef handler(e, c):\n    time.sleep(0)\n    return os.environ['_X_AMZN_TRACE_ID']\n"},
		{"async", 16, "import asyncio, os\nasync def handler(e, c):\n    await asyncio.sleep(0)\n    return os.environ['_X_AMZN_TRACE_ID']\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startReady(t, "app.handler", map[string]string{"app.py": tc.code}, nil, tc.concurrency)
			f.CheckRSSFlat(t, 20_000, 100_000, 6<<10) // the old bootstrap grew by 11 MB
		})
	}
}

// TestFramedTraceEnv checks that os.environ shows the invocation's trace id
// however it is read, and that a handler may set and delete it.
func TestFramedTraceEnv(t *testing.T) {
	t.Parallel()
	f := startReady(t, "app.handler", map[string]string{"app.py": `
import os, subprocess, sys

def handler(e, c):
    env = os.environ
    r = {
        "trace": env["_X_AMZN_TRACE_ID"],
        "getenv": os.getenv("_X_AMZN_TRACE_ID"),
        "has": "_X_AMZN_TRACE_ID" in env,
        "keys": [k for k in env if k == "_X_AMZN_TRACE_ID"],
        "copy": env.copy().get("_X_AMZN_TRACE_ID"),
        "len": len(env) == len(list(env)),
        "child": subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('_X_AMZN_TRACE_ID'), end='')"],
                                env=env, capture_output=True, text=True).stdout,
        "other": env["AWS_LAMBDA_FUNCTION_NAME"],
    }
    env["_X_AMZN_TRACE_ID"] = "set"
    r["set"] = env["_X_AMZN_TRACE_ID"]
    del env["_X_AMZN_TRACE_ID"]
    r["deleted"] = "_X_AMZN_TRACE_ID" not in env and os.getenv("_X_AMZN_TRACE_ID") is None
    try:
        del env["_X_AMZN_TRACE_ID"]
        r["del_again"] = "no KeyError"
    except KeyError:
        r["del_again"] = "KeyError"
    try:
        env["_X_AMZN_TRACE_ID"] = 1
        r["non_str"] = "accepted"
    except TypeError:
        r["non_str"] = "TypeError"
    return r
`}, nil, 0)
	const trace = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=1"
	var got map[string]any
	framedtest.DecodeResponse(t, f.Invoke(t, `{}`, map[string]any{"trace": trace}), &got)
	want := map[string]any{"trace": trace, "getenv": trace, "has": true, "copy": trace, "len": true, "child": trace,
		"other": "fn", "set": "set", "deleted": true, "del_again": "KeyError", "non_str": "TypeError"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if keys, _ := got["keys"].([]any); len(keys) != 1 {
		t.Errorf("iterating os.environ gave _X_AMZN_TRACE_ID %d times", len(keys))
	}
	framedtest.DecodeResponse(t, f.Invoke(t, `{}`, map[string]any{"trace": trace + "2"}), &got)
	if got["trace"] != trace+"2" {
		t.Errorf("second invocation: %v", got)
	}
}
