package python

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/runtime/framedtest"
)

// concurrentOverlap sends four INVOKEs at once to a bootstrap with
// concurrency 4 whose handler waits until all four run (they overlap),
// then sleeps event["ms"], and checks that they are answered in the order
// they finish, and that each one's output lines carry its own request id.
func concurrentOverlap(t *testing.T, f *framedtest.Runtime) {
	t.Helper()
	sleeps := map[string]int{"inv-a": 800, "inv-b": 200, "inv-c": 600, "inv-d": 400}
	ids := []string{"inv-a", "inv-b", "inv-c", "inv-d"}
	began := time.Now()
	var batch []byte
	for _, id := range ids {
		batch = framedtest.AppendFrame(batch, framedtest.Invoke, framedtest.InvokeHeader(t, id, nil), fmt.Appendf(nil, `{"ms":%d}`, sleeps[id]))
	}
	f.Write(t, batch)
	var order []string
	for range ids {
		fr := f.Read(t)
		id := f.CheckAnswer(t, fr)
		framedtest.WantResponse(t, fr, fmt.Sprintf(`{"ms": %d, "id": "%s"}`, sleeps[id], id))
		order = append(order, id)
	}
	took := time.Since(began)
	if want := []string{"inv-b", "inv-d", "inv-c", "inv-a"}; !slices.Equal(order, want) {
		t.Errorf("answers in order %q, want %q (the order they finish)", order, want)
	}
	t.Logf("4 concurrent invocations (longest 800 ms, 2000 ms in all) answered in %v", took)

	// Every line carries the id of the invocation that wrote it.
	lines := f.WaitLines(t, 3*len(ids))
	re := regexp.MustCompile(`^\S+\t(inv-[a-d])\t(?:INFO\t)?(start|end) (\d+)$`)
	seen := 0
	for _, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		seen++
		if fmt.Sprint(sleeps[m[1]]) != m[3] {
			t.Errorf("line %q: written by the invocation sleeping %s ms, carries %s", l, m[3], m[1])
		}
	}
	if seen != 3*len(ids) {
		t.Errorf("found %d start/end lines, want %d:\n%s", seen, 3*len(ids), strings.Join(lines, "\n"))
	}
}

func TestFramedConcurrencyAsync(t *testing.T) {
	t.Parallel()
	f := startReady(t, "app.handler", map[string]string{
		"app.py": `
import asyncio, logging, threading

started = 0
all_started = None

async def handler(event, context):
    global started, all_started
    ms = event["ms"]
    assert threading.current_thread() is threading.main_thread()
    print("start", ms)
    logging.info("start %d", ms)
    if all_started is None:
        all_started = asyncio.Event()
    started += 1
    if started == 4:
        all_started.set()
    await asyncio.wait_for(all_started.wait(), 60)  # the four overlap
    await asyncio.sleep(ms / 1000)
    print("end", ms)
    return {"ms": ms, "id": context.aws_request_id}
`,
	}, nil, 4)
	concurrentOverlap(t, f)
	// Still serving, one at a time as well.
	framedtest.WantResponse(t, f.Invoke(t, `{"ms":1}`, map[string]any{"id": "inv-e"}), `{"ms": 1, "id": "inv-e"}`)
}

func TestFramedConcurrencyThreads(t *testing.T) {
	t.Parallel()
	f := startReady(t, "app.handler", map[string]string{
		"app.py": `
import logging, threading, time

lock = threading.Lock()
started = 0
all_started = threading.Event()

def handler(event, context):
    global started
    ms = event["ms"]
    assert threading.current_thread().name.startswith("tern-invoke")
    print("start", ms)
    logging.info("start %d", ms)
    with lock:
        started += 1
        if started == 4:
            all_started.set()
    all_started.wait(60)  # the four overlap
    time.sleep(ms / 1000)
    print("end", ms)
    return {"ms": ms, "id": context.aws_request_id}
`,
	}, nil, 4)
	concurrentOverlap(t, f)
	framedtest.WantResponse(t, f.Invoke(t, `{"ms":1}`, map[string]any{"id": "inv-e"}), `{"ms": 1, "id": "inv-e"}`)
}

func TestFramedConcurrencyErrors(t *testing.T) {
	t.Parallel()
	f := startReady(t, "app.handler", map[string]string{
		"app.py": `
import asyncio

async def handler(event, context):
    await asyncio.sleep(event.get("ms", 0) / 1000)
    if event.get("fail"):
        raise ValueError("failed " + context.aws_request_id)
    return None
`,
	}, nil, 2)
	f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "slow", nil), []byte(`{"ms":300,"fail":true}`))
	f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "bad", nil), []byte(`{nope`))
	framedtest.WantError(t, f.WantAnswer(t, "bad"), framedtest.Error, "Runtime.InvalidEvent", "invalid event JSON")
	f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "null", nil), []byte(`{}`))
	framedtest.WantResponse(t, f.WantAnswer(t, "null"), `null`)
	framedtest.WantError(t, f.WantAnswer(t, "slow"), framedtest.Error, "ValueError", "failed slow")
}

func TestFramedConcurrencyProtocolErrors(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"app.py": "import time\ndef handler(e, c):\n    time.sleep(5)\n",
		"aio.py": "import asyncio\nasync def handler(e, c):\n    await asyncio.sleep(5)\n",
	}
	cases := []struct {
		name, handler string
		ids           []string
		message       string
	}{
		{"threads beyond concurrency", "app.handler", []string{"a", "b", "c"}, "while 2 invocations are in flight (concurrency 2)"},
		{"async beyond concurrency", "aio.handler", []string{"a", "b", "c"}, "while 2 invocations are in flight (concurrency 2)"},
		{"threads duplicate id", "app.handler", []string{"a", "a"}, `INVOKE "a" while an invocation with that id is in flight`},
		{"async duplicate id", "aio.handler", []string{"a", "a"}, `INVOKE "a" while an invocation with that id is in flight`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startReady(t, tc.handler, files, nil, 2)
			for _, id := range tc.ids {
				f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, id, nil), []byte(`{}`))
			}
			f.WantProtocolError(t, tc.message)
		})
	}
}

// TestFramedModuleEventLoop checks that an async handler runs on the event
// loop the module made at import, so that what it bound to that loop works.
func TestFramedModuleEventLoop(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"app.py": `
import asyncio, warnings
warnings.simplefilter("ignore", DeprecationWarning)
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
fut = loop.create_future()  # bound to loop
loop.call_soon(fut.set_result, "from init")

async def handler(event, context):
    return [asyncio.get_running_loop() is loop, await fut]
`,
	}
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprint("concurrency ", n), func(t *testing.T) {
			t.Parallel()
			f := startReady(t, "app.handler", files, nil, n)
			framedtest.WantResponse(t, f.Invoke(t, `{}`, nil), `[true, "from init"]`)
			framedtest.WantResponse(t, f.Invoke(t, `{}`, nil), `[true, "from init"]`)
		})
	}
}
