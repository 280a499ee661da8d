package sandbox

import (
	"strings"
)

// Limits are what an instance's cgroup enforces.
type Limits struct {
	// MemoryMB is the function's memory; the kernel kills the instance
	// when it uses more (no swap). 0: no memory limit.
	MemoryMB int
	// Pids caps the processes and threads of the instance; 0: DefaultPids.
	Pids int
}

// DefaultPids bounds the tasks (processes and threads) of one instance:
// node alone runs about a dozen threads, a fork bomb stops here.
const DefaultPids = 256

// CPU is shared in proportion to memory, as Lambda allocates it: a
// function with 1 GB gets the default weight, one with 128 MB an eighth.

// CPUWeight is cgroup v2's cpu.weight for memoryMB (default 100 at 1 GB,
// within 1..10000).
func CPUWeight(memoryMB int) int {
	return clamp(memoryMB*100/1024, 1, 10000)
}

// CPUShares is cgroup v1's cpu.shares for memoryMB (default 1024 at 1 GB,
// within 2..262144).
func CPUShares(memoryMB int) int {
	return clamp(memoryMB, 2, 262144)
}

func clamp(v, lo, hi int) int {
	return min(max(v, lo), hi)
}

// Control is one isolation control and whether this host applies it.
type Control struct {
	Name string // "cgroup memory", "cgroup pids", "cgroup cpu weight"
	On   bool
	// Why: how it is applied when on, what prevents it when off.
	Why string
}

// Summary is the one log line about the controls: which are on, and why
// the others are off.
func Summary(cs []Control) string {
	var on, off []string
	for _, c := range cs {
		if c.On {
			on = append(on, c.Name)
		} else {
			off = append(off, c.Name+": "+c.Why)
		}
	}
	s := "isolation:"
	if len(on) > 0 {
		s += " " + strings.Join(on, ", ") + " on"
	}
	if len(off) > 0 {
		if len(on) > 0 {
			s += ";"
		}
		s += " off: " + strings.Join(off, "; ")
	}
	return s
}
