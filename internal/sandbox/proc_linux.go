package sandbox

import (
	"bytes"
	"os"
	"strconv"
)

// peakRSS reads VmHWM (the resident set's high-water mark) of pid.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	i := bytes.Index(b, []byte("VmHWM:"))
	if i < 0 {
		return 0
	}
	line := b[i+len("VmHWM:"):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	f := bytes.Fields(line) // "12345", "kB"
	if len(f) == 0 {
		return 0
	}
	kb, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil {
		return 0
	}
	return kb * 1024
}

// openSchedstat opens /proc/<pid>/schedstat, or returns nil.
func openSchedstat(pid int) *os.File {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/schedstat")
	if err != nil {
		return nil
	}
	return f
}

// readSchedstat reads the CPU time the main thread has run (the first
// field of schedstat, in nanoseconds) from the start of f.
func readSchedstat(f *os.File) (int64, bool) {
	var buf [64]byte
	n, _ := f.ReadAt(buf[:], 0)
	b := buf[:n]
	if i := bytes.IndexByte(b, ' '); i >= 0 {
		b = b[:i]
	}
	ns, err := strconv.ParseInt(string(b), 10, 64)
	return ns, err == nil
}
