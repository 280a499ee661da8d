package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/manifest"
	"github.com/ternhq/tern/internal/registry"
	"github.com/ternhq/tern/internal/runtime"
)

// testTimeout bounds every wait in these tests; nothing should come near it.
const testTimeout = 10 * time.Second

// fakeInstance is an Instance made of function fields.
type fakeInstance struct {
	InvokeFunc       func(ctx context.Context, inv *runtime.Invocation, cold bool) (*runtime.Result, error)
	StopFunc         func()
	DoneFunc         func() <-chan struct{}
	InitDurationFunc func() time.Duration
	IDFunc           func() string
}

var _ Instance = (*fakeInstance)(nil)

func (f *fakeInstance) Invoke(ctx context.Context, inv *runtime.Invocation, cold bool) (*runtime.Result, error) {
	return f.InvokeFunc(ctx, inv, cold)
}
func (f *fakeInstance) Stop()                       { f.StopFunc() }
func (f *fakeInstance) Done() <-chan struct{}       { return f.DoneFunc() }
func (f *fakeInstance) InitDuration() time.Duration { return f.InitDurationFunc() }
func (f *fakeInstance) ID() string                  { return f.IDFunc() }

// fakeStarter is a Starter made of a function field.
type fakeStarter struct {
	StartFunc func(ctx context.Context, v *registry.Version) (Instance, error)
}

var _ Starter = (*fakeStarter)(nil)

func (f *fakeStarter) Start(ctx context.Context, v *registry.Version) (Instance, error) {
	return f.StartFunc(ctx, v)
}

// fleet starts fake instances that behave like real ones (Stop ends a
// running invocation with runtime.ErrStopped and closes Done; Stop is
// idempotent) and records what happened to them.
type fleet struct {
	// onStart, if set, runs for the n-th Start call (1-based) before an
	// instance exists; an error fails that start.
	onStart func(ctx context.Context, n int, v *registry.Version) error
	// onInvoke, if set, serves invocations; by default the payload is
	// echoed, unless gates holds the request.
	onInvoke func(ctx context.Context, in *fakeInst, inv *runtime.Invocation, cold bool) (*runtime.Result, error)
	gates    gates

	mu      sync.Mutex
	insts   []*fakeInst
	byID    map[string]*fakeInst
	starts  int // Start calls, failed ones included
	live    int // started and neither stopped nor dead
	maxLive int
	running int      // invocations in progress
	order   []string // request IDs in the order invocations began
	overlap string   // an instance that ran two invocations at once
}

// fakeInst is one instance the fleet started.
type fakeInst struct {
	*fakeInstance
	id      string
	v       *registry.Version
	done    chan struct{}
	once    sync.Once
	stops   atomic.Int32 // Stop calls
	busy    atomic.Int32
	invokes atomic.Int32
}

const fakeInit = 7 * time.Millisecond

func newFleet() *fleet { return &fleet{byID: map[string]*fakeInst{}} }

func (f *fleet) starter() *fakeStarter { return &fakeStarter{StartFunc: f.start} }

func (f *fleet) start(ctx context.Context, v *registry.Version) (Instance, error) {
	f.mu.Lock()
	f.starts++
	n := f.starts
	hook := f.onStart
	f.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, n, v); err != nil {
			return nil, err
		}
	}
	in := &fakeInst{id: fmt.Sprintf("%s-%d-i%d", v.Function, v.Number, n), v: v, done: make(chan struct{})}
	in.fakeInstance = &fakeInstance{
		InvokeFunc: func(ctx context.Context, inv *runtime.Invocation, cold bool) (*runtime.Result, error) {
			return f.invoke(ctx, in, inv, cold)
		},
		StopFunc:         func() { in.stops.Add(1); f.end(in) },
		DoneFunc:         func() <-chan struct{} { return in.done },
		InitDurationFunc: func() time.Duration { return fakeInit },
		IDFunc:           func() string { return in.id },
	}
	f.mu.Lock()
	f.insts = append(f.insts, in)
	f.byID[in.id] = in
	f.live++
	f.maxLive = max(f.maxLive, f.live)
	f.mu.Unlock()
	return in.fakeInstance, nil
}

// end closes in's Done once: it was stopped or it died.
func (f *fleet) end(in *fakeInst) {
	in.once.Do(func() {
		close(in.done)
		f.mu.Lock()
		f.live--
		f.mu.Unlock()
	})
}

// kill makes in die on its own (no Stop call).
func (f *fleet) kill(in *fakeInst) { f.end(in) }

func (f *fleet) invoke(ctx context.Context, in *fakeInst, inv *runtime.Invocation, cold bool) (*runtime.Result, error) {
	select {
	case <-in.done:
		if in.stops.Load() > 0 {
			return nil, runtime.ErrStopped
		}
		return nil, fmt.Errorf("%w: exited", runtime.ErrCrashed)
	default:
	}
	in.invokes.Add(1)
	f.mu.Lock()
	f.running++
	f.order = append(f.order, inv.RequestID)
	if in.busy.Add(1) > 1 {
		f.overlap = in.id
	}
	hook := f.onInvoke
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		in.busy.Add(-1)
		f.running--
		f.mu.Unlock()
	}()
	if hook != nil {
		return hook(ctx, in, inv, cold)
	}
	if g := f.gates.held(inv.RequestID); g != nil {
		select {
		case <-g:
		case <-in.done:
			return nil, runtime.ErrStopped
		case <-time.After(testTimeout):
			return nil, errors.New("fake: invocation " + inv.RequestID + " never released")
		}
	}
	return &runtime.Result{Payload: inv.Payload}, nil
}

func (f *fleet) get(id string) *fakeInst {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byID[id]
}

func (f *fleet) startCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.starts
}

func (f *fleet) liveCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live
}

func (f *fleet) runningCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running
}

func (f *fleet) instances() []*fakeInst {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fakeInst(nil), f.insts...)
}

func (f *fleet) invokeOrder() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.order...)
}

// checkNoOverlap fails t if an instance ever ran two invocations at once.
func (f *fleet) checkNoOverlap(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.overlap != "" {
		t.Errorf("instance %s ran two invocations at once", f.overlap)
	}
}

// gates holds invocations by request ID until opened.
type gates struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// hold makes invocations with these request IDs wait for open.
func (g *gates) hold(ids ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[string]chan struct{}{}
	}
	for _, id := range ids {
		if g.m[id] == nil {
			g.m[id] = make(chan struct{})
		}
	}
}

func (g *gates) held(id string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.m[id]
}

// open releases the invocation held under id.
func (g *gates) open(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.m[id])
}

// call is an Invoke running in the background.
type call struct {
	id      string
	out     *Outcome
	err     error
	elapsed time.Duration
	done    chan struct{}
}

func goInvoke(ctx context.Context, d *Dispatcher, v *registry.Version, id string) *call {
	c := &call{id: id, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		begin := time.Now()
		c.out, c.err = d.Invoke(ctx, v, id, []byte(id))
		c.elapsed = time.Since(begin)
	}()
	return c
}

// wait returns the call's result, failing t if it does not end in time.
func (c *call) wait(t *testing.T) (*Outcome, error) {
	t.Helper()
	select {
	case <-c.done:
		return c.out, c.err
	case <-time.After(testTimeout):
		t.Fatalf("invocation %s did not return", c.id)
		return nil, nil
	}
}

// returned reports whether the call has ended.
func (c *call) returned() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// eventually polls cond until it holds, failing t after testTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// version returns a version of fn with the manifest defaults, then edit.
func version(fn string, n int, edit func(m *manifest.Manifest)) *registry.Version {
	m := manifest.Manifest{Name: fn, Runtime: "nodejs", Handler: "index.handler"}
	m.ApplyDefaults()
	if edit != nil {
		edit(&m)
	}
	return &registry.Version{Function: fn, Number: n, Manifest: m, Created: time.Now()}
}

func scale(minN, maxN int, idle time.Duration) func(m *manifest.Manifest) {
	return func(m *manifest.Manifest) {
		m.Scale.Min, m.Scale.Max = minN, maxN
		if idle > 0 {
			m.Scale.Idle = manifest.Duration(idle)
		}
	}
}

var discardLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// newDispatcher returns a dispatcher over f that is closed when t ends.
func newDispatcher(t *testing.T, cfg Config, f *fleet) *Dispatcher {
	t.Helper()
	d := New(cfg, f.starter(), discardLog)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

// poolStats returns the stats of fn's version n, if it has a pool.
func poolStats(d *Dispatcher, fn string, n int) (Stats, bool) {
	for _, s := range d.Stats() {
		if s.Function == fn && s.Version == n {
			return s, true
		}
	}
	return Stats{}, false
}

// queued reports how many invocations wait in fn's version n.
func queued(d *Dispatcher, fn string, n int) int {
	s, _ := poolStats(d, fn, n)
	return s.Queued
}

func idleCount(d *Dispatcher, fn string, n int) int {
	s, _ := poolStats(d, fn, n)
	return s.Idle
}
