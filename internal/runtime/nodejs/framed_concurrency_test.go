package nodejs

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/runtime/framedtest"
)

// startConcurrent starts a framed bootstrap, specialises it for handler with
// the given concurrency and waits for READY.
func startConcurrent(t testing.TB, concurrency int, handler string, files map[string]string) *framedtest.Runtime {
	t.Helper()
	f := startFramed(t, files, nil)
	f.SpecializeReady(t, handler, nil, concurrency)
	return f
}

func TestFramedConcurrentOverlap(t *testing.T) {
	t.Parallel()
	f := startConcurrent(t, 4, "index.handler", map[string]string{
		"index.js": `
console.log('init');
// Created outside any invocation: its lines carry no request id, even while
// invocations are in flight.
const iv = setInterval(() => {
  if (globalThis.started === 4) { console.log('outside'); clearInterval(iv); }
}, 5);
// Each invocation waits until all four run (so they overlap), then all
// four timers start in one tick and end in the order of their lengths.
let release;
const all = new Promise((r) => { release = r; });
exports.handler = async (e, c) => {
  globalThis.started = (globalThis.started || 0) + 1;
  if (globalThis.started === 4) release();
  const trace = process.env._X_AMZN_TRACE_ID;
  console.log('before', e.ms);
  await all;
  await new Promise((r) => setTimeout(r, e.ms));
  console.info('after', e.ms);
  await new Promise((r) => setImmediate(r));
  setTimeout(() => console.warn('left behind', e.ms), 1);
  return {
    id: c.awsRequestId,
    ms: e.ms,
    arn: c.invokedFunctionArn,
    remaining: c.getRemainingTimeInMillis(),
    trace,
    // Still its own after the others started.
    traceAfter: process.env._X_AMZN_TRACE_ID,
  };
};`,
	})

	type answer struct {
		ID         string  `json:"id"`
		Ms         int     `json:"ms"`
		Arn        string  `json:"arn"`
		Remaining  float64 `json:"remaining"`
		Trace      string  `json:"trace"`
		TraceAfter string  `json:"traceAfter"`
	}
	durations := []int{200, 50, 150, 100}
	idOf := func(ms int) string { return fmt.Sprintf("req-%03d", ms) }
	deadlineOf := func(ms int) time.Duration { return time.Duration(ms) * 100 * time.Millisecond } // 20 s for 200 ms
	begin := time.Now()
	for _, ms := range durations {
		id := idOf(ms)
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, id, map[string]any{
			"deadline": time.Now().Add(deadlineOf(ms)).UnixMilli(),
			"arn":      framedtest.ARN + "-" + id,
			"trace":    "Root=" + id,
		}), fmt.Appendf(nil, `{"ms":%d}`, ms))
	}
	var order []int
	for range durations {
		id, fr := f.ReadAnswer(t)
		if fr.Type != framedtest.Response {
			t.Fatalf("%s: got ERROR %s", id, fr.Body)
		}
		var a answer
		if err := json.Unmarshal(fr.Body, &a); err != nil {
			t.Fatal(err)
		}
		want := idOf(a.Ms)
		if id != want || a.ID != want || a.Arn != framedtest.ARN+"-"+want || a.Trace != "Root="+want || a.TraceAfter != "Root="+want {
			t.Errorf("answer %s: %+v, want everything of %s", id, a, want)
		}
		if d := deadlineOf(a.Ms); a.Remaining > float64(d.Milliseconds()) || a.Remaining < float64((d-5*time.Second).Milliseconds()) {
			t.Errorf("%s: getRemainingTimeInMillis() = %v, want its own deadline (%v)", id, a.Remaining, d)
		}
		order = append(order, a.Ms)
	}
	elapsed := time.Since(begin)
	if !slices.Equal(order, []int{50, 100, 150, 200}) {
		t.Errorf("answers in order %v, want finishing order [50 100 150 200]", order)
	}
	t.Logf("4 invocations of 200, 50, 150 and 100 ms answered in %v", elapsed)

	// init, outside, and per invocation before, after and left behind.
	lines := f.WaitLines(t, 2+3*len(durations))
	ts := `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`
	line := regexp.MustCompile(`^` + ts + `\t([^\t]+)\t([A-Z]+)\t(.*)$`)
	seen := map[string]string{}
	for _, l := range lines {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("log line %q", l)
			continue
		}
		rid, msg := m[1], m[3]
		seen[msg] = rid
		var ms int
		switch {
		case msg == "init" || msg == "outside":
			if rid != "undefined" {
				t.Errorf("line %q: request id %q, want undefined", l, rid)
			}
		case sscanf(msg, "before %d", &ms), sscanf(msg, "after %d", &ms), sscanf(msg, "left behind %d", &ms):
			if rid != idOf(ms) {
				t.Errorf("line %q: request id %q, want %q", l, rid, idOf(ms))
			}
		default:
			t.Errorf("unexpected line %q", l)
		}
	}
	for _, ms := range durations {
		for _, msg := range []string{"before %d", "after %d", "left behind %d"} {
			if _, ok := seen[fmt.Sprintf(msg, ms)]; !ok {
				t.Errorf("no line %q", fmt.Sprintf(msg, ms))
			}
		}
	}
	if _, ok := seen["outside"]; !ok {
		t.Error("no line from the interval set up during init")
	}
	if !f.Running() {
		t.Fatal("node exited")
	}
}

func sscanf(s, format string, v *int) bool {
	_, err := fmt.Sscanf(s, format, v)
	return err == nil && fmt.Sprintf(format, *v) == s
}

// TestFramedConcurrentPrompt checks that frames are handled while an
// invocation is in flight: quick invocations are answered while a long one
// runs, and the handler starts as soon as its INVOKE arrives.
func TestFramedConcurrentPrompt(t *testing.T) {
	t.Parallel()
	f := startConcurrent(t, 2, "index.handler", map[string]string{
		// The long invocation ends only when the tenth quick one has run:
		// the quick ones can only be answered while it is in flight.
		"index.js": `let quick = 0, releaseLong;
const longDone = new Promise((r) => { releaseLong = r; });
exports.handler = async (e) => {
  if (e.long) { await longDone; return 'long'; }
  await new Promise((r) => setTimeout(r, e.ms));
  if (++quick === 10) releaseLong();
  return e.ms;
};`,
	})
	f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "long", nil), []byte(`{"long":true}`))
	for i := range 10 {
		id := fmt.Sprintf("quick-%d", i)
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, id, nil), []byte(`{"ms":1}`))
		framedtest.WantResponse(t, f.WantAnswer(t, id), `1`)
	}
	framedtest.WantResponse(t, f.WantAnswer(t, "long"), `"long"`)
}

func TestFramedConcurrentCompletion(t *testing.T) {
	t.Parallel()
	f := startConcurrent(t, 8, "index.handler", map[string]string{
		"index.js": `
exports.handler = (e, c, cb) => {
  switch (e.m) {
    case 'wait': cb(null, 'not waited'); setTimeout(() => {}, 60000); return;
    case 'late': setTimeout(() => cb(null, 'late'), 100); return;
    case 'never': return 'ignored';
    case 'succeed': c.succeed({ via: 'succeed' }); return;
    case 'fail': c.fail(new RangeError('via fail')); return;
    case 'throw': throw new TypeError('sync boom');
    case 'first': cb(null, 'from callback'); cb(null, 'again'); return Promise.resolve('promise');
    case 'cycle': return (async () => { const a = {}; a.self = a; return a; })();
    case 'undefined': return Promise.resolve(undefined);
    case 'reenter': return Promise.resolve({ toJSON() { cb(null, 'inner'); return 'outer'; } });
  }
};`,
	})
	send := func(id, m string) {
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, id, nil), []byte(`{"m":"`+m+`"}`))
	}
	// never stays in flight throughout, late for 100 ms.
	send("never", "never")
	send("late", "late")
	begin := time.Now()
	send("wait", "wait")
	framedtest.WantResponse(t, f.WantAnswer(t, "wait"), `"not waited"`)
	if d := time.Since(begin); d > 30*time.Second { // waiting would take its 60 s timer
		t.Errorf("callback answer waited %v", d)
	}
	send("succeed", "succeed")
	framedtest.WantResponse(t, f.WantAnswer(t, "succeed"), `{"via":"succeed"}`)
	send("fail", "fail")
	framedtest.WantError(t, f.WantAnswer(t, "fail"), framedtest.Error, "RangeError", "via fail")
	send("throw", "throw")
	framedtest.WantError(t, f.WantAnswer(t, "throw"), framedtest.Error, "TypeError", "sync boom")
	send("first", "first")
	framedtest.WantResponse(t, f.WantAnswer(t, "first"), `"from callback"`)
	send("cycle", "cycle")
	framedtest.WantError(t, f.WantAnswer(t, "cycle"), framedtest.Error, "Runtime.SerializationError", "circular")
	send("undefined", "undefined")
	framedtest.WantResponse(t, f.WantAnswer(t, "undefined"), `null`)
	// A completion made while the result is serialized comes too late.
	send("reenter", "reenter")
	framedtest.WantResponse(t, f.WantAnswer(t, "reenter"), `"outer"`)
	f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "bad", nil), []byte(`{not json`))
	framedtest.WantError(t, f.WantAnswer(t, "bad"), framedtest.Error, "Runtime.InvalidEvent", "invalid event JSON")
	framedtest.WantResponse(t, f.WantAnswer(t, "late"), `"late"`)
	// A handler that returns without completing waits for its callback:
	// nothing answers "never", not even an empty event loop.
	f.WantNothingWithin(t, 300*time.Millisecond)
	if !f.Running() {
		t.Fatal("node exited")
	}
}

func TestFramedConcurrentUncaught(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"index.js": `
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
exports.handler = async (e) => {
  switch (e.kind) {
    case 'throw': setTimeout(() => { throw new TypeError('thrown in timer'); }, 100); break;
    case 'error': await sleep(100); Promise.reject(new RangeError('rejected in background')); break;
    case 'value': await sleep(100); Promise.reject('plain reason'); break;
    case 'leftover': setTimeout(() => { throw new SyntaxError('left behind'); }, 150); return 'left';
  }
  console.log('waiting');
  await sleep(5000);
  return 'finished';
};`,
	}
	cases := []struct{ kind, errorType, message string }{
		{"throw", "TypeError", "thrown in timer"},
		{"error", "RangeError", "rejected in background"},
		{"value", "Runtime.UnhandledPromiseRejection", "plain reason"},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			f := startConcurrent(t, 4, "index.handler", files)
			f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "a", nil), []byte(`{}`))
			f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "culprit", nil), []byte(`{"kind":"`+tc.kind+`"}`))
			f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "c", nil), []byte(`{}`))

			fr := f.WantAnswer(t, "culprit")
			framedtest.WantError(t, fr, framedtest.Error, tc.errorType, tc.message)
			if fatal := fr.HeaderFields(t)["fatal"]; fatal != true {
				t.Errorf("culprit's ERROR: fatal = %v, want true", fatal)
			}
			var others []string
			for range 2 {
				id, fr := f.ReadAnswer(t)
				others = append(others, id)
				framedtest.WantError(t, fr, framedtest.Error, "Runtime.ExitError", "another invocation (culprit) raised an uncaught error")
				if fatal := fr.HeaderFields(t)["fatal"]; fatal != true {
					t.Errorf("%s's ERROR: fatal = %v, want true", id, fatal)
				}
			}
			if slices.Sort(others); !slices.Equal(others, []string{"a", "c"}) {
				t.Errorf("Runtime.ExitError answers for %v, want a and c", others)
			}
			f.WantExit(t, 1)
			out := f.Stdout.String()
			if !regexp.MustCompile(`\tculprit\tERROR\t(Uncaught Exception|Unhandled Promise Rejection) \t\{"errorType":"` + regexp.QuoteMeta(tc.errorType)).MatchString(out) {
				t.Errorf("no ERROR line for the culprit in stdout:\n%s", out)
			}
		})
	}

	// An error from code of an invocation already answered: its origin is
	// not in flight, so the oldest invocation in flight gets it.
	t.Run("origin answered", func(t *testing.T) {
		t.Parallel()
		f := startConcurrent(t, 4, "index.handler", files)
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "leftover", nil), []byte(`{"kind":"leftover"}`))
		framedtest.WantResponse(t, f.WantAnswer(t, "leftover"), `"left"`)
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "a", nil), []byte(`{}`))
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "b", nil), []byte(`{}`))
		fr := f.WantAnswer(t, "a")
		framedtest.WantError(t, fr, framedtest.Error, "SyntaxError", "left behind")
		if fatal := fr.HeaderFields(t)["fatal"]; fatal != true {
			t.Errorf("fatal = %v, want true", fatal)
		}
		fr = f.WantAnswer(t, "b")
		framedtest.WantError(t, fr, framedtest.Error, "Runtime.ExitError", "exiting")
		if fatal := fr.HeaderFields(t)["fatal"]; fatal != true {
			t.Errorf("fatal = %v, want true", fatal)
		}
		f.WantExit(t, 1)
	})

	t.Run("none in flight", func(t *testing.T) {
		t.Parallel()
		f := startConcurrent(t, 4, "index.handler", files)
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "leftover", nil), []byte(`{"kind":"leftover"}`))
		framedtest.WantResponse(t, f.WantAnswer(t, "leftover"), `"left"`)
		f.WantExit(t, 1)
		if msg := f.Stderr.String(); !strings.Contains(msg, "left behind") {
			t.Errorf("stderr = %q, want the error", msg)
		}
	})
}

func TestFramedConcurrencyProtocolErrors(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"index.js": `exports.handler = async (e) => { await new Promise((r) => setTimeout(r, e.ms)); return e.ms; };`,
	}
	t.Run("too many in flight", func(t *testing.T) {
		t.Parallel()
		f := startConcurrent(t, 2, "index.handler", files)
		// Answered invocations do not count.
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "quick-1", nil), []byte(`{"ms":1}`))
		framedtest.WantResponse(t, f.WantAnswer(t, "quick-1"), `1`)
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "slow-1", nil), []byte(`{"ms":10000}`))
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "quick-2", nil), []byte(`{"ms":1}`))
		framedtest.WantResponse(t, f.WantAnswer(t, "quick-2"), `1`)
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "slow-2", nil), []byte(`{"ms":10000}`))
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "one-too-many", nil), []byte(`{"ms":1}`))
		f.WantProtocolError(t, "one-too-many", "concurrency 2")
	})
	t.Run("duplicate id in flight", func(t *testing.T) {
		t.Parallel()
		f := startConcurrent(t, 4, "index.handler", files)
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "same", nil), []byte(`{"ms":10000}`))
		f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "same", nil), []byte(`{"ms":1}`))
		f.WantProtocolError(t, "same")
	})
	for _, bad := range []any{0, -2, 1.5, "4", true, map[string]any{}} {
		t.Run(fmt.Sprintf("concurrency %v", bad), func(t *testing.T) {
			t.Parallel()
			f := startFramed(t, files, nil)
			f.Send(t, framedtest.Specialize, framedtest.MustJSON(t, map[string]any{
				"handler": "index.handler", "taskRoot": f.TaskRoot, "env": f.FunctionEnv("index.handler", nil), "concurrency": bad,
			}), nil)
			f.WantProtocolError(t, "concurrency")
		})
	}
}

// TestFramedConcurrencyOne checks that an explicit concurrency of 1 is the
// default behaviour: pipelined INVOKEs wait their turn and a callback waits
// for the empty event loop.
func TestFramedConcurrencyOne(t *testing.T) {
	t.Parallel()
	f := startConcurrent(t, 1, "index.handler", map[string]string{
		"index.js": `
exports.handler = (e, c, cb) => {
  if (e.m === 'wait') { cb(null, 'waited'); setTimeout(() => console.log('timer fired'), 200); return; }
  return Promise.resolve('quick');
};`,
	})
	begin := time.Now()
	var b []byte
	b = framedtest.AppendFrame(b, framedtest.Invoke, framedtest.InvokeHeader(t, "wait", nil), []byte(`{"m":"wait"}`))
	b = framedtest.AppendFrame(b, framedtest.Invoke, framedtest.InvokeHeader(t, "quick", nil), []byte(`{}`))
	f.Write(t, b)
	framedtest.WantResponse(t, f.WantAnswer(t, "wait"), `"waited"`)
	if d := time.Since(begin); d < 190*time.Millisecond {
		t.Errorf("answered after %v, before the 200ms timer drained the event loop", d)
	}
	framedtest.WantResponse(t, f.WantAnswer(t, "quick"), `"quick"`)
	lines := f.WaitLines(t, 1)
	if !strings.Contains(lines[0], "\twait\tINFO\ttimer fired") {
		t.Errorf("stdout = %q", lines)
	}
}

// BenchmarkWarmInvokeFramedConcurrent is BenchmarkWarmInvokeFramed with
// concurrency 16 and 16 INVOKEs kept in flight: each answer read is
// followed by a new INVOKE (a closed loop). An op is one invocation.
func BenchmarkWarmInvokeFramedConcurrent(b *testing.B) {
	const n = 16
	f := startConcurrent(b, n, "index.handler", map[string]string{
		"index.js": `exports.handler = async (e) => ({ statusCode: 200, body: e.body });`,
	})
	const payload = `{"body":"hello world","headers":{"content-type":"text/plain"}}`
	const want = `{"statusCode":200,"body":"hello world"}`
	frames := make([][]byte, n)
	slot := make(map[string]int, n)
	deadline := time.Now().Add(time.Hour).UnixMilli()
	for i := range frames {
		id := fmt.Sprintf("bench-%02d", i)
		frames[i] = framedtest.AppendFrame(nil, framedtest.Invoke, framedtest.InvokeHeader(b, id, map[string]any{"deadline": deadline}), []byte(payload))
		slot[`{"id":"`+id+`"}`] = i
	}
	read := func() int {
		fr := f.Read(b)
		i, ok := slot[string(fr.Header)]
		if fr.Type != framedtest.Response || !ok || string(fr.Body) != want {
			b.Fatalf("got %d %s %s", fr.Type, fr.Header, fr.Body)
		}
		return i
	}
	var all []byte
	for _, fr := range frames {
		all = append(all, fr...)
	}
	f.Write(b, all)
	b.ReportAllocs()
	b.ResetTimer()
	begin := time.Now()
	done := 0
	for b.Loop() {
		f.Write(b, frames[read()])
		done++
	}
	b.ReportMetric(float64(done)/time.Since(begin).Seconds(), "inv/s")
}
