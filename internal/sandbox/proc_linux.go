package sandbox

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
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

// openStat opens /proc/<pid>/stat, or returns nil.
func openStat(pid int) *os.File {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	return f
}

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on Linux).
const clockTick = 10 * time.Millisecond

// readCPU reads the user plus system time of all the process's threads
// from the start of f (its /proc/<pid>/stat).
func readCPU(f *os.File) (time.Duration, bool) {
	var buf [512]byte
	// One pread (ReadAt would make a second one to see the end); the raw
	// connection keeps the descriptor from being closed meanwhile.
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, false
	}
	n := 0
	if err := rc.Read(func(fd uintptr) bool {
		n, err = syscall.Pread(int(fd), buf[:], 0)
		return true
	}); err != nil || n <= 0 {
		return 0, false
	}
	// state(3) ... utime(14) stime(15), counted from 1.
	f2 := statFields(buf[:n])
	if len(f2) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(string(f2[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f2[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * clockTick, true
}

// statFields splits a /proc/<pid>/stat line after the command name, which
// may hold spaces and parentheses: the first field is the state (field 3
// of the line). Nil if the line has no name.
func statFields(b []byte) [][]byte {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return bytes.Fields(b[i+1:])
}
