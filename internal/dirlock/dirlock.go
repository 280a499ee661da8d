// Package dirlock holds a data dir for one process: an exclusive flock on
// <dir>/tern.lock, taken before anything in the dir is read or changed and
// held until the process releases it or exits (the kernel drops the lock of
// a killed process, so a crash never leaves the dir locked).
//
// A second `tern serve` on the same data dir would share the first one's
// code cache, jail slots and store files and break it when it stops; the
// lock refuses it with the pid of the holder, before it touches anything.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// File is the lock file's name inside the data dir.
const File = "tern.lock"

// ErrHeld is returned (wrapped in a *HeldError) when another process holds
// the lock.
var ErrHeld = errors.New("data dir is in use")

// HeldError says which data dir is held and by which pid (0 when the
// holder's pid could not be read).
type HeldError struct {
	Dir string
	PID int
}

func (e *HeldError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = "process " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("data dir %s is in use by %s (another tern serve?): stop it, or give this server a data dir of its own with --data-dir", e.Dir, who)
}

func (e *HeldError) Unwrap() error { return ErrHeld }

// Lock is a held data dir lock.
type Lock struct {
	f *os.File
}

// Acquire takes the lock on dir, which must exist, without waiting: a
// lock held by another process is a *HeldError. The lock file then holds
// this process's pid.
func Acquire(dir string) (*Lock, error) {
	path := filepath.Join(dir, File)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &HeldError{Dir: dir, PID: readPID(path)}
		}
		return nil, fmt.Errorf("data dir lock %s: %w", path, err)
	}
	// Only the holder writes: a reader that finds the file empty (between
	// the truncate and the write) reports pid 0.
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("data dir lock %s: %w", path, err)
		}
	}
	return &Lock{f: f}, nil
}

// Release drops the lock. The file stays (removing it would let a third
// process lock a new file while a second still waits on the old one).
// Release is idempotent.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	_ = f.Truncate(0)
	return f.Close()
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}
