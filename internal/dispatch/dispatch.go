package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ternhq/tern/internal/metering"
	"github.com/ternhq/tern/internal/registry"
	"github.com/ternhq/tern/internal/runtime"
	"github.com/ternhq/tern/internal/tracing"
)

// Errors callers branch on.
var (
	// ErrThrottled: the function's queue is full, or no instance became free
	// within the queue bound.
	ErrThrottled = errors.New("too many requests")
	// ErrGone: the function was deleted while the invocation waited.
	ErrGone = errors.New("function deleted")
	// ErrClosed: the dispatcher is shutting down.
	ErrClosed = errors.New("dispatcher closed")
)

// Instance is a started function instance, as the dispatcher uses it.
type Instance interface {
	Invoke(ctx context.Context, inv *runtime.Invocation, cold bool) (*runtime.Result, error)
	Stop()
	Done() <-chan struct{}
	InitDuration() time.Duration
	ID() string
}

// Starter starts an instance of a version and returns once it is ready.
type Starter interface {
	Start(ctx context.Context, v *registry.Version) (Instance, error)
}

// Liveness is an optional capability of a Starter: whether a version still
// exists. An invocation that resolved a version just before its function
// was deleted must not start instances of it.
type Liveness interface {
	Live(v *registry.Version) bool
}

// Routing is an optional capability of a Starter: whether an invocation
// by the function's name or one of its aliases can reach v (it is current,
// or an alias routes to it). A version nothing routes to can still be
// invoked as name@N, but keeps no instance idle. Without it, only the
// current version is routed.
type Routing interface {
	Routed(v *registry.Version) bool
}

// poolKey tells versions apart even across a function deleted and created
// again, whose version numbers start over.
func poolKey(v *registry.Version) string {
	if v.ID != "" {
		return v.ID
	}
	return v.Key()
}

// Config bounds queues and timings.
type Config struct {
	// MaxQueue is how many invocations may wait per function version.
	MaxQueue int
	// MaxQueueWait bounds how long an invocation waits for an instance
	// (also bounded by the function's timeout).
	MaxQueueWait time.Duration
	// InitTimeout bounds how long an instance may take to become ready.
	InitTimeout time.Duration
	// ReapInterval is how often the janitor looks for idle instances.
	ReapInterval time.Duration
	// MaxInstances and MaxMemoryMB cap the instances and the functions'
	// configured memory on this node (0: no cap).
	MaxInstances int
	MaxMemoryMB  int
	// Usage, when set, gets a usage record of every throttled invocation
	// (the runtime records those that ran).
	Usage metering.Recorder
	// Tracer, when set, records every invocation's spans.
	Tracer Tracer
}

// Tracer records the spans of a finished invocation; it must not block.
type Tracer interface {
	Enabled() bool
	Invocation(tracing.Invocation)
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{MaxQueue: 100, MaxQueueWait: 10 * time.Second, InitTimeout: 10 * time.Second, ReapInterval: time.Second}
}

// Outcome is the result of one invocation with how it was served.
type Outcome struct {
	Result   *runtime.Result
	Cold     bool          // an instance was started for (or first used by) it
	Init     time.Duration // that instance's init time when Cold
	Instance string
	Acquired time.Time // when it got its instance
}

// Dispatcher owns every pool and the janitor goroutine.
type Dispatcher struct {
	cfg     Config
	policy  Policy
	starter Starter
	log     *slog.Logger

	cap  *capacity
	kick chan struct{} // capacity 1: room freed or wanted; the janitor admits

	ctx    context.Context // cancelled by Close: ends starts and the janitor
	cancel context.CancelFunc
	wg     sync.WaitGroup // the janitor and every start goroutine

	mu      sync.RWMutex
	pools   map[string]*pool // by poolKey
	current map[string]int   // function -> current version number
	counts  map[string]*counters
	closed  bool
}

// New returns a Dispatcher; Start runs its janitor.
func New(cfg Config, starter Starter, log *slog.Logger) *Dispatcher {
	def := DefaultConfig()
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = def.MaxQueue
	}
	if cfg.MaxQueueWait <= 0 {
		cfg.MaxQueueWait = def.MaxQueueWait
	}
	if cfg.InitTimeout <= 0 {
		cfg.InitTimeout = def.InitTimeout
	}
	if cfg.ReapInterval <= 0 {
		cfg.ReapInterval = def.ReapInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Dispatcher{
		cfg:     cfg,
		cap:     newCapacity(cfg.MaxInstances, cfg.MaxMemoryMB),
		kick:    make(chan struct{}, 1),
		policy:  DefaultPolicy(),
		starter: starter,
		log:     log,
		ctx:     ctx,
		cancel:  cancel,
		pools:   make(map[string]*pool),
		current: make(map[string]int),
		counts:  make(map[string]*counters),
	}
}

// Start runs the janitor until Close.
func (d *Dispatcher) Start() {
	d.wg.Add(1)
	go d.janitor()
}

// Invoke runs payload on an instance of v. Function errors come back in the
// Outcome's Result; the errors are ErrThrottled, ErrGone, ErrClosed,
// *runtime.InitError, runtime.ErrTimeout, runtime.ErrCrashed and context
// errors.
func (d *Dispatcher) Invoke(ctx context.Context, v *registry.Version, requestID string, payload []byte) (*Outcome, error) {
	return d.InvokeRequest(ctx, v, &Request{RequestID: requestID, Payload: payload})
}

// Request is one invocation as callers describe it.
type Request struct {
	RequestID       string
	Payload         []byte
	TraceID         string // empty: a new one
	ClientContext   string // JSON text, optional
	CognitoIdentity string // JSON text, optional
	Trigger         string // metering.Trigger*: what caused it
}

// InvokeRequest is Invoke with every field of a request.
func (d *Dispatcher) InvokeRequest(ctx context.Context, v *registry.Version, req *Request) (*Outcome, error) {
	tracer := d.cfg.Tracer
	var start time.Time
	if tracer != nil && tracer.Enabled() {
		start = time.Now()
		if req.TraceID == "" {
			// The function and the spans share one trace.
			req.TraceID = runtime.NewTraceID(start)
		}
	}
	p, out, err := d.invoke(ctx, v, req)
	if p != nil {
		p.ctr.record(out, err)
	}
	d.meterFailed(v, req.RequestID, req.Trigger, err)
	if !start.IsZero() {
		d.trace(tracer, v, req, start, out, err)
	}
	return out, err
}

// trace records an invocation's spans.
func (d *Dispatcher) trace(t Tracer, v *registry.Version, req *Request, start time.Time, out *Outcome, err error) {
	inv := tracing.Invocation{
		TraceHeader: req.TraceID, Function: v.Function, Version: v.Number, RequestID: req.RequestID,
		Trigger: req.Trigger, Start: start, End: time.Now(),
	}
	var res *runtime.Result
	if out != nil {
		inv.Acquired, inv.Cold, inv.Init, res = out.Acquired, out.Cold, out.Init, out.Result
	}
	switch {
	case errors.Is(err, ErrThrottled):
		inv.Outcome = metering.OutcomeThrottled
	default:
		inv.Outcome = runtime.Outcome(res, err)
	}
	t.Invocation(inv)
}

// meterFailed records the invocations that ended before an instance ran
// them, which the runtime does not see: throttled (not billed), failed
// to start (billed for the init time, as Lambda bills an init error), or
// never delivered after every retry.
func (d *Dispatcher) meterFailed(v *registry.Version, rid, trigger string, err error) {
	if d.cfg.Usage == nil || err == nil {
		return
	}
	r := &metering.Record{Function: v.Function, Version: v.Number, RequestID: rid, Trigger: trigger,
		Start: time.Now(), MemoryMB: v.Manifest.Memory}
	var ie *runtime.InitError
	switch {
	case errors.Is(err, ErrThrottled):
		r.Outcome = metering.OutcomeThrottled
	case errors.As(err, &ie):
		init := ie.Duration.Truncate(time.Microsecond)
		r.Start = r.Start.Add(-init)
		r.Outcome, r.Cold, r.InitUS = metering.OutcomeError, true, init.Microseconds()
		r.DurationUS, r.BilledMS = init.Microseconds(), metering.BilledMS(init)
	case errors.Is(err, runtime.ErrNotDelivered):
		r.Outcome = metering.OutcomeCrash
	default:
		return
	}
	d.cfg.Usage.Record(r)
}

func (d *Dispatcher) invoke(ctx context.Context, v *registry.Version, req *Request) (*pool, *Outcome, error) {
	timeout := v.Manifest.Timeout.D()
	wait := min(d.cfg.MaxQueueWait, timeout)
	for attempt := 1; ; attempt++ {
		p, s, cold, err := d.acquire(ctx, v, wait)
		if err != nil {
			return p, nil, err
		}
		inv := &runtime.Invocation{RequestID: req.RequestID, Payload: req.Payload, Deadline: time.Now().Add(timeout),
			TraceID: req.TraceID, ClientContext: req.ClientContext, CognitoIdentity: req.CognitoIdentity, Trigger: req.Trigger}
		acquired := time.Now()
		res, err := s.inst.Invoke(ctx, inv, cold)
		out := &Outcome{Result: res, Cold: cold, Instance: s.inst.ID(), Acquired: acquired}
		if cold {
			out.Init = s.inst.InitDuration()
		}
		if err == nil {
			if res.Fatal {
				p.discard(s) // the runtime is exiting
			} else {
				p.release(s)
			}
			return p, out, nil
		}
		p.discard(s)
		// An instance that died before it took the event (say it exited
		// after its previous invocation's uncaught error) never ran it:
		// give it to another instance.
		if errors.Is(err, runtime.ErrNotDelivered) && attempt < maxDeliveries {
			continue
		}
		if errors.Is(err, runtime.ErrStopped) {
			if cerr := p.closedErr(); cerr != nil {
				err = cerr // deleted or shutting down, not a crash
			}
		}
		return p, out, err
	}
}

// maxDeliveries bounds how often an undelivered event is tried again.
const maxDeliveries = 3

// acquire finds v's pool and an instance in it.
func (d *Dispatcher) acquire(ctx context.Context, v *registry.Version, wait time.Duration) (*pool, *slot, bool, error) {
	for {
		p, err := d.pool(v)
		if err != nil {
			return nil, nil, false, err
		}
		s, cold, err := p.acquire(ctx, wait)
		if errors.Is(err, errRetired) {
			continue // the janitor forgot the pool as we found it: look again
		}
		return p, s, cold, err
	}
}

// pool returns v's pool, creating it.
func (d *Dispatcher) pool(v *registry.Version) (*pool, error) {
	key := poolKey(v)
	d.mu.RLock()
	p := d.pools[key]
	closed := d.closed
	d.mu.RUnlock()
	if p != nil {
		return p, nil
	}
	if closed {
		return nil, ErrClosed
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	if p = d.pools[key]; p == nil {
		// Checked under d.mu: FunctionChanged for a delete comes after the
		// registry forgot the function and takes d.mu, so a pool made here
		// is either refused or closed by it.
		if live, ok := d.starter.(Liveness); ok && !live.Live(v) {
			return nil, fmt.Errorf("%w: %s version %d", ErrGone, v.Function, v.Number)
		}
		p = newPool(d, v)
		if cur, ok := d.current[v.Function]; ok && cur != v.Number {
			p.min = 0 // an old version keeps nothing warm
		}
		p.unrouted = !d.routedLocked(v)
		d.pools[key] = p
	}
	return p, nil
}

// FunctionChanged is told when a function's current version changed (cur
// non-nil) or the function was deleted (cur nil). An old version that
// nothing routes to any more (see Routing) stops its idle instances at once
// and its busy ones as they finish; a deleted function's instances stop.
func (d *Dispatcher) FunctionChanged(name string, cur *registry.Version) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	var gone []*pool
	if cur == nil {
		delete(d.current, name)
		delete(d.counts, name)
	} else {
		d.current[name] = cur.Number
	}
	for key, p := range d.pools {
		if p.v.Function != name {
			continue
		}
		if cur == nil {
			delete(d.pools, key)
			gone = append(gone, p)
			continue
		}
		p.setMin(poolKey(cur) == poolKey(p.v))
		p.route(d.routedLocked(p.v))
	}
	var warm *pool
	if cur != nil && cur.Manifest.Scale.Min > 0 && d.pools[poolKey(cur)] == nil {
		warm = newPool(d, cur)
		d.pools[poolKey(cur)] = warm
	}
	d.mu.Unlock()
	for _, p := range gone {
		p.close(ErrGone)
	}
	if warm != nil {
		warm.ensureMin()
	}
}

// RoutesChanged is told when a function's aliases changed: versions that
// no alias routes to any more, and are not current, drain as in
// FunctionChanged; versions an alias routes to again keep idle instances.
func (d *Dispatcher) RoutesChanged(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	for _, p := range d.pools {
		if p.v.Function == name {
			p.route(d.routedLocked(p.v))
		}
	}
}

// routedLocked reports whether something routes to v. d.mu must be held
// (the registry's lock may be taken under it).
func (d *Dispatcher) routedLocked(v *registry.Version) bool {
	if r, ok := d.starter.(Routing); ok {
		return r.Routed(v)
	}
	cur, ok := d.current[v.Function]
	return !ok || cur == v.Number
}

// Stop stops every instance of a function (it was deleted).
func (d *Dispatcher) Stop(name string) { d.FunctionChanged(name, nil) }

// Close fails waiting invocations, stops every instance and waits for the
// dispatcher's goroutines, at most until ctx is done.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	pools := make([]*pool, 0, len(d.pools))
	for _, p := range d.pools {
		pools = append(pools, p)
	}
	d.pools = map[string]*pool{}
	d.mu.Unlock()
	d.cancel()
	var wg sync.WaitGroup
	for _, p := range pools {
		wg.Add(1)
		go func() { defer wg.Done(); p.close(ErrClosed) }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); d.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dispatch: close: %w", ctx.Err())
	}
}

func (d *Dispatcher) janitor() {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case now := <-t.C:
			d.reap(now)
			d.admit()
		case <-d.kick:
			d.admit()
		}
	}
}

// reap applies the idle policy to every pool and forgets empty old ones.
func (d *Dispatcher) reap(now time.Time) {
	d.mu.RLock()
	pools := make([]*pool, 0, len(d.pools))
	for _, p := range d.pools {
		pools = append(pools, p)
	}
	d.mu.RUnlock()
	stableN := int(d.policy.StableWindow / d.cfg.ReapInterval)
	panicN := max(int(d.policy.PanicWindow/d.cfg.ReapInterval), 1)
	for _, p := range pools {
		p.autoscale(now, d.policy, stableN, panicN)
		if p.reap(now) {
			d.mu.Lock()
			if d.pools[poolKey(p.v)] == p && p.retire() {
				delete(d.pools, poolKey(p.v))
			}
			d.mu.Unlock()
		}
		p.ensureMin()
	}
}

// kickAdmit asks the janitor to admit blocked pools.
func (d *Dispatcher) kickAdmit() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// admit gives room to pools blocked on the node's capacity or their
// function's reservation, one start each per pass, longest waiting first
// (then to the back of the line), evicting the least recently used idle
// instance when there is no room: anywhere for a full node, among the
// function's other versions for a reservation.
func (d *Dispatcher) admit() {
	for _, p := range d.cap.line() {
		if !p.wants() {
			d.cap.remove(p)
			continue
		}
		for tries := 0; tries < 3; tries++ {
			p.mu.Lock()
			start := p.startLocked()
			more := start && len(p.waiters) > p.starting*p.conc() && p.total < p.v.Manifest.Scale.Max
			p.mu.Unlock()
			if start {
				d.cap.remove(p)
				p.goStart()
				if more {
					d.cap.block(p) // the next start waits for the others' turn
				}
				break
			}
			var evicted bool
			if d.cap.atReserved(p) {
				evicted = d.evictIdle(p, true)
			} else {
				evicted = d.evictIdle(p, false)
			}
			if !evicted {
				break // busy instances only: wait for one to end
			}
		}
	}
}

// evictIdle stops the least recently used idle instance outside p (only
// of p's function when sameFunction), making room; it reports whether there
// was one.
func (d *Dispatcher) evictIdle(p *pool, sameFunction bool) bool {
	d.mu.RLock()
	pools := make([]*pool, 0, len(d.pools))
	for _, q := range d.pools {
		if q != p && (!sameFunction || q.v.Function == p.v.Function) {
			pools = append(pools, q)
		}
	}
	d.mu.RUnlock()
	var victim *pool
	var vs *slot
	var oldest time.Time
	for _, q := range pools {
		if s, at := q.oldestIdle(); s != nil && (vs == nil || at.Before(oldest)) {
			victim, vs, oldest = q, s, at
		}
	}
	if vs == nil || !victim.evict(vs) {
		return false
	}
	d.log.Debug("dispatch: evicting an idle instance to make room", "function", victim.v.Function, "for", p.v.Function)
	d.stopAsync(vs.inst)
	return true
}

// Usage is the node's use of its instance and memory caps.
func (d *Dispatcher) Usage() Usage { return d.cap.usage() }

// stopAsync stops inst in a goroutine that Close waits for. Callers hold a
// pool lock of an open pool or run in the janitor, so Close cannot have
// started waiting yet.
func (d *Dispatcher) stopAsync(inst Instance) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		inst.Stop()
	}()
}

// Stats is a snapshot of one pool.
type Stats struct {
	Function  string `json:"function"`
	Version   int    `json:"version"`
	Instances int    `json:"instances"`
	Idle      int    `json:"idle"`
	Starting  int    `json:"starting"`
	Queued    int    `json:"queued"`
	Desired   int    `json:"desired"` // what the autoscaler wants now
}

// Stats returns a snapshot of every pool.
func (d *Dispatcher) Stats() []Stats {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]Stats, 0, len(d.pools))
	for _, p := range d.pools {
		out = append(out, p.stats())
	}
	return out
}

// Lease is a place on an instance held for one invocation that its caller
// runs itself (the gateway proxying to an HTTP app). Release must be called
// once.
type Lease struct {
	Instance Instance
	Cold     bool
	p        *pool
	s        *slot
}

// Lease takes a place on an instance of v as Invoke does: from an idle or
// partly busy instance, else queued while one starts.
func (d *Dispatcher) Lease(ctx context.Context, v *registry.Version, rid string) (*Lease, error) {
	wait := min(d.cfg.MaxQueueWait, v.Manifest.Timeout.D())
	p, s, cold, err := d.acquire(ctx, v, wait)
	if err != nil {
		if p != nil {
			p.ctr.record(nil, err)
		}
		d.meterFailed(v, rid, metering.TriggerHTTP, err)
		return nil, err
	}
	return &Lease{Instance: s.inst, Cold: cold, p: p, s: s}, nil
}

// Release ends the lease with the invocation's outcome: a timeout or a
// crash discards the instance, anything else gives its place back.
func (l *Lease) Release(err error) {
	out := &Outcome{Result: &runtime.Result{}, Cold: l.Cold, Instance: l.Instance.ID()}
	if l.Cold {
		out.Init = l.Instance.InitDuration()
	}
	if errors.Is(err, runtime.ErrTimeout) || errors.Is(err, runtime.ErrCrashed) || errors.Is(err, runtime.ErrStopped) {
		l.p.discard(l.s)
	} else {
		l.p.release(l.s)
	}
	l.p.ctr.record(out, err)
}
