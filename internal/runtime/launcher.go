package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternhq/tern/internal/metering"
	"github.com/ternhq/tern/internal/runtime/nodejs"
	"github.com/ternhq/tern/internal/sandbox"
)

// Config for a Launcher.
type Config struct {
	// Dir is where embedded bootstraps are written; pooled instances wait
	// there before they are given a function.
	Dir string
	// Region is the AWS region instances are told they run in
	// (AWS_REGION, AWS_DEFAULT_REGION, their ARN); default us-east-1.
	Region string
	// NodePath is the node binary; empty looks "node" up on PATH once.
	NodePath string
	// MaxResponseBytes caps a function's response (Lambda: 6 MB).
	MaxResponseBytes int64
	// PoolSize is how many generic instances of each runtime are kept
	// started, ready to be given a function; 0 turns pools off.
	PoolSize int
	// Logs receives every instance's output.
	Logs LogSink
	// MaxOutputBytes bounds what one invocation's output may put in the
	// log (its lines' bytes, newlines included); past it lines are
	// dropped, counted, and an entry says how many. 0:
	// DefaultMaxOutputBytes; negative: no bound.
	MaxOutputBytes int64
	// Usage, when set, gets a usage record of every invocation that ran.
	Usage metering.Recorder
	// JailDir, when set, jails every instance (sandbox.Jail), keeping the
	// jails' mount points there; it must not be inside Dir, which every
	// jail shows. Empty: instances are not jailed.
	JailDir string
	// TmpMB is the size of a jailed instance's /tmp (0: the default).
	TmpMB int
	Log   *slog.Logger
}

// kind is one runtime the Launcher can start: its command, and its pool
// of generic instances (booted, not yet given a function).
type kind struct {
	name    string
	path    string   // interpreter; "" when this host lacks it
	args    []string // the bootstrap
	missing string   // why path is "", for the error

	pool   chan *Instance
	refill chan struct{} // capacity 1: wakes the refiller
}

// Launcher starts instances of the runtimes it knows, from their pools
// where it can.
type Launcher struct {
	cfg   Config
	kinds map[string]*kind

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once

	confineWarned atomic.Bool // a failed Confine was logged

	jail *sandbox.Jail // nil or off: instances are not jailed
}

// NewLauncher installs the embedded bootstraps and resolves interpreters.
// A missing interpreter is not an error here: starting an instance that
// needs it is.
func NewLauncher(cfg Config) (*Launcher, error) {
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = 6 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.MaxOutputBytes == 0 {
		cfg.MaxOutputBytes = DefaultMaxOutputBytes
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Launcher{cfg: cfg, kinds: make(map[string]*kind), ctx: ctx, cancel: cancel}

	boot, err := nodejs.Install(filepath.Join(cfg.Dir, "nodejs"))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("runtime: install node bootstrap: %w", err)
	}
	node := cfg.NodePath
	if node == "" {
		if p, err := exec.LookPath("node"); err == nil {
			node, _ = filepath.Abs(p)
		}
	}
	l.add("nodejs", node, []string{boot}, "node is not installed on this host (or pass --node)")
	if err := l.addPython(); err != nil {
		cancel()
		return nil, err
	}
	if err := l.newJail(); err != nil {
		cancel()
		return nil, err
	}
	cfg.Log.Info(sandbox.Summary(l.Controls()))
	return l, nil
}

// newJail sets up the jail, if configured: every jail shows the
// bootstraps and the interpreters read-only.
func (l *Launcher) newJail() error {
	if l.cfg.JailDir == "" {
		l.jail, _ = sandbox.NewJail(sandbox.JailConfig{Off: true}) // never fails when off
		return nil
	}
	var show []string
	for _, k := range l.kinds {
		// <prefix>/bin/<interpreter>: its installation (never all of /:
		// /bin is a system directory, shown anyway).
		if prefix := filepath.Dir(filepath.Dir(k.path)); k.path != "" && prefix != "/" {
			show = append(show, prefix)
		}
	}
	sort.Strings(show)
	j, err := sandbox.NewJail(sandbox.JailConfig{
		Dir: l.cfg.JailDir, ReadOnly: show, Runtime: l.cfg.Dir, TmpMB: l.cfg.TmpMB,
	})
	if err != nil {
		return fmt.Errorf("runtime: %w", err)
	}
	l.jail = j
	return nil
}

// bootArgs are k's arguments as the process sees them: in a jail the
// bootstraps are under sandbox.RuntimeRoot.
func (l *Launcher) bootArgs(k *kind) []string {
	if !l.jail.On() {
		return k.args
	}
	out := make([]string, len(k.args))
	for n, a := range k.args {
		if rel, err := filepath.Rel(l.cfg.Dir, a); err == nil && filepath.IsLocal(rel) {
			a = filepath.Join(sandbox.RuntimeRoot, rel)
		}
		out[n] = a
	}
	return out
}

// Jailed says whether instances are jailed (sandbox.Jail).
func (l *Launcher) Jailed() bool { return l.jail.On() }

// Controls lists the isolation controls and whether instances get them
// on this host.
func (l *Launcher) Controls() []sandbox.Control {
	return append(sandbox.Controls(), l.jail.Controls()...)
}

func (l *Launcher) add(name, path string, args []string, missing string) {
	if path == "" {
		l.cfg.Log.Warn("runtime: "+name+" functions cannot start here", "reason", missing)
	}
	l.kinds[name] = &kind{
		name: name, path: path, args: args, missing: missing,
		pool:   make(chan *Instance, max(l.cfg.PoolSize, 0)),
		refill: make(chan struct{}, 1),
	}
}

// StartPool runs one refiller per runtime until Close.
func (l *Launcher) StartPool() {
	if l.cfg.PoolSize <= 0 {
		return
	}
	for _, k := range l.kinds {
		if k.path == "" {
			continue
		}
		l.wg.Add(1)
		go l.refiller(k)
		l.wakeRefill(k)
	}
}

// Close stops the refillers and every pooled instance.
func (l *Launcher) Close(ctx context.Context) error {
	l.closed.Do(func() {
		l.cancel()
		done := make(chan struct{})
		go func() { l.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
		for _, k := range l.kinds {
		drain:
			for {
				select {
				case inst := <-k.pool:
					inst.Stop()
				default:
					break drain
				}
			}
		}
		if err := l.jail.Close(); err != nil {
			l.cfg.Log.Warn("runtime: closing the jail", "err", err)
		}
	})
	return nil
}

// Pooled is how many generic instances wait in the pools now.
func (l *Launcher) Pooled() int {
	n := 0
	for _, k := range l.kinds {
		n += len(k.pool)
	}
	return n
}

// PoolSizes is how many generic instances wait per runtime.
func (l *Launcher) PoolSizes() map[string]int {
	out := make(map[string]int, len(l.kinds))
	for name, k := range l.kinds {
		out[name] = len(k.pool)
	}
	return out
}

// Runtimes lists the runtimes this host can start.
func (l *Launcher) Runtimes() []string {
	var out []string
	for name, k := range l.kinds {
		if k.path != "" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (l *Launcher) wakeRefill(k *kind) {
	select {
	case k.refill <- struct{}{}:
	default:
	}
}

// refiller keeps k's pool full, one start at a time.
func (l *Launcher) refiller(k *kind) {
	defer l.wg.Done()
	failures := 0
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-k.refill:
		}
		for len(k.pool) < cap(k.pool) && l.ctx.Err() == nil {
			inst, err := l.bootGeneric(l.ctx, k)
			if err != nil {
				failures++
				l.cfg.Log.Warn("runtime: starting a pooled instance failed", "runtime", k.name, "err", err, "failures", failures)
				select {
				case <-l.ctx.Done():
					return
				case <-time.After(min(time.Duration(failures)*time.Second, time.Minute)):
				}
				continue
			}
			failures = 0
			if l.ctx.Err() != nil {
				inst.Stop() // Close began while it booted
				return
			}
			select {
			case k.pool <- inst:
			default:
				inst.Stop() // cannot happen: only this goroutine fills the pool
			}
		}
	}
}

// bootGeneric starts an instance of k that serves no function yet and
// waits until its bootstrap has loaded.
func (l *Launcher) bootGeneric(ctx context.Context, k *kind) (*Instance, error) {
	inst, err := launch(l, nil, k.path, l.bootArgs(k), true, false)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := inst.waitBooted(ctx); err != nil {
		inst.Stop()
		return nil, err
	}
	return inst, nil
}

// takePooled returns a booted generic instance of k, or nil.
func (l *Launcher) takePooled(k *kind) *Instance {
	for {
		select {
		case inst := <-k.pool:
			l.wakeRefill(k)
			if alive(inst) {
				return inst
			}
			inst.Stop()
		default:
			return nil
		}
	}
}

func alive(i *Instance) bool {
	select {
	case <-i.proc.Done():
		return false
	default:
		return true
	}
}

// Start starts an instance of spec and waits until it is ready to take an
// invocation, its runtime reports an init error (*InitError), or ctx ends.
// The instance comes from the runtime's pool when one is there: then the
// cold start costs loading the handler, not starting the interpreter.
// poolable: a pooled process can become spec's instance. Pooled processes
// have the network, and a /tmp of the jail's default size, fixed when they
// booted.
func (l *Launcher) poolable(spec *Spec) bool {
	return !spec.NoNetwork && (spec.TmpMB == 0 || spec.TmpMB == l.jail.PoolTmpMB() || l.jail.PoolTmpMB() == 0)
}

func (l *Launcher) Start(ctx context.Context, spec Spec) (*Instance, error) {
	switch spec.Runtime {
	case "provided":
		return l.startProvided(ctx, spec)
	case "http":
		return l.startHTTPApp(ctx, spec)
	}
	k := l.kinds[spec.Runtime]
	if k == nil {
		return nil, fmt.Errorf("%w: unknown runtime %q", ErrUnavailable, spec.Runtime)
	}
	if k.path == "" {
		return nil, fmt.Errorf("%w: %s: %s", ErrUnavailable, k.name, k.missing)
	}
	for attempt := 0; ; attempt++ {
		var inst *Instance
		if l.poolable(&spec) {
			inst = l.takePooled(k)
		}
		pooled := inst != nil
		begin := time.Now()
		if !pooled {
			var err error
			// Framed: spec only sizes its /tmp; it is given the rest later.
			if inst, err = launch(l, &spec, k.path, l.bootArgs(k), true, spec.NoNetwork); err != nil {
				return nil, err
			}
		}
		err := inst.specialize(ctx, &spec)
		if err == nil {
			if !pooled {
				inst.initDuration = time.Since(begin) // the process start is part of this cold start
			}
			return inst, nil
		}
		inst.Stop()
		var ie *InitError
		if !pooled || errors.As(err, &ie) || ctx.Err() != nil || attempt >= 2 {
			return nil, err
		}
		// The pooled process failed for its own reasons: try again.
	}
}

// startProvided starts the package's own executable, bootstrap, as on
// Lambda's provided runtimes: it speaks the HTTP Runtime API, and is ready
// when it first asks for an event. There is no pool: the program is the
// function's own.
func (l *Launcher) startProvided(ctx context.Context, spec Spec) (*Instance, error) {
	begin := time.Now()
	path := filepath.Join(spec.CodeDir, "bootstrap")
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		msg := "the package has no executable file named bootstrap at its root"
		return nil, &InitError{FunctionError: FunctionError{Type: "Runtime.InvalidEntrypoint", Body: errorBody("Runtime.InvalidEntrypoint", msg)}}
	}
	spec.Concurrency = 1
	if l.jail.On() {
		path = sandbox.TaskRoot + "/bootstrap"
	}
	inst, err := launch(l, &spec, path, nil, false, false)
	if err != nil {
		return nil, err
	}
	if err := inst.waitReady(ctx, begin); err != nil {
		inst.Stop()
		return nil, err
	}
	return inst, nil
}
