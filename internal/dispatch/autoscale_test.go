package dispatch

import (
	"testing"
	"time"
)

func TestPolicyDecide(t *testing.T) {
	p := DefaultPolicy()
	now := time.Unix(1_000_000, 0)
	inPanic := ScaleState{PanicUntil: now.Add(30 * time.Second)}
	cases := []struct {
		name      string
		in        ScaleInput
		st        ScaleState
		want      int
		wantPanic bool
	}{
		{"idle stays at zero", ScaleInput{Now: now, Max: 10}, ScaleState{}, 0, false},
		{"idle keeps min", ScaleInput{Now: now, Min: 2, Max: 10, Instances: 2}, ScaleState{}, 2, false},
		{"steady 4", ScaleInput{Now: now, Stable: 4, Panic: 4, Instances: 4, Max: 10}, ScaleState{}, 4, false},
		{"steady 3.2 rounds up", ScaleInput{Now: now, Stable: 3.2, Panic: 3.2, Instances: 4, Max: 10}, ScaleState{}, 4, false},
		{"first traffic from zero panics", ScaleInput{Now: now, Stable: 0.1, Panic: 1, Instances: 0, Max: 10}, ScaleState{}, 1, true},
		{"burst doubles: panic, scale to the short window", ScaleInput{Now: now, Stable: 2, Panic: 8, Instances: 3, Max: 20}, ScaleState{}, 8, true},
		{"burst capped by max", ScaleInput{Now: now, Stable: 2, Panic: 40, Instances: 3, Max: 10}, ScaleState{}, 10, true},
		{"growth below the threshold: no panic", ScaleInput{Now: now, Stable: 3, Panic: 7, Instances: 4, Max: 10}, ScaleState{}, 3, false},
		{"in panic never scales down", ScaleInput{Now: now, Stable: 1, Panic: 1, Instances: 8, Max: 10}, inPanic, 8, true},
		{"panic over: follow the stable window down", ScaleInput{Now: now.Add(31 * time.Second), Stable: 1.5, Panic: 1, Instances: 8, Max: 10}, inPanic, 2, false},
		{"scale to zero when quiet", ScaleInput{Now: now, Stable: 0, Panic: 0, Instances: 3, Max: 10}, ScaleState{}, 0, false},
		{"min wins over zero", ScaleInput{Now: now, Stable: 0, Panic: 0, Instances: 3, Min: 1, Max: 10}, ScaleState{}, 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, st := p.Decide(c.in, c.st)
			if got != c.want {
				t.Errorf("desired = %d, want %d", got, c.want)
			}
			if panicking := c.in.Now.Before(st.PanicUntil); panicking != c.wantPanic {
				t.Errorf("panic = %v, want %v", panicking, c.wantPanic)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	w := newWindow(4)
	if w.avg(4) != 0 {
		t.Fatal("empty window not 0")
	}
	for _, v := range []float64{1, 2, 3, 4, 5, 6} {
		w.add(v)
	}
	if got := w.avg(4); got != 4.5 { // 3,4,5,6
		t.Errorf("avg(4) = %v", got)
	}
	if got := w.avg(2); got != 5.5 {
		t.Errorf("avg(2) = %v", got)
	}
	if got := w.avg(10); got != 4.5 {
		t.Errorf("avg(10) = %v (window holds 4)", got)
	}
}

// The janitor applies the policy: a burst it sampled starts instances ahead
// of the queue, and when nothing arrives for scale.idle the pool goes back
// to scale.min.
func TestJanitorScalesAheadAndBackToZero(t *testing.T) {
	f := newFleet()
	d := newDispatcher(t, Config{}, f)
	v := version("f", 1, scale(0, 10, time.Minute))
	makeIdle(t, d, f, v, 1)
	p, err := d.pool(v)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.peak = 6 // six invocations were in flight at once since the last tick
	p.lastActive = time.Now()
	p.mu.Unlock()
	d.reap(time.Now())
	eventually(t, "6 instances started ahead of the burst", func() bool {
		st, _ := poolStats(d, "f", 1)
		return st.Instances == 6 && st.Idle == 6 && st.Desired == 6
	})
	// Panic mode holds them while the burst is in the stable window.
	d.reap(time.Now().Add(10 * time.Minute / 60))
	if st, _ := poolStats(d, "f", 1); st.Instances != 6 {
		t.Fatalf("scaled down during panic: %+v", st)
	}
	// Nothing for the idle window: back to zero.
	later := time.Now().Add(2 * time.Minute)
	d.reap(later)
	eventually(t, "scale to zero after the idle window", func() bool {
		st, _ := poolStats(d, "f", 1)
		return st.Instances == 0
	})
}
