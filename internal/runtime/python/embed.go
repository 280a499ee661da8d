package python

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ternhq/tern/internal/runtime/bootfile"
)

// Bootstrap is the Python runtime client script (bootstrap.py).
//
//go:embed bootstrap.py
var Bootstrap []byte

// FileName is the name Install gives the bootstrap inside its directory.
const FileName = "bootstrap.py"

// minVersion is the oldest Python the bootstrap runs on: major, minor.
var minVersion = [2]int{3, 9}

// Install writes Bootstrap to dir/bootstrap.py as [bootfile.Install] does
// (dir created if needed; replaced atomically, mode 0444, unless already
// identical) and returns the file's path.
func Install(dir string) (string, error) {
	p, err := bootfile.Install(dir, FileName, Bootstrap)
	if err != nil {
		return "", fmt.Errorf("python: install bootstrap: %w", err)
	}
	return p, nil
}

var interp struct {
	mu   sync.Mutex
	path string // set once found
}

// probe prints the interpreter's real path and its version.
const probe = `import sys; print(sys.executable); print("%d.%d" % sys.version_info[:2])`

// Interpreter returns the path of the real python3 interpreter: it runs the
// python3 found on PATH once, asking it for sys.executable, and caches the
// answer. Starting that path directly skips wrappers such as pyenv's shims,
// which cost tens of milliseconds per process. It fails if python3 is not
// installed or is older than 3.9; a failure is not cached.
func Interpreter() (string, error) {
	interp.mu.Lock()
	defer interp.mu.Unlock()
	if interp.path != "" {
		return interp.path, nil
	}
	p, err := resolveInterpreter("python3")
	if err != nil {
		return "", err
	}
	interp.path = p
	return p, nil
}

// resolveInterpreter asks the interpreter named name (looked up on PATH)
// for its real path and checks its version.
func resolveInterpreter(name string) (string, error) {
	bin, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("python: %s not found: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-c", probe)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return "", fmt.Errorf("python: running %s: %w: %s", bin, err, msg)
		}
		return "", fmt.Errorf("python: running %s: %w", bin, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		return "", fmt.Errorf("python: %s answered %q, want its path and version", bin, out)
	}
	exe, version := strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1])
	major, minor, ok := parseVersion(version)
	if !ok {
		return "", fmt.Errorf("python: %s reports version %q", bin, version)
	}
	if major != minVersion[0] || minor < minVersion[1] {
		return "", fmt.Errorf("python: %s is Python %s; the bootstrap needs %d.%d or later", bin, version, minVersion[0], minVersion[1])
	}
	if exe == "" || !filepath.IsAbs(exe) {
		return "", errors.New("python: " + bin + " does not know its own path (sys.executable is " + strconv.Quote(exe) + ")")
	}
	return exe, nil
}

func parseVersion(s string) (major, minor int, ok bool) {
	a, b, found := strings.Cut(s, ".")
	if !found {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(a)
	minor, err2 := strconv.Atoi(b)
	return major, minor, err1 == nil && err2 == nil
}
