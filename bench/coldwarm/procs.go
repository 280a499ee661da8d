package main

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

// child is a process this program started (tern serve, or a baseline node
// server). Each runs in its own process group and gets SIGKILL if this
// program dies.
type child struct {
	name     string
	cmd      *exec.Cmd
	done     chan struct{}
	graceful bool // SIGTERM first, SIGKILL after a grace period
}

// procID names a process for a later kill without hitting a reused pid.
type procID struct {
	pid   int
	start uint64 // starttime from /proc/<pid>/stat
}

// children tracks every process to end before exiting.
type children struct {
	mu       sync.Mutex
	list     []*child
	orphans  []procID // tern's instances, killed if tern left them behind
	stopping bool
}

// start starts cmd in its own process group with SIGKILL as its
// parent-death signal, and tracks it. cmd's Stdout and Stderr must be files
// (or nil), so that Wait does not wait on pipes a grandchild may hold.
func (cs *children) start(name string, cmd *exec.Cmd, graceful bool) (*child, error) {
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
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), graceful: graceful}
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	cs.list = append(cs.list, c)
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop ends the child (and its process group) and waits, boundedly.
func (c *child) stop(grace time.Duration) {
	if c.exited() {
		return
	}
	if c.graceful {
		_ = syscall.Kill(c.pid(), syscall.SIGTERM)
		select {
		case <-c.done:
			return
		case <-time.After(grace):
			fmt.Fprintf(os.Stderr, "bench: %s did not exit %s after SIGTERM; sending SIGKILL\n", c.name, grace)
		}
	}
	_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		fmt.Fprintf(os.Stderr, "bench: %s (pid %d) did not exit after SIGKILL\n", c.name, c.pid())
	}
}

// noteOrphans remembers the current children of pid (tern's function
// instances) so that stopAll can kill any that outlive tern.
func (cs *children) noteOrphans(pid int) {
	kids := childrenOf(pid)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, k := range kids {
		st, err := readStat(k)
		if err != nil {
			continue
		}
		cs.orphans = append(cs.orphans, procID{pid: k, start: st.start})
	}
}

// stopAll stops every tracked child, newest first, then kills instances
// tern left behind. It is safe to call more than once, and concurrently.
func (cs *children) stopAll() {
	cs.mu.Lock()
	cs.stopping = true
	list := cs.list
	cs.list = nil
	orphans := cs.orphans
	cs.orphans = nil
	cs.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		list[i].stop(15 * time.Second)
	}
	for _, o := range orphans {
		st, err := readStat(o.pid)
		if err != nil || st.start != o.start {
			continue // gone (or the pid was reused)
		}
		fmt.Fprintf(os.Stderr, "bench: killing leftover tern instance pid %d\n", o.pid)
		_ = syscall.Kill(o.pid, syscall.SIGKILL)
	}
}

// procStat is what this program reads from /proc/<pid>/stat.
type procStat struct {
	ppid  int
	cpu   time.Duration // utime + stime
	start uint64
}

// clockTick is USER_HZ, the unit of the times in /proc/<pid>/stat: 100 on
// every mainstream Linux architecture (x86, arm64).
const clockTick = 10 * time.Millisecond

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+2:]))
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	stt, _ := strconv.ParseUint(f[12], 10, 64)
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procStat{ppid: ppid, cpu: time.Duration(ut+stt) * clockTick, start: start}, nil
}

// childrenOf lists the live processes whose parent is pid.
func childrenOf(pid int) []int {
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
		st, err := readStat(p)
		if err == nil && st.ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

// cpuSnapshot is the CPU time of a set of processes at one moment.
type cpuSnapshot map[procID]time.Duration

// snapshot reads the CPU time of pids.
func snapshot(pids []int) cpuSnapshot {
	s := make(cpuSnapshot, len(pids))
	for _, p := range pids {
		if st, err := readStat(p); err == nil {
			s[procID{pid: p, start: st.start}] = st.cpu
		}
	}
	return s
}

// cpuSince is the CPU used between before and after by the processes in
// after (a process started in between counts from zero). Processes that
// exited in between are not counted.
func cpuSince(before, after cpuSnapshot) time.Duration {
	var d time.Duration
	for id, t := range after {
		d += t - before[id]
	}
	return d
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy is the CPU time all processors spent busy (anything but idle
// and iowait) since boot, from /proc/stat.
func machineBusy() time.Duration {
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
	return time.Duration(busy) * clockTick
}
