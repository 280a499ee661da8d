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

// mainThreadCPU reads the CPU time pid's main thread has run (the first
// field of /proc/<pid>/schedstat, in nanoseconds).
func mainThreadCPU(pid int) (int64, bool) {
	var buf [64]byte
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/schedstat")
	if err != nil {
		return 0, false
	}
	n, _ := f.Read(buf[:])
	f.Close()
	b := buf[:n]
	if i := bytes.IndexByte(b, ' '); i >= 0 {
		b = b[:i]
	}
	ns, err := strconv.ParseInt(string(b), 10, 64)
	return ns, err == nil
}
