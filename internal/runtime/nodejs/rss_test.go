package nodejs

import (
	"fmt"
	"testing"

	"github.com/ternhq/tern/internal/runtime/framedtest"
)

// TestFramedRSSFlat checks that a warm instance's memory stays flat over a
// long run of invocations, each with a new trace id: the bootstrap once
// wrote each into the real environment, a libc setenv that never frees
// the value it replaces (about 110 bytes per invocation).
func TestFramedRSSFlat(t *testing.T) {
	t.Parallel()
	for _, concurrency := range []int{1, 16} {
		t.Run(fmt.Sprintf("concurrency=%d", concurrency), func(t *testing.T) {
			t.Parallel()
			f := startFramed(t, map[string]string{
				// With several in flight, the trace id read after an await
				// is still the invocation's own.
				"index.js": `exports.handler = async () => { await null; return process.env._X_AMZN_TRACE_ID; };`,
			}, nil)
			f.SpecializeReady(t, "index.handler", nil, concurrency)
			// V8's heap settles within the first 100,000 or so. Measured: +0
			// to +2 MB; the old bootstrap grew by 27 MB.
			f.CheckRSSFlat(t, 100_000, 200_000, 8<<10)
		})
	}
}

// TestFramedTraceEnv checks that process.env shows the invocation's trace
// id however it is read, to child processes too, and that a handler may
// set and delete it.
func TestFramedTraceEnv(t *testing.T) {
	t.Parallel()
	f := startReady(t, "index.handler", map[string]string{
		"index.js": `
const { execFileSync } = require('node:child_process');
exports.handler = async () => {
  const env = process.env;
  const r = {
    trace: env._X_AMZN_TRACE_ID,
    has: '_X_AMZN_TRACE_ID' in env,
    keys: Object.keys(env).filter((k) => k === '_X_AMZN_TRACE_ID').length,
    spread: { ...env }._X_AMZN_TRACE_ID,
    json: JSON.parse(JSON.stringify(env))._X_AMZN_TRACE_ID,
    child: execFileSync(process.execPath, ['-e', 'process.stdout.write(process.env._X_AMZN_TRACE_ID || "none")']).toString(),
    other: env.AWS_LAMBDA_FUNCTION_NAME,
  };
  env._X_AMZN_TRACE_ID = 'set';
  r.set = env._X_AMZN_TRACE_ID;
  delete env._X_AMZN_TRACE_ID;
  r.deleted = env._X_AMZN_TRACE_ID === undefined && !('_X_AMZN_TRACE_ID' in env) && !Object.keys(env).includes('_X_AMZN_TRACE_ID');
  env.TERN_TEST_VAR = 'x';
  r.real = execFileSync(process.execPath, ['-e', 'process.stdout.write(process.env.TERN_TEST_VAR || "none")']).toString();
  return r;
};`,
	}, nil)
	const trace = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=1"
	var got map[string]any
	framedtest.DecodeResponse(t, f.Invoke(t, `{}`, map[string]any{"trace": trace}), &got)
	want := map[string]any{"trace": trace, "has": true, "keys": 1.0, "spread": trace, "json": trace, "child": trace,
		"other": "fn", "set": "set", "deleted": true, "real": "x"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	// The next invocation has its own again.
	framedtest.DecodeResponse(t, f.Invoke(t, `{}`, map[string]any{"trace": trace + "2"}), &got)
	if got["trace"] != trace+"2" || got["child"] != trace+"2" {
		t.Errorf("second invocation: %v", got)
	}
}
