// Package sandbox starts instance processes with the controls this host
// allows: a session and process group of their own (so an instance is
// killed with every child it started, and has no controlling terminal), an
// environment built only from what the caller gives (never the server's
// own), the working directory, SIGKILL if tern's thread that started it
// dies, no stdin, no core dumps.
//
// With a Jail (jail_linux.go, helper_linux.go; tern as root), the process
// is started through a re-exec of the tern binary that builds it a root of
// its own in new mount, PID, IPC and UTS namespaces (the code read-only at
// TaskRoot, a private /tmp), drops every capability and its uid, and
// applies no_new_privs, Landlock and seccomp before it execs the program.
//
// Confine puts a started process into a cgroup of its own (memory, pids,
// CPU weight; see Controls for what this host allows); Start does it when
// the Spec names a cgroup, before a jailed program runs. The cgroup's
// processes are killed with the instance and the cgroup removed once it
// exited; OOMKilled then says whether the kernel killed it for its memory.
// Where cgroups cannot be used (no root, no delegation), Confine does
// nothing and the process runs without them.
//
// Descendants that leave the process group are found through /proc and
// killed too.
package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// errExited: the process was gone before it could be confined.
var errExited = errors.New("sandbox: cgroup: the process exited")

// Spec describes the process to start.
type Spec struct {
	Path   string   // absolute path of the program
	Args   []string // arguments after the program name
	Dir    string   // working directory
	Env    []string // complete environment, KEY=VALUE
	Stdout *os.File // write ends of the output pipes
	Stderr *os.File
	// ExtraFiles become file descriptors 3, 4, ... in the process.
	ExtraFiles []*os.File
	// NoNetwork starts the process in a network namespace of its own
	// (where the host allows it: NetworkControl).
	NoNetwork bool

	// Jail, when on, starts the process jailed; then Path and Dir are
	// paths inside the jail, and:
	Jail *Jail
	// Code is the host directory shown read-only at TaskRoot; empty for a
	// pooled process, which gets its code later (MountCode).
	Code string
	// UID and GID the process runs as (a function's own). Pooled: it
	// starts as root with only CAP_SETUID and CAP_SETGID, and drops to
	// its function's uid itself before it loads the function's code.
	UID, GID int
	Pooled   bool
	// TmpMB is the size of its /tmp, MB (0: the jail's default, which a
	// pooled process has).
	TmpMB int

	// Cgroup, when set, names a cgroup of the process's own, with Limits
	// (see Confine). Jailed, the process is moved while the jail is built
	// (moving a process costs the kernel milliseconds, mostly waiting) and
	// the program is exec'd only once it is in; otherwise it is moved
	// right after it started. OnConfine, if set, learns how that went.
	Cgroup    string
	Limits    Limits
	OnConfine func(error)
}

// Process is a started instance process.
type Process struct {
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	killOnce sync.Once
	killed   atomic.Bool // Kill was called
	byItself bool        // it exited before Kill was called; set before done is closed

	// mu guards cg and exited: Confine must not add a cgroup once the
	// exit was seen, or nobody would remove it.
	// confining is closed once Start's move into the cgroup was tried.
	confining chan struct{}
	mu        sync.Mutex
	cg        *cgroup
	exited    bool
	oom       bool // set before done is closed

	// The high-water mark only grows, so a reading younger than
	// rssRefresh is reused: under load this saves a /proc read per
	// invocation at the price of a slightly late figure.
	rssAt  atomic.Int64 // unix nanoseconds of the last reading
	rssMax atomic.Int64
	// The last CPU reading and when it was made (see CPUTime).
	cpuLast atomic.Pointer[cpuReading]

	// /proc/<pid>/stat stays open while the process runs: re-reading it
	// costs a pread, not an open and a close.
	statOnce sync.Once
	stat     *os.File // nil if it could not be opened

	jail *Jail // nil: not jailed
	slot *slot
}

const rssRefresh = 50 * time.Millisecond

// Start starts the process in a session (and process group) of its own:
// no controlling terminal.
func Start(spec Spec) (*Process, error) {
	if spec.Path == "" {
		return nil, errors.New("sandbox: no program")
	}
	p := &Process{done: make(chan struct{}), confining: make(chan struct{})}
	var cmd *exec.Cmd
	var gate *os.File     // jailed: written once the process is in its cgroup
	var theirs []*os.File // the helper's ends, closed here once it started
	if spec.Jail.On() {
		var err error
		if cmd, gate, theirs, err = p.jailed(&spec); err != nil {
			return nil, err
		}
	} else {
		cmd = exec.Command(spec.Path, spec.Args...)
		cmd.Dir = spec.Dir
		cmd.Env = spec.Env
		if cmd.Env == nil {
			cmd.Env = []string{} // nil would mean "inherit the server's"
		}
		cmd.ExtraFiles = spec.ExtraFiles
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
		if spec.NoNetwork && NetworkControl().On {
			cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNET
		}
	}
	cmd.Stdout = spec.Stdout
	cmd.Stderr = spec.Stderr
	err := cmd.Start()
	for _, f := range theirs {
		f.Close()
	}
	if err != nil {
		if gate != nil {
			gate.Close()
		}
		if p.slot != nil {
			p.jail.releaseSlot(p.slot)
		}
		return nil, fmt.Errorf("sandbox: start %s: %w", spec.Path, err)
	}
	noCoreDumps(cmd.Process.Pid)
	p.cmd = cmd
	if spec.Cgroup == "" {
		close(p.confining)
	} else {
		confine := func() {
			err := p.Confine(spec.Cgroup, spec.Limits)
			close(p.confining)
			if spec.OnConfine != nil && !errors.Is(err, errExited) {
				spec.OnConfine(err)
			}
		}
		if gate == nil {
			confine()
		} else {
			go func() {
				confine()
				_, _ = gate.Write([]byte{1}) // the helper may exec now
				gate.Close()
			}()
		}
	}
	go func() {
		// Not reaped before the move into its cgroup was tried: until
		// then its pid stays its own, even if it died.
		<-p.confining
		p.waitErr = cmd.Wait()
		p.byItself = !p.killed.Load()
		p.mu.Lock()
		p.exited = true
		cg := p.cg
		p.mu.Unlock()
		if cg != nil {
			// Read once, when the process is gone: no cgroup reads while
			// it runs.
			p.oom = cg.oomKilled(p.signaledKill())
		}
		if p.slot != nil {
			// Its mount point goes before Done says it is gone.
			p.jail.releaseSlot(p.slot)
		}
		close(p.done)
		p.statOnce.Do(func() {}) // no opening after this
		if p.stat != nil {
			p.stat.Close()
		}
		if cg != nil {
			// What the instance left behind goes with it.
			cg.killAll()
			cg.remove()
		}
	}()
	return p, nil
}

// jailed is the command of the helper that jails spec's program (p gets
// its slot), the write end of its gate (when it has a cgroup to wait
// for), and the files to close once it started. The helper starts with an
// empty environment: the program's, which is the function's, must not
// reach code that runs as root (LD_PRELOAD and the like); it travels in
// the spec, through a pipe (never in argv, which every user can read).
func (p *Process) jailed(spec *Spec) (cmd *exec.Cmd, gate *os.File, theirs []*os.File, err error) {
	j := spec.Jail
	if !strings.HasPrefix(spec.Path, TaskRoot+"/") {
		// A program of the host's (an interpreter): if it is missing, say
		// so now, as an unjailed start would, not as the helper's failure.
		if _, err := os.Stat(spec.Path); err != nil {
			return nil, nil, nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	s, err := j.newSlot(newSlotName())
	if err != nil {
		return nil, nil, nil, err
	}
	fail := func(err error) (*exec.Cmd, *os.File, []*os.File, error) {
		for _, f := range theirs {
			f.Close()
		}
		if gate != nil {
			gate.Close()
		}
		j.releaseSlot(s)
		return nil, nil, nil, err
	}
	hs := &helperSpec{
		Code: spec.Code, UID: spec.UID, GID: spec.GID, Pooled: spec.Pooled,
		Path: spec.Path, Args: spec.Args, Dir: spec.Dir, Env: spec.Env,
		Keep: len(spec.ExtraFiles),
	}
	extra := append([]*os.File(nil), spec.ExtraFiles...)
	if spec.Cgroup != "" {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(fmt.Errorf("sandbox: %w", err))
		}
		theirs, gate = append(theirs, r), w
		hs.Gate = 3 + len(extra)
		extra = append(extra, r)
	}
	specR, err := j.writeSpec(s, hs)
	if err != nil {
		return fail(err)
	}
	theirs = append(theirs, specR)
	cmd = j.command(3+len(extra), spec.NoNetwork)
	cmd.ExtraFiles = append(extra, specR)
	// Its /tmp disk before it starts (a pooled process's is the jail's
	// default size).
	if err := j.mountTmp(s, spec.TmpMB); err != nil {
		return fail(err)
	}
	p.jail, p.slot = j, s
	return cmd, gate, theirs, nil
}

func newSlotName() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails on Linux
	return hex.EncodeToString(b[:])
}

// MountCode shows dir, read-only, at TaskRoot in a pooled jailed
// process. It does nothing for a process not jailed.
func (p *Process) MountCode(dir string) error {
	if p.slot == nil {
		return nil
	}
	return p.jail.mountCode(p.slot, dir)
}

// Jailed says whether the process runs in a jail.
func (p *Process) Jailed() bool { return p.slot != nil }

// signaledKill: the process was killed by a SIGKILL Tern did not send.
func (p *Process) signaledKill() bool {
	if p.killed.Load() || p.cmd.ProcessState == nil {
		return false
	}
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// Confine moves the process into a new cgroup, name, with lim's limits,
// in every cgroup hierarchy this host allows (none: it does nothing). On
// error the process runs on without a cgroup. A process is confined once;
// its children started before the move stay outside (the process group
// still holds them).
func (p *Process) Confine(name string, lim Limits) error {
	s := host()
	if len(s.hs) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return errExited
	}
	if p.cg != nil {
		return errors.New("sandbox: cgroup: the process is confined already")
	}
	cg, err := newCgroup(s, name, lim)
	if err != nil {
		return err
	}
	if err := cg.add(p.cmd.Process.Pid); err != nil {
		cg.killAll() // in case it got into one hierarchy
		cg.remove()
		return err
	}
	p.cg = cg
	return nil
}

// Limit sets the memory limit and CPU weight of a process confined
// without them (Confine with a zero MemoryMB): moving a process between
// cgroups costs the kernel milliseconds, so a pooled process is confined
// when it starts and only limited when it is given its function. False
// if the process has no cgroup.
func (p *Process) Limit(lim Limits) (bool, error) {
	<-p.confining
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cg == nil {
		return false, nil
	}
	if p.exited {
		return true, nil // nothing left to limit
	}
	return true, p.cg.limit(host(), lim.MemoryMB)
}

// OOMKilled reports whether the kernel killed the process, or another
// process of its cgroup, for exceeding its memory limit. Valid once Done
// is closed; false before.
func (p *Process) OOMKilled() bool {
	select {
	case <-p.done:
		return p.oom
	default:
		return false
	}
}

// ExitedByItself reports whether the process ended before Kill was called
// (it exited, crashed or was killed by the kernel), once Done is closed;
// false before.
func (p *Process) ExitedByItself() bool {
	select {
	case <-p.done:
		return p.byItself
	default:
		return false
	}
}

// Pid is the process id (also its process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitError describes how the process ended; valid after Done is closed.
func (p *Process) ExitError() error { return p.waitErr }

// CPUTime is the user plus system CPU time of all the process's threads
// so far: while it runs from /proc (which counts in 10 ms ticks), once it
// exited from its rusage. False if unknown.
func (p *Process) CPUTime() (time.Duration, bool) {
	select {
	case <-p.done:
		if st := p.cmd.ProcessState; st != nil {
			return st.UserTime() + st.SystemTime(), true
		}
		return 0, false
	default:
	}
	// The kernel counts in ticks of clockTick: a reading younger than one
	// is reused (under load that saves a read per invocation; the time
	// shows in a later reading, so per-instance sums stay whole).
	now := time.Since(epoch) // monotonic
	last := p.cpuLast.Load()
	if last != nil && now-last.at < clockTick {
		return last.cpu, true
	}
	p.statOnce.Do(func() { p.stat = openStat(p.cmd.Process.Pid) })
	if p.stat == nil {
		return 0, false
	}
	cpu, ok := readCPU(p.stat)
	if ok && (last == nil || cpu >= last.cpu) {
		// A reading older than the one kept may lose the race to store.
		p.cpuLast.CompareAndSwap(last, &cpuReading{at: now, cpu: cpu})
	}
	return cpu, ok
}

// cpuReading is a CPU time and when it was read (since epoch).
type cpuReading struct {
	at, cpu time.Duration
}

// epoch is what cpuReading times count from.
var epoch = time.Now()

// MaxRSS is the peak resident memory in bytes, measured by the kernel
// (VmHWM in /proc) while the process runs; after it exited, the last such
// reading. 0 if unknown. Never its rusage: the kernel counts in ru_maxrss
// the memory of the process before its exec, which began as a fork of
// tern and so shows tern's own size.
func (p *Process) MaxRSS() int64 {
	select {
	case <-p.done:
		return p.rssMax.Load()
	default:
	}
	now := time.Now().UnixNano()
	if now-p.rssAt.Load() < int64(rssRefresh) {
		return p.rssMax.Load()
	}
	v := peakRSS(p.cmd.Process.Pid)
	if v > p.rssMax.Load() {
		p.rssMax.Store(v)
	}
	p.rssAt.Store(now)
	return p.rssMax.Load()
}

// Kill sends SIGKILL to the process, its process group, every descendant
// that left the group (setsid) while its parent chain still leads here, and
// every process in its cgroup. It does not wait for the process itself.
// Without a cgroup, a descendant whose parent already exited cannot be
// found.
func (p *Process) Kill() {
	p.killOnce.Do(func() {
		p.killed.Store(true)
		pid := p.cmd.Process.Pid
		// Stop the group first so nobody forks while the tree is walked.
		_ = syscall.Kill(-pid, syscall.SIGSTOP)
		for _, d := range descendants(pid) {
			_ = syscall.Kill(d, syscall.SIGKILL)
		}
		// Negative pid: the process group, so children go too.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		p.mu.Lock()
		cg := p.cg
		p.mu.Unlock()
		if cg != nil {
			cg.killAll()
		}
	})
}
