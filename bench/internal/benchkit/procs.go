package benchkit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Child is a process this program started (tern serve, or a baseline node
// server). Each runs in its own process group and gets SIGKILL if this
// program dies.
type Child struct {
	name     string
	cmd      *exec.Cmd
	done     chan struct{}
	graceful bool // SIGTERM first, SIGKILL after a grace period
}

// ProcID names a process for a later kill without hitting a reused pid.
type ProcID struct {
	pid   int
	start uint64 // starttime from /proc/<pid>/stat
}

// Children tracks every process to end before exiting.
type Children struct {
	mu       sync.Mutex
	list     []*Child
	orphans  []ProcID // tern's instances, killed if tern left them behind
	stopping bool
}

// Start starts cmd in its own process group with SIGKILL as its
// parent-death signal, and tracks it. cmd's Stdout and Stderr must be files
// (or nil), so that Wait does not wait on pipes a grandchild may hold.
func (cs *Children) Start(name string, cmd *exec.Cmd, graceful bool) (*Child, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.stopping {
		return nil, fmt.Errorf("start %s: shutting down", name)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &Child{name: name, cmd: cmd, done: make(chan struct{}), graceful: graceful}
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	cs.list = append(cs.list, c)
	return c, nil
}

// PID is the child's process id.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Done is closed when the child has exited and been waited for.
func (c *Child) Done() <-chan struct{} { return c.done }

// ExitCode is the child's exit status once it has exited (-1 before, or
// when a signal ended it).
func (c *Child) ExitCode() int {
	if !c.Exited() {
		return -1
	}
	return c.cmd.ProcessState.ExitCode()
}

// Exited reports whether the child has exited.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Stop ends the child (and its process group) and waits, boundedly.
func (c *Child) Stop(grace time.Duration) {
	if c.Exited() {
		return
	}
	if c.graceful {
		_ = syscall.Kill(c.PID(), syscall.SIGTERM)
		select {
		case <-c.done:
			return
		case <-time.After(grace):
			fmt.Fprintf(os.Stderr, "bench: %s did not exit %s after SIGTERM; sending SIGKILL\n", c.name, grace)
		}
	}
	_ = syscall.Kill(-c.PID(), syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		fmt.Fprintf(os.Stderr, "bench: %s (pid %d) did not exit after SIGKILL\n", c.name, c.PID())
	}
}

// NoteOrphans remembers the current children of pid (tern's function
// instances) so that StopAll can kill any that outlive tern.
func (cs *Children) NoteOrphans(pid int) {
	kids := ChildrenOf(pid)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, k := range kids {
		st, err := ReadStat(k)
		if err != nil {
			continue
		}
		cs.orphans = append(cs.orphans, ProcID{pid: k, start: st.Start})
	}
}

// StopAll stops every tracked child, newest first, then kills instances
// tern left behind. It is safe to call more than once, and concurrently.
func (cs *Children) StopAll() {
	cs.mu.Lock()
	cs.stopping = true
	list := cs.list
	cs.list = nil
	orphans := cs.orphans
	cs.orphans = nil
	cs.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		list[i].Stop(15 * time.Second)
	}
	for _, o := range orphans {
		st, err := ReadStat(o.pid)
		if err != nil || st.Start != o.start {
			continue // gone (or the pid was reused)
		}
		fmt.Fprintf(os.Stderr, "bench: killing leftover tern instance pid %d\n", o.pid)
		_ = syscall.Kill(o.pid, syscall.SIGKILL)
	}
}

// ProcStat is what this program reads from /proc/<pid>/stat.
type ProcStat struct {
	PPID  int
	CPU   time.Duration // utime + stime
	Start uint64
}

// ClockTick is USER_HZ, the unit of the times in /proc/<pid>/stat: 100 on
// every mainstream Linux architecture (x86, arm64).
const ClockTick = 10 * time.Millisecond

// ReadStat reads /proc/<pid>/stat.
func ReadStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ProcStat{}, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return ProcStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+2:]))
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 20 {
		return ProcStat{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	stt, _ := strconv.ParseUint(f[12], 10, 64)
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return ProcStat{PPID: ppid, CPU: time.Duration(ut+stt) * ClockTick, Start: start}, nil
}

// ChildrenOf lists the live processes whose parent is pid.
func ChildrenOf(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := ReadStat(p)
		if err == nil && st.PPID == pid {
			out = append(out, p)
		}
	}
	return out
}

// CPUSnapshot is the CPU time of a set of processes at one moment.
type CPUSnapshot map[ProcID]time.Duration

// Snapshot reads the CPU time of pids.
func Snapshot(pids []int) CPUSnapshot {
	s := make(CPUSnapshot, len(pids))
	for _, p := range pids {
		if st, err := ReadStat(p); err == nil {
			s[ProcID{pid: p, start: st.Start}] = st.CPU
		}
	}
	return s
}

// CPUSince is the CPU used between before and after by the processes in
// after (a process started in between counts from zero). Processes that
// exited in between are not counted.
func CPUSince(before, after CPUSnapshot) time.Duration {
	var d time.Duration
	for id, t := range after {
		d += t - before[id]
	}
	return d
}

// SelfCPU is this process's user+system CPU time.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// MachineBusy is the CPU time all processors spent busy (anything but idle
// and iowait) since boot, from /proc/stat.
func MachineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy uint64
	// user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseUint(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * ClockTick
}

// RSS is the resident set size of pid (VmRSS in /proc/<pid>/status) and
// its peak (VmHWM), in KiB.
func RSS(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			peak = n
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return rss, peak, nil
}

// Age is how long ago pid started, from its start time in /proc/<pid>/stat
// and the system's uptime.
func Age(pid int) (time.Duration, error) {
	st, err := ReadStat(pid)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("/proc/uptime: unexpected format")
	}
	up, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(up*float64(time.Second)) - time.Duration(st.Start)*ClockTick, nil
}
