package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/ternhq/tern/internal/runtime/nodejs"
)

// Config for a Launcher.
type Config struct {
	// Dir is where embedded bootstraps are written.
	Dir string
	// NodePath is the node binary; empty looks "node" up on PATH once.
	NodePath string
	// MaxResponseBytes caps a function's response (Lambda: 6 MB).
	MaxResponseBytes int64
	// Logs receives every instance's output.
	Logs LogSink
	Log  *slog.Logger
}

// Launcher starts instances of any runtime it knows.
type Launcher struct {
	cfg           Config
	nodeBootstrap string
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
	return &Launcher{cfg: cfg, nodeBootstrap: path}, nil
}

// command returns the program and arguments that run spec's runtime.
func (l *Launcher) command(spec *Spec) (string, []string, error) {
	switch spec.Runtime {
	case "nodejs":
		if l.cfg.NodePath == "" {
			return "", nil, fmt.Errorf("%w: nodejs: node is not installed on this host (or pass --node)", ErrUnavailable)
		}
		// Leave V8 headroom below the configured memory, as Lambda does.
		heap := spec.MemoryMB * 85 / 100
		return l.cfg.NodePath, []string{"--max-old-space-size=" + strconv.Itoa(heap), l.nodeBootstrap}, nil
	default:
		return "", nil, fmt.Errorf("%w: unknown runtime %q", ErrUnavailable, spec.Runtime)
	}
}

// Start starts an instance of spec and waits until it is ready to take an
// invocation, its runtime reports an init error (*InitError), or ctx ends.
func (l *Launcher) Start(ctx context.Context, spec Spec) (*Instance, error) {
	path, args, err := l.command(&spec)
	if err != nil {
		return nil, err
	}
	return startInstance(ctx, l, spec, path, args)
}
