package runtime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternhq/tern/internal/jsonstr"
	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/metering"
	"github.com/ternhq/tern/internal/sandbox"
)

// Instance is one running function process with its Runtime API server,
// and, for runtimes that speak it, the framed protocol's socket.
type Instance struct {
	id  string
	l   *Launcher
	arn string

	// spec is set once, before specOK; a pooled instance gets it when it is
	// specialised.
	spec   Spec
	specOK atomic.Bool
	// taskRoot is where the process sees the code: spec.CodeDir, or in a
	// jail sandbox.TaskRoot.
	taskRoot string
	// apiUID is the uid allowed to connect to the Runtime API in a jail
	// (-1: none yet).
	apiUID atomic.Int64

	proc *sandbox.Process
	ln   net.Listener
	srv  *http.Server

	// httpAddr: runtime http, an app serving HTTP there (httpapp.go).
	httpAddr   string
	httpClient *http.Client

	// framed: the runtime speaks docs/runtime-protocol.md on conn.
	framed     bool
	fatal      atomic.Bool   // the runtime said it exits after an answer
	framesDone chan struct{} // closed when readFrames has read everything
	conn       net.Conn
	wmu        sync.Mutex // one frame written at a time
	booted     chan struct{}
	bootOK     sync.Once

	next     chan *call // HTTP mode: Invoke hands an event to the pending /next
	ready    chan struct{}
	readyOne sync.Once
	initErr  chan *FunctionError // capacity 1

	// The invocations in progress by request id: one, or up to the
	// function's concurrency on a framed runtime.
	cmu   sync.Mutex
	calls map[string]*call
	// lastOut counts the output of the latest invocation (before the
	// first: of the init), which also gets output printed between
	// invocations.
	lastOut atomic.Pointer[outputCount]

	initDuration time.Duration
	invocations  atomic.Int64
	// cpuSeen is the process's CPU time (ns) at the last usage record,
	// plus one; 0 before the first reading.
	cpuSeen atomic.Int64

	stopped  chan struct{}
	stopOnce sync.Once
	readers  sync.WaitGroup
	stdout   *outputPipe
	stderr   *outputPipe
	// outputOpen counts the output readers still running; outAbort, once
	// closed, makes them stop waiting for room in the log.
	outputOpen atomic.Int32
	outAbort   chan struct{}
	abortOnce  sync.Once
}

// call is one invocation in flight on an instance.
type call struct {
	inv      *Invocation
	result   chan *Result // capacity 1
	answered atomic.Bool
	out      *outputCount
}

func newID() string {
	return strconv.FormatUint(rand.Uint64()&0xffffffffffff, 36)
}

// launch starts the process and everything that serves it, without waiting
// for the runtime. env nil means the Lambda environment of spec (HTTP
// mode); a framed runtime starts with a minimal one and gets the function's
// when it is specialised.
func launch(l *Launcher, spec *Spec, path string, args []string, framed, noNetwork bool) (_ *Instance, err error) {
	i := &Instance{
		id:         newID(),
		l:          l,
		framed:     framed,
		booted:     make(chan struct{}),
		next:       make(chan *call),
		ready:      make(chan struct{}),
		initErr:    make(chan *FunctionError, 1),
		stopped:    make(chan struct{}),
		calls:      make(map[string]*call),
		framesDone: make(chan struct{}),
		outAbort:   make(chan struct{}),
	}
	i.lastOut.Store(&outputCount{ended: true})
	i.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("runtime: listen: %w", err)
	}
	jailed := l.jail.On()
	i.apiUID.Store(-1)
	if jailed {
		// Only the function's own uid may use its Runtime API.
		i.ln = &sandbox.PeerUIDListener{Listener: i.ln, Allowed: func() int { return int(i.apiUID.Load()) }}
		if !framed {
			i.apiUID.Store(int64(spec.uid()))
		}
	}
	i.srv = &http.Server{Handler: i.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = i.srv.Serve(i.ln) }() // ends when closeServer runs
	defer func() {
		if err != nil {
			i.Stop()
		}
	}()

	var env []string
	dir := l.cfg.Dir
	if jailed {
		dir = "/"
	}
	var extra []*os.File
	if framed {
		env = baseEnv([]string{"TERN_RUNTIME_FD=3"})
		ours, theirs, err := socketPair()
		if err != nil {
			return nil, err
		}
		defer theirs.Close() // the child holds its own copy
		i.conn = ours
		extra = []*os.File{theirs}
	} else {
		i.setSpec(spec)
		env = i.environ()
		dir = i.taskRoot
	}

	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("runtime: pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("runtime: pipe: %w", err)
	}
	sspec := sandbox.Spec{
		NoNetwork:  noNetwork,
		Path:       path,
		Args:       args,
		Dir:        dir,
		Env:        env,
		Stdout:     outW,
		Stderr:     errW,
		ExtraFiles: extra,
	}
	// A cgroup of its own: a framed runtime's gets its memory limit when
	// it is given its function, the function's own program's at once.
	sspec.Cgroup, sspec.OnConfine = i.id, i.confined
	if !framed {
		sspec.Limits.MemoryMB = spec.MemoryMB
	}
	if jailed {
		// A framed runtime is given its function (and its uid) later.
		sspec.Jail, sspec.Pooled = l.jail, framed
		if spec != nil {
			sspec.TmpMB = spec.TmpMB
		}
		if !framed {
			sspec.Code = spec.CodeDir
			sspec.UID, sspec.GID = spec.uid(), spec.uid()
		}
	}
	i.proc, err = sandbox.Start(sspec)
	outW.Close() // the child holds its own copies
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		i.closeServer()
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil, err
	}
	i.stdout = &outputPipe{f: outR, stream: logs.StreamStdout}
	i.stderr = &outputPipe{f: errR, stream: logs.StreamStderr}
	i.readers.Add(2)
	i.outputOpen.Store(2)
	go i.readOutput(i.stdout)
	go i.readOutput(i.stderr)
	if framed {
		i.readers.Add(1)
		go i.readFrames()
	}
	go func() {
		// Whatever ends the process, its servers go with it; the socket
		// once the frames sent before the exit are read.
		<-i.proc.Done()
		i.awaitFrames()
		i.closeServer()
	}()
	return i, nil
}

// begin registers an invocation in progress (its output is tagged with its
// request id) and writes its START line; done unregisters it.
func (i *Instance) begin(inv *Invocation) (c *call, done func()) {
	rid := inv.RequestID
	c = &call{inv: inv, result: make(chan *Result, 1), out: &outputCount{rid: rid}}
	if prev := i.lastOut.Swap(c.out); prev.isEnded() {
		i.reportDrops(prev) // what it printed after its END
	}
	i.cmu.Lock()
	i.calls[rid] = c
	i.cmu.Unlock()
	i.platform(rid, "START RequestId: "+rid+" Version: "+strconv.Itoa(i.spec.Version))
	return c, func() {
		i.cmu.Lock()
		delete(i.calls, rid)
		i.cmu.Unlock()
	}
}

// end writes an invocation's last lines (after its output): how many
// lines of it were dropped, what failed, END and REPORT.
func (i *Instance) end(c *call, dur time.Duration, cold bool, res *Result, err error) {
	rid := c.inv.RequestID
	i.drainOutput()
	c.out.mu.Lock()
	c.out.ended = true
	c.out.mu.Unlock()
	i.reportDrops(c.out)
	// One line saying why the invocation failed, where the function could
	// not say it itself (its own errors it logs as it throws them).
	var f *Failure
	switch {
	case errors.As(err, &f) && f.Type == ErrTypeTimeout:
		i.platform(rid, time.Now().UTC().Format(time.RFC3339Nano)+" "+f.Message)
	case errors.As(err, &f):
		i.platform(rid, f.Type+": "+f.Message)
	case res != nil && res.Error != nil && res.Error.Type == ErrTypeOutOfMemory:
		i.platform(rid, ErrTypeOutOfMemory+": "+i.oomMessage())
	}
	rep := &logs.Report{Duration: dur, MemoryMB: i.spec.MemoryMB, MaxRSS: i.maxRSS}
	if cold {
		rep.InitDuration = i.initDuration
	}
	i.l.cfg.Logs.WriteReport(i.entry(rid, logs.StreamPlatform, ""), rep)
	i.invocations.Add(1)
}

// call returns the invocation in progress with request id rid, or nil.
func (i *Instance) call(rid string) *call {
	i.cmu.Lock()
	c := i.calls[rid]
	i.cmu.Unlock()
	return c
}

// soleCall returns the invocation in progress if there is exactly one.
func (i *Instance) soleCall() *call {
	i.cmu.Lock()
	defer i.cmu.Unlock()
	if len(i.calls) != 1 {
		return nil
	}
	for _, c := range i.calls {
		return c
	}
	return nil
}

// setSpec makes the instance spec's.
func (i *Instance) setSpec(spec *Spec) {
	i.spec = *spec
	i.taskRoot = spec.CodeDir
	if i.l.jail.On() {
		i.taskRoot = sandbox.TaskRoot
	}
	i.arn = FunctionARN(i.l.cfg.Region, spec.Function, spec.Version)
	i.specOK.Store(true)
}

// waitBooted waits until a framed runtime has loaded and waits for its
// function.
func (i *Instance) waitBooted(ctx context.Context) error {
	select {
	case <-i.booted:
		return nil
	case <-i.proc.Done():
		return fmt.Errorf("runtime: pooled instance exited while starting: %v", i.proc.ExitError())
	case <-ctx.Done():
		return fmt.Errorf("runtime: waiting for instance to boot: %w", context.Cause(ctx))
	}
}

// specialize makes a framed instance spec's instance and waits until its
// handler is loaded.
func (i *Instance) specialize(ctx context.Context, spec *Spec) error {
	begin := time.Now()
	i.setSpec(spec)
	// Its limits before it loads a line of the function's code: the
	// process sits in its cgroup already (moving it now would cost the
	// kernel milliseconds of this cold start).
	if ok, err := i.proc.Limit(sandbox.Limits{MemoryMB: spec.MemoryMB}); ok && err != nil {
		i.l.cfg.Log.Warn("runtime: instance runs without its memory limit", "instance", i.id, "err", err)
	}
	envs := i.environ()
	hdr := make([]byte, 0, 512)
	hdr = append(hdr, `{"handler":`...)
	hdr = jsonstr.Append(hdr, spec.Handler)
	hdr = append(hdr, `,"taskRoot":`...)
	hdr = jsonstr.Append(hdr, i.taskRoot)
	if i.proc.Jailed() {
		// The code appears at taskRoot; the bootstrap becomes the
		// function's uid before it reads a line of it.
		if err := i.proc.MountCode(spec.CodeDir); err != nil {
			return err
		}
		i.apiUID.Store(int64(spec.uid()))
		hdr = append(hdr, `,"uid":`...)
		hdr = strconv.AppendInt(hdr, int64(spec.uid()), 10)
		hdr = append(hdr, `,"gid":`...)
		hdr = strconv.AppendInt(hdr, int64(spec.uid()), 10)
	}
	if spec.Style == "http" {
		hdr = append(hdr, `,"style":"http"`...)
	}
	if spec.Concurrency > 1 {
		hdr = append(hdr, `,"concurrency":`...)
		hdr = strconv.AppendInt(hdr, int64(spec.Concurrency), 10)
	}
	hdr = append(hdr, `,"env":{`...)
	for n, kv := range envs {
		k, v, _ := strings.Cut(kv, "=")
		if n > 0 {
			hdr = append(hdr, ',')
		}
		hdr = jsonstr.Append(hdr, k)
		hdr = append(hdr, ':')
		hdr = jsonstr.Append(hdr, v)
	}
	hdr = append(hdr, "}}"...)
	if len(hdr) > maxFrameHeader {
		return fmt.Errorf("runtime: the function's environment is too large (%d bytes)", len(hdr))
	}
	if err := i.writeFrame(frameSpecialize, hdr, nil, time.Time{}); err != nil {
		return fmt.Errorf("%w: %w", ErrCrashed, err)
	}
	return i.waitReady(ctx, begin)
}

// confined learns whether the instance's process got into its cgroup.
// Where that failed the instance runs without one; the first failure is
// logged.
func (i *Instance) confined(err error) {
	if err == nil {
		return
	}
	if i.l.confineWarned.CompareAndSwap(false, true) {
		i.l.cfg.Log.Warn("runtime: instances run without their cgroup (memory, pids and CPU limits)", "instance", i.id, "err", err)
	} else {
		i.l.cfg.Log.Debug("runtime: instance runs without its cgroup", "instance", i.id, "err", err)
	}
}

// failure wraps err, when it is a timeout or a crash, in a *Failure that
// says what happened as Lambda does; other errors (nil included) are
// returned as they are. An event that never reached the function
// (ErrNotDelivered) is no failure of its: the dispatcher gives it to
// another instance.
func (i *Instance) failure(err error) error {
	var typ, msg string
	switch {
	case err == nil, errors.Is(err, ErrNotDelivered):
		return err
	case errors.Is(err, ErrTimeout):
		typ, msg = ErrTypeTimeout, fmt.Sprintf("Task timed out after %.2f seconds", i.spec.Timeout.Seconds())
	case errors.Is(err, ErrCrashed):
		typ, msg = ErrTypeExitError, "Runtime exited without providing a reason"
		if i.proc.OOMKilled() {
			typ, msg = ErrTypeOutOfMemory, i.oomMessage()
		} else if e := i.proc.ExitError(); e != nil {
			msg = "Runtime exited with error: " + e.Error()
		}
	default:
		return err
	}
	return &Failure{Cause: err, FunctionError: FunctionError{Type: typ, Body: errorBody(typ, msg)}, Message: msg}
}

// outOfMemory is the error of an invocation whose instance the kernel
// killed for exceeding the function's memory, or nil if it did not.
// Valid once the process exited.
func (i *Instance) outOfMemory() *FunctionError {
	if !i.proc.OOMKilled() {
		return nil
	}
	return &FunctionError{Type: ErrTypeOutOfMemory, Body: errorBody(ErrTypeOutOfMemory, i.oomMessage())}
}

// maxRSS is the instance's peak memory in bytes: its process's, or all
// of its memory if the kernel killed it for exceeding that (it was at the
// limit, whatever the last reading said).
func (i *Instance) maxRSS() int64 {
	if i.proc.OOMKilled() {
		return max(int64(i.spec.MemoryMB)<<20, i.proc.MaxRSS())
	}
	return i.proc.MaxRSS()
}

func (i *Instance) oomMessage() string {
	return fmt.Sprintf("function exceeded its memory limit of %d MB", i.spec.MemoryMB)
}

// waitReady waits for the runtime to report its handler loaded (HTTP mode:
// its first /next; framed: READY) or failed.
func (i *Instance) waitReady(ctx context.Context, begin time.Time) error {
	select {
	case <-i.ready:
		i.initDuration = time.Since(begin)
		return nil
	case fe := <-i.initErr:
		return &InitError{FunctionError: *fe, Duration: time.Since(begin)}
	case <-i.proc.Done():
		i.awaitFrames()
		select {
		case fe := <-i.initErr: // posted just before exiting
			return &InitError{FunctionError: *fe, Duration: time.Since(begin)}
		default:
		}
		if fe := i.outOfMemory(); fe != nil {
			return &InitError{FunctionError: *fe, Duration: time.Since(begin)}
		}
		msg := "runtime exited before it was ready"
		if e := i.proc.ExitError(); e != nil {
			msg += ": " + e.Error()
		}
		return &InitError{FunctionError: FunctionError{Type: "Runtime.ExitError", Body: errorBody("Runtime.ExitError", msg)}, Duration: time.Since(begin)}
	case <-ctx.Done():
		return fmt.Errorf("runtime: waiting for instance to start: %w", context.Cause(ctx))
	}
}

// DefaultRegion is the region instances are told they run in unless
// Config.Region says otherwise.
const DefaultRegion = "us-east-1"

// FunctionARN is the ARN-shaped identifier functions see as
// invokedFunctionArn.
func FunctionARN(region, name string, version int) string {
	return "arn:aws:lambda:" + region + ":000000000000:function:" + name + ":" + strconv.Itoa(version)
}

// environ is the instance's whole environment: the function's own variables
// and the Lambda ones, nothing of the server's.
func (i *Instance) environ() []string {
	s := &i.spec
	env := map[string]string{}
	for _, kv := range baseEnv(nil) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for k, v := range s.Env {
		env[k] = v
	}
	for k, v := range map[string]string{
		"AWS_LAMBDA_FUNCTION_NAME":        s.Function,
		"AWS_LAMBDA_FUNCTION_VERSION":     strconv.Itoa(s.Version),
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(s.MemoryMB),
		"AWS_LAMBDA_RUNTIME_API":          i.ln.Addr().String(),
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/tern/" + s.Function,
		"AWS_LAMBDA_LOG_STREAM_NAME":      i.id,
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
		"_HANDLER":                        s.Handler,
		"LAMBDA_TASK_ROOT":                i.taskRoot,
		"LAMBDA_RUNTIME_DIR":              i.runtimeDir(),
		"AWS_REGION":                      i.l.cfg.Region,
		"AWS_DEFAULT_REGION":              i.l.cfg.Region,
	} {
		env[k] = v // the platform's variables always win
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// runtimeDir is where the instance sees the runtime's own files (Lambda's
// LAMBDA_RUNTIME_DIR): Tern's bootstraps, or the function's code for a
// runtime it brings itself (provided, http).
func (i *Instance) runtimeDir() string {
	switch i.spec.Runtime {
	case "nodejs", "python":
		if i.l.jail.On() {
			return filepath.Join(sandbox.RuntimeRoot, i.spec.Runtime)
		}
		return filepath.Join(i.l.cfg.Dir, i.spec.Runtime)
	}
	return i.taskRoot
}

// baseEnv is what every runtime process starts with, plus extra.
func baseEnv(extra []string) []string {
	return append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "TZ=:UTC", "LANG=en_US.UTF-8"}, extra...)
}

// ID names the instance in logs.
func (i *Instance) ID() string { return i.id }

// InitDuration is how long the instance took to become ready.
func (i *Instance) InitDuration() time.Duration { return i.initDuration }

// Done is closed when the instance's process has exited.
func (i *Instance) Done() <-chan struct{} { return i.proc.Done() }

// Invoke runs one invocation and returns the function's result. A function
// error is a Result with Error set, not an error. The errors are ErrTimeout
// (the instance was killed), ErrCrashed and ErrStopped; after any of them
// the instance is gone. ctx is not used to abandon a running invocation:
// the deadline bounds it, as on Lambda.
func (i *Instance) Invoke(ctx context.Context, inv *Invocation, cold bool) (*Result, error) {
	if inv.TraceID == "" {
		inv.TraceID = NewTraceID(time.Now())
	}
	c, done := i.begin(inv)
	defer done()

	timer := time.NewTimer(time.Until(inv.Deadline))
	defer timer.Stop()
	i.markCPU()
	start := time.Now()
	res, err := i.await(c, timer.C)
	dur := time.Since(start)
	err = i.failure(err)
	i.end(c, dur, cold, res, err)
	i.meter(inv, start, dur, cold, res, err)
	return res, err
}

// markCPU takes the first CPU reading of a metered instance, before its
// first invocation.
func (i *Instance) markCPU() {
	if i.l.cfg.Usage == nil || i.cpuSeen.Load() != 0 {
		return
	}
	if cpu, ok := i.proc.CPUTime(); ok {
		i.cpuSeen.CompareAndSwap(0, int64(cpu)+1)
	}
}

// meter hands the invocation's usage record to the usage recorder. An
// event that never reached the function has none.
//
// Its CPU time is the instance process's (all threads, user and system)
// since the previous record, one reading per invocation: an instance's
// records add up to all the CPU it used while it served (a single
// record's figure is coarse: the kernel counts in 10 ms ticks), the
// overlapping invocations of a concurrent instance do not count it twice,
// and work between invocations (timers, collection) goes to the next one.
func (i *Instance) meter(inv *Invocation, start time.Time, dur time.Duration, cold bool, res *Result, err error) {
	u := i.l.cfg.Usage
	if u == nil || errors.Is(err, ErrNotDelivered) {
		return
	}
	if errors.Is(err, ErrTimeout) && i.spec.Timeout > 0 {
		// A timed-out invocation ran its timeout, as Lambda bills it: the
		// deadline gave it that long from when it was handed over, and
		// killing the instance after it is not the function's time.
		dur = i.spec.Timeout
	}
	dur = dur.Truncate(time.Microsecond) // billed from the recorded duration
	r := &metering.Record{
		Function: i.spec.Function, Version: i.spec.Version, RequestID: inv.RequestID, Trigger: inv.Trigger,
		Start: start, DurationUS: dur.Microseconds(), BilledMS: metering.BilledMS(dur),
		MemoryMB: i.spec.MemoryMB, MaxMemoryMB: int(i.maxRSS() >> 20), Cold: cold,
		Outcome: Outcome(res, err),
	}
	if cpu, ok := i.proc.CPUTime(); ok {
		// The mark only moves forward: concurrent invocations may read
		// in one order and get here in the other, and the later reading
		// must not be counted twice.
		cur := int64(cpu) + 1
		for {
			prev := i.cpuSeen.Load()
			if cur <= prev {
				break // nothing since the last record
			}
			if i.cpuSeen.CompareAndSwap(prev, cur) {
				if prev > 0 {
					r.CPUUS = (cur - prev) / 1000
				}
				break
			}
		}
	}
	if cold {
		r.InitUS = i.initDuration.Microseconds()
	}
	u.Record(r)
}

// Outcome classifies how an invocation that reached an instance ended
// (metering.Outcome*).
func Outcome(res *Result, err error) string {
	switch {
	case err == nil && res != nil && res.Error != nil:
		return metering.OutcomeError
	case err == nil:
		return metering.OutcomeSuccess
	case errors.Is(err, ErrTimeout):
		return metering.OutcomeTimeout
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrStopped):
		// The caller went away, or the function was deleted or the
		// server stopped under it: not the function's failure.
		return metering.OutcomeCanceled
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return metering.OutcomeCanceled // the client's body was refused
	}
	return metering.OutcomeCrash
}

func (i *Instance) await(c *call, deadline <-chan time.Time) (*Result, error) {
	if i.httpAddr != "" {
		go i.sendHTTP(c) // bounded by the invocation's deadline
	} else if i.framed {
		if i.fatal.Load() {
			return nil, fmt.Errorf("%w: the runtime is exiting", ErrNotDelivered)
		}
		if err := i.sendInvoke(c.inv); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				i.Stop() // it did not even read the event in time
				return nil, ErrTimeout
			}
			// The runtime's end is gone: the event never reached it.
			return nil, fmt.Errorf("%w: %w: %w", ErrNotDelivered, ErrCrashed, err)
		}
	} else {
		select {
		case i.next <- c:
		case <-deadline:
			i.Stop()
			return nil, ErrTimeout
		case <-i.proc.Done():
			// The event never reached the function: another instance can
			// take it.
			return nil, fmt.Errorf("%w: %w", ErrNotDelivered, i.crashed())
		case <-i.stopped:
			return nil, ErrStopped
		}
	}
	select {
	case r := <-c.result:
		if r == nil {
			return nil, fmt.Errorf("%w: the runtime's connection closed before the event was sent", ErrNotDelivered)
		}
		return r, nil
	case <-deadline:
		i.Stop()
		return nil, ErrTimeout
	case <-i.proc.Done():
		i.awaitFrames()
		select {
		case r := <-c.result: // answered, then exited
			return r, nil
		default:
		}
		if fe := i.outOfMemory(); fe != nil {
			// A function error, as on Lambda; the instance is gone.
			return &Result{Error: fe, Fatal: true}, nil
		}
		return nil, i.unanswered()
	case <-i.stopped:
		select {
		case r := <-c.result: // answered as it was stopped
			return r, nil
		default:
		}
		if i.fatal.Load() || i.proc.ExitedByItself() {
			// It was stopped because it had ended: another invocation's
			// exit, or a crash, took this one with it.
			return nil, i.unanswered()
		}
		return nil, ErrStopped
	}
}

// awaitFrames waits, briefly, until a framed runtime that exited has had
// all its frames read: an answer or init error it sent just before exiting
// is still in the socket when its exit is seen.
func (i *Instance) awaitFrames() {
	if !i.framed {
		return
	}
	select {
	case <-i.framesDone:
	case <-time.After(time.Second):
	}
}

// unanswered is the error of an invocation the instance ended without
// answering: after the runtime said it exits (an uncaught error in another
// invocation), the event was never run, so it may go elsewhere.
func (i *Instance) unanswered() error {
	if i.fatal.Load() {
		return fmt.Errorf("%w: %w", ErrNotDelivered, ErrCrashed)
	}
	return i.crashed()
}

func (i *Instance) crashed() error {
	select {
	case <-i.stopped:
		if !i.proc.ExitedByItself() {
			return ErrStopped
		}
	default:
	}
	if e := i.proc.ExitError(); e != nil {
		return fmt.Errorf("%w: %v", ErrCrashed, e)
	}
	return fmt.Errorf("%w: exited", ErrCrashed)
}

// Stop kills the instance's process tree and waits, boundedly, for it to
// exit and for its output to be read. It is safe to call more than once and
// from any goroutine.
func (i *Instance) Stop() {
	i.stopOnce.Do(func() { close(i.stopped) })
	if i.proc == nil {
		i.closeServer()
		return
	}
	i.proc.Kill()
	select {
	case <-i.proc.Done():
	case <-time.After(5 * time.Second):
		i.l.cfg.Log.Warn("runtime: instance did not exit after SIGKILL", "instance", i.id)
	}
	i.closeServer()
	i.waitReaders()
}

// waitReaders waits for the output readers; a process that escaped the
// kill may still hold the pipes, so after a bound the read ends are closed.
func (i *Instance) waitReaders() {
	done := make(chan struct{})
	go func() { i.readers.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(time.Second):
	}
	// The log has had no room for a second (the store is slow or gone):
	// what is left is counted, not kept.
	i.abortOnce.Do(func() { close(i.outAbort) })
	select {
	case <-done:
		return
	case <-time.After(time.Second):
	}
	i.l.cfg.Log.Warn("runtime: a process outside the instance still holds its output; closing it", "instance", i.id)
	i.stdout.f.Close()
	i.stderr.f.Close()
	<-done
}

// closeServer ends the Runtime API server and the framed socket.
func (i *Instance) closeServer() {
	_ = i.srv.Close()
	if i.conn != nil {
		_ = i.conn.Close() // a grandchild may hold the other end
	}
}

func (i *Instance) entry(rid, stream, msg string) logs.Entry {
	return logs.Entry{
		Time:      time.Now().UTC(),
		Function:  i.spec.Function,
		Version:   i.spec.Version,
		RequestID: rid,
		Instance:  i.id,
		Stream:    stream,
		Message:   msg,
	}
}

func (i *Instance) platform(rid, msg string) {
	i.l.cfg.Logs.Write(i.entry(rid, logs.StreamPlatform, msg))
}
