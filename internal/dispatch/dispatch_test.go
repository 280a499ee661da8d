package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/manifest"
	"github.com/ternhq/tern/internal/registry"
	"github.com/ternhq/tern/internal/runtime"
)

func TestNewAppliesDefaults(t *testing.T) {
	def := DefaultConfig()
	tests := []struct {
		name string
		in   Config
		want Config
	}{
		{"zero", Config{}, def},
		{"negative", Config{MaxQueue: -1, MaxQueueWait: -1, InitTimeout: -1, ReapInterval: -1}, def},
		{"set fields kept", Config{MaxQueue: 3, ReapInterval: time.Millisecond},
			Config{MaxQueue: 3, MaxQueueWait: def.MaxQueueWait, InitTimeout: def.InitTimeout, ReapInterval: time.Millisecond}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDispatcher(t, tc.in, newFleet())
			if d.cfg != tc.want {
				t.Errorf("config = %+v, want %+v", d.cfg, tc.want)
			}
		})
	}
}

func TestInvokeStartsOnDemandThenReuses(t *testing.T) {
	f := newFleet()
	type seen struct {
		inv  runtime.Invocation
		cold bool
	}
	var (
		mu    sync.Mutex
		calls []seen
	)
	f.onInvoke = func(_ context.Context, _ *fakeInst, inv *runtime.Invocation, cold bool) (*runtime.Result, error) {
		mu.Lock()
		calls = append(calls, seen{*inv, cold})
		mu.Unlock()
		return &runtime.Result{Payload: inv.Payload}, nil
	}
	d := newDispatcher(t, Config{}, f)
	v := version("hello", 1, func(m *manifest.Manifest) { m.Timeout = manifest.Duration(3 * time.Second) })
	if got := d.Stats(); len(got) != 0 {
		t.Fatalf("Stats before any invocation = %+v, want none", got)
	}

	for i, want := range []struct {
		cold bool
		init time.Duration
	}{{true, fakeInit}, {false, 0}, {false, 0}} {
		id := fmt.Sprintf("r%d", i)
		before := time.Now()
		out, err := d.Invoke(context.Background(), v, id, []byte("payload "+id))
		after := time.Now()
		if err != nil {
			t.Fatalf("invoke %d: %v", i, err)
		}
		if out.Cold != want.cold || out.Init != want.init || out.Instance != "hello-1-i1" {
			t.Errorf("invoke %d: outcome cold=%v init=%v instance=%q, want cold=%v init=%v instance hello-1-i1",
				i, out.Cold, out.Init, out.Instance, want.cold, want.init)
		}
		if got := string(out.Result.Payload); got != "payload "+id {
			t.Errorf("invoke %d: result payload %q", i, got)
		}
		mu.Lock()
		c := calls[len(calls)-1]
		mu.Unlock()
		if c.cold != want.cold || c.inv.RequestID != id || string(c.inv.Payload) != "payload "+id {
			t.Errorf("invoke %d: instance got %+v cold=%v", i, c.inv, c.cold)
		}
		if dl := c.inv.Deadline; dl.Before(before.Add(3*time.Second)) || dl.After(after.Add(3*time.Second)) {
			t.Errorf("invoke %d: deadline %v not the function timeout (3s) from the call", i, dl)
		}
	}
	if n := f.startCount(); n != 1 {
		t.Errorf("started %d instances, want 1", n)
	}
	want := Stats{Function: "hello", Version: 1, Instances: 1, Idle: 1}
	if got, _ := poolStats(d, "hello", 1); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestIdleInstancesAreReusedLastInFirstOut(t *testing.T) {
	for _, order := range [][2]string{{"a", "b"}, {"b", "a"}} {
		t.Run(order[0]+" released first", func(t *testing.T) {
			f := newFleet()
			f.gates.hold("a", "b")
			d := newDispatcher(t, Config{}, f)
			v := version("f", 1, nil)
			ctx := context.Background()
			calls := map[string]*call{"a": goInvoke(ctx, d, v, "a"), "b": goInvoke(ctx, d, v, "b")}
			eventually(t, "two invocations running", func() bool { return f.runningCount() == 2 })

			f.gates.open(order[0])
			first, err := calls[order[0]].wait(t)
			if err != nil {
				t.Fatal(err)
			}
			f.gates.open(order[1])
			last, err := calls[order[1]].wait(t)
			if err != nil {
				t.Fatal(err)
			}
			if first.Instance == last.Instance {
				t.Fatalf("both concurrent invocations ran on %s", first.Instance)
			}
			if got := idleCount(d, "f", 1); got != 2 {
				t.Fatalf("idle = %d, want 2", got)
			}
			for _, id := range []string{"c", "d"} {
				out, err := d.Invoke(ctx, v, id, nil)
				if err != nil {
					t.Fatal(err)
				}
				if out.Instance != last.Instance || out.Cold {
					t.Errorf("%s ran on %s (cold %v), want the most recently released %s, warm", id, out.Instance, out.Cold, last.Instance)
				}
			}
			if n := f.startCount(); n != 2 {
				t.Errorf("started %d instances, want 2", n)
			}
		})
	}
}

func TestConcurrentInvocationsScaleUpToMax(t *testing.T) {
	tests := []struct {
		name     string
		max, n   int
		prewarm  bool // one idle instance exists before the burst
		wantRuns int  // invocations running at once
	}{
		{name: "max 2, 5 invocations", max: 2, n: 5, wantRuns: 2},
		{name: "max 1, 3 invocations", max: 1, n: 3, wantRuns: 1},
		{name: "max 3, 3 invocations", max: 3, n: 3, wantRuns: 3},
		{name: "fewer invocations than max", max: 10, n: 4, wantRuns: 4},
		{name: "idle instance used first", max: 2, n: 3, prewarm: true, wantRuns: 2},
		{name: "idle instance plus starts", max: 5, n: 3, prewarm: true, wantRuns: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet()
			d := newDispatcher(t, Config{MaxQueue: 10, MaxQueueWait: testTimeout}, f)
			v := version("f", 1, scale(0, tc.max, 0))
			ctx := context.Background()
			if tc.prewarm {
				if _, err := d.Invoke(ctx, v, "warm", nil); err != nil {
					t.Fatal(err)
				}
			}
			var calls []*call
			for i := range tc.n {
				id := fmt.Sprintf("r%d", i)
				f.gates.hold(id)
				calls = append(calls, goInvoke(ctx, d, v, id))
			}
			eventually(t, fmt.Sprintf("%d running, %d queued", tc.wantRuns, tc.n-tc.wantRuns), func() bool {
				return f.runningCount() == tc.wantRuns && queued(d, "f", 1) == tc.n-tc.wantRuns
			})
			if n := f.startCount(); n != tc.wantRuns {
				t.Errorf("started %d instances while %d run, want %d", n, tc.wantRuns, tc.wantRuns)
			}
			for _, c := range calls {
				f.gates.open(c.id)
			}
			cold := 0
			for _, c := range calls {
				out, err := c.wait(t)
				if err != nil {
					t.Errorf("%s: %v", c.id, err)
					continue
				}
				if out.Cold {
					cold++
				}
			}
			wantCold := tc.wantRuns
			if tc.prewarm {
				wantCold--
			}
			if cold != wantCold {
				t.Errorf("%d cold invocations, want %d", cold, wantCold)
			}
			f.mu.Lock()
			starts, maxLive := f.starts, f.maxLive
			f.mu.Unlock()
			if starts != tc.wantRuns || maxLive > tc.max {
				t.Errorf("started %d instances, at most %d at once; want %d, at most %d", starts, maxLive, tc.wantRuns, tc.max)
			}
			f.checkNoOverlap(t)
			want := Stats{Function: "f", Version: 1, Instances: tc.wantRuns, Idle: tc.wantRuns}
			if got, _ := poolStats(d, "f", 1); got != want {
				t.Errorf("Stats = %+v, want %+v", got, want)
			}
		})
	}
}

func TestManyConcurrentInvocationsRespectMax(t *testing.T) {
	for _, crashy := range []bool{false, true} {
		t.Run(fmt.Sprintf("crashes=%v", crashy), func(t *testing.T) {
			const maxN, workers, each = 3, 16, 20
			f := newFleet()
			var crashes atomic.Int32
			f.onInvoke = func(_ context.Context, in *fakeInst, inv *runtime.Invocation, _ bool) (*runtime.Result, error) {
				time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
				if crashy && rand.IntN(7) == 0 {
					crashes.Add(1)
					f.kill(in)
					return nil, fmt.Errorf("%w: exited", runtime.ErrCrashed)
				}
				return &runtime.Result{Payload: inv.Payload}, nil
			}
			d := newDispatcher(t, Config{MaxQueue: workers, MaxQueueWait: testTimeout}, f)
			v := version("f", 1, scale(0, maxN, 0))
			var (
				wg     sync.WaitGroup
				failed atomic.Int32
				errMu  sync.Mutex
				errs   []error
			)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						id := fmt.Sprintf("w%d-%d", w, i)
						out, err := d.Invoke(context.Background(), v, id, []byte(id))
						switch {
						case err == nil && string(out.Result.Payload) == id:
						case crashy && errors.Is(err, runtime.ErrCrashed):
							failed.Add(1)
						default:
							errMu.Lock()
							errs = append(errs, fmt.Errorf("%s: %v", id, err))
							errMu.Unlock()
						}
					}
				}()
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(testTimeout):
				t.Fatal("invocations did not finish")
			}
			for _, err := range errs {
				t.Error(err)
			}
			if failed.Load() != crashes.Load() {
				t.Errorf("%d invocations failed, %d crashed", failed.Load(), crashes.Load())
			}
			f.mu.Lock()
			starts, maxLive := f.starts, f.maxLive
			f.mu.Unlock()
			if maxLive > maxN {
				t.Errorf("%d instances at once, max is %d", maxLive, maxN)
			}
			if !crashy && starts > maxN {
				t.Errorf("started %d instances, max is %d", starts, maxN)
			}
			if crashy && starts > maxN+int(crashes.Load()) {
				t.Errorf("started %d instances for %d crashes, max is %d", starts, crashes.Load(), maxN)
			}
			f.checkNoOverlap(t)
			// A replacement started for a waiter that was then served by
			// another instance may still be coming up.
			eventually(t, "pool settled", func() bool {
				st, _ := poolStats(d, "f", 1)
				live := f.liveCount()
				return st.Instances == live && st.Idle == live && st.Queued == 0 && st.Starting == 0
			})
		})
	}
}

func TestFullQueueThrottlesAtOnce(t *testing.T) {
	f := newFleet()
	f.gates.hold("busy")
	d := newDispatcher(t, Config{MaxQueue: 2, MaxQueueWait: time.Minute}, f)
	v := version("f", 1, scale(0, 1, 0))
	ctx := context.Background()

	busy := goInvoke(ctx, d, v, "busy")
	eventually(t, "busy invocation running", func() bool { return f.runningCount() == 1 })
	w1 := goInvoke(ctx, d, v, "w1")
	eventually(t, "w1 queued", func() bool { return queued(d, "f", 1) == 1 })
	w2 := goInvoke(ctx, d, v, "w2")
	eventually(t, "w2 queued", func() bool { return queued(d, "f", 1) == 2 })

	begin := time.Now()
	_, err := d.Invoke(ctx, v, "w3", nil)
	if !errors.Is(err, ErrThrottled) {
		t.Fatalf("4th invocation: err = %v, want ErrThrottled", err)
	}
	if el := time.Since(begin); el > testTimeout/2 {
		t.Errorf("throttled after %v, want at once", el)
	}
	if q := queued(d, "f", 1); q != 2 || w1.returned() || w2.returned() {
		t.Errorf("after the throttle: %d queued, w1 returned %v, w2 returned %v", q, w1.returned(), w2.returned())
	}

	f.gates.open("busy")
	for _, c := range []*call{busy, w1, w2} {
		if out, err := c.wait(t); err != nil {
			t.Errorf("%s: %v", c.id, err)
		} else if out.Instance != "f-1-i1" {
			t.Errorf("%s ran on %s", c.id, out.Instance)
		}
	}
	if got, want := f.invokeOrder(), []string{"busy", "w1", "w2"}; !slices.Equal(got, want) {
		t.Errorf("served in order %v, want %v (FIFO)", got, want)
	}
	if n := f.startCount(); n != 1 {
		t.Errorf("started %d instances, want 1", n)
	}
}

func TestQueueWaitIsBounded(t *testing.T) {
	const bound = 100 * time.Millisecond
	tests := []struct {
		name    string
		cfg     time.Duration // MaxQueueWait
		timeout time.Duration // the function's
	}{
		{"by MaxQueueWait", bound, 30 * time.Second},
		{"by the function timeout", time.Minute, bound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet()
			f.gates.hold("busy")
			d := newDispatcher(t, Config{MaxQueueWait: tc.cfg}, f)
			v := version("f", 1, func(m *manifest.Manifest) {
				m.Scale.Max = 1
				m.Timeout = manifest.Duration(tc.timeout)
			})
			ctx := context.Background()
			busy := goInvoke(ctx, d, v, "busy")
			eventually(t, "busy invocation running", func() bool { return f.runningCount() == 1 })

			w := goInvoke(ctx, d, v, "w")
			_, err := w.wait(t)
			if !errors.Is(err, ErrThrottled) {
				t.Fatalf("err = %v, want ErrThrottled", err)
			}
			if w.elapsed < bound || w.elapsed > testTimeout/2 {
				t.Errorf("gave up after %v, want about %v", w.elapsed, bound)
			}
			if q := queued(d, "f", 1); q != 0 {
				t.Errorf("%d still queued after the wait ended", q)
			}

			f.gates.open("busy")
			if _, err := busy.wait(t); err != nil {
				t.Fatal(err)
			}
			out, err := d.Invoke(ctx, v, "after", nil)
			if err != nil || out.Instance != "f-1-i1" || out.Cold {
				t.Errorf("next invocation: %+v, %v; want the warm f-1-i1", out, err)
			}
			if n := f.startCount(); n != 1 {
				t.Errorf("started %d instances, want 1", n)
			}
		})
	}
}

func TestCancelledWaiterLeavesQueue(t *testing.T) {
	cause := errors.New("client went away")
	tests := []struct {
		name string
		ctx  func() (context.Context, func())
		want error
	}{
		{"cancel", func() (context.Context, func()) {
			ctx, cancel := context.WithCancel(context.Background())
			return ctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, func()) {
			ctx := &deadlineCtx{Context: context.Background(), done: make(chan struct{})}
			return ctx, func() { close(ctx.done) } // the deadline passes when the test says
		}, context.DeadlineExceeded},
		{"cancel with cause", func() (context.Context, func()) {
			ctx, cancel := context.WithCancelCause(context.Background())
			return ctx, func() { cancel(cause) }
		}, cause},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet()
			f.gates.hold("busy")
			d := newDispatcher(t, Config{MaxQueueWait: time.Minute}, f)
			v := version("f", 1, scale(0, 1, 0))
			bg := context.Background()
			busy := goInvoke(bg, d, v, "busy")
			eventually(t, "busy invocation running", func() bool { return f.runningCount() == 1 })

			ctx, cancel := tc.ctx()
			gone := goInvoke(ctx, d, v, "gone")
			eventually(t, "waiter queued", func() bool { return queued(d, "f", 1) == 1 })
			next := goInvoke(bg, d, v, "next") // queued behind the one that gives up
			eventually(t, "second waiter queued", func() bool { return queued(d, "f", 1) == 2 })

			cancel()
			_, err := gone.wait(t)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if gone.elapsed > testTimeout/2 {
				t.Errorf("returned %v after the call, want soon after the cancel", gone.elapsed)
			}
			if q := queued(d, "f", 1); q != 1 {
				t.Errorf("%d queued after the waiter gave up, want 1", q)
			}

			// The freed instance goes to the remaining waiter, then to idle.
			f.gates.open("busy")
			if _, err := busy.wait(t); err != nil {
				t.Fatal(err)
			}
			if out, err := next.wait(t); err != nil || out.Instance != "f-1-i1" {
				t.Fatalf("next: %+v, %v", out, err)
			}
			if got := idleCount(d, "f", 1); got != 1 {
				t.Errorf("idle = %d, want 1", got)
			}
			out, err := d.Invoke(bg, v, "last", nil)
			if err != nil || out.Instance != "f-1-i1" || out.Cold {
				t.Errorf("last: %+v, %v; want the warm f-1-i1", out, err)
			}
			if n := f.startCount(); n != 1 {
				t.Errorf("started %d instances, want 1", n)
			}
			if got, want := f.invokeOrder(), []string{"busy", "next", "last"}; !slices.Equal(got, want) {
				t.Errorf("invocations ran: %v, want %v", got, want)
			}
		})
	}
}

// deadlineCtx is a context whose deadline passes when done is closed.
type deadlineCtx struct {
	context.Context
	done chan struct{}
}

func (c *deadlineCtx) Done() <-chan struct{} { return c.done }

func (c *deadlineCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func TestStartFailureIsReturnedPromptly(t *testing.T) {
	initErr := &runtime.InitError{FunctionError: runtime.FunctionError{Type: "Runtime.ImportModuleError"}, Duration: time.Millisecond}
	tests := []struct {
		name string
		err  error
	}{
		{"init error", initErr},
		{"other error", errors.New("no code for this version")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet()
			f.onStart = func(_ context.Context, n int, _ *registry.Version) error {
				if n == 1 {
					return tc.err
				}
				return nil
			}
			d := newDispatcher(t, Config{MaxQueueWait: time.Minute}, f)
			v := version("f", 1, scale(0, 1, 0))
			ctx := context.Background()

			c := goInvoke(ctx, d, v, "first")
			out, err := c.wait(t)
			if !errors.Is(err, tc.err) || out != nil {
				t.Fatalf("Invoke = %+v, %v; want nil, %v", out, err, tc.err)
			}
			if ie := (*runtime.InitError)(nil); tc.err == initErr && (!errors.As(err, &ie) || ie != initErr) {
				t.Errorf("err %v is not the start's *runtime.InitError", err)
			}
			if c.elapsed > testTimeout/2 {
				t.Errorf("start failure returned after %v, want at once", c.elapsed)
			}
			want := Stats{Function: "f", Version: 1}
			if got, _ := poolStats(d, "f", 1); got != want {
				t.Errorf("Stats after the failed start = %+v, want %+v", got, want)
			}

			out, err = d.Invoke(ctx, v, "second", nil)
			if err != nil || !out.Cold || out.Instance != "f-1-i2" {
				t.Fatalf("second Invoke = %+v, %v; want a cold start of f-1-i2", out, err)
			}
			if n := f.startCount(); n != 2 {
				t.Errorf("Start called %d times, want 2", n)
			}
		})
	}
}

func TestStartFailureGoesToOldestWaiterOthersRetry(t *testing.T) {
	f := newFleet()
	unblock := make(chan struct{})
	initErr := &runtime.InitError{FunctionError: runtime.FunctionError{Type: "Runtime.ExitError"}}
	f.onStart = func(ctx context.Context, n int, _ *registry.Version) error {
		if n > 1 {
			return nil
		}
		select {
		case <-unblock:
			return initErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d := newDispatcher(t, Config{MaxQueueWait: time.Minute}, f)
	v := version("f", 1, scale(0, 1, 0))
	ctx := context.Background()
	var calls []*call
	for i := range 3 {
		calls = append(calls, goInvoke(ctx, d, v, fmt.Sprintf("w%d", i)))
		eventually(t, "waiter queued", func() bool { return queued(d, "f", 1) == i+1 })
	}
	if n := f.startCount(); n != 1 {
		t.Fatalf("Start called %d times with max 1, want 1", n)
	}
	want := Stats{Function: "f", Version: 1, Instances: 1, Starting: 1, Queued: 3}
	if got, _ := poolStats(d, "f", 1); got != want {
		t.Errorf("Stats while starting = %+v, want %+v", got, want)
	}
	close(unblock)
	if _, err := calls[0].wait(t); !errors.Is(err, initErr) {
		t.Errorf("oldest waiter: err = %v, want the init error", err)
	}
	for _, c := range calls[1:] {
		if out, err := c.wait(t); err != nil || out.Instance != "f-1-i2" {
			t.Errorf("%s: %+v, %v; want served by f-1-i2", c.id, out, err)
		}
	}
	if got, want := f.invokeOrder(), []string{"w1", "w2"}; !slices.Equal(got, want) {
		t.Errorf("served %v, want %v", got, want)
	}
}

func TestStartIsBoundedByInitTimeout(t *testing.T) {
	f := newFleet()
	f.onStart = func(ctx context.Context, _ int, _ *registry.Version) error {
		<-ctx.Done()
		return ctx.Err()
	}
	d := newDispatcher(t, Config{MaxQueueWait: time.Minute, InitTimeout: 30 * time.Millisecond}, f)
	v := version("f", 1, nil)
	c := goInvoke(context.Background(), d, v, "r")
	if _, err := c.wait(t); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the start's deadline", err)
	}
	if c.elapsed > testTimeout/2 {
		t.Errorf("returned after %v", c.elapsed)
	}
	if st, _ := poolStats(d, "f", 1); st.Instances != 0 || st.Starting != 0 {
		t.Errorf("Stats = %+v, want no instances", st)
	}
}

func TestFailedInvocationDiscardsInstance(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"timeout", runtime.ErrTimeout, runtime.ErrTimeout},
		{"crash", runtime.ErrCrashed, runtime.ErrCrashed},
		{"wrapped crash", fmt.Errorf("%w: exit status 1", runtime.ErrCrashed), runtime.ErrCrashed},
		{"stopped", runtime.ErrStopped, runtime.ErrStopped},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet()
			f.onInvoke = func(_ context.Context, _ *fakeInst, inv *runtime.Invocation, _ bool) (*runtime.Result, error) {
				if inv.RequestID == "bad" {
					return nil, tc.err
				}
				return &runtime.Result{Payload: inv.Payload}, nil
			}
			d := newDispatcher(t, Config{}, f)
			v := version("f", 1, nil)
			ctx := context.Background()
			if _, err := d.Invoke(ctx, v, "ok", nil); err != nil {
				t.Fatal(err)
			}
			out, err := d.Invoke(ctx, v, "bad", nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if out == nil || out.Instance != "f-1-i1" || out.Cold {
				t.Errorf("outcome with the error = %+v, want warm f-1-i1", out)
			}
			if s := f.get("f-1-i1").stops.Load(); s == 0 {
				t.Error("failed instance not stopped")
			}
			want := Stats{Function: "f", Version: 1}
			if got, _ := poolStats(d, "f", 1); got != want {
				t.Errorf("Stats = %+v, want %+v", got, want)
			}
			out, err = d.Invoke(ctx, v, "next", nil)
			if err != nil || out.Instance != "f-1-i2" || !out.Cold {
				t.Errorf("next: %+v, %v; want a cold f-1-i2", out, err)
			}
			if n := f.get("f-1-i1").invokes.Load(); n != 2 {
				t.Errorf("discarded instance served %d invocations, want 2", n)
			}
		})
	}
}

func TestFailedInvocationStartsReplacementForWaiter(t *testing.T) {
	f := newFleet()
	f.gates.hold("crash")
	f.onInvoke = func(_ context.Context, in *fakeInst, inv *runtime.Invocation, _ bool) (*runtime.Result, error) {
		if g := f.gates.held(inv.RequestID); g != nil {
			select {
			case <-g:
			case <-time.After(testTimeout):
			}
			f.kill(in)
			return nil, fmt.Errorf("%w: signal: killed", runtime.ErrCrashed)
		}
		return &runtime.Result{Payload: inv.Payload}, nil
	}
	d := newDispatcher(t, Config{MaxQueueWait: time.Minute}, f)
	v := version("f", 1, scale(0, 1, 0))
	ctx := context.Background()
	crash := goInvoke(ctx, d, v, "crash")
	eventually(t, "invocation running", func() bool { return f.runningCount() == 1 })
	w := goInvoke(ctx, d, v, "w")
	eventually(t, "waiter queued", func() bool { return queued(d, "f", 1) == 1 })
	f.gates.open("crash")
	if _, err := crash.wait(t); !errors.Is(err, runtime.ErrCrashed) {
		t.Fatalf("crash: err = %v", err)
	}
	out, err := w.wait(t)
	if err != nil || out.Instance != "f-1-i2" || !out.Cold {
		t.Fatalf("waiter: %+v, %v; want a cold f-1-i2", out, err)
	}
	if f.get("f-1-i1").stops.Load() == 0 {
		t.Error("crashed instance not stopped")
	}
}

func TestDeadIdleInstanceIsNotHandedOut(t *testing.T) {
	tests := []struct {
		name     string
		idle     int      // idle instances, f-1-i1 released first
		kill     []string // those that die while idle
		want     string   // instance that serves next
		wantCold bool
	}{
		{"only instance died", 1, []string{"f-1-i1"}, "f-1-i2", true},
		{"all died", 2, []string{"f-1-i1", "f-1-i2"}, "f-1-i3", true},
		{"most recent died", 2, []string{"f-1-i2"}, "f-1-i1", false},
		{"older died", 2, []string{"f-1-i1"}, "f-1-i2", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet()
			d := newDispatcher(t, Config{}, f)
			v := version("f", 1, nil)
			makeIdle(t, d, f, v, tc.idle)
			for _, id := range tc.kill {
				f.kill(f.get(id))
			}
			out, err := d.Invoke(context.Background(), v, "next", nil)
			if err != nil {
				t.Fatal(err)
			}
			if out.Instance != tc.want || out.Cold != tc.wantCold {
				t.Errorf("served by %s (cold %v), want %s (cold %v)", out.Instance, out.Cold, tc.want, tc.wantCold)
			}
			for _, id := range tc.kill {
				if n := f.get(id).invokes.Load(); n != 1 {
					t.Errorf("dead %s got %d invocations, want 1", id, n)
				}
			}
			// Those met on the way are stopped now, the others by the janitor.
			d.reap(time.Now())
			eventually(t, "dead idle instances stopped", func() bool {
				for _, id := range tc.kill {
					if f.get(id).stops.Load() == 0 {
						return false
					}
				}
				return true
			})
			// The autoscaler may start one to keep the demand it saw.
			eventually(t, "every live instance idle", func() bool {
				live := f.startCount() - len(tc.kill)
				st, _ := poolStats(d, "f", 1)
				return st.Starting == 0 && st.Instances == live && st.Idle == live
			})
		})
	}
}

// makeIdle leaves n idle instances of v, numbered in start order and
// released in that order (the last one is the most recently used). v must
// have no instances yet.
func makeIdle(t *testing.T, d *Dispatcher, f *fleet, v *registry.Version, n int) {
	t.Helper()
	base := f.startCount()
	var calls []*call
	for i := range n {
		id := fmt.Sprintf("make-idle-%d-%d", base, i)
		f.gates.hold(id)
		calls = append(calls, goInvoke(context.Background(), d, v, id))
		// Each invocation waits for its own start, so the i-th runs on the
		// i-th instance.
		eventually(t, "instance started and running", func() bool { return f.startCount() == base+i+1 && f.runningCount() >= i+1 })
	}
	for i, c := range calls {
		f.gates.open(c.id)
		out, err := c.wait(t)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%s-%d-i%d", v.Function, v.Number, base+i+1); out.Instance != want {
			t.Fatalf("%s ran on %s, want %s", c.id, out.Instance, want)
		}
	}
}

func TestJanitorReapsIdleInstancesDownToMin(t *testing.T) {
	tests := []struct {
		name string
		min  int
	}{
		{"min 0", 0},
		{"min 1", 1},
		{"min 2", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet()
			d := newDispatcher(t, Config{ReapInterval: 10 * time.Millisecond}, f)
			v := version("f", 1, scale(tc.min, 5, 30*time.Millisecond))
			makeIdle(t, d, f, v, 3)
			d.Start()
			eventually(t, "idle instances reaped", func() bool {
				st, ok := poolStats(d, "f", 1)
				if tc.min == 0 {
					return f.liveCount() == 0 && !ok // and the empty pool forgotten
				}
				return f.liveCount() == tc.min && st.Instances == tc.min
			})
			// Oldest idle go first: the most recently released survive.
			for i, in := range f.instances() {
				stopped := in.stops.Load() > 0
				if wantStopped := i < 3-tc.min; stopped != wantStopped {
					t.Errorf("%s stopped = %v, want %v", in.id, stopped, wantStopped)
				}
			}
			if n := f.startCount(); n != 3 {
				t.Errorf("Start called %d times, want 3 (min is kept by the survivors)", n)
			}
			_, ok := poolStats(d, "f", 1)
			if ok != (tc.min > 0) {
				t.Errorf("pool listed = %v after reaping; want it forgotten only when empty", ok)
			}
			out, err := d.Invoke(context.Background(), v, "after", nil)
			if err != nil {
				t.Fatal(err)
			}
			if wantCold := tc.min == 0; out.Cold != wantCold {
				t.Errorf("after reaping: cold = %v, want %v", out.Cold, wantCold)
			}
		})
	}
}

func TestReapHonoursIdleTimeAndMin(t *testing.T) {
	// reap is driven by hand here so the clock is the test's.
	f := newFleet()
	d := newDispatcher(t, Config{}, f)
	v := version("f", 1, scale(1, 5, time.Minute))
	makeIdle(t, d, f, v, 3)
	now := time.Now()
	stopped := func() (n int) {
		for _, in := range f.instances() {
			if in.stops.Load() > 0 {
				n++
			}
		}
		return n
	}
	d.reap(now.Add(30 * time.Second))
	if n := stopped(); n != 0 {
		t.Fatalf("%d instances stopped before scale.idle passed", n)
	}
	d.reap(now.Add(2 * time.Minute))
	eventually(t, "2 instances stopped after scale.idle (down to min 1)", func() bool { return stopped() == 2 })
	d.reap(now.Add(time.Hour))
	if n := stopped(); n != 2 || f.liveCount() != 1 {
		t.Fatalf("min not kept: %d stopped, %d live", n, f.liveCount())
	}
	if f.get("f-1-i3").stops.Load() != 0 {
		t.Error("the most recently used instance was reaped")
	}
	// A busy instance is never reaped, even past scale.idle.
	f.gates.hold("busy")
	busy := goInvoke(context.Background(), d, v, "busy")
	eventually(t, "running", func() bool { return f.runningCount() == 1 })
	v0 := version("g", 1, scale(0, 5, time.Minute))
	makeIdle(t, d, f, v0, 1)
	d.reap(now.Add(time.Hour))
	if f.get("f-1-i3").stops.Load() != 0 {
		t.Error("busy instance reaped")
	}
	eventually(t, "the idle instance of another pool reaped", func() bool { return f.get("g-1-i4").stops.Load() != 0 })
	f.gates.open("busy")
	if _, err := busy.wait(t); err != nil {
		t.Fatal(err)
	}
}

func TestJanitorKeepsMinStarted(t *testing.T) {
	f := newFleet()
	d := newDispatcher(t, Config{ReapInterval: 10 * time.Millisecond}, f)
	v := version("f", 1, scale(2, 5, 20*time.Millisecond))
	d.FunctionChanged("f", v)
	eventually(t, "scale.min instances started without an invocation", func() bool {
		st, _ := poolStats(d, "f", 1)
		return st.Instances == 2 && st.Idle == 2 && f.liveCount() == 2
	})
	if n := f.startCount(); n != 2 {
		t.Fatalf("Start called %d times, want 2", n)
	}
	for _, in := range f.instances() {
		if in.v != v {
			t.Errorf("%s started for %+v, want the current version", in.id, in.v)
		}
	}

	d.Start()
	// An instance that dies is replaced by the janitor.
	f.kill(f.get("f-1-i1"))
	eventually(t, "dead instance replaced", func() bool {
		st, _ := poolStats(d, "f", 1)
		return f.startCount() == 3 && f.liveCount() == 2 && st.Instances == 2 && st.Idle == 2
	})
	// Idle past scale.idle, but min is kept.
	d.reap(time.Now().Add(time.Hour))
	if n := f.liveCount(); n != 2 {
		t.Errorf("%d live after reaping, want min 2", n)
	}
	// A warm-started instance's first invocation is still cold.
	out, err := d.Invoke(context.Background(), v, "r", nil)
	if err != nil || !out.Cold || out.Init != fakeInit || f.startCount() != 3 {
		t.Errorf("first invocation: %+v, %v (starts %d); want cold on a pre-started instance", out, err, f.startCount())
	}
	out, err = d.Invoke(context.Background(), v, "r2", nil)
	if err != nil || out.Cold {
		t.Errorf("second invocation: %+v, %v; want warm", out, err)
	}
}

func TestFunctionChangedDrainsOldVersion(t *testing.T) {
	f := newFleet()
	d := newDispatcher(t, Config{ReapInterval: 10 * time.Millisecond}, f)
	v1 := version("f", 1, scale(1, 5, 20*time.Millisecond))
	v2 := version("f", 2, scale(1, 5, 20*time.Millisecond))
	d.FunctionChanged("f", v1)
	eventually(t, "v1 kept warm", func() bool { st, _ := poolStats(d, "f", 1); return st.Idle == 1 })
	f.gates.hold("busy")
	busy := goInvoke(context.Background(), d, v1, "busy")
	eventually(t, "v1 busy", func() bool { return f.runningCount() == 1 })

	d.FunctionChanged("f", v2)
	eventually(t, "v2 kept warm", func() bool { st, _ := poolStats(d, "f", 2); return st.Idle == 1 })
	// The old version keeps nothing warm, but a busy instance finishes.
	d.reap(time.Now().Add(time.Hour))
	if in := f.get("f-1-i1"); in.stops.Load() != 0 {
		t.Fatal("busy old-version instance stopped")
	}
	d.Start()
	f.gates.open("busy")
	if out, err := busy.wait(t); err != nil || out.Instance != "f-1-i1" {
		t.Fatalf("busy: %+v, %v", out, err)
	}
	eventually(t, "v1 drained and forgotten", func() bool {
		_, ok := poolStats(d, "f", 1)
		return !ok && f.get("f-1-i1").stops.Load() > 0
	})
	if st, _ := poolStats(d, "f", 2); st.Instances != 1 || f.get("f-2-i2").stops.Load() != 0 {
		t.Errorf("current version v2: %+v", st)
	}
	// An old version invoked after the change keeps nothing warm either.
	out, err := d.Invoke(context.Background(), v1, "old", nil)
	if err != nil || out.Instance != "f-1-i3" {
		t.Fatalf("old version: %+v, %v", out, err)
	}
	eventually(t, "late old-version pool drained", func() bool {
		_, ok := poolStats(d, "f", 1)
		return !ok && f.get("f-1-i3").stops.Load() > 0
	})

	// Back to v1: v1 is kept warm again, v2 drains.
	d.FunctionChanged("f", v1)
	eventually(t, "v1 warm, v2 drained", func() bool {
		st, _ := poolStats(d, "f", 1)
		_, ok := poolStats(d, "f", 2)
		return st.Instances == 1 && !ok && f.get("f-2-i2").stops.Load() > 0
	})
}

func TestFunctionDeletedStopsEverything(t *testing.T) {
	tests := []struct {
		name   string
		delete func(d *Dispatcher)
	}{
		{"FunctionChanged nil", func(d *Dispatcher) { d.FunctionChanged("f", nil) }},
		{"Stop", func(d *Dispatcher) { d.Stop("f") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet()
			d := newDispatcher(t, Config{MaxQueueWait: time.Minute}, f)
			ctx := context.Background()
			v1 := version("f", 1, nil)
			v2 := version("f", 2, scale(0, 1, 0))
			other := version("g", 1, nil)
			d.FunctionChanged("f", v2)
			makeIdle(t, d, f, v1, 1)    // f-1-i1, idle old version
			makeIdle(t, d, f, other, 1) // g-1-i2, another function
			f.gates.hold("busy")
			busy := goInvoke(ctx, d, v2, "busy") // f-2-i3
			eventually(t, "busy", func() bool { return f.runningCount() == 1 })
			w := goInvoke(ctx, d, v2, "w")
			eventually(t, "queued", func() bool { return queued(d, "f", 2) == 1 })

			tc.delete(d)
			// Instances are stopped by the time it returns, busy ones too.
			for _, id := range []string{"f-1-i1", "f-2-i3"} {
				if f.get(id).stops.Load() == 0 {
					t.Errorf("%s not stopped", id)
				}
			}
			if _, err := w.wait(t); !errors.Is(err, ErrGone) {
				t.Errorf("waiter: err = %v, want ErrGone", err)
			}
			if w.elapsed > testTimeout/2 {
				t.Errorf("waiter failed after %v", w.elapsed)
			}
			// The busy invocation's instance was stopped under it; the
			// caller hears why (deleted), not a crash.
			if _, err := busy.wait(t); !errors.Is(err, ErrGone) {
				t.Errorf("busy: err = %v, want ErrGone", err)
			}
			for _, st := range d.Stats() {
				if st.Function == "f" {
					t.Errorf("deleted function still has a pool: %+v", st)
				}
			}
			if st, _ := poolStats(d, "g", 1); st.Instances != 1 || f.get("g-1-i2").stops.Load() != 0 {
				t.Errorf("other function touched: %+v", st)
			}
			if n := f.liveCount(); n != 1 {
				t.Errorf("%d live instances, want only g's", n)
			}
		})
	}
}

func TestCloseStopsEverything(t *testing.T) {
	f := newFleet()
	d := newDispatcher(t, Config{MaxQueueWait: time.Minute, ReapInterval: 10 * time.Millisecond}, f)
	d.Start()
	ctx := context.Background()
	a := version("a", 1, nil)
	b := version("b", 1, scale(0, 1, 0))
	makeIdle(t, d, f, a, 2)
	f.gates.hold("busy")
	busy := goInvoke(ctx, d, b, "busy")
	eventually(t, "busy", func() bool { return f.runningCount() == 1 })
	w := goInvoke(ctx, d, b, "w")
	eventually(t, "queued", func() bool { return queued(d, "b", 1) == 1 })

	cctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	if err := d.Close(cctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, in := range f.instances() {
		if in.stops.Load() == 0 {
			t.Errorf("%s not stopped", in.id)
		}
	}
	if n := f.liveCount(); n != 0 {
		t.Errorf("%d instances live after Close", n)
	}
	if _, err := w.wait(t); !errors.Is(err, ErrClosed) {
		t.Errorf("waiter: err = %v, want ErrClosed", err)
	}
	if _, err := busy.wait(t); !errors.Is(err, ErrClosed) {
		t.Errorf("busy: err = %v, want ErrClosed", err)
	}
	for _, v := range []*registry.Version{a, b, version("new", 1, nil)} {
		if _, err := d.Invoke(ctx, v, "late", nil); !errors.Is(err, ErrClosed) {
			t.Errorf("Invoke %s after Close: err = %v, want ErrClosed", v.Key(), err)
		}
	}
	starts := f.startCount()
	d.FunctionChanged("warm", version("warm", 1, scale(2, 5, 0)))
	if got := d.Stats(); len(got) != 0 {
		t.Errorf("Stats after Close = %+v", got)
	}
	if err := d.Close(cctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n := f.startCount(); n != starts {
		t.Errorf("%d instances started after Close", n-starts)
	}
}

func TestCloseEndsStartsInProgress(t *testing.T) {
	f := newFleet()
	f.onStart = func(ctx context.Context, _ int, _ *registry.Version) error {
		<-ctx.Done()
		return ctx.Err()
	}
	d := newDispatcher(t, Config{MaxQueueWait: time.Minute}, f)
	w := goInvoke(context.Background(), d, version("f", 1, nil), "w")
	eventually(t, "start begun", func() bool { return f.startCount() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := w.wait(t); !errors.Is(err, ErrClosed) {
		t.Errorf("waiter: err = %v, want ErrClosed", err)
	}
}

func TestCloseGivesUpAtItsDeadline(t *testing.T) {
	f := newFleet()
	unblock := make(chan struct{})
	f.onStart = func(context.Context, int, *registry.Version) error {
		<-unblock // a start that ignores its context
		return nil
	}
	d := newDispatcher(t, Config{MaxQueueWait: time.Minute}, f)
	w := goInvoke(context.Background(), d, version("f", 1, nil), "w")
	eventually(t, "start begun", func() bool { return f.startCount() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := d.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want its context's deadline", err)
	}
	if _, err := w.wait(t); !errors.Is(err, ErrClosed) {
		t.Errorf("waiter: err = %v, want ErrClosed", err)
	}
	// The instance that comes up after Close is stopped, not kept.
	close(unblock)
	eventually(t, "late instance stopped", func() bool {
		ins := f.instances()
		return len(ins) == 1 && ins[0].stops.Load() > 0 && f.liveCount() == 0
	})
}

func TestStats(t *testing.T) {
	f := newFleet()
	startGate := make(chan struct{})
	f.onStart = func(ctx context.Context, n int, _ *registry.Version) error {
		if n == 1 {
			select {
			case <-startGate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	d := newDispatcher(t, Config{MaxQueueWait: time.Minute}, f)
	v1 := version("f", 1, scale(0, 1, 0))
	ctx := context.Background()
	check := func(what string, want Stats) {
		t.Helper()
		eventually(t, fmt.Sprintf("%s: stats %+v", what, want), func() bool {
			got, _ := poolStats(d, want.Function, want.Version)
			return got == want
		})
	}

	f.gates.hold("a")
	a := goInvoke(ctx, d, v1, "a")
	check("starting", Stats{Function: "f", Version: 1, Instances: 1, Starting: 1, Queued: 1})
	b := goInvoke(ctx, d, v1, "b")
	check("two waiting on one start", Stats{Function: "f", Version: 1, Instances: 1, Starting: 1, Queued: 2})
	close(startGate)
	check("a running, b queued", Stats{Function: "f", Version: 1, Instances: 1, Queued: 1})
	f.gates.open("a")
	for _, c := range []*call{a, b} {
		if _, err := c.wait(t); err != nil {
			t.Fatal(err)
		}
	}
	check("idle", Stats{Function: "f", Version: 1, Instances: 1, Idle: 1})

	if _, err := d.Invoke(ctx, version("f", 2, nil), "c", nil); err != nil {
		t.Fatal(err)
	}
	got := d.Stats()
	slices.SortFunc(got, func(x, y Stats) int { return x.Version - y.Version })
	want := []Stats{
		{Function: "f", Version: 1, Instances: 1, Idle: 1},
		{Function: "f", Version: 2, Instances: 1, Idle: 1},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

// A pool the janitor forgets must not take instances afterwards, even from
// an invocation that looked it up just before: they would escape the
// janitor, Stats and Close.
func TestForgottenPoolTakesNoInstances(t *testing.T) {
	f := newFleet()
	d := New(Config{MaxQueueWait: time.Minute}, f.starter(), discardLog)
	v := version("f", 1, nil)
	p, err := d.pool(v) // an Invoke has looked the pool up ...
	if err != nil {
		t.Fatal(err)
	}
	d.reap(time.Now()) // ... when the janitor forgets it, empty
	if _, ok := poolStats(d, "f", 1); ok {
		t.Fatal("empty pool not forgotten")
	}
	s, _, err := p.acquire(context.Background(), time.Second) // ... and goes on
	if err == nil {
		p.release(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.liveCount(); n != 0 {
		t.Errorf("%d instances left running after Close", n)
	}
}

// Invocations racing the janitor, which forgets pools as soon as they are
// empty, and Close: every instance ends stopped.
func TestInvokeRacingJanitorAndClose(t *testing.T) {
	f := newFleet()
	f.onInvoke = func(_ context.Context, _ *fakeInst, inv *runtime.Invocation, _ bool) (*runtime.Result, error) {
		if rand.IntN(4) == 0 {
			time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		}
		return &runtime.Result{Payload: inv.Payload}, nil
	}
	var closed, lateStart atomic.Bool
	f.onStart = func(context.Context, int, *registry.Version) error {
		if closed.Load() {
			lateStart.Store(true)
		}
		return nil
	}
	d := New(Config{MaxQueue: 100, MaxQueueWait: testTimeout, ReapInterval: time.Millisecond}, f.starter(), discardLog)
	d.Start()
	v := version("f", 1, scale(0, 4, time.Nanosecond))
	var wg sync.WaitGroup
	var (
		unexpected atomic.Value
		closing    atomic.Bool
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				_, err := d.Invoke(context.Background(), v, fmt.Sprintf("w%d-%d", w, i), nil)
				if closing.Load() && (errors.Is(err, ErrClosed) || errors.Is(err, runtime.ErrStopped)) {
					return
				}
				if err != nil {
					unexpected.Store(fmt.Errorf("closing=%v: %w", closing.Load(), err))
					return
				}
				if i%4 == 0 {
					time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
				}
			}
		}()
	}
	eventually(t, "some churn", func() bool { return f.startCount() >= 30 })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	closing.Store(true)
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	closed.Store(true)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("invokers did not stop")
	}
	if err := unexpected.Load(); err != nil {
		t.Errorf("unexpected error: %v", err)
	}
	if n := f.liveCount(); n != 0 {
		t.Errorf("%d instances left running after Close", n)
	}
	if lateStart.Load() {
		t.Error("an instance was started after Close returned")
	}
	f.checkNoOverlap(t)
}

// Close waits for a start that was reserved before the pool closed but had
// not begun yet, so no Start call outlives Close.
func TestCloseWaitsForReservedStart(t *testing.T) {
	f := newFleet()
	var closed, lateStart atomic.Bool
	f.onStart = func(context.Context, int, *registry.Version) error {
		if closed.Load() {
			lateStart.Store(true)
		}
		return nil
	}
	d := New(Config{}, f.starter(), discardLog)
	p, err := d.pool(version("f", 1, nil))
	if err != nil {
		t.Fatal(err)
	}
	// An acquire reserves a start under the pool's lock, then lets go of it.
	p.mu.Lock()
	p.waiters = append(p.waiters, &waiter{ch: make(chan grant, 1)})
	reserved := p.startLocked()
	p.mu.Unlock()
	if !reserved {
		t.Fatal("no start reserved")
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	closeDone := make(chan error, 1)
	go func() {
		err := d.Close(ctx)
		closed.Store(true)
		closeDone <- err
	}()
	select {
	case err := <-closeDone:
		p.goStart()
		t.Fatalf("Close returned (%v) before a reserved start ran", err)
	case <-time.After(20 * time.Millisecond):
	}
	p.goStart() // the acquire goes on
	select {
	case err := <-closeDone:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Close did not return")
	}
	if lateStart.Load() {
		t.Error("Start called after Close returned")
	}
	if n := f.liveCount(); n != 0 {
		t.Errorf("%d instances running after Close", n)
	}
}

func TestStartBackoff(t *testing.T) {
	for _, c := range []struct {
		n    int
		want time.Duration
	}{
		{0, 0}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second},
		{6, 32 * time.Second}, {7, time.Minute}, {8, time.Minute}, {1000, time.Minute},
	} {
		if got := startBackoff(c.n); got != c.want {
			t.Errorf("startBackoff(%d) = %s, want %s", c.n, got, c.want)
		}
	}
}

// A function whose init always fails is not restarted on every janitor tick
// to keep scale.min warm.
func TestFailingWarmStartsBackOff(t *testing.T) {
	f := newFleet()
	f.onStart = func(ctx context.Context, n int, v *registry.Version) error {
		return errors.New("init keeps failing")
	}
	d := newDispatcher(t, Config{ReapInterval: 10 * time.Millisecond}, f)
	d.Start()
	d.FunctionChanged("broken", version("broken", 1, scale(1, 5, time.Minute)))
	time.Sleep(500 * time.Millisecond) // 50 janitor ticks
	f.mu.Lock()
	starts := f.starts
	f.mu.Unlock()
	if starts < 1 || starts > 2 {
		t.Errorf("%d starts in 500ms of 10ms ticks; want 1 (then a 1s back-off)", starts)
	}
}

// routingStarter is the fleet's starter with Routing: the versions listed
// in routed are the ones something routes to.
type routingStarter struct {
	*fakeStarter
	mu     sync.Mutex
	routed map[int]bool
}

var _ Routing = (*routingStarter)(nil)

func (r *routingStarter) Routed(v *registry.Version) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.routed[v.Number]
}

func (r *routingStarter) set(versions ...int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routed = map[int]bool{}
	for _, n := range versions {
		r.routed[n] = true
	}
}

// TestUnroutedVersionDrainsAtOnce: a version that is neither current nor
// named by an alias stops its idle instances when it stops being routed,
// long before scale.idle, and its busy ones when they finish; an explicit
// call to it still works but keeps nothing; an alias keeps it warm.
func TestUnroutedVersionDrainsAtOnce(t *testing.T) {
	f := newFleet()
	rs := &routingStarter{fakeStarter: f.starter()}
	rs.set(1)
	d := New(Config{}, rs, discardLog) // no janitor: nothing waits for scale.idle
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	v1 := version("f", 1, scale(0, 10, time.Hour))
	v2 := version("f", 2, scale(0, 10, time.Hour))
	d.FunctionChanged("f", v1)
	makeIdle(t, d, f, v1, 3) // f-1-i1..i3
	// Demand of three, so the autoscaler would keep three.
	d.reap(time.Now())
	if st, _ := poolStats(d, "f", 1); st.Desired < 3 {
		t.Fatalf("v1 before the change: %+v, want the autoscaler to want 3", st)
	}
	f.gates.hold("busy")
	busy := goInvoke(context.Background(), d, v1, "busy") // on f-1-i3, the warmest
	eventually(t, "v1 busy", func() bool { return f.runningCount() == 1 })

	rs.set(2)
	d.FunctionChanged("f", v2)
	eventually(t, "v1's idle instances stopped", func() bool {
		return f.get("f-1-i1").stops.Load() > 0 && f.get("f-1-i2").stops.Load() > 0
	})
	if f.get("f-1-i3").stops.Load() != 0 {
		t.Fatal("the busy instance was stopped under its invocation")
	}
	f.gates.open("busy")
	if out, err := busy.wait(t); err != nil || out.Instance != "f-1-i3" {
		t.Fatalf("busy: %+v, %v", out, err)
	}
	eventually(t, "the busy instance stopped once done", func() bool { return f.get("f-1-i3").stops.Load() > 0 })
	for range 3 {
		d.reap(time.Now()) // the autoscaler wants nothing of v1 now
	}
	if st, _ := poolStats(d, "f", 1); st.Instances != 0 || st.Desired != 0 {
		t.Errorf("v1 after the change: %+v, want nothing", st)
	}

	// v2 serves and stays warm.
	if out, err := d.Invoke(context.Background(), v2, "new", nil); err != nil || out.Instance != "f-2-i4" {
		t.Fatalf("v2: %+v, %v", out, err)
	}
	if st, _ := poolStats(d, "f", 2); st.Idle != 1 {
		t.Errorf("v2: %+v, want its instance idle", st)
	}
	// name@1 still runs, on a new instance that stops when done.
	if out, err := d.Invoke(context.Background(), v1, "explicit", nil); err != nil || out.Instance != "f-1-i5" || !out.Cold {
		t.Fatalf("explicit v1: %+v, %v", out, err)
	}
	if st, _ := poolStats(d, "f", 1); st.Instances != 0 {
		t.Errorf("v1 after an explicit call: %+v, want nothing kept", st)
	}

	// An alias on v1 keeps its instances.
	rs.set(2, 1)
	d.RoutesChanged("f")
	if out, err := d.Invoke(context.Background(), v1, "aliased", nil); err != nil || out.Instance != "f-1-i6" {
		t.Fatalf("aliased v1: %+v, %v", out, err)
	}
	if st, _ := poolStats(d, "f", 1); st.Instances != 1 || st.Idle != 1 {
		t.Errorf("aliased v1: %+v, want its instance kept idle", st)
	}
	// The alias goes: v1 drains again.
	rs.set(2)
	d.RoutesChanged("f")
	eventually(t, "v1 drained when its alias went", func() bool { return f.get("f-1-i6").stops.Load() > 0 })
	if st, _ := poolStats(d, "f", 2); st.Instances != 1 || f.get("f-2-i4").stops.Load() != 0 {
		t.Errorf("v2 touched: %+v", st)
	}
}
