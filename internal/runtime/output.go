package runtime

import (
	"bufio"
	"errors"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// outputPipe is the read end of one of an instance's output pipes, with
// counters that let Invoke wait until everything the function printed
// before answering has been turned into log entries, so that a function's
// lines come before its END and REPORT lines.
type outputPipe struct {
	f       *os.File
	stream  string
	read    atomic.Int64 // bytes taken out of the pipe
	emitted atomic.Int64 // bytes turned into entries
}

func (p *outputPipe) Read(b []byte) (int, error) {
	n, err := p.f.Read(b)
	p.read.Add(int64(n))
	return n, err
}

// pending reports bytes still in the pipe or read but not yet emitted.
func (p *outputPipe) pending() bool {
	if p.read.Load() != p.emitted.Load() {
		return true
	}
	rc, err := p.f.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ)
	})
	return n > 0 // TIOCINQ is FIONREAD: bytes waiting in the pipe
}

// drainOutput waits, briefly, until both pipes have been read up to now.
func (i *Instance) drainOutput() {
	var deadline time.Time
	for spin := 0; ; spin++ {
		if !i.stdout.pending() && !i.stderr.pending() {
			return
		}
		if spin < 50 {
			runtime.Gosched()
			continue
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(20 * time.Millisecond)
		} else if time.Now().After(deadline) {
			return // a flood of output: order is best effort
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// readOutput turns one output pipe into log entries until the process and
// all its children have closed it.
func (i *Instance) readOutput(p *outputPipe) {
	defer i.readers.Done()
	defer p.f.Close()
	br := bufio.NewReaderSize(p, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			i.outputLine(p.stream, line)
			p.emitted.Add(int64(len(line)))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				i.l.cfg.Log.Debug("runtime: reading output", "instance", i.id, "err", err)
			}
			return
		}
	}
}

func (i *Instance) outputLine(stream string, line []byte) {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	msg := string(line)
	if !i.specOK.Load() {
		// A pooled instance serves no function yet: its output is the
		// runtime's own and goes to the server's log.
		i.l.cfg.Log.Warn("runtime: output of an unspecialised instance", "instance", i.id, "stream", stream, "line", msg)
		return
	}
	rid := lambdaLineRequestID(msg)
	if rid == "" {
		if c := i.soleCall(); c != nil {
			rid = c.inv.RequestID
		} else if p := i.lastReq.Load(); p != nil {
			rid = *p
		}
	}
	i.l.cfg.Logs.Write(i.entry(rid, stream, msg))
}

// lambdaLineRequestID returns the request id of a line in the Lambda log
// format "<time>\t<request id>\t<LEVEL>\t<message>", or "".
func lambdaLineRequestID(s string) string {
	a := indexTab(s, 0)
	if a < 0 {
		return ""
	}
	b := indexTab(s, a+1)
	if b < 0 || b-a-1 != 36 {
		return ""
	}
	return s[a+1 : b]
}

func indexTab(s string, from int) int {
	for j := from; j < len(s) && j < from+64; j++ {
		if s[j] == '\t' {
			return j
		}
	}
	return -1
}
