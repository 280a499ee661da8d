package python

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const waitTimeout = 15 * time.Second

// Frame types of docs/runtime-protocol.md.
const (
	ftSpecialize = 1
	ftReady      = 2
	ftInitError  = 3
	ftInvoke     = 4
	ftResponse   = 5
	ftError      = 6
	ftBooted     = 7
)

const testARN = "arn:aws:lambda:local:000000000000:function:fn:7"

// python returns the real interpreter, resolved once for the whole run.
func python(t testing.TB) string {
	t.Helper()
	p, err := Interpreter()
	if err != nil {
		t.Fatalf("no usable python3: %v", err)
	}
	return p
}

var pyVersion = sync.OnceValues(func() (string, error) {
	p, err := Interpreter()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(p, "-c", `import sys; print("%d.%d" % sys.version_info[:2])`).Output()
	return strings.TrimSpace(string(out)), err
})

// sitePackages is the layer-style site-packages folder for this python,
// relative to a task root.
func sitePackages(t testing.TB) string {
	t.Helper()
	v, err := pyVersion()
	if err != nil {
		t.Fatal(err)
	}
	return "python/lib/python" + v + "/site-packages"
}

// syncBuffer is a goroutine-safe output buffer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type proc struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

// exitCode waits for the process to exit and returns its exit code.
func (p *proc) exitCode(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("python still running after %v\nstdout:\n%s\nstderr:\n%s", within, p.stdout, p.stderr)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("python: %v", p.err)
	}
	return 0
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// writeFiles writes name → content into dir.
func writeFiles(t testing.TB, dir string, files map[string]string) {
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

// wireFrame is one decoded frame.
type wireFrame struct {
	typ    byte
	header []byte
	body   []byte
}

// appendWireFrame encodes a frame: n (uint32 BE), type, h (uint16 BE),
// header, body.
func appendWireFrame(dst []byte, typ byte, header, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(3+len(header)+len(body)))
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(header)))
	dst = append(dst, header...)
	return append(dst, body...)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// headerFields decodes a frame header into a map, insisting on an object.
func (f wireFrame) headerFields(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(f.header, &m); err != nil || m == nil {
		t.Fatalf("frame type %d: header %q is not a JSON object (%v)", f.typ, f.header, err)
	}
	return m
}

// countingConn counts the reads that returned data.
type countingConn struct {
	net.Conn
	reads atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}

// framedInst is a bootstrap process, the harness holding the other end of
// its socket.
type framedInst struct {
	*proc
	conn     *countingConn
	r        *bufio.Reader
	taskRoot string // real path
	cwd      string // the neutral directory python starts in
	seq      int
}

type framedOptions struct {
	stdout *os.File // python's stdout instead of a buffer
}

// startFramed writes files into a fresh task root and starts the bootstrap
// as Tern starts a pooled instance: minimal environment, a neutral working
// directory, one end of a socketpair as fd 3. It checks that BOOTED comes
// first; nothing is sent.
func startFramed(t testing.TB, files map[string]string, opts *framedOptions) *framedInst {
	t.Helper()
	py := python(t)
	root := t.TempDir()
	taskRoot := filepath.Join(root, "task")
	if err := os.MkdirAll(taskRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, taskRoot, files)
	var err error
	if taskRoot, err = filepath.EvalSymlinks(taskRoot); err != nil {
		t.Fatal(err)
	}
	cwd := filepath.Join(root, "neutral")
	if err := os.Mkdir(cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	bootstrap, err := Install(filepath.Join(root, "runtime"))
	if err != nil {
		t.Fatal(err)
	}

	// CLOEXEC: only this python gets the other end, as fd 3, never one
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
	conn := &countingConn{Conn: c}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, py, bootstrap)
	cmd.Dir = cwd
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TZ=:UTC", "LANG=C.UTF-8", "TERN_RUNTIME_FD=3"}
	cmd.ExtraFiles = []*os.File{theirs}
	p := &proc{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	if opts != nil && opts.stdout != nil {
		cmd.Stdout = opts.stdout
	} else {
		cmd.Stdout = p.stdout
	}
	cmd.Stderr = p.stderr
	err = cmd.Start()
	theirs.Close() // python has its own copy
	if opts != nil && opts.stdout != nil {
		opts.stdout.Close()
	}
	if err != nil {
		cancel()
		conn.Close()
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		conn.Close()
		cancel()
		<-p.done
		if t.Failed() {
			t.Logf("python stdout:\n%s\npython stderr:\n%s", p.stdout, p.stderr)
		}
	})
	f := &framedInst{proc: p, conn: conn, r: bufio.NewReaderSize(conn, 64<<10), taskRoot: taskRoot, cwd: cwd}
	if fr := f.read(t); fr.typ != ftBooted || string(fr.header) != "{}" || len(fr.body) != 0 {
		t.Fatalf("first frame: type %d header %s body %q, want BOOTED {}", fr.typ, fr.header, fr.body)
	}
	return f
}

// functionEnv is the environment Tern would send for handler, plus extra.
func (f *framedInst) functionEnv(handler string, extra map[string]string) map[string]string {
	env := map[string]string{
		"PATH":                            "/usr/local/bin:/usr/bin:/bin",
		"TZ":                              ":UTC",
		"LANG":                            "C.UTF-8",
		"AWS_LAMBDA_FUNCTION_NAME":        "fn",
		"AWS_LAMBDA_FUNCTION_VERSION":     "7",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
		"AWS_LAMBDA_RUNTIME_API":          "127.0.0.1:9",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/tern/fn",
		"AWS_LAMBDA_LOG_STREAM_NAME":      "stream-1",
		"_HANDLER":                        handler,
		"LAMBDA_TASK_ROOT":                f.taskRoot,
	}
	maps.Copy(env, extra)
	return env
}

func (f *framedInst) write(t testing.TB, b []byte) {
	t.Helper()
	if err := f.conn.SetWriteDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.conn.Write(b); err != nil {
		t.Fatalf("writing to the runtime: %v", err)
	}
}

func (f *framedInst) send(t testing.TB, typ byte, header, body []byte) {
	t.Helper()
	f.write(t, appendWireFrame(nil, typ, header, body))
}

func specializeHeader(t testing.TB, handler, taskRoot string, env map[string]string, concurrency int) []byte {
	h := map[string]any{"handler": handler, "taskRoot": taskRoot, "env": env}
	if concurrency != 0 {
		h["concurrency"] = concurrency
	}
	return mustJSON(t, h)
}

func (f *framedInst) specialize(t testing.TB, handler string, env map[string]string, concurrency int) {
	t.Helper()
	f.send(t, ftSpecialize, specializeHeader(t, handler, f.taskRoot, env, concurrency), nil)
}

// read reads the next frame from the runtime.
func (f *framedInst) read(t testing.TB) wireFrame {
	t.Helper()
	fr, err := f.tryRead(waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return fr
}

func (f *framedInst) tryRead(within time.Duration) (wireFrame, error) {
	if err := f.conn.SetReadDeadline(time.Now().Add(within)); err != nil {
		return wireFrame{}, err
	}
	var head [7]byte
	if _, err := readFull(f.r, head[:]); err != nil {
		return wireFrame{}, fmt.Errorf("reading a frame: %w", err)
	}
	n := binary.BigEndian.Uint32(head[0:4])
	h := binary.BigEndian.Uint16(head[5:7])
	if n < 3 || uint32(h) > n-3 {
		return wireFrame{}, fmt.Errorf("bad frame from the runtime: n=%d h=%d", n, h)
	}
	rest := make([]byte, n-3)
	if _, err := readFull(f.r, rest); err != nil {
		return wireFrame{}, fmt.Errorf("reading a frame of %d bytes: %w", n, err)
	}
	return wireFrame{typ: head[4], header: rest[:h], body: rest[h:]}, nil
}

func readFull(r *bufio.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (f *framedInst) wantReady(t testing.TB) {
	t.Helper()
	fr := f.read(t)
	if fr.typ != ftReady {
		t.Fatalf("got frame type %d (header %s, body %s), want READY", fr.typ, fr.header, fr.body)
	}
	if string(fr.header) != "{}" || len(fr.body) != 0 {
		t.Fatalf("READY header %q body %q, want {} and nothing", fr.header, fr.body)
	}
}

// startReady starts a bootstrap, specialises it for handler with the given
// concurrency (0: not sent) and waits for READY.
func startReady(t testing.TB, handler string, files map[string]string, extraEnv map[string]string, concurrency int) *framedInst {
	t.Helper()
	f := startFramed(t, files, nil)
	f.specialize(t, handler, f.functionEnv(handler, extraEnv), concurrency)
	f.wantReady(t)
	return f
}

// invokeHeader returns an INVOKE header for id with the usual fields plus
// extra (a nil value removes a field).
func invokeHeader(t testing.TB, id string, extra map[string]any) []byte {
	h := map[string]any{"id": id, "deadline": time.Now().Add(30 * time.Second).UnixMilli(), "arn": testARN}
	for k, v := range extra {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	return mustJSON(t, h)
}

func (f *framedInst) nextID() string {
	f.seq++
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", time.Now().UnixNano()&0xffffffff, f.seq)
}

// invoke sends an INVOKE and reads its answer, checking the header.
func (f *framedInst) invoke(t testing.TB, event string, extra map[string]any) wireFrame {
	t.Helper()
	id := f.nextID()
	if v, ok := extra["id"].(string); ok {
		id = v
	}
	f.send(t, ftInvoke, invokeHeader(t, id, extra), []byte(event))
	return f.wantAnswer(t, id)
}

func (f *framedInst) wantAnswer(t testing.TB, id string) wireFrame {
	t.Helper()
	fr := f.read(t)
	if got := checkAnswer(t, fr); got != id {
		t.Fatalf("answer header %s, want id %q", fr.header, id)
	}
	return fr
}

// checkAnswer checks that fr is a RESPONSE or ERROR with the header fields
// the protocol allows, and returns its id.
func checkAnswer(t testing.TB, fr wireFrame) string {
	t.Helper()
	h := fr.headerFields(t)
	switch fr.typ {
	case ftResponse:
		if len(h) != 1 {
			t.Errorf("RESPONSE header %s, want only id", fr.header)
		}
	case ftError:
		if len(h) != 2 {
			t.Errorf("ERROR header %s, want id and type", fr.header)
		}
	default:
		t.Fatalf("got frame type %d (header %s, body %s), want RESPONSE or ERROR", fr.typ, fr.header, fr.body)
	}
	id, _ := h["id"].(string)
	return id
}

func wantResponse(t testing.TB, fr wireFrame, want string) {
	t.Helper()
	if fr.typ != ftResponse {
		t.Fatalf("got frame type %d %s %s, want RESPONSE %s", fr.typ, fr.header, fr.body, want)
	}
	if string(fr.body) != want {
		t.Fatalf("response = %s, want %s", fr.body, want)
	}
}

// decodeResponse checks that fr is a RESPONSE and decodes its body into v.
func decodeResponse(t testing.TB, fr wireFrame, v any) {
	t.Helper()
	if fr.typ != ftResponse {
		t.Fatalf("got frame type %d %s %s, want RESPONSE", fr.typ, fr.header, fr.body)
	}
	if err := json.Unmarshal(fr.body, v); err != nil {
		t.Fatalf("response %s: %v", fr.body, err)
	}
}

// wantError checks an ERROR or INIT_ERROR frame: the header's type is the
// body's errorType, and the body has a stackTrace array, which it returns.
func wantError(t testing.TB, fr wireFrame, typ byte, errorType, message string) []string {
	t.Helper()
	if fr.typ != typ {
		t.Fatalf("got frame type %d %s %s, want %d with %s", fr.typ, fr.header, fr.body, typ, errorType)
	}
	var v struct {
		ErrorType    string    `json:"errorType"`
		ErrorMessage string    `json:"errorMessage"`
		StackTrace   *[]string `json:"stackTrace"`
	}
	if err := json.Unmarshal(fr.body, &v); err != nil {
		t.Fatalf("error body %q: %v", fr.body, err)
	}
	if v.StackTrace == nil {
		t.Fatalf("error body %q has no stackTrace array", fr.body)
	}
	if got := fr.headerFields(t)["type"]; got != v.ErrorType {
		t.Errorf("header type = %v, body errorType %q", got, v.ErrorType)
	}
	if v.ErrorType != errorType {
		t.Errorf("errorType = %q, want %q (message %q)", v.ErrorType, errorType, v.ErrorMessage)
	}
	if !strings.Contains(v.ErrorMessage, message) {
		t.Errorf("errorMessage = %q, want it to contain %q", v.ErrorMessage, message)
	}
	return *v.StackTrace
}

// stdoutPipe makes a pipe for a bootstrap's stdout whose read end the test
// drains without blocking: drain returns everything read so far.
func stdoutPipe(t testing.TB) (w *os.File, drain func() string) {
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

// waitStdout polls the process's stdout buffer until it has at least n
// lines, and returns them.
func waitStdout(t testing.TB, p *proc, n int) []string {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		s := p.stdout.String()
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
