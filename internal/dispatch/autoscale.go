package dispatch

import (
	"math"
	"time"
)

// The autoscaling policy, as Knative's autoscaler does it: the desired
// number of instances follows the concurrency observed over a stable window
// (60 s); when the concurrency over a short panic window (6 s) reaches twice
// what the instances can take, the policy panics: it scales to the panic
// window's figure at once and does not scale down until the stable window
// has passed without a new panic. Samples are counted in instances' worth
// (demand divided by the function's concurrency), so an instance's capacity
// is 1, used to TargetUtilization (1 by default: no standing headroom;
// panic mode is what starts instances ahead of a burst).
//
// Decide is a pure function of its input: the dispatcher's janitor feeds it
// samples and applies its answer (starting instances ahead of a burst; the
// idle reaper never stops instances below it).

// ScaleInput is what Decide looks at.
type ScaleInput struct {
	Now       time.Time
	Stable    float64 // average concurrency (running + waiting) over the stable window
	Panic     float64 // average over the panic window
	Instances int     // started and starting
	Min, Max  int     // scale.min, scale.max
}

// ScaleState is what Decide remembers between calls.
type ScaleState struct {
	PanicUntil time.Time // in panic mode until then
}

// Policy tunes Decide.
type Policy struct {
	TargetUtilization float64       // of one instance; default 1
	PanicThreshold    float64       // panic when the panic window wants this × the instances; default 2
	StableWindow      time.Duration // default 60 s
	PanicWindow       time.Duration // default 6 s
}

// DefaultPolicy returns the defaults.
func DefaultPolicy() Policy {
	return Policy{TargetUtilization: 1, PanicThreshold: 2, StableWindow: 60 * time.Second, PanicWindow: 6 * time.Second}
}

// Decide returns the desired number of instances and the new state.
func (p Policy) Decide(in ScaleInput, st ScaleState) (int, ScaleState) {
	want := func(c float64) int {
		if c <= 0 {
			return 0
		}
		return int(math.Ceil(c/p.TargetUtilization - 1e-9))
	}
	stable, panicWant := want(in.Stable), want(in.Panic)
	if in.Instances == 0 && panicWant > 0 || float64(panicWant) >= p.PanicThreshold*float64(in.Instances) && panicWant > in.Instances {
		st.PanicUntil = in.Now.Add(p.StableWindow)
	}
	desired := stable
	if in.Now.Before(st.PanicUntil) {
		// Panic: follow the short window up, never scale down.
		desired = max(in.Instances, panicWant, stable)
	}
	return min(max(desired, in.Min), in.Max), st
}

// window keeps one concurrency sample per janitor tick.
type window struct {
	samples []float64 // ring
	next    int
	filled  int
}

func newWindow(n int) *window { return &window{samples: make([]float64, max(n, 1))} }

func (w *window) add(v float64) {
	w.samples[w.next] = v
	w.next = (w.next + 1) % len(w.samples)
	w.filled = min(w.filled+1, len(w.samples))
}

// avg is the average of the last n samples (fewer if fewer were taken).
func (w *window) avg(n int) float64 {
	n = min(n, w.filled)
	if n == 0 {
		return 0
	}
	sum := 0.0
	for k := 1; k <= n; k++ {
		sum += w.samples[(w.next-k+len(w.samples))%len(w.samples)]
	}
	return sum / float64(n)
}
