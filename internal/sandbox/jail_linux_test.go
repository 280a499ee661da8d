package sandbox

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/elastic/go-seccomp-bpf/arch"
)

// newTestJail is a jail in a temporary directory, closed when the test
// ends; the test is skipped where tern could not jail (not root).
func newTestJail(t *testing.T, tmpMB int) *Jail {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "jail")
	j, err := NewJail(JailConfig{Dir: dir, TmpMB: tmpMB})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := j.Close(); err != nil {
			t.Error(err)
		}
		if ms, _ := mountsUnder(dir); len(ms) > 0 {
			t.Errorf("mounts left after Close: %v", ms)
		}
	})
	if !j.On() {
		if os.Geteuid() == 0 {
			t.Fatalf("root cannot jail: %s", j.why)
		}
		t.Skipf("no jail here: %s", j.why)
	}
	return j
}

// runJailed runs a shell script in j and returns its output.
func runJailed(t *testing.T, spec Spec, script string, during func(*Process)) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	spec.Path, spec.Args = "/bin/sh", []string{"-c", script}
	spec.Stdout, spec.Stderr = w, w
	p, err := Start(spec)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if during != nil {
		during(p)
	}
	out := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(r); out <- b }()
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		p.Kill()
		t.Fatal("the jailed script did not end")
	}
	b := <-out
	// Its directory goes once it exited.
	if p.slot != nil {
		if _, err := os.Stat(p.slot.dir); !os.IsNotExist(err) {
			t.Errorf("the instance's directory %s is left: %v", p.slot.dir, err)
		}
	}
	return string(b)
}

func writeCode(t *testing.T) string {
	t.Helper()
	code := t.TempDir()
	if err := os.WriteFile(filepath.Join(code, "f"), []byte("the code\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(code, 0o755); err != nil {
		t.Fatal(err)
	}
	return code
}

func TestJailedProcess(t *testing.T) {
	j := newTestJail(t, 4)
	code := writeCode(t)
	const uid = 2000000123
	// A file tern inherited without close-on-exec must not reach the jail.
	leak, err := syscall.Open(filepath.Join(code, "f"), syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(leak)
	// The function's environment reaches its program, not the helper,
	// which runs as root (GODEBUG would make its Go runtime talk).
	env := []string{"GODEBUG=inittrace=1", "FN_VAR=fn-value"}
	out := runJailed(t, Spec{Jail: j, Code: code, UID: uid, GID: uid, Dir: TaskRoot, Env: env}, `
		echo "env $FN_VAR"
		echo "fds $(ls /proc/self/fd | tr '\n' ' ')"
		echo "session $(cut -d' ' -f6,7 /proc/self/stat)"
		echo "ids $(id -u) $(id -g) $$ $(pwd)"
		cat /var/task/f
		touch /var/task/new 2>/dev/null && echo "code writable" || echo "code read-only"
		touch /new 2>/dev/null && echo "root writable" || echo "root read-only"
		echo "root: $(ls / | tr '\n' ' ')"
		[ -e /proc/`+strconv.Itoa(os.Getpid())+`/status ] && echo "the test is in sight" || echo "the test is out of sight"
		dd if=/dev/zero of=/tmp/a bs=1M count=2 2>/dev/null && echo "2 MB in /tmp"
		dd if=/dev/zero of=/tmp/b bs=1M count=8 2>/dev/null || echo "/tmp full"
		grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\t\n' '  '
		echo
	`, nil)
	t.Logf("%s", out)
	for _, want := range []string{
		"ids " + strconv.Itoa(uid) + " " + strconv.Itoa(uid) + " 1 /var/task", "the test is out of sight",
		"the code", "code read-only", "root read-only", "2 MB in /tmp", "/tmp full",
		"CapEff: 0000000000000000", "CapBnd: 0000000000000000", "NoNewPrivs: 1", "Seccomp: 2",
		"env fn-value", "fds 0 1 2 3 \n", // 3: ls's own /proc/self/fd
		"session 1 0", // a session of its own, no controlling terminal
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "init ") {
		t.Errorf("the helper saw the function's GODEBUG")
	}
	for _, hidden := range []string{"root ", "home "} {
		if strings.Contains(out, "root: ") && strings.Contains(out[strings.Index(out, "root: "):], hidden) {
			t.Errorf("the jail's root shows %q", hidden)
		}
	}
}

// A pooled process starts without code, as root holding only CAP_SETUID
// and CAP_SETGID; the code mounted for it later appears at TaskRoot,
// read-only.
func TestJailedPooledProcessGetsItsCodeLater(t *testing.T) {
	j := newTestJail(t, 0)
	code := writeCode(t)
	out := runJailed(t, Spec{Jail: j, Pooled: true}, `
		echo "uid $(id -u)"
		grep -E '^CapEff:' /proc/self/status
		ls /var/task | wc -l
		touch /tmp/listed
		while [ ! -e /var/task/f ]; do sleep 0.01; done
		cat /var/task/f
		touch /var/task/new 2>/dev/null && echo "code writable" || echo "code read-only"
	`, func(p *Process) {
		// It lists the empty slot first, and says so in its /tmp, which
		// the host sees in its slot (a /tmp disk; a tmpfs only it sees).
		listed := filepath.Join(p.slot.tmp, "listed")
		deadline := time.Now().Add(20 * time.Second)
		if j.tmp == nil {
			deadline = time.Now().Add(100 * time.Millisecond)
		}
		for ; time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(listed); err == nil {
				break
			}
		}
		if err := p.MountCode(code); err != nil {
			t.Error(err)
		}
	})
	t.Logf("%s", out)
	for _, want := range []string{"uid 0", "CapEff:\t00000000000000c0", "\n0\n", "the code", "code read-only"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(code, "new")); err == nil {
		t.Error("the jailed process wrote into the code")
	}
}

func TestJailedProcessMissingProgram(t *testing.T) {
	j := newTestJail(t, 0)
	_, err := Start(Spec{Jail: j, Pooled: true, Path: "/no/such/interpreter"})
	if !os.IsNotExist(err) && !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("err = %v, want not found", err)
	}
	if ents, _ := os.ReadDir(j.cfg.Dir); len(ents) != 0 {
		t.Errorf("left in the jail dir: %v", ents)
	}
}

func TestSeccompPolicyAssembles(t *testing.T) {
	info, err := arch.GetInfo("")
	if err != nil {
		t.Skip(err)
	}
	var missing []string
	for _, n := range deniedSyscalls {
		if _, ok := info.SyscallNames[n]; !ok {
			missing = append(missing, n)
		}
	}
	t.Logf("%s lacks %v", info.Name, missing)
	if len(missing) > 4 {
		t.Errorf("%d denied syscalls unknown on %s: %v", len(missing), info.Name, missing)
	}
	prog, err := seccompProgram()
	if err != nil || len(prog) < len(deniedSyscalls) {
		t.Fatalf("program of %d instructions, %v", len(prog), err)
	}
}

func TestLandlockAccessByABI(t *testing.T) {
	for _, c := range []struct {
		abi  int
		want uint64
	}{{1, 0x1fff}, {2, 0x3fff}, {3, 0x7fff}, {4, 0x7fff}, {5, 0xffff}, {7, 0xffff}} {
		if got := landlockFS(c.abi); got != c.want {
			t.Errorf("abi %d: %#x, want %#x", c.abi, got, c.want)
		}
	}
}

// BenchmarkStart compares starting a program jailed and not, from Start
// to its first output (what a cold start waits for; its exit and clean-up
// are outside the clock): what the jail adds to a start no runtime pool
// hides.
func BenchmarkStart(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "jail")
	j, err := NewJail(JailConfig{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	code := b.TempDir()
	echo := []string{"x"}
	jailed := func(path string, args []string) Spec {
		return Spec{Path: path, Args: args, Jail: j, Code: code, UID: 2000000999, GID: 2000000999, Dir: TaskRoot}
	}
	for _, c := range []struct {
		name string
		spec Spec
	}{
		{"echo/plain", Spec{Path: "/bin/echo", Args: echo}},
		{"echo/jailed", jailed("/bin/echo", echo)},
		{"node/plain", Spec{Path: "/usr/bin/node", Args: []string{"-e", "console.log(1)"}}},
		{"node/jailed", jailed("/usr/bin/node", []string{"-e", "console.log(1)"})},
	} {
		b.Run(c.name, func(b *testing.B) {
			if c.spec.Jail != nil && !j.On() {
				b.Skip("no jail here")
			}
			for b.Loop() {
				b.StopTimer()
				r, w, err := os.Pipe()
				if err != nil {
					b.Fatal(err)
				}
				spec := c.spec
				spec.Stdout = w
				b.StartTimer()
				p, err := Start(spec)
				if err != nil {
					b.Fatal(err)
				}
				w.Close()
				if _, err := r.Read(make([]byte, 1)); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				r.Close()
				<-p.Done()
				b.StartTimer()
			}
		})
	}
}

// The Runtime API's peer check finds the client's uid over IPv4 and over
// an IPv6 socket connected to a v4-mapped address, and refuses another.
func TestPeerUIDListener(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var allowed atomic.Int64
	allowed.Store(int64(os.Geteuid()))
	pl := &PeerUIDListener{Listener: ln, Allowed: func() int { return int(allowed.Load()) }}
	defer pl.Close()
	go func() {
		for {
			c, err := pl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b := make([]byte, 1)
				if _, err := c.Read(b); err == nil {
					_, _ = c.Write(b)
				}
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	echo := func(network, addr string) error {
		c, err := net.Dial(network, addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte{7}); err != nil {
			return err
		}
		b := make([]byte, 1)
		_, err = c.Read(b)
		return err
	}
	v4 := "127.0.0.1:" + strconv.Itoa(port)
	if err := echo("tcp4", v4); err != nil {
		t.Errorf("IPv4 client of the allowed uid: %v", err)
	}
	// Go dials v4-mapped addresses over IPv4; a raw AF_INET6 socket needs
	// the kernel's dual stack: use python, as other runtimes' clients do.
	py := `import socket,sys
s=socket.socket(socket.AF_INET6); s.settimeout(5); s.connect(("::ffff:127.0.0.1",` + strconv.Itoa(port) + `)); s.send(b"x"); sys.exit(0 if s.recv(1)==b"x" else 1)`
	if out, err := exec.Command("python3", "-c", py).CombinedOutput(); err != nil {
		t.Errorf("IPv6 (v4-mapped) client of the allowed uid: %v %s", err, out)
	}
	allowed.Store(12345) // not ours
	if err := echo("tcp4", v4); err == nil {
		t.Error("a client of another uid was served")
	}
}

// A jailed process's /tmp is a disk of its own, of its size: storage the
// kernel writes back under the memory limit, never the process's memory.
func TestJailedTmpDisk(t *testing.T) {
	j := newTestJail(t, 16)
	if j.tmp == nil {
		t.Fatalf("no /tmp disks here: %s", j.tmpWhy)
	}
	for _, c := range []struct {
		spec Spec
		size string
	}{
		{Spec{Jail: j, Pooled: true}, "size 15\n"},                                                       // a pooled one: the jail's default
		{Spec{Jail: j, Code: writeCode(t), UID: 2345, GID: 2345, Dir: TaskRoot, TmpMB: 32}, "size 30\n"}, // its function's
	} {
		out := runJailed(t, c.spec, `
			df -m /tmp | tail -1 | awk '{print "size " $2}'
			dd if=/dev/zero of=/tmp/a bs=1M count=10 2>/dev/null && echo "10 MB in /tmp"
			dd if=/dev/zero of=/tmp/b bs=1M count=40 2>/dev/null || echo "/tmp full"
			ls -ld /tmp | cut -c1-10
			ls /tmp | tr '\n' ' '; echo
		`, nil)
		t.Logf("%s", out)
		for _, want := range []string{c.size, "10 MB in /tmp", "/tmp full", "drwxrwxrwt", "\na b \n"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q", want)
			}
		}
	}
	// Nothing of the disks is left: no image, no loop device bound to one.
	if ents, _ := os.ReadDir(j.cfg.Dir); len(ents) != 0 {
		t.Errorf("left in the jail dir: %v", ents)
	}
}

// MaxRSS is the process's own peak, also after it exited: not its rusage,
// which counts the memory of the fork of this (large) process it began as.
func TestMaxRSSIsTheProcesssOwn(t *testing.T) {
	ballast := make([]byte, 256<<20) // this process: well over 256 MB resident
	for i := range ballast {
		ballast[i] = byte(i)
	}
	j := newTestJail(t, 0)
	for name, spec := range map[string]Spec{
		"jailed":     {Jail: j, Code: writeCode(t), UID: 2345, GID: 2345, Dir: TaskRoot},
		"not jailed": {},
	} {
		t.Run(name, func(t *testing.T) {
			spec.Path, spec.Args = "/bin/sh", []string{"-c", "sleep 0.5"}
			p, err := Start(spec)
			if err != nil {
				t.Fatal(err)
			}
			var alive int64
			for alive == 0 {
				alive = p.MaxRSS()
			}
			<-p.Done()
			after := p.MaxRSS()
			if alive > 64<<20 || after != alive {
				t.Errorf("MaxRSS %d MB while it ran, %d MB after it exited; want a shell's few MB both times (this process: %d MB)",
					alive>>20, after>>20, len(ballast)>>20)
			}
		})
	}
	_ = ballast[len(ballast)-1]
}
