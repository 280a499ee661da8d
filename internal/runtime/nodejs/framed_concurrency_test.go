package nodejs

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// startConcurrent starts a framed bootstrap, specialises it for handler with
// the given concurrency and waits for READY.
func startConcurrent(t testing.TB, concurrency int, handler string, files map[string]string) *framedInst {
	t.Helper()
	f := startFramed(t, files, nil)
	f.send(t, ftSpecialize, mustJSON(t, map[string]any{
		"handler":     handler,
		"taskRoot":    f.taskRoot,
		"env":         f.functionEnv(handler, nil),
		"concurrency": concurrency,
	}), nil)
	f.wantReady(t)
	return f
}

// readAnswer reads the next frame, which must be a RESPONSE or ERROR with
// the header fields the protocol allows, and returns its id.
func (f *framedInst) readAnswer(t testing.TB) (string, wireFrame) {
	t.Helper()
	fr := f.read(t)
	if fr.typ != ftResponse && fr.typ != ftError {
		t.Fatalf("got frame type %d (header %s, body %s), want RESPONSE or ERROR", fr.typ, fr.header, fr.body)
	}
	id, _ := fr.headerFields(t)["id"].(string)
	return id, f.wantAnswerFrame(t, fr, id)
}

// wantAnswerFrame checks the header of an answer already read.
func (f *framedInst) wantAnswerFrame(t testing.TB, fr wireFrame, id string) wireFrame {
	t.Helper()
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
	}
	if h["id"] != id || id == "" {
		t.Fatalf("answer header %s, want id %q", fr.header, id)
	}
	return fr
}

// wantNothingWithin checks that the runtime sends no frame for d.
func (f *framedInst) wantNothingWithin(t testing.TB, d time.Duration) {
	t.Helper()
	if err := f.conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	b, err := f.r.Peek(1)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("runtime sent %q (err %v), want nothing for %v", b, err, d)
	}
}

// waitLines polls node's stdout until it has at least n lines and returns
// them.
func waitLines(t testing.TB, p *proc, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := p.stdout.String()
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if out != "" && len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("stdout has fewer than %d lines:\n%s", n, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
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
exports.handler = async (e, c) => {
  globalThis.started = (globalThis.started || 0) + 1;
  const trace = process.env._X_AMZN_TRACE_ID;
  console.log('before', e.ms);
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
  };
};`,
	})

	type answer struct {
		ID        string  `json:"id"`
		Ms        int     `json:"ms"`
		Arn       string  `json:"arn"`
		Remaining float64 `json:"remaining"`
		Trace     string  `json:"trace"`
	}
	durations := []int{200, 50, 150, 100}
	idOf := func(ms int) string { return fmt.Sprintf("req-%03d", ms) }
	deadlineOf := func(ms int) time.Duration { return time.Duration(ms) * 100 * time.Millisecond } // 20 s for 200 ms
	begin := time.Now()
	for _, ms := range durations {
		id := idOf(ms)
		f.send(t, ftInvoke, invokeHeader(t, id, map[string]any{
			"deadline": time.Now().Add(deadlineOf(ms)).UnixMilli(),
			"arn":      testARN + "-" + id,
			"trace":    "Root=" + id,
		}), fmt.Appendf(nil, `{"ms":%d}`, ms))
	}
	var order []int
	for range durations {
		id, fr := f.readAnswer(t)
		if fr.typ != ftResponse {
			t.Fatalf("%s: got ERROR %s", id, fr.body)
		}
		var a answer
		if err := json.Unmarshal(fr.body, &a); err != nil {
			t.Fatal(err)
		}
		want := idOf(a.Ms)
		if id != want || a.ID != want || a.Arn != testARN+"-"+want || a.Trace != "Root="+want {
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
	if elapsed >= 400*time.Millisecond {
		t.Errorf("4 overlapping invocations (500 ms in all) took %v, want < 400 ms", elapsed)
	}
	t.Logf("4 invocations of 200, 50, 150 and 100 ms answered in %v", elapsed)

	// init, outside, and per invocation before, after and left behind.
	lines := waitLines(t, f.proc, 2+3*len(durations))
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
	if !f.running() {
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
		"index.js": `exports.handler = async (e) => { await new Promise((r) => setTimeout(r, e.ms)); return e.ms; };`,
	})
	f.send(t, ftInvoke, invokeHeader(t, "long", nil), []byte(`{"ms":3000}`))
	time.Sleep(50 * time.Millisecond)
	for i := range 10 {
		id := fmt.Sprintf("quick-%d", i)
		begin := time.Now()
		f.send(t, ftInvoke, invokeHeader(t, id, nil), []byte(`{"ms":1}`))
		wantFramedResponse(t, f.wantAnswer(t, id), `1`)
		if d := time.Since(begin); d > time.Second {
			t.Errorf("%s answered after %v while another invocation was in flight", id, d)
		}
	}
	wantFramedResponse(t, f.wantAnswer(t, "long"), `3000`)
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
		f.send(t, ftInvoke, invokeHeader(t, id, nil), []byte(`{"m":"`+m+`"}`))
	}
	// never stays in flight throughout, late for 100 ms.
	send("never", "never")
	send("late", "late")
	begin := time.Now()
	send("wait", "wait")
	wantFramedResponse(t, f.wantAnswer(t, "wait"), `"not waited"`)
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("callback answer waited %v", d)
	}
	send("succeed", "succeed")
	wantFramedResponse(t, f.wantAnswer(t, "succeed"), `{"via":"succeed"}`)
	send("fail", "fail")
	wantFramedError(t, f.wantAnswer(t, "fail"), ftError, "RangeError", "via fail")
	send("throw", "throw")
	wantFramedError(t, f.wantAnswer(t, "throw"), ftError, "TypeError", "sync boom")
	send("first", "first")
	wantFramedResponse(t, f.wantAnswer(t, "first"), `"from callback"`)
	send("cycle", "cycle")
	wantFramedError(t, f.wantAnswer(t, "cycle"), ftError, "Runtime.SerializationError", "circular")
	send("undefined", "undefined")
	wantFramedResponse(t, f.wantAnswer(t, "undefined"), `null`)
	// A completion made while the result is serialized comes too late.
	send("reenter", "reenter")
	wantFramedResponse(t, f.wantAnswer(t, "reenter"), `"outer"`)
	f.send(t, ftInvoke, invokeHeader(t, "bad", nil), []byte(`{not json`))
	wantFramedError(t, f.wantAnswer(t, "bad"), ftError, "Runtime.InvalidEvent", "invalid event JSON")
	wantFramedResponse(t, f.wantAnswer(t, "late"), `"late"`)
	// A handler that returns without completing waits for its callback:
	// nothing answers "never", not even an empty event loop.
	f.wantNothingWithin(t, 300*time.Millisecond)
	if !f.running() {
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
			f.send(t, ftInvoke, invokeHeader(t, "a", nil), []byte(`{}`))
			f.send(t, ftInvoke, invokeHeader(t, "culprit", nil), []byte(`{"kind":"`+tc.kind+`"}`))
			f.send(t, ftInvoke, invokeHeader(t, "c", nil), []byte(`{}`))

			fr := f.wantAnswer(t, "culprit")
			wantFramedError(t, fr, ftError, tc.errorType, tc.message)
			if fatal := fr.headerFields(t)["fatal"]; fatal != true {
				t.Errorf("culprit's ERROR: fatal = %v, want true", fatal)
			}
			var others []string
			for range 2 {
				id, fr := f.readAnswer(t)
				others = append(others, id)
				wantFramedError(t, fr, ftError, "Runtime.ExitError", "another invocation (culprit) raised an uncaught error")
				if fatal := fr.headerFields(t)["fatal"]; fatal != true {
					t.Errorf("%s's ERROR: fatal = %v, want true", id, fatal)
				}
			}
			if slices.Sort(others); !slices.Equal(others, []string{"a", "c"}) {
				t.Errorf("Runtime.ExitError answers for %v, want a and c", others)
			}
			if code := f.exitCode(t, waitTimeout); code != 1 {
				t.Errorf("exit code = %d, want 1", code)
			}
			out := f.stdout.String()
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
		f.send(t, ftInvoke, invokeHeader(t, "leftover", nil), []byte(`{"kind":"leftover"}`))
		wantFramedResponse(t, f.wantAnswer(t, "leftover"), `"left"`)
		f.send(t, ftInvoke, invokeHeader(t, "a", nil), []byte(`{}`))
		f.send(t, ftInvoke, invokeHeader(t, "b", nil), []byte(`{}`))
		fr := f.wantAnswer(t, "a")
		wantFramedError(t, fr, ftError, "SyntaxError", "left behind")
		if fatal := fr.headerFields(t)["fatal"]; fatal != true {
			t.Errorf("fatal = %v, want true", fatal)
		}
		fr = f.wantAnswer(t, "b")
		wantFramedError(t, fr, ftError, "Runtime.ExitError", "exiting")
		if fatal := fr.headerFields(t)["fatal"]; fatal != true {
			t.Errorf("fatal = %v, want true", fatal)
		}
		if code := f.exitCode(t, waitTimeout); code != 1 {
			t.Errorf("exit code = %d, want 1", code)
		}
	})

	t.Run("none in flight", func(t *testing.T) {
		t.Parallel()
		f := startConcurrent(t, 4, "index.handler", files)
		f.send(t, ftInvoke, invokeHeader(t, "leftover", nil), []byte(`{"kind":"leftover"}`))
		wantFramedResponse(t, f.wantAnswer(t, "leftover"), `"left"`)
		if code := f.exitCode(t, waitTimeout); code != 1 {
			t.Errorf("exit code = %d, want 1", code)
		}
		if msg := f.stderr.String(); !strings.Contains(msg, "left behind") {
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
		f.send(t, ftInvoke, invokeHeader(t, "quick-1", nil), []byte(`{"ms":1}`))
		wantFramedResponse(t, f.wantAnswer(t, "quick-1"), `1`)
		f.send(t, ftInvoke, invokeHeader(t, "slow-1", nil), []byte(`{"ms":10000}`))
		f.send(t, ftInvoke, invokeHeader(t, "quick-2", nil), []byte(`{"ms":1}`))
		wantFramedResponse(t, f.wantAnswer(t, "quick-2"), `1`)
		f.send(t, ftInvoke, invokeHeader(t, "slow-2", nil), []byte(`{"ms":10000}`))
		f.send(t, ftInvoke, invokeHeader(t, "one-too-many", nil), []byte(`{"ms":1}`))
		if code := f.exitCode(t, waitTimeout); code != 1 {
			t.Errorf("exit code = %d, want 1", code)
		}
		if msg := f.stderr.String(); !strings.Contains(msg, "protocol error") || !strings.Contains(msg, "one-too-many") || !strings.Contains(msg, "concurrency 2") {
			t.Errorf("stderr = %q, want a protocol error about one-too-many", msg)
		}
	})
	t.Run("duplicate id in flight", func(t *testing.T) {
		t.Parallel()
		f := startConcurrent(t, 4, "index.handler", files)
		f.send(t, ftInvoke, invokeHeader(t, "same", nil), []byte(`{"ms":10000}`))
		f.send(t, ftInvoke, invokeHeader(t, "same", nil), []byte(`{"ms":1}`))
		if code := f.exitCode(t, waitTimeout); code != 1 {
			t.Errorf("exit code = %d, want 1", code)
		}
		if msg := f.stderr.String(); !strings.Contains(msg, "protocol error") || !strings.Contains(msg, "same") {
			t.Errorf("stderr = %q, want a protocol error about the duplicate id", msg)
		}
	})
	for _, bad := range []any{0, -2, 1.5, "4", true, map[string]any{}} {
		t.Run(fmt.Sprintf("concurrency %v", bad), func(t *testing.T) {
			t.Parallel()
			f := startFramed(t, files, nil)
			f.send(t, ftSpecialize, mustJSON(t, map[string]any{
				"handler": "index.handler", "taskRoot": f.taskRoot, "env": f.functionEnv("index.handler", nil), "concurrency": bad,
			}), nil)
			if code := f.exitCode(t, waitTimeout); code != 1 {
				t.Errorf("exit code = %d, want 1", code)
			}
			if msg := f.stderr.String(); !strings.Contains(msg, "protocol error") || !strings.Contains(msg, "concurrency") {
				t.Errorf("stderr = %q, want a protocol error about concurrency", msg)
			}
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
	b = appendWireFrame(b, ftInvoke, invokeHeader(t, "wait", nil), []byte(`{"m":"wait"}`))
	b = appendWireFrame(b, ftInvoke, invokeHeader(t, "quick", nil), []byte(`{}`))
	f.write(t, b)
	wantFramedResponse(t, f.wantAnswer(t, "wait"), `"waited"`)
	if d := time.Since(begin); d < 190*time.Millisecond {
		t.Errorf("answered after %v, before the 200ms timer drained the event loop", d)
	}
	wantFramedResponse(t, f.wantAnswer(t, "quick"), `"quick"`)
	lines := waitLines(t, f.proc, 1)
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
		frames[i] = appendWireFrame(nil, ftInvoke, invokeHeader(b, id, map[string]any{"deadline": deadline}), []byte(payload))
		slot[`{"id":"`+id+`"}`] = i
	}
	read := func() int {
		fr := f.read(b)
		i, ok := slot[string(fr.header)]
		if fr.typ != ftResponse || !ok || string(fr.body) != want {
			b.Fatalf("got %d %s %s", fr.typ, fr.header, fr.body)
		}
		return i
	}
	var all []byte
	for _, fr := range frames {
		all = append(all, fr...)
	}
	f.write(b, all)
	b.ReportAllocs()
	b.ResetTimer()
	begin := time.Now()
	done := 0
	for b.Loop() {
		f.write(b, frames[read()])
		done++
	}
	b.ReportMetric(float64(done)/time.Since(begin).Seconds(), "inv/s")
}
