package dispatch

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/manifest"
	"github.com/ternhq/tern/internal/runtime"
)

func memory(mb int) func(m *manifest.Manifest) {
	return func(m *manifest.Manifest) { m.Memory = mb }
}

func both(edits ...func(m *manifest.Manifest)) func(m *manifest.Manifest) {
	return func(m *manifest.Manifest) {
		for _, e := range edits {
			e(m)
		}
	}
}

// The node's memory cap refuses what would overcommit: with 512 MB for
// functions, two 256 MB instances run and a third invocation waits, then
// is throttled; a function larger than the cap is throttled at once.
func TestMemoryCapRefusesOvercommit(t *testing.T) {
	f := newFleet()
	d := newDispatcher(t, Config{MaxMemoryMB: 512, MaxQueueWait: 300 * time.Millisecond}, f)
	d.Start()
	v := version("f", 1, both(scale(0, 10, time.Minute), memory(256)))
	f.gates.hold("a", "b", "c")
	a, b := goInvoke(context.Background(), d, v, "a"), goInvoke(context.Background(), d, v, "b")
	eventually(t, "two running", func() bool { return f.runningCount() == 2 })
	c := goInvoke(context.Background(), d, v, "c")
	if _, err := c.wait(t); !errors.Is(err, ErrThrottled) {
		t.Fatalf("third 256 MB instance: err %v, want ErrThrottled", err)
	}
	if u := d.Usage(); u.MemoryMB != 512 || u.Instances != 2 {
		t.Errorf("usage %+v", u)
	}
	if f.startCount() != 2 {
		t.Errorf("%d instances started under a 512 MB cap of 256 MB functions", f.startCount())
	}
	// At once: not after waiting in the queue as c did.
	big := version("big", 1, memory(1024))
	start := time.Now()
	if _, err := d.Invoke(context.Background(), big, "x", nil); !errors.Is(err, ErrThrottled) || time.Since(start) >= d.cfg.MaxQueueWait {
		t.Errorf("a function over the cap: %v after %s (the queue wait is %s)", err, time.Since(start), d.cfg.MaxQueueWait)
	}
	f.gates.open("a")
	f.gates.open("b")
	a.wait(t)
	b.wait(t)
}

// When the node is full of idle instances, a function that needs one gets
// room by evicting the least recently used idle instance elsewhere.
func TestFullNodeEvictsIdle(t *testing.T) {
	f := newFleet()
	d := newDispatcher(t, Config{MaxInstances: 2}, f)
	d.Start()
	a := version("a", 1, scale(0, 10, time.Hour))
	makeIdle(t, d, f, a, 2)
	b := version("b", 1, scale(0, 10, time.Hour))
	out, err := d.Invoke(context.Background(), b, "b1", nil)
	if err != nil || !out.Cold {
		t.Fatalf("b: %+v %v", out, err)
	}
	eventually(t, "one of a's idle instances stopped", func() bool {
		st, _ := poolStats(d, "a", 1)
		return st.Instances == 1
	})
	if u := d.Usage(); u.Instances != 2 {
		t.Errorf("usage %+v, want 2 instances", u)
	}
}

// A flood on one function leaves another's latency bounded: under a full
// node, the flooded function hands instances back so the other gets its
// turn, instead of serving its whole queue first.
func TestFairnessUnderFlood(t *testing.T) {
	f := newFleet()
	var floodDone atomic.Int64
	f.onInvoke = func(ctx context.Context, in *fakeInst, inv *runtime.Invocation, cold bool) (*runtime.Result, error) {
		time.Sleep(50 * time.Millisecond) // every invocation takes 50 ms
		if inv.RequestID != "o" {
			floodDone.Add(1)
		}
		return &runtime.Result{Payload: inv.Payload}, nil
	}
	d := newDispatcher(t, Config{MaxInstances: 2, MaxQueue: 100, MaxQueueWait: 10 * time.Second}, f)
	d.Start()
	flood := version("flood", 1, scale(0, 10, time.Hour))
	var calls []*call
	for i := range 40 {
		calls = append(calls, goInvoke(context.Background(), d, flood, "f"+string(rune('a'+i%26))+string(rune('a'+i/26))))
	}
	eventually(t, "the flood fills the node", func() bool { return d.Usage().Instances == 2 })
	other := version("other", 1, scale(0, 10, time.Hour))
	start := time.Now()
	out, err := d.Invoke(context.Background(), other, "o", nil)
	took, before := time.Since(start), floodDone.Load()
	if err != nil || out == nil {
		t.Fatalf("other: %v", err)
	}
	// Served in turn, the other function waits for a couple of the flood's
	// invocations; behind the flood's queue, for all 40. Counted, not timed:
	// a busy machine slows both alike.
	t.Logf("the other function waited %s, %d of the flood's 40 invocations", took, before)
	if before >= 20 {
		t.Errorf("the other function waited for %d of the flood's 40 invocations (%s)", before, took)
	}
	for _, c := range calls {
		if _, err := c.wait(t); err != nil {
			t.Errorf("flood call: %v", err)
		}
	}
}

// scale.reserved caps a function's instances across its versions.
func TestReservedCapsFunction(t *testing.T) {
	f := newFleet()
	d := newDispatcher(t, Config{MaxQueueWait: 2 * time.Second}, f)
	d.Start()
	v := version("r", 1, func(m *manifest.Manifest) { m.Scale.Max = 10; m.Scale.Reserved = 2 })
	f.gates.hold("a", "b", "c")
	calls := []*call{goInvoke(context.Background(), d, v, "a"), goInvoke(context.Background(), d, v, "b"), goInvoke(context.Background(), d, v, "c")}
	eventually(t, "two running", func() bool { return f.runningCount() == 2 })
	time.Sleep(100 * time.Millisecond)
	if n := f.startCount(); n != 2 {
		t.Fatalf("%d instances started with scale.reserved 2", n)
	}
	for _, id := range []string{"a", "b", "c"} {
		f.gates.open(id)
	}
	for _, c := range calls {
		if _, err := c.wait(t); err != nil {
			t.Errorf("%s: %v", c.id, err)
		}
	}
	if n := f.startCount(); n != 2 {
		t.Errorf("%d instances started in all; the third call should reuse one", n)
	}
}

// With concurrency N, one instance takes N invocations at once; the
// (N+1)th starts another.
func TestConcurrencyPerInstance(t *testing.T) {
	f := newFleet()
	d := newDispatcher(t, Config{}, f)
	v := version("c", 1, func(m *manifest.Manifest) { m.Concurrency = 4; m.Scale.Max = 10 })
	ids := []string{"a", "b", "c", "d"}
	f.gates.hold(append(ids, "e")...)
	var calls []*call
	for _, id := range ids {
		calls = append(calls, goInvoke(context.Background(), d, v, id))
	}
	eventually(t, "four running", func() bool { return f.runningCount() == 4 })
	if n := f.startCount(); n != 1 {
		t.Fatalf("%d instances for 4 invocations at concurrency 4", n)
	}
	e := goInvoke(context.Background(), d, v, "e")
	eventually(t, "the fifth running", func() bool { return f.runningCount() == 5 })
	if n := f.startCount(); n != 2 {
		t.Fatalf("%d instances for 5 invocations at concurrency 4", n)
	}
	for _, id := range append(ids, "e") {
		f.gates.open(id)
	}
	cold := 0
	for _, c := range append(calls, e) {
		out, err := c.wait(t)
		if err != nil {
			t.Fatal(err)
		}
		if out.Cold {
			cold++
		}
	}
	if cold != 2 {
		t.Errorf("%d cold invocations, want 2 (one per instance)", cold)
	}
	// Both instances go idle; the next invocations reuse them.
	eventually(t, "both idle", func() bool { st, _ := poolStats(d, "c", 1); return st.Idle == 2 })
}

// Deleting a function gives back the room its idle instances held.
func TestDeleteGivesCapacityBack(t *testing.T) {
	f := newFleet()
	d := newDispatcher(t, Config{MaxInstances: 2, MaxMemoryMB: 1024}, f)
	d.Start()
	a := version("a", 1, scale(0, 10, time.Hour))
	makeIdle(t, d, f, a, 2)
	if u := d.Usage(); u.Instances != 2 {
		t.Fatalf("usage %+v", u)
	}
	d.FunctionChanged("a", nil)
	if u := d.Usage(); u.Instances != 0 || u.MemoryMB != 0 {
		t.Fatalf("after deleting a: usage %+v, want empty", u)
	}
	b := version("b", 1, scale(0, 10, time.Hour))
	if _, err := d.Invoke(context.Background(), b, "b", nil); err != nil {
		t.Fatalf("b after a was deleted: %v", err)
	}
}

// A new version of a function at its reservation gets room by evicting the
// old version's idle instances, not a 429.
func TestReservedNewVersionEvictsOldIdle(t *testing.T) {
	f := newFleet()
	d := newDispatcher(t, Config{MaxQueueWait: 2 * time.Second}, f)
	d.Start()
	res := func(m *manifest.Manifest) {
		m.Scale.Max = 10
		m.Scale.Reserved = 2
		m.Scale.Idle = manifest.Duration(time.Hour)
	}
	v1 := version("r", 1, res)
	makeIdle(t, d, f, v1, 2)
	v2 := version("r", 2, res)
	d.FunctionChanged("r", v2)
	if _, err := d.Invoke(context.Background(), v2, "new", nil); err != nil {
		t.Fatalf("v2 at the reservation: %v", err)
	}
	st, _ := poolStats(d, "r", 1)
	if st.Instances > 1 {
		t.Errorf("v1 kept %d instances; one should have made room", st.Instances)
	}
}

// A pool waiting on a node full of busy instances does not make the janitor
// spin.
func TestJanitorDoesNotSpinWhenFull(t *testing.T) {
	f := newFleet()
	d := newDispatcher(t, Config{MaxInstances: 1, MaxQueueWait: 2 * time.Second}, f)
	d.Start()
	busy := version("busy", 1, scale(0, 10, time.Hour))
	f.gates.hold("hold")
	c := goInvoke(context.Background(), d, busy, "hold")
	eventually(t, "running", func() bool { return f.runningCount() == 1 })
	other := version("other", 1, scale(0, 10, time.Hour))
	o := goInvoke(context.Background(), d, other, "o")
	var before, after syscallRusage
	getRusage(&before)
	time.Sleep(500 * time.Millisecond)
	getRusage(&after)
	if cpu := after.cpu() - before.cpu(); cpu > 150*time.Millisecond {
		t.Errorf("%s of CPU in 500 ms while waiting for room", cpu)
	}
	f.gates.open("hold")
	c.wait(t)
	if _, err := o.wait(t); err != nil {
		t.Errorf("other: %v", err)
	}
}
