package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ternhq/tern/internal/registry"
)

// slot is an instance as its pool tracks it. Its fields are guarded by the
// pool's lock.
type slot struct {
	inst     Instance
	used     bool // has served an invocation (else the next one is cold)
	lastUsed time.Time
	inflight int  // invocations running on it
	partial  bool // in pool.partial: busy, with room for more
	dead     bool // being discarded: never handed out again
}

// grant is what a waiter receives: a place on an instance, or the error of
// a start made on its behalf.
type grant struct {
	s    *slot
	cold bool
	err  error
}

// handoff is a grant to send once the pool's lock is released.
type handoff struct {
	w *waiter
	g grant
}

func send(hs []handoff) {
	for _, h := range hs {
		h.w.ch <- h.g
	}
}

type waiter struct{ ch chan grant } // capacity 1

// errRetired is what acquire returns from a pool the dispatcher forgot; the
// caller looks the version's pool up again.
var errRetired = errors.New("dispatch: pool retired")

// pool holds the instances of one function version.
type pool struct {
	d   *Dispatcher
	v   *registry.Version
	ctr *counters // the function's

	mu       sync.Mutex
	idle     []*slot // no invocation running; last in, first out
	partial  []*slot // running some, with room for more (concurrency > 1)
	running  int     // invocations running on the pool's instances
	all      map[*slot]struct{}
	total    int // started and starting
	starting int
	waiters  []*waiter // FIFO
	min      int
	closed   error // non-nil once closed: what waiters get
	// unrouted: neither the current version nor named by an alias, so
	// only explicit name@N calls reach it; an instance that has nothing
	// to run stops, and the autoscaler wants none.
	unrouted bool

	// Starts that failed in a row, and when ensureMin may try again: a
	// function whose init keeps failing is not restarted every tick.
	failures int
	retryAt  time.Time

	// Autoscaling: the highest demand (busy + waiting) seen since the
	// janitor's last sample, the samples (janitor only), the policy's state
	// and answer, and when an invocation last arrived.
	peak       int
	win        *window
	scale      ScaleState
	desired    int
	lastActive time.Time
}

// demandLocked is the invocations running or waiting now.
func (p *pool) demandLocked() int {
	return p.running + len(p.waiters)
}

// conc is how many invocations one instance runs at once.
func (p *pool) conc() int { return max(p.v.Manifest.Concurrency, 1) }

// takeLocked gives one invocation a place on s and reports whether it is
// the instance's first (a cold start).
func (p *pool) takeLocked(s *slot) bool {
	cold := !s.used
	s.used = true
	s.inflight++
	p.running++
	return cold
}

// placeLocked files s by its load: idle, partial, or (full) neither.
func (p *pool) placeLocked(s *slot) {
	switch {
	case s.inflight == 0 && p.unrouted:
		// Nothing routes here any more: stop rather than wait idle. The
		// pool is open (callers check), as stopAsync needs.
		p.unpartialLocked(s)
		p.forgetLocked(s)
		p.d.stopAsync(s.inst)
	case s.inflight == 0:
		p.unpartialLocked(s)
		s.lastUsed = time.Now()
		p.idle = append(p.idle, s)
		if p.d.cap.waiting() {
			p.d.kickAdmit() // an idle instance can be evicted for them
		}
	case s.inflight < p.conc():
		if !s.partial {
			s.partial = true
			p.partial = append(p.partial, s)
		}
	default:
		p.unpartialLocked(s)
	}
}

func (p *pool) unpartialLocked(s *slot) {
	if !s.partial {
		return
	}
	s.partial = false
	for i, x := range p.partial {
		if x == s {
			p.partial = append(p.partial[:i], p.partial[i+1:]...)
			return
		}
	}
}

// offerLocked gives s to waiters, as many as it has room for, then files
// it; the grants go out after the lock is released.
func (p *pool) offerLocked(s *slot) []handoff {
	var hs []handoff
	for len(p.waiters) > 0 && s.inflight < p.conc() {
		w := p.popWaiterLocked()
		hs = append(hs, handoff{w, grant{s: s, cold: p.takeLocked(s)}})
	}
	p.placeLocked(s)
	return hs
}

func (p *pool) notePeakLocked() {
	p.peak = max(p.peak, p.demandLocked())
	p.lastActive = time.Now()
}

// startBackoff is how long ensureMin waits after n failed starts in a row:
// 1s, 2s, 4s, ... up to a minute.
func startBackoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	if n > 7 {
		return time.Minute
	}
	return min(time.Second<<(n-1), time.Minute)
}

// newPool is called with d.mu held.
func newPool(d *Dispatcher, v *registry.Version) *pool {
	c := d.counts[v.Function]
	if c == nil {
		c = &counters{}
		d.counts[v.Function] = c
	}
	return &pool{d: d, v: v, ctr: c, all: make(map[*slot]struct{}), min: v.Manifest.Scale.Min,
		win: newWindow(int(d.policy.StableWindow / d.cfg.ReapInterval))}
}

func (p *pool) setMin(current bool) {
	p.mu.Lock()
	if current {
		p.min = p.v.Manifest.Scale.Min
	} else {
		p.min = 0
	}
	p.mu.Unlock()
}

// route records whether something routes to the pool's version. When
// nothing does any more, its idle instances stop at once (busy ones as
// they finish, in placeLocked) and the autoscaler's count is dropped.
// Called with d.mu held, so Close has not begun waiting for stopAsync.
func (p *pool) route(routed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	was := p.unrouted
	p.unrouted = !routed
	if !p.unrouted || was || p.closed != nil {
		return
	}
	p.desired, p.scale = 0, ScaleState{}
	for i, s := range p.idle {
		p.forgetLocked(s)
		p.d.stopAsync(s.inst)
		p.idle[i] = nil
	}
	if n := len(p.idle); n > 0 {
		p.d.log.Debug("dispatch: draining a version nothing routes to", "function", p.v.Function, "version", p.v.Number, "idle", n)
	}
	p.idle = p.idle[:0]
}

// acquire returns a place on an instance for one invocation, waiting at
// most wait, and whether it is that instance's first invocation.
func (p *pool) acquire(ctx context.Context, wait time.Duration) (*slot, bool, error) {
	p.mu.Lock()
	if p.closed != nil {
		err := p.closed
		p.mu.Unlock()
		return nil, false, err
	}
	// A busy instance with room first (concurrency > 1), then an idle one.
	for n := len(p.partial); n > 0; n = len(p.partial) {
		s := p.partial[n-1]
		if s.dead || !alive(s.inst) {
			p.unpartialLocked(s) // its running invocations discard it
			continue
		}
		cold := p.takeLocked(s)
		p.placeLocked(s)
		p.notePeakLocked()
		p.mu.Unlock()
		return s, cold, nil
	}
	for n := len(p.idle); n > 0; n = len(p.idle) {
		s := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if alive(s.inst) {
			cold := p.takeLocked(s)
			p.placeLocked(s)
			p.notePeakLocked()
			p.mu.Unlock()
			return s, cold, nil
		}
		p.forgetLocked(s) // died while idle
		p.d.stopAsync(s.inst)
	}
	if !p.d.cap.fits(p) {
		p.mu.Unlock()
		return nil, false, fmt.Errorf("%w: %s needs %d MB, more than this node gives functions (%d MB)", ErrThrottled, p.v.Function, p.v.Manifest.Memory, p.d.cap.maxMemoryMB)
	}
	if len(p.waiters) >= p.d.cfg.MaxQueue {
		p.mu.Unlock()
		return nil, false, fmt.Errorf("%w: %s has %d invocations waiting", ErrThrottled, p.v.Function, p.d.cfg.MaxQueue)
	}
	w := &waiter{ch: make(chan grant, 1)}
	p.waiters = append(p.waiters, w)
	p.notePeakLocked()
	p.ctr.queued.Add(1)
	start := p.startLocked()
	p.mu.Unlock()
	if start {
		p.goStart()
	}

	timer := time.NewTimer(wait)
	defer timer.Stop()
	var why error
	select {
	case g := <-w.ch:
		return g.s, g.cold, g.err
	case <-timer.C:
		why = fmt.Errorf("%w: no instance of %s free within %s", ErrThrottled, p.v.Function, wait)
	case <-ctx.Done():
		why = context.Cause(ctx)
	}
	p.mu.Lock()
	removed := p.removeWaiterLocked(w)
	p.mu.Unlock()
	if !removed {
		g := <-w.ch // granted as we gave up: take it after all
		return g.s, g.cold, g.err
	}
	return nil, false, why
}

// startLocked reserves a start when the pool may grow and there are more
// waiters than instances already starting. The caller must goStart.
func (p *pool) startLocked() bool {
	if p.closed != nil || p.total >= p.v.Manifest.Scale.Max || p.starting*p.conc() >= len(p.waiters) {
		return false
	}
	if ok, newly := p.d.cap.take(p); !ok {
		if newly {
			p.d.kickAdmit() // the janitor may make room
		}
		return false
	}
	p.total++
	p.starting++
	p.d.wg.Add(1) // under p.mu, so before Close (which closes p first) waits
	return true
}

// goStart starts the instance reserved by startLocked or ensureMin.
func (p *pool) goStart() {
	d := p.d
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(d.ctx, d.cfg.InitTimeout)
		inst, err := d.starter.Start(ctx, p.v)
		cancel()
		p.mu.Lock()
		p.starting--
		if err != nil {
			p.total--
			p.d.cap.give(p)
			p.d.kickAdmit()
			p.failures++
			p.retryAt = time.Now().Add(startBackoff(p.failures))
			var w *waiter
			if len(p.waiters) > 0 {
				w = p.popWaiterLocked()
			}
			again := p.startLocked()
			p.mu.Unlock()
			d.log.Warn("dispatch: instance failed to start", "function", p.v.Function, "version", p.v.Number, "err", err)
			if d.ctx.Err() != nil {
				err = ErrClosed // Close cut the start short, not the waiter's context
			}
			if w != nil {
				w.ch <- grant{err: err}
			}
			if again {
				p.goStart()
			}
			return
		}
		s := &slot{inst: inst}
		p.all[s] = struct{}{}
		p.failures = 0
		if p.closed != nil {
			p.forgetLocked(s)
			p.mu.Unlock()
			inst.Stop()
			return
		}
		hs := p.offerLocked(s)
		p.mu.Unlock()
		d.log.Debug("dispatch: instance started", "function", p.v.Function, "version", p.v.Number, "instance", inst.ID(), "init", inst.InitDuration())
		send(hs)
	}()
}

// release ends one invocation on a healthy instance: its place goes to the
// oldest waiter, else the instance is filed idle or partial.
func (p *pool) release(s *slot) {
	p.mu.Lock()
	s.inflight--
	p.running--
	if s.dead {
		p.mu.Unlock() // discarded by another invocation on it
		return
	}
	if p.closed != nil {
		p.unpartialLocked(s)
		p.forgetLocked(s)
		p.mu.Unlock()
		s.inst.Stop()
		return
	}
	if s.inflight == 0 && len(p.waiters) > 0 && p.d.cap.overShare(p) {
		// Another function waits for room while this one holds more than
		// its share: give the instance back; this pool's waiters take
		// their turn behind.
		p.unpartialLocked(s)
		p.forgetLocked(s)
		p.d.cap.block(p)
		p.d.stopAsync(s.inst) // under p.mu of an open pool, as stopAsync needs
		p.mu.Unlock()
		return
	}
	hs := p.offerLocked(s)
	p.mu.Unlock()
	send(hs)
}

// discard drops an instance that failed and starts a replacement if
// invocations are waiting.
func (p *pool) discard(s *slot) {
	// Out of the pool's lists first, so that no invocation is handed an
	// instance on its way out (others may still run on it).
	p.mu.Lock()
	s.dead = true
	s.inflight--
	p.running--
	p.unpartialLocked(s)
	p.forgetLocked(s)
	again := p.startLocked()
	p.mu.Unlock()
	s.inst.Stop()
	if again {
		p.goStart()
	}
}

func (p *pool) forgetLocked(s *slot) {
	if _, ok := p.all[s]; ok {
		delete(p.all, s)
		p.total--
		p.d.cap.give(p)
		p.d.kickAdmit() // room for a blocked pool
	}
}

func (p *pool) popWaiterLocked() *waiter {
	w := p.waiters[0]
	p.waiters[0] = nil
	p.waiters = p.waiters[1:]
	return w
}

func (p *pool) removeWaiterLocked(w *waiter) bool {
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// reap stops instances idle past scale.idle (down to min) and dead ones.
// It reports whether the pool is now empty.
func (p *pool) reap(now time.Time) bool {
	idleFor := p.v.Manifest.Scale.Idle.D()
	var stop []*slot
	p.mu.Lock()
	keep := p.idle[:0]
	// Oldest first: idle is LIFO, so the front has waited longest.
	for _, s := range p.idle {
		switch {
		case !alive(s.inst), p.unrouted:
			stop = append(stop, s)
		case now.Sub(s.lastUsed) >= idleFor && p.total-len(stop) > max(p.min, p.desired):
			stop = append(stop, s)
		default:
			keep = append(keep, s)
		}
	}
	for i := len(keep); i < len(p.idle); i++ {
		p.idle[i] = nil
	}
	p.idle = keep
	for _, s := range stop {
		p.forgetLocked(s)
	}
	empty := p.total == 0 && len(p.waiters) == 0 && p.min == 0
	p.mu.Unlock()
	for _, s := range stop {
		p.d.log.Debug("dispatch: stopping idle instance", "function", p.v.Function, "version", p.v.Number, "instance", s.inst.ID())
		p.d.stopAsync(s.inst) // a slow stop must not hold up the janitor
	}
	return empty
}

// retire closes the pool if it is empty and keeps nothing warm, so that an
// invocation that looked it up before the dispatcher forgot it cannot start
// instances in it; it reports whether it did.
func (p *pool) retire() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed != nil || p.total != 0 || len(p.waiters) != 0 || p.min != 0 {
		return false
	}
	p.closed = errRetired
	return true
}

// ensureMin starts instances until min, or what the autoscaler wants, are
// started or starting.
func (p *pool) ensureMin() {
	p.mu.Lock()
	n := 0
	want := min(max(p.min, p.desired), p.v.Manifest.Scale.Max)
	for p.closed == nil && p.total < want && !time.Now().Before(p.retryAt) && p.d.cap.takeQuiet(p) {
		p.total++
		p.starting++
		n++
	}
	p.d.wg.Add(n) // as in startLocked
	p.mu.Unlock()
	for range n {
		p.goStart()
	}
}

// close fails every waiter with err and stops every instance; busy ones
// are stopped too, ending their invocations with runtime.ErrStopped.
func (p *pool) close(err error) {
	p.mu.Lock()
	if p.closed != nil {
		p.mu.Unlock()
		return
	}
	p.closed = err
	waiters := p.waiters
	p.waiters = nil
	all := make([]*slot, 0, len(p.all))
	for s := range p.all {
		all = append(all, s)
		if s.inflight == 0 {
			p.forgetLocked(s) // busy ones are forgotten when they end
		}
	}
	p.idle = nil
	p.partial = nil
	p.mu.Unlock()
	for _, w := range waiters {
		w.ch <- grant{err: err}
	}
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func() { defer wg.Done(); s.inst.Stop() }()
	}
	wg.Wait()
}

// autoscale takes one demand sample and asks the policy how many instances
// the pool should have; ensureMin and reap then act on it. Called by the
// janitor only.
func (p *pool) autoscale(now time.Time, pol Policy, stableN, panicN int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.demandLocked()
	p.win.add(float64(max(p.peak, cur)) / float64(p.conc())) // in instances' worth
	p.peak = cur
	if p.unrouted || cur == 0 && now.Sub(p.lastActive) >= p.v.Manifest.Scale.Idle.D() {
		// Nothing routes here, or nothing arrived for the idle window:
		// scale to min (zero for any but the current version).
		p.desired, p.scale = p.min, ScaleState{}
		return
	}
	p.desired, p.scale = pol.Decide(ScaleInput{
		Now:       now,
		Stable:    p.win.avg(stableN),
		Panic:     p.win.avg(panicN),
		Instances: p.total,
		Min:       p.min,
		Max:       p.v.Manifest.Scale.Max,
	}, p.scale)
}

// wants reports whether the pool has waiters no start is under way for.
func (p *pool) wants() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed == nil && len(p.waiters) > p.starting*p.conc() && p.total < p.v.Manifest.Scale.Max
}

// oldestIdle returns the idle instance unused longest, if the pool may
// give one up (it keeps scale.min).
func (p *pool) oldestIdle() (*slot, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) == 0 || p.total <= p.min {
		return nil, time.Time{}
	}
	return p.idle[0], p.idle[0].lastUsed
}

// evict takes s out of the pool if it is still idle.
func (p *pool) evict(s *slot) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.idle {
		if x == s {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			p.forgetLocked(s)
			return true
		}
	}
	return false
}

// closedErr is why the pool was closed, or nil.
func (p *pool) closedErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed == errRetired {
		return nil
	}
	return p.closed
}

func (p *pool) stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Function: p.v.Function, Version: p.v.Number, Instances: p.total, Idle: len(p.idle), Starting: p.starting, Queued: len(p.waiters), Desired: max(p.min, p.desired)}
}

func alive(inst Instance) bool {
	select {
	case <-inst.Done():
		return false
	default:
		return true
	}
}
