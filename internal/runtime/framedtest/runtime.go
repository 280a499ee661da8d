package framedtest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// CountingConn counts the reads that returned data.
type CountingConn struct {
	net.Conn
	Reads atomic.Int64
}

func (c *CountingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.Reads.Add(1)
	}
	return n, err
}

// Options are Start's options.
type Options struct {
	// TaskRoot is the task root Specialize and FunctionEnv name.
	TaskRoot string
	// Stdout, if not nil, is the process's stdout instead of a buffer;
	// Start closes it once the process has its copy.
	Stdout *os.File
	// FatalErrors allows an ERROR frame's header a third field, "fatal".
	FatalErrors bool
}

// Runtime is a bootstrap process started in framed mode, the harness
// holding the other end of its socket.
type Runtime struct {
	*Process
	Conn     *CountingConn
	TaskRoot string // Options.TaskRoot

	r           *bufio.Reader
	env         []string // the process's environment
	fatalErrors bool
	seq         int
}

// Start starts cmdPath with args as Tern starts a pooled instance: in dir,
// with env plus TERN_RUNTIME_FD=3, one end of a socketpair as fd 3. It
// checks that BOOTED comes first; nothing is sent. opts may be nil.
func Start(t testing.TB, cmdPath string, args []string, dir string, env []string, opts *Options) *Runtime {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	// CLOEXEC: only this process gets the other end, as fd 3, never one
	// another test starts meanwhile.
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours := os.NewFile(uintptr(fds[0]), "harness")
	theirs := os.NewFile(uintptr(fds[1]), "runtime")
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		t.Fatal(err)
	}
	conn := &CountingConn{Conn: c}

	env = append(env[:len(env):len(env)], "TERN_RUNTIME_FD=3")
	p, err := startProcess(t, cmdPath, args, dir, env, []*os.File{theirs}, opts.Stdout)
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() }) // before the process is killed
	f := &Runtime{Process: p, Conn: conn, TaskRoot: opts.TaskRoot, r: bufio.NewReaderSize(conn, 64<<10), env: env, fatalErrors: opts.FatalErrors}
	if fr := f.Read(t); fr.Type != Booted || string(fr.Header) != "{}" || len(fr.Body) != 0 {
		t.Fatalf("first frame: type %d header %s body %q, want BOOTED {}", fr.Type, fr.Header, fr.Body)
	}
	return f
}

// FunctionEnv is the environment Tern would send for handler, plus extra.
// TZ and LANG are those the process was started with.
func (f *Runtime) FunctionEnv(handler string, extra map[string]string) map[string]string {
	env := map[string]string{
		"PATH":                            "/usr/local/bin:/usr/bin:/bin",
		"AWS_LAMBDA_FUNCTION_NAME":        "fn",
		"AWS_LAMBDA_FUNCTION_VERSION":     "7",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
		"AWS_LAMBDA_RUNTIME_API":          "127.0.0.1:9",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/tern/fn",
		"AWS_LAMBDA_LOG_STREAM_NAME":      "stream-1",
		"_HANDLER":                        handler,
		"LAMBDA_TASK_ROOT":                f.TaskRoot,
	}
	for _, kv := range f.env {
		if k, v, _ := strings.Cut(kv, "="); k == "TZ" || k == "LANG" {
			env[k] = v
		}
	}
	maps.Copy(env, extra)
	return env
}

// Write writes b to the runtime.
func (f *Runtime) Write(t testing.TB, b []byte) {
	t.Helper()
	if err := f.Conn.SetWriteDeadline(time.Now().Add(WaitTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Conn.Write(b); err != nil {
		t.Fatalf("writing to the runtime: %v", err)
	}
}

// Send writes a frame to the runtime.
func (f *Runtime) Send(t testing.TB, typ byte, header, body []byte) {
	t.Helper()
	f.Write(t, AppendFrame(nil, typ, header, body))
}

// Specialize sends SPECIALIZE for handler in the task root with env and
// concurrency (0: not sent).
func (f *Runtime) Specialize(t testing.TB, handler string, env map[string]string, concurrency int) {
	t.Helper()
	f.Send(t, Specialize, SpecializeHeader(t, handler, f.TaskRoot, env, concurrency), nil)
}

// SpecializeReady specialises the runtime for handler with FunctionEnv and
// concurrency (0: not sent) and waits for READY.
func (f *Runtime) SpecializeReady(t testing.TB, handler string, extraEnv map[string]string, concurrency int) {
	t.Helper()
	f.Specialize(t, handler, f.FunctionEnv(handler, extraEnv), concurrency)
	f.WantReady(t)
}

// Read reads the next frame from the runtime.
func (f *Runtime) Read(t testing.TB) Frame {
	t.Helper()
	fr, err := f.TryRead(WaitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return fr
}

// TryRead reads the next frame from the runtime, waiting at most within.
func (f *Runtime) TryRead(within time.Duration) (Frame, error) {
	if err := f.Conn.SetReadDeadline(time.Now().Add(within)); err != nil {
		return Frame{}, err
	}
	var head [7]byte
	if _, err := io.ReadFull(f.r, head[:]); err != nil {
		return Frame{}, fmt.Errorf("reading a frame: %w", err)
	}
	n := binary.BigEndian.Uint32(head[0:4])
	h := binary.BigEndian.Uint16(head[5:7])
	if n < 3 || uint32(h) > n-3 {
		return Frame{}, fmt.Errorf("bad frame from the runtime: n=%d h=%d", n, h)
	}
	rest := make([]byte, n-3)
	if _, err := io.ReadFull(f.r, rest); err != nil {
		return Frame{}, fmt.Errorf("reading a frame of %d bytes: %w", n, err)
	}
	return Frame{Type: head[4], Header: rest[:h], Body: rest[h:]}, nil
}

// WantReady reads the next frame, which must be READY.
func (f *Runtime) WantReady(t testing.TB) {
	t.Helper()
	fr := f.Read(t)
	if fr.Type != Ready {
		t.Fatalf("got frame type %d (header %s, body %s), want READY", fr.Type, fr.Header, fr.Body)
	}
	if string(fr.Header) != "{}" || len(fr.Body) != 0 {
		t.Fatalf("READY header %q body %q, want {} and nothing", fr.Header, fr.Body)
	}
}

// NextID returns a fresh request id.
func (f *Runtime) NextID() string {
	f.seq++
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", time.Now().UnixNano()&0xffffffff, f.seq)
}

// Invoke sends an INVOKE of event (header: InvokeHeader with extra; the id
// extra["id"] or NextID) and reads its answer, checking the header.
func (f *Runtime) Invoke(t testing.TB, event string, extra map[string]any) Frame {
	t.Helper()
	id := f.NextID()
	if v, ok := extra["id"].(string); ok {
		id = v
	}
	f.Send(t, Invoke, InvokeHeader(t, id, extra), []byte(event))
	return f.WantAnswer(t, id)
}

// WantAnswer reads the next frame, which must be the answer to id.
func (f *Runtime) WantAnswer(t testing.TB, id string) Frame {
	t.Helper()
	fr := f.Read(t)
	if got := f.CheckAnswer(t, fr); got != id {
		t.Fatalf("answer header %s, want id %q", fr.Header, id)
	}
	return fr
}

// ReadAnswer reads the next frame, which must be an answer (CheckAnswer)
// with an id, and returns the id and the frame.
func (f *Runtime) ReadAnswer(t testing.TB) (string, Frame) {
	t.Helper()
	fr := f.Read(t)
	id := f.CheckAnswer(t, fr)
	if id == "" {
		t.Fatalf("answer header %s has no id", fr.Header)
	}
	return id, fr
}

// CheckAnswer checks that fr is a RESPONSE or ERROR with the header fields
// the protocol allows, and returns its id.
func (f *Runtime) CheckAnswer(t testing.TB, fr Frame) string {
	t.Helper()
	h := fr.HeaderFields(t)
	switch fr.Type {
	case Response:
		if len(h) != 1 {
			t.Errorf("RESPONSE header %s, want only id", fr.Header)
		}
	case Error:
		_, fatal := h["fatal"]
		if f.fatalErrors && !(len(h) == 2 || len(h) == 3 && fatal) {
			t.Errorf("ERROR header %s, want id and type (and fatal)", fr.Header)
		} else if !f.fatalErrors && len(h) != 2 {
			t.Errorf("ERROR header %s, want id and type", fr.Header)
		}
	default:
		t.Fatalf("got frame type %d (header %s, body %s), want RESPONSE or ERROR", fr.Type, fr.Header, fr.Body)
	}
	id, _ := h["id"].(string)
	return id
}

// WantNothingWithin checks that the runtime sends no frame for d.
func (f *Runtime) WantNothingWithin(t testing.TB, d time.Duration) {
	t.Helper()
	if err := f.Conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	b, err := f.r.Peek(1)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("runtime sent %q (err %v), want nothing for %v", b, err, d)
	}
}
