package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/ternhq/tern/internal/runtime/nodejs"
)

// Config for a Launcher.
type Config struct {
	// Dir is where embedded bootstraps are written; pooled instances wait
	// there before they are given a function.
	Dir string
	// NodePath is the node binary; empty looks "node" up on PATH once.
	NodePath string
	// MaxResponseBytes caps a function's response (Lambda: 6 MB).
	MaxResponseBytes int64
	// PoolSize is how many generic instances of each pooled runtime are
	// kept started, ready to be given a function; 0 turns pools off.
	PoolSize int
	// Logs receives every instance's output.
	Logs LogSink
	Log  *slog.Logger
}

// Launcher starts instances of any runtime it knows, from its pools where
// it has them.
type Launcher struct {
	cfg           Config
	nodeBootstrap string

	pool   chan *Instance // generic nodejs instances, booted
	refill chan struct{}  // capacity 1: wakes the refiller
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
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
	path, err := nodejs.Install(filepath.Join(cfg.Dir, "nodejs"))
	if err != nil {
		return nil, fmt.Errorf("runtime: install node bootstrap: %w", err)
	}
	if cfg.NodePath == "" {
		if p, err := exec.LookPath("node"); err == nil {
			cfg.NodePath, _ = filepath.Abs(p)
		} else {
			cfg.Log.Warn("runtime: node not found on PATH; nodejs functions cannot start")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Launcher{
		cfg:           cfg,
		nodeBootstrap: path,
		pool:          make(chan *Instance, max(cfg.PoolSize, 0)),
		refill:        make(chan struct{}, 1),
		ctx:           ctx,
		cancel:        cancel,
	}, nil
}

// StartPool runs the pool refiller until Close.
func (l *Launcher) StartPool() {
	if l.cfg.PoolSize <= 0 || l.cfg.NodePath == "" {
		return
	}
	l.wg.Add(1)
	go l.refiller()
	l.wakeRefill()
}

// Close stops the refiller and every pooled instance.
func (l *Launcher) Close(ctx context.Context) error {
	l.closed.Do(func() {
		l.cancel()
		done := make(chan struct{})
		go func() { l.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
		for {
			select {
			case inst := <-l.pool:
				inst.Stop()
				continue
			default:
			}
			break
		}
	})
	return nil
}

// Pooled is how many generic instances wait in the pool now.
func (l *Launcher) Pooled() int { return len(l.pool) }

func (l *Launcher) wakeRefill() {
	select {
	case l.refill <- struct{}{}:
	default:
	}
}

// refiller keeps the pool full, one start at a time.
func (l *Launcher) refiller() {
	defer l.wg.Done()
	failures := 0
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-l.refill:
		}
		for len(l.pool) < cap(l.pool) && l.ctx.Err() == nil {
			inst, err := l.bootGeneric(l.ctx)
			if err != nil {
				failures++
				l.cfg.Log.Warn("runtime: starting a pooled nodejs instance failed", "err", err, "failures", failures)
				select {
				case <-l.ctx.Done():
					return
				case <-time.After(min(time.Duration(failures)*time.Second, time.Minute)):
				}
				continue
			}
			failures = 0
			select {
			case l.pool <- inst:
			default:
				inst.Stop() // cannot happen: only this goroutine fills the pool
			}
		}
	}
}

// bootGeneric starts a nodejs instance that serves no function yet and
// waits until its bootstrap has loaded.
func (l *Launcher) bootGeneric(ctx context.Context) (*Instance, error) {
	inst, err := launch(l, nil, l.cfg.NodePath, []string{l.nodeBootstrap}, true)
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

// takePooled returns a booted generic instance from the pool, or nil.
func (l *Launcher) takePooled() *Instance {
	for {
		select {
		case inst := <-l.pool:
			l.wakeRefill()
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
// A nodejs instance comes from the pool when one is there: then the cold
// start costs loading the handler, not starting node.
func (l *Launcher) Start(ctx context.Context, spec Spec) (*Instance, error) {
	switch spec.Runtime {
	case "nodejs":
		if l.cfg.NodePath == "" {
			return nil, fmt.Errorf("%w: nodejs: node is not installed on this host (or pass --node)", ErrUnavailable)
		}
		inst := l.takePooled()
		if inst == nil {
			var err error
			begin := time.Now()
			if inst, err = launch(l, nil, l.cfg.NodePath, []string{l.nodeBootstrap}, true); err != nil {
				return nil, err
			}
			if err := inst.specialize(ctx, &spec); err != nil {
				inst.Stop()
				return nil, err
			}
			inst.initDuration = time.Since(begin) // the process start is part of this cold start
			return inst, nil
		}
		if err := inst.specialize(ctx, &spec); err != nil {
			inst.Stop()
			var ie *InitError
			if errors.As(err, &ie) || ctx.Err() != nil {
				return nil, err
			}
			// The pooled process failed for its own reasons: start afresh.
			return l.Start(ctx, spec)
		}
		return inst, nil
	default:
		return nil, fmt.Errorf("%w: unknown runtime %q", ErrUnavailable, spec.Runtime)
	}
}
