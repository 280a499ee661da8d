package framedtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SyncBuffer is a goroutine-safe output buffer.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WriteFiles writes name → content into dir, names being slash-separated
// paths relative to dir.
func WriteFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Prepare lays out a fresh directory for one bootstrap process: files
// written into a task root (returned as its real path), an empty neutral
// working directory beside it, and the bootstrap, installed by install into
// a runtime directory beside them (returned as its path).
func Prepare(t testing.TB, files map[string]string, install func(dir string) (string, error)) (taskRoot, cwd, bootstrap string) {
	t.Helper()
	root := t.TempDir()
	taskRoot = filepath.Join(root, "task")
	if err := os.MkdirAll(taskRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	WriteFiles(t, taskRoot, files)
	var err error
	if taskRoot, err = filepath.EvalSymlinks(taskRoot); err != nil {
		t.Fatal(err)
	}
	cwd = filepath.Join(root, "neutral")
	if err := os.Mkdir(cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	if bootstrap, err = install(filepath.Join(root, "runtime")); err != nil {
		t.Fatal(err)
	}
	return taskRoot, cwd, bootstrap
}

// Process is a started runtime process, its output collected.
type Process struct {
	Cmd    *exec.Cmd
	Stdout *SyncBuffer // unless Options.Stdout replaced it
	Stderr *SyncBuffer
	name   string // for messages: the command's base name
	done   chan struct{}
	err    error
}

// StartProcess starts cmdPath with args in dir with exactly env, stdout and
// stderr going to buffers. The process is killed when the test ends, or at
// the test's deadline (go test -timeout) if it hangs; a failed test logs
// its output.
func StartProcess(t testing.TB, cmdPath string, args []string, dir string, env []string) *Process {
	t.Helper()
	p, err := startProcess(t, cmdPath, args, dir, env, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startProcess is StartProcess giving the process extra (fd 3 on) and, if
// not nil, stdout instead of a buffer. It closes extra and stdout once the
// process has its copies.
func startProcess(t testing.TB, cmdPath string, args []string, dir string, env []string, extra []*os.File, stdout *os.File) (*Process, error) {
	// Not a fixed lifetime: a long warm run on a busy machine takes what it
	// takes (300,000 invocations once outlived 60 s under load).
	ctx, cancel := context.WithCancel(context.Background())
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := d.Deadline(); ok {
			cancel()
			ctx, cancel = context.WithDeadline(context.Background(), deadline)
		}
	}
	cmd := exec.CommandContext(ctx, cmdPath, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.ExtraFiles = extra
	p := &Process{Cmd: cmd, Stdout: &SyncBuffer{}, Stderr: &SyncBuffer{}, name: filepath.Base(cmdPath), done: make(chan struct{})}
	if stdout != nil {
		cmd.Stdout = stdout
	} else {
		cmd.Stdout = p.Stdout
	}
	cmd.Stderr = p.Stderr
	err := cmd.Start()
	for _, f := range extra {
		f.Close()
	}
	if stdout != nil {
		stdout.Close()
	}
	if err != nil {
		cancel()
		return nil, err
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel() // kills the process if still running
		<-p.done
		if t.Failed() {
			t.Logf("%s stdout:\n%s\n%s stderr:\n%s", p.name, p.Stdout, p.name, p.Stderr)
		}
	})
	return p, nil
}

// ExitCode waits for the process to exit and returns its exit code.
func (p *Process) ExitCode(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("%s still running after %v\nstdout:\n%s\nstderr:\n%s", p.name, within, p.Stdout, p.Stderr)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("%s: %v", p.name, p.err)
	}
	return 0
}

// WantExit checks that the process exits with code within WaitTimeout.
func (p *Process) WantExit(t testing.TB, code int) {
	t.Helper()
	if got := p.ExitCode(t, WaitTimeout); got != code {
		t.Errorf("exit code = %d, want %d", got, code)
	}
}

// WantProtocolError checks that the process exits with code 1 and a
// protocol error on stderr that mentions each of parts.
func (p *Process) WantProtocolError(t testing.TB, parts ...string) {
	t.Helper()
	p.WantExit(t, 1)
	msg := p.Stderr.String()
	for _, part := range append([]string{"protocol error"}, parts...) {
		if !strings.Contains(msg, part) {
			t.Errorf("stderr = %q, want a protocol error mentioning %q", msg, part)
		}
	}
}

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// WaitLines polls the process's stdout buffer until it has at least n
// lines, and returns them.
func (p *Process) WaitLines(t testing.TB, n int) []string {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		s := p.Stdout.String()
		lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		if s != "" && len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("stdout has %d lines, want %d:\n%s", len(lines), n, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitOutput polls until buf contains want (bounded by WaitTimeout).
func WaitOutput(t testing.TB, buf *SyncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !strings.Contains(buf.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output never contained %q:\n%s", want, buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// StdoutPipe makes a pipe for a process's stdout (Options.Stdout) whose read
// end the test drains without blocking: drain returns everything read so
// far.
func StdoutPipe(t testing.TB) (w *os.File, drain func() string) {
	t.Helper()
	var pfd [2]int
	if err := syscall.Pipe2(pfd[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	if err := syscall.SetNonblock(pfd[0], true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(pfd[0]) })
	var out []byte
	buf := make([]byte, 64<<10)
	drain = func() string {
		for {
			n, err := syscall.Read(pfd[0], buf)
			if n > 0 {
				out = append(out, buf[:n]...)
				continue
			}
			if err == nil || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				return string(out)
			}
			t.Fatalf("reading stdout: %v", err)
		}
	}
	return os.NewFile(uintptr(pfd[1]), "stdout"), drain
}
